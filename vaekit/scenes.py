r"""Segmentation scenes drawn from the bundled items: classes, instances, boxes, and ambiguous annotations.

:func:`segmentation_scenes` pastes Fashion-MNIST items (or MNIST digits) at random places on a
square canvas. Every pixel gets a class (the item on top, or background), an instance number
(which item it shows) and every item a bounding box around its visible pixels, so that one set of
scenes serves semantic segmentation, instance segmentation and detection.

Why textured backgrounds. On a black canvas the background is exactly 0 and every item pixel is
brighter than :data:`ITEM_THRESHOLD`, so the threshold ``image > 0`` gives the foreground
perfectly: foreground IoU 1.000 on 1,000 black test scenes of 64 × 64 (even Otsu's automatic
threshold on the luminance reaches 0.975), and no network is needed. The default scenes paint
coloured items on backgrounds that mix a smooth colour field with stripes, blobs or pixel noise,
in the same range of colours and brightness as the items, under a fine grain that the items do
not have. On the same 1,000 scenes Otsu's threshold reaches a foreground IoU of 0.12, and the best
single threshold of each image, chosen knowing the answer and taking either side as foreground,
0.29; a two-class U-Net (16-32-64 channels) trained for 5 epochs on 2,000 training scenes
reaches 0.91. ``background="black"`` keeps the plain scenes for that comparison; the same seed
places the same items at the same places on either background.

:func:`ambiguous_scenes` draws images whose correct mask is uncertain, with the uncertainty known
exactly: each image shows one clear item, which every annotator marks, and often a faint second
item, which an annotator marks with a probability that grows with its contrast; independently, an
annotator outlines the clear item tightly or one pixel wider. Each image therefore has at most
four plausible masks (its *modes*) :math:`y_1, \dots, y_4` with known probabilities
:math:`\pi_1, \dots, \pi_4`, and the best generalized energy distance any model can reach is a
function of them alone (:func:`vaekit.metrics.segmentation.ged_optimum`). A deterministic network
gives one mask per image and stays above it; a model that samples masks, such as the
Probabilistic U-Net (Kohl et al., 2018), can reach it.

Both are functions of their arguments only: the same seed gives the same scenes, and test
scenes are made of test items only.

Example:
  >>> scenes = segmentation_scenes(8, "test", seed=0)
  >>> scenes.images.shape, scenes.masks.shape, scenes.boxes.shape
  ((8, 64, 64, 3), (8, 64, 64), (8, 3, 4))
  >>> plain = segmentation_scenes(8, "test", seed=0, background="black")
  >>> bool((plain.foreground == (plain.images.max(axis=-1) > 0)).all())   # a threshold is enough here
  True
  >>> bool((scenes.foreground == plain.foreground).all())                 # same items, same places
  True

References:
  Xiao, Rasul & Vollgraf, *Fashion-MNIST*, 2017.
  Otsu, *A Threshold Selection Method from Gray-Level Histograms*, IEEE SMC 1979.
  Kohl et al., *A Probabilistic U-Net for Segmentation of Ambiguous Images*, NeurIPS 2018.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from vaekit.datasets import DATASETS, FASHION_MNIST_CLASSES, SPLITS, DatasetError, _check_choice, load

SEGMENTATION_CLASSES = ("background", *FASHION_MNIST_CLASSES)
BINARY_CLASSES = ("background", "object")
BACKGROUNDS = ("texture", "black")
SOURCES = DATASETS
TEXTURES = ("stripes", "blobs", "noise")

# Fashion-MNIST items and MNIST digits lie on a black background with a faint fringe: grey
# levels at or below this are not part of an item, so they are neither pasted nor labelled.
ITEM_THRESHOLD = 0.1
ITEM_SIZE = 28

# A colour item's pixel is its tint times ITEM_SHADING + (1 - ITEM_SHADING) * grey: the inner
# texture survives at 40 % contrast, and the faint fringe stays as visible as the item's body.
ITEM_SHADING = 0.6
# Every textured background carries pixel noise, uniform in [-GRAIN / 2, GRAIN / 2] on all channels:
# items are clean, so the noise is what tells background from item where their colours agree.
GRAIN = 0.5
STRIPE_PERIODS = (4.0, 10.0)  # pixels, uniform between the two
BLOB_SPACING = 6  # pixels between the random values that blobs are interpolated from

# Luminance of an RGB colour (ITU-R BT.601 weights), the grey a threshold sees.
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)

# Ambiguous scenes: the probability that an annotator marks the faint item, and its contrast (its
# opacity over the background), 0.6 times that probability; contrast 0 means no faint item.
FAINT_MARK_PROBABILITIES = (0.0, 0.25, 0.5, 0.75)
FAINT_CONTRASTS = tuple(0.6 * p for p in FAINT_MARK_PROBABILITIES)
# How often an annotator outlines the clear item one pixel wider than its visible pixels.
DILATED_OUTLINE_PROBABILITY = 0.5
AMBIGUOUS_ITEM_SIZE = 14


# --------------------------------------------------------------------------- segmentation scenes


@dataclasses.dataclass(frozen=True)
class SegmentationScenes:
    """Scenes with a class and an instance per pixel and a box per item.

    Attributes:
      images: ``float32`` array in ``[0, 1]``, ``(N, size, size, 3)`` for colour scenes or
        ``(N, size, size, 1)`` for grey ones.
      masks: ``int32`` array ``(N, size, size)``: 0 for background, ``1 + label`` for a pixel of
        an item of that label (the item on top where items overlap).
      instances: ``int32`` array ``(N, size, size)``: 0 for background, ``k >= 1`` for a pixel
        showing the ``k``-th item painted in its scene.
      boxes: ``int32`` array ``(N, max_items, 4)``: row ``k - 1`` holds ``(top, left, bottom,
        right)`` of the visible pixels of item ``k``, bottom and right exclusive; ``-1`` where a
        scene has no ``k``-th item or it is wholly hidden by later ones.
      box_classes: ``int32`` array ``(N, max_items)``: the class of each boxed item (the mask
        value of its pixels), 0 where the box row is ``-1``.
      classes: class names indexed by mask value, ``("background", ...)``.
      split: the split the items come from.
      seed: the seed that drew the scenes.
      background: ``"texture"`` or ``"black"``.
    """

    images: np.ndarray
    masks: np.ndarray
    instances: np.ndarray
    boxes: np.ndarray
    box_classes: np.ndarray
    classes: tuple[str, ...]
    split: str
    seed: int
    background: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images, masks)``, the form :func:`vaekit.train.fit` takes."""
        return self.images, self.masks

    @property
    def foreground(self) -> np.ndarray:
        """``bool`` array ``(N, size, size)``: the pixels of any item."""
        return self.masks > 0

    def take(self, n: int) -> SegmentationScenes:
        """The first ``n`` scenes."""
        if not 0 < n <= len(self):
            raise DatasetError(f"take: n must be in 1..{len(self)}, got {n}")
        return dataclasses.replace(self, images=self.images[:n], masks=self.masks[:n], instances=self.instances[:n],
                                   boxes=self.boxes[:n], box_classes=self.box_classes[:n])

    def binary(self) -> SegmentationScenes:
        """The same scenes with two classes: masks 1 on any item, 0 on background; boxes keep their items.

        Example:
          >>> binary = segmentation_scenes(2, "test").binary()
          >>> binary.classes, sorted(np.unique(binary.masks).tolist())
          (('background', 'object'), [0, 1])
        """
        return dataclasses.replace(self, masks=self.foreground.astype(np.int32), classes=BINARY_CLASSES,
                                   box_classes=(self.box_classes > 0).astype(np.int32))


def _check_count(parameter: str, value, *, least: int, why: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise DatasetError(f"{parameter} must be an integer >= {least}{why}; got {value!r}")


def _bilinear_matrix(size: int, points: int) -> np.ndarray:
    """``(size, points)`` weights that interpolate ``points`` evenly spaced values onto ``size`` pixels."""
    position = np.linspace(0, points - 1, size)
    below = np.minimum(np.floor(position).astype(int), points - 2)
    weight = position - below
    matrix = np.zeros((size, points), np.float32)
    matrix[np.arange(size), below] = 1 - weight
    matrix[np.arange(size), below + 1] = weight
    return matrix


def _smooth_noise(rng: np.random.Generator, n: int, size: int, points: int, channels: int) -> np.ndarray:
    """``(n, size, size, channels)`` values in ``[0, 1]``: a ``points × points`` random grid, bilinearly upsampled."""
    grid = rng.random((n, channels, points, points), np.float32)
    matrix = _bilinear_matrix(size, points)
    return np.moveaxis(matrix @ grid @ matrix.T, 1, -1)


def _random_colours(rng: np.random.Generator, shape: tuple[int, ...], *, least_value: float) -> np.ndarray:
    """``float32`` colours of random hue and saturation whose brightest channel is uniform in ``[least_value, 1]``."""
    colours = rng.random((*shape, 3), np.float32) + np.float32(1e-3)
    value = rng.uniform(least_value, 1.0, shape).astype(np.float32)
    return colours / colours.max(axis=-1, keepdims=True) * value[..., None]


def _textures(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``(n, size, size)`` patterns in ``[0, 1]``, one of :data:`TEXTURES` per scene, at random.

    Stripes: a clipped sinusoid of random period, angle and phase. Blobs: smooth noise pushed
    towards 0 and 1, so that it breaks into patches. Noise: independent pixels.
    """
    kind = rng.integers(0, len(TEXTURES), n)
    patterns = np.empty((n, size, size), np.float32)
    stripes, blobs, noise = (kind == k for k in range(len(TEXTURES)))
    m = int(stripes.sum())
    period = rng.uniform(*STRIPE_PERIODS, m).astype(np.float32)[:, None, None]
    angle = rng.uniform(0.0, np.pi, m).astype(np.float32)[:, None, None]
    phase = rng.uniform(0.0, 2 * np.pi, m).astype(np.float32)[:, None, None]
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    across = cols * np.cos(angle) + rows * np.sin(angle)
    patterns[stripes] = np.clip(0.5 + 1.5 * np.sin(2 * np.pi * across / period + phase), 0, 1)
    smooth = _smooth_noise(rng, int(blobs.sum()), size, max(2, size // BLOB_SPACING), 1)[..., 0]
    patterns[blobs] = np.clip(0.5 + 3.0 * (smooth - 0.5), 0, 1)
    patterns[noise] = rng.random((int(noise.sum()), size, size), np.float32)
    return patterns


def _textured_backgrounds(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``(n, size, size, 3)`` in ``[0, 1]``: a smooth colour field and a second colour mixed by a texture, and grain."""
    field = _smooth_noise(rng, n, size, 3, 3)
    field *= rng.uniform(0.35, 1.0, (n, 1, 1, 1)).astype(np.float32) / field.max(axis=(1, 2, 3), keepdims=True)
    second = _random_colours(rng, (n,), least_value=0.35)[:, None, None, :]
    texture = _textures(rng, n, size)[..., None]
    grain = np.float32(GRAIN) * (rng.random((n, size, size, 1), np.float32) - np.float32(0.5))
    background = second - field
    background *= texture
    background += field
    background += grain
    return np.clip(background, 0, 1, out=background)


def segmentation_scenes(
    num_scenes: int,
    split: str = "train",
    *,
    seed: int = 0,
    size: int = 64,
    items_per_scene: tuple[int, int] = (1, 3),
    background: str = "texture",
    source: str = "fashion-mnist",
    colour: bool = True,
    data_dir: str | pathlib.Path | None = None,
) -> SegmentationScenes:
    r"""Draws scenes of items on a ``size × size`` canvas, with their classes, instances and boxes.

    Each scene holds between ``items_per_scene[0]`` and ``items_per_scene[1]`` items (uniformly),
    each a random image of ``split`` placed at a uniformly random position that keeps it whole.
    Items are painted in order, so a later item hides an earlier one where they overlap. A pixel
    belongs to an item where the item's grey level :math:`g` exceeds :data:`ITEM_THRESHOLD`.

    A colour item is its grey image :math:`g` tinted, pixel :math:`c\,(s + (1 - s)\,g)` with
    :math:`s` = :data:`ITEM_SHADING`, so that its inner texture survives; the tint :math:`c` drifts
    linearly from one random colour to another along a random direction across the item (uneven
    lighting), so that no single colour covers an item. A textured background mixes a smooth
    random colour field with a second random colour through stripes, blobs or pixel noise, plus
    a fine grain (:data:`GRAIN`); its colours and brightness come from the same range as the
    items', so no threshold on brightness separates the two (see the module docstring).
    ``"black"`` leaves the background at 0.
    Grey scenes (``colour=False``) keep each item's own grey levels and show the luminance of
    the same background; grey scenes on black are the plain scenes of earlier versions of the kit.

    The scenes are a function of the arguments only. The same seed places the same items at the
    same places whatever ``background`` and ``colour`` are.

    Args:
      num_scenes: how many scenes, at least 1.
      split: ``"train"`` or ``"test"``: where the items come from (keep test scenes for testing).
      seed: seeds the choice of items, places, colours and backgrounds.
      size: canvas height and width, at least 28 (an item's size).
      items_per_scene: ``(fewest, most)`` items, ``1 <= fewest <= most``.
      background: ``"texture"`` or ``"black"``.
      source: ``"fashion-mnist"`` (classes :data:`SEGMENTATION_CLASSES`) or ``"mnist"`` (the digits).
      colour: ``True`` for RGB images, ``False`` for one grey channel.
      data_dir: folder holding the dataset folders; :func:`vaekit.datasets.default_data_dir` by default.

    Returns:
      A :class:`SegmentationScenes`; its boxes have ``items_per_scene[1]`` rows per scene.

    Example:
      >>> scenes = segmentation_scenes(4, seed=0, size=32, items_per_scene=(2, 2), source="mnist")
      >>> scenes.images.shape, scenes.classes[1], scenes.box_classes.shape
      ((4, 32, 32, 3), '0', (4, 2))
    """
    _check_count("num_scenes", num_scenes, least=1)
    _check_choice("split", split, SPLITS)
    _check_count("size", size, least=ITEM_SIZE, why=" (the items are 28 x 28)")
    pair = isinstance(items_per_scene, (tuple, list)) and len(items_per_scene) == 2
    if not (pair and all(isinstance(v, int) and not isinstance(v, bool) for v in items_per_scene)
            and 1 <= items_per_scene[0] <= items_per_scene[1]):
        raise DatasetError(f"items_per_scene must be (fewest, most) with 1 <= fewest <= most; got {items_per_scene!r}")
    _check_choice("background", background, BACKGROUNDS)
    _check_choice("source", source, SOURCES)
    if not isinstance(colour, bool):
        raise DatasetError(f"colour must be True (RGB images) or False (grey images); got {colour!r}")
    fewest, most = items_per_scene
    items = load(source, split, data_dir=data_dir)
    rng = np.random.default_rng(seed)
    counts = rng.integers(fewest, most + 1, size=num_scenes)
    total = int(counts.sum())
    chosen = rng.integers(0, len(items), size=total)
    corners = rng.integers(0, size - ITEM_SIZE + 1, size=(total, 2))
    # Each item is lit unevenly: its tint drifts from one colour to another along a random direction.
    tints = _random_colours(rng, (total, 2), least_value=0.35)
    drift_angle = rng.uniform(0.0, 2 * np.pi, total)

    # Item j of the scene is painted j-th (slot j, instance j + 1); all scenes paint their j-th item at once.
    scene_of_item = np.repeat(np.arange(num_scenes), counts)
    slot_of_item = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    slot_classes = np.zeros((num_scenes, most), np.int32)
    slot_classes[scene_of_item, slot_of_item] = items.labels[chosen] + 1
    slot_tints = np.zeros((num_scenes, most, 2, 3), np.float32)
    slot_tints[scene_of_item, slot_of_item] = tints
    grey = np.zeros((num_scenes, size, size), np.float32)
    drift = np.zeros((num_scenes, size, size), np.float32)
    instances = np.zeros((num_scenes, size, size), np.int32)
    offsets = np.arange(ITEM_SIZE)
    centred = offsets - (ITEM_SIZE - 1) / 2
    for slot in range(most):
        painted = slot_of_item == slot
        top, left = corners[painted, 0], corners[painted, 1]
        window = (scene_of_item[painted, None, None], (top[:, None] + offsets)[:, :, None],
                  (left[:, None] + offsets)[:, None, :])
        item = items.images[chosen[painted], :, :, 0]
        inside = item > ITEM_THRESHOLD
        grey[window] = np.where(inside, item, grey[window])
        instances[window] = np.where(inside, slot + 1, instances[window])
        # Where the pixel lies along the item's drift direction, from 0 at one side of its square to 1 at the other.
        sin, cos = np.sin(drift_angle[painted])[:, None, None], np.cos(drift_angle[painted])[:, None, None]
        along = (centred[:, None] * sin + centred[None, :] * cos) / ((ITEM_SIZE - 1) * (np.abs(sin) + np.abs(cos)))
        drift[window] = np.where(inside, 0.5 + along, drift[window])

    scene_index = np.arange(num_scenes)[:, None, None]
    masks = np.concatenate([np.zeros((num_scenes, 1), np.int32), slot_classes], axis=1)[scene_index, instances]
    if background == "texture":
        images = _textured_backgrounds(rng, num_scenes, size)
        images = images if colour else images @ LUMINANCE
    else:
        images = np.zeros((num_scenes, size, size, 3) if colour else (num_scenes, size, size), np.float32)
    shown = np.nonzero(instances)
    if colour:
        shading = ITEM_SHADING + (1 - ITEM_SHADING) * grey[shown]
        start, end = np.moveaxis(slot_tints[shown[0], instances[shown] - 1], 1, 0)
        images[shown] = shading[:, None] * (start + drift[shown][:, None] * (end - start))
    else:
        images[shown] = grey[shown]
        images = images[..., None]
    boxes, visible = _boxes_of_instances(instances, most)
    return SegmentationScenes(
        images=images, masks=masks, instances=instances, boxes=boxes,
        box_classes=np.where(visible, slot_classes, 0), classes=("background", *items.classes), split=split,
        seed=seed, background=background,
    )


def _boxes_of_instances(instances: np.ndarray, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, max_items, 4)`` boxes of the visible pixels of instances ``1..max_items``, and which are visible."""
    n, size = instances.shape[0], instances.shape[1]
    boxes = np.full((n, max_items, 4), -1, np.int32)
    visible = np.zeros((n, max_items), bool)
    for slot in range(max_items):
        shown = instances == slot + 1
        rows, cols = shown.any(axis=2), shown.any(axis=1)
        visible[:, slot] = rows.any(axis=1)
        first_row, first_col = rows.argmax(axis=1), cols.argmax(axis=1)
        end_row, end_col = size - rows[:, ::-1].argmax(axis=1), size - cols[:, ::-1].argmax(axis=1)
        found = np.stack([first_row, first_col, end_row, end_col], axis=1)
        boxes[:, slot] = np.where(visible[:, slot, None], found, -1)
    return boxes, visible


# --------------------------------------------------------------------------- ambiguous scenes


@dataclasses.dataclass(frozen=True)
class AmbiguousScenes:
    r"""Images whose masks are uncertain, with the distribution of their masks known exactly.

    Attributes:
      images: ``float32`` array ``(N, size, size, 3)`` in ``[0, 1]``.
      modes: ``bool`` array ``(N, 4, size, size)``: the distinct masks an annotator may draw for each
        image, in the order tight outline, dilated outline, tight outline and faint item, dilated
        outline and faint item; a mode of probability 0 (no faint item) is an empty mask.
      mode_probabilities: ``float64`` array ``(N, 4)``, each row summing to 1.
      annotations: ``bool`` array ``(N, num_annotators, size, size)``: each annotator's mask, a mode
        drawn with its probability, independently per annotator.
      split: the split the items come from.
      seed: the seed that drew the images and the annotations.
    """

    images: np.ndarray
    modes: np.ndarray
    mode_probabilities: np.ndarray
    annotations: np.ndarray
    split: str
    seed: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images, masks)`` training pairs, one per annotation: each image repeated once per annotator.

        Returns:
          Images ``(N * A, size, size, 3)`` and ``int32`` masks ``(N * A, size, size)``, image-major
          (the ``A`` annotations of the first image come first).
        """
        n, a = self.annotations.shape[:2]
        masks = self.annotations.reshape(n * a, *self.annotations.shape[2:]).astype(np.int32)
        return np.repeat(self.images, a, axis=0), masks

    def take(self, n: int) -> AmbiguousScenes:
        """The first ``n`` images, with their modes and annotations."""
        if not 0 < n <= len(self):
            raise DatasetError(f"take: n must be in 1..{len(self)}, got {n}")
        return dataclasses.replace(self, images=self.images[:n], modes=self.modes[:n],
                                   mode_probabilities=self.mode_probabilities[:n], annotations=self.annotations[:n])


def _dilate(masks: np.ndarray) -> np.ndarray:
    """Each mask grown by one pixel in all eight directions (a 3 × 3 square), within the canvas."""
    size = masks.shape[-1]
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    return np.any([padded[:, dy:dy + size, dx:dx + size] for dy in range(3) for dx in range(3)], axis=0)


def ambiguous_scenes(
    num_scenes: int,
    split: str = "train",
    *,
    seed: int = 0,
    size: int = 32,
    num_annotators: int = 4,
    data_dir: str | pathlib.Path | None = None,
) -> AmbiguousScenes:
    r"""Draws images with several plausible masks of known probabilities, and annotators' masks drawn from them.

    Each image shows two Fashion-MNIST items of ``split``, halved to 14 × 14, one in each half of
    the canvas, on a dark smooth colour field. The *clear* item is painted at full strength and
    every annotator marks it. The *faint* item is blended into the background with a contrast
    :math:`c` drawn uniformly from :data:`FAINT_CONTRASTS` (0 means no faint item); an annotator
    marks it with probability :math:`p = c / 0.6` (:data:`FAINT_MARK_PROBABILITIES`), so the image
    shows how likely the mark is, but not whether a given annotator makes it. Independently, an
    annotator outlines the clear item by its visible pixels or one pixel wider, with probability
    :math:`q` = :data:`DILATED_OUTLINE_PROBABILITY`. The four modes and their probabilities are

    .. math::

       (T, D, T \cup F, D \cup F), \qquad
       \pi = \bigl((1-q)(1-p),\; q(1-p),\; (1-q)p,\; qp\bigr),

    with :math:`T` the tight outline, :math:`D` the dilated one and :math:`F` the faint item's pixels.

    Args:
      num_scenes: how many images, at least 1.
      split: ``"train"`` or ``"test"``: where the items come from.
      seed: seeds the images and then the annotations (more annotators leave the images unchanged).
      size: canvas height and width, at least 28 (two 14-pixel items side by side).
      num_annotators: masks drawn per image, at least 1.
      data_dir: folder holding the dataset folders; :func:`vaekit.datasets.default_data_dir` by default.

    Returns:
      An :class:`AmbiguousScenes`.

    Example:
      >>> scenes = ambiguous_scenes(3, "test", seed=0)
      >>> scenes.images.shape, scenes.modes.shape, scenes.annotations.shape
      ((3, 32, 32, 3), (3, 4, 32, 32), (3, 4, 32, 32))
      >>> scenes.mode_probabilities.sum(axis=1)
      array([1., 1., 1.])
    """
    _check_count("num_scenes", num_scenes, least=1)
    _check_choice("split", split, SPLITS)
    _check_count("size", size, least=2 * AMBIGUOUS_ITEM_SIZE, why=" (two 14 x 14 items side by side)")
    _check_count("num_annotators", num_annotators, least=1)
    items = load("fashion-mnist", split, data_dir=data_dir)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(items), size=(num_scenes, 2))
    # Halved items: the mean of each 2 x 2 block of pixels.
    item = items.images[chosen, :, :, 0].reshape(num_scenes, 2, AMBIGUOUS_ITEM_SIZE, 2, AMBIGUOUS_ITEM_SIZE, 2)
    grey = item.mean(axis=(3, 5))
    # The canvas is cut in two halves along rows or columns; the clear item takes one, the faint item the other.
    half = size // 2
    across_rows = rng.integers(0, 2, num_scenes).astype(bool)
    clear_first = rng.integers(0, 2, num_scenes).astype(bool)
    along = rng.integers(0, half - AMBIGUOUS_ITEM_SIZE + 1, (num_scenes, 2))
    other = rng.integers(0, size - AMBIGUOUS_ITEM_SIZE + 1, (num_scenes, 2))
    first_half = np.stack([clear_first, ~clear_first], axis=1)
    start = along + np.where(first_half, 0, size - half)
    tops = np.where(across_rows[:, None], start, other)
    lefts = np.where(across_rows[:, None], other, start)
    tints = _random_colours(rng, (num_scenes, 2), least_value=0.7)
    field = _smooth_noise(rng, num_scenes, size, 3, 3) * np.float32(0.35)
    level = rng.integers(0, len(FAINT_CONTRASTS), num_scenes)
    contrast = np.array(FAINT_CONTRASTS, np.float32)[level]
    mark = np.array(FAINT_MARK_PROBABILITIES)[level]

    scene_index = np.arange(num_scenes)[:, None, None]
    offsets = np.arange(AMBIGUOUS_ITEM_SIZE)
    # Each item is laid over the field with an opacity: 1 for the clear item, its contrast for the faint one.
    images = field
    masks = np.zeros((num_scenes, 2, size, size), bool)
    for which, opacity in ((0, np.ones(num_scenes, np.float32)), (1, contrast)):
        rows, cols = (tops[:, which, None] + offsets)[:, :, None], (lefts[:, which, None] + offsets)[:, None, :]
        window = (scene_index, rows, cols)
        inside = grey[:, which] > ITEM_THRESHOLD
        painted = (ITEM_SHADING + (1 - ITEM_SHADING) * grey[:, which, :, :, None]) * tints[:, which, None, None, :]
        alpha = (opacity[:, None, None] * inside)[..., None]
        images[window] = (1 - alpha) * images[window] + alpha * painted
        masks[:, which][window] = inside
    tight, faint = masks[:, 0], masks[:, 1]
    dilated = _dilate(tight)
    has_faint = (contrast > 0)[:, None, None]
    modes = np.stack([tight, dilated, (tight | faint) & has_faint, (dilated | faint) & has_faint], axis=1)
    q = DILATED_OUTLINE_PROBABILITY
    probabilities = np.stack([(1 - q) * (1 - mark), q * (1 - mark), (1 - q) * mark, q * mark], axis=1)

    # Each annotator picks the first mode whose cumulative probability exceeds a uniform draw.
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0
    draws = rng.random((num_scenes, num_annotators))
    picked = np.sum(draws[:, :, None] >= cumulative[:, None, :], axis=-1)
    annotations = modes[np.arange(num_scenes)[:, None], picked]
    return AmbiguousScenes(images=images, modes=modes, mode_probabilities=probabilities,
                           annotations=annotations, split=split, seed=seed)
