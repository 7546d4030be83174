"""Image datasets that ship with the kit: reading IDX files, named splits, binarization.

Everything is read from the kit's own copy of the data (:func:`default_data_dir`): nothing is downloaded.
Images come back as ``float32`` arrays of shape ``(N, 28, 28, 1)`` (NHWC) with values
in ``[0, 1]``, labels as ``int32`` arrays of shape ``(N,)``.

Binarization turns grey levels into {0, 1} pixels so that a Bernoulli likelihood is a
proper model of the data:

* ``"static"``: each pixel is drawn once, ``x ~ Bernoulli(grey level)``, with a fixed seed;
  the same binary images are used in every epoch.
* ``"dynamic"``: the images stay grey here and are resampled on every pass of training
  (each epoch sees a fresh binarization), which acts as data augmentation and is the
  usual protocol for reporting MNIST log-likelihoods (Salakhutdinov & Murray, 2008).
"""

from __future__ import annotations

import dataclasses
import gzip
import pathlib
import site
import struct
import sys
import sysconfig
import zlib

import numpy as np

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
# Where an installed kit keeps its data, under an installation prefix (pyproject.toml's data-files).
INSTALLED_DATA = pathlib.Path("share", "vaekit", "data")

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

BINARIZATIONS = ("static", "dynamic")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))

# MNIST ships as 10,000 digits in a fixed shuffled order, without an official split:
# the first 8,000 are the training split and the last 2,000 the test split.
MNIST_TRAIN_SIZE = 8_000


@dataclasses.dataclass(frozen=True)
class _Source:
    folder: str
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file)
    sizes: dict[str, int]
    classes: tuple[str, ...]


_SOURCES = {
    "fashion-mnist": _Source(
        folder="fashion-mnist",
        files={
            "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        },
        sizes={"train": 60_000, "test": 10_000},
        classes=FASHION_MNIST_CLASSES,
    ),
    "mnist": _Source(
        folder="mnist-10k",
        files={
            "train": ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"),
            "test": ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"),
        },
        sizes={"train": MNIST_TRAIN_SIZE, "test": 10_000 - MNIST_TRAIN_SIZE},
        classes=MNIST_CLASSES,
    ),
}

DATASETS = tuple(_SOURCES)
SPLITS = ("train", "test")


class DatasetError(ValueError):
    """A dataset name, split or file that cannot be used."""


def checkout_root() -> pathlib.Path | None:
    """The source tree the package runs from (a clone, an editable install), or ``None`` for an installed kit."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def data_dir_candidates() -> list[pathlib.Path]:
    """Where :func:`default_data_dir` looks, in order: the checkout's ``data/``, then ``<prefix>/share/vaekit/data``.

    The prefixes are the current environment's, the user's (``pip install --user``) and the one
    the package itself sits in (``<prefix>/lib/python3.X/site-packages/vaekit``, e.g. ``pip install --prefix``).
    """
    checkout = checkout_root()
    prefixes = [sysconfig.get_path("data"), sys.prefix, site.getuserbase()]
    prefixes += [lib.parent for lib in PACKAGE_DIR.parents[1:3] if lib.name.lower() == "lib"]
    candidates = [checkout / "data"] if checkout is not None else []
    for prefix in prefixes:
        if (candidate := pathlib.Path(prefix) / INSTALLED_DATA) not in candidates:
            candidates.append(candidate)
    return candidates


def default_data_dir() -> pathlib.Path:
    """The folder holding the bundled datasets, wherever the kit runs from (the current directory plays no part).

    Raises:
      DatasetError: no candidate of :func:`data_dir_candidates` exists; the message lists them.
    """
    candidates = data_dir_candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DatasetError(
        "the kit's data folder was not found; looked in " + ", ".join(map(str, candidates))
        + " (reinstall vaekit, or pass data_dir= a folder holding fashion-mnist/ and mnist-10k/)"
    )


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images and labels of one split.

    Attributes:
      images: ``float32`` array ``(N, 28, 28, 1)`` in ``[0, 1]``.
      labels: ``int32`` array ``(N,)``.
      name: dataset name, e.g. ``"fashion-mnist"``.
      split: ``"train"`` or ``"test"``.
      classes: human-readable class names, indexed by label.
      binarization: ``None``, ``"static"`` or ``"dynamic"`` (see the module docstring).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str
    classes: tuple[str, ...]
    binarization: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)``, the batch form objectives take (a conditional VAE reads the labels)."""
        return self.images, self.labels

    def take(self, n: int) -> "Dataset":
        """The first ``n`` examples, e.g. for a quick experiment."""
        if not 0 < n <= len(self):
            raise DatasetError(f"take: n must be in 1..{len(self)}, got {n}")
        return dataclasses.replace(self, images=self.images[:n], labels=self.labels[:n])


def read_idx(path: str | pathlib.Path, *, magic: int) -> np.ndarray:
    """Reads a gzip-compressed IDX file (big-endian header, then raw ``uint8``).

    Args:
      path: the ``.gz`` file.
      magic: the expected magic number: ``0x00000803`` for images, ``0x00000801`` for labels.

    Returns:
      A ``uint8`` array of shape ``(n, rows, cols)`` for images or ``(n,)`` for labels.

    Raises:
      DatasetError: naming the file, if it is missing, not gzip, truncated, or its
        header does not describe its contents.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (the kit's data folder ships it; is the kit complete?)")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e})") from None
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    # The magic number comes first: a labels file given as images is the wrong file, not a truncated one.
    if len(raw) >= 4 and (found_magic := struct.unpack(">I", raw[:4])[0]) != magic:
        raise DatasetError(f"{path}: bad magic number 0x{found_magic:08x}, expected 0x{magic:08x}")
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes, expected at least {header_size})")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = int(np.prod(dims))
    body = len(raw) - header_size
    if body != expected:
        raise DatasetError(
            f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes of data, file has {body}"
            + (" (truncated)" if body < expected else " (trailing bytes)")
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _check_choice(parameter: str, value, allowed) -> None:
    if value not in allowed:
        raise DatasetError(f"{parameter} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def binarize(images: np.ndarray, *, seed: int) -> np.ndarray:
    """Draws ``x ~ Bernoulli(images)`` pixel-wise, reproducibly for a given seed."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def load(
    name: str,
    split: str = "train",
    *,
    binarization: str | None = None,
    seed: int = 0,
    data_dir: str | pathlib.Path | None = None,
) -> Dataset:
    """Loads a named split of a bundled dataset.

    Args:
      name: ``"fashion-mnist"`` (60,000 train / 10,000 test) or ``"mnist"`` (10,000
        digits: the first 8,000 of the shipped, shuffled order are ``"train"``, the last
        2,000 ``"test"``).
      split: ``"train"`` or ``"test"``.
      binarization: ``None`` (grey levels), ``"static"`` (drawn once with ``seed``) or
        ``"dynamic"`` (left grey here, redrawn by training on every epoch).
      seed: seed of the static binarization.
      data_dir: folder holding the dataset folders; :func:`default_data_dir` by default.

    Returns:
      A :class:`Dataset`.

    Example:
      >>> test = load("fashion-mnist", "test")
      >>> test.images.shape, test.images.dtype, test.classes[test.labels[0]]
      ((10000, 28, 28, 1), dtype('float32'), 'Ankle boot')
    """
    _check_choice("name", name, DATASETS)
    _check_choice("split", split, SPLITS)
    _check_choice("binarization", binarization, (None, *BINARIZATIONS))
    source = _SOURCES[name]
    folder = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    folder = folder / source.folder
    images_file, labels_file = source.files[split]
    images = read_idx(folder / images_file, magic=IMAGES_MAGIC)
    labels = read_idx(folder / labels_file, magic=LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{folder / images_file}: images are {images.shape[1:]}, expected 28 x 28")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{folder / labels_file}: {labels.shape[0]} labels for {images.shape[0]} images in {images_file}"
        )
    if name == "mnist":
        total = sum(source.sizes.values())
        if images.shape[0] != total:
            raise DatasetError(f"{folder / images_file}: {images.shape[0]} images, expected {total} for {name}")
        part = slice(None, MNIST_TRAIN_SIZE) if split == "train" else slice(MNIST_TRAIN_SIZE, None)
        images, labels = images[part], labels[part]
    if images.shape[0] != source.sizes[split]:
        raise DatasetError(
            f"{folder / images_file}: {images.shape[0]} images, expected {source.sizes[split]} for {name}/{split}"
        )
    if labels.max(initial=0) >= len(source.classes):
        raise DatasetError(f"{folder / labels_file}: label {labels.max()} out of range 0..{len(source.classes) - 1}")
    grey = (images.astype(np.float32) / 255.0)[..., None]
    if binarization == "static":
        grey = binarize(grey, seed=seed)
    return Dataset(
        images=grey,
        labels=labels.astype(np.int32),
        name=name,
        split=split,
        classes=source.classes,
        binarization=binarization,
    )

