r"""Classical segmentation without learning: a grey-level threshold (Otsu's) and region growing from a seed.

These are the baselines a network has to beat. Both look at one pixel's colour at a time (region
growing adds connectivity): they succeed when the object differs from its background in brightness or
colour everywhere, and fail on textured backgrounds, where the background itself contains pixels as
bright as the object, and on objects whose parts differ in colour. Measuring that failure is the point
of chapter 10.

- :func:`otsu_threshold` picks, per image, the grey level that best separates two classes of pixels;
  :func:`threshold_segmentation` marks the pixels above it.
- :func:`region_growing` starts at a seed pixel and takes in every connected pixel whose colour is
  close to the seed's (the "magic wand" of image editors).
- :func:`best_threshold` chooses a fixed level and the objects' side on labelled images, and
  :func:`deepest_pixels` gives the seed a person would click: the fair, and the generous, settings of
  the two baselines.

Images are NumPy or JAX arrays ``(batch, height, width, channels)`` with 1 (grey) or 3 (RGB) channels,
floating point in ``[0, 1]``; masks come back as ``bool`` ``(batch, height, width)``.

References:
  Otsu, *A threshold selection method from gray-level histograms*, IEEE Transactions on Systems, Man,
  and Cybernetics 9(1), 1979.
  Adams & Bischof, *Seeded region growing*, IEEE Transactions on Pattern Analysis and Machine
  Intelligence 16(6), 1994.
  Gonzalez & Woods, *Digital Image Processing*, 4th ed., Pearson 2018, chapter 10.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.ndimage

from vaekit.metrics.segmentation import iou

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 weights of red, green and blue in the grey level (luma) of a colour image."""

HISTOGRAM_BINS = 256
"""Grey levels of Otsu's histogram: one per value of an 8-bit image."""

# 4-connectivity inside each image and none across the batch axis (see vaekit.metrics.segmentation).
_CROSS = np.zeros((3, 3, 3), bool)
_CROSS[1] = [[False, True, False], [True, True, True], [False, True, False]]


def _images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be NHWC, shape (batch, height, width, 1 or 3); got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be floating point in [0, 1]; got dtype {images.dtype}")
    images = images.astype(np.float64)
    if not (np.all(np.isfinite(images)) and images.min(initial=0.0) >= 0.0 and images.max(initial=0.0) <= 1.0):
        raise ValueError(f"images must be in [0, 1]; got values from {images.min():.4g} to {images.max():.4g}")
    return images


def luminance(images) -> np.ndarray:
    r"""The grey level of each pixel: the image itself if grey, else :math:`0.299R + 0.587G + 0.114B`.

    Args:
      images: ``(batch, height, width, 1 or 3)``, floating point in ``[0, 1]``.

    Returns:
      ``(batch, height, width)`` float64 in ``[0, 1]``.

    Example:
      >>> luminance(np.array([[[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]]]))   # white, pure red
      array([[[1.   , 0.299]]])
    """
    images = _images(images)
    if images.shape[-1] == 1:
        return images[..., 0]
    return images @ LUMA_WEIGHTS


def otsu_threshold(images) -> np.ndarray:
    r"""Otsu's threshold of each image: the grey level that best splits its pixels into two classes.

    The luminance histogram has :data:`HISTOGRAM_BINS` bins with probabilities :math:`p_i` and centres
    :math:`g_i`. Splitting after bin :math:`k` makes a dark class of probability
    :math:`\omega_0(k) = \sum_{i \le k} p_i` and mean :math:`\mu_0`, and a bright one with
    :math:`\omega_1 = 1 - \omega_0` and :math:`\mu_1`. Otsu takes the split that maximises the
    between-class variance

    .. math::

       \sigma_B^2(k) = \omega_0\,\omega_1\,(\mu_0 - \mu_1)^2
                     = \frac{\big(\mu_T\,\omega_0(k) - \mu(k)\big)^2}{\omega_0(k)\,\big(1 - \omega_0(k)\big)},
       \qquad \mu(k) = \sum_{i \le k} p_i g_i,

    which is the same as minimising the variance within the two classes (their sum is the image's
    variance, fixed). Where empty bins follow the best split, every threshold across that gap splits the
    pixels alike; the threshold returned is the middle of the gap. An image of one grey level has no split:
    its threshold is ``inf`` (everything background).

    Args:
      images: ``(batch, height, width, 1 or 3)``, floating point in ``[0, 1]``; colour images are
        thresholded on their :func:`luminance`.

    Returns:
      ``(batch,)`` float64 grey levels: a pixel is foreground when its luminance is at least the threshold.

    Example:
      >>> image = np.full((1, 4, 4, 1), 0.2); image[0, 1:3, 1:3] = 0.8
      >>> otsu_threshold(image).round(3)           # halfway across the empty bins between 0.2 and 0.8
      array([0.5])
    """
    grey = luminance(images)
    batch = grey.shape[0]
    bins = np.minimum((grey * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1).reshape(batch, -1)
    offsets = HISTOGRAM_BINS * np.arange(batch)[:, None]
    counts = np.bincount((bins + offsets).ravel(), minlength=batch * HISTOGRAM_BINS).reshape(batch, -1)
    p = counts / counts.sum(axis=1, keepdims=True)
    centres = (np.arange(HISTOGRAM_BINS) + 0.5) / HISTOGRAM_BINS
    omega = np.cumsum(p, axis=1)
    mu = np.cumsum(p * centres, axis=1)
    mu_total = mu[:, -1:]
    spread = omega * (1.0 - omega)
    # omega rounds to exactly 0 or 1 where a class is empty: no split there.
    split = spread > 1e-12
    between = np.where(split, (mu_total * omega - mu) ** 2 / np.where(split, spread, 1.0), 0.0)
    best = np.argmax(between, axis=1)
    levels = np.arange(HISTOGRAM_BINS)
    next_filled = np.where((levels > best[:, None]) & (counts > 0), levels, HISTOGRAM_BINS).min(axis=1)
    threshold = (best + 1 + next_filled) / (2 * HISTOGRAM_BINS)
    return np.where(between.max(axis=1) > 0, threshold, math.inf)


def threshold_segmentation(images, *, threshold=None) -> np.ndarray:
    r"""Foreground where the luminance reaches a threshold: :math:`\hat y_{hw} = [\,\mathrm{lum}_{hw} \ge t\,]`.

    It assumes a bright object on a darker background; for a dark object, segment ``1 - images``.

    Args:
      images: ``(batch, height, width, 1 or 3)``, floating point in ``[0, 1]``.
      threshold: ``None`` for Otsu's threshold of each image (:func:`otsu_threshold`), a number in
        ``[0, 1]`` for all images, or ``(batch,)`` numbers, one per image.

    Returns:
      ``bool`` ``(batch, height, width)``.

    Example:
      >>> image = np.full((1, 3, 3, 1), 0.1); image[0, 1, 1] = 0.9
      >>> threshold_segmentation(image)[0].astype(int)
      array([[0, 0, 0],
             [0, 1, 0],
             [0, 0, 0]])
    """
    grey = luminance(images)
    if threshold is None:
        threshold = otsu_threshold(images)
    else:
        threshold = np.asarray(threshold)
        if not (np.issubdtype(threshold.dtype, np.number) and threshold.dtype != bool
                and threshold.shape in ((), (grey.shape[0],)) and np.all(np.isfinite(threshold))):
            raise ValueError(f"threshold must be None (Otsu), a finite number, or ({grey.shape[0]},) numbers, one "
                             f"per image; got {threshold!r}")
    return grey >= np.broadcast_to(threshold, grey.shape[:1])[:, None, None]


def region_growing(images, seeds, *, tolerance: float) -> np.ndarray:
    r"""The region of each image that grows from its seed through pixels of a colour close to the seed's.

    A pixel :math:`q` belongs to the region when a 4-connected path of pixels leads from the seed
    :math:`s` to it, every pixel :math:`r` of which is close to the seed in colour:

    .. math::

       \lVert x_r - x_s \rVert_2 \le \text{tolerance}.

    The criterion compares with the seed, not with the region's running mean, so the region does not
    depend on the order in which pixels are visited: it is the connected component of the similar
    pixels that contains the seed. The region stops at a contrast edge larger than the tolerance; it
    leaks into the background wherever a path of similar colour leads there, and never reaches a similar
    region that no such path joins.

    Args:
      images: ``(batch, height, width, 1 or 3)``, floating point in ``[0, 1]``.
      seeds: ``(batch, 2)`` integers, the ``(row, column)`` of each image's seed.
      tolerance: the largest colour distance from the seed, ``>= 0`` (for RGB at most
        :math:`\sqrt 3`).

    Returns:
      ``bool`` ``(batch, height, width)``, ``True`` on the region (which contains the seed).

    Example:
      >>> image = np.zeros((1, 3, 4, 1)); image[0, :, 2:] = 1.0; image[0, 1, 0] = 0.15
      >>> region_growing(image, np.array([[0, 0]]), tolerance=0.2)[0].astype(int)
      array([[1, 1, 0, 0],
             [1, 1, 0, 0],
             [1, 1, 0, 0]])
    """
    images = _images(images)
    batch, height, width, _ = images.shape
    seeds = np.asarray(seeds)
    if seeds.shape != (batch, 2) or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds must be ({batch}, 2) integers, one (row, column) per image; got shape "
                         f"{seeds.shape} of dtype {seeds.dtype}")
    rows, columns = seeds[:, 0], seeds[:, 1]
    if np.any((rows < 0) | (rows >= height) | (columns < 0) | (columns >= width)):
        raise ValueError(f"seeds must lie inside the images (rows 0 to {height - 1}, columns 0 to {width - 1}); "
                         f"got {seeds.tolist()}")
    if not (isinstance(tolerance, numbers.Real) and not isinstance(tolerance, bool) and 0 <= tolerance < math.inf):
        raise ValueError(f"tolerance must be a finite number >= 0 (a colour distance); got {tolerance!r}")
    images_index = np.arange(batch)
    seed_colours = images[images_index, rows, columns]
    similar = np.linalg.norm(images - seed_colours[:, None, None, :], axis=-1) <= tolerance
    labels, _ = scipy.ndimage.label(similar, structure=_CROSS)
    return labels == labels[images_index, rows, columns][:, None, None]


def deepest_pixels(masks) -> np.ndarray:
    r"""Per mask, the pixel farthest from the background: the seed a person would click for region growing.

    It is the maximum of the Euclidean distance transform,
    :math:`\arg\max_{p \in M} \min_{q \notin M} \lVert p - q \rVert_2`, the first in row-major order
    where several tie; an empty mask gives ``(0, 0)``. Computed from the true mask, it is an *oracle*
    seed: region growing from it is an upper bound for a seed found without the answer, and, being one
    seed, it finds one connected object.

    Args:
      masks: ``bool`` ``(batch, height, width)``.

    Returns:
      ``int64`` ``(batch, 2)``: the ``(row, column)`` of each mask's deepest pixel.

    Example:
      >>> mask = np.zeros((1, 5, 7), bool); mask[0, 1:4, 1:6] = True
      >>> deepest_pixels(mask).tolist()
      [[2, 2]]
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.dtype != bool:
        raise ValueError(f"masks must be bool (batch, height, width); got shape {masks.shape} of dtype {masks.dtype}")
    seeds = np.zeros((len(masks), 2), np.int64)
    for i, mask in enumerate(masks):
        if mask.any():
            depth = scipy.ndimage.distance_transform_edt(mask)
            seeds[i] = np.unravel_index(np.argmax(depth), mask.shape)
    return seeds


def best_threshold(images, masks, *, thresholds=None) -> tuple[float | None, bool]:
    r"""The luminance threshold, and the side the objects lie on, that segment labelled images best.

    Among the candidate levels :math:`t` (and Otsu's own level per image, ``None``) and both polarities
    it picks the pair with the highest mean IoU against ``masks``,

    .. math::

       (t^*, d^*) = \arg\max_{t,\, d} \frac{1}{N} \sum_n \mathrm{IoU}\big(
       [\,\mathrm{lum}_n \ge t\,] \oplus d,\; y_n\big),

    where :math:`d` (``items_darker``) inverts the mask, for objects darker than their background.
    Chosen on training images and applied to test images, it is the fairest threshold baseline: the
    level is learnt, only the rule is fixed.

    Args:
      images: ``(batch, height, width, 1 or 3)``, floating point in ``[0, 1]``.
      masks: ``bool`` ``(batch, height, width)``, the true foreground.
      thresholds: the candidate levels in ``[0, 1]`` (default 49 levels from 0.02 to 0.98), or the
        string ``"otsu"`` to keep Otsu's level per image and choose only the side.

    Returns:
      ``(threshold, items_darker)``: the level (``None`` for Otsu's) and ``True`` when the objects are
      the pixels *below* it; segment new images with
      ``threshold_segmentation(images, threshold=threshold) != items_darker``.

    Example:
      >>> image = np.full((1, 2, 2, 1), 0.8); image[0, 0, 0] = 0.2   # a dark object on a bright background
      >>> best_threshold(image, image[..., 0] < 0.5, thresholds="otsu")
      (None, True)
    """
    masks = np.asarray(masks)
    if thresholds is None:
        levels = [float(t) for t in np.linspace(0.02, 0.98, 49)]
    elif isinstance(thresholds, str) and thresholds == "otsu":
        levels = [None]
    else:
        candidates = np.atleast_1d(np.asarray(thresholds))
        if not (np.issubdtype(candidates.dtype, np.number) and candidates.size
                and np.all((candidates >= 0.0) & (candidates <= 1.0))):
            raise ValueError(f"thresholds must be levels in [0, 1], None (49 levels) or 'otsu'; got {thresholds!r}")
        levels = [float(t) for t in candidates]
    if masks.dtype != bool or masks.shape != luminance(images).shape:
        raise ValueError(f"masks must be bool with the images' (batch, height, width); got shape {masks.shape} of "
                         f"dtype {masks.dtype}")
    scored = []
    for level in levels:
        bright = threshold_segmentation(images, threshold=level)
        scored += [(float(np.mean(iou(bright != darker, masks))), level, darker) for darker in (False, True)]
    _, level, darker = max(scored, key=lambda entry: entry[0])
    return level, darker
