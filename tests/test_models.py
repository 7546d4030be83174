"""Model shapes, pinned parameter counts, and one training step per model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaekit import datasets, models, train

BATCH = jnp.asarray(datasets.load("mnist", "test").images[:64])

CONFIGS = {
    "mlp": (models.VAEConfig(), 652_824),
    "mlp-two-hidden": (models.VAEConfig(hidden_dims=(512, 256), latent_dim=2), 1_068_820),
    "conv": (models.VAEConfig(architecture="conv", latent_dim=16), 262_084),
    "gaussian-fixed": (models.VAEConfig(likelihood="gaussian", gaussian_variance="fixed"), 652_824),
    "gaussian-learned": (models.VAEConfig(likelihood="gaussian", gaussian_variance="learned"), 652_825),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count_is_pinned(name):
    config, expected = CONFIGS[name]
    assert models.count_parameters(models.make_vae(config)) == expected


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


@pytest.mark.parametrize("name", CONFIGS)
def test_one_training_step_lowers_the_loss_on_its_batch(name):
    config, _ = CONFIGS[name]
    model = models.make_vae(config)
    data = (np.asarray(BATCH),)
    objective = train.ElboObjective()
    before = float(jnp.mean(objective(model, data, key=jax.random.key(0), beta=jnp.float32(1.0))[0]))
    result = train.fit(model, data, config=train.TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3),
                       progress=False)
    after = float(jnp.mean(objective(result.model, data, key=jax.random.key(0), beta=jnp.float32(1.0))[0]))
    assert np.isfinite(after) and after < before


def test_same_seed_same_parameters_and_different_seed_different():
    leaves = lambda seed: jax.tree.leaves(models.make_vae(models.VAEConfig(latent_dim=3), seed=seed))
    assert all(np.array_equal(a, b) for a, b in zip(leaves(0), leaves(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(0), leaves(1)))


def test_config_round_trips_through_a_dict():
    config = models.VAEConfig(architecture="conv", latent_dim=7, conv_channels=(8, 16), upsampling="repeat")
    assert models.VAEConfig.from_dict(config.to_dict()) == config
