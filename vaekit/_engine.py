"""The speed behind :func:`vaekit.train.fit`: compiled epochs, a device mesh, several processes.

:func:`vaekit.train.fit` hands this module its ``train_step`` and the rest of the maths; what
is here decides only *how fast* they run, never what they compute (``tests/test_train.py``
checks that ``fit`` and a loop of ``train_step`` give the same parameters):

* The model is split once into a static graph, its parameters and its other state
  (``nnx.split(model, nnx.Param, ...)``); each update is then a pure function of arrays,
  compiled by ``jax.jit``. Two loops share it: ``"scan"`` runs a whole epoch as one
  ``jax.lax.scan`` over device-resident data (one dispatch per epoch, fastest for dense
  models), ``"step"`` dispatches one compiled call per batch (XLA:CPU slows convolutions
  inside a scan body down).
* Every epoch's shuffle and keys are drawn inside the compiled code from the seed and the
  epoch number, so nothing is compiled between epochs and every process draws the same.
* Batches are split over a ``"data"`` axis of a mesh of all devices (of all processes
  under ``jax.distributed``); parameters, optimizer state and the dataset are replicated.
  Each device gathers only its own rows of every batch, so each process feeds its own
  shard; gradients are averaged by the compiler's collectives.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from vaekit import _fastconv

# XLA:CPU (jaxlib 0.10) hands matmuls and reductions to the YNNPACK library by default. The
# ELBO's per-image sum over 784 pixels then took ~0.6 ms of a ~3.9 ms step of the MLP VAE
# (jax.profiler, 2-core CPU), against under 0.1 ms for XLA's own fused loop; without library
# reductions the MLP trains ~10-20% faster, the conv VAE's step loop ~35% and IWAE scoring
# ~20% (benchmarks/train_throughput.py). So compiled training and scoring keep YNNPACK for
# matmuls only. The option is scoped to these compilations, not set process-wide.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}

# Purposes of the keys folded out of the seed.
_TRAINING, _SCORING = 0, 1

Arrays = tuple[jax.Array, ...]


class Diverged(Exception):
    """The loss stopped being finite at ``step`` (0-based) of ``epoch``."""

    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(epoch, step, value)
        self.epoch, self.step, self.value = epoch, step, value


def compiler_options(device: jax.Device | None = None) -> dict[str, str] | None:
    device = device if device is not None else jax.devices()[0]
    return CPU_COMPILER_OPTIONS if device.platform == "cpu" else None


def data_mesh() -> Mesh:
    """A 1-D mesh over every device of every process; batches split along its ``"data"`` axis."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def replicate(tree, mesh: Mesh):
    """Every leaf as an array held whole by each device of ``mesh`` (each process gives the same values)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        if _is_key(x):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(one, tree)


def to_host(tree):
    """Replicated arrays back as this process's copy (NumPy; PRNG keys stay keys)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return x if _is_key(x) else np.asarray(x)

    return jax.tree.map(one, tree)


def split(model: nnx.Module):
    """``(graphdef, params, other)``: only ``params`` are differentiated and updated by the optimizer."""
    return nnx.split(model, nnx.Param, ...)


def epoch_schedule(num_examples: int, batch_size: int, *, seed: int, epoch: int | jax.Array):
    """The batches of one epoch and the keys of its steps, as ``fit`` draws them.

    Returns:
      ``(order, keys)``: ``(steps, batch_size)`` example indices (a fresh permutation, the
      remainder dropped) and ``(steps, 2)`` keys, the data key (dynamic binarization) and
      the objective's key of each step. ``"rbg"`` keys draw their bits in one fused kernel;
      the default generator runs a rolled loop of small kernels per draw on the CPU.
    """
    steps = num_examples // batch_size
    epoch_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed, impl="rbg"), _TRAINING), epoch)
    shuffle_key, steps_key = jax.random.split(epoch_key)
    order = jax.random.permutation(shuffle_key, num_examples)[: steps * batch_size]
    return order.reshape(steps, batch_size), jax.random.split(steps_key, (steps, 2))


def scoring_key(seed: int, epoch: int | jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed, impl="rbg"), _SCORING), epoch)


@functools.lru_cache(maxsize=64)
def _chunk_sums(graphdef, values: Callable, *, batch_size: int, n: int, mesh: Mesh) -> Callable:
    """The compiled sums of ``values`` over one padded chunk; cached, so a second score compiles nothing."""
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

    def chunk_sums(params, other, arrays, index, key):
        batch = tuple(
            jax.lax.with_sharding_constraint(jax.lax.dynamic_slice_in_dim(a, index * batch_size, batch_size),
                                             batch_sharding)
            for a in arrays
        )
        model = nnx.merge(graphdef, params, other)
        model.eval()
        out = values(model, batch, jax.random.fold_in(key, index))
        valid = index * batch_size + jnp.arange(batch_size) < n
        return {name: jnp.sum(jnp.where(valid, v, jnp.zeros_like(v))) for name, v in out.items()}

    return jax.jit(chunk_sums, compiler_options=compiler_options(mesh.devices.flat[0]))


class Scorer:
    """Means over a whole dataset of a per-example function, in padded chunks of one compiled shape.

    ``values(model, batch, key) -> dict of (batch,) arrays`` runs on each chunk; padded rows
    are masked out of the sums, so the means are those of the unpadded data. ``values``
    should be hashable and compare equal when it computes the same thing (a frozen
    dataclass): scoring again with an equal one reuses the compiled function.
    """

    def __init__(self, graphdef, values: Callable, arrays: Arrays, *, batch_size: int, mesh: Mesh):
        n = int(arrays[0].shape[0])
        chunks = -(-n // batch_size)
        padded = tuple(np.concatenate([a, np.zeros((chunks * batch_size - n, *a.shape[1:]), a.dtype)]) for a in arrays)
        self.n, self.chunks, self.batch_size = n, chunks, batch_size
        self.arrays = replicate(padded, mesh)
        self._chunk_sums = _chunk_sums(graphdef, values, batch_size=batch_size, n=n, mesh=mesh)

    def compile(self, params, other, key) -> None:
        """Compiles (or finds compiled) the chunk function by scoring the first chunk once."""
        jax.block_until_ready(self._chunk_sums(params, other, self.arrays, np.int32(0), key))

    def __call__(self, params, other, key, *, progress: Callable[[int], None] | None = None) -> dict[str, float]:
        totals = None
        for index in range(self.chunks):
            sums = self._chunk_sums(params, other, self.arrays, np.int32(index), key)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            if progress is not None:
                progress(index + 1)
        return {name: float(value) / self.n for name, value in to_host(totals).items()}


class _Progress:
    """A tqdm bar (on the first process only), a caller's ``(done, total)`` callback, or nothing."""

    def __init__(self, progress: bool | Callable[[int, int], None], *, total: int, desc: str = "training"):
        self.callback = progress if callable(progress) else None
        show = progress is True and jax.process_index() == 0
        self.bar = tqdm(total=total, desc=desc, unit="step", leave=False) if show else None
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


class Run(NamedTuple):
    opt_state: Any
    history: list[dict[str, float]]
    compile_seconds: float


def _fresh_copy(*trees):
    """Copies that an epoch may donate (update in place) while the originals stay the last good state."""
    return jax.tree.map(jnp.copy, trees)


def fit(
    model: nnx.Module,
    train_arrays: Arrays,
    test_arrays: Arrays | None,
    *,
    train_step: Callable,
    objective_values: Callable,
    objective,
    optimizer,
    opt_state: Any,
    beta_at: Callable[[jax.Array], jax.Array],
    eval_beta: float,
    reports_beta: bool,
    epochs: int,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    loop: str,
    first_epoch: int,
    binarize_dynamically: bool,
    progress: bool | Callable[[int, int], None],
    on_epoch_end: Callable[[dict[str, float]], None] | None,
) -> Run:
    """Trains ``model`` in place with repeated ``train_step`` calls; see :func:`vaekit.train.fit`.

    Raises:
      Diverged: naming the epoch and step; ``model`` keeps the state of the last finite epoch.
    """
    mesh = data_mesh()
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    loop = _fastconv.preferred_loop(model) if loop == "auto" else loop
    n = int(train_arrays[0].shape[0])
    steps_per_epoch = n // batch_size

    graphdef, params, other = split(model)
    params, other = replicate((params, other), mesh)
    opt_state = replicate(optimizer.init(params) if opt_state is None else opt_state, mesh)
    train_device = replicate(train_arrays, mesh)

    def gather(arrays, indices, key):
        batch = tuple(jax.lax.with_sharding_constraint(a[indices], batch_sharding) for a in arrays)
        if binarize_dynamically:
            batch = (jax.random.bernoulli(key, batch[0]).astype(batch[0].dtype), *batch[1:])
        return batch

    def update(params, other, opt_state, arrays, indices, keys, step):
        data_key, loss_key = keys[0], keys[1]
        model = nnx.merge(graphdef, params, other)
        model.train()
        opt_state, losses, metrics = train_step(model, opt_state, gather(arrays, indices, data_key), key=loss_key,
                                                beta=beta_at(step), objective=objective, optimizer=optimizer)
        _, params, other = split(model)
        # The barrier makes the means reuse the per-example values: without it XLA sums each
        # metric again from the pixels, a second pass over the batch.
        means = {name: jnp.mean(value) for name, value in jax.lax.optimization_barrier(metrics).items()}
        return params, other, opt_state, jnp.mean(losses), means

    def schedule(epoch):
        return epoch_schedule(n, batch_size, seed=seed, epoch=epoch)

    def step_of_schedule(params, other, opt_state, arrays, order, keys, offset, first_step):
        return update(params, other, opt_state, arrays, order[offset], keys[offset], first_step + offset)

    def whole_epoch(params, other, opt_state, arrays, epoch, first_step):
        order, keys = schedule(epoch)

        def body(carry, inputs):
            indices, step_keys, offset = inputs
            *carry, loss, means = update(*carry, arrays, indices, step_keys, first_step + offset)
            return tuple(carry), (loss, means)

        (params, other, opt_state), (losses, means) = jax.lax.scan(
            body, (params, other, opt_state), (order, keys, jnp.arange(steps_per_epoch))
        )
        return params, other, opt_state, losses, means

    def scored(model, batch, key):
        losses, metrics = objective_values(objective, model, batch, key=key, beta=jnp.float32(eval_beta))
        return {"loss": losses, **metrics}

    options = compiler_options(mesh.devices.flat[0])
    start = time.perf_counter()
    first = np.int32(0)
    if loop == "scan":
        run_epoch = jax.jit(whole_epoch, donate_argnums=(0, 1, 2)).lower(
            params, other, opt_state, train_device, first, first).compile(options)
    else:
        run_schedule = jax.jit(schedule).lower(first).compile(options)
        order, keys = jax.eval_shape(schedule, first)
        run_step = jax.jit(step_of_schedule, donate_argnums=(0, 1, 2)).lower(
            params, other, opt_state, train_device, order, keys, first, first).compile(options)
    scorer = None
    if test_arrays is not None:
        scorer = Scorer(graphdef, scored, test_arrays, batch_size=eval_batch_size, mesh=mesh)
        scorer.compile(params, other, replicate(scoring_key(seed, 0), mesh))
    compile_seconds = time.perf_counter() - start

    tracker = _Progress(progress, total=epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    try:
        for epoch in range(first_epoch, first_epoch + epochs):
            first_step = np.int32((epoch - 1) * steps_per_epoch)
            tic = time.perf_counter()
            if loop == "scan":
                new_params, new_other, new_opt_state, losses, means = run_epoch(
                    *_fresh_copy(params, other, opt_state), train_device, np.int32(epoch), first_step)
                losses, means = to_host((losses, means))
                tracker.advance(steps_per_epoch)
            else:
                new_params, new_other, new_opt_state, losses, means = _run_steps(
                    run_step, *_fresh_copy(params, other, opt_state), train_device, run_schedule(np.int32(epoch)),
                    first_step, steps=steps_per_epoch, tracker=tracker)
            seconds = time.perf_counter() - tic
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                raise Diverged(epoch, int(bad[0]), float(losses[bad[0]]))
            params, other, opt_state = new_params, new_other, new_opt_state
            entry: dict[str, float] = {"epoch": epoch}
            if reports_beta:
                entry["beta"] = float(beta_at(jnp.int32(first_step + steps_per_epoch - 1)))
            entry["train_loss"] = float(np.mean(losses))
            entry.update({f"train_{name}": float(np.mean(v)) for name, v in means.items()})
            if scorer is not None:
                scores = scorer(params, other, replicate(scoring_key(seed, epoch), mesh))
                entry.update({f"test_{name}": value for name, value in scores.items()})
            entry["images_per_s"] = steps_per_epoch * batch_size / seconds
            entry["seconds"] = seconds
            history.append(entry)
            tracker.describe(epoch=epoch, loss=f"{entry.get('test_loss', entry['train_loss']):.2f}")
            if on_epoch_end is not None:
                on_epoch_end(entry)
    finally:
        tracker.close()
        nnx.update(model, *to_host((params, other)))
    return Run(opt_state=to_host(opt_state), history=history, compile_seconds=compile_seconds)


def _run_steps(run_step, params, other, opt_state, arrays, schedule, first_step, *, steps, tracker):
    """One epoch of compiled steps; syncs every few steps so the progress bar tells the truth.

    Each step picks its batch and keys from the epoch's ``schedule`` itself: the Python loop
    dispatches one call per step and compiles nothing on the way.
    """
    order, keys = schedule
    losses, metrics = [], []
    sync_every, reported = 20, 0
    for s in range(steps):
        params, other, opt_state, loss, means = run_step(params, other, opt_state, arrays, order, keys, np.int32(s),
                                                         first_step)
        losses.append(loss)
        metrics.append(means)
        if (s + 1) % sync_every == 0 or s + 1 == steps:
            loss.block_until_ready()
            tracker.advance(s + 1 - reported)
            reported = s + 1
    losses, metrics = to_host((losses, metrics))
    means = {name: np.stack([m[name] for m in metrics]) for name in metrics[0]}
    return params, other, opt_state, np.stack(losses), means


def score(model: nnx.Module, values: Callable, arrays: Arrays, *, batch_size: int, key: jax.Array,
          progress: bool | Callable[[int, int], None] = False) -> dict[str, float]:
    """Means over ``arrays`` of ``values(model, batch, key)``, a dict of per-example arrays."""
    mesh = data_mesh()
    graphdef, params, other = split(model)
    params, other = replicate((params, other), mesh)
    scorer = Scorer(graphdef, values, arrays, batch_size=batch_size, mesh=mesh)
    tracker = _Progress(progress, total=scorer.chunks, desc="scoring")
    try:
        done = lambda chunks: tracker.advance(chunks - tracker.done)
        return scorer(params, other, replicate(key, mesh), progress=done)
    finally:
        tracker.close()
