"""Whole-dataset calls: encode, reconstruct and decode thousands of images in compiled batches.

A model's own methods take one batch of JAX arrays. These take a whole
:class:`~vaekit.datasets.Dataset` or array, run it through one compiled function
``batch_size`` examples at a time, and return NumPy arrays::

    means, log_vars = vk.encode(vae, test)   # (N, latent_dim) each
    images = vk.reconstruct(vae, test)       # (N, 28, 28, 1), decoded posterior means
    images = vk.decode(vae, z)               # (len(z), 28, 28, 1)

The last batch is padded to the size of the others, so every batch has the same shape and
the function compiles once (per model architecture and batch size); the padding is
dropped from the result. A conditional model reads a :class:`~vaekit.datasets.Dataset`'s
labels as its condition, or takes ``condition=``. Any model with ``encode`` and ``decode``
works: a :class:`~vaekit.models.VAE`, whose ``encode`` gives ``(mean, log_var)``, or an
:class:`~vaekit.models.Autoencoder`, whose ``encode`` gives the code alone.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from vaekit import elbo
from vaekit.datasets import Dataset

BATCH_SIZE = 1000
"""Examples per compiled call: the one default evaluation batch size of the kit."""

PROGRESS_MIN_BATCHES = 10
"""With ``progress=None``, inputs of more batches than this show a progress bar."""


def point_code(encoded: tuple[jax.Array, jax.Array] | jax.Array) -> jax.Array:
    """The one code a model's ``encode`` output stands for: a VAE's posterior mean, an autoencoder's code.

    Example:
      >>> mean, log_var = np.zeros((2, 3)), np.ones((2, 3))
      >>> point_code((mean, log_var)) is mean, point_code(mean) is mean
      (True, True)
    """
    return encoded[0] if isinstance(encoded, tuple) else encoded


def _encode(model, x, condition):
    return model.encode(x, **elbo.condition_keyword(condition))


def _reconstruct(model, x, condition):
    code = point_code(model.encode(x, **elbo.condition_keyword(condition)))
    return model.decode(code, **elbo.condition_keyword(condition))


def _decode(model, z, condition):
    return model.decode(z, **elbo.condition_keyword(condition))


# The graph definition is static: models of one architecture share one compiled function
# per batch shape, and a second call (or a second model with the same config) compiles nothing.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(method: Callable, graphdef: nnx.GraphDef, state: nnx.State, inputs: jax.Array,
           condition: jax.Array | None) -> Any:
    return method(nnx.merge(graphdef, state), inputs, condition)


def _inputs_and_condition(model, data, condition, *, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``data`` as one array, and the labels a conditional model needs (a dataset's own by default)."""
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if isinstance(data, Dataset):
        if condition is None and num_classes is not None:
            condition = data.labels
        data = data.images
    inputs = np.asarray(data)
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example along its first axis; got shape {inputs.shape}")
    n = inputs.shape[0]
    if condition is None:
        if num_classes is not None:
            raise ValueError(f"the model is conditional (num_classes={num_classes}): pass condition=, "
                             f"integer labels of shape ({n},) or one label for all, or a Dataset with its labels")
        return inputs, None
    labels = np.asarray(condition)
    if labels.ndim == 0:
        labels = np.broadcast_to(labels, (n,))
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"condition must be integer labels of shape ({n},), one per example of {name}, "
                         f"or one integer label for all; got {labels.dtype} of shape {labels.shape}")
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"condition labels must lie in [0, num_classes) = [0, {num_classes}); "
                         f"got labels from {labels.min()} to {labels.max()}")
    return inputs, labels


def in_batches(method: Callable, model: nnx.Module, inputs: np.ndarray, condition: np.ndarray | None, *,
                batch_size: int, progress: bool | None, description: str) -> Any:
    """``method(model, batch, condition)`` over ``inputs`` in equal, padded batches, gathered into NumPy."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    n = inputs.shape[0]
    size = min(batch_size, n)
    starts = range(0, n, size)
    if progress is None:
        progress = len(starts) > PROGRESS_MIN_BATCHES
    graphdef, state = nnx.split(model)
    parts = []
    for start in tqdm(starts, desc=description, unit="batch", disable=not progress):
        batch = inputs[start : start + size]
        labels = None if condition is None else condition[start : start + size]
        real = batch.shape[0]
        if real < size:
            batch = np.concatenate([batch, np.zeros((size - real, *batch.shape[1:]), batch.dtype)])
            labels = None if labels is None else np.concatenate([labels, np.zeros(size - real, labels.dtype)])
        out = _apply(method, graphdef, state, batch, labels)
        parts.append(jax.tree.map(lambda a: np.asarray(a)[:real], out))
    return jax.tree.map(lambda *pieces: np.concatenate(pieces), *parts)


def encode(model: nnx.Module, data: Dataset | np.ndarray, *, condition: np.ndarray | int | None = None,
           batch_size: int = BATCH_SIZE, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The posterior of every example: means and log-variances of :math:`q_\\phi(z|x)`.

    Args:
      model: a VAE (or any model whose ``encode`` gives ``(mean, log_var)``), or an
        autoencoder (whose ``encode`` gives a code).
      data: a :class:`~vaekit.datasets.Dataset` or an array of images ``(N, height, width, channels)``.
      condition: labels ``(N,)`` (or one label for all) of a conditional model; by default
        a dataset's labels.
      batch_size: examples per compiled call.
      progress: a progress bar (``tqdm.auto``); ``None`` shows one for more than
        :data:`PROGRESS_MIN_BATCHES` batches.

    Returns:
      ``(means, log_vars)``, NumPy arrays ``(N, latent_dim)``; for an autoencoder
      ``(codes, None)``: a point has no variance.

    Example:
      >>> from vaekit import models
      >>> vae = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> means, log_vars = encode(vae, np.zeros((2500, 28, 28, 1), np.float32))
      >>> means.shape, log_vars.shape, type(means).__name__
      ((2500, 2), (2500, 2), 'ndarray')
    """
    inputs, labels = _inputs_and_condition(model, data, condition, name="data")
    encoded = in_batches(_encode, model, inputs, labels, batch_size=batch_size, progress=progress,
                          description="encoding")
    return encoded if isinstance(encoded, tuple) else (encoded, None)


def reconstruct(model: nnx.Module, data: Dataset | np.ndarray, *, condition: np.ndarray | int | None = None,
                batch_size: int = BATCH_SIZE, progress: bool | None = None) -> np.ndarray:
    """Every example decoded from its code: a VAE's posterior mean, an autoencoder's code.

    Args and batching as :func:`encode`.

    Returns:
      A NumPy array of images with the shape of the inputs, in ``[0, 1]``.
    """
    inputs, labels = _inputs_and_condition(model, data, condition, name="data")
    return in_batches(_reconstruct, model, inputs, labels, batch_size=batch_size, progress=progress,
                       description="reconstructing")


def decode(model: nnx.Module, z: np.ndarray, *, condition: np.ndarray | int | None = None,
           batch_size: int = BATCH_SIZE, progress: bool | None = None) -> np.ndarray:
    """The expected image :math:`\\mathbb{E}[x|z]` of every code.

    Args:
      model: any model with ``decode``.
      z: codes ``(N, latent_dim)``.
      condition: labels ``(N,)``, or one label for all, of a conditional model.
      batch_size: codes per compiled call.
      progress: as in :func:`encode`.

    Returns:
      A NumPy array ``(N, height, width, channels)`` in ``[0, 1]``.

    Example:
      >>> from vaekit import models
      >>> cvae = models.make_vae(models.VAEConfig(latent_dim=2, num_classes=10))
      >>> decode(cvae, np.zeros((4, 2), np.float32), condition=3).shape  # four threes
      (4, 28, 28, 1)
    """
    codes, labels = _inputs_and_condition(model, z, condition, name="z")
    return in_batches(_decode, model, codes, labels, batch_size=batch_size, progress=progress,
                       description="decoding")
