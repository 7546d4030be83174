r"""Training: one step of gradient descent, and ``fit``, which repeats it over epochs.

An *objective* gives a loss per example; training lowers their mean over a batch
:math:`B` by moving the parameters :math:`\theta` along an optimizer's update of the gradient,

.. math::

   g = \nabla_\theta \frac{1}{|B|} \sum_{x \in B} \ell_\theta(x), \qquad
   \theta \leftarrow \theta + \operatorname{update}(g),

where ``update`` is Adam by default (Kingma & Ba, 2015) or any Optax transformation.
:func:`train_step` is that whole idea in a dozen lines. :func:`fit` runs the same
``train_step`` over shuffled batches for several epochs; *how* it runs them fast (whole
epochs compiled as one loop, batches split over devices and processes) is in the private
``vaekit._engine`` and never changes *what* is computed.

References:
  Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vaekit import _engine, batched, elbo
from vaekit.datasets import Dataset
from vaekit.models import Config, ConfigError, check_positive_int
from vaekit.elbo import FREE_BITS_PER
from vaekit.objectives import ElboObjective

LOOPS = ("auto", "scan", "step")
Batch = tuple[jax.Array, ...]
Metrics = dict[str, jax.Array]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the model keeps the parameters of the last finite epoch."""


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How to train.

    Attributes:
      epochs: passes over the training set.
      batch_size: examples per update; a multiple of the number of devices.
      learning_rate: step size of the default optimizer, Adam.
      beta: weight :math:`\\beta \\ge 0` of the rate (KL) in the ELBO objective.
      warmup_epochs: KL warm-up: :math:`\\beta` rises linearly from 0 to ``beta`` over
        this many epochs (0 disables it), so the decoder learns before the prior pulls.
      free_bits: nats per latent dimension below which the KL is not penalised.
      free_bits_per: ``"example"`` (each example's KL per dimension is floored) or
        ``"minibatch"`` (the batch mean of each dimension is, as in Kingma et al., 2016).
      seed: seeds shuffling, reparameterization and dynamic binarization.
      loop: ``"auto"``, ``"scan"`` (a whole epoch compiled as one loop) or ``"step"`` (a
        compiled call per batch); they compute the same training at different speeds.
      eval_batch_size: examples per compiled evaluation call.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    free_bits_per: str = "example"
    seed: int = 0
    loop: str = "auto"
    eval_batch_size: int = batched.BATCH_SIZE

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("learning_rate", "beta", "warmup_epochs", "free_bits"):
            value = getattr(self, name)
            positive = name == "learning_rate"
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0 or (positive and value == 0)):
                raise ConfigError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}; got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}")
        for name, allowed in (("loop", LOOPS), ("free_bits_per", FREE_BITS_PER)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {getattr(self, name)!r}")


class Objective(Protocol):
    """A loss: per-example values to minimise, and per-example metrics to report.

    ``key`` (randomness, e.g. the reparameterization noise) and ``beta`` (the weight of
    the KL) are optional: an objective receives only the keywords its signature names.
    """

    def __call__(self, model: nnx.Module, batch: Batch, *, key: jax.Array,
                 beta: jax.Array) -> tuple[jax.Array, Metrics]: ...


def _keywords(objective) -> frozenset[str]:
    parameters = inspect.signature(objective).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset({"key", "beta"})
    return frozenset(p.name for p in parameters if p.name in ("key", "beta"))


def _name(objective) -> str:
    return getattr(objective, "__qualname__", type(objective).__name__)


def objective_values(objective: Objective, model: nnx.Module, batch: Batch, *, key: jax.Array,
                     beta: float | jax.Array) -> tuple[jax.Array, Metrics]:
    """``objective(model, batch, ...)`` with the keywords it takes, checked to be per example.

    Raises:
      ValueError: the losses or a metric are not of shape ``(batch,)``, naming the objective.
    """
    given = {"key": key, "beta": beta}
    losses, metrics = objective(model, batch, **{k: v for k, v in given.items() if k in _keywords(objective)})
    expected = (batch[0].shape[0],)
    for what, value in (("losses", losses), *((f"metric {name!r}", v) for name, v in metrics.items())):
        if jnp.shape(value) != expected:
            raise ValueError(f"objective {_name(objective)} must return per-example {what} of shape {expected}; "
                             f"got shape {jnp.shape(value)} (return one value per example, not their mean)")
    return losses, metrics


def uses_beta(objective: Objective) -> bool:
    """Whether ``objective`` takes ``beta`` (and so whether the history reports it)."""
    return "beta" in _keywords(objective)


@functools.partial(nnx.jit, static_argnames=("objective", "optimizer"))
def train_step(model: nnx.Module, optimizer_state: optax.OptState, batch: Batch, *, key: jax.Array,
               beta: float | jax.Array = 1.0, objective: Objective,
               optimizer: optax.GradientTransformation) -> tuple[optax.OptState, jax.Array, Metrics]:
    """One step of training: the mean loss of a batch, its gradient, and the optimizer's update.

    Only :class:`flax.nnx.Param` variables are differentiated and updated; other state
    (a fixed variance, BatchNorm statistics, RNG counters) keeps what the forward pass
    wrote. ``model`` is updated in place.

    Args:
      model: the model to train.
      optimizer_state: ``optimizer.init(nnx.state(model, nnx.Param))`` at first, then
        what the previous step returned.
      batch: a tuple of arrays with a common first axis, e.g. ``(images, labels)``.
      key: randomness of this step (fresh for every step).
      beta: the KL weight, for objectives that take it.
      objective: the loss (see :class:`Objective`).
      optimizer: an Optax transformation, e.g. ``optax.adam(1e-3)``.

    Returns:
      ``(optimizer_state, losses, metrics)``, the last two per example.

    Example:
      >>> from vaekit import datasets, models
      >>> model = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> optimizer = optax.adam(1e-3)
      >>> state = optimizer.init(nnx.state(model, nnx.Param))
      >>> images = datasets.load("mnist", "test").images[:32]
      >>> state, losses, metrics = train_step(model, state, (images,), key=jax.random.key(0),
      ...                                     objective=ElboObjective(), optimizer=optimizer)
      >>> losses.shape, sorted(metrics)
      ((32,), ['distortion', 'neg_elbo', 'rate'])
    """

    def mean_loss(model):
        losses, metrics = objective_values(objective, model, batch, key=key, beta=beta)
        return jnp.mean(losses), (losses, metrics)

    gradients, (losses, metrics) = nnx.grad(mean_loss, has_aux=True)(model)
    params = nnx.state(model, nnx.Param)
    updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
    nnx.update(model, optax.apply_updates(params, updates))
    return optimizer_state, losses, metrics


class TrainResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      model: the trained model (the same object that was passed in, updated).
      opt_state: the optimizer's state, to resume training or save a checkpoint.
      history: one dict per epoch: ``epoch``, ``beta`` (for objectives that take it),
        ``train_<metric>``, ``test_<metric>`` (means per example, in nats for the ELBO
        terms), ``images_per_s`` and ``seconds``.
      compile_seconds: time spent compiling the update and evaluation.
    """

    model: nnx.Module
    opt_state: Any
    history: list[dict[str, float]]
    compile_seconds: float


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with the configured learning rate (Kingma & Ba, 2015): ``fit``'s default optimizer."""
    return optax.adam(config.learning_rate)


def beta_schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    r""":math:`\beta` at each (0-based) step: ``config.beta``, or a linear warm-up to it.

    .. math::

       \beta_t = \beta \cdot \min\Big(1, \frac{t + 1}{\text{warmup\_epochs} \cdot \text{steps\_per\_epoch}}\Big).
    """

    def beta_at(step: jax.Array) -> jax.Array:
        if config.warmup_epochs == 0:
            return jnp.float32(config.beta)
        ramp = (step + 1).astype(jnp.float32) / (config.warmup_epochs * steps_per_epoch)
        return config.beta * jnp.minimum(ramp, 1.0)

    return beta_at


def as_arrays(data: Dataset | Sequence[np.ndarray], *, name: str) -> tuple[np.ndarray, ...]:
    """The arrays of a dataset: ``(images, labels)`` for a :class:`Dataset`, else the sequence itself."""
    arrays = data.arrays if isinstance(data, Dataset) else tuple(data)
    if not arrays:
        raise ValueError(f"{name} holds no arrays")
    n = arrays[0].shape[0]
    for a in arrays:
        if a.shape[0] != n:
            raise ValueError(f"{name}: arrays have different lengths {[x.shape[0] for x in arrays]}")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return arrays


def _check_images(model: nnx.Module, images: np.ndarray, *, name: str) -> None:
    expected = getattr(getattr(model, "config", None), "image_shape", None)
    if expected is not None and tuple(images.shape[1:]) != tuple(expected):
        raise ValueError(f"{name} images have shape {tuple(images.shape[1:])}, the model expects {tuple(expected)}")
    if images.dtype != np.float32:
        raise ValueError(f"{name} images must be float32; got {images.dtype}")


def fit(
    model: nnx.Module,
    train_data: Dataset | Sequence[np.ndarray],
    test_data: Dataset | Sequence[np.ndarray] | None = None,
    config: TrainConfig = TrainConfig(),
    *,
    objective: Objective | None = None,
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    first_epoch: int = 1,
    progress: bool | Callable[[int, int], None] = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains ``model`` in place, ``config.epochs`` passes of :func:`train_step` over shuffled batches.

    Runs unchanged on one device, on several, and on several processes started with
    ``jax.distributed.initialize`` (each process passes the same data; every process
    ends with the same parameters).

    Args:
      model: an NNX module; its :class:`flax.nnx.Param` are trained, its other state is
        carried through each step (and updated where the module updates it).
      train_data: a :class:`~vaekit.datasets.Dataset`, whose ``(images, labels)`` reach the
        objective (a ``"dynamic"`` one is re-binarized on every epoch), or a sequence of
        arrays with a common first axis, e.g. ``(images, masks)``.
      test_data: evaluated after each epoch (same form), or ``None``.
      config: a :class:`TrainConfig`.
      objective: the loss; the (β-)ELBO with ``config.free_bits`` by default.
      optimizer: any Optax ``GradientTransformation`` (SGD, a schedule, clipping...);
        Adam with ``config.learning_rate`` by default.
      opt_state: the optimizer's state to resume from; fresh if ``None``.
      first_epoch: number of the first epoch (to resume a schedule).
      progress: show a progress bar (``tqdm.auto``: terminal or notebook), or a callable
        ``(steps_done, total_steps)`` that reports progress itself.
      on_epoch_end: called with each epoch's history entry.

    Returns:
      A :class:`TrainResult`. The same seed, data and config give the same history
      (except the timings ``images_per_s`` and ``seconds``).

    Raises:
      TrainingDivergedError: naming the epoch and step where the loss stopped being
        finite; ``model`` then holds the parameters of the last finite epoch.

    Example:
      >>> from vaekit import datasets, models
      >>> data = datasets.load("mnist", "train").take(256)
      >>> vae = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> result = fit(vae, data, config=TrainConfig(epochs=1, batch_size=64), progress=False)
      >>> sorted(result.history[0])[:3]
      ['beta', 'epoch', 'images_per_s']
    """
    if objective is None:
        objective = ElboObjective(free_bits=config.free_bits, free_bits_per=config.free_bits_per)
    optimizer = optimizer if optimizer is not None else make_optimizer(config)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation (e.g. optax.sgd(0.1)); "
                        f"got {type(optimizer).__name__}")
    train_arrays = as_arrays(train_data, name="train_data")
    _check_images(model, train_arrays[0], name="train_data")
    test_arrays = None
    if test_data is not None:
        test_arrays = as_arrays(test_data, name="test_data")
        _check_images(model, test_arrays[0], name="test_data")
    n = train_arrays[0].shape[0]
    devices = jax.device_count()
    if config.batch_size > n:
        raise ConfigError(f"batch_size ({config.batch_size}) is larger than the training set ({n} examples)")
    if config.batch_size % devices or config.eval_batch_size % devices:
        raise ConfigError(
            f"batch_size ({config.batch_size}) and eval_batch_size ({config.eval_batch_size}) must be multiples "
            f"of the number of devices ({devices})"
        )
    check_positive_int("first_epoch", first_epoch)
    steps_per_epoch = n // config.batch_size
    try:
        run = _engine.fit(
            model, train_arrays, test_arrays,
            train_step=train_step, objective_values=objective_values, objective=objective, optimizer=optimizer,
            opt_state=opt_state, beta_at=beta_schedule(config, steps_per_epoch), eval_beta=config.beta,
            reports_beta=uses_beta(objective), epochs=config.epochs, batch_size=config.batch_size,
            eval_batch_size=config.eval_batch_size, seed=config.seed, loop=config.loop, first_epoch=first_epoch,
            binarize_dynamically=isinstance(train_data, Dataset) and train_data.binarization == "dynamic",
            progress=progress, on_epoch_end=on_epoch_end,
        )
    except _engine.Diverged as d:
        raise TrainingDivergedError(
            f"the loss became {d.value} at epoch {d.epoch}, step {d.step + 1} of {steps_per_epoch}: "
            f"lower the learning rate (now {config.learning_rate} unless a custom optimizer was given) or check "
            f"the data; the model keeps the parameters of epoch {d.epoch - 1}"
        ) from None
    return TrainResult(model=model, opt_state=run.opt_state, history=run.history, compile_seconds=run.compile_seconds)


def _is_binary(images: np.ndarray) -> bool:
    return bool(np.all((images == 0) | (images == 1)))


def evaluate(
    model: nnx.Module,
    data: Dataset | Sequence[np.ndarray],
    *,
    key: jax.Array,
    num_samples: int = 0,
    batch_size: int = batched.BATCH_SIZE,
    chunk_size: int = 100,
    progress: bool | Callable[[int, int], None] = False,
) -> dict[str, float]:
    """Means over a dataset of the ELBO terms and, optionally, of the IWAE bound.

    What the IWAE figure means depends on the data. On binary pixels a Bernoulli decoder
    is a distribution over images, and :math:`-\\mathcal{L}_k` estimates
    :math:`-\\log p(x)`: it is reported as ``iwae_nll``. On grey pixels the same formula
    is a cross-entropy against grey targets, not the likelihood of any distribution over
    grey images: it is reported as ``iwae_bce`` (compare it only with other such figures).

    Args:
      model: a VAE (a conditional one takes the dataset's labels as its condition).
      data: a :class:`~vaekit.datasets.Dataset` or ``(images,)`` / ``(images, labels)``.
      key: PRNG key.
      num_samples: :math:`k` of the IWAE bound; 0 skips it.
      batch_size: images per compiled call.
      chunk_size: importance samples held in memory at once.
      progress: a progress bar over the batches, or a ``(done, total)`` callable.

    Returns:
      ``neg_elbo``, ``rate``, ``distortion`` and, if asked, ``iwae_nll`` (binary data,
      Bernoulli decoder, or any data with a Gaussian decoder) or ``iwae_bce``; nats per image.
    """
    arrays = as_arrays(data, name="data")
    _check_images(model, arrays[0], name="data")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0 (0 skips the IWAE bound); got {num_samples!r}")
    check_positive_int("batch_size", batch_size)
    check_positive_int("chunk_size", chunk_size)
    config = getattr(model, "config", None)
    conditional = getattr(config, "num_classes", None) is not None
    if conditional and len(arrays) < 2:
        raise ValueError("data: a conditional VAE needs labels; pass a Dataset or (images, labels)")
    grey = getattr(config, "likelihood", "bernoulli") == "bernoulli" and not _is_binary(arrays[0])
    iwae_name = "iwae_bce" if grey else "iwae_nll"

    values = _ElboScores(conditional, num_samples, chunk_size, iwae_name)
    return _engine.score(model, values, arrays, batch_size=min(batch_size, arrays[0].shape[0]), key=key,
                         progress=progress)


@dataclasses.dataclass(frozen=True)
class _ElboScores:
    """What :func:`evaluate` scores per image; equal settings reuse one compiled function."""

    conditional: bool
    num_samples: int
    chunk_size: int
    iwae_name: str

    def __call__(self, model, batch, key):
        condition = batch[1] if self.conditional else None
        elbo_key, iwae_key = jax.random.split(key)
        terms = elbo.elbo_terms(model, batch[0], key=elbo_key, condition=condition)
        out = {"neg_elbo": terms.neg_elbo, "rate": terms.rate, "distortion": terms.distortion}
        if self.num_samples:
            out[self.iwae_name] = -elbo.iwae_bound(model, batch[0], key=iwae_key, num_samples=self.num_samples,
                                                   chunk_size=self.chunk_size, condition=condition)
        return out
