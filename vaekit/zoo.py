r"""The model zoo: a grid of trained VAEs (β × latent dimension), trained on demand and cached on disk.

The dashboards compare models that differ in :math:`\beta` (the weight of the rate in
:math:`\text{distortion} + \beta\cdot\text{rate}`) and in the size of :math:`z`. Training one
takes seconds, so each is trained once and kept as a vaekit checkpoint::

    ZOO_ROOT/<dataset>/<architecture>-z<latent>-beta<beta>-<key>/
      checkpoint/   vaekit.checkpoint folder (parameters, configs, history)
      point.json    the full key and the test-set rate and distortion

``<key>`` is a hash of everything that determines the trained model: dataset, training
subset, binarization, every :class:`~vaekit.models.VAEConfig` and
:class:`~vaekit.train.TrainConfig` field (the seed included). ``point.json`` is written
last, atomically: a folder without it is an interrupted training and counts as absent.

The root is the ``root`` argument, else :func:`default_root`: ``$VAEKIT_ZOO``, else ``zoo/``
at the top of the source tree the kit runs from, else (an installed kit) a per-user cache
folder, ``$XDG_CACHE_HOME/vaekit/zoo`` or ``~/.cache/vaekit/zoo``; never the current
directory. ``python -m vaekit zoo`` trains the grid the chapters use (:data:`CHAPTER_BETAS`
× :data:`CHAPTER_LATENT_DIMS`).

Example:
  >>> import numpy as np, tempfile
  >>> folder = tempfile.TemporaryDirectory()
  >>> zoo = Zoo(folder.name, dataset="mnist", train_size=256, train_config=TrainConfig(epochs=1, batch_size=64))
  >>> entry = zoo.load(beta=1.0, latent_dim=2, progress=False)  # not on disk yet: trains (seconds)
  >>> zoo.load(beta=1.0, latent_dim=2) is entry  # then answers from memory (or from disk in a new process)
  True
  >>> entry.model.decode(np.zeros((1, 2), np.float32)).shape
  (1, 28, 28, 1)
  >>> folder.cleanup()
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import pathlib
import tempfile
import time
from typing import Callable, Iterator

import jax

from vaekit import checkpoint, datasets, models, train
from vaekit.models import Config, ConfigError, VAEConfig
from vaekit.train import TrainConfig

ZOO_FORMAT = 2
ROOT_ENV = "VAEKIT_ZOO"

CHAPTER_BETAS = (0.1, 0.3, 1.0, 3.0, 10.0)
CHAPTER_LATENT_DIMS = (2, 4, 8, 16, 32, 64)
CHAPTER_DATASET = "fashion-mnist"

DEFAULT_MODEL_CONFIG = VAEConfig(architecture="mlp", hidden_dims=(400,))
# Four epochs of the full Fashion-MNIST training set: 10 s per MLP point on average on a 2-core CPU
# (7-16 s over the 30 chapter points, compilation and test evaluation included), under the 20 s a
# learner may wait in a dashboard; `python -m vaekit zoo` prints the time of each point.
DEFAULT_TRAIN_CONFIG = TrainConfig(epochs=4, batch_size=128, learning_rate=1e-3)

_POINT_FILE = "point.json"
_CHECKPOINT_DIR = "checkpoint"

Progress = bool | Callable[[int, int], None]


def _root_without_environment() -> pathlib.Path:
    checkout = datasets.checkout_root()
    if checkout is not None:
        return checkout / "zoo"
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "vaekit" / "zoo"


# The root when $VAEKIT_ZOO is not set: the checkout's zoo/, or the user's cache folder for an installed kit.
DEFAULT_ROOT = _root_without_environment()


def default_root() -> pathlib.Path:
    """``$VAEKIT_ZOO`` if set, else :data:`DEFAULT_ROOT` (see the module docstring); never the current directory."""
    env = os.environ.get(ROOT_ENV)
    return pathlib.Path(env) if env else DEFAULT_ROOT


def _check_dataset(name: str) -> None:
    if name not in datasets.DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, datasets.DATASETS))}; got {name!r}")


@dataclasses.dataclass(frozen=True)
class PointSpec(Config):
    """Everything that determines one trained model of the zoo.

    Attributes:
      dataset: ``"fashion-mnist"`` or ``"mnist"``.
      model_config: the architecture (its ``latent_dim`` is the grid's latent dimension).
      train_config: how it is trained (its ``beta`` is the grid's β; its ``seed`` also
        seeds the initial parameters).
      train_size: train on the first ``train_size`` images of the training split
        (``None``: all of them).
      binarization: ``None``, ``"static"`` or ``"dynamic"`` (see :mod:`vaekit.datasets`).
    """

    dataset: str
    model_config: VAEConfig
    train_config: TrainConfig
    train_size: int | None = None
    binarization: str | None = None

    def __post_init__(self):
        _check_dataset(self.dataset)
        if self.train_size is not None and (
            not isinstance(self.train_size, int) or isinstance(self.train_size, bool) or self.train_size <= 0
        ):
            raise ConfigError(f"train_size must be a positive integer or None; got {self.train_size!r}")
        if self.binarization not in (None, *datasets.BINARIZATIONS):
            allowed = ", ".join(map(repr, (None, *datasets.BINARIZATIONS)))
            raise ConfigError(f"binarization must be one of {allowed}; got {self.binarization!r}")

    @property
    def beta(self) -> float:
        return self.train_config.beta

    @property
    def latent_dim(self) -> int:
        return self.model_config.latent_dim

    @property
    def key(self) -> str:
        """A hash of every field (and of the zoo's storage format)."""
        return self.fingerprint(zoo_format=ZOO_FORMAT)

    @property
    def folder_name(self) -> str:
        return f"{self.model_config.architecture}-z{self.latent_dim}-beta{self.beta:g}-{self.key}"


@dataclasses.dataclass(frozen=True)
class PointRecord:
    """What the zoo knows of a trained point without loading its parameters.

    Attributes:
      spec: the :class:`PointSpec`.
      rate: test-set mean :math:`\\mathrm{KL}(q(z|x)\\|p(z))`, nats per image.
      distortion: test-set mean :math:`-\\log p(x|z)`, nats per image.
      neg_elbo: ``rate + distortion`` (the β = 1 bound).
      train_seconds: wall time of training and evaluation, compilation included.
      path: the point's folder.
    """

    spec: PointSpec
    rate: float
    distortion: float
    neg_elbo: float
    train_seconds: float
    path: pathlib.Path


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A trained model of the zoo with its record."""

    model: models.VAE
    record: PointRecord

    @property
    def spec(self) -> PointSpec:
        return self.record.spec


@functools.lru_cache(maxsize=8)
def _load_split(name: str, split: str, binarization: str | None, seed: int) -> datasets.Dataset:
    return datasets.load(name, split, binarization=binarization, seed=seed)


def training_data(spec: PointSpec) -> datasets.Dataset:
    """The training images of a point (loaded once per process)."""
    data = _load_split(spec.dataset, "train", spec.binarization, spec.train_config.seed)
    return data.take(spec.train_size) if spec.train_size is not None else data


def evaluation_data(spec: PointSpec) -> datasets.Dataset:
    """The test split a point is scored on: statically binarized if it was trained on binary images."""
    binarization = "static" if spec.binarization is not None else None
    return _load_split(spec.dataset, "test", binarization, spec.train_config.seed)


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename: readers see the old file or the new."""
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(staging, path)
    except BaseException:
        pathlib.Path(staging).unlink(missing_ok=True)
        raise


def _read_record(folder: pathlib.Path) -> PointRecord | None:
    point_file = folder / _POINT_FILE
    if not point_file.is_file():
        return None
    try:
        values = json.loads(point_file.read_text())
    except json.JSONDecodeError as e:
        raise checkpoint.CheckpointError(f"{point_file}: damaged ({e}); delete {folder} to retrain it") from None
    if values.get("zoo_format") != ZOO_FORMAT:
        return None  # written by another version of the zoo: its key differs, so it is not this point
    scores = values["test"]
    return PointRecord(
        spec=PointSpec.from_dict(values["spec"]),
        rate=scores["rate"],
        distortion=scores["distortion"],
        neg_elbo=scores["neg_elbo"],
        train_seconds=values["train_seconds"],
        path=folder,
    )


def train_point(spec: PointSpec, folder: str | pathlib.Path, *, progress: Progress = True) -> ZooModel:
    """Trains one point, scores it on the test split and saves it under ``folder``.

    Args:
      spec: what to train.
      folder: the point's folder (created; an existing point there is replaced).
      progress: ``True`` for a progress bar, ``False`` for none, or a callable
        ``(steps_done, total_steps)``, as in :func:`vaekit.train.fit`.

    Returns:
      The trained :class:`ZooModel`.
    """
    folder = pathlib.Path(folder)
    tic = time.perf_counter()
    model = models.make_vae(spec.model_config, seed=spec.train_config.seed)
    result = train.fit(model, training_data(spec), None, spec.train_config, progress=progress)
    scores = train.evaluate(model, evaluation_data(spec), key=jax.random.key(spec.train_config.seed))
    seconds = time.perf_counter() - tic
    test = {name: scores[name] for name in ("rate", "distortion", "neg_elbo")}
    if not all(math.isfinite(v) for v in test.values()):
        raise train.TrainingDivergedError(f"{folder}: test scores are not finite ({test}); the point is not kept")
    checkpoint.save(folder / _CHECKPOINT_DIR, model, train_config=spec.train_config, history=result.history)
    record = {"zoo_format": ZOO_FORMAT, "key": spec.key, "spec": spec.to_dict(), "test": test,
              "train_seconds": seconds, "compile_seconds": result.compile_seconds}
    write_atomically(folder / _POINT_FILE, json.dumps(record, indent=2))
    return ZooModel(model, _read_record(folder))


def grid(betas=CHAPTER_BETAS, latent_dims=CHAPTER_LATENT_DIMS) -> Iterator[tuple[float, int]]:
    """The (β, latent dimension) pairs of a grid, smallest models first."""
    for latent_dim in latent_dims:
        for beta in betas:
            yield float(beta), int(latent_dim)


class Zoo:
    """A family of trained models that differ only in β and latent dimension.

    Args:
      root: folder of the zoo; :func:`default_root` if ``None``.
      dataset: ``"fashion-mnist"`` or ``"mnist"``.
      model_config: the architecture of every point (its ``latent_dim`` is replaced).
      train_config: the training of every point (its ``beta`` is replaced).
      train_size: train on the first ``train_size`` training images (``None``: all).
      binarization: ``None``, ``"static"`` or ``"dynamic"``.
      max_in_memory: how many loaded models to keep (least recently used are dropped).

    Raises:
      ValueError: an unknown dataset or an invalid setting, naming the allowed values.
    """

    def __init__(
        self,
        root: str | pathlib.Path | None = None,
        *,
        dataset: str = CHAPTER_DATASET,
        model_config: VAEConfig = DEFAULT_MODEL_CONFIG,
        train_config: TrainConfig = DEFAULT_TRAIN_CONFIG,
        train_size: int | None = None,
        binarization: str | None = None,
        max_in_memory: int = 64,
    ):
        _check_dataset(dataset)
        if not isinstance(max_in_memory, int) or max_in_memory < 1:
            raise ConfigError(f"max_in_memory must be a positive integer; got {max_in_memory!r}")
        self.root = pathlib.Path(root) if root is not None else default_root()
        self.dataset = dataset
        self._base = PointSpec(dataset, model_config, train_config, train_size, binarization)
        self._loaded: collections.OrderedDict[PointSpec, ZooModel] = collections.OrderedDict()
        self._max_in_memory = max_in_memory

    def __repr__(self) -> str:
        return f"Zoo({str(self.root)!r}, dataset={self.dataset!r})"

    def spec(self, *, beta: float, latent_dim: int) -> PointSpec:
        """The key of the point (β, latent dimension) of this zoo."""
        return dataclasses.replace(
            self._base,
            model_config=dataclasses.replace(self._base.model_config, latent_dim=latent_dim),
            train_config=dataclasses.replace(self._base.train_config, beta=float(beta)),
        )

    def path(self, spec: PointSpec) -> pathlib.Path:
        return self.root / spec.dataset / spec.folder_name

    def record(self, *, beta: float, latent_dim: int) -> PointRecord | None:
        """The record of a trained point, or ``None`` if it is not trained yet."""
        spec = self.spec(beta=beta, latent_dim=latent_dim)
        record = _read_record(self.path(spec))
        return record if record is not None and record.spec == spec else None

    def is_trained(self, *, beta: float, latent_dim: int) -> bool:
        return self.record(beta=beta, latent_dim=latent_dim) is not None

    def is_loaded(self, *, beta: float, latent_dim: int) -> bool:
        """Whether the point is in memory (a :meth:`load` returns without reading the disk)."""
        return self.spec(beta=beta, latent_dim=latent_dim) in self._loaded

    def records(self) -> list[PointRecord]:
        """Every trained point of this family on disk, sorted by latent dimension then β."""
        found = []
        for folder in sorted((self.root / self.dataset).glob("*/")):
            record = _read_record(folder)
            if record is None:
                continue
            spec = record.spec
            if self.spec(beta=spec.beta, latent_dim=spec.latent_dim) == spec:
                found.append(record)
        return sorted(found, key=lambda r: (r.spec.latent_dim, r.spec.beta))

    def load(self, *, beta: float, latent_dim: int, train: bool = True, progress: Progress = True) -> ZooModel:
        """The trained model (β, latent dimension): from memory, else from disk, else trained now.

        Args:
          beta: β of the point.
          latent_dim: latent dimension of the point.
          train: train the point if it is not on disk; if ``False``, raise instead.
          progress: how training reports progress (see :func:`train_point`).

        Returns:
          A :class:`ZooModel`.

        Raises:
          LookupError: the point is not trained and ``train`` is ``False``.
          vaekit.CheckpointError: the point's folder is damaged (the message names it).
        """
        spec = self.spec(beta=beta, latent_dim=latent_dim)
        if spec in self._loaded:
            self._loaded.move_to_end(spec)
            return self._loaded[spec]
        folder = self.path(spec)
        record = _read_record(folder)
        if record is not None and record.spec == spec:
            restored = checkpoint.restore(folder / _CHECKPOINT_DIR, model_config=spec.model_config)
            if restored.train_config != spec.train_config:
                raise checkpoint.CheckpointError(
                    f"{folder}: its checkpoint was trained with {restored.train_config}, its point.json says "
                    f"{spec.train_config}; delete the folder to retrain it"
                )
            entry = ZooModel(restored.model, record)
        elif train:
            entry = train_point(spec, folder, progress=progress)
        else:
            raise LookupError(
                f"β={beta:g}, latent_dim={latent_dim} is not in the zoo at {self.root / self.dataset}; "
                f"train it with zoo.load(..., train=True) or `python -m vaekit zoo`"
            )
        self._loaded[spec] = entry
        while len(self._loaded) > self._max_in_memory:
            self._loaded.popitem(last=False)
        return entry

    def test_data(self) -> datasets.Dataset:
        """The test split the points are scored on."""
        return evaluation_data(self._base)
