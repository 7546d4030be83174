"""Bad input gets an error that names the parameter and what is allowed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaekit import checkpoint, datasets, elbo, models, train

IMAGES = datasets.load("mnist", "test").images[:256]
MODEL = models.make_vae(models.VAEConfig(latent_dim=2, hidden_dims=(32,)))
KEY = jax.random.key(0)


def fit(data, first_epoch=1, **config):
    return train.fit(MODEL, data, config=train.TrainConfig(**{"epochs": 1, "batch_size": 64, **config}),
                     first_epoch=first_epoch, progress=False)


CASES = {
    "unknown dataset": (lambda: datasets.load("cifar10"), datasets.DatasetError,
                        "name must be one of 'fashion-mnist', 'mnist'; got 'cifar10'"),
    "unknown split": (lambda: datasets.load("mnist", "validation"), datasets.DatasetError,
                      "split must be one of 'train', 'test'; got 'validation'"),
    "unknown binarization": (lambda: datasets.load("mnist", binarization="otsu"), datasets.DatasetError,
                             "binarization must be one of None, 'static', 'dynamic'; got 'otsu'"),
    "bad data folder": (lambda: datasets.load("mnist", data_dir="/nonexistent"), datasets.DatasetError,
                        "images-idx3-ubyte.gz: file not found"),
    "latent 0": (lambda: models.VAEConfig(latent_dim=0), models.ConfigError,
                 "latent_dim must be a positive integer; got 0"),
    "latent negative": (lambda: models.VAEConfig(latent_dim=-3), models.ConfigError,
                        "latent_dim must be a positive integer; got -3"),
    "latent float": (lambda: models.VAEConfig(latent_dim=2.5), models.ConfigError,
                     "latent_dim must be a positive integer; got 2.5"),
    "unknown architecture": (lambda: models.VAEConfig(architecture="rnn"), models.ConfigError,
                             "architecture must be one of 'mlp', 'conv'; got 'rnn'"),
    "unknown likelihood": (lambda: models.VAEConfig(likelihood="poisson"), models.ConfigError,
                           "likelihood must be one of 'bernoulli', 'gaussian'; got 'poisson'"),
    "zero hidden width": (lambda: models.VAEConfig(hidden_dims=(400, 0)), models.ConfigError,
                          "hidden_dims must be positive integers; got (400, 0)"),
    "non-positive std": (lambda: models.VAEConfig(likelihood="gaussian", gaussian_std=0.0), models.ConfigError,
                         "gaussian_std must be > 0; got 0.0"),
    "conv size not divisible": (lambda: models.VAEConfig(architecture="conv", conv_channels=(8, 8, 8)),
                                models.ConfigError, "image_shape (28, 28) must be divisible by 2**len(conv_channels) = 8"),
    "negative beta": (lambda: train.TrainConfig(beta=-0.5), models.ConfigError,
                      "beta must be a finite number >= 0; got -0.5"),
    "NaN beta": (lambda: train.TrainConfig(beta=float("nan")), models.ConfigError,
                 "beta must be a finite number >= 0; got nan"),
    "zero learning rate": (lambda: train.TrainConfig(learning_rate=0.0), models.ConfigError,
                           "learning_rate must be a finite number > 0; got 0.0"),
    "zero epochs": (lambda: train.TrainConfig(epochs=0), models.ConfigError,
                    "epochs must be a positive integer; got 0"),
    "unknown loop": (lambda: train.TrainConfig(loop="fast"), models.ConfigError,
                     "loop must be one of 'auto', 'scan', 'step'; got 'fast'"),
    "wrong image shape": (lambda: fit((np.zeros((256, 32, 32, 1), np.float32),)), ValueError,
                          "train_data images have shape (32, 32, 1), the model expects (28, 28, 1)"),
    "float64 images": (lambda: fit((IMAGES.astype(np.float64),)), ValueError,
                       "train_data images must be float32; got float64"),
    "NaN in images": (lambda: fit((np.where(IMAGES > 0.5, np.nan, IMAGES).astype(np.float32),)), ValueError,
                      "train_data contains NaN or infinite values"),
    "batch larger than data": (lambda: fit((IMAGES,), batch_size=1024), models.ConfigError,
                               "batch_size (1024) is larger than the training set (256 examples)"),
    "mismatched array lengths": (lambda: fit((IMAGES, np.zeros(10))), ValueError,
                                 "train_data: arrays have different lengths [256, 10]"),
    "KL shapes differ": (lambda: elbo.gaussian_kl(jnp.zeros((4, 2)), jnp.zeros((4, 3))), ValueError,
                         "mean and log_var must have the same shape; got (4, 2) and (4, 3)"),
    "likelihood shapes differ": (lambda: elbo.bernoulli_log_likelihood(jnp.zeros((4, 784)), jnp.zeros((4, 28, 28))),
                                 ValueError, "logits and x must have the same shape; got (4, 784) and (4, 28, 28)"),
    "elbo negative beta": (lambda: elbo.elbo_terms(MODEL, jnp.asarray(IMAGES[:4]), key=KEY, beta=-1.0), ValueError,
                           "beta must be >= 0; got -1.0"),
    "IWAE k = 0": (lambda: elbo.iwae_bound(MODEL, jnp.asarray(IMAGES[:4]), key=KEY, num_samples=0), ValueError,
                   "num_samples must be >= 1, got 0"),
    "evaluate negative k": (lambda: train.evaluate(MODEL, (IMAGES,), key=KEY, num_samples=-5), ValueError,
                            "num_samples must be an integer >= 0 (0 skips the IWAE bound); got -5"),
    "unknown free-bits variant": (lambda: train.TrainConfig(free_bits_per="pixel"), models.ConfigError,
                                  "free_bits_per must be one of 'example', 'minibatch'; got 'pixel'"),
    "first epoch 0": (lambda: fit((IMAGES,), first_epoch=0), models.ConfigError,
                      "first_epoch must be a positive integer; got 0"),
    "checkpoint path missing": (lambda: checkpoint.restore("/nonexistent/ck"), checkpoint.CheckpointError,
                                "/nonexistent/ck: not a vaekit checkpoint (no such folder)"),
    "optimizer state without its config": (lambda: checkpoint.save("/tmp/unused", MODEL, opt_state=()),
                                           checkpoint.CheckpointError, "opt_state needs its train_config"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_clear_error(case):
    action, error, message = CASES[case]
    with pytest.raises(error) as raised:
        action()
    assert message in str(raised.value)

