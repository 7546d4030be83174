"""Chapter 01's measurement: holes between the codes, by distance (known answers and behaviour)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import datasets, elbo, latent, models

IMAGES = datasets.load("mnist", "test").images[:200]
CONFIG = models.VAEConfig(latent_dim=3, hidden_dims=(32,))


# --------------------------------------------------------------------------- nearest_code_distance

def test_nearest_code_distance_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    points, codes = rng.normal(size=(37, 5)), rng.normal(size=(53, 5))
    expected = np.min(np.linalg.norm(points[:, None, :] - codes[None, :, :], axis=-1), axis=1)
    np.testing.assert_allclose(latent.nearest_code_distance(points, codes, chunk_size=4), expected, rtol=1e-10)
    np.testing.assert_allclose(latent.nearest_code_distance(points, codes), expected, rtol=1e-10)


def test_nearest_code_distance_is_zero_on_the_codes_themselves():
    codes = np.random.default_rng(1).normal(size=(20, 3))
    np.testing.assert_allclose(latent.nearest_code_distance(codes, codes), 0.0, atol=1e-6)


def test_nearest_code_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="points and codes must have the same latent_dim; got 2 and 3"):
        latent.nearest_code_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"codes must be a non-empty \(num, latent_dim\) array; got shape \(0, 2\)"):
        latent.nearest_code_distance(np.zeros((4, 2)), np.zeros((0, 2)))
    with pytest.raises(models.ConfigError, match="chunk_size must be a positive integer; got 0"):
        latent.nearest_code_distance(np.zeros((4, 2)), np.zeros((4, 2)), chunk_size=0)


# --------------------------------------------------------------------------- holes_by_distance

def _cloud(seed, n, dim=2):
    return np.random.default_rng(seed).normal(size=(n, dim))


def test_samples_from_the_codes_own_distribution_are_in_holes_at_rate_one_minus_q():
    codes, held_out, samples = _cloud(0, 2000), _cloud(1, 2000), _cloud(2, 4000)
    for quantile in (0.9, 0.99):
        test = latent.holes_by_distance(samples, codes, held_out, quantile=quantile)
        assert abs(test.fraction - (1 - quantile)) < 0.02, (quantile, test.fraction)


def test_samples_far_from_the_cloud_are_all_in_holes():
    codes, held_out = _cloud(0, 1000), _cloud(1, 500)
    test = latent.holes_by_distance(_cloud(2, 300) + 10.0, codes, held_out)
    assert test.fraction == 1.0 and test.in_hole.all()


def test_a_gap_between_two_clumps_is_a_hole_and_the_clumps_are_not():
    rng = np.random.default_rng(0)
    clumps = np.concatenate([rng.normal(-3.0, 0.3, (500, 1)), rng.normal(3.0, 0.3, (500, 1))])
    held_out = np.concatenate([rng.normal(-3.0, 0.3, (200, 1)), rng.normal(3.0, 0.3, (200, 1))])
    test = latent.holes_by_distance(np.array([[0.0], [1.5], [-3.0], [3.0]]), clumps, held_out)
    assert test.in_hole.tolist() == [True, True, False, False]
    assert test.fraction == 0.5
    np.testing.assert_allclose(test.distances[:2], [np.min(np.abs(clumps)), np.min(np.abs(clumps - 1.5))])


def test_the_test_does_not_depend_on_the_scale_of_the_code_cloud():
    codes, held_out, samples = _cloud(0, 800, 4), _cloud(1, 400, 4), 1.3 * _cloud(2, 500, 4)
    small = latent.holes_by_distance(samples, codes, held_out)
    large = latent.holes_by_distance(25.0 * samples, 25.0 * codes, 25.0 * held_out)
    np.testing.assert_array_equal(small.in_hole, large.in_hole)
    assert large.radius == pytest.approx(25.0 * small.radius)


def test_a_mismatched_sampler_finds_more_holes_than_a_matched_one():
    """A cloud on a ring: a Gaussian of the right mean and covariance lands in the empty middle."""
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 2 * np.pi, 3000)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) + rng.normal(0, 0.05, (3000, 2))
    codes, held_out, ring_samples = ring[:2000], ring[2000:2500], ring[2500:]
    fitted = latent.fitted_gaussian_sample(codes, 500, key=jax.random.key(0))
    matched = latent.holes_by_distance(ring_samples, codes, held_out).fraction
    mismatched = latent.holes_by_distance(fitted, codes, held_out).fraction
    assert matched < 0.05 and mismatched > 0.3, (matched, mismatched)


def test_holes_by_distance_rejects_a_bad_quantile():
    codes = _cloud(0, 10)
    for bad in (0, 1, 1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="quantile must be a number in"):
            latent.holes_by_distance(codes, codes, codes, quantile=bad)


# --------------------------------------------------------------------------- fitted_gaussian_sample

def test_fitted_gaussian_sample_has_the_codes_mean_and_covariance():
    rng = np.random.default_rng(0)
    mixing = np.array([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, -1.0, 3.0]])
    codes = rng.normal(size=(5000, 3)) @ mixing.T + np.array([5.0, -2.0, 0.5])
    draws = latent.fitted_gaussian_sample(codes, 20000, key=jax.random.key(1))
    assert draws.shape == (20000, 3) and draws.dtype == np.float32
    np.testing.assert_allclose(draws.mean(axis=0), codes.mean(axis=0), atol=0.06)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), np.cov(codes, rowvar=False), atol=0.15)
    same = latent.fitted_gaussian_sample(codes, 20000, key=jax.random.key(1))
    np.testing.assert_array_equal(draws, same)


def test_fitted_gaussian_sample_refuses_too_few_or_flat_codes():
    with pytest.raises(ValueError, match="needs more codes than dimensions"):
        latent.fitted_gaussian_sample(np.zeros((2, 2)), 5, key=jax.random.key(0))
    flat = np.stack([np.arange(10.0), 2 * np.arange(10.0)], axis=1)  # on a line
    with pytest.raises(ValueError, match="covariance is singular"):
        latent.fitted_gaussian_sample(flat, 5, key=jax.random.key(0))
    with pytest.raises(models.ConfigError, match="num must be a positive integer"):
        latent.fitted_gaussian_sample(_cloud(0, 10), 0, key=jax.random.key(0))


# --------------------------------------------------------------------------- posterior_codes

def test_posterior_codes_of_an_autoencoder_are_its_codes_whatever_the_key():
    ae = models.Autoencoder(CONFIG, rngs=nnx.Rngs(0))
    first = latent.posterior_codes(ae, IMAGES, key=jax.random.key(0))
    second = latent.posterior_codes(ae, IMAGES, key=jax.random.key(1))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, np.asarray(ae.encode(jnp.asarray(IMAGES))), rtol=1e-5, atol=1e-6)


def test_posterior_codes_of_a_vae_are_draws_from_each_posterior():
    vae = models.make_vae(CONFIG)
    means, log_vars = vae.encode(jnp.asarray(IMAGES))
    key = jax.random.key(3)
    codes = latent.posterior_codes(vae, IMAGES, key=key)
    assert codes.shape == (200, 3)
    np.testing.assert_allclose(codes, np.asarray(elbo.reparameterize(means, log_vars, key=key)), rtol=1e-5, atol=1e-5)
    other = latent.posterior_codes(vae, IMAGES, key=jax.random.key(4))
    assert not np.allclose(codes, other)  # a draw, not the mean
    standardised = (codes - np.asarray(means)) / np.exp(0.5 * np.asarray(log_vars))
    assert abs(standardised.std() - 1.0) < 0.1
