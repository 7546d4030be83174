"""Checkpoints: a model's whole state, its optimizer state, configs and history, saved with Orbax.

A checkpoint is a folder that holds numbered versions and names the one to read::

    CHECKPOINT/
      LATEST        the name of the version to read ("v000007"), replaced atomically
      v000007/
        state/      Orbax arrays: {"model": numbered leaves, "opt_state": numbered leaves}
        meta.json   format, model class and config, training config, history, what each leaf is
        COMPLETE    written last: every other file's size and SHA-256

The model's state is all of ``nnx.state(model)``: parameters, other variables (a fixed
Gaussian log-variance), BatchNorm statistics, and ``nnx.Rngs`` keys and counts (a typed
PRNG key is stored as its ``jax.random.key_data`` and its implementation's name). Nothing
is pickled. Kit models (:data:`KIT_MODELS`) are rebuilt from the config their checkpoint
records; any other module is restored into a freshly built one of the same structure.

A save can die at any instant and ``restore`` still finds the last good checkpoint. The
invariant is that ``LATEST``, once it exists, names a complete version:

1. a new version is written beside the others under a name never used before; its files
   and folders are flushed to disk (``fsync``) and only then is ``COMPLETE`` put in place,
   so a version with ``COMPLETE`` is whole;
2. ``LATEST`` is switched to the new name;
3. only then are the other versions removed, each losing its ``COMPLETE`` first.

``COMPLETE`` and ``LATEST`` are put in place the same way: written to a temporary file,
flushed, renamed over the old one (``os.replace``: a reader sees the old file or the new,
never a mix), and the folder flushed. A restore first checks every file against the sizes
and SHA-256 digests in ``COMPLETE``, so a damaged checkpoint is named as such before
Orbax reads a byte of it.

A save that died leaves at most an incomplete version or an unswitched ``LATEST``; the
next save removes what it left. If ``LATEST`` itself is missing or damaged (a first save
that died between steps 1 and 2, or a folder copied by hand), ``restore`` reads the newest
complete version. Saves to one folder take a lock (``flock``) that the system releases
when the process dies, so what a save finds unfinished belongs to a dead save; restores
take it shared, so a version is never removed while it is read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import pathlib
import re
import shutil
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from vaekit.train import TrainConfig, make_optimizer

FORMAT_VERSION = 2

# Kit model classes by the name a checkpoint records, with their config classes. Named, not
# imported: a class is looked up only when a checkpoint of it is restored.
KIT_MODELS = {
    "vaekit.models.VAE": "vaekit.models.VAEConfig",
    "vaekit.models.Autoencoder": "vaekit.models.VAEConfig",
    "vaekit.models.Classifier": "vaekit.models.ClassifierConfig",
    "vaekit.segmentation.UNet": "vaekit.segmentation.UNetConfig",
    "vaekit.segmentation.SegmentationAutoencoder": "vaekit.segmentation.SegmentationAutoencoderConfig",
    "vaekit.segmentation.FCN": "vaekit.segmentation.FCNConfig",
    "vaekit.segmentation_vae.SegmentationVAE": "vaekit.segmentation_vae.SegmentationVAEConfig",
    "vaekit.probunet.ProbabilisticUNet": "vaekit.probunet.ProbabilisticUNetConfig",
}

_LATEST = "LATEST"
_COMPLETE = "COMPLETE"
_VERSION = re.compile(r"v\d{6,}")


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit what is asked of it."""


class Checkpoint(NamedTuple):
    """A restored checkpoint.

    Attributes:
      model: the model, with all of its saved state.
      opt_state: the optimizer state over ``nnx.state(model, nnx.Param)``, or ``None``.
      model_config: the model's config (``None`` for a module without one).
      train_config: the :class:`~vaekit.train.TrainConfig` it was saved with, or ``None``.
      history: the per-epoch history.
    """

    model: nnx.Module
    opt_state: Any
    model_config: Any
    train_config: TrainConfig | None
    history: list[dict[str, Any]]


# --- what is stored: leaves as host arrays, and a description of each -----------------------------


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(path: str, leaf, **extra) -> dict[str, Any]:
    if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
        raise CheckpointError(f"{path}: holds a {type(leaf).__name__}, not an array; a checkpoint stores arrays")
    return {"path": path, **extra, "shape": list(leaf.shape), "dtype": str(leaf.dtype)}


def _model_leaves(model: nnx.Module) -> list[tuple[dict[str, Any], Any]]:
    """Every variable of ``model``: its description (path, variable type, shape, dtype) and value."""
    described = []
    for path, variable in nnx.to_flat_state(nnx.state(model)):
        value = variable.get_value()
        described.append((_describe("/".join(map(str, path)), value, type=type(variable).__name__), value))
    return described


def _tree_leaves(tree: Any) -> list[tuple[dict[str, Any], Any]]:
    return [(_describe(jax.tree_util.keystr(path), leaf), leaf) for path, leaf in jax.tree.leaves_with_path(tree)]


def _to_host(described: list[tuple[dict[str, Any], Any]]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Descriptions for meta.json and numbered host arrays for Orbax; typed keys become their key data."""
    descriptions, arrays = [], {}
    for i, (description, leaf) in enumerate(described):
        if _is_key(leaf):
            description = {**description, "key_impl": str(jax.random.key_impl(leaf))}
            leaf = jax.random.key_data(leaf)
        descriptions.append(description)
        arrays[str(i)] = np.asarray(jax.device_get(leaf))
    return descriptions, arrays


def _check_fits(saved: list[dict[str, Any]], wanted: list[dict[str, Any]], *, what: str, folder: pathlib.Path) -> None:
    """Raises a :class:`CheckpointError` naming every path whose presence, type, shape or dtype differ."""
    saved_by_path = {d["path"]: {k: v for k, v in d.items() if k != "key_impl"} for d in saved}
    wanted_by_path = {d["path"]: d for d in wanted}
    problems = []
    for path in sorted(saved_by_path.keys() | wanted_by_path.keys()):
        have, want = saved_by_path.get(path), wanted_by_path.get(path)
        if want is None:
            problems.append(f"{path}: in the checkpoint, not in the {what}")
        elif have is None:
            problems.append(f"{path}: in the {what}, not in the checkpoint")
        elif have != want:
            show = lambda d: " ".join(f"{k}={d[k]}" for k in ("type", "shape", "dtype") if k in d)
            problems.append(f"{path}: checkpoint has {show(have)}, the {what} has {show(want)}")
    if problems:
        raise CheckpointError(f"{folder}: the {what} does not fit the checkpoint ({'; '.join(problems)})")


def _class_name(model: nnx.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _import(name: str):
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


# --- the folder: versions, the LATEST pointer, flushing, the lock ---------------------------------


def _fsync(path: str | pathlib.Path) -> None:
    """Flushes a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(file: pathlib.Path, text: str) -> None:
    with open(file, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _replace_durably(file: pathlib.Path, text: str) -> None:
    """Puts ``text`` in ``file`` atomically and durably: a crash leaves the old file or the new one."""
    tmp = file.with_name(f".{file.name}.tmp")
    _write_durably(tmp, text)
    os.replace(tmp, file)
    _fsync(file.parent)


def _fingerprint(file: pathlib.Path) -> list[int | str]:
    with open(file, "rb") as f:
        return [os.fstat(f.fileno()).st_size, hashlib.file_digest(f, "sha256").hexdigest()]


def _check_intact(version: pathlib.Path, only: str | None = None) -> None:
    """Raises a :class:`CheckpointError` unless each file (or the one named) is as ``COMPLETE`` recorded it."""
    try:
        recorded = dict(json.loads((version / _COMPLETE).read_text()))
    except (OSError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{version / _COMPLETE}: damaged ({e})") from None
    for name, fingerprint in recorded.items():
        if only is None or name == only:
            file = version / name
            if not file.is_file():
                raise CheckpointError(f"{file}: missing (the version is damaged)")
            if _fingerprint(file) != fingerprint:
                raise CheckpointError(f"{file}: damaged (its size or SHA-256 differs from those of the save)")


def _versions(folder: pathlib.Path) -> list[pathlib.Path]:
    """Version folders, oldest first, complete or not."""
    found = [p for p in folder.iterdir() if _VERSION.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def _is_complete(version: pathlib.Path) -> bool:
    return (version / _COMPLETE).is_file()


def _version_to_read(folder: pathlib.Path) -> pathlib.Path | None:
    """The version ``LATEST`` names if it is complete, else the newest complete one, else ``None``."""
    try:
        named = (folder / _LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    if _VERSION.fullmatch(named) and _is_complete(folder / named):
        return folder / named
    complete = [v for v in _versions(folder) if _is_complete(v)]
    return complete[-1] if complete else None


def _holds_checkpoint(folder: pathlib.Path) -> bool:
    # meta.json at the top: a checkpoint of format 1, which a save replaces.
    return (folder / _LATEST).exists() or bool(_versions(folder)) or (folder / "meta.json").is_file()


def _remove(entry: pathlib.Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        if (entry / _COMPLETE).exists():  # first, so that a removal cut short leaves no "complete" remains
            (entry / _COMPLETE).unlink()
            _fsync(entry)
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _remove_all_but(folder: pathlib.Path, keep: pathlib.Path | None) -> None:
    for entry in folder.iterdir():
        if entry.name != _LATEST and entry != keep:
            _remove(entry)


@contextlib.contextmanager
def _locked(folder: pathlib.Path, operation: int) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


# --- save -----------------------------------------------------------------------------------------


def save(
    path: str | pathlib.Path,
    model: nnx.Module,
    *,
    opt_state: Any = None,
    train_config: TrainConfig | None = None,
    history: Sequence[dict[str, Any]] = (),
) -> pathlib.Path:
    """Saves a checkpoint, replacing any checkpoint already at ``path``; safe against a crash at any instant.

    Args:
      path: the checkpoint folder (created if absent; an existing folder must be empty or a checkpoint).
      model: any ``nnx.Module``; all of ``nnx.state(model)`` is saved, and ``model.config``
        (``config.to_dict()``) when it has one.
      opt_state: the optimizer state over ``nnx.state(model, nnx.Param)`` (as
        :func:`vaekit.train.fit` returns it), to resume training.
      train_config: the :class:`~vaekit.train.TrainConfig` it was trained with.
      history: the per-epoch history (JSON values).

    Returns:
      The checkpoint folder.

    Raises:
      CheckpointError: ``opt_state`` without ``train_config``, a history or config that is
        not JSON, a state leaf that is not an array, or a ``path`` that is not a checkpoint.
    """
    path = pathlib.Path(path).absolute()
    if opt_state is not None and train_config is None:
        raise CheckpointError("opt_state needs its train_config (to rebuild the optimizer on restore)")
    model_descriptions, model_arrays = _to_host(_model_leaves(model))
    config = getattr(model, "config", None)
    meta = {
        "format": FORMAT_VERSION,
        "model_class": _class_name(model),
        "model_config": config.to_dict() if hasattr(config, "to_dict") else None,
        "train_config": train_config.to_dict() if train_config is not None else None,
        "history": list(history),
        "model_state": model_descriptions,
        "opt_state": None,
    }
    arrays = {"model": model_arrays}
    if opt_state is not None:
        meta["opt_state"], arrays["opt_state"] = _to_host(_tree_leaves(opt_state))
    try:
        meta_text = json.dumps(meta, indent=2)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the configs and history must be JSON values ({e})") from None

    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: is a file, not a checkpoint folder")
    if path.is_dir() and any(path.iterdir()) and not _holds_checkpoint(path):
        raise CheckpointError(f"{path}: a folder that is not a vaekit checkpoint; a save will not replace it")
    path.mkdir(parents=True, exist_ok=True)
    _fsync(path.parent)
    with _locked(path, fcntl.LOCK_EX):
        # Under the lock, anything unfinished was left by a save that died.
        previous = _version_to_read(path)
        numbers = [int(v.name[1:]) for v in _versions(path)]
        version = path / f"v{max(numbers, default=0) + 1:06d}"
        _remove_all_but(path, keep=previous)
        try:
            _write_version(version, arrays, meta_text)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        _replace_durably(path / _LATEST, version.name + "\n")
        _remove_all_but(path, keep=version)
    return path


def _checkpointer() -> ocp.StandardCheckpointer:
    """An Orbax checkpointer for this process alone.

    The arrays are host copies, so under ``jax.distributed`` one process (the one that
    writes files) saves and any process restores without waiting for the others, which by
    default Orbax would.
    """
    this = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=this, active_processes={this})
    return ocp.StandardCheckpointer(multiprocessing_options=alone)


def _write_version(version: pathlib.Path, arrays: dict[str, Any], meta_text: str) -> None:
    version.mkdir()
    with _checkpointer() as checkpointer:  # closed on every path, a failed save included
        checkpointer.save(version / "state", arrays)
        checkpointer.wait_until_finished()
    _write_durably(version / "meta.json", meta_text)
    fingerprints = {}
    for folder, _, files in os.walk(version):
        for name in files:
            file = pathlib.Path(folder, name)
            fingerprints[file.relative_to(version).as_posix()] = _fingerprint(file)
            _fsync(file)
        _fsync(folder)
    _replace_durably(version / _COMPLETE, json.dumps(fingerprints, indent=1))


# --- restore --------------------------------------------------------------------------------------


def read_meta(path: str | pathlib.Path) -> dict[str, Any]:
    """The configs, history and leaf descriptions of a checkpoint, without loading its arrays.

    Returns:
      meta.json's contents, and ``"path"``: the version folder read.

    Raises:
      CheckpointError: if ``path`` holds no complete version, or its meta.json is damaged or
        of another format.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a vaekit checkpoint (no such folder)")
    version = _version_to_read(path)
    if version is None:
        if (path / "meta.json").is_file():
            raise CheckpointError(f"{path}: written by an older vaekit (format 1), this vaekit reads format "
                                  f"{FORMAT_VERSION}; save the model again")
        raise CheckpointError(f"{path}: not a vaekit checkpoint (no complete version)")
    meta_file = version / "meta.json"
    _check_intact(version, only="meta.json")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_file}: damaged ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{meta_file}: format {found!r}, this vaekit reads format {FORMAT_VERSION}")
    meta["path"] = version
    return meta


def _check_config(saved: dict[str, Any] | None, asked: Any, *, folder: pathlib.Path) -> None:
    if asked is None:
        return
    if saved is None:
        raise CheckpointError(f"{folder}: the checkpoint's model has no config to compare with {asked!r}")
    asked = asked.to_dict()
    diffs = [
        f"{name}: checkpoint has {saved.get(name)!r}, asked for {asked.get(name)!r}"
        for name in dict.fromkeys([*saved, *asked])
        if saved.get(name) != asked.get(name)
    ]
    if diffs:
        raise CheckpointError(f"{folder}: model config does not match ({'; '.join(diffs)})")


def _kit_model(meta: dict[str, Any], model_config: Any) -> tuple[nnx.Module, Any]:
    """An abstract kit model (shapes, no arrays) built from the checkpoint's config."""
    folder, name = meta["path"], meta["model_class"]
    if name not in KIT_MODELS:
        raise CheckpointError(f"{folder}: holds a {name}, not a vaekit model; pass like=, a freshly built one")
    try:
        cls, config_cls = _import(name), _import(KIT_MODELS[name])
    except (ImportError, AttributeError):
        raise CheckpointError(f"{folder}: holds a {name}, which this vaekit does not have") from None
    if model_config is not None and not isinstance(model_config, config_cls):
        raise CheckpointError(f"{folder}: holds a {name} (a {config_cls.__name__}); model_config is a "
                              f"{type(model_config).__name__}")
    _check_config(meta["model_config"], model_config, folder=folder)
    try:
        config = config_cls.from_dict(meta["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}: its model config does not build a {config_cls.__name__} ({e})") from None
    return nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0))), config


def _read_arrays(state_dir: pathlib.Path) -> dict[str, dict[str, np.ndarray]]:
    with _checkpointer() as checkpointer:
        try:
            return checkpointer.restore(state_dir)
        except Exception as e:  # Orbax raises many types; all mean the arrays cannot be read back
            raise CheckpointError(f"{state_dir}: cannot restore the arrays ({type(e).__name__}: {e})") from None


def _stored_values(arrays: dict[str, dict[str, np.ndarray]], group: str, descriptions: list[dict[str, Any]],
                   state_dir: pathlib.Path) -> dict[str, Any]:
    """The stored leaves of ``group`` by path (typed keys rebuilt), each checked against its description."""
    stored, values = arrays.get(group, {}), {}
    for i, description in enumerate(descriptions):
        value = stored.get(str(i))
        if value is not None and "key_impl" in description:
            try:
                value = jax.random.wrap_key_data(value, impl=description["key_impl"])
            except (TypeError, ValueError):
                value = None
        if value is None or [list(value.shape), str(value.dtype)] != [description["shape"], description["dtype"]]:
            raise CheckpointError(f"{state_dir}: damaged ({group} leaf {description['path']} is missing or differs "
                                  f"from its description in meta.json)")
        values[description["path"]] = value
    return values


def restore(
    path: str | pathlib.Path,
    *,
    model_config: Any = None,
    like: nnx.Module | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> Checkpoint:
    """Restores a checkpoint saved by :func:`save`, bit for bit.

    Args:
      path: the checkpoint folder.
      model_config: if given, the checkpoint must have been saved from a model with this config.
      like: for a module that is not a kit model (:data:`KIT_MODELS`): a freshly built module of
        the same structure, which receives the saved state and is returned. For a kit model,
        optional: the model is otherwise rebuilt from its saved config.
      optimizer: the Optax transformation the saved ``opt_state`` belongs to; by default
        :func:`vaekit.train.make_optimizer` of the saved training config.

    Returns:
      A :class:`Checkpoint` with a ready-to-use model.

    Raises:
      CheckpointError: if the folder is not a checkpoint or is damaged, if its model config
        differs from ``model_config`` or ``like.config`` (the differing fields are named), or
        if ``like`` or the optimizer's state does not fit the saved state (the differing paths
        are named).

    Example:
      >>> import tempfile
      >>> from vaekit import models
      >>> model = models.VAE(models.VAEConfig(latent_dim=2), rngs=nnx.Rngs(0))
      >>> folder = tempfile.TemporaryDirectory()
      >>> restored = restore(save(f"{folder.name}/ck", model))
      >>> restored.model_config == model.config
      True
      >>> folder.cleanup()
    """
    path = pathlib.Path(path)
    with contextlib.ExitStack() as stack:
        if path.is_dir():
            stack.enter_context(_locked(path, fcntl.LOCK_SH))
        meta = read_meta(path)
        folder = meta["path"]
        if like is None:
            model, config = _kit_model(meta, model_config)
        else:
            model, config = like, getattr(like, "config", None)
            _check_config(meta["model_config"], model_config, folder=folder)
            _check_config(meta["model_config"], config if hasattr(config, "to_dict") else None, folder=folder)
        target = nnx.to_flat_state(nnx.state(model))
        _check_fits(meta["model_state"], [d for d, _ in _model_leaves(model)], what="model", folder=folder)
        train_config = TrainConfig.from_dict(meta["train_config"]) if meta["train_config"] is not None else None
        opt_target = None
        if meta["opt_state"] is not None:
            if optimizer is None:
                optimizer = make_optimizer(train_config)
            opt_target = jax.eval_shape(optimizer.init, nnx.state(model, nnx.Param))
            _check_fits(meta["opt_state"], [d for d, _ in _tree_leaves(opt_target)], what="optimizer state",
                        folder=folder)
        _check_intact(folder)
        arrays = _read_arrays(folder / "state")

    stored = _stored_values(arrays, "model", meta["model_state"], folder / "state")
    restored = []
    for p, variable in target:
        # Onto the device (and sharding) of the module's own leaf; an abstract leaf has none: the default device.
        value = jax.device_put(stored["/".join(map(str, p))], getattr(variable.get_value(), "sharding", None))
        restored.append((p, variable.replace(value)))
    nnx.update(model, nnx.from_flat_state(restored))
    opt_state = None
    if opt_target is not None:
        stored = _stored_values(arrays, "opt_state", meta["opt_state"], folder / "state")
        opt_state = jax.tree.map_with_path(lambda p, _: jax.device_put(stored[jax.tree_util.keystr(p)]), opt_target)
    return Checkpoint(model, opt_state, config, train_config, list(meta["history"]))
