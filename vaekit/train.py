"""Compiled training: a functional step, whole-epoch scans, schedules, history and data parallelism.

The model is split once into a static graph and a pytree of parameters
(``nnx.split``); every update is then a pure function of arrays, compiled by
``jax.jit``. Two loops share that update:

* ``"scan"``: the whole epoch is one ``jax.lax.scan`` over device-resident batches:
  one dispatch per epoch, no Python per step (fastest for dense models);
* ``"step"``: one compiled call per batch (fastest where a scan body slows a
  convolution down); ``"auto"`` asks :func:`vaekit.nn.preferred_loop`.

Batches are sharded over all local devices along a ``"data"`` mesh axis and the
parameters replicated, so one device and many run the same code.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from vaekit import elbo, nn
from vaekit.datasets import Dataset
from vaekit.models import ConfigError

LOOPS = ("auto", "scan", "step")
Batch = tuple[jax.Array, ...]
Metrics = dict[str, jax.Array]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the model keeps the parameters of the last finite epoch."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      epochs: passes over the training set.
      batch_size: examples per update; a multiple of the number of devices.
      learning_rate: Adam's step size.
      beta: weight :math:`\\beta \\ge 0` of the rate (KL) in the loss.
      warmup_epochs: KL warm-up: :math:`\\beta` rises linearly from 0 to ``beta`` over
        this many epochs (0 disables it), so the decoder learns before the prior pulls.
      free_bits: nats per latent dimension below which the KL is not penalised.
      seed: seeds shuffling, reparameterization and dynamic binarization.
      loop: ``"auto"``, ``"scan"`` or ``"step"`` (see the module docstring).
      eval_batch_size: examples per compiled evaluation call.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    seed: int = 0
    loop: str = "auto"
    eval_batch_size: int = 1000

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        for name, low in (("learning_rate", 0.0), ("beta", 0.0), ("warmup_epochs", 0.0), ("free_bits", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < low or (
                name == "learning_rate" and value == 0
            ):
                bound = "> 0" if name == "learning_rate" else ">= 0"
                raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}")
        if self.loop not in LOOPS:
            raise ConfigError(f"loop must be one of {', '.join(map(repr, LOOPS))}; got {self.loop!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)


class Objective(Protocol):
    """A loss: per-example values to minimise, and per-example metrics to report."""

    def __call__(self, model: nnx.Module, batch: Batch, *, key: jax.Array, beta: jax.Array) -> tuple[jax.Array, Metrics]: ...


@dataclasses.dataclass(frozen=True)
class ElboObjective:
    """The (β-)ELBO of a VAE on ``batch[0]``; reports ``neg_elbo``, ``rate`` and ``distortion`` in nats."""

    free_bits: float = 0.0

    def __call__(self, model, batch: Batch, *, key: jax.Array, beta: jax.Array) -> tuple[jax.Array, Metrics]:
        terms = elbo.elbo_terms(model, batch[0], key=key, beta=beta, free_bits=self.free_bits)
        return terms.loss, {"neg_elbo": terms.neg_elbo, "rate": terms.rate, "distortion": terms.distortion}


class TrainResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      model: the trained model (the same object that was passed in, updated).
      opt_state: Adam's state, to resume training or save a checkpoint.
      history: one dict per epoch: ``epoch``, ``beta``, ``train_<metric>``, ``test_<metric>``
        (means per example, in nats for the ELBO terms), ``images_per_s`` and ``seconds``.
      compile_seconds: time spent compiling the update and evaluation.
    """

    model: nnx.Module
    opt_state: Any
    history: list[dict[str, float]]
    compile_seconds: float


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with the configured learning rate (Kingma & Ba, 2015)."""
    return optax.adam(config.learning_rate)


def data_mesh() -> Mesh:
    """A 1-D mesh over all local devices; batches split along its ``"data"`` axis."""
    return Mesh(np.asarray(jax.local_devices()), ("data",))


def as_arrays(data: Dataset | Sequence[np.ndarray], *, name: str) -> tuple[np.ndarray, ...]:
    """The arrays of a dataset: ``(images,)`` for a :class:`Dataset`, else the sequence itself."""
    arrays = (data.images,) if isinstance(data, Dataset) else tuple(data)
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
    config = getattr(model, "config", None)
    expected = getattr(config, "image_shape", None)
    if expected is not None and tuple(images.shape[1:]) != tuple(expected):
        raise ValueError(f"{name} images have shape {tuple(images.shape[1:])}, the model expects {tuple(expected)}")
    if images.dtype != np.float32:
        raise ValueError(f"{name} images must be float32; got {images.dtype}")


def _beta_at(config: TrainConfig, step: jax.Array, steps_per_epoch: int) -> jax.Array:
    if config.warmup_epochs == 0:
        return jnp.float32(config.beta)
    ramp = (step + 1).astype(jnp.float32) / (config.warmup_epochs * steps_per_epoch)
    return config.beta * jnp.minimum(ramp, 1.0)


def _step_keys(key: jax.Array, steps: int) -> jax.Array:
    """``(steps, 2)`` keys: each step's binarization and loss keys, split in one call per epoch.

    On the CPU a key split runs as a rolled loop of small kernels (tens of microseconds);
    one split for the whole epoch costs that once instead of once per step.
    """
    return jax.random.split(key, (steps, 2))


# XLA:CPU (jaxlib 0.10) hands matmuls and reductions to the YNNPACK library by default. The
# ELBO's per-image sum over 784 pixels then took ~0.6 ms of a ~3.9 ms step of the MLP VAE
# (jax.profiler, 2-core CPU), against under 0.1 ms for XLA's own fused loop; without library
# reductions the MLP trains ~10-20% faster, the conv VAE's step loop ~35% and IWAE scoring
# ~20% (benchmarks/train_throughput.py). So compiled training and scoring keep YNNPACK for
# matmuls only. The option is scoped to these compilations, not set process-wide.
_CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def _compiler_options(device: jax.Device) -> dict[str, str] | None:
    return _CPU_COMPILER_OPTIONS if device.platform == "cpu" else None


class _Compiled(NamedTuple):
    epoch: Callable  # scan loop: whole epoch
    schedule: Callable  # step loop: an epoch's batches and keys
    step: Callable  # step loop: one batch
    evaluate: Callable


def _compile_functions(graphdef, optimizer, objective: Objective, config: TrainConfig, mesh: Mesh, *,
                       steps_per_epoch: int, binarize_dynamically: bool) -> _Compiled:
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

    def loss_fn(params, batch, key, beta):
        model = nnx.merge(graphdef, params)
        losses, metrics = objective(model, batch, key=key, beta=beta)
        return jnp.mean(losses), (losses, metrics)

    def gather(arrays, indices, key):
        batch = tuple(jax.lax.with_sharding_constraint(a[indices], batch_sharding) for a in arrays)
        if binarize_dynamically:
            x = jax.random.bernoulli(key, batch[0]).astype(batch[0].dtype)
            batch = (x, *batch[1:])
        return batch

    def update(params, opt_state, arrays, indices, keys, step):
        binarize_key, loss_key = keys[0], keys[1]
        beta = _beta_at(config, step, steps_per_epoch)
        batch = gather(arrays, indices, binarize_key)
        grads, (losses, metrics) = jax.grad(loss_fn, has_aux=True)(params, batch, loss_key, beta)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        # The barrier makes the means reuse the per-example values: without it XLA sums each
        # metric again from the pixels, a second pass over the batch.
        means = {name: jnp.mean(value) for name, value in jax.lax.optimization_barrier(metrics).items()}
        return params, opt_state, jnp.mean(losses), means

    def schedule(arrays, key):
        """The epoch's batches (a fresh permutation, cut into ``steps_per_epoch`` rows) and per-step keys."""
        shuffle_key, steps_key = jax.random.split(key)
        order = jax.random.permutation(shuffle_key, arrays[0].shape[0])[: steps_per_epoch * config.batch_size]
        return order.reshape(steps_per_epoch, config.batch_size), _step_keys(steps_key, steps_per_epoch)

    def scheduled_update(params, opt_state, arrays, order, keys, offset, first_step):
        return update(params, opt_state, arrays, order[offset], keys[offset], first_step + offset)

    def epoch(params, opt_state, arrays, key, first_step):
        order, keys = schedule(arrays, key)

        def body(carry, inputs):
            params, opt_state = carry
            indices, step_keys, offset = inputs
            params, opt_state, loss, means = update(params, opt_state, arrays, indices, step_keys, first_step + offset)
            return (params, opt_state), (loss, means)

        (params, opt_state), (losses, means) = jax.lax.scan(
            body, (params, opt_state), (order, keys, jnp.arange(steps_per_epoch))
        )
        return params, opt_state, losses, means

    def evaluate(params, arrays, key):
        """Per-example loss and metrics over the whole set, in padded chunks."""
        model_batch = config.eval_batch_size
        n = arrays[0].shape[0]
        chunks = -(-n // model_batch)
        padded = tuple(jnp.concatenate([a, jnp.zeros((chunks * model_batch - n, *a.shape[1:]), a.dtype)]) for a in arrays)
        beta = jnp.float32(config.beta)

        def one(inputs):
            index, chunk_key = inputs
            batch = tuple(
                jax.lax.with_sharding_constraint(
                    jax.lax.dynamic_slice_in_dim(a, index * model_batch, model_batch), batch_sharding
                )
                for a in padded
            )
            model = nnx.merge(graphdef, params)
            return objective(model, batch, key=chunk_key, beta=beta)

        losses, metrics = jax.lax.map(one, (jnp.arange(chunks), jax.random.split(key, chunks)))
        flat = lambda v: v.reshape(-1)[:n]
        return flat(losses), {name: flat(value) for name, value in metrics.items()}

    return _Compiled(
        epoch=jax.jit(epoch, donate_argnums=(0, 1)),
        schedule=jax.jit(schedule),
        step=jax.jit(scheduled_update, donate_argnums=(0, 1)),
        evaluate=jax.jit(evaluate),
    )


class _Progress:
    """A tqdm bar, a caller's ``(done, total)`` callback, or nothing."""

    def __init__(self, progress: bool | Callable[[int, int], None], *, total: int):
        self.callback = progress if callable(progress) else None
        self.bar = tqdm(total=total, desc="training", unit="step", leave=False) if progress is True else None
        self.done, self.total = 0, total

    def advance(self, steps: int) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def describe(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fresh_copy(*trees):
    """Copies that an epoch may donate (update in place) while the originals stay the last good state."""
    return jax.tree.map(jnp.copy, trees)


def _first_bad_step(losses: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.size else None


def fit(
    model: nnx.Module,
    train_data: Dataset | Sequence[np.ndarray],
    test_data: Dataset | Sequence[np.ndarray] | None = None,
    config: TrainConfig = TrainConfig(),
    *,
    objective: Objective | None = None,
    opt_state: Any = None,
    first_epoch: int = 1,
    progress: bool | Callable[[int, int], None] = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains ``model`` in place with Adam and returns it with its optimizer state and history.

    Args:
      model: an NNX module whose state is all :class:`flax.nnx.Param` (or constant variables).
      train_data: a :class:`~vaekit.datasets.Dataset` (a ``"dynamic"`` one is re-binarized
        on every epoch) or a sequence of arrays with a common first axis, e.g. ``(images, masks)``.
      test_data: evaluated after each epoch (same form), or ``None``.
      config: a :class:`TrainConfig`.
      objective: the loss; the (β-)ELBO with ``config.free_bits`` by default.
      opt_state: Adam's state to resume from; fresh if ``None``.
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
    objective = objective if objective is not None else ElboObjective(config.free_bits)
    train_arrays = as_arrays(train_data, name="train_data")
    _check_images(model, train_arrays[0], name="train_data")
    test_arrays = None
    if test_data is not None:
        test_arrays = as_arrays(test_data, name="test_data")
        _check_images(model, test_arrays[0], name="test_data")
    n = train_arrays[0].shape[0]
    mesh = data_mesh()
    devices = mesh.devices.size
    if config.batch_size > n:
        raise ConfigError(f"batch_size ({config.batch_size}) is larger than the training set ({n} examples)")
    if config.batch_size % devices or config.eval_batch_size % devices:
        raise ConfigError(
            f"batch_size ({config.batch_size}) and eval_batch_size ({config.eval_batch_size}) must be multiples "
            f"of the number of devices ({devices})"
        )
    loop = nn.preferred_loop(model) if config.loop == "auto" else config.loop
    steps_per_epoch = n // config.batch_size
    dynamic = isinstance(train_data, Dataset) and train_data.binarization == "dynamic"

    graphdef, params = nnx.split(model)
    optimizer = make_optimizer(config)
    replicated = NamedSharding(mesh, PartitionSpec())
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(optimizer.init(params) if opt_state is None else opt_state, replicated)
    train_device = jax.device_put(train_arrays, replicated)
    test_device = jax.device_put(test_arrays, replicated) if test_arrays is not None else None
    fns = _compile_functions(graphdef, optimizer, objective, config, mesh,
                             steps_per_epoch=steps_per_epoch, binarize_dynamically=dynamic)

    # "rbg" keys draw their bits with XLA's RngBitGenerator, one fused kernel; the default
    # threefry draws the reparameterization noise of every step with a rolled loop of small
    # kernels on the CPU (~0.08 ms of a ~3 ms MLP step). Results stay deterministic and the
    # same on one device and on four (tests/test_train.py).
    root = jax.random.key(config.seed, impl="rbg")
    key_of = lambda purpose, epoch: jax.random.fold_in(jax.random.fold_in(root, purpose), epoch)
    options = _compiler_options(mesh.devices.flat[0])
    start = time.perf_counter()
    if loop == "scan":
        run_epoch = fns.epoch.lower(params, opt_state, train_device, key_of(0, 0), jnp.int32(0)).compile(options)
    else:
        run_schedule = fns.schedule.lower(train_device, key_of(0, 0)).compile(options)
        order, keys = jax.eval_shape(fns.schedule, train_device, key_of(0, 0))
        first = np.int32(0)
        run_step = fns.step.lower(params, opt_state, train_device, order, keys, first, first).compile(options)
    run_eval = None
    if test_device is not None:
        run_eval = fns.evaluate.lower(params, test_device, key_of(1, 0)).compile(options)
    compile_seconds = time.perf_counter() - start

    tracker = _Progress(progress, total=config.epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    try:
        for epoch in range(first_epoch, first_epoch + config.epochs):
            first_step = (epoch - 1) * steps_per_epoch
            tic = time.perf_counter()
            if loop == "scan":
                new_params, new_opt_state, losses, means = run_epoch(
                    *_fresh_copy(params, opt_state), train_device, key_of(0, epoch), jnp.int32(first_step)
                )
                losses = np.asarray(losses)
                tracker.advance(steps_per_epoch)
            else:
                schedule = run_schedule(train_device, key_of(0, epoch))
                new_params, new_opt_state, losses, means = _run_steps(
                    run_step, *_fresh_copy(params, opt_state), train_device, schedule, first_step,
                    steps=steps_per_epoch, tracker=tracker,
                )
            seconds = time.perf_counter() - tic
            bad = _first_bad_step(losses)
            if bad is not None:
                raise TrainingDivergedError(
                    f"the loss became {losses[bad]} at epoch {epoch}, step {bad + 1} of {steps_per_epoch}: "
                    f"lower the learning rate (now {config.learning_rate}) or check the data; "
                    f"the model keeps the parameters of epoch {epoch - 1}"
                )
            params, opt_state = new_params, new_opt_state
            entry: dict[str, float] = {
                "epoch": epoch,
                "beta": float(_beta_at(config, jnp.int32(first_step + steps_per_epoch - 1), steps_per_epoch)),
                "train_loss": float(np.mean(losses)),
            }
            entry.update({f"train_{k}": float(np.mean(v)) for k, v in means.items()})
            if run_eval is not None:
                test_losses, test_metrics = run_eval(params, test_device, key_of(1, epoch))
                entry["test_loss"] = float(jnp.mean(test_losses))
                entry.update({f"test_{k}": float(jnp.mean(v)) for k, v in test_metrics.items()})
            entry["images_per_s"] = steps_per_epoch * config.batch_size / seconds
            entry["seconds"] = seconds
            history.append(entry)
            tracker.describe(epoch=epoch, loss=f"{entry.get('test_loss', entry['train_loss']):.2f}")
            if on_epoch_end is not None:
                on_epoch_end(entry)
    finally:
        tracker.close()
        nnx.update(model, jax.device_get(params))
    return TrainResult(model=model, opt_state=opt_state, history=history, compile_seconds=compile_seconds)


def _run_steps(run_step, params, opt_state, arrays, schedule, first_step, *, steps, tracker):
    """One epoch of compiled steps; syncs every few steps so the progress bar tells the truth.

    Each step picks its batch and keys from the epoch's ``schedule`` itself: the Python loop
    dispatches one call per step and compiles nothing on the way.
    """
    order, keys = schedule
    first_step = np.int32(first_step)
    losses, metrics = [], []
    sync_every, reported = 20, 0
    for s in range(steps):
        params, opt_state, loss, means = run_step(params, opt_state, arrays, order, keys, np.int32(s), first_step)
        losses.append(loss)
        metrics.append(means)
        if (s + 1) % sync_every == 0 or s + 1 == steps:
            loss.block_until_ready()
            tracker.advance(s + 1 - reported)
            reported = s + 1
    losses, metrics = jax.device_get((losses, metrics))
    return params, opt_state, np.stack(losses), {name: np.stack([m[name] for m in metrics]) for name in metrics[0]}


def evaluate(
    model: nnx.Module,
    data: Dataset | Sequence[np.ndarray],
    *,
    key: jax.Array,
    iwae_samples: int = 0,
    batch_size: int = 500,
    chunk_size: int = 100,
) -> dict[str, float]:
    """Test-set means of the ELBO terms and, optionally, the IWAE estimate of :math:`-\\log p(x)`.

    Args:
      model: a VAE.
      data: images to score (a :class:`~vaekit.datasets.Dataset` or ``(images,)``).
      key: PRNG key.
      iwae_samples: :math:`k` of the IWAE bound; 0 skips it.
      batch_size: images per compiled call.
      chunk_size: importance samples held in memory at once.

    Returns:
      ``neg_elbo``, ``rate``, ``distortion`` and, if asked, ``iwae_nll`` (all nats per image).
    """
    (images, *_) = as_arrays(data, name="data")
    _check_images(model, images, name="data")
    if iwae_samples < 0:
        raise ValueError(f"iwae_samples must be >= 0; got {iwae_samples}")
    graphdef, params = nnx.split(model)

    def score(params, x, key):
        m = nnx.merge(graphdef, params)
        elbo_key, iwae_key = jax.random.split(key)
        terms = elbo.elbo_terms(m, x, key=elbo_key)
        out = {"neg_elbo": terms.neg_elbo, "rate": terms.rate, "distortion": terms.distortion}
        if iwae_samples:
            out["iwae_nll"] = -elbo.iwae_bound(m, x, key=iwae_key, num_samples=iwae_samples, chunk_size=chunk_size)
        return out

    n = images.shape[0]
    totals: dict[str, float] = {}
    compiled = None
    for i, start in enumerate(range(0, n, batch_size)):
        x = images[start : start + batch_size]
        if x.shape[0] < batch_size:  # pad so that one compiled shape serves every batch
            x = np.concatenate([x, np.zeros((batch_size - x.shape[0], *x.shape[1:]), x.dtype)])
        real = min(batch_size, n - start)
        batch_key = jax.random.fold_in(key, i)
        if compiled is None:
            compiled = jax.jit(score).lower(params, x, batch_key).compile(_compiler_options(jax.devices()[0]))
        out = compiled(params, x, batch_key)
        for name, value in out.items():
            totals[name] = totals.get(name, 0.0) + float(jnp.sum(value[:real]))
    return {name: total / n for name, total in totals.items()}
