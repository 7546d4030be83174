"""Chapter 02: the articles' setups (vaekit.articles), the gradient estimators and IWAE bounds
(vaekit.estimators), per-image posteriors (vaekit.inference) and the IWAE dashboard (vaekit.widgets.IwaeGap)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vaekit as vk
from vaekit import articles, estimators, inference, models
from vaekit.widgets import IwaeGap

SMALL = vk.VAEConfig(latent_dim=4, hidden_dims=(32,))


@pytest.fixture(scope="module")
def images():
    return vk.load("mnist", "test", binarization="static").images[:64]


def leaves(tree):
    return jax.tree.leaves(tree)


def gradients(objective, model, batch, metric=None):
    def loss(m):
        losses, metrics = objective(m, batch, key=jax.random.key(3))
        return (losses if metric is None else metrics[metric]).mean()

    return nnx.grad(loss)(model)


# --- article 001 §4.2: the shared ReLU head -------------------------------------------------------------

def test_shared_head_means_are_non_negative_and_sigma_at_least_one_and_snr_below_2_over_e():
    encoder = articles.SharedReluHeadEncoder((28, 28, 1), (256,), 128, rngs=nnx.Rngs(0))
    x = 5.0 * jax.random.normal(jax.random.key(0), (200, 28, 28, 1))  # large inputs: means far beyond 2
    mean, log_var = encoder(x)
    assert mean.shape == log_var.shape == (200, 128)
    assert float(mean.max()) > 4.0
    assert bool(jnp.all(mean >= 0))
    np.testing.assert_array_equal(log_var, mean + articles.LOG_VAR_OFFSET)
    assert bool(jnp.all(jnp.exp(0.5 * log_var) >= 1.0))
    assert float(jnp.max(mean * jnp.exp(-0.5 * log_var))) <= articles.SHARED_HEAD_SNR_BOUND + 1e-6


def test_the_snr_bound_is_the_maximum_of_mu_exp_minus_mu_over_2():
    mu = np.linspace(0.0, 20.0, 200001)
    assert np.max(mu * np.exp(-mu / 2)) == pytest.approx(articles.SHARED_HEAD_SNR_BOUND, rel=1e-9)
    assert mu[np.argmax(mu * np.exp(-mu / 2))] == pytest.approx(2.0, abs=1e-3)
    assert articles.SHARED_HEAD_SNR_BOUND == pytest.approx(0.7358, abs=1e-4)


def test_article_001_vae_has_the_articles_layers_and_parameter_count():
    model = articles.make_article_001_vae(seed=0)
    assert models.count_parameters(model) == 351_504  # Keras: 200,960 + 32,896 + 16,512 + 101,136
    assert [layer.kernel.shape for layer in model.encoder.layers] == [(784, 256), (256, 128)]
    assert [layer.kernel.shape for layer in model.decoder.layers] == [(128, 128), (128, 784)]
    decoded = model.decode(jnp.zeros((2, 128)))
    assert decoded.shape == (2, 28, 28, 1) and bool(jnp.all((decoded > 0) & (decoded < 1)))


def test_same_seed_same_article_model_and_other_seed_differs():
    a, b, c = (articles.make_article_001_vae(seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(u, v) for u, v in zip(leaves(nnx.state(a)), leaves(nnx.state(b))))
    assert not np.array_equal(a.encoder.layers[0].kernel[...], c.encoder.layers[0].kernel[...])


def test_shared_head_vae_trains_with_fit_and_the_elbo_and_works_with_the_kits_tools(images):
    model = articles.SharedHeadVAE(SMALL, rngs=nnx.Rngs(0))
    before = vk.evaluate(model, (images,), key=jax.random.key(0))["neg_elbo"]
    result = vk.fit(model, (images,), config=vk.TrainConfig(epochs=5, batch_size=16, learning_rate=3e-3),
                    progress=False)
    after = vk.evaluate(model, (images,), key=jax.random.key(0))["neg_elbo"]
    assert after < before - 50  # from ~545 nats (all pixels 1/2) downwards
    assert "train_neg_elbo" in result.history[-1]
    means, log_vars = vk.encode(model, images)
    assert means.shape == (64, 4) and np.all(means >= 0) and np.allclose(log_vars, means + 1e-5)
    assert 0 <= vk.latent.active_units(model, images) <= 4


def test_shared_head_vae_refuses_what_the_article_model_is_not():
    with pytest.raises(vk.ConfigError, match="architecture must be 'mlp'"):
        articles.SharedHeadVAE(vk.VAEConfig(architecture="conv"), rngs=nnx.Rngs(0))
    with pytest.raises(vk.ConfigError, match="num_classes None"):
        articles.SharedHeadVAE(vk.VAEConfig(num_classes=10), rngs=nnx.Rngs(0))
    model = articles.SharedHeadVAE(SMALL, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unconditional"):
        model.encode(jnp.zeros((2, 28, 28, 1)), condition=jnp.array([0, 1]))


# --- article 001 §4.3: the loss, with its KL out of the gradient's reach ---------------------------------

def test_article_loss_is_pixel_mean_squared_error_plus_summed_kl(images):
    model = articles.make_article_001_vae(seed=0)
    key = jax.random.key(7)
    losses, metrics = articles.Article001Loss()(model, (images,), key=key)
    mean, log_var = model.encode(images)
    reconstruction = model.decode(vk.reparameterize(mean, log_var, key=key))
    mse = np.mean(np.square(np.asarray(images - reconstruction)).reshape(64, -1), axis=1)
    kl = np.sum(0.5 * (np.square(mean) + np.exp(log_var) - log_var - 1.0), axis=1)
    np.testing.assert_allclose(metrics["mse"], mse, rtol=1e-5)
    np.testing.assert_allclose(metrics["rate"], kl, rtol=1e-5)
    np.testing.assert_allclose(losses, mse + kl, rtol=1e-5)
    assert float(kl.mean()) > 0.1  # a KL that is there in value: its missing gradient is not for want of a term


def test_as_written_no_gradient_reaches_the_kl_and_with_the_fix_one_does(images):
    model, batch = articles.make_article_001_vae(seed=0), (images,)
    as_written = gradients(articles.Article001Loss(), model, batch)
    mse_only = gradients(articles.Article001Loss(), model, batch, metric="mse")
    assert all(np.array_equal(a, b) for a, b in zip(leaves(as_written), leaves(mse_only)))
    fixed = gradients(articles.Article001Loss(kl_gradient=True), model, batch)
    encoder_difference = max(float(jnp.max(jnp.abs(a - b)))
                             for a, b in zip(leaves(fixed["encoder"]), leaves(mse_only["encoder"])))
    assert encoder_difference > 1e-3
    # The KL does not involve the decoder: its gradient is the same either way.
    for a, b in zip(leaves(fixed["decoder"]), leaves(mse_only["decoder"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# --- article 001 §3.2.2-§3.2.3: the signs ------------------------------------------------------------------

@pytest.mark.parametrize("encoder, decoder, encoder_sign, decoder_sign",
                         [("max", "max", 1, 1), ("min", "max", -1, 1), ("min", "min", -1, -1), ("max", "min", 1, -1)])
def test_min_max_objective_moves_each_network_in_its_direction(images, encoder, decoder, encoder_sign, decoder_sign):
    model, batch = vk.make_vae(SMALL), (images[:16],)
    objective = articles.MinMaxElboObjective(encoder=encoder, decoder=decoder)
    losses, metrics = objective(model, batch, key=jax.random.key(3))
    np.testing.assert_array_equal(losses, decoder_sign * metrics["neg_elbo"])
    elbo_losses, elbo_metrics = vk.ElboObjective()(model, batch, key=jax.random.key(3), beta=1.0)
    np.testing.assert_allclose(metrics["neg_elbo"], elbo_metrics["neg_elbo"], rtol=1e-6)
    got = gradients(objective, model, batch)
    want = nnx.grad(lambda m: vk.ElboObjective()(m, batch, key=jax.random.key(3), beta=1.0)[0].mean())(model)
    for part, sign in (("encoder", encoder_sign), ("decoder", decoder_sign)):
        for g, w in zip(leaves(got[part]), leaves(want[part])):
            np.testing.assert_allclose(g, sign * w, rtol=1e-4, atol=1e-6)


def test_min_max_objective_names_a_bad_direction():
    with pytest.raises(ValueError, match="decoder must be 'min' or 'max'"):
        articles.MinMaxElboObjective(decoder="ascend")


def test_min_max_training_makes_the_bound_worse_and_joint_maximisation_better(images):
    results = {}
    for encoder in ("min", "max"):
        model = vk.make_vae(SMALL)
        objective = articles.MinMaxElboObjective(encoder=encoder, decoder="max")
        history = vk.fit(model, (images,), (images,), vk.TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3),
                         objective=objective, progress=False).history
        results[encoder] = history[-1]["test_neg_elbo"]
    untrained = vk.evaluate(vk.make_vae(SMALL), (images,), key=jax.random.key(0))["neg_elbo"]
    assert results["max"] < untrained - 50 and results["min"] > untrained + 100  # worse than not training at all


# --- article 002 §4.3: the density and the "KL" --------------------------------------------------------------

@pytest.mark.parametrize("std", [0.5, 1.0, 3.0])
def test_article_002_density_integrates_to_one_over_sqrt_two_pi_sigma_squared(std):
    grid = np.linspace(-15 * std, 15 * std, 30001)
    area = np.trapezoid(np.asarray(articles.article_002_density(grid, 0.3, std), np.float64), grid)
    assert area == pytest.approx(1 / math.sqrt(2 * math.pi * std**2), rel=1e-4)


def test_article_002_kl_is_far_from_zero_for_identical_distributions():
    z = jax.random.normal(jax.random.key(0), (1000, 8))
    value = float(articles.article_002_kl(z[:100], z))
    assert value == pytest.approx(800, rel=0.2)  # about rows x dimensions x variance, where a KL gives 0


# --- vaekit.estimators ----------------------------------------------------------------------------------------

def test_both_estimators_are_unbiased_on_a_known_answer_and_the_pathwise_one_has_far_less_variance():
    mean, log_var = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.0, -1.0, 0.7])
    f = lambda z: jnp.sum(jnp.square(z))  # E f = |mu|^2 + sum sigma^2
    want_mean, want_log_var = 2 * mean, jnp.exp(log_var)
    n = 200_000
    for estimator in (estimators.score_function_gradients, estimators.reparameterization_gradients):
        g = estimator(f, mean, log_var, key=jax.random.key(1), num_samples=n)
        for got, want in ((g.mean, want_mean), (g.log_var, want_log_var)):
            assert got.shape == (n, 3)
            error = np.abs(np.asarray(got.mean(0)) - np.asarray(want))
            assert np.all(error < 5 * np.asarray(got.std(0)) / math.sqrt(n) + 1e-3)
    score = estimators.score_function_gradients(f, mean, log_var, key=jax.random.key(1), num_samples=10_000)
    pathwise = estimators.reparameterization_gradients(f, mean, log_var, key=jax.random.key(1), num_samples=10_000)
    assert np.all(np.asarray(score.mean.var(0)) > 5 * np.asarray(pathwise.mean.var(0)))


def test_the_same_key_draws_the_same_codes_in_both_estimators():
    mean, log_var = jnp.array([0.3, -0.2]), jnp.array([0.1, 0.4])
    identity_first = lambda z: z[0]
    pathwise = estimators.reparameterization_gradients(identity_first, mean, log_var, key=jax.random.key(4),
                                                       num_samples=50)
    np.testing.assert_allclose(pathwise.mean, np.tile([1.0, 0.0], (50, 1)))
    # d z_0 / d log_var_0 = eps_0 sigma_0 / 2 = (z_0 - mu_0) / 2: the score function's z_0 is the same draw.
    score = estimators.score_function_gradients(lambda z: 1.0, mean, log_var, key=jax.random.key(4), num_samples=50)
    z0 = mean[0] + np.asarray(score.mean[:, 0]) * np.exp(log_var[0])  # score wrt mu is (z - mu) / sigma^2
    np.testing.assert_allclose(pathwise.log_var[:, 0], (z0 - mean[0]) / 2, rtol=1e-4, atol=1e-6)


def test_estimators_name_bad_arguments():
    with pytest.raises(ValueError, match="mean and log_var must be vectors"):
        estimators.score_function_gradients(jnp.sum, jnp.zeros((2, 3)), jnp.zeros((2, 3)), key=jax.random.key(0),
                                            num_samples=3)
    with pytest.raises(vk.ConfigError, match="num_samples must be a positive integer"):
        estimators.reparameterization_gradients(jnp.sum, jnp.zeros(3), jnp.zeros(3), key=jax.random.key(0),
                                                num_samples=0)


def test_iwae_bounds_known_answers_and_order():
    rng = np.random.default_rng(0)
    log_w = rng.normal(-1000.0, 3.0, size=(1000, 20))  # exp underflows: only a stable sum gets these right
    bounds = estimators.iwae_bounds(log_w, [1, 10, 100, 1000])
    assert bounds[0] == pytest.approx(log_w.mean())
    m = log_w.max(axis=0)
    assert bounds[-1] == pytest.approx(np.mean(m + np.log(np.mean(np.exp(log_w - m), axis=0))))
    assert np.all(np.diff(bounds) > 0) and np.all(np.isfinite(bounds))


def test_iwae_bounds_name_bad_arguments():
    with pytest.raises(ValueError, match=r"each k must be an integer in \[1, 5\]"):
        estimators.iwae_bounds(np.zeros((5, 2)), [6])
    with pytest.raises(ValueError, match="shape \\(num_samples, batch\\)"):
        estimators.iwae_bounds(np.zeros(5), [1])


# --- the dashboard ---------------------------------------------------------------------------------------------

def test_iwae_dashboard_moves_along_the_curve(images):
    model = vk.make_vae(SMALL)
    vk.fit(model, (images,), config=vk.TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3), progress=False)
    data = vk.Dataset(images=images, labels=np.zeros(64, np.int64), name="mnist", split="test", classes=("x",))
    gap = IwaeGap(model, data, num_images=16, max_samples=200, k=1)
    assert gap.ks == (1, 2, 5, 10, 20, 50, 100, 200)
    assert gap.bound == gap.elbo == gap.bounds[0]
    assert "gap 0.00 nats" in gap.readout.value
    plot, marker = gap.plot.plot.value, gap.plot.overlay.value
    gap.slider.value = 200
    assert gap.error.value == ""
    assert gap.bound == gap.bounds[-1] > gap.elbo
    assert f"gap {gap.bound - gap.elbo:.2f} nats" in gap.readout.value
    assert gap.plot.overlay.value != marker and gap.plot.plot.value == plot  # only the marker is redrawn
    # The same draws give the same curve; the dashboard's ELBO is the kit's, up to sampling noise.
    again = IwaeGap(model, data, num_images=16, max_samples=200)
    np.testing.assert_array_equal(again.bounds, gap.bounds)
    neg_elbo = vk.evaluate(model, (images[:16],), key=jax.random.key(9))["neg_elbo"]
    assert gap.elbo == pytest.approx(-neg_elbo, abs=3.0)


def test_iwae_dashboard_names_bad_arguments(images):
    data = vk.Dataset(images=images, labels=np.zeros(64, np.int64), name="mnist", split="test", classes=("x",))
    model = vk.make_vae(SMALL)
    with pytest.raises(ValueError, match="max_samples must be one of"):
        IwaeGap(model, data, num_images=16, max_samples=300)
    with pytest.raises(ValueError, match="k must be one of"):
        IwaeGap(model, data, num_images=16, max_samples=100, k=200)
    with pytest.raises(ValueError, match="num_images must be an integer in \\[1, 64\\]"):
        IwaeGap(model, data, num_images=65)
    with pytest.raises(TypeError, match="must be a VAE"):
        IwaeGap(vk.Autoencoder(SMALL, rngs=nnx.Rngs(0)), data, num_images=16)


# --- vaekit.inference: per-image posteriors ----------------------------------------------------------------------

class GaussianDecoderModel(nnx.Module):
    """p(x|z) = N(x; z, s^2 I) with p(z) = N(0, I): the exact posterior is N(x / (1 + s^2), s^2 / (1 + s^2))."""

    def __init__(self, latent_dim: int, noise_var: float):
        self.latent_dim = latent_dim
        self.log_noise_var = nnx.Variable(jnp.full((latent_dim,), math.log(noise_var), jnp.float32))

    def log_likelihood(self, x, z):
        return vk.gaussian_log_likelihood(z, self.log_noise_var[...][None], x)


def test_neg_elbo_matches_its_closed_form():
    model = GaussianDecoderModel(3, noise_var=0.5)
    x = jnp.array([[1.0, -2.0, 0.5], [0.0, 0.3, -0.1]])
    mean, log_var = jnp.array([[0.5, -1.0, 0.0], [0.2, 0.2, 0.2]]), jnp.full((2, 3), -1.0)
    got = inference.neg_elbo(model, x, mean, log_var, key=jax.random.key(0), num_samples=20_000)
    s2 = 0.5
    distortion = 0.5 * jnp.sum(math.log(2 * math.pi * s2) + (jnp.square(x - mean) + jnp.exp(log_var)) / s2, axis=1)
    want = distortion + jnp.sum(vk.gaussian_kl(mean, log_var), axis=1)
    np.testing.assert_allclose(got, want, rtol=2e-3)


def test_fit_posteriors_finds_the_exact_posterior_of_a_conjugate_model():
    model = GaussianDecoderModel(4, noise_var=0.5)
    x = jax.random.normal(jax.random.key(1), (5, 4)) * 2.0
    mean, log_var = inference.fit_posteriors(model, x, key=jax.random.key(2), steps=3000, learning_rate=0.01)
    np.testing.assert_allclose(mean, x / 1.5, atol=0.2)  # one-sample gradients: Adam jitters by about its step
    np.testing.assert_allclose(log_var, np.full((5, 4), math.log(0.5 / 1.5)), atol=0.25)


def test_per_image_posteriors_are_at_least_as_good_as_the_encoders(images):
    model = vk.make_vae(SMALL)
    vk.fit(model, (images,), config=vk.TrainConfig(epochs=5, batch_size=16, learning_rate=3e-3), progress=False)
    x, key = jnp.asarray(images[:32]), jax.random.key(5)
    encoder = inference.neg_elbo(model, x, *model.encode(x), key=key, num_samples=200)
    own = inference.neg_elbo(model, x, *inference.fit_posteriors(model, x, key=jax.random.key(6)), key=key,
                             num_samples=200)
    assert float(own.mean()) < float(encoder.mean())
    prior = inference.neg_elbo(model, x, jnp.zeros((32, 4)), jnp.zeros((32, 4)), key=key, num_samples=200)
    assert float(own.mean()) < float(prior.mean()) - 10


def test_inference_names_bad_arguments():
    model = GaussianDecoderModel(2, noise_var=1.0)
    with pytest.raises(vk.ConfigError, match="steps must be a positive integer"):
        inference.fit_posteriors(model, jnp.zeros((1, 2)), key=jax.random.key(0), steps=0)
    with pytest.raises(vk.ConfigError, match="num_samples must be a positive integer"):
        inference.neg_elbo(model, jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros((1, 2)), key=jax.random.key(0),
                           num_samples=0)
