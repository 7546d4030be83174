r"""Segmentation at full budget: the six networks of chapter 09, the baselines of chapter 10, the GED of chapter 11.

Chapters 09-11 have 180 s each, too little to train these networks to their figures; they
train a short live run and show the tables this script measures, read from the JSON it
writes. Everything here is measured by the run that writes the file; nothing is copied in.

**Data** (:mod:`vaekit.scenes`). Colour scenes of Fashion-MNIST items on textured
backgrounds, ``size × size`` pixels, 1-3 items each (overlapping), training scenes drawn with
seed 0 from the training items and test scenes with seed 1 from the test items; the *binary*
task is the foreground (any item against background), the *semantic* task the 11 classes
(background and the 10 labels). The ambiguous scenes (:func:`vaekit.scenes.ambiguous_scenes`)
carry several plausible masks per image with known probabilities (the *modes*) and the masks
of four simulated annotators, whom the networks train on.

**Networks** (:mod:`vaekit.segmentation`; all share one encoder, channels 16-32-64, and train
through :func:`vaekit.fit` with Adam, each with its own objective): (a) the plain conv
autoencoder (no skips, transposed convolutions up); (b) the same with deep supervision (a
cross-entropy at every decoder scale, :class:`~vaekit.segmentation.MultiScaleSegmentationObjective`);
(c) the same with repeat-then-convolve upsampling; (d) the fully convolutional segmentation
VAE (cross-entropy summed over pixels + β·KL of its latent map), scored twice: decoded from
:math:`z = \mu` and from one sampled :math:`z`; FCN with score fusion at strides 8-4-2; the
U-Net. On the ambiguous scenes: the Probabilistic U-Net (:mod:`vaekit.probunet`, latent 6,
β = 1), the deterministic U-Net and the VAE (d).

**What each number is** (every network on the same scenes, budget and seeds; mean ± standard
deviation over the seeds of each seed's mean over the test scenes):

- ``fg_iou``, ``dice``, ``boundary_f``: foreground IoU, Dice and boundary F-score (tolerance
  2 pixels) of the binary networks (:mod:`vaekit.metrics.segmentation`; two empty masks count IoU 1).
- ``black_dots``: isolated false-negative components per image, wrong background pixels
  enclosed by predicted foreground (:func:`vaekit.metrics.segmentation.isolated_components`): the
  article's "black dots" as a count.
- ``checkerboard``: :func:`vaekit.metrics.checkerboard` of the predicted foreground
  probabilities, mean per image (the transposed convolution's periodic artefact).
- ``mean_iou``: semantic mean IoU over the 11 classes, background included (per-class IoU
  over the whole test set, then their mean), and ``pixel_accuracy``.
- ``parameters``; ``train_seconds``: wall time of :func:`vaekit.fit`, compilation included
  (``compile_seconds`` is that part). Timings are of a 2-core CPU shared with other work.
- Baselines on the luminance: Otsu's threshold per image, the best single threshold (and
  polarity) chosen on training scenes, region growing from an *oracle* seed (the foreground
  pixel farthest from the background) with the tolerance chosen on training scenes, and the
  best prediction that is constant over an image (all foreground or all background, the best
  of the two per image: all that a network whose global pooling discards position can
  draw).
- The foreground task again on :data:`LARGE_SIZE` × :data:`LARGE_SIZE` canvases (``large_canvas``):
  the same baselines and the binary U-Net, with the budget's scenes, epochs and seeds. On the
  32×32 canvases a 28×28 item fills most of the image, which helps any method that finds one
  item from a seed; on the larger ones the background is most of the image.
- ``classifier_ceiling``: the fraction of the test scenes' visible items that the kit's
  Fashion-MNIST classifier (:func:`vaekit.features.feature_network`, its logits) names
  correctly from the item's own pixels, in grey, peak brightness 1, centred on a black
  28×28 canvas as in its training data. A semantic network that finds every item's pixels
  must still name each item; this is how often the kit's dedicated classifier manages.
  Also given: the same from the raw crop of the item's box (background and neighbours kept).
- GED (chapter 11): :math:`D^2_{GED} = 2\,\mathbb{E}\,d(S, Y) - \mathbb{E}\,d(S, S') - \mathbb{E}\,d(Y, Y')`,
  :math:`d = 1 - \mathrm{IoU}` (two empty masks: :math:`d = 0`), :math:`Y` the modes weighted
  by their exact probabilities, :math:`S` the network's :math:`n` samples, every expectation a
  V-statistic over all pairs (:func:`vaekit.metrics.segmentation.generalized_energy_distance`), averaged over
  the test images, for :math:`n` = 1, 4, 16, 100. The V-statistic counts the :math:`n` zero
  distances of each sample to itself, so it is biased: its expected value is
  :math:`D^2_{GED} + \mathbb{E}\,d(S, S')/n`. For samples of the true distribution that is
  :math:`\pi^\top D \pi / n` (:func:`vaekit.metrics.segmentation.ged_optimum`), the *optimum* column: the
  best any network can expect at that :math:`n`. A row of samples drawn from the true
  distribution checks the estimator against it. ``sample_diversity``: mean :math:`d` over
  distinct pairs of 16 samples; ``hungarian_iou``: mean IoU of the best one-to-one matching
  of as many samples as annotators to the annotators' masks.

**Budgets** (:class:`Budget`): ``FULL`` is the default; ``--quick`` runs a smaller one and
writes ``segmentation.quick.json`` instead. The file records the command, date, budget,
machine and vaekit's commit. It is rewritten atomically after every trained network, so an
interrupted run keeps what it measured, and a rerun under the same budget and on the same
scenes resumes, skipping the rows already measured (another budget, or scenes that
:mod:`vaekit.scenes` now draws differently, start afresh).

Run (from the repository root)::

    python benchmarks/segmentation.py [--quick] [--output PATH]

The last printed line is one JSON object: ``unet_fg_iou``, ``threshold_fg_iou`` (the better
of the two threshold baselines), ``region_growing_fg_iou``, ``constant_fg_iou``,
``unet_miou``, ``best_miou_model``, ``classifier_ceiling``, ``probunet_ged``, ``unet_ged``,
``vae_ged`` and ``ged_optimum`` (at the largest :math:`n`, ``ged_samples``), ``unet_fg_iou_64``
and ``best_baseline_fg_iou_64`` (the larger canvases), whether each target of issue 12 is met
(the foreground targets at both sizes), and ``seconds`` (the time spent measuring every row of
the file).
"""

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import vaekit as vk
from vaekit import batched, classical, features, probunet, scenes, segmentation, segmentation_vae
from vaekit.metrics import segmentation as mask_metrics
from vaekit.models import Config, count_parameters
from vaekit.zoo import write_atomically

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "benchmarks" / "results"
RESULTS_FORMAT = 1

SEGMENTATION_MODELS = ("autoencoder", "multiscale", "repeat", "vae", "fcn", "unet")
AMBIGUOUS_MODELS = ("probunet", "unet", "vae")
TASKS = ("binary", "semantic")

# Each scored variant of a trained network: how it turns images into masks.
MEAN, SAMPLED = "mean", "sampled"
LABELS = {
    "autoencoder": "(a) conv autoencoder",
    "multiscale": "(b) multi-loss autoencoder",
    "repeat": "(c) repeat + conv autoencoder",
    "vae:mean": "(d) segmentation VAE, z = μ",
    "vae:sampled": "(d) segmentation VAE, sampled z",
    "fcn": "FCN (strides 8-4-2 fused)",
    "unet": "U-Net",
    "probunet:sampled": "Probabilistic U-Net, prior samples",
    "probunet:mean": "Probabilistic U-Net, prior mean",
}

AMBIGUOUS_ORDER = ("probunet:sampled", "probunet:mean", "unet", "vae:sampled", "vae:mean")

DIVERSITY_SAMPLES = 16
BOUNDARY_TOLERANCE = 2
REGION_TOLERANCES = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.40, 0.48, 0.64)
EVAL_BATCH = 100
# The foreground task again on larger canvases, where the items cover a sixth of the image instead of
# half: the U-Net (binary, the budget's scenes, epochs and seeds) against the same baselines.
LARGE_SIZE = 64

# Targets of issue 12.
UNET_FG_IOU_TARGET = 0.90
BASELINE_FG_IOU_LIMIT = 0.70
GED_MARGIN = 0.05


@dataclasses.dataclass(frozen=True)
class Budget(Config):
    """Everything a measurement depends on; rows measured under another budget are not reused.

    Attributes:
      train_scenes: training scenes (binary and semantic tasks train on the same ones).
      test_scenes: test scenes every network is scored on.
      size: scene height and width (a multiple of 8, FCN's stride).
      binary_epochs: epochs of the foreground networks.
      semantic_epochs: epochs of the 11-class networks.
      seeds: one run per seed (initial parameters and shuffling); the scenes stay the same.
      models: which of :data:`SEGMENTATION_MODELS` to train.
      channels: channels per level of the shared encoder, finest first (FCN adds one more
        level of the last width, for its stride-8 scores); also the Probabilistic U-Net's
        prior and posterior nets.
      batch_size: scenes per update.
      learning_rate: Adam's step size.
      beta: the KL weight of the VAE (d) and of the Probabilistic U-Net.
      baseline_scenes: training scenes that choose the baselines' threshold and tolerance,
        and test scenes that score region growing (the slowest baseline).
      ambiguous_train: ambiguous training images (each seen with every annotator's mask).
      ambiguous_test: ambiguous test images.
      ambiguous_size: their height and width.
      ambiguous_epochs: epochs on the ambiguous scenes.
      ambiguous_models: which of :data:`AMBIGUOUS_MODELS` to train.
      ged_samples: the sample counts :math:`n` of the GED.
      classifier_train_size: ``None``: the kit's feature network as it is (trained on all of
        Fashion-MNIST once and cached in the zoo); an integer: a small classifier trained on
        that many images for one epoch (tests only).
    """

    train_scenes: int
    test_scenes: int
    size: int
    binary_epochs: int
    semantic_epochs: int
    seeds: tuple[int, ...]
    models: tuple[str, ...] = SEGMENTATION_MODELS
    channels: tuple[int, ...] = (16, 32, 64)
    batch_size: int = 32
    learning_rate: float = 2e-3
    beta: float = 1.0
    baseline_scenes: int = 500
    ambiguous_train: int = 1000
    ambiguous_test: int = 200
    ambiguous_size: int = 32
    ambiguous_epochs: int = 10
    ambiguous_models: tuple[str, ...] = AMBIGUOUS_MODELS
    ged_samples: tuple[int, ...] = (1, 4, 16, 100)
    classifier_train_size: int | None = None

    def __post_init__(self):
        for name in ("seeds", "models", "channels", "ambiguous_models", "ged_samples"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, allowed in (("models", SEGMENTATION_MODELS), ("ambiguous_models", AMBIGUOUS_MODELS)):
            unknown = [m for m in getattr(self, name) if m not in allowed]
            if unknown or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty selection of {', '.join(map(repr, allowed))}; "
                                 f"got {getattr(self, name)!r}")
        if "unet" not in self.models or not {"probunet", "unet"} <= set(self.ambiguous_models):
            raise ValueError("the headline needs the U-Net in models and the Probabilistic U-Net and U-Net in "
                             f"ambiguous_models; got {self.models!r} and {self.ambiguous_models!r}")
        stride = 2 ** (len(self.channels) - 1)
        if len(self.channels) < 2 or self.size % (2 * stride) or self.ambiguous_size % stride:
            raise ValueError(f"channels must name at least two levels, size must be a multiple of FCN's stride and "
                             f"ambiguous_size of the U-Net's; got channels {self.channels!r}, size {self.size} and "
                             f"ambiguous_size {self.ambiguous_size}")
        if not self.seeds or not self.ged_samples or min(self.ged_samples) < 1:
            raise ValueError(f"seeds and ged_samples must be non-empty, ged_samples >= 1; "
                             f"got {self.seeds!r} and {self.ged_samples!r}")


FULL = Budget(train_scenes=4000, test_scenes=1000, size=32, binary_epochs=8, semantic_epochs=24, seeds=(0, 1, 2),
              batch_size=16, ambiguous_train=1000, ambiguous_test=200, ambiguous_epochs=8)
"""The budget of ``benchmarks/results/segmentation.json``."""

QUICK = Budget(train_scenes=1000, test_scenes=300, size=32, binary_epochs=2, semantic_epochs=2, seeds=(0,),
               baseline_scenes=200, ambiguous_train=300, ambiguous_test=50, ambiguous_epochs=3)
"""A smoke run of every part (``--quick``): its figures are far from the full budget's."""


# --------------------------------------------------------------------------- networks


def build(name: str, num_classes: int, in_channels: int, channels: tuple[int, ...], *,
          seed: int) -> tuple[nnx.Module, Any]:
    """A freshly initialised network of :data:`SEGMENTATION_MODELS` (or ``"probunet"``) and its objective."""
    rngs = nnx.Rngs(params=seed)
    common = {"in_channels": in_channels, "num_classes": num_classes, "channels": channels}
    autoencoder = functools.partial(segmentation.SegmentationAutoencoderConfig, **common)
    if name == "autoencoder":
        return segmentation.SegmentationAutoencoder(autoencoder(), rngs=rngs), segmentation.SegmentationObjective()
    if name == "multiscale":
        return (segmentation.SegmentationAutoencoder(autoencoder(deep_supervision=True), rngs=rngs),
                segmentation.MultiScaleSegmentationObjective())
    if name == "repeat":
        return (segmentation.SegmentationAutoencoder(autoencoder(upsampling="repeat"), rngs=rngs),
                segmentation.SegmentationObjective())
    if name == "vae":
        config = segmentation_vae.SegmentationVAEConfig(**common)
        return segmentation_vae.SegmentationVAE(config, rngs=rngs), segmentation_vae.SegmentationVAEObjective()
    if name == "fcn":
        config = segmentation.FCNConfig(**{**common, "channels": (*channels, channels[-1])})
        return segmentation.FCN(config, rngs=rngs), segmentation.SegmentationObjective()
    if name == "unet":
        config = segmentation.UNetConfig(**common)
        return segmentation.UNet(config, rngs=rngs), segmentation.SegmentationObjective()
    if name == "probunet":
        config = probunet.ProbabilisticUNetConfig(unet=segmentation.UNetConfig(**common), encoder_channels=channels)
        return probunet.ProbabilisticUNet(config, rngs=rngs), probunet.ProbabilisticUNetObjective()
    raise ValueError(f"unknown network {name!r}")


def variants(name: str) -> tuple[str, ...]:
    """How a trained network is scored: at its mean, and (stochastic networks) from samples."""
    return (MEAN, SAMPLED) if name in ("vae", "probunet") else (MEAN,)


def row_name(name: str, variant: str) -> str:
    """``"unet"``, or ``"vae:sampled"`` for a network scored in more than one way."""
    return name if len(variants(name)) == 1 else f"{name}:{variant}"


def train(name: str, arrays: tuple[np.ndarray, np.ndarray], num_classes: int, epochs: int, budget: Budget, *,
          seed: int) -> tuple[nnx.Module, dict[str, float]]:
    """Trains one network through :func:`vaekit.fit`; returns it and its cost and last training metrics."""
    model, objective = build(name, num_classes, arrays[0].shape[-1], budget.channels, seed=seed)
    config = vk.TrainConfig(epochs=epochs, batch_size=budget.batch_size, learning_rate=budget.learning_rate,
                            beta=budget.beta, seed=seed)
    start = time.perf_counter()
    result = vk.fit(model, arrays, None, config, objective=objective, progress=False)
    seconds = time.perf_counter() - start
    last = {k: v for k, v in result.history[-1].items() if k.startswith("train_")}
    return model, {"parameters": count_parameters(model), "train_seconds": seconds,
                   "compile_seconds": result.compile_seconds, **last}


# --------------------------------------------------------------------------- predictions


def _mean_logits(model, images, key):
    del key
    return model(images)


def _sampled_logits(model, images, key):
    return model(images, key=key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _classes_and_foreground(logits_of: Callable, graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array,
                            key: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = logits_of(nnx.merge(graphdef, state), images, key)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), 1.0 - jax.nn.softmax(logits, axis=-1)[..., 0]


def _padded_batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(size, n - start)


def predict(model: nnx.Module, images: np.ndarray, variant: str, *, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Every image's most likely class per pixel ``(N, H, W)`` and foreground probability ``(N, H, W)``.

    ``variant``: :data:`MEAN` (``model(x)``) or :data:`SAMPLED` (``model(x, key=...)``, a
    fresh key per batch). Batches are padded to one shape, so each network compiles once.
    """
    logits_of = _sampled_logits if variant == SAMPLED else _mean_logits
    graphdef, state = nnx.split(model)
    size = min(EVAL_BATCH, len(images))
    classes, foreground = [], []
    for start, real in _padded_batches(len(images), size):
        batch = np.zeros((size, *images.shape[1:]), np.float32)
        batch[:real] = images[start:start + real]
        c, f = _classes_and_foreground(logits_of, graphdef, state, batch, jax.random.fold_in(key, start))
        classes.append(np.asarray(c)[:real])
        foreground.append(np.asarray(f)[:real])
    return np.concatenate(classes), np.concatenate(foreground)


def _prior_samples(model, images, key, num_samples):
    return model.sample(images, key=key, num_samples=num_samples)


def _encoder_samples(model, images, key, num_samples):
    return jax.vmap(lambda k: model(images, key=k))(jax.random.split(key, num_samples))


def _repeated_mean(model, images, key, num_samples):
    del key
    logits = model(images)
    return jnp.broadcast_to(logits, (num_samples, *logits.shape))


@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def _foreground_samples(samples_of: Callable, graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array,
                        key: jax.Array, num_samples: int) -> jax.Array:
    return jnp.argmax(samples_of(nnx.merge(graphdef, state), images, key, num_samples), axis=-1) != 0


def sample_foregrounds(name: str, model: nnx.Module, images: np.ndarray, variant: str, num_samples: int, *,
                       key: jax.Array) -> np.ndarray:
    """``(N, num_samples, H, W)`` bool foreground masks of each image.

    The Probabilistic U-Net samples :math:`z` from its prior :math:`p(z|x)`; the VAE (d) from
    its encoder :math:`q(z|x)`; a :data:`MEAN` variant repeats its one mask.
    """
    if variant == MEAN:
        samples_of = _repeated_mean
    else:
        samples_of = _prior_samples if name == "probunet" else _encoder_samples
    graphdef, state = nnx.split(model)
    size = max(1, min(len(images), 2000 // num_samples))
    parts = []
    for start, real in _padded_batches(len(images), size):
        batch = np.zeros((size, *images.shape[1:]), np.float32)
        batch[:real] = images[start:start + real]
        masks = _foreground_samples(samples_of, graphdef, state, batch, jax.random.fold_in(key, start), num_samples)
        parts.append(np.swapaxes(np.asarray(masks), 0, 1)[:real])
    return np.concatenate(parts)


# --------------------------------------------------------------------------- scores


def binary_scores(classes: np.ndarray, foreground_probability: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean over images of the foreground metrics, the black dots and the checkerboard statistic."""
    predicted = classes != 0
    return {
        "fg_iou": float(np.mean(mask_metrics.iou(predicted, target))),
        "dice": float(np.mean(mask_metrics.dice(predicted, target))),
        "boundary_f": float(np.mean(mask_metrics.boundary_f_score(predicted, target, tolerance=BOUNDARY_TOLERANCE))),
        "black_dots": float(np.mean(mask_metrics.isolated_components(predicted, target))),
        "checkerboard": float(np.mean(np.asarray(vk.metrics.checkerboard(foreground_probability[..., None])))),
    }


def semantic_scores(classes: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Mean IoU (background included), per-class IoU and pixel accuracy over the test set."""
    per_class = mask_metrics.per_class_iou(classes, target, num_classes)
    return {
        "mean_iou": float(mask_metrics.mean_iou(classes, target, num_classes)),
        "pixel_accuracy": float(np.mean(mask_metrics.pixel_accuracy(classes, target))),
        "fg_iou": float(np.mean(mask_metrics.iou(classes != 0, target != 0))),
        "per_class_iou": [None if math.isnan(v) else float(v) for v in per_class],
    }


def constant_prediction_scores(target: np.ndarray) -> dict[str, float]:
    """The best foreground mask that is constant over each image: all foreground or all background.

    Per image the better of the two by IoU (the empty-mask rule decides an empty target);
    this is exact, as no other constant mask exists.
    """
    full, empty = np.ones_like(target, bool), np.zeros_like(target, bool)
    iou = np.maximum(mask_metrics.iou(full, target), mask_metrics.iou(empty, target))
    dice = np.maximum(mask_metrics.dice(full, target), mask_metrics.dice(empty, target))
    return {"fg_iou": float(np.mean(iou)), "dice": float(np.mean(dice))}


def visible_items(scene_set: scenes.SegmentationScenes) -> np.ndarray:
    """``(N,)``: how many items show at least one pixel in each scene."""
    return np.array([np.count_nonzero(np.bincount(instances.ravel())[1:]) for instances in scene_set.instances])


def baseline_scores(train_scenes: scenes.SegmentationScenes, test_scenes: scenes.SegmentationScenes,
                    budget: Budget) -> dict[str, Any]:
    """Otsu, the best fixed threshold, region growing from an oracle seed, and the best constant mask."""
    tune = train_scenes.take(min(budget.baseline_scenes, len(train_scenes)))
    test_target = test_scenes.foreground

    def mean_iou_of(pred, target):
        return float(np.mean(mask_metrics.iou(pred, target)))

    # Otsu splits the luminance in two; which side is the items is chosen on training scenes.
    _, otsu_inverted = classical.best_threshold(tune.images, tune.foreground, thresholds="otsu")
    start = time.perf_counter()
    otsu = classical.threshold_segmentation(test_scenes.images) != otsu_inverted
    otsu_seconds = time.perf_counter() - start

    threshold, inverted = classical.best_threshold(tune.images, tune.foreground)
    tune_iou = mean_iou_of(classical.threshold_segmentation(tune.images, threshold=threshold) != inverted,
                           tune.foreground)
    fixed = classical.threshold_segmentation(test_scenes.images, threshold=threshold) != inverted

    tune_seeds = classical.deepest_pixels(tune.foreground)
    tolerance = max(REGION_TOLERANCES, key=lambda tol: mean_iou_of(
        classical.region_growing(tune.images, tune_seeds, tolerance=tol), tune.foreground))
    grown_scenes = test_scenes.take(min(budget.baseline_scenes, len(test_scenes)))
    start = time.perf_counter()
    grown = classical.region_growing(grown_scenes.images, classical.deepest_pixels(grown_scenes.foreground),
                                     tolerance=tolerance)
    grow_seconds = time.perf_counter() - start

    def scores(pred, target, **extra):
        return {"fg_iou": mean_iou_of(pred, target), "dice": float(np.mean(mask_metrics.dice(pred, target))),
                "boundary_f": float(np.mean(mask_metrics.boundary_f_score(pred, target, tolerance=BOUNDARY_TOLERANCE))),
                **extra}

    # One seed finds one item: how region growing fares by the number of items in a scene.
    items = visible_items(grown_scenes)
    grown_iou = mask_metrics.iou(grown, grown_scenes.foreground)
    by_items = {str(k): float(np.mean(grown_iou[items == k])) for k in np.unique(items)}

    return {
        "otsu": scores(otsu, test_target, inverted=bool(otsu_inverted),
                       ms_per_image=1000 * otsu_seconds / len(test_scenes)),
        "threshold": scores(fixed, test_target, threshold=threshold, inverted=bool(inverted),
                            train_fg_iou=tune_iou),
        "region_growing": scores(grown, grown_scenes.foreground, tolerance=tolerance, test_scenes=len(grown_scenes),
                                 ms_per_image=1000 * grow_seconds / len(grown_scenes), fg_iou_by_items=by_items),
        "constant": constant_prediction_scores(test_target),
    }


def item_crops(scene_set: scenes.SegmentationScenes, *, masked: bool) -> dict[str, np.ndarray]:
    """Every visible item as a grey 28×28 image, with its label and what is known of its visibility.

    ``masked``: only the item's own visible pixels, on black, scaled so the brightest is 1
    (a tinted item is its grey image times its colour's luminance); else the raw luminance of
    its box, background and overlapping items included. Either way centred on the canvas.

    Returns:
      ``crops`` ``(K, 28, 28, 1)``; ``labels`` ``(K,)`` (0-9); ``pixels`` ``(K,)``, each item's
      visible pixels; ``on_top`` ``(K,)``, whether it was painted last in its scene (so wholly visible).
    """
    grey = scene_set.images @ scenes.LUMINANCE if scene_set.images.shape[-1] == 3 else scene_set.images[..., 0]
    size = scenes.ITEM_SIZE
    present = scene_set.boxes[:, :, 0] >= 0
    last_slot = present.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    crops, labels, pixels, on_top = [], [], [], []
    for i, slot in zip(*np.nonzero(present)):
        top, left, bottom, right = scene_set.boxes[i, slot]
        patch = grey[i, top:bottom, left:right]
        own = scene_set.instances[i, top:bottom, left:right] == slot + 1
        if masked:
            patch = np.where(own, patch, 0.0)
            patch = patch / max(float(patch.max()), 1e-6)
        canvas = np.zeros((size, size), np.float32)
        row, col = (size - patch.shape[0]) // 2, (size - patch.shape[1]) // 2
        canvas[row:row + patch.shape[0], col:col + patch.shape[1]] = patch
        crops.append(canvas)
        labels.append(scene_set.box_classes[i, slot] - 1)
        pixels.append(np.count_nonzero(own))
        on_top.append(slot == last_slot[i])
    return {"crops": np.stack(crops)[..., None], "labels": np.asarray(labels), "pixels": np.asarray(pixels),
            "on_top": np.asarray(on_top)}


def _logits(model, x, condition):
    del condition
    return model(x)


def classifier_ceiling(test_scenes: scenes.SegmentationScenes, budget: Budget) -> dict[str, float]:
    """How often the kit's classifier names a test item's class from its crop (see :func:`item_crops`).

    ``item_pixels``: the fraction of items named correctly from their own pixels (the ceiling);
    ``item_pixels_by_area``: the same weighted by each item's visible pixels (the share of
    foreground pixels whose item is named correctly, closer to what a pixel metric counts);
    ``item_pixels_on_top``: on the wholly visible items only; ``box_crop``: from the raw box.
    """
    if budget.classifier_train_size is None:
        network, record = features.feature_network("fashion-mnist")
    else:
        network, record = features.feature_network(
            "fashion-mnist", train_size=budget.classifier_train_size,
            train_config=vk.TrainConfig(epochs=1, batch_size=64, learning_rate=2e-3))

    def correct(items):
        logits = batched.in_batches(_logits, network, items["crops"], None, batch_size=batched.BATCH_SIZE,
                                    progress=False, description="classifying")
        return np.argmax(logits, axis=-1) == items["labels"]

    items = item_crops(test_scenes, masked=True)
    named = correct(items)
    return {"item_pixels": float(np.mean(named)),
            "item_pixels_by_area": float(np.sum(named * items["pixels"]) / np.sum(items["pixels"])),
            "item_pixels_on_top": float(np.mean(named[items["on_top"]])),
            "box_crop": float(np.mean(correct(item_crops(test_scenes, masked=False)))),
            "items": int(len(named)), "items_on_top": int(np.sum(items["on_top"])),
            "fashion_mnist_test_accuracy": record.test_accuracy}


def samples_needed(test: "scenes.AmbiguousScenes", ged_samples: tuple[int, ...]) -> int:
    """Samples per image that :func:`ged_scores` reads: the largest GED count, the diversity's, one per annotator."""
    return max(max(ged_samples), DIVERSITY_SAMPLES, test.annotations.shape[1])


def ged_scores(samples: np.ndarray, test: "scenes.AmbiguousScenes", ged_samples: tuple[int, ...]) -> dict[str, Any]:
    """GED per sample count (mean over images), diversity and Hungarian-matched IoU of samples ``(N, n, H, W)``."""
    ged = {str(n): float(np.mean([mask_metrics.generalized_energy_distance(s[:n], modes, weights=p)
                                  for s, modes, p in zip(samples, test.modes, test.mode_probabilities)]))
           for n in ged_samples}
    annotators = test.annotations.shape[1]
    return {
        "ged": ged,
        "sample_diversity": float(np.mean([mask_metrics.sample_diversity(s[:DIVERSITY_SAMPLES]) for s in samples])),
        "hungarian_iou": float(np.mean([mask_metrics.hungarian_iou(s[:annotators], a)
                                        for s, a in zip(samples, test.annotations)])),
    }


def ged_reference(test: "scenes.AmbiguousScenes", ged_samples: tuple[int, ...], *, seed: int) -> dict[str, Any]:
    """The exact optimum per sample count, and the GED measured on samples of the true distribution."""
    optimum = {str(n): float(np.mean([mask_metrics.ged_optimum(m, p, n)
                                      for m, p in zip(test.modes, test.mode_probabilities)]))
               for n in ged_samples}
    rng = np.random.default_rng(seed)
    most = samples_needed(test, ged_samples)
    drawn = np.stack([modes[rng.choice(len(p), size=most, p=p)]
                      for modes, p in zip(test.modes, test.mode_probabilities)])
    return {"optimum": optimum, "true_samples": ged_scores(drawn, test, ged_samples)}


# --------------------------------------------------------------------------- the run


def _commit() -> str:
    def git(*args):
        return subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()]}


def data_fingerprint(*scene_sets) -> str:
    """16 hex digits of a SHA-256 of the scenes' images and masks: the data a row was measured on."""
    digest = hashlib.sha256()
    for scene_set in scene_sets:
        for array in (scene_set.images, getattr(scene_set, "masks", None), getattr(scene_set, "annotations", None)):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _load(path: pathlib.Path, budget: Budget, data: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The rows already in ``path`` when they were measured under ``budget`` on the same ``data``; else none."""
    empty = {"segmentation": {}, "ambiguous": {}, "sections": {}, "large_canvas": {}}
    if not path.is_file():
        return empty
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError:
        log(f"{path}: unreadable, starting afresh")
        return empty
    if stored.get("results_format") != RESULTS_FORMAT or stored.get("budget") != budget.to_dict():
        log(f"{path}: measured under another budget, starting afresh")
        return empty
    if stored.get("data") != data:
        log(f"{path}: measured on other scenes (vaekit.scenes changed), starting afresh")
        return empty
    kept = {key: stored.get(key, {}) for key in empty}
    log(f"{path}: resuming, {sum(len(part) for part in kept.values())} parts already measured")
    return kept


def measure_segmentation(task: str, name: str, seed: int, data: tuple[scenes.SegmentationScenes, ...],
                         budget: Budget) -> dict[str, Any]:
    """Trains one network on one task and scores each of its variants on the test scenes."""
    train_scenes, test_scenes = data
    num_classes = len(train_scenes.classes)
    epochs = budget.binary_epochs if task == "binary" else budget.semantic_epochs
    start = time.perf_counter()
    model, cost = train(name, train_scenes.arrays, num_classes, epochs, budget, seed=seed)
    scores = {}
    for variant in variants(name):
        classes, foreground = predict(model, test_scenes.images, variant, key=jax.random.key(seed))
        scores[variant] = (binary_scores(classes, foreground, test_scenes.foreground) if task == "binary"
                           else semantic_scores(classes, test_scenes.masks, num_classes))
    return {"task": task, "model": name, "seed": seed, **cost, "scores": scores,
            "seconds": time.perf_counter() - start}


def measure_ambiguous(name: str, seed: int, data: tuple["scenes.AmbiguousScenes", ...],
                      budget: Budget) -> dict[str, Any]:
    """Trains one network on the annotators' masks and scores its samples against the modes."""
    train_scenes, test_scenes = data
    start = time.perf_counter()
    model, cost = train(name, train_scenes.arrays, 2, budget.ambiguous_epochs, budget, seed=seed)
    count = samples_needed(test_scenes, budget.ged_samples)
    scores = {variant: ged_scores(sample_foregrounds(name, model, test_scenes.images, variant, count,
                                                     key=jax.random.key(seed)), test_scenes, budget.ged_samples)
              for variant in variants(name)}
    return {"model": name, "seed": seed, **cost, "scores": scores, "seconds": time.perf_counter() - start}


def run(budget: Budget, path: pathlib.Path, *, command: str,
        log: Callable[[str], None] = functools.partial(print, flush=True)) -> dict[str, Any]:
    """Measures everything ``budget`` asks for, writing ``path`` after every part; returns the results.

    Seed by seed: every network of both tasks, then the ambiguous scenes, then the U-Net on the
    larger canvases; so a run stopped early holds every network for its first seeds.
    """
    wall = time.perf_counter()
    train_set = scenes.segmentation_scenes(budget.train_scenes, "train", seed=0, size=budget.size)
    test_set = scenes.segmentation_scenes(budget.test_scenes, "test", seed=1, size=budget.size)
    ambiguous = (scenes.ambiguous_scenes(budget.ambiguous_train, "train", seed=0, size=budget.ambiguous_size),
                 scenes.ambiguous_scenes(budget.ambiguous_test, "test", seed=1, size=budget.ambiguous_size))
    log(f"scenes: {budget.train_scenes} training and {budget.test_scenes} test, {budget.size}x{budget.size}; "
        f"ambiguous: {budget.ambiguous_train} training x {ambiguous[0].annotations.shape[1]} annotators and "
        f"{budget.ambiguous_test} test ({time.perf_counter() - wall:.0f} s)")
    data = data_fingerprint(train_set, test_set, *ambiguous)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {"results_format": RESULTS_FORMAT, "command": command,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "budget": budget.to_dict(), "data": data, "machine": _machine(), "vaekit_commit": _commit(),
               **_load(path, budget, data, log)}
    sections = results["sections"]

    def save():
        results["summary"] = summarize(results)
        results["seconds"] = measured_seconds(results)
        results["wall_seconds_this_run"] = time.perf_counter() - wall
        write_atomically(path, json.dumps(results, indent=1) + "\n")

    def section(name: str, measure: Callable[[], dict[str, Any]]) -> None:
        if name not in sections:
            start = time.perf_counter()
            sections[name] = {**measure(), "seconds": time.perf_counter() - start}
            save()

    section("baselines", lambda: baseline_scores(train_set, test_set, budget))
    log(f"baselines: {_brief(sections['baselines'], ('otsu', 'threshold', 'region_growing', 'constant'))}")
    section("classifier", lambda: classifier_ceiling(test_set, budget))
    log(f"classifier ceiling: {sections['classifier']['item_pixels']:.3f} of {sections['classifier']['items']} items")
    section("ged_reference", lambda: ged_reference(ambiguous[1], budget.ged_samples, seed=0))
    largest = str(max(budget.ged_samples))
    log(f"GED optimum (n={largest}): {sections['ged_reference']['optimum'][largest]:.4f}")

    large = results["large_canvas"]
    large_sets = functools.cache(lambda: (
        scenes.segmentation_scenes(budget.train_scenes, "train", seed=0, size=LARGE_SIZE),
        scenes.segmentation_scenes(budget.test_scenes, "test", seed=1, size=LARGE_SIZE)))
    if "baselines" not in large:
        start = time.perf_counter()
        large["baselines"] = {**baseline_scores(*large_sets(), budget), "seconds": time.perf_counter() - start}
        save()
    log(f"baselines at {LARGE_SIZE}x{LARGE_SIZE}: "
        f"{_brief(large['baselines'], ('otsu', 'threshold', 'region_growing', 'constant'))}")

    tasks = {"binary": (train_set.binary(), test_set.binary()), "semantic": (train_set, test_set)}
    for seed in budget.seeds:
        for task in TASKS:
            for name in budget.models:
                key = f"{task}/{name}/{seed}"
                if key not in results["segmentation"]:
                    results["segmentation"][key] = row = measure_segmentation(task, name, seed, tasks[task], budget)
                    save()
                    metric = "fg_iou" if task == "binary" else "mean_iou"
                    log(f"{key}: {metric} " + ", ".join(f"{v} {s[metric]:.3f}" for v, s in row["scores"].items())
                        + f" ({row['train_seconds']:.0f} s training)")
        for name in budget.ambiguous_models:
            key = f"{name}/{seed}"
            if key not in results["ambiguous"]:
                results["ambiguous"][key] = row = measure_ambiguous(name, seed, ambiguous, budget)
                save()
                log(f"ambiguous {key}: GED(n={largest}) "
                    + ", ".join(f"{v} {s['ged'][largest]:.3f}" for v, s in row["scores"].items())
                    + f" ({row['train_seconds']:.0f} s training)")
        if f"unet/{seed}" not in large:
            train_large, test_large = large_sets()
            large[f"unet/{seed}"] = row = measure_segmentation(
                "binary", "unet", seed, (train_large.binary(), test_large.binary()), budget)
            save()
            log(f"binary/unet/{seed} at {LARGE_SIZE}x{LARGE_SIZE}: fg_iou {row['scores'][MEAN]['fg_iou']:.3f} "
                f"({row['train_seconds']:.0f} s training)")
    save()
    return results


def _brief(section: dict[str, Any], names: tuple[str, ...]) -> str:
    return ", ".join(f"{n} {section[n]['fg_iou']:.3f}" for n in names)


def measured_seconds(results: dict[str, Any]) -> float:
    """Seconds spent measuring every part in ``results``, across the runs that measured them."""
    parts = [*results["segmentation"].values(), *results["ambiguous"].values(), *results["sections"].values(),
             *results.get("large_canvas", {}).values()]
    return float(sum(part["seconds"] for part in parts))


# --------------------------------------------------------------------------- summaries and tables


def _mean_std(values: list[float]) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "seeds": int(len(values))}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Mean ± std over seeds of every metric of every (task, row), and the headline figures."""
    grouped: dict[tuple[str, str], dict[str, list[float]]] = {}
    for run_ in results["segmentation"].values():
        for variant, scores in run_["scores"].items():
            metrics = grouped.setdefault((run_["task"], row_name(run_["model"], variant)), {})
            for metric, value in {**scores, "parameters": run_["parameters"],
                                  "train_seconds": run_["train_seconds"]}.items():
                if isinstance(value, (int, float)):
                    metrics.setdefault(metric, []).append(value)
    tasks = {task: {row: {m: _mean_std(v) for m, v in metrics.items()}
                    for (t, row), metrics in sorted(grouped.items(), key=lambda kv: _order(kv[0][1])) if t == task}
             for task in TASKS}

    ambiguous: dict[str, dict[str, list[float]]] = {}
    for run_ in results["ambiguous"].values():
        for variant, scores in run_["scores"].items():
            metrics = ambiguous.setdefault(row_name(run_["model"], variant), {})
            flat = {**{f"ged_{n}": v for n, v in scores["ged"].items()},
                    "sample_diversity": scores["sample_diversity"], "hungarian_iou": scores["hungarian_iou"],
                    "train_seconds": run_["train_seconds"], "parameters": run_["parameters"]}
            for metric, value in flat.items():
                metrics.setdefault(metric, []).append(value)
    large: dict[str, list[float]] = {}
    for key, run_ in results.get("large_canvas", {}).items():
        if key.startswith("unet/"):
            for metric, value in {**run_["scores"][MEAN], "train_seconds": run_["train_seconds"]}.items():
                large.setdefault(metric, []).append(value)
    return {**tasks, "ambiguous": {row: {m: _mean_std(v) for m, v in metrics.items()}
                                   for row, metrics in sorted(ambiguous.items(),
                                                              key=lambda kv: _order(kv[0], AMBIGUOUS_ORDER))},
            "large_canvas": {"unet": {m: _mean_std(v) for m, v in large.items()}} if large else {}}


def _order(row: str, order: tuple[str, ...] = tuple(LABELS)) -> int:
    return order.index(row) if row in order else len(order)


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures of issue 12's targets, and whether each is met."""
    summary, sections = results["summary"], results["sections"]
    n = str(max(results["budget"]["ged_samples"]))

    def mean(table, row, metric):
        entry = summary[table].get(row, {}).get(metric)
        return None if entry is None else entry["mean"]

    semantic = {row: metrics["mean_iou"]["mean"] for row, metrics in summary["semantic"].items()}
    baselines = sections.get("baselines", {})
    threshold = max(baselines["otsu"]["fg_iou"], baselines["threshold"]["fg_iou"]) if baselines else None
    region = baselines["region_growing"]["fg_iou"] if baselines else None
    unet_fg = mean("binary", "unet", "fg_iou")
    probunet_ged, unet_ged = mean("ambiguous", "probunet:sampled", f"ged_{n}"), mean("ambiguous", "unet", f"ged_{n}")
    optimum = sections.get("ged_reference", {}).get("optimum", {}).get(n)
    known = lambda *values: all(v is not None for v in values)  # noqa: E731
    large_baselines = results.get("large_canvas", {}).get("baselines", {})
    large_unet = summary.get("large_canvas", {}).get("unet", {}).get("fg_iou", {}).get("mean")
    large_best_baseline = (max(large_baselines[name]["fg_iou"] for name in ("otsu", "threshold", "region_growing"))
                           if large_baselines else None)
    return {
        "unet_fg_iou": unet_fg,
        "threshold_fg_iou": threshold,
        "region_growing_fg_iou": region,
        "constant_fg_iou": baselines["constant"]["fg_iou"] if baselines else None,
        "unet_miou": semantic.get("unet"),
        "best_miou_model": max(semantic, key=semantic.get) if semantic else None,
        "classifier_ceiling": sections.get("classifier", {}).get("item_pixels"),
        "ged_samples": int(n),
        "probunet_ged": probunet_ged,
        "unet_ged": unet_ged,
        "vae_ged": mean("ambiguous", "vae:sampled", f"ged_{n}"),
        "ged_optimum": optimum,
        f"unet_fg_iou_{LARGE_SIZE}": large_unet,
        f"best_baseline_fg_iou_{LARGE_SIZE}": large_best_baseline,
        "target_unet_fg_iou": known(unet_fg) and unet_fg >= UNET_FG_IOU_TARGET,
        "target_baselines_below": known(threshold, region) and max(threshold, region) < BASELINE_FG_IOU_LIMIT,
        f"target_unet_fg_iou_{LARGE_SIZE}": known(large_unet) and large_unet >= UNET_FG_IOU_TARGET,
        f"target_baselines_below_{LARGE_SIZE}": (known(large_best_baseline)
                                                 and large_best_baseline < BASELINE_FG_IOU_LIMIT),
        "target_unet_best_miou": bool(semantic) and max(semantic, key=semantic.get) == "unet",
        "target_probunet_ged": (known(probunet_ged, unet_ged, optimum) and probunet_ged - optimum <= GED_MARGIN
                                and probunet_ged < unet_ged),
        "seconds": results.get("seconds"),
    }


def _pm(entry: dict[str, float] | None, spec: str = ".3f") -> str:
    if entry is None:
        return "–"
    if entry["seeds"] == 1:
        return f"{entry['mean']:{spec}}"
    return f"{entry['mean']:{spec}} ± {entry['std']:{spec}}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _baselines_table(b: dict[str, Any], unet: dict[str, Any]) -> str:
    """The baselines of :func:`baseline_scores`, and the binary U-Net's mean ± std for comparison."""
    rows = [
        ["Otsu's threshold per image", f"{b['otsu']['fg_iou']:.3f}", f"{b['otsu']['dice']:.3f}",
         f"{b['otsu']['boundary_f']:.3f}", "inverted" if b["otsu"]["inverted"] else "items brighter"],
        ["best fixed threshold (chosen on training scenes)", f"{b['threshold']['fg_iou']:.3f}",
         f"{b['threshold']['dice']:.3f}", f"{b['threshold']['boundary_f']:.3f}",
         f"luminance {'<' if b['threshold']['inverted'] else '≥'} {b['threshold']['threshold']:.2f}"],
        ["region growing from an oracle seed", f"{b['region_growing']['fg_iou']:.3f}",
         f"{b['region_growing']['dice']:.3f}", f"{b['region_growing']['boundary_f']:.3f}",
         f"tolerance {b['region_growing']['tolerance']}, {b['region_growing']['test_scenes']} test scenes, "
         f"{b['region_growing']['ms_per_image']:.1f} ms/image; by items in the scene: "
         + ", ".join(f"{k}: {v:.3f}" for k, v in b["region_growing"].get("fg_iou_by_items", {}).items())],
        ["best constant mask per image (global pooling's limit)", f"{b['constant']['fg_iou']:.3f}",
         f"{b['constant']['dice']:.3f}", "", "all foreground or all background"],
    ]
    if unet:
        rows.append(["U-Net (binary)", _pm(unet.get("fg_iou")), _pm(unet.get("dice")), _pm(unet.get("boundary_f")),
                     "for comparison"])
    return _table(["method", "foreground IoU", "Dice", "boundary F", "note"], rows)


def format_tables(results: dict[str, Any]) -> dict[str, str]:
    """Markdown tables of a results file, by name: ``budget``, ``binary``, ``semantic``, ``baselines``,
    ``classifier`` and ``ambiguous``.

    Chapters load this script by path and show these under the command and date that made the figures.
    """
    summary = results.get("summary") or summarize(results)
    budget, sections = results["budget"], results["sections"]
    tables = {"budget": _table(
        ["command", "date", "scenes (train / test)", "size", "epochs (binary / 11-class)", "seeds", "channels",
         "ambiguous", "vaekit", "machine"],
        [[f"`{results['command']}`", results["date"], f"{budget['train_scenes']} / {budget['test_scenes']}",
          f"{budget['size']}×{budget['size']}", f"{budget['binary_epochs']} / {budget['semantic_epochs']}",
          ", ".join(map(str, budget["seeds"])), "-".join(map(str, budget["channels"])),
          f"{budget['ambiguous_train']} / {budget['ambiguous_test']} images, {budget['ambiguous_epochs']} epochs",
          results["vaekit_commit"][:12] + (" + edits" if "uncommitted" in results["vaekit_commit"] else ""),
          f"{results['machine']['cpu_count']} cores"]])}

    tables["binary"] = _table(
        ["network", "foreground IoU", "Dice", "boundary F", "black dots / image", "checkerboard", "parameters",
         "training s"],
        [[LABELS.get(row, row), _pm(m.get("fg_iou")), _pm(m.get("dice")), _pm(m.get("boundary_f")),
          _pm(m.get("black_dots"), ".2f"), _pm(m.get("checkerboard"), ".1e"), f"{m['parameters']['mean']:,.0f}",
          _pm(m.get("train_seconds"), ".0f")] for row, m in summary["binary"].items()])

    ceiling = sections.get("classifier", {}).get("item_pixels")
    tables["semantic"] = _table(
        ["network", "mean IoU (11 classes, background included)", "pixel accuracy", "foreground IoU", "parameters",
         "training s"],
        [[LABELS.get(row, row), _pm(m.get("mean_iou")), _pm(m.get("pixel_accuracy")), _pm(m.get("fg_iou")),
          f"{m['parameters']['mean']:,.0f}", _pm(m.get("train_seconds"), ".0f")]
         for row, m in summary["semantic"].items()]
        + ([["ceiling: classifier names the item", f"{ceiling:.3f}", "", "", "", ""]] if ceiling is not None else []))

    if "baselines" in sections:
        tables["baselines"] = _baselines_table(sections["baselines"], summary["binary"].get("unet", {}))
    large = results.get("large_canvas", {})
    if "baselines" in large:
        tables["large_canvas"] = _baselines_table(large["baselines"], summary.get("large_canvas", {}).get("unet", {}))

    if "classifier" in sections:
        c = sections["classifier"]
        tables["classifier"] = _table(
            ["the kit's classifier on", "accuracy", "items"],
            [["each test item's own pixels, grey, on black (the ceiling)", f"{c['item_pixels']:.3f}", str(c["items"])],
             ["the same, weighted by each item's visible pixels", f"{c['item_pixels_by_area']:.3f}", str(c["items"])],
             ["the same, wholly visible items only (painted last)", f"{c['item_pixels_on_top']:.3f}",
              str(c["items_on_top"])],
             ["each test item's box, background included", f"{c['box_crop']:.3f}", str(c["items"])],
             ["Fashion-MNIST's test split (its training data's kind)", f"{c['fashion_mnist_test_accuracy']:.3f}",
              "10,000"]])

    if "ged_reference" in sections:
        counts = [str(n) for n in budget["ged_samples"]]
        reference = sections["ged_reference"]
        rows = [[LABELS.get(row, row), *(_pm(m.get(f"ged_{n}")) for n in counts), _pm(m.get("sample_diversity")),
                 _pm(m.get("hungarian_iou")), _pm(m.get("train_seconds"), ".0f")]
                for row, m in summary["ambiguous"].items()]
        truth = reference["true_samples"]
        rows.append(["samples of the true distribution", *(f"{truth['ged'][n]:.3f}" for n in counts),
                     f"{truth['sample_diversity']:.3f}", f"{truth['hungarian_iou']:.3f}", ""])
        rows.append(["optimum πᵀDπ/n (the estimator's bias)", *(f"{reference['optimum'][n]:.3f}" for n in counts),
                     "", "", ""])
        tables["ambiguous"] = _table(
            ["network", *(f"GED n={n}" for n in counts), "sample diversity", "Hungarian IoU", "training s"], rows)
    return tables


def report(results: dict[str, Any]) -> None:
    """Prints every table, then the headline as one JSON object on the last line."""
    titles = {"budget": "Budget", "binary": "Foreground (binary) segmentation, test scenes",
              "semantic": "Semantic segmentation (11 classes), test scenes",
              "baselines": "Baselines without learning (foreground)",
              "large_canvas": f"The foreground task on {LARGE_SIZE}x{LARGE_SIZE} canvases: baselines and U-Net",
              "classifier": "Classifier ceiling",
              "ambiguous": "Ambiguous scenes: GED (d = 1 - IoU; two empty masks d = 0) against the number of samples n"}
    for name, table in format_tables(results).items():
        print(f"\n{titles[name]}\n\n{table}")
    print()
    print(json.dumps(headline(results)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small budget QUICK (writes segmentation.quick.json)")
    parser.add_argument("--output", type=pathlib.Path, default=None, help="where to write the results JSON")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    path = args.output or RESULTS / ("segmentation.quick.json" if args.quick else "segmentation.json")
    command = " ".join(["python", "benchmarks/segmentation.py", *(sys.argv[1:] if argv is None else argv)])
    report(run(budget, path, command=command))


if __name__ == "__main__":
    main()
