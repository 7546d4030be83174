"""Chapter 04's aggregate-posterior measures: known densities, known hole shares, known moment KLs."""

import math
import statistics

import jax
import numpy as np
import pytest
from jax.scipy.stats import norm

from vaekit import latent


def _diagonal_gaussian_log_pdf(z, mean, log_var):
    """Straight from the density, in float64: the sum over dimensions of log N(z_j; mu_j, sigma_j^2)."""
    variance = np.exp(log_var)
    return np.sum(-0.5 * np.log(2 * np.pi * variance) - (z - mean) ** 2 / (2 * variance), axis=-1)


def test_prior_log_density_is_the_standard_normal():
    z = np.random.default_rng(0).normal(size=(7, 3))
    np.testing.assert_allclose(latent.prior_log_density(z), _diagonal_gaussian_log_pdf(z, 0.0, 0.0), rtol=1e-12)
    np.testing.assert_allclose(latent.prior_log_density(z), norm.logpdf(z).sum(axis=1), rtol=1e-5)


def test_aggregate_log_density_of_one_posterior_is_that_gaussian():
    rng = np.random.default_rng(1)
    mean, log_var = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    z = rng.normal(size=(9, 4))
    np.testing.assert_allclose(latent.aggregate_log_density(z, mean, log_var),
                               _diagonal_gaussian_log_pdf(z, mean, log_var), rtol=1e-12)


def test_aggregate_log_density_is_the_mixture_mean_in_any_chunking():
    rng = np.random.default_rng(2)
    means, log_vars = rng.normal(size=(5, 3)), rng.normal(scale=0.5, size=(5, 3))
    z = rng.normal(size=(11, 3))
    components = np.stack([_diagonal_gaussian_log_pdf(z, m[None], v[None]) for m, v in zip(means, log_vars)])
    expected = np.log(np.exp(components).mean(axis=0))
    for chunk_size in (1, 4, 256):
        np.testing.assert_allclose(latent.aggregate_log_density(z, means, log_vars, chunk_size=chunk_size),
                                   expected, rtol=1e-9)


def test_aggregate_log_density_stays_finite_far_from_every_code():
    # Each component alone underflows exp() at z = 100; the log-sum-exp must not.
    means, log_vars = np.zeros((2, 1)), np.full((2, 1), math.log(0.01))
    value = latent.aggregate_log_density(np.array([[100.0]]), means, log_vars)[0]
    assert np.isfinite(value)
    assert value == pytest.approx(_diagonal_gaussian_log_pdf(np.array([[100.0]]), means[:1], log_vars[:1])[0])


def test_posteriors_equal_to_the_prior_leave_no_holes():
    zeros = np.zeros((50, 6))
    assert latent.hole_fraction(zeros, zeros, key=jax.random.key(0), num_draws=500) == 0.0


def test_hole_fraction_of_a_narrow_aggregate_posterior_matches_its_closed_form():
    # q = N(0, 1/4) in one dimension: q/p = 2 exp(-1.5 z^2) < r  <=>  |z| > sqrt(log(2 / r) / 1.5).
    means, log_vars = np.zeros((10, 1)), np.full((10, 1), math.log(0.25))
    for ratio in (0.1, 0.5):
        edge = math.sqrt(math.log(2 / ratio) / 1.5)
        expected = 2 * (1 - statistics.NormalDist().cdf(edge))
        measured = latent.hole_fraction(means, log_vars, key=jax.random.key(1), num_draws=40_000, ratio=ratio)
        assert measured == pytest.approx(expected, abs=0.01)


def test_a_colder_temperature_avoids_the_holes_at_the_edge():
    # Same q = N(0, 1/4): draws z = tau * eps fall into the hole when |eps| > edge / tau.
    means, log_vars = np.zeros((10, 1)), np.full((10, 1), math.log(0.25))
    edge = math.sqrt(math.log(2 / 0.1) / 1.5)
    for temperature in (0.5, 2.0):
        expected = 2 * (1 - statistics.NormalDist().cdf(edge / temperature))
        measured = latent.hole_fraction(means, log_vars, key=jax.random.key(3), num_draws=40_000,
                                        temperature=temperature)
        assert measured == pytest.approx(expected, abs=0.01)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0; got 0"):
        latent.hole_fraction(means, log_vars, key=jax.random.key(3), temperature=0)


def test_codes_far_from_the_prior_leave_it_all_holes():
    means, log_vars = np.full((20, 2), 8.0), np.full((20, 2), math.log(0.01))
    assert latent.hole_fraction(means, log_vars, key=jax.random.key(2), num_draws=1000) == 1.0


def test_hole_fraction_rejects_bad_settings():
    codes = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\]; got 0"):
        latent.hole_fraction(codes, codes, key=jax.random.key(0), ratio=0)
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\]; got True"):
        latent.hole_fraction(codes, codes, key=jax.random.key(0), ratio=True)
    with pytest.raises(ValueError, match="num_draws"):
        latent.hole_fraction(codes, codes, key=jax.random.key(0), num_draws=0)
    with pytest.raises(ValueError, match=r"means and log_vars must have one shape"):
        latent.hole_fraction(codes, np.zeros((3, 3)), key=jax.random.key(0))


def test_moment_matched_kl_known_answers():
    # Two codes at c +- a: mean c, variance a^2.
    a, c = 0.5, 2.0
    codes = np.array([[c + a], [c - a]])
    assert latent.moment_matched_kl(codes) == pytest.approx(0.5 * (a**2 + c**2 - 1 - math.log(a**2)))
    # Independent dimensions add up.
    both = np.array([[c + a, 1.0], [c - a, -1.0], [c + a, -1.0], [c - a, 1.0]])
    assert latent.moment_matched_kl(both) == pytest.approx(0.5 * (a**2 + c**2 - 1 - math.log(a**2)))


def test_moment_matched_kl_of_prior_draws_is_near_zero():
    draws = np.random.default_rng(3).standard_normal((20_000, 4))
    assert 0 <= latent.moment_matched_kl(draws) < 0.01


def test_moment_matched_kl_needs_more_codes_than_dimensions_and_a_full_covariance():
    with pytest.raises(ValueError, match="more codes than dimensions.*got 3 codes of dimension 3"):
        latent.moment_matched_kl(np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        latent.moment_matched_kl(np.ones((10, 2)))
    with pytest.raises(ValueError, match=r"codes must be a non-empty \(num, latent_dim\) array"):
        latent.moment_matched_kl(np.zeros(5))
