"""The maths of the objective: KL, likelihoods, reparameterization gradients, ELBO and IWAE bounds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaekit import elbo


@pytest.mark.parametrize("mean, var", [(0.0, 1.0), (1.5, 0.3), (-2.0, 4.0), (0.3, 0.05)])
def test_closed_form_kl_matches_monte_carlo(mean, var):
    mean_arr = jnp.full((1,), mean)
    log_var = jnp.full((1,), math.log(var))
    z = elbo.reparameterize(jnp.broadcast_to(mean_arr, (400_000, 1)), jnp.broadcast_to(log_var, (400_000, 1)),
                            key=jax.random.key(0))
    log_q = elbo.gaussian_log_density(z, jnp.broadcast_to(mean_arr, z.shape), jnp.broadcast_to(log_var, z.shape))
    log_p = elbo.gaussian_log_density(z, jnp.zeros_like(z), jnp.zeros_like(z))
    samples = np.asarray(log_q - log_p, dtype=np.float64)
    standard_error = samples.std() / math.sqrt(samples.size)
    closed = float(elbo.gaussian_kl(mean_arr, log_var)[0])
    assert abs(samples.mean() - closed) < 4 * standard_error + 1e-6
    assert closed >= 0


def test_kl_is_zero_only_at_the_prior():
    assert float(elbo.gaussian_kl(jnp.zeros(3), jnp.zeros(3)).sum()) == 0.0
    assert float(elbo.gaussian_kl(jnp.array([0.1]), jnp.zeros(1))[0]) == pytest.approx(0.005)
    assert float(elbo.gaussian_kl(jnp.zeros(1), jnp.array([0.2]))[0]) > 0


def test_bernoulli_log_likelihood_matches_explicit_formula():
    key_logits, key_x = jax.random.split(jax.random.key(1))
    logits = 3.0 * jax.random.normal(key_logits, (4, 5, 5, 1))
    x = jax.random.uniform(key_x, (4, 5, 5, 1))
    lg, xs = np.asarray(logits, np.float64), np.asarray(x, np.float64)
    p = 1 / (1 + np.exp(-lg))  # the textbook form, in float64 so that it is the accurate side
    explicit = np.sum((xs * np.log(p) + (1 - xs) * np.log(1 - p)).reshape(4, -1), axis=1)
    np.testing.assert_allclose(elbo.bernoulli_log_likelihood(logits, x), explicit, rtol=1e-5)


def test_bernoulli_log_likelihood_is_finite_for_extreme_logits():
    logits = jnp.array([[200.0, -200.0]])
    value = elbo.bernoulli_log_likelihood(logits, jnp.array([[0.0, 1.0]]))
    assert float(value[0]) == pytest.approx(-400.0)  # log sigmoid(-200) = -200: no log(0)


def test_perfect_reconstruction_gives_distortion_near_zero():
    x = jnp.array([[0.0, 1.0, 1.0, 0.0]])
    logits = jnp.where(x > 0.5, 30.0, -30.0)
    assert float(-elbo.bernoulli_log_likelihood(logits, x)[0]) < 1e-10


def test_gaussian_log_likelihood_matches_explicit_formula():
    mean = jnp.array([[0.2, 0.5], [0.9, 0.1]])
    x = jnp.array([[0.0, 0.7], [1.0, 0.1]])
    log_var = jnp.array([math.log(0.04)])
    explicit = [sum(-0.5 * math.log(2 * math.pi * 0.04) - (xi - mi) ** 2 / (2 * 0.04) for xi, mi in zip(xr, mr))
                for xr, mr in zip(np.asarray(x), np.asarray(mean))]
    np.testing.assert_allclose(elbo.gaussian_log_likelihood(mean, log_var, x), explicit, rtol=1e-5)


def test_reparameterization_gradients_match_finite_differences():
    key = jax.random.key(2)
    f = lambda mean, log_var: jnp.sum(jnp.sin(elbo.reparameterize(mean, log_var, key=key)) ** 2)
    with jax.enable_x64(True):
        mean = jnp.array([0.3, -1.2, 0.8], dtype=jnp.float64)
        log_var = jnp.array([-0.5, 0.2, -2.0], dtype=jnp.float64)
        grad_mean, grad_log_var = jax.grad(f, argnums=(0, 1))(mean, log_var)
        h = 1e-6
        for i in range(3):
            e = jnp.zeros(3, jnp.float64).at[i].set(h)
            fd_mean = (f(mean + e, log_var) - f(mean - e, log_var)) / (2 * h)
            fd_log_var = (f(mean, log_var + e) - f(mean, log_var - e)) / (2 * h)
            assert float(grad_mean[i]) == pytest.approx(float(fd_mean), rel=1e-6, abs=1e-9)
            assert float(grad_log_var[i]) == pytest.approx(float(fd_log_var), rel=1e-6, abs=1e-9)


def test_pathwise_gradient_estimates_the_gradient_of_the_expectation():
    # d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = var for z ~ N(mu, var).
    mean, log_var = jnp.array(0.7), jnp.array(math.log(0.5))

    def estimate(m, lv):
        z = elbo.reparameterize(jnp.broadcast_to(m, (200_000,)), jnp.broadcast_to(lv, (200_000,)),
                                key=jax.random.key(3))
        return jnp.mean(z**2)

    grad_mean, grad_log_var = jax.grad(estimate, argnums=(0, 1))(mean, log_var)
    assert float(grad_mean) == pytest.approx(1.4, abs=0.01)
    assert float(grad_log_var) == pytest.approx(0.5, abs=0.01)


class LinearGaussian:
    """p(z) = N(0, 1), p(x|z) = N(z, s^2): log p(x) = log N(x; 0, 1 + s^2) in closed form.

    The encoder is the exact posterior N(x / (1 + s^2), s^2 / (1 + s^2)), shifted by
    ``posterior_error`` so that the bounds are strict.
    """

    def __init__(self, noise_var: float, posterior_error: float = 0.0):
        self.noise_var = noise_var
        self.posterior_error = posterior_error

    def encode(self, x):
        x = x.reshape(x.shape[0], 1)
        mean = x / (1 + self.noise_var) + self.posterior_error
        return mean, jnp.full_like(mean, math.log(self.noise_var / (1 + self.noise_var)))

    def log_likelihood(self, x, z):
        return elbo.gaussian_log_likelihood(z, jnp.full((1,), math.log(self.noise_var)), x.reshape(x.shape[0], 1))

    def log_evidence(self, x):
        var = 1 + self.noise_var
        return -0.5 * (math.log(2 * math.pi * var) + x.reshape(-1) ** 2 / var)


X = jnp.linspace(-2.0, 2.0, 64).reshape(64, 1, 1, 1)


def test_exact_posterior_makes_every_bound_tight():
    model = LinearGaussian(0.5)
    truth = model.log_evidence(X)
    for k in (1, 7, 100):
        np.testing.assert_allclose(elbo.iwae_bound(model, X, key=jax.random.key(k), num_samples=k), truth, atol=1e-4)
    # The ELBO's closed-form KL leaves one sampled term, so it is tight in expectation only.
    elbo_samples = jax.vmap(lambda k: -elbo.elbo_terms(model, X, key=k).neg_elbo)(jax.random.split(jax.random.key(0), 4000))
    np.testing.assert_allclose(jnp.mean(elbo_samples, axis=0), truth, atol=0.05)


def test_iwae_is_above_elbo_increases_with_k_and_approaches_log_evidence():
    model = LinearGaussian(0.5, posterior_error=0.8)
    truth = float(jnp.mean(model.log_evidence(X)))
    elbo_value = float(jnp.mean(-elbo.elbo_terms(model, X, key=jax.random.key(0)).neg_elbo))
    bounds = [float(jnp.mean(elbo.iwae_bound(model, X, key=jax.random.key(1), num_samples=k, chunk_size=64)))
              for k in (1, 10, 100, 1000)]
    assert elbo_value < truth - 0.3  # the shifted posterior leaves a real gap
    assert bounds[1] > elbo_value
    assert bounds == sorted(bounds)
    assert bounds[-1] <= truth + 1e-3
    assert bounds[-1] == pytest.approx(truth, abs=0.02)


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    model = LinearGaussian(0.5, posterior_error=0.8)
    keys = jax.random.split(jax.random.key(5), 4000)
    iwae_1 = jax.vmap(lambda k: elbo.iwae_bound(model, X, key=k, num_samples=1))(keys)
    elbo_estimates = jax.vmap(lambda k: -elbo.elbo_terms(model, X, key=k).neg_elbo)(keys)
    assert float(jnp.mean(iwae_1)) == pytest.approx(float(jnp.mean(elbo_estimates)), abs=0.02)


def test_iwae_chunks_that_overshoot_k_are_masked():
    class ConstantWeights:  # q = p(z) and a likelihood that ignores z: every log-weight is -3
        def encode(self, x):
            return jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2))

        def log_likelihood(self, x, z):
            return jnp.full((x.shape[0],), -3.0)

    value = elbo.iwae_bound(ConstantWeights(), jnp.zeros((3, 1)), key=jax.random.key(0), num_samples=10, chunk_size=4)
    np.testing.assert_allclose(value, -3.0, atol=1e-5)


def test_beta_weights_the_rate_and_free_bits_floor_each_dimension():
    model = LinearGaussian(0.5, posterior_error=0.3)
    key = jax.random.key(0)
    plain = elbo.elbo_terms(model, X, key=key)
    beta = elbo.elbo_terms(model, X, key=key, beta=4.0)
    np.testing.assert_allclose(beta.loss, plain.distortion + 4.0 * plain.rate, rtol=1e-6)
    np.testing.assert_allclose(beta.neg_elbo, plain.neg_elbo, rtol=1e-6)
    floored = elbo.elbo_terms(model, X, key=key, free_bits=5.0)  # every KL here is below 5 nats
    np.testing.assert_allclose(floored.loss, plain.distortion + 5.0, rtol=1e-6)
    np.testing.assert_allclose(floored.rate, plain.rate, rtol=1e-6)
