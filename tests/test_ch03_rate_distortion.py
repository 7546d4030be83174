"""Chapter 03's library pieces: the pixel-mean loss and the β it implies, training with a learner-style loss,
and the autoregressive decoder that makes a VAE's code less needed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import articles, datasets, elbo, models, train

KEY = jax.random.key(0)
K1, K2, K3 = jax.random.split(KEY, 3)
LOGITS = jax.random.normal(K1, (6, 28, 28, 1))
X = jax.random.uniform(K2, (6, 28, 28, 1))
MEAN, LOG_VAR = jnp.split(jax.random.normal(K3, (6, 10)), 2, axis=-1)


def negative_elbo(logits, x, mean, log_var):
    return -elbo.bernoulli_log_likelihood(logits, x) + jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)


def test_pixel_mean_negative_elbo_is_the_elbo_with_beta_784_divided_by_784():
    got = articles.pixel_mean_negative_elbo(LOGITS, X, MEAN, LOG_VAR)
    distortion = -elbo.bernoulli_log_likelihood(LOGITS, X)
    rate = jnp.sum(elbo.gaussian_kl(MEAN, LOG_VAR), axis=-1)
    assert got.shape == (6,)
    np.testing.assert_allclose(got, (distortion + 784 * rate) / 784, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.1, 1.0, 7.0])
def test_implied_beta_reads_the_weight_of_a_beta_elbo(beta):
    loss = lambda lg, x, m, v: 3.0 * (-elbo.bernoulli_log_likelihood(lg, x) + beta * jnp.sum(elbo.gaussian_kl(m, v), -1))
    assert articles.implied_beta(loss, LOGITS, X, MEAN, LOG_VAR) == pytest.approx(beta, rel=1e-4)


def test_implied_beta_of_the_elbo_is_one_and_of_the_pixel_mean_loss_is_the_pixel_count():
    assert articles.implied_beta(negative_elbo, LOGITS, X, MEAN, LOG_VAR) == pytest.approx(1.0, rel=1e-5)
    assert articles.implied_beta(articles.pixel_mean_negative_elbo, LOGITS, X, MEAN, LOG_VAR) == pytest.approx(
        784.0, rel=1e-4)


def test_implied_beta_refuses_losses_that_no_beta_describes():
    squared_error = lambda lg, x, m, v: jnp.sum(jnp.square(jax.nn.sigmoid(lg) - x), (1, 2, 3)) + jnp.sum(
        elbo.gaussian_kl(m, v), -1)
    with pytest.raises(ValueError, match=r"reconstruction \(logits\) is not a multiple"):
        articles.implied_beta(squared_error, LOGITS, X, MEAN, LOG_VAR)
    mean_squared = lambda lg, x, m, v: -elbo.bernoulli_log_likelihood(lg, x) + jnp.sum(jnp.square(m), -1)
    with pytest.raises(ValueError, match=r"KL \(mean, log_var\) is not a multiple"):
        articles.implied_beta(mean_squared, LOGITS, X, MEAN, LOG_VAR)
    with pytest.raises(ValueError, match="not a positive number"):
        articles.implied_beta(lambda *a: -negative_elbo(*a), LOGITS, X, MEAN, LOG_VAR)


def test_logits_loss_objective_with_the_elbo_is_the_elbo_objective():
    vae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,)))
    images = jnp.asarray(datasets.load("mnist", "test").images[:16])
    losses, metrics = articles.LogitsLossObjective(negative_elbo)(vae, (images,), key=KEY)
    terms = elbo.elbo_terms(vae, images, key=KEY)
    np.testing.assert_allclose(losses, terms.neg_elbo, rtol=1e-5)
    np.testing.assert_allclose(metrics["rate"], terms.rate, rtol=1e-5)
    np.testing.assert_allclose(metrics["distortion"], terms.distortion, rtol=1e-5)
    broken, broken_metrics = articles.LogitsLossObjective(articles.pixel_mean_negative_elbo)(vae, (images,), key=KEY)
    np.testing.assert_allclose(broken_metrics["neg_elbo"], terms.neg_elbo, rtol=1e-5)  # metrics stay the true terms
    assert not np.allclose(broken, losses)


def test_logits_loss_objective_refuses_a_gaussian_or_conditional_model():
    images = jnp.zeros((2, 28, 28, 1))
    for config in (models.VAEConfig(latent_dim=2, likelihood="gaussian"), models.VAEConfig(latent_dim=2, num_classes=3)):
        with pytest.raises(ValueError, match="unconditional Bernoulli VAE"):
            articles.LogitsLossObjective(negative_elbo)(models.make_vae(config), (images,), key=KEY)


def test_the_pixel_mean_loss_drives_the_rate_far_below_the_elbos():
    data = datasets.load("mnist", "train", binarization="static").take(1024)
    config = train.TrainConfig(epochs=2, batch_size=64)
    rates = {}
    for name, loss in (("elbo", negative_elbo), ("pixel_mean", articles.pixel_mean_negative_elbo)):
        vae = models.make_vae(models.VAEConfig(latent_dim=4, hidden_dims=(64,)))
        result = train.fit(vae, data, data, config, objective=articles.LogitsLossObjective(loss), progress=False)
        rates[name] = result.history[-1]["test_rate"]
    assert rates["pixel_mean"] < 0.1 < 2.0 < rates["elbo"]


def test_autoregressive_vae_pixel_i_reads_only_earlier_pixels():
    model = models.AutoregressiveVAE(models.VAEConfig(latent_dim=2, hidden_dims=(16,)), rngs=nnx.Rngs(0))
    model.visible[...] = jax.random.normal(K1, model.visible[...].shape)
    x = (X[:1] > 0.5).astype(jnp.float32)
    z = MEAN[:1, :2]

    def per_pixel(x):  # the log-likelihood of each pixel, as a function of the whole image
        flat = x.reshape(1, -1)
        logits = model.decoder(z).reshape(1, -1) + flat @ model._earlier_pixel_weights().T
        return (flat * logits - jax.nn.softplus(logits))[0]

    np.testing.assert_allclose(jnp.sum(per_pixel(x)), model.log_likelihood(x, z)[0], rtol=1e-5)
    jacobian = jax.jacobian(per_pixel)(x).reshape(784, 784)  # d log p(x_i | ...) / d x_j
    strictly_later = jnp.triu(jnp.ones((784, 784)), k=1)
    assert float(jnp.max(jnp.abs(jacobian * strictly_later))) == 0.0  # nothing from pixels j > i
    assert float(jnp.max(jnp.abs(jnp.tril(jacobian, k=-1)))) > 0.0


def test_autoregressive_vae_greedy_decode_follows_its_own_probabilities():
    model = models.AutoregressiveVAE(models.VAEConfig(latent_dim=2, hidden_dims=(16,)), rngs=nnx.Rngs(0))
    model.visible[...] = 0.3 * jax.random.normal(K2, model.visible[...].shape)
    z = MEAN[:3, :2]
    probabilities = model.decode(z)
    assert probabilities.shape == (3, 28, 28, 1)
    greedy = (probabilities > 0.5).astype(jnp.float32).reshape(3, -1)
    expected = jax.nn.sigmoid(model.decoder(z).reshape(3, -1) + greedy @ model._earlier_pixel_weights().T)
    np.testing.assert_allclose(probabilities.reshape(3, -1), expected, atol=1e-5)


def test_autoregressive_vae_refuses_configs_it_cannot_be():
    for config in (models.VAEConfig(architecture="conv"), models.VAEConfig(likelihood="gaussian"),
                   models.VAEConfig(num_classes=10)):
        with pytest.raises(models.ConfigError, match="AutoregressiveVAE needs an unconditional 'mlp' Bernoulli"):
            models.AutoregressiveVAE(config, rngs=nnx.Rngs(0))
