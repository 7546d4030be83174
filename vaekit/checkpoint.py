"""Checkpoints: model parameters, optimizer state, configs and history, saved with Orbax.

A checkpoint is a folder::

    CHECKPOINT/
      state/      Orbax arrays: {"params": ..., "opt_state": ...}
      meta.json   format version, model and training configs, history

Nothing is pickled. A save writes a new folder beside the target and swaps it in
only when complete, so an interrupted save leaves the last good checkpoint in place.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from typing import Any, NamedTuple, Sequence

import jax
import orbax.checkpoint as ocp
from flax import nnx

from vaekit import models
from vaekit.train import TrainConfig, make_optimizer

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit what is asked of it."""


class Checkpoint(NamedTuple):
    """A restored checkpoint."""

    model: models.VAE
    opt_state: Any
    model_config: models.VAEConfig
    train_config: TrainConfig | None
    history: list[dict[str, float]]


def _state_tree(model: nnx.Module, opt_state: Any) -> dict[str, Any]:
    # Optax states are tuples of named tuples; Orbax stores them as a flat, numbered dict
    # and the structure is rebuilt from a fresh optimizer on restore.
    tree: dict[str, Any] = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    if opt_state is not None:
        tree["opt_state"] = {str(i): leaf for i, leaf in enumerate(jax.tree.leaves(opt_state))}
    return tree


def save(
    path: str | pathlib.Path,
    model: models.VAE,
    *,
    opt_state: Any = None,
    train_config: TrainConfig | None = None,
    history: Sequence[dict[str, float]] = (),
) -> pathlib.Path:
    """Saves a checkpoint atomically, replacing any checkpoint already at ``path``.

    Args:
      path: the checkpoint folder.
      model: a :class:`~vaekit.models.VAE`.
      opt_state: the optimizer state from :func:`vaekit.train.fit`, to resume training.
      train_config: the :class:`~vaekit.train.TrainConfig` it was trained with.
      history: the per-epoch history.

    Returns:
      The checkpoint folder.
    """
    path = pathlib.Path(path).absolute()
    if opt_state is not None and train_config is None:
        raise CheckpointError("opt_state needs its train_config (to rebuild the optimizer on restore)")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.saving-", dir=path.parent))
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / "state", _state_tree(model, opt_state))
        checkpointer.wait_until_finished()
        checkpointer.close()
        meta = {
            "format": FORMAT_VERSION,
            "model_config": model.config.to_dict(),
            "train_config": train_config.to_dict() if train_config is not None else None,
            "has_opt_state": opt_state is not None,
            "history": list(history),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        _swap_in(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _swap_in(staging: pathlib.Path, path: pathlib.Path) -> None:
    """Replaces ``path`` by ``staging`` with renames only, keeping the old one until the new is in place."""
    retired = path.with_name(f".{path.name}.retired")
    shutil.rmtree(retired, ignore_errors=True)
    if path.exists():
        path.rename(retired)
    staging.rename(path)
    shutil.rmtree(retired, ignore_errors=True)


def read_meta(path: str | pathlib.Path) -> dict[str, Any]:
    """The configs and history of a checkpoint, without loading its arrays."""
    path = pathlib.Path(path)
    retired = path.with_name(f".{path.name}.retired")
    if not path.exists() and retired.exists():
        path = retired  # a save was interrupted between its two renames: the old checkpoint is intact
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise CheckpointError(f"{path}: not a vaekit checkpoint (no meta.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta_file}: damaged ({e})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_file}: format {meta.get('format')!r}, this vaekit reads format {FORMAT_VERSION}")
    meta["path"] = path
    return meta


def restore(path: str | pathlib.Path, *, model_config: models.VAEConfig | None = None) -> Checkpoint:
    """Restores a checkpoint saved by :func:`save`, bit for bit.

    Args:
      path: the checkpoint folder.
      model_config: if given, the checkpoint must have been saved from this configuration.

    Returns:
      A :class:`Checkpoint` with a ready-to-use model.

    Raises:
      CheckpointError: if the folder is not a checkpoint, is damaged, or its
        configuration differs from ``model_config`` (the differing fields are named).
    """
    meta = read_meta(path)
    saved = models.VAEConfig.from_dict(meta["model_config"])
    if model_config is not None and model_config != saved:
        diffs = [
            f"{name}: checkpoint has {getattr(saved, name)!r}, asked for {getattr(model_config, name)!r}"
            for name in saved.to_dict()
            if getattr(saved, name) != getattr(model_config, name)
        ]
        raise CheckpointError(f"{meta['path']}: model config does not match ({'; '.join(diffs)})")
    train_config = TrainConfig.from_dict(meta["train_config"]) if meta["train_config"] is not None else None
    model = models.make_vae(saved)
    opt_state = make_optimizer(train_config).init(nnx.state(model, nnx.Param)) if meta["has_opt_state"] else None
    target = _state_tree(model, opt_state)
    state_dir = meta["path"] / "state"
    checkpointer = ocp.StandardCheckpointer()
    try:
        restored = checkpointer.restore(state_dir, jax.tree.map(ocp.utils.to_shape_dtype_struct, target))
    except Exception as e:  # Orbax raises many types; all mean the arrays cannot be read back
        raise CheckpointError(f"{state_dir}: cannot restore the arrays ({type(e).__name__}: {e})") from None
    finally:
        checkpointer.close()
    nnx.replace_by_pure_dict(params := nnx.state(model, nnx.Param), restored["params"])
    nnx.update(model, params)
    if opt_state is not None:
        treedef = jax.tree.structure(opt_state)
        leaves = [restored["opt_state"][str(i)] for i in range(treedef.num_leaves)]
        opt_state = jax.tree.unflatten(treedef, leaves)
    return Checkpoint(model, opt_state, saved, train_config, list(meta["history"]))
