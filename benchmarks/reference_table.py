"""The kit's reference table: MLP and conv VAEs of every latent size, trained and scored one way on two datasets.

No canonical figure exists for a VAE on Fashion-MNIST, so the kit measures its own. Every row
is one model setup on one dataset, trained from scratch with 3 seeds (Adam 1e-3, batch 128, β = 1,
the ELBO with one posterior sample) and scored on the test split; each figure is the mean ± the
standard deviation over the seeds (``ddof=1``).

Setups (``architecture`` in the JSON):

* ``mlp``: the kit's MLP VAE (784-400, ``VAEConfig(architecture="mlp")``), latent 2, 8, 16, 32, 64;
* ``conv``: the kit's conv VAE (channels 32-64, pixel-shuffle upsampling), the same latent sizes;
* ``article-001``: article 001's MLP, widths 784-256-128 and a 128-dimensional code, as the kit
  corrects it (:data:`vaekit.articles.CORRECTED_001_CONFIG`: two linear heads for the mean and
  the log-variance, the summed ELBO);
* ``latent-512``: article 002's 512-dimensional code, on the kit's MLP.

Datasets (``dataset``, ``likelihood``):

* ``fashion-mnist`` (``bernoulli-cross-entropy``): grey Fashion-MNIST, 60,000 training and 10,000
  test images. A Bernoulli decoder's "likelihood" of grey pixels is a cross-entropy against grey
  targets, not the probability of any image: the -ELBO and the IWAE bound are cross-entropies.
* ``mnist-binarized`` (``bernoulli-nll``): the kit's MNIST digits, 8,000 for training (binarized
  afresh every epoch) and 2,000 for testing (binarized once, seed 0, the same for every row).
  There the IWAE bound estimates a true -log p(x).

Per row: the test -ELBO (nats per image, one posterior sample, ``vaekit.train.evaluate``); the IWAE
bound with K importance samples on the first test images (``iwae_bce`` or ``iwae_nll``); PSNR and
SSIM of the reconstructions E[x | z = mu(x)] of the test images (means over images); the Fréchet
distance, precision and recall (k = 3) of prior samples against test images, both embedded by the
kit's classifier (``vaekit.features``: "FD on the kit's classifier features", never FID, since
the features are not Inception's); the trainable parameters; the training seconds per epoch
(compilation and scoring excluded). A prior sample is the decoder's mean E[x|z], z ~ N(0, I), on
grey data; on binary data, where the model is a distribution over binary images, it is a binary
image drawn from that mean, compared with the binary test images. The feature network is trained
once per dataset on first use (``vaekit.features.feature_network`` with its defaults) and cached
in the zoo; its time is not part of any row.

The full budget (:data:`FULL`) is sized to finish in about 75 minutes on the kit's 2-core machine
shared with other work (about one core's worth of CPU), from per-row costs measured with it:

* epochs: on Fashion-MNIST 8 for the MLP setups (``mlp``, ``article-001``, ``latent-512``; about
  5 s an epoch) and 2 for the conv setups (about 47 s an epoch); on binarized MNIST (8,000
  training digits) 15 and 4;
* IWAE with K = 100 on the first 200 test images (K = 1000 on 1,000 images would cost about
  70 s per MLP row and 280 s per conv row, more than the whole budget);
* FD, precision and recall on 2,000 prior samples against the first 2,000 test images (all of
  MNIST's test split; the same number on both datasets);
* PSNR and SSIM on the first 1,000 test images; the -ELBO on the whole test split.

That is 24 rows × 3 seeds = 72 trainings: measured under load, about 60 s per Fashion-MNIST MLP
seed, 130 s per conv seed, 25 s and 40 s on MNIST. The conv models see fewer epochs than the MLPs:
compare them at this budget, not at convergence. ``--quick`` (:data:`QUICK`) runs every row once
with a tiny budget (1 epoch on 2,048 images), to check the script end to end.

Results go to ``benchmarks/results/reference_table.json`` (``--quick``:
``reference_table.quick.json``, so a check never overwrites the full table), rewritten atomically
after every measured seed, so an interrupted run keeps all it measured; a rerun under the same
budget resumes where it stopped. The seeds run outermost: a run stopped early has every row with
fewer seeds rather than some rows with none.

Run (from the repository root)::

    nice -n 5 python benchmarks/reference_table.py [--quick]

It prints one line per measurement, then the table (Markdown, :func:`format_table`); the last
line is one JSON object summarising the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Callable, Iterable

import jax
import numpy as np

from vaekit import articles, batched, datasets, features, metrics, models, train, zoo

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "benchmarks" / "results"
FULL_PATH = RESULTS / "reference_table.json"
QUICK_PATH = RESULTS / "reference_table.quick.json"

LATENT_DIMS = (2, 8, 16, 32, 64)
ARCHITECTURES = ("mlp", "conv", "article-001", "latent-512")
ARCHITECTURE_LABELS = {
    "mlp": "MLP 784-400",
    "conv": "conv 32-64",
    "article-001": "article 001: MLP 784-256-128, two heads",
    "latent-512": "article 002's code: MLP 784-400",
}
ARTICLE_001_LATENT_DIM = articles.CORRECTED_001_CONFIG.latent_dim
ARTICLE_002_LATENT_DIM = 512

DATASETS = ("fashion-mnist", "mnist-binarized")
LIKELIHOODS = {"fashion-mnist": "bernoulli-cross-entropy", "mnist-binarized": "bernoulli-nll"}
DATASET_TITLES = {
    "fashion-mnist": "Fashion-MNIST, grey pixels: the -ELBO and IWAE columns are Bernoulli cross-entropies against "
                     "grey targets (nats per image), not likelihoods",
    "mnist-binarized": "MNIST, binarized: the -ELBO and IWAE columns bound -log p(x) (nats per image); "
                       "IWAE estimates the NLL",
}
IWAE_NAMES = {"fashion-mnist": "iwae_bce", "mnist-binarized": "iwae_nll"}
FEATURE_DATASETS = {"fashion-mnist": "fashion-mnist", "mnist-binarized": "mnist"}
TEST_BINARIZATION_SEED = 0

METRICS = ("seconds_per_epoch", "test_neg_elbo", "iwae", "psnr", "ssim", "fd", "precision", "recall")


@dataclasses.dataclass(frozen=True)
class Setup:
    """One model of the table: an architecture and the size of its code.

    Attributes:
      architecture: ``"mlp"``, ``"conv"``, ``"article-001"`` (latent 128) or ``"latent-512"`` (latent 512).
      latent_dim: the size of :math:`z`.
    """

    architecture: str
    latent_dim: int

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(map(repr, ARCHITECTURES))}; "
                             f"got {self.architecture!r}")
        models.check_positive_int("latent_dim", self.latent_dim)
        fixed = {"article-001": ARTICLE_001_LATENT_DIM, "latent-512": ARTICLE_002_LATENT_DIM}
        if self.architecture in fixed and self.latent_dim != fixed[self.architecture]:
            raise ValueError(f"latent_dim of {self.architecture!r} is the article's, {fixed[self.architecture]}; "
                             f"got {self.latent_dim}")

    @property
    def config(self) -> models.VAEConfig:
        """The model's :class:`vaekit.VAEConfig`."""
        if self.architecture == "article-001":
            return articles.CORRECTED_001_CONFIG
        architecture = "mlp" if self.architecture == "latent-512" else self.architecture
        return models.VAEConfig(architecture=architecture, latent_dim=self.latent_dim)


def setups() -> tuple[Setup, ...]:
    """Every setup of the table: MLP and conv at each of :data:`LATENT_DIMS`, then the articles' two."""
    grid = tuple(Setup(architecture, d) for architecture in ("mlp", "conv") for d in LATENT_DIMS)
    return (*grid, Setup("article-001", ARTICLE_001_LATENT_DIM), Setup("latent-512", ARTICLE_002_LATENT_DIM))


@dataclasses.dataclass(frozen=True)
class Budget(models.Config):
    """How much each row is trained and how many images score it.

    MNIST's training split is 7.5 times smaller than Fashion-MNIST's, so its epochs are counted apart.

    Attributes:
      fashion_mlp_epochs: training epochs of the MLP setups (``mlp``, ``article-001``, ``latent-512``)
        on Fashion-MNIST.
      fashion_conv_epochs: training epochs of the conv setups on Fashion-MNIST.
      mnist_mlp_epochs: training epochs of the MLP setups on binarized MNIST.
      mnist_conv_epochs: training epochs of the conv setups on binarized MNIST.
      seeds: the seeds of each row (initial parameters, shuffling, sampling).
      iwae_samples: K, the importance samples of the IWAE bound.
      iwae_images: the IWAE bound scores the first this many test images.
      fd_samples: prior samples for FD, precision and recall, compared with as many test images
        (at most the test split's size).
      reconstruction_images: PSNR and SSIM score the reconstructions of the first this many test images.
      train_images: train on the first this many training images (``None``: all).
      test_images: the -ELBO scores the first this many test images (``None``: all).
      batch_size: images per training step.
      learning_rate: Adam's step size.
    """

    fashion_mlp_epochs: int
    fashion_conv_epochs: int
    mnist_mlp_epochs: int
    mnist_conv_epochs: int
    seeds: tuple[int, ...] = (0, 1, 2)
    iwae_samples: int = 1000
    iwae_images: int = 1000
    fd_samples: int = 5000
    reconstruction_images: int = 1000
    train_images: int | None = None
    test_images: int | None = None
    batch_size: int = 128
    learning_rate: float = 1e-3

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(self.seeds))
        for name in ("fashion_mlp_epochs", "fashion_conv_epochs", "mnist_mlp_epochs", "mnist_conv_epochs",
                     "iwae_samples", "iwae_images", "fd_samples",
                     "reconstruction_images", "batch_size"):
            models.check_positive_int(name, getattr(self, name))
        for name in ("train_images", "test_images"):
            if getattr(self, name) is not None:
                models.check_positive_int(name, getattr(self, name))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct integers, at least one; got {self.seeds!r}")
        if self.fd_samples <= 3:
            raise ValueError(f"fd_samples must exceed precision/recall's k = 3; got {self.fd_samples}")

    def epochs(self, setup: Setup, dataset: str) -> int:
        """The epochs ``setup`` trains for on ``dataset``."""
        _check_dataset(dataset)
        prefix = {"fashion-mnist": "fashion", "mnist-binarized": "mnist"}[dataset]
        return getattr(self, f"{prefix}_{setup.config.architecture}_epochs")


FULL = Budget(fashion_mlp_epochs=8, fashion_conv_epochs=2, mnist_mlp_epochs=15, mnist_conv_epochs=4,
              iwae_samples=100, iwae_images=200, fd_samples=2000, reconstruction_images=1000)
QUICK = Budget(fashion_mlp_epochs=1, fashion_conv_epochs=1, mnist_mlp_epochs=1, mnist_conv_epochs=1, seeds=(0,),
               iwae_samples=16, iwae_images=100, fd_samples=500, reconstruction_images=500, train_images=2048,
               test_images=1000)


@functools.cache
def splits(dataset: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The training and test splits of a table dataset, loaded once per process."""
    _check_dataset(dataset)
    if dataset == "fashion-mnist":
        return datasets.load("fashion-mnist", "train"), datasets.load("fashion-mnist", "test")
    return (datasets.load("mnist", "train", binarization="dynamic"),
            datasets.load("mnist", "test", binarization="static", seed=TEST_BINARIZATION_SEED))


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}; got {dataset!r}")


def _first(data: datasets.Dataset, n: int | None) -> datasets.Dataset:
    return data if n is None or n >= len(data) else data.take(n)


def fd_sample_count(dataset: str, budget: Budget) -> int:
    """How many prior samples, and test images, FD and precision/recall compare."""
    return min(budget.fd_samples, len(splits(dataset)[1]))


_REAL_FEATURES: dict[tuple[str, int, int], np.ndarray] = {}


def _real_features(dataset: str, n: int, network: models.Classifier) -> np.ndarray:
    """The classifier features of the first ``n`` test images, computed once per process."""
    key = (dataset, n, id(network))
    if key not in _REAL_FEATURES:
        _REAL_FEATURES[key] = features.embed(splits(dataset)[1].images[:n], network=network, progress=False)
    return _REAL_FEATURES[key]


def prior_samples(model: models.VAE, n: int, *, binary: bool, key: jax.Array) -> np.ndarray:
    """``n`` images from the model: decoder means of z ~ N(0, I), or binary images drawn from them.

    Args:
      model: a trained Bernoulli VAE.
      n: the number of images.
      binary: draw each pixel from Bernoulli(E[x|z]) (a model of binary images), else return E[x|z].
      key: PRNG key.

    Returns:
      ``(n, 28, 28, 1)`` float32 images in ``[0, 1]``.
    """
    code_key, pixel_key = jax.random.split(key)
    z = np.asarray(jax.random.normal(code_key, (n, model.latent_dim)), np.float32)
    means = batched.decode(model, z, progress=False)
    if not binary:
        return means
    return np.asarray(jax.random.bernoulli(pixel_key, means), np.float32)


def measure(setup: Setup, dataset: str, seed: int, budget: Budget, *,
            network: models.Classifier | None = None) -> dict:
    """Trains one setup with one seed and scores it: one seed of one row of the table.

    Args:
      setup: the model.
      dataset: ``"fashion-mnist"`` or ``"mnist-binarized"``.
      seed: seeds the initial parameters, the training and every sample drawn while scoring.
      budget: epochs and the numbers of images and samples (:class:`Budget`).
      network: the feature network for FD and precision/recall; ``None``: the kit's
        (``vaekit.features.feature_network`` with its defaults, trained on first use).

    Returns:
      A dict: ``dataset``, ``architecture``, ``latent_dim``, ``seed``, ``epochs``, ``parameters``,
      ``seconds_per_epoch``, ``test_neg_elbo``, ``iwae`` and ``iwae_neg_elbo`` (the -ELBO of the
      same images), ``psnr``, ``ssim``, ``fd``, ``precision``, ``recall``, ``seconds`` (the whole
      measurement) and ``compile_seconds``.
    """
    _check_dataset(dataset)
    if not isinstance(setup, Setup):
        raise TypeError(f"setup must be a Setup (see setups()); got {type(setup).__name__}")
    if network is None:
        network = features.feature_network(FEATURE_DATASETS[dataset])[0]
    train_data, test_data = splits(dataset)
    train_data = _first(train_data, budget.train_images)
    num_fd = fd_sample_count(dataset, budget)
    real_features = _real_features(dataset, num_fd, network)

    tic = time.perf_counter()
    model = models.make_vae(setup.config, seed=seed)
    config = train.TrainConfig(epochs=budget.epochs(setup, dataset), batch_size=budget.batch_size,
                               learning_rate=budget.learning_rate, seed=seed)
    result = train.fit(model, train_data, None, config, progress=False)

    elbo_key, iwae_key, sample_key = jax.random.split(jax.random.key(seed), 3)
    neg_elbo = train.evaluate(model, _first(test_data, budget.test_images), key=elbo_key)["neg_elbo"]
    bounds = train.evaluate(model, _first(test_data, budget.iwae_images), key=iwae_key,
                            num_samples=budget.iwae_samples)
    iwae_name = IWAE_NAMES[dataset]
    if iwae_name not in bounds:
        raise RuntimeError(f"{dataset}: evaluate reported {sorted(bounds)}, expected {iwae_name!r}")

    originals = _first(test_data, budget.reconstruction_images).images
    reconstructions = batched.reconstruct(model, originals, progress=False)
    samples = prior_samples(model, num_fd, binary=dataset == "mnist-binarized", key=sample_key)
    generated_features = features.embed(samples, network=network, progress=False)
    precision, recall = metrics.precision_recall(real_features, generated_features)
    return {
        "dataset": dataset,
        "architecture": setup.architecture,
        "latent_dim": setup.latent_dim,
        "seed": seed,
        "epochs": config.epochs,
        "parameters": models.count_parameters(model),
        "seconds_per_epoch": float(np.mean([entry["seconds"] for entry in result.history])),
        "test_neg_elbo": float(neg_elbo),
        "iwae": float(bounds[iwae_name]),
        "iwae_neg_elbo": float(bounds["neg_elbo"]),
        "psnr": float(np.mean(np.asarray(metrics.psnr(reconstructions, originals)))),
        "ssim": float(np.mean(np.asarray(metrics.ssim(reconstructions, originals)))),
        "fd": metrics.frechet_distance(real_features, generated_features),
        "precision": precision,
        "recall": recall,
        "seconds": time.perf_counter() - tic,
        "compile_seconds": result.compile_seconds,
    }


def _mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (``ddof=1``; ``None`` for a single value)."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}


def summarize(runs: list[dict], budget: Budget) -> dict:
    """One row of the table from the runs (one per seed) of one setup on one dataset."""
    first = runs[0]
    dataset = first["dataset"]
    row = {
        "dataset": dataset,
        "likelihood": LIKELIHOODS[dataset],
        "architecture": first["architecture"],
        "latent_dim": first["latent_dim"],
        "seeds": [run["seed"] for run in runs],
        "epochs": first["epochs"],
        "parameters": first["parameters"],
    }
    for name in METRICS:
        row[name] = _mean_std([run[name] for run in runs])
    test_size = len(splits(dataset)[1])
    row["test_neg_elbo"]["num_images"] = min(budget.test_images or test_size, test_size)
    # The -ELBO of the IWAE's own images: the gap between the two bounds, free of which images were chosen.
    row["iwae"].update(num_samples=budget.iwae_samples, num_images=min(budget.iwae_images, test_size),
                       neg_elbo=_mean_std([run["iwae_neg_elbo"] for run in runs]))
    for name in ("psnr", "ssim"):
        row[name]["num_images"] = min(budget.reconstruction_images, test_size)
    row["fd"]["num_samples"] = fd_sample_count(dataset, budget)
    row["runs"] = runs
    return row


def _commit() -> tuple[str | None, bool | None]:
    """The checkout's commit, and whether the kit or this script differ from it."""
    try:
        commit = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(REPOSITORY), "status", "--porcelain", "--", "vaekit",
                                  "benchmarks/reference_table.py"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(changes.strip())


def _machine() -> dict:
    model_name = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                       if line.startswith("model name")), platform.processor() or None)
    return {"cpu_count": os.cpu_count(), "cpus_available": len(os.sched_getaffinity(0)), "cpu": model_name,
            "platform": platform.platform(), "jax_backend": jax.default_backend()}


def _cpuinfo() -> str:
    try:
        return pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _start(path: pathlib.Path, budget: Budget, command: str) -> dict:
    """The results so far at ``path`` (measured under ``budget``), or an empty table."""
    if path.exists():
        results = json.loads(path.read_text())
        if results.get("budget") != budget.to_dict():
            raise ValueError(f"{path} was measured under another budget ({results.get('budget')}), not "
                             f"{budget.to_dict()}: move it away to measure this budget from the start")
    else:
        results = {"rows": []}
    commit, dirty = _commit()
    return {"command": command, "date": None, "budget": budget.to_dict(), "machine": _machine(), "commit": commit,
            "uncommitted_changes": dirty, "complete": False, "seconds": results.get("seconds", 0.0),
            "rows": results["rows"]}


def _find_row(results: dict, setup: Setup, dataset: str) -> dict | None:
    return next((row for row in results["rows"] if row["dataset"] == dataset
                 and row["architecture"] == setup.architecture and row["latent_dim"] == setup.latent_dim), None)


def _is_complete(results: dict, grid: list[tuple[Setup, str]], budget: Budget) -> bool:
    for setup, dataset in grid:
        row = _find_row(results, setup, dataset)
        if row is None or sorted(row["seeds"]) != sorted(budget.seeds):
            return False
    return True


def run_table(budget: Budget, path: pathlib.Path, *, command: str, table_setups: Iterable[Setup] | None = None,
              table_datasets: Iterable[str] = DATASETS, log: Callable[[str], None] = print) -> dict:
    """Measures every (setup, dataset, seed) not yet at ``path``, rewriting it after each.

    Args:
      budget: the :class:`Budget`; a file measured under another one is an error.
      path: the JSON file, read to resume and rewritten atomically after every measurement.
      command: the command line to record.
      table_setups: the setups (default: :func:`setups`).
      table_datasets: the datasets (default: both).
      log: receives one line per measurement.

    Returns:
      The results, as written to ``path``.
    """
    table_setups = list(setups() if table_setups is None else table_setups)
    table_datasets = list(table_datasets)
    for dataset in table_datasets:
        _check_dataset(dataset)
    grid = [(setup, dataset) for dataset in table_datasets for setup in table_setups]
    path.parent.mkdir(parents=True, exist_ok=True)
    results = _start(path, budget, command)
    for seed in budget.seeds:
        for setup, dataset in grid:
            row = _find_row(results, setup, dataset)
            if row is not None and seed in row["seeds"]:
                continue
            run = measure(setup, dataset, seed, budget)
            runs = sorted([*(row["runs"] if row else []), run], key=lambda r: budget.seeds.index(r["seed"]))
            new_row = summarize(runs, budget)
            results["rows"] = [new_row if r is row else r for r in results["rows"]] if row else [
                *results["rows"], new_row]
            results["seconds"] += run["seconds"]
            results["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            results["complete"] = _is_complete(results, grid, budget)
            zoo.write_atomically(path, json.dumps(results, indent=1))
            log(f"{dataset:>15}  {ARCHITECTURE_LABELS[setup.architecture]:<40} z={setup.latent_dim:<3} seed {seed}: "
                f"-ELBO {run['test_neg_elbo']:.2f}, IWAE-{budget.iwae_samples} {run['iwae']:.2f}, "
                f"FD {run['fd']:.2f}; {run['seconds']:.0f} s ({run['seconds_per_epoch']:.1f} s/epoch)")
    complete = _is_complete(results, grid, budget)
    if results["complete"] != complete or results["date"] is None:
        results["complete"] = complete
        results["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        zoo.write_atomically(path, json.dumps(results, indent=1))
    return results


def _cell(stat: dict, digits: int) -> str:
    if stat["std"] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


_COLUMNS = (  # (header, row key, digits)
    ("s / epoch", "seconds_per_epoch", 1),
    ("test −ELBO", "test_neg_elbo", 2),
    ("IWAE", "iwae", 2),
    ("PSNR (dB)", "psnr", 2),
    ("SSIM", "ssim", 3),
    ("FD", "fd", 2),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
)


def format_table(results: dict) -> str:
    """The results as Markdown: one table per dataset, mean ± std over the seeds, and what each column means.

    Args:
      results: a table as :func:`run_table` writes it (the JSON of ``benchmarks/results/``).

    Returns:
      Markdown text.
    """
    budget = results["budget"]
    seeds = ", ".join(map(str, budget["seeds"]))
    parts = [f"Mean ± std over seeds {seeds}, each trained from scratch (Adam {budget['learning_rate']:g}, batch "
             f"{budget['batch_size']}). Measured {results['date']} by `{results['command']}`"
             f"{'' if results['complete'] else ' (incomplete: not every row has every seed)'}."]
    for dataset in DATASETS:
        rows = [row for row in results["rows"] if row["dataset"] == dataset]
        if not rows:
            continue
        rows.sort(key=lambda row: (ARCHITECTURES.index(row["architecture"]), row["latent_dim"]))
        elbo, iwae, psnr, fd = (rows[0][name] for name in ("test_neg_elbo", "iwae", "psnr", "fd"))
        headers = ["architecture", "latent", "parameters", "epochs", *(
            f"IWAE-{iwae['num_samples']}" if key == "iwae" else header for header, key, _ in _COLUMNS)]
        lines = [f"**{DATASET_TITLES[dataset]}.** Test −ELBO on the first {elbo['num_images']:,} test images, "
                 f"IWAE on the first {iwae['num_images']:,}, PSNR and SSIM of the reconstructions of the first "
                 f"{psnr['num_images']:,}; FD on the kit's classifier features (not FID), precision and recall: "
                 f"{fd['num_samples']:,} prior samples against the first {fd['num_samples']:,} test images.", "",
                 "| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
        for row in rows:
            cells = [ARCHITECTURE_LABELS[row["architecture"]], str(row["latent_dim"]), f"{row['parameters']:,}",
                     str(row["epochs"]),
                     *(_cell(row[key], digits) for _, key, digits in _COLUMNS)]
            if sorted(row["seeds"]) != sorted(budget["seeds"]):
                cells[0] += f" (seeds {', '.join(map(str, row['seeds']))})"
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a tiny budget end to end (writes {QUICK_PATH.relative_to(REPOSITORY)})")
    args = parser.parse_args(argv)
    budget, path = (QUICK, QUICK_PATH) if args.quick else (FULL, FULL_PATH)
    command = " ".join(["python", "benchmarks/reference_table.py", *(["--quick"] if args.quick else [])])
    tic = time.perf_counter()
    results = run_table(budget, path, command=command, log=lambda line: print(line, flush=True))
    print()
    print(format_table(results))
    print()
    measured = sum(len(row["seeds"]) for row in results["rows"])
    print(json.dumps({"output": str(path.relative_to(REPOSITORY)), "complete": results["complete"],
                      "rows": len(results["rows"]), "measurements": measured,
                      "measured_seconds": round(results["seconds"], 1),
                      "this_run_seconds": round(time.perf_counter() - tic, 1), "budget": results["budget"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
