"""Model shapes, pinned parameter counts, conditioning, and one training step per VAE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import datasets, models, objectives, train

MNIST = datasets.load("mnist", "test")
BATCH = jnp.asarray(MNIST.images[:64])
LABELS = jnp.asarray(MNIST.labels[:64])

CONFIGS = {
    "mlp": (models.VAEConfig(), 652_824),
    "mlp-two-hidden": (models.VAEConfig(hidden_dims=(512, 256), latent_dim=2), 1_068_820),
    "conv": (models.VAEConfig(architecture="conv", latent_dim=16), 262_084),
    "gaussian-fixed": (models.VAEConfig(likelihood="gaussian", gaussian_variance="fixed"), 652_824),
    "gaussian-learned": (models.VAEConfig(likelihood="gaussian", gaussian_variance="learned"), 652_825),
}

# Conditional: the one-hot label adds num_classes inputs to the encoder's first dense layer (MLP)
# or head (conv), and to the decoder's first dense layer. Autoencoder: a head of latent_dim
# outputs instead of 2 * latent_dim. Classifier: 3x3 conv + downsampling per block, dense 128.
NEW_MODELS = {
    "cvae-mlp": (lambda: models.VAE(models.VAEConfig(num_classes=10), rngs=nnx.Rngs(0)), 660_824),
    "cvae-conv": (lambda: models.VAE(models.VAEConfig(architecture="conv", latent_dim=16, num_classes=10),
                                     rngs=nnx.Rngs(0)), 293_764),
    "autoencoder-mlp": (lambda: models.Autoencoder(models.VAEConfig(), rngs=nnx.Rngs(0)), 644_804),
    "autoencoder-conv": (lambda: models.Autoencoder(models.VAEConfig(architecture="conv", latent_dim=16),
                                                    rngs=nnx.Rngs(0)), 211_892),
    "classifier": (lambda: models.Classifier(models.ClassifierConfig(), rngs=nnx.Rngs(0)), 503_658),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count_is_pinned(name):
    config, expected = CONFIGS[name]
    assert models.count_parameters(models.make_vae(config)) == expected


@pytest.mark.parametrize("name", NEW_MODELS)
def test_new_model_parameter_count_is_pinned(name):
    build, expected = NEW_MODELS[name]
    assert models.count_parameters(build()) == expected


def test_autoencoder_and_vae_differ_by_the_log_variance_head_only():
    for config in (models.VAEConfig(), models.VAEConfig(architecture="conv", latent_dim=16)):
        vae, ae = models.VAE(config, rngs=nnx.Rngs(0)), models.Autoencoder(config, rngs=nnx.Rngs(0))
        head_inputs = vae.encoder.head.in_features
        assert models.count_parameters(vae) - models.count_parameters(ae) == (head_inputs + 1) * config.latent_dim


@pytest.mark.parametrize("name", CONFIGS)
def test_shapes_and_ranges(name):
    config, _ = CONFIGS[name]
    model = models.make_vae(config)
    mean, log_var = model.encode(BATCH)
    assert mean.shape == log_var.shape == (64, config.latent_dim)
    images = model.decode(mean)
    assert images.shape == (64, 28, 28, 1)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert model.sample(5, key=jax.random.key(0)).shape == (5, 28, 28, 1)
    assert model.log_likelihood(BATCH, mean).shape == (64,)
    np.testing.assert_array_equal(model.reconstruct(BATCH), images)


@pytest.mark.parametrize("name", CONFIGS)
def test_one_training_step_lowers_the_loss_on_its_batch(name):
    config, _ = CONFIGS[name]
    model = models.make_vae(config)
    data = (np.asarray(BATCH),)
    objective = objectives.ElboObjective()
    before = float(jnp.mean(objective(model, data, key=jax.random.key(0), beta=jnp.float32(1.0))[0]))
    result = train.fit(model, data, config=train.TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3),
                       progress=False)
    after = float(jnp.mean(objective(result.model, data, key=jax.random.key(0), beta=jnp.float32(1.0))[0]))
    assert np.isfinite(after) and after < before


def test_same_seed_same_parameters_and_different_seed_different():
    leaves = lambda seed: jax.tree.leaves(models.make_vae(models.VAEConfig(latent_dim=3), seed=seed))
    assert all(np.array_equal(a, b) for a, b in zip(leaves(0), leaves(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(0), leaves(1)))


@pytest.mark.parametrize("config", [
    models.VAEConfig(architecture="conv", latent_dim=7, conv_channels=(8, 16), upsampling="repeat"),
    models.VAEConfig(latent_dim=3, num_classes=10),
    models.ClassifierConfig(num_classes=4, channels=(8,), hidden_dim=16, image_shape=(8, 8, 3)),
])
def test_config_round_trips_through_a_dict(config):
    assert type(config).from_dict(config.to_dict()) == config


def test_unknown_config_field_is_named():
    with pytest.raises(models.ConfigError, match="unknown ClassifierConfig fields: depth"):
        models.ClassifierConfig.from_dict({"depth": 3})


@pytest.mark.parametrize("make, message", [
    (lambda: models.VAEConfig(num_classes=0), "num_classes must be a positive integer; got 0"),
    (lambda: models.VAEConfig(num_classes=True), "num_classes must be a positive integer; got True"),
    (lambda: models.VAEConfig(latent_dim=2.0), "latent_dim must be a positive integer; got 2.0"),
    (lambda: models.ClassifierConfig(hidden_dim=-1), "hidden_dim must be a positive integer; got -1"),
    (lambda: models.ClassifierConfig(num_classes=0), "num_classes must be a positive integer; got 0"),
    (lambda: models.ClassifierConfig(channels=()), "channels must hold at least one size; got ()"),
    (lambda: models.ClassifierConfig(channels=(8, 8, 8)),
     "image_shape (28, 28) must be divisible by 2**len(channels) = 8"),
])
def test_bad_sizes_are_named(make, message):
    with pytest.raises(models.ConfigError) as raised:
        make()
    assert message in str(raised.value)


def test_check_positive_int_accepts_positive_ints_only():
    models.check_positive_int("size", 1)
    for bad in (0, -1, 1.0, True, "3", None):
        with pytest.raises(models.ConfigError, match=f"size must be a positive integer; got {bad!r}"):
            models.check_positive_int("size", bad)


# --------------------------------------------------------------------------- conditional VAE

@pytest.fixture(scope="module", params=["mlp", "conv"])
def cvae(request):
    return models.VAE(models.VAEConfig(architecture=request.param, latent_dim=4, num_classes=10), rngs=nnx.Rngs(0))


def test_conditional_vae_shapes(cvae):
    mean, log_var = cvae.encode(BATCH, condition=LABELS)
    assert mean.shape == log_var.shape == (64, 4)
    assert cvae.decode(mean, condition=LABELS).shape == (64, 28, 28, 1)
    assert cvae.log_likelihood(BATCH, mean, condition=LABELS).shape == (64,)
    assert cvae.reconstruct(BATCH, condition=LABELS).shape == (64, 28, 28, 1)
    assert cvae.sample(3, key=jax.random.key(0), condition=jnp.array([1, 2, 3])).shape == (3, 28, 28, 1)


def test_the_label_changes_the_decoded_image_and_the_posterior(cvae):
    z = jax.random.normal(jax.random.key(1), (5, 4))
    threes = cvae.decode(z, condition=jnp.full((5,), 3))
    sevens = cvae.decode(z, condition=jnp.full((5,), 7))
    assert float(jnp.max(jnp.abs(threes - sevens))) > 1e-3
    np.testing.assert_array_equal(threes, cvae.decode(z, condition=jnp.full((5,), 3)))
    mean_3, _ = cvae.encode(BATCH[:5], condition=jnp.full((5,), 3))
    mean_7, _ = cvae.encode(BATCH[:5], condition=jnp.full((5,), 7))
    assert float(jnp.max(jnp.abs(mean_3 - mean_7))) > 1e-4


def test_the_label_enters_through_its_own_one_hot_inputs():
    # The one-hot label is appended to the first layer's inputs: the encoder's after the 784
    # pixels, the decoder's after z. With the weights of those inputs zeroed, the label has no effect.
    model = models.VAE(models.VAEConfig(latent_dim=2, hidden_dims=(16,), num_classes=10), rngs=nnx.Rngs(0))
    encoder_first, decoder_first = model.encoder.hidden[0], model.decoder.layers[0]
    assert encoder_first.in_features == 784 + 10 and decoder_first.in_features == 2 + 10
    encoder_first.kernel[...] = encoder_first.kernel[...].at[784:].set(0.0)
    decoder_first.kernel[...] = decoder_first.kernel[...].at[2:].set(0.0)
    z = jax.random.normal(jax.random.key(0), (5, 2))
    np.testing.assert_array_equal(model.decode(z, condition=jnp.full((5,), 3)), model.decode(z, condition=jnp.full((5,), 7)))
    np.testing.assert_array_equal(model.encode(BATCH, condition=jnp.zeros((64,), jnp.int32))[0],
                                  model.encode(BATCH, condition=jnp.full((64,), 9))[0])


@pytest.mark.parametrize("call", [
    lambda m: m.encode(BATCH),
    lambda m: m.decode(jnp.zeros((2, 4))),
    lambda m: m.log_likelihood(BATCH, jnp.zeros((64, 4))),
    lambda m: m.reconstruct(BATCH),
    lambda m: m.sample(2, key=jax.random.key(0)),
])
def test_a_conditional_model_without_condition_raises_naming_it(cvae, call):
    with pytest.raises(ValueError, match=r"conditional \(num_classes=10\): pass condition="):
        call(cvae)


@pytest.mark.parametrize("condition, message", [
    (jnp.zeros((63,), jnp.int32), r"condition must be integer labels of shape \(64,\); got int32 of shape \(63,\)"),
    (jnp.zeros((64,), jnp.float32), r"condition must be integer labels of shape \(64,\); got float32"),
    (jnp.full((64,), 10), r"must lie in \[0, num_classes\) = \[0, 10\); got labels from 10 to 10"),
    (np.full((64,), -1), r"got labels from -1 to -1"),
])
def test_bad_conditions_are_named(cvae, condition, message):
    with pytest.raises(ValueError, match=message):
        cvae.encode(BATCH, condition=condition)


def test_an_unconditional_model_refuses_a_condition():
    model = models.make_vae(models.VAEConfig(latent_dim=2))
    with pytest.raises(ValueError, match=r"condition was given, but this VAE is unconditional \(num_classes=None\)"):
        model.encode(BATCH, condition=LABELS)


def test_the_condition_works_under_jit():
    model = models.VAE(models.VAEConfig(latent_dim=2, num_classes=10), rngs=nnx.Rngs(0))
    eager = model.reconstruct(BATCH, condition=LABELS)
    compiled = nnx.jit(lambda m, x, y: m.reconstruct(x, condition=y))(model, BATCH, LABELS)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- autoencoder

@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_autoencoder_code_is_deterministic_and_decodes_to_images(architecture):
    ae = models.Autoencoder(models.VAEConfig(architecture=architecture, latent_dim=3), rngs=nnx.Rngs(0))
    z = ae.encode(BATCH)
    assert isinstance(z, jax.Array) and z.shape == (64, 3)
    np.testing.assert_array_equal(ae.encode(BATCH), z)
    images = ae.reconstruct(BATCH)
    assert images.shape == (64, 28, 28, 1)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    np.testing.assert_array_equal(images, ae.decode(z))
    assert ae.log_likelihood(BATCH, z).shape == (64,)
    assert not hasattr(ae, "sample")


def test_conditional_autoencoder_takes_the_label():
    ae = models.Autoencoder(models.VAEConfig(latent_dim=3, num_classes=10), rngs=nnx.Rngs(0))
    z = ae.encode(BATCH, condition=LABELS)
    assert float(jnp.max(jnp.abs(ae.decode(z, condition=LABELS) - ae.decode(z, condition=(LABELS + 1) % 10)))) > 1e-3
    with pytest.raises(ValueError, match="condition"):
        ae.encode(BATCH)


# --------------------------------------------------------------------------- classifier

def test_classifier_logits_and_features():
    config = models.ClassifierConfig(num_classes=7, channels=(4, 8), hidden_dim=16)
    classifier = models.Classifier(config, rngs=nnx.Rngs(0))
    logits = classifier(BATCH)
    features = classifier.features(BATCH)
    assert logits.shape == (64, 7) and features.shape == (64, 16)
    assert float(features.min()) >= 0.0  # after a ReLU
    np.testing.assert_allclose(logits, features @ classifier.head.kernel[...] + classifier.head.bias[...][None], rtol=1e-5,
                               atol=1e-6)
    assert float(jnp.std(logits[:, 0])) > 0  # the logits depend on the image


def test_classifier_on_other_image_shapes():
    config = models.ClassifierConfig(num_classes=3, channels=(4, 4, 4), hidden_dim=8, image_shape=(32, 32, 3))
    assert models.Classifier(config, rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape == (2, 3)


def test_configs_nest_round_trip_through_json_and_hash_their_contents():
    import json

    from vaekit import zoo

    spec = zoo.PointSpec("mnist", models.VAEConfig(latent_dim=3, hidden_dims=(64, 32)), train.TrainConfig(beta=2.0))
    assert zoo.PointSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["model_config"]["hidden_dims"] == [64, 32]
    assert spec.fingerprint(version=1) == spec.fingerprint(version=1) != spec.fingerprint(version=2)
    other = zoo.PointSpec("mnist", models.VAEConfig(latent_dim=3, hidden_dims=(64, 32)), train.TrainConfig(beta=3.0))
    assert other.fingerprint(version=1) != spec.fingerprint(version=1)
