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


def test_beta_and_free_bits_errors_name_the_parameter():
    model = LinearGaussian(0.5)
    with pytest.raises(ValueError, match="free_bits_per must be one of 'example', 'minibatch'; got 'batch'"):
        elbo.elbo_terms(model, X, key=jax.random.key(0), free_bits=1.0, free_bits_per="batch")
    with pytest.raises(ValueError, match="free_bits must be >= 0 nats per dimension; got -1.0"):
        elbo.elbo_terms(model, X, key=jax.random.key(0), free_bits=-1.0)


class ThreeDimensions:
    """q(z|x) = N(scale * x + shift, exp(log_var)) in 3 dimensions, p(x|z) = N(z_1 + z_2 + z_3, 1).

    Dimension 0 has a large KL on every example, dimension 1 a tiny one, dimension 2 a KL
    that is above 0.5 nats on some examples and below on others, with a mean below 0.5.
    """

    def __init__(self, params):
        self.scale, self.shift, self.log_var = params

    def encode(self, x):
        feature = x.reshape(x.shape[0], 1)
        mean = feature * self.scale[None, :] + self.shift[None, :]
        return mean, jnp.broadcast_to(self.log_var[None, :], mean.shape)

    def log_likelihood(self, x, z):
        return elbo.gaussian_log_likelihood(jnp.sum(z, axis=-1, keepdims=True), jnp.zeros((1,)), x.reshape(x.shape[0], 1))


PARAMS = (jnp.array([2.0, 0.05, 0.6]), jnp.array([0.5, 0.0, 0.0]), jnp.array([-1.0, -0.01, -0.05]))
FREE_BITS = 0.5


def test_minibatch_free_bits_mean_and_gradient_are_kingma_et_al_s():
    key = jax.random.key(0)

    def paper_loss(params):  # Kingma et al. (2016): floor the minibatch mean of each dimension's KL
        model = ThreeDimensions(params)
        mean, log_var = model.encode(X)
        distortion = -model.log_likelihood(X, elbo.reparameterize(mean, log_var, key=key))
        mean_kl = jnp.mean(elbo.gaussian_kl(mean, log_var), axis=0)
        return jnp.mean(distortion) + 2.0 * jnp.sum(jnp.maximum(FREE_BITS, mean_kl))

    def kit_loss(params, per):
        terms = elbo.elbo_terms(ThreeDimensions(params), X, key=key, beta=2.0, free_bits=FREE_BITS, free_bits_per=per)
        return jnp.mean(terms.loss)

    kl = elbo.gaussian_kl(*ThreeDimensions(PARAMS).encode(X))
    mean_kl = jnp.mean(kl, axis=0)
    # The case where the variants differ: a dimension below the floor on average, above it on some examples.
    assert mean_kl[0] > FREE_BITS and mean_kl[1] < FREE_BITS and mean_kl[2] < FREE_BITS
    assert bool(jnp.any(kl[:, 2] > FREE_BITS))
    assert float(kit_loss(PARAMS, "minibatch")) == pytest.approx(float(paper_loss(PARAMS)), rel=1e-6)
    for kit, paper in zip(jax.grad(kit_loss)(PARAMS, "minibatch"), jax.grad(paper_loss)(PARAMS)):
        np.testing.assert_allclose(kit, paper, rtol=1e-5, atol=1e-7)
    per_example = jax.grad(kit_loss)(PARAMS, "example")
    assert not np.allclose(per_example[0], jax.grad(paper_loss)(PARAMS)[0], rtol=1e-3)


def test_free_bits_variants_known_answers():
    kl = jnp.array([[0.0, 3.0], [2.0, 3.0]])
    np.testing.assert_allclose(elbo.free_bits_rate(kl, 1.5, per="example"), [4.5, 5.0])
    np.testing.assert_allclose(elbo.free_bits_rate(kl, 1.5, per="minibatch"), [4.5, 4.5])  # mean KL of dim 0 is 1
    np.testing.assert_allclose(elbo.free_bits_rate(kl, 0.5, per="minibatch"), [3.0, 5.0])  # nothing floored
    minibatch = elbo.elbo_terms(ThreeDimensions(PARAMS), X, key=jax.random.key(0), free_bits=FREE_BITS,
                                free_bits_per="minibatch")
    plain = elbo.elbo_terms(ThreeDimensions(PARAMS), X, key=jax.random.key(0))
    np.testing.assert_allclose(minibatch.rate, plain.rate, rtol=1e-6)  # the reported rate is the true KL


class ShiftedByLabel(LinearGaussian):
    """LinearGaussian whose data mean is shifted by 3 * label: log p(x|y) = log N(x; 3y, 1 + s^2)."""

    def encode(self, x, *, condition):
        return super().encode(x - 3.0 * condition.reshape(-1, 1, 1, 1))

    def log_likelihood(self, x, z, *, condition):
        return super().log_likelihood(x - 3.0 * condition.reshape(-1, 1, 1, 1), z)

    def log_evidence(self, x, condition):
        return super().log_evidence(x - 3.0 * condition.reshape(-1, 1, 1, 1))


def test_the_condition_reaches_encoder_and_likelihood_in_every_bound():
    model = ShiftedByLabel(0.5)
    labels = jnp.arange(64) % 3
    x = X + 3.0 * labels.reshape(-1, 1, 1, 1)
    truth = model.log_evidence(x, labels)
    np.testing.assert_allclose(elbo.iwae_bound(model, x, key=jax.random.key(0), num_samples=7, chunk_size=3,
                                               condition=labels), truth, atol=1e-4)
    log_w = elbo.log_importance_weights(model, x, key=jax.random.key(0), num_samples=5, condition=labels)
    np.testing.assert_allclose(log_w, jnp.broadcast_to(truth, (5, 64)), atol=1e-4)  # exact posterior: w = p(x|y)
    keys = jax.random.split(jax.random.key(1), 2000)
    estimates = jax.vmap(lambda k: -elbo.elbo_terms(model, x, key=k, condition=labels).neg_elbo)(keys)
    np.testing.assert_allclose(jnp.mean(estimates, axis=0), truth, atol=0.1)
    with pytest.raises(TypeError, match="condition"):
        elbo.elbo_terms(model, x, key=jax.random.key(0))


def test_log_importance_weights_draw_one_sample_per_key():
    model = LinearGaussian(0.5, posterior_error=0.8)
    key = jax.random.key(3)
    mean, log_var = model.encode(X)
    one_at_a_time = []
    for sample_key in jax.random.split(key, 6):
        z = elbo.reparameterize(mean, log_var, key=sample_key)
        log_prior = elbo.gaussian_log_density(z, jnp.zeros_like(z), jnp.zeros_like(z))
        one_at_a_time.append(model.log_likelihood(X, z) + log_prior - elbo.gaussian_log_density(z, mean, log_var))
    np.testing.assert_allclose(elbo.log_importance_weights(model, X, key=key, num_samples=6),
                               jnp.stack(one_at_a_time), rtol=1e-6, atol=1e-5)


def _primitives(jaxpr) -> list[str]:
    """Names of the primitives of ``jaxpr`` and of every jaxpr nested in it (scan bodies, jit calls)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(inner, "eqns") or hasattr(getattr(inner, "jaxpr", None), "eqns"):
                    names.extend(_primitives(inner))
    return names


def test_iwae_runs_the_encoder_once_and_vectorises_each_chunk():
    class CubeRootEncoder(LinearGaussian):  # cbrt marks the encoder's work in the jaxpr
        def encode(self, x):
            return super().encode(jnp.cbrt(x))

    model = CubeRootEncoder(0.5)
    jaxpr = jax.make_jaxpr(lambda x: elbo.iwae_bound(model, x, key=jax.random.key(0), num_samples=10, chunk_size=3))(X)
    scans = [eqn for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name == "scan"]
    assert len(scans) == 1  # the loop over the 4 chunks
    body = _primitives(scans[0].params["jaxpr"])
    assert "cbrt" not in body and _primitives(jaxpr).count("cbrt") == 1  # encoded once, outside the loop
    assert "scan" not in body and "while" not in body  # each chunk in one vectorised pass, no inner loop


def test_iwae_keeps_a_float64_input_in_float64():
    with jax.enable_x64(True):
        x = X.astype(jnp.float64)
        model = LinearGaussian(0.5, posterior_error=0.3)
        bound = elbo.iwae_bound(model, x, key=jax.random.key(0), num_samples=50, chunk_size=16)
        assert bound.dtype == jnp.float64
        assert float(jnp.mean(bound)) <= float(jnp.mean(model.log_evidence(x))) + 1e-3
        # A kit VAE (float32 parameters) scores a float64 batch without a carry-type error.
        from vaekit import models

        vae = models.make_vae(models.VAEConfig(latent_dim=2, hidden_dims=(8,)))
        images = jnp.zeros((4, 28, 28, 1), jnp.float64)
        scored = elbo.iwae_bound(vae, images, key=jax.random.key(0), num_samples=5, chunk_size=2)
        assert scored.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(scored)))
