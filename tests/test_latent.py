"""Latent-space maths: interpolation paths, prior grids, KL per dimension and active units (known answers)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import datasets, elbo, latent, models

DATA = datasets.load("mnist", "test").take(300)


# --------------------------------------------------------------------------- paths

def test_lerp_endpoints_midpoint_and_shapes():
    a, b = np.array([0.0, 2.0, -1.0]), np.array([2.0, 0.0, 3.0])
    np.testing.assert_array_equal(latent.lerp(a, b, 0.0), a)
    np.testing.assert_array_equal(latent.lerp(a, b, 1.0), b)
    np.testing.assert_allclose(latent.lerp(a, b, 0.25), [0.5, 1.5, 0.0])
    path = latent.lerp(a, b, np.linspace(0, 1, 5))
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[2], (a + b) / 2)
    with pytest.raises(ValueError, match=r"t must be a number or a 1-D array of numbers; got shape \(2, 2\)"):
        latent.lerp(a, b, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"a and b must be codes of the same shape"):
        latent.lerp(a, b[:2], 0.5)


def test_slerp_reaches_both_endpoints_even_with_unequal_norms():
    a, b = np.array([3.0, 0.0, 1.0]), np.array([0.5, 2.0, -1.0])
    np.testing.assert_allclose(latent.slerp(a, b, 0.0), a, atol=1e-6)
    np.testing.assert_allclose(latent.slerp(a, b, 1.0), b, atol=1e-6)


def test_slerp_of_orthogonal_unit_vectors_at_one_half():
    np.testing.assert_allclose(latent.slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5),
                               [math.sqrt(0.5), math.sqrt(0.5)], rtol=1e-6)


def test_slerp_keeps_the_norm_when_both_norms_are_equal():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(64)
    b = rng.standard_normal(64)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(np.linalg.norm(latent.slerp(a, b, t), axis=1), np.linalg.norm(a), rtol=1e-6)
    assert np.linalg.norm(latent.lerp(a, b, 0.5)) < 0.8 * np.linalg.norm(a)  # lerp's dip, for contrast


def test_slerp_norm_for_unequal_norms_is_the_stated_formula():
    a, b = np.array([2.0, 0.0, 0.0]), np.array([0.0, 0.0, 5.0])  # orthogonal
    t = np.linspace(0, 1, 7)
    expected = np.sqrt(np.cos(np.pi * t / 2) ** 2 * 4 + np.sin(np.pi * t / 2) ** 2 * 25)
    np.testing.assert_allclose(np.linalg.norm(latent.slerp(a, b, t), axis=1), expected, rtol=1e-6)


def test_slerp_turns_at_a_constant_rate():
    a, b = np.array([1.0, 0.0]), np.array([math.cos(2.0), math.sin(2.0)])  # 2 radians apart
    path = latent.slerp(a, b, np.linspace(0, 1, 9))
    np.testing.assert_allclose(np.arctan2(path[:, 1], path[:, 0]), np.linspace(0, 2.0, 9), atol=1e-6)


def test_slerp_of_parallel_or_zero_codes_is_lerp_and_opposite_codes_are_an_error():
    a = np.array([1.0, 2.0, 3.0])
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(latent.slerp(a, 2.5 * a, t), latent.lerp(a, 2.5 * a, t), rtol=1e-7)
    np.testing.assert_allclose(latent.slerp(a, np.zeros(3), t), latent.lerp(a, np.zeros(3), t))
    tiny_turn = a + np.array([0.0, 1e-6, 0.0])  # a tiny angle: no 0/0, and almost lerp
    np.testing.assert_allclose(latent.slerp(a, tiny_turn, t), latent.lerp(a, tiny_turn, t), rtol=1e-9)
    with pytest.raises(ValueError, match="a and b point in opposite directions"):
        latent.slerp(a, -0.5 * a, 0.5)


def test_paths_keep_float32_codes_in_float32():
    a, b = np.ones(4, np.float32), np.arange(4, dtype=np.float32)
    assert latent.lerp(a, b, 0.3).dtype == np.float32
    assert latent.slerp(a, b, np.linspace(0, 1, 3)).dtype == np.float32


# --------------------------------------------------------------------------- grid

def test_inverse_cdf_grid_known_quantiles():
    grid = latent.inverse_cdf_grid(5)  # p = 0.05, 0.275, 0.5, 0.725, 0.95
    assert grid.shape == (5,) and grid.dtype == np.float32
    np.testing.assert_allclose(grid, [-1.6448536, -0.5977601, 0.0, 0.5977601, 1.6448536], atol=1e-6)
    np.testing.assert_allclose(latent.inverse_cdf_grid(3, low=0.1587, high=0.8413), [-1.0, 0.0, 1.0], atol=1e-3)
    assert np.all(np.diff(latent.inverse_cdf_grid(20)) > 0)


@pytest.mark.parametrize("call, error, message", [
    (lambda: latent.inverse_cdf_grid(0), models.ConfigError, "steps must be a positive integer; got 0"),
    (lambda: latent.inverse_cdf_grid(5, low=0.0), ValueError, "0 < low < high < 1; got low=0.0, high=0.95"),
    (lambda: latent.inverse_cdf_grid(5, low=0.6, high=0.4), ValueError, "0 < low < high < 1"),
])
def test_inverse_cdf_grid_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------- KL and activity

class KnownPosterior(nnx.Module):
    """mean = (3 m(x), 0.5, 0), log_var = (0, log 0.5, 0) with m(x) the image's mean pixel."""

    def encode(self, x):
        m = jnp.mean(x.reshape(x.shape[0], -1), axis=1)
        mean = jnp.stack([3.0 * m, jnp.full_like(m, 0.5), jnp.zeros_like(m)], axis=1)
        log_var = jnp.broadcast_to(jnp.array([0.0, math.log(0.5), 0.0]), mean.shape)
        return mean, log_var


PIXEL_MEANS = DATA.images.reshape(300, -1).astype(np.float64).mean(axis=1)


def test_kl_per_dimension_known_answer():
    kl = latent.kl_per_dimension(KnownPosterior(), DATA, batch_size=128)
    expected = [np.mean(0.5 * (3 * PIXEL_MEANS) ** 2), 0.5 * (0.25 + 0.5 - math.log(0.5) - 1), 0.0]
    assert kl.shape == (3,)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-12)


def test_kl_per_dimension_sums_to_the_mean_rate():
    vae = models.make_vae(models.VAEConfig(latent_dim=6, hidden_dims=(32,)))
    rate = elbo.elbo_terms(vae, jnp.asarray(DATA.images), key=jax.random.key(0)).rate
    assert float(latent.kl_per_dimension(vae, DATA, batch_size=128).sum()) == pytest.approx(float(jnp.mean(rate)),
                                                                                           rel=1e-5)


def test_kl_per_dimension_of_a_conditional_vae_uses_the_labels():
    cvae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,), num_classes=10))
    mean, log_var = cvae.encode(jnp.asarray(DATA.images), condition=jnp.asarray(DATA.labels))
    np.testing.assert_allclose(latent.kl_per_dimension(cvae, DATA), np.mean(elbo.gaussian_kl(mean, log_var), axis=0),
                               rtol=1e-5)


def test_kl_per_dimension_needs_a_distribution():
    ae = models.Autoencoder(models.VAEConfig(latent_dim=3, hidden_dims=(8,)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="this Autoencoder's gives a point, which has no KL"):
        latent.kl_per_dimension(ae, DATA)
    assert latent.activity(ae, DATA).shape == (3,)  # a code still has an activity


def test_activity_known_answer():
    values = latent.activity(KnownPosterior(), DATA, batch_size=128)
    np.testing.assert_allclose(values, [np.var(3 * PIXEL_MEANS), 0.0, 0.0], rtol=1e-5, atol=1e-12)
    threshold = float(values[0]) / 2
    assert latent.active_units(KnownPosterior(), DATA, threshold) == 1
    assert latent.active_units(KnownPosterior(), DATA, 2 * float(values[0])) == 0


def test_dimensions_the_encoder_ignores_are_inactive():
    vae = models.make_vae(models.VAEConfig(latent_dim=5, hidden_dims=(64,)))
    head = vae.encoder.head  # outputs: 5 means, then 5 log-variances
    kernel = head.kernel[...].at[:, 1].set(0.0).at[:, 3].set(0.0)  # means 1 and 3 no longer see the input
    head.kernel[...] = kernel.at[:, jnp.array([0, 2, 4])].multiply(20.0)  # the others vary clearly
    values = latent.activity(vae, DATA)
    assert values[1] == 0.0 and values[3] == 0.0
    assert np.all(values[[0, 2, 4]] > 0.01)
    assert latent.active_units(vae, DATA) == 3
    assert latent.active_units(vae, DATA, threshold=0.0) == 3


def test_active_units_threshold_must_be_a_non_negative_number():
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0; got -0.1"):
        latent.active_units(KnownPosterior(), DATA, -0.1)
