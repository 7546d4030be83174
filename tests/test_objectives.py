"""The objectives: per-example losses and metrics, known answers, labels for conditional models."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import datasets, elbo, models, objectives

MNIST = datasets.load("mnist", "test").take(32)
IMAGES, LABELS = (jnp.asarray(a) for a in MNIST.arrays)
KEY = jax.random.key(0)


def test_elbo_objective_is_the_elbo_terms_with_its_metric_names():
    vae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,)))
    losses, metrics = objectives.ElboObjective()(vae, (IMAGES,), key=KEY, beta=2.0)
    terms = elbo.elbo_terms(vae, IMAGES, key=KEY, beta=2.0)
    assert losses.shape == (32,) and set(metrics) == {"neg_elbo", "rate", "distortion"}
    assert all(value.shape == (32,) for value in metrics.values())
    np.testing.assert_allclose(losses, terms.loss, rtol=1e-6)
    np.testing.assert_allclose(losses, metrics["distortion"] + 2.0 * metrics["rate"], rtol=1e-5)
    np.testing.assert_allclose(metrics["neg_elbo"], terms.neg_elbo, rtol=1e-6)


def test_elbo_objective_passes_its_free_bits_variant_on():
    vae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,)))
    for per in elbo.FREE_BITS_PER:
        losses, _ = objectives.ElboObjective(free_bits=0.7, free_bits_per=per)(vae, (IMAGES,), key=KEY, beta=1.0)
        expected = elbo.elbo_terms(vae, IMAGES, key=KEY, free_bits=0.7, free_bits_per=per).loss
        np.testing.assert_allclose(losses, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="free_bits_per must be one of 'example', 'minibatch'; got 'pixel'"):
        objectives.ElboObjective(free_bits_per="pixel")
    with pytest.raises(ValueError, match="free_bits must be >= 0"):
        objectives.ElboObjective(free_bits=-0.1)


def test_elbo_objective_ignores_labels_of_an_unconditional_vae_and_uses_those_of_a_conditional_one():
    vae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,)))
    with_labels, _ = objectives.ElboObjective()(vae, MNIST.arrays, key=KEY, beta=1.0)
    images_only, _ = objectives.ElboObjective()(vae, (IMAGES,), key=KEY, beta=1.0)
    np.testing.assert_array_equal(with_labels, images_only)

    cvae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,), num_classes=10))
    losses, _ = objectives.ElboObjective()(cvae, (IMAGES, LABELS), key=KEY, beta=1.0)
    np.testing.assert_allclose(losses, elbo.elbo_terms(cvae, IMAGES, key=KEY, condition=LABELS).loss, rtol=1e-6)
    shuffled, _ = objectives.ElboObjective()(cvae, (IMAGES, (LABELS + 1) % 10), key=KEY, beta=1.0)
    assert not np.allclose(losses, shuffled)
    with pytest.raises(ValueError, match=r"ElboObjective: the model is conditional \(num_classes=10\), so the batch "
                                         r"must be \(images, labels\)"):
        objectives.ElboObjective()(cvae, (IMAGES,), key=KEY, beta=1.0)


def test_reconstruction_objective_is_the_distortion_of_the_code():
    ae = models.Autoencoder(models.VAEConfig(latent_dim=3, hidden_dims=(32,)), rngs=nnx.Rngs(0))
    losses, metrics = objectives.ReconstructionObjective()(ae, (IMAGES,))
    assert losses.shape == (32,) and set(metrics) == {"distortion"}
    np.testing.assert_allclose(losses, -ae.log_likelihood(IMAGES, ae.encode(IMAGES)), rtol=1e-6)
    assert bool(jnp.all(losses > 0))  # a Bernoulli cross-entropy on grey pixels


def test_reconstruction_objective_of_a_perfect_autoencoder_is_zero():
    # Binary images and a decoder that outputs +-30 logits at the right pixels: -log p(x|z) ~ 0.
    class Perfect(nnx.Module):
        config = models.VAEConfig()

        def encode(self, x):
            return x.reshape(x.shape[0], -1)

        def log_likelihood(self, x, z):
            return elbo.bernoulli_log_likelihood(jnp.where(z > 0.5, 30.0, -30.0).reshape(x.shape), x)

    binary = (IMAGES > 0.5).astype(jnp.float32)
    losses, _ = objectives.ReconstructionObjective()(Perfect(), (binary,))
    assert float(jnp.max(losses)) < 784 * 1e-12


def test_reconstruction_objective_with_squared_error_known_answer():
    # A fixed-variance Gaussian likelihood: -log p(x|z) = sum (x - mean)^2 / (2 s^2) + (D / 2) log(2 pi s^2).
    ae = models.Autoencoder(models.VAEConfig(latent_dim=3, hidden_dims=(32,), likelihood="gaussian",
                                             gaussian_variance="fixed", gaussian_std=0.5), rngs=nnx.Rngs(0))
    losses, _ = objectives.ReconstructionObjective()(ae, (IMAGES,))
    means = np.asarray(ae.decoder(ae.encode(IMAGES)), np.float64).reshape(32, -1)
    x = np.asarray(IMAGES, np.float64).reshape(32, -1)
    expected = np.sum((x - means) ** 2, axis=1) / (2 * 0.25) + 784 / 2 * np.log(2 * np.pi * 0.25)
    np.testing.assert_allclose(losses, expected, rtol=1e-5)


class FixedLogits(nnx.Module):
    def __init__(self, logits):
        self.logits = nnx.Variable(logits)

    def __call__(self, x):
        return self.logits[...]


def test_classification_objective_known_answers():
    labels = jnp.array([0, 2, 1])
    perfect = FixedLogits(50.0 * jax.nn.one_hot(labels, 3))
    losses, metrics = objectives.ClassificationObjective()(perfect, (jnp.zeros((3, 1)), labels))
    assert losses.shape == (3,) and set(metrics) == {"cross_entropy", "accuracy"}
    assert float(jnp.max(losses)) < 1e-20
    np.testing.assert_array_equal(metrics["accuracy"], [1.0, 1.0, 1.0])

    uniform = FixedLogits(jnp.zeros((3, 3)))
    losses, _ = objectives.ClassificationObjective()(uniform, (jnp.zeros((3, 1)), labels))
    np.testing.assert_allclose(losses, np.log(3.0), rtol=1e-6)

    logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 5.0]])
    losses, metrics = objectives.ClassificationObjective()(FixedLogits(logits), (jnp.zeros((3, 1)), labels))
    expected = [np.log(np.sum(np.exp(row))) - row[y] for row, y in zip(np.asarray(logits, np.float64), [0, 2, 1])]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    np.testing.assert_array_equal(metrics["accuracy"], [1.0, 0.0, 0.0])


def test_classification_objective_on_the_kit_classifier_and_bad_batches():
    classifier = models.Classifier(models.ClassifierConfig(channels=(4,), hidden_dim=8), rngs=nnx.Rngs(0))
    losses, metrics = objectives.ClassificationObjective()(classifier, MNIST.arrays)
    assert losses.shape == metrics["accuracy"].shape == (32,)
    with pytest.raises(ValueError, match=r"ClassificationObjective: the batch must be \(images, labels\); got 1"):
        objectives.ClassificationObjective()(classifier, (IMAGES,))
    with pytest.raises(ValueError, match=r"labels must have shape \(32,\), one per image; got \(32, 1\)"):
        objectives.ClassificationObjective()(classifier, (IMAGES, LABELS[:, None]))


def test_only_the_elbo_takes_key_and_beta():
    def keywords(objective):
        return {name for name, p in inspect.signature(objective).parameters.items() if p.kind == p.KEYWORD_ONLY}

    assert keywords(objectives.ElboObjective()) == {"key", "beta"}
    assert keywords(objectives.ReconstructionObjective()) == set()
    assert keywords(objectives.ClassificationObjective()) == set()


def test_objectives_trace_under_jit():
    vae = models.make_vae(models.VAEConfig(latent_dim=3, hidden_dims=(32,), num_classes=10))
    step = nnx.jit(lambda m, batch, key: objectives.ElboObjective(free_bits=0.5, free_bits_per="minibatch")(
        m, batch, key=key, beta=jnp.float32(1.0)))
    losses, metrics = step(vae, (IMAGES, LABELS), KEY)
    assert losses.shape == (32,) and bool(jnp.all(jnp.isfinite(losses)))


def test_a_dataset_s_arrays_are_its_images_and_labels():
    images, labels = MNIST.arrays
    assert images is MNIST.images and labels is MNIST.labels
