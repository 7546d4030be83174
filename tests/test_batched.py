"""Whole-dataset calls in padded, compiled batches: the same numbers as one unbatched call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vaekit as vk
from vaekit import batched, datasets, models

DATA = datasets.load("mnist", "test").take(250)  # not a multiple of the batch sizes below
VAE = models.make_vae(models.VAEConfig(latent_dim=4, hidden_dims=(32,)))
CVAE = models.make_vae(models.VAEConfig(latent_dim=4, hidden_dims=(32,), num_classes=10))
AE = models.Autoencoder(models.VAEConfig(latent_dim=4, hidden_dims=(32,)), rngs=nnx.Rngs(0))
CLOSE = {"rtol": 1e-5, "atol": 1e-6}


def test_batch_size_is_the_kit_default():
    assert batched.BATCH_SIZE == 1000
    assert vk.encode is batched.encode and vk.reconstruct is batched.reconstruct and vk.decode is batched.decode


@pytest.mark.parametrize("batch_size", [64, 100, 250, 1000])
def test_padded_batches_equal_one_unbatched_call(batch_size):
    means, log_vars = batched.encode(VAE, DATA, batch_size=batch_size)
    expected_means, expected_log_vars = VAE.encode(jnp.asarray(DATA.images))
    assert isinstance(means, np.ndarray) and means.shape == (250, 4)
    np.testing.assert_allclose(means, expected_means, **CLOSE)
    np.testing.assert_allclose(log_vars, expected_log_vars, **CLOSE)
    images = batched.reconstruct(VAE, DATA.images, batch_size=batch_size)
    assert isinstance(images, np.ndarray) and images.shape == (250, 28, 28, 1)
    np.testing.assert_allclose(images, VAE.reconstruct(jnp.asarray(DATA.images)), **CLOSE)
    z = np.random.default_rng(0).standard_normal((250, 4)).astype(np.float32)
    np.testing.assert_allclose(batched.decode(VAE, z, batch_size=batch_size), VAE.decode(jnp.asarray(z)), **CLOSE)


TRACED_SHAPES = []


class TracedVAE(models.VAE):
    """A VAE that records the batch shape each time its ``encode`` is traced (compiled)."""

    def encode(self, x, *, condition=None):
        TRACED_SHAPES.append(tuple(x.shape))
        return super().encode(x, condition=condition)


def test_one_compilation_per_batch_shape():
    model = TracedVAE(models.VAEConfig(latent_dim=5, hidden_dims=(7,)), rngs=nnx.Rngs(0))
    batched.encode(model, DATA, batch_size=100)  # batches of 100, 100 and 50 padded to 100
    assert TRACED_SHAPES == [(100, 28, 28, 1)]
    batched.encode(model, DATA.take(150), batch_size=100)  # same shape: compiled already
    again = TracedVAE(models.VAEConfig(latent_dim=5, hidden_dims=(7,)), rngs=nnx.Rngs(1))
    batched.encode(again, DATA, batch_size=100)  # another model of the same architecture
    assert TRACED_SHAPES == [(100, 28, 28, 1)]
    batched.encode(model, DATA.take(30), batch_size=100)  # fewer examples than a batch: one batch of 30
    assert TRACED_SHAPES == [(100, 28, 28, 1), (30, 28, 28, 1)]


def test_autoencoder_codes_have_no_variance():
    codes, log_vars = batched.encode(AE, DATA, batch_size=64)
    assert log_vars is None
    np.testing.assert_allclose(codes, AE.encode(jnp.asarray(DATA.images)), **CLOSE)
    np.testing.assert_allclose(batched.reconstruct(AE, DATA, batch_size=64), AE.reconstruct(jnp.asarray(DATA.images)),
                               **CLOSE)


def test_a_dataset_s_labels_condition_a_conditional_model():
    labels = jnp.asarray(DATA.labels)
    means, _ = batched.encode(CVAE, DATA, batch_size=64)
    np.testing.assert_allclose(means, CVAE.encode(jnp.asarray(DATA.images), condition=labels)[0], **CLOSE)
    images = batched.reconstruct(CVAE, DATA, batch_size=64)
    np.testing.assert_allclose(images, CVAE.reconstruct(jnp.asarray(DATA.images), condition=labels), **CLOSE)
    other = batched.reconstruct(CVAE, DATA, condition=(DATA.labels + 1) % 10, batch_size=64)
    assert np.abs(other - images).max() > 1e-3  # an explicit condition replaces the dataset's labels


def test_one_label_for_all_codes():
    z = np.zeros((5, 4), np.float32)
    sevens = batched.decode(CVAE, z, condition=7)
    np.testing.assert_allclose(sevens, CVAE.decode(jnp.asarray(z), condition=jnp.full((5,), 7)), **CLOSE)
    assert np.abs(sevens - batched.decode(CVAE, z, condition=3)).max() > 1e-3


@pytest.mark.parametrize("call, message", [
    (lambda: batched.encode(CVAE, DATA.images),
     r"the model is conditional \(num_classes=10\): pass condition=, integer labels of shape \(250,\)"),
    (lambda: batched.decode(CVAE, np.zeros((3, 4), np.float32), condition=np.array([1, 2])),
     r"condition must be integer labels of shape \(3,\), one per example of z"),
    (lambda: batched.decode(CVAE, np.zeros((3, 4), np.float32), condition=np.array([1.0, 2.0, 3.0])),
     r"condition must be integer labels"),
    (lambda: batched.decode(CVAE, np.zeros((3, 4), np.float32), condition=10),
     r"condition labels must lie in \[0, num_classes\) = \[0, 10\); got labels from 10 to 10"),
    (lambda: batched.encode(VAE, DATA, condition=DATA.labels), r"this VAE is unconditional"),
    (lambda: batched.encode(VAE, np.zeros((0, 28, 28, 1), np.float32)), r"data must hold at least one example"),
    (lambda: batched.encode(VAE, DATA, batch_size=0), r"batch_size must be a positive integer; got 0"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_progress_bar_for_large_inputs_only(capsys):
    batched.encode(VAE, DATA, batch_size=100)  # 3 batches
    assert capsys.readouterr().err == ""
    batched.encode(VAE, DATA.take(batched.PROGRESS_MIN_BATCHES + 1), batch_size=1)
    assert "encoding" in capsys.readouterr().err
    batched.encode(VAE, DATA, batch_size=100, progress=True)
    assert "encoding" in capsys.readouterr().err
    batched.encode(VAE, DATA.take(batched.PROGRESS_MIN_BATCHES + 1), batch_size=1, progress=False)
    assert capsys.readouterr().err == ""


def test_any_model_with_encode_and_decode():
    class Halves(nnx.Module):  # not a kit model: code = mean of each image half, decode = a flat image
        def encode(self, x):
            flat = x.reshape(x.shape[0], -1)
            return jnp.stack([flat[:, :392].mean(axis=1), flat[:, 392:].mean(axis=1)], axis=1)

        def decode(self, z):
            return jnp.broadcast_to(jnp.mean(z, axis=1).reshape(-1, 1, 1, 1), (z.shape[0], 28, 28, 1))

    flat = DATA.images.reshape(250, -1)
    codes, log_vars = batched.encode(Halves(), DATA, batch_size=64)
    assert log_vars is None
    np.testing.assert_allclose(codes[:, 0], flat[:, :392].mean(axis=1), **CLOSE)
    np.testing.assert_allclose(batched.reconstruct(Halves(), DATA, batch_size=64)[:, 0, 0, 0], flat.mean(axis=1), **CLOSE)


def test_float64_codes_under_x64():
    with jax.enable_x64(True):
        decoded = batched.decode(VAE, np.zeros((3, 4)), batch_size=2)
    assert decoded.shape == (3, 28, 28, 1) and np.all(np.isfinite(decoded))
