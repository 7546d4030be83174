r"""Segmentation measures: overlap of masks and boxes, boundaries, and distances between distributions of masks.

Three families answer three questions.

*Does this mask cover that one?* :func:`iou` and :func:`dice` compare two binary masks per image;
:func:`pixel_accuracy`, :func:`confusion_matrix`, :func:`per_class_iou` and :func:`mean_iou` compare
class maps, the last three pooled over the whole set; :func:`boundary_f_score` looks only at the
outlines; :func:`box_iou` does for boxes what :func:`iou` does for masks; :func:`isolated_components`
counts the "black dots", holes the prediction leaves inside an object.

*Does this set of sampled masks match that set of annotations?* An ambiguous image has several
right answers, so a probabilistic model is judged on distributions of masks: :func:`pairwise_distances`
gives the distance :math:`d = 1 - \mathrm{IoU}` between every two masks, and
:func:`generalized_energy_distance` (GED) combines them; :func:`ged_optimum` is its expected value
when the samples come from the true distribution, the target to beat; :func:`sample_diversity` tells a
model whose samples all look alike (a collapsed KL); :func:`hungarian_iou` matches samples to
annotations one to one.

**The empty-mask rule.** IoU, Dice and the boundary F-score are ratios whose denominator is zero when
both masks are empty. Two empty masks agree perfectly: their score is ``empty`` (1 by default), so
their distance :math:`d = 1 - \mathrm{IoU}` is 0; one empty mask against a non-empty one scores 0
(distance 1). An ambiguous scene where some annotators mark nothing relies on this rule: without it,
the GED would be NaN.

Masks are NumPy (or JAX) arrays: binary masks ``(batch, height, width)`` of ``bool`` or 0/1 values, class maps
``(batch, height, width)`` of integers. Everything is computed in NumPy ``float64``.

References:
  Everingham, Van Gool, Williams, Winn & Zisserman, *The Pascal Visual Object Classes (VOC) Challenge*,
  IJCV 88(2), 2010 (IoU of masks and boxes; per-class IoU over the whole set).
  Dice, *Measures of the amount of ecologic association between species*, Ecology 26(3), 1945.
  Csurka, Larlus & Perronnin, *What is a good evaluation measure for semantic segmentation?*, BMVC 2013
  (the boundary F-score).
  Székely & Rizzo, *Energy statistics: a class of statistics based on distances*, Journal of Statistical
  Planning and Inference 143(8), 2013.
  Kohl et al., *A Probabilistic U-Net for Segmentation of Ambiguous Images*, NeurIPS 2018 (GED with
  :math:`d = 1 - \mathrm{IoU}`).
  Kohl et al., *A Hierarchical Probabilistic U-Net for Modeling Multi-Scale Ambiguities*, arXiv 1905.13077,
  2019 (Hungarian-matched IoU).
  Kuhn, *The Hungarian method for the assignment problem*, Naval Research Logistics Quarterly 2, 1955.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.ndimage
import scipy.optimize

# 4-connectivity inside each image and none across the batch axis: the masks of a batch are labelled,
# eroded and dilated together, as one (batch, height, width) array, without touching one another.
_CROSS = np.zeros((3, 3, 3), bool)
_CROSS[1] = [[False, True, False], [True, True, True], [False, True, False]]

HUNGARIAN_MAX_SLOTS = 1024
"""The largest matching :func:`hungarian_iou` solves (its cost matrix has this many rows and columns)."""


# ---------------------------------------------------------------------------------------------------------------
# Input checks


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _masks(name: str, masks) -> np.ndarray:
    """``masks`` as ``bool``; a ValueError names ``name`` unless they are binary, ``(batch, height, width)``."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{name} must be binary masks of shape (batch, height, width); got shape {masks.shape}")
    if masks.dtype == bool:
        return masks
    if not (np.issubdtype(masks.dtype, np.number) and np.all((masks == 0) | (masks == 1))):
        raise ValueError(f"{name} must be binary: bool, or numbers that are all 0 or 1; got dtype {masks.dtype} "
                         f"with values {np.unique(masks)[:6]}")
    return masks.astype(bool)


def _mask_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _masks("pred", pred), _masks("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape; got {pred.shape} and {target.shape}")
    return pred, target


def _class_maps(name: str, maps) -> np.ndarray:
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"{name} must be class maps of shape (batch, height, width); got shape {maps.shape}")
    whole = maps.dtype == bool or np.issubdtype(maps.dtype, np.integer) or (
        np.issubdtype(maps.dtype, np.floating) and np.all(np.isfinite(maps)) and np.all(maps == np.round(maps)))
    if not whole:
        raise ValueError(f"{name} must hold integer class indices (or bool for two classes); got dtype "
                         f"{maps.dtype} with values that are not whole numbers: take the argmax of the logits first")
    return maps.astype(np.int64)


def _class_map_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _class_maps("pred", pred), _class_maps("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape; got {pred.shape} and {target.shape}")
    if pred.size == 0:
        raise ValueError(f"pred and target hold no pixel; got shape {pred.shape}")
    return pred, target


def _check_num_classes(num_classes, pred: np.ndarray, target: np.ndarray) -> None:
    if not (isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool) and num_classes >= 2):
        raise ValueError(f"num_classes must be an integer >= 2 (the background counts as a class); "
                         f"got {num_classes!r}")
    for name, maps in (("pred", pred), ("target", target)):
        if maps.min() < 0 or maps.max() >= num_classes:
            raise ValueError(f"{name} must hold classes 0 to num_classes - 1 = {num_classes - 1}; got values "
                             f"from {maps.min()} to {maps.max()}")


def _check_empty(empty) -> None:
    if not (_is_real(empty) and 0.0 <= empty <= 1.0):
        raise ValueError(f"empty must be a number in [0, 1] (the score of two empty masks); got {empty!r}")


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    """``numerator / denominator``, and ``empty`` where the denominator is 0 (both masks empty)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, float(empty))


def _pixel_count(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(masks.shape[0], -1).sum(axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Overlap of binary masks


def iou(pred, target, *, empty: float = 1.0) -> np.ndarray:
    r"""Intersection over union (the Jaccard index) of each pair of binary masks.

    .. math::

       \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|},

    with :math:`|\cdot|` the number of pixels, computed per image (never pooled over the batch).
    Empty-mask rule: two empty masks score ``empty``; one empty mask against a non-empty one scores 0.

    Args:
      pred: binary masks ``(batch, height, width)``, ``bool`` or 0/1.
      target: binary masks of the same shape.
      empty: the score of a pair of empty masks (1: they agree).

    Returns:
      ``(batch,)`` float64, each in ``[0, 1]``.

    Example:
      >>> a = np.zeros((2, 4, 4), bool); b = a.copy()
      >>> a[0, :2] = True; b[0, :, :2] = True     # two 2x4 bands crossing in a 2x2 square
      >>> iou(a, b)                               # 4 / (8 + 8 - 4), then the empty-mask rule
      array([0.33333333, 1.        ])

    References:
      Jaccard, *The distribution of the flora in the alpine zone*, New Phytologist 11(2), 1912;
      Everingham et al., *The Pascal VOC Challenge*, IJCV 2010.
    """
    pred, target = _mask_pair(pred, target)
    _check_empty(empty)
    return _ratio(_pixel_count(pred & target), _pixel_count(pred | target), empty)


def dice(pred, target, *, empty: float = 1.0) -> np.ndarray:
    r"""Dice coefficient (the F1 score of the pixels) of each pair of binary masks.

    .. math::

       \mathrm{Dice}(A, B) = \frac{2\,|A \cap B|}{|A| + |B|} = \frac{2\,\mathrm{IoU}}{1 + \mathrm{IoU}},

    so Dice and IoU rank predictions of one image alike; Dice is the larger of the two except at 0 and 1.
    Empty-mask rule: two empty masks score ``empty``; one empty mask against a non-empty one scores 0.

    Args:
      pred: binary masks ``(batch, height, width)``, ``bool`` or 0/1.
      target: binary masks of the same shape.
      empty: the score of a pair of empty masks.

    Returns:
      ``(batch,)`` float64, each in ``[0, 1]``.

    Example:
      >>> a = np.zeros((1, 4, 4), bool); b = a.copy()
      >>> a[0, :2] = True; b[0, :, :2] = True
      >>> dice(a, b)                              # 2 * 4 / (8 + 8)
      array([0.5])

    References:
      Dice, *Measures of the amount of ecologic association between species*, Ecology 26(3), 1945.
    """
    pred, target = _mask_pair(pred, target)
    _check_empty(empty)
    return _ratio(2 * _pixel_count(pred & target), _pixel_count(pred) + _pixel_count(target), empty)


def pixel_accuracy(pred, target) -> np.ndarray:
    r"""The fraction of each image's pixels whose class is right.

    .. math::

       \mathrm{acc} = \frac{1}{HW} \sum_{h,w} [\hat y_{hw} = y_{hw}].

    It flatters a model on images that are mostly background: predicting background everywhere on a
    scene whose object covers 10 % of the pixels scores 0.9. Prefer :func:`iou` or :func:`mean_iou`.

    Args:
      pred: class maps ``(batch, height, width)`` of integers, or binary masks (``bool``).
      target: class maps of the same shape.

    Returns:
      ``(batch,)`` float64 in ``[0, 1]``.

    Example:
      >>> pixel_accuracy(np.zeros((1, 10, 10), int), np.pad(np.ones((1, 3, 3), int), ((0, 0), (0, 7), (0, 7))))
      array([0.91])
    """
    pred, target = _class_map_pair(pred, target)
    return (pred == target).reshape(pred.shape[0], -1).mean(axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Class maps: over the whole set


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    r"""Pixel counts of every (true class, predicted class) pair over the whole set.

    .. math::

       N_{ij} = \#\{\text{pixels } p : y_p = i,\ \hat y_p = j\},

    rows the true class, columns the predicted one: the diagonal holds the right pixels, row :math:`i`
    sums to the pixels of class :math:`i`, column :math:`j` to the pixels predicted as :math:`j`.

    Args:
      pred: class maps ``(batch, height, width)`` of integers in ``[0, num_classes)``.
      target: class maps of the same shape.
      num_classes: the number of classes, background included (``>= 2``).

    Returns:
      ``(num_classes, num_classes)`` int64 counts.

    Example:
      >>> confusion_matrix(np.array([[[0, 1, 1]]]), np.array([[[0, 0, 1]]]), 2)
      array([[1, 1],
             [0, 1]])
    """
    pred, target = _class_map_pair(pred, target)
    _check_num_classes(num_classes, pred, target)
    pairs = target.ravel() * num_classes + pred.ravel()
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_iou(pred, target, num_classes: int) -> np.ndarray:
    r"""IoU of each class over the whole set (Pascal VOC's measure), from the :func:`confusion_matrix`.

    .. math::

       \mathrm{IoU}_c = \frac{N_{cc}}{\sum_j N_{cj} + \sum_i N_{ic} - N_{cc}}
                     = \frac{\mathrm{TP}_c}{\mathrm{TP}_c + \mathrm{FN}_c + \mathrm{FP}_c},

    the pixels of every image pooled before dividing, so that a class seen in a few pixels of one image
    does not weigh as much as a class filling many. A class absent from both the targets and the
    predictions has no IoU: NaN (not 1, unlike the per-image empty-mask rule, so that a class the set
    never shows does not inflate :func:`mean_iou`).

    Args:
      pred: class maps ``(batch, height, width)`` of integers in ``[0, num_classes)``.
      target: class maps of the same shape.
      num_classes: the number of classes, background included (``>= 2``).

    Returns:
      ``(num_classes,)`` float64: IoU per class, NaN for a class absent from both.

    Example:
      >>> per_class_iou(np.array([[[0, 1, 1]]]), np.array([[[0, 0, 1]]]), 3)   # class 2 never appears
      array([0.5, 0.5, nan])
    """
    matrix = confusion_matrix(pred, target, num_classes)
    true_positives = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positives
    return _ratio(true_positives, union, math.nan)


def mean_iou(pred, target, num_classes: int) -> float:
    r"""Mean IoU: the average of :func:`per_class_iou` over the classes present, background included.

    .. math::

       \mathrm{mIoU} = \frac{1}{|\mathcal C|} \sum_{c \in \mathcal C} \mathrm{IoU}_c,

    :math:`\mathcal C` the classes that occur in the targets or the predictions. The background is one
    of the classes, as in Pascal VOC: on scenes that are mostly background its IoU is high and lifts the
    mean; read :func:`per_class_iou` to see the objects' classes alone.

    Args:
      pred: class maps ``(batch, height, width)`` of integers in ``[0, num_classes)``.
      target: class maps of the same shape.
      num_classes: the number of classes, background included (``>= 2``).

    Returns:
      The mean IoU, a float in ``[0, 1]``.

    Example:
      >>> mean_iou(np.array([[[0, 1, 1]]]), np.array([[[0, 0, 1]]]), 3)
      0.5
    """
    per_class = per_class_iou(pred, target, num_classes)
    return float(np.mean(per_class[~np.isnan(per_class)]))


# ---------------------------------------------------------------------------------------------------------------
# Boundaries


def _disk(radius: float) -> np.ndarray:
    """The pixels within Euclidean distance ``radius`` of the centre, as a structuring element with no batch extent."""
    reach = int(math.floor(radius))
    offsets = np.arange(-reach, reach + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return disk[None]


def boundaries(masks) -> np.ndarray:
    r"""The boundary pixels of each binary mask: the mask's pixels with a 4-neighbour outside it.

    .. math::

       \partial A = A \setminus (A \ominus \text{cross}),

    the mask minus its erosion by the 3×3 cross. The image's edge is not a boundary (the erosion treats
    the outside of the image as foreground): an object cut by the frame has no outline there, and a mask
    that fills the image has none at all.

    Args:
      masks: binary masks ``(batch, height, width)``.

    Returns:
      ``bool`` ``(batch, height, width)``.

    Example:
      >>> square = np.zeros((1, 5, 5), bool); square[0, 1:4, 1:4] = True
      >>> boundaries(square)[0].astype(int)
      array([[0, 0, 0, 0, 0],
             [0, 1, 1, 1, 0],
             [0, 1, 0, 1, 0],
             [0, 1, 1, 1, 0],
             [0, 0, 0, 0, 0]])
    """
    masks = _masks("masks", masks)
    return masks & ~scipy.ndimage.binary_erosion(masks, structure=_CROSS, border_value=1)


def boundary_f_score(pred, target, *, tolerance: float = 2, empty: float = 1.0) -> np.ndarray:
    r"""Boundary F-score (Csurka et al., 2013): how well the outlines agree, within a tolerance in pixels.

    With :math:`\partial P` and :math:`\partial T` the :func:`boundaries` of the prediction and the
    target, and :math:`[\,\cdot\,]_\theta` the pixels within Euclidean distance :math:`\theta` of a set,

    .. math::

       \text{precision} = \frac{|\partial P \cap [\partial T]_\theta|}{|\partial P|}, \qquad
       \text{recall} = \frac{|\partial T \cap [\partial P]_\theta|}{|\partial T|}, \qquad
       F = \frac{2\,\text{precision}\cdot\text{recall}}{\text{precision} + \text{recall}}.

    IoU is dominated by an object's interior; F is not: a blurry outline or a ragged edge costs F much
    more than IoU. Empty-mask rule, on the outlines: two masks without boundary pixels score ``empty``,
    one without against one with scores 0, and F is 0 when precision and recall both are.

    Args:
      pred: binary masks ``(batch, height, width)``.
      target: binary masks of the same shape.
      tolerance: :math:`\theta`, in pixels (``>= 0``); Csurka et al. take a small fraction of the image
        diagonal (0.75 %), which is under one pixel on a 64×64 image, so the kit's default is 2 pixels.
      empty: the score of a pair of masks with no boundary pixels.

    Returns:
      ``(batch,)`` float64 in ``[0, 1]``.

    Example:
      >>> square = np.zeros((1, 14, 14), bool); square[0, 2:8, 2:8] = True
      >>> boundary_f_score(square, np.roll(square, 2, axis=2), tolerance=2)   # 2 pixels off: within
      array([1.])
      >>> boundary_f_score(square, np.roll(square, 4, axis=2), tolerance=2)   # 12 of 20 outline pixels
      array([0.6])

    References:
      Csurka, Larlus & Perronnin, *What is a good evaluation measure for semantic segmentation?*, BMVC 2013.
    """
    pred, target = _mask_pair(pred, target)
    if not (_is_real(tolerance) and 0 <= tolerance < math.inf):
        raise ValueError(f"tolerance must be a finite number of pixels >= 0; got {tolerance!r}")
    _check_empty(empty)
    pred_edge, target_edge = boundaries(pred), boundaries(target)
    disk = _disk(tolerance)
    near_target = scipy.ndimage.binary_dilation(target_edge, structure=disk)
    near_pred = scipy.ndimage.binary_dilation(pred_edge, structure=disk)
    pred_count, target_count = _pixel_count(pred_edge), _pixel_count(target_edge)
    precision = _ratio(_pixel_count(pred_edge & near_target), pred_count, 0.0)
    recall = _ratio(_pixel_count(target_edge & near_pred), target_count, 0.0)
    score = _ratio(2 * precision * recall, precision + recall, 0.0)
    return np.where((pred_count == 0) & (target_count == 0), float(empty), score)


# ---------------------------------------------------------------------------------------------------------------
# Boxes


def _boxes(name: str, boxes) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim < 1 or boxes.shape[-1] != 4 or not np.issubdtype(boxes.dtype, np.number):
        raise ValueError(f"{name} must be boxes of shape (..., 4), (top, left, bottom, right); got shape "
                         f"{boxes.shape} of dtype {boxes.dtype}")
    boxes = boxes.astype(np.float64)
    if np.any(boxes[..., 2] < boxes[..., 0]) or np.any(boxes[..., 3] < boxes[..., 1]):
        raise ValueError(f"{name} must have top <= bottom and left <= right (bottom and right exclusive)")
    return boxes


def box_area(boxes) -> np.ndarray:
    r"""The area of each box, :math:`(\text{bottom} - \text{top})(\text{right} - \text{left})` (corners exclusive).

    Args:
      boxes: ``(..., 4)``, each ``(top, left, bottom, right)`` with bottom and right exclusive.

    Returns:
      ``(...)`` float64.

    Example:
      >>> box_area(np.array([[0, 0, 2, 3], [-1, -1, -1, -1]]))   # an absent box (a row of -1) has area 0
      array([6., 0.])
    """
    boxes = _boxes("boxes", boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes_a, boxes_b, *, empty: float = 1.0) -> np.ndarray:
    r"""IoU of boxes: the area they share over the area they cover, broadcast over the leading axes.

    With boxes :math:`(t, l, b, r)`, bottom :math:`b` and right :math:`r` exclusive (a box of one pixel
    is :math:`(t, l, t+1, l+1)`),

    .. math::

       |A \cap B| = \max\big(0, \min(b_A, b_B) - \max(t_A, t_B)\big)\,
                    \max\big(0, \min(r_A, r_B) - \max(l_A, l_B)\big), \qquad
       \mathrm{IoU} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}.

    Each side is clamped at 0 before the product: boxes apart in both directions have two negative sides,
    whose product would be a positive, false, overlap. Empty rule, as for masks: two boxes of zero area
    (e.g. absent items, rows of -1) score ``empty``; one of zero area against another scores 0.

    Args:
      boxes_a: ``(..., 4)`` boxes ``(top, left, bottom, right)``.
      boxes_b: ``(..., 4)`` boxes, broadcastable against ``boxes_a`` (``a[:, None]`` and ``b[None]``
        give every pair).
      empty: the score of two boxes of zero area.

    Returns:
      ``(...)`` float64, the broadcast shape of the two leading shapes.

    Example:
      >>> box_iou(np.array([0, 0, 4, 4]), np.array([2, 2, 6, 6]))    # 2x2 shared of 16 + 16 - 4
      array(0.14285714)
      >>> box_iou(np.array([0, 0, 2, 2]), np.array([2, 2, 4, 4]))    # touching corners share nothing
      array(0.)

    References:
      Everingham et al., *The Pascal VOC Challenge*, IJCV 2010.
    """
    a, b = _boxes("boxes_a", boxes_a), _boxes("boxes_b", boxes_b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"boxes_a and boxes_b must broadcast against each other; got shapes {a.shape} and "
                         f"{b.shape}") from None
    _check_empty(empty)
    height = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]))
    width = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]))
    shared = height * width
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return _ratio(shared, area_a + area_b - shared, empty)


# ---------------------------------------------------------------------------------------------------------------
# Distributions of masks: one image, several samples, several annotations


def pairwise_distances(a, b) -> np.ndarray:
    r"""The distance :math:`d = 1 - \mathrm{IoU}` between every mask of ``a`` and every mask of ``b``.

    .. math::

       D_{ij} = 1 - \frac{|a_i \cap b_j|}{|a_i \cup b_j|},

    with the empty-mask rule: two empty masks are at distance 0, an empty and a non-empty one at 1.
    :math:`d` is a metric on masks (the Jaccard distance): 0 only between equal masks, symmetric, and it
    obeys the triangle inequality, which :func:`generalized_energy_distance` needs.

    Args:
      a: binary masks ``(n, height, width)``.
      b: binary masks ``(m, height, width)``.

    Returns:
      ``(n, m)`` float64 in ``[0, 1]``.

    Example:
      >>> empty, full = np.zeros((1, 2, 2), bool), np.ones((1, 2, 2), bool)
      >>> pairwise_distances(np.concatenate([empty, full]), np.concatenate([empty, full]))
      array([[0., 1.],
             [1., 0.]])
    """
    a, b = _masks("a", a), _masks("b", b)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a and b must be masks of the same height and width; got shapes {a.shape} and {b.shape}")
    flat_a = a.reshape(a.shape[0], -1).astype(np.float64)
    flat_b = b.reshape(b.shape[0], -1).astype(np.float64)
    shared = flat_a @ flat_b.T  # pixel counts: exact in float64
    union = flat_a.sum(axis=1)[:, None] + flat_b.sum(axis=1)[None, :] - shared
    return 1.0 - _ratio(shared, union, 1.0)


def _weights(name: str, weights, count: int) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), one per mask; got {weights.shape}")
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0) and abs(weights.sum() - 1.0) <= 1e-6):
        raise ValueError(f"{name} must be probabilities: finite, >= 0, summing to 1; got {weights} "
                         f"(sum {weights.sum():.6g})")
    return weights


def _one_image_sets(samples, annotations) -> tuple[np.ndarray, np.ndarray]:
    samples, annotations = _masks("samples", samples), _masks("annotations", annotations)
    for name, masks in (("samples", samples), ("annotations", annotations)):
        if masks.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one mask; got shape {masks.shape}")
    if samples.shape[1:] != annotations.shape[1:]:
        raise ValueError(f"samples and annotations must be masks of the same height and width; got shapes "
                         f"{samples.shape} and {annotations.shape}")
    return samples, annotations


def generalized_energy_distance(samples, annotations, *, weights=None) -> float:
    r"""Squared generalized energy distance between a model's samples and the annotations of one image.

    With :math:`d = 1 - \mathrm{IoU}` (:func:`pairwise_distances`), samples :math:`S_1..S_n` of the
    model and annotations :math:`Y_1..Y_m` of weights :math:`w_j`,

    .. math::

       D^2_{\mathrm{GED}} = 2\,\mathbb E\,d(S, Y) - \mathbb E\,d(S, S') - \mathbb E\,d(Y, Y')
         = \frac{2}{n} \sum_{i,j} w_j\, d(S_i, Y_j)
           - \frac{1}{n^2} \sum_{i,i'} d(S_i, S_{i'})
           - \sum_{j,j'} w_j w_{j'}\, d(Y_j, Y_{j'}).

    Every expectation is a V-statistic, over all pairs with the diagonal (:math:`i = i'`,
    :math:`d = 0`) included, as Kohl et al. (2018) compute it. The GED of the true distribution is
    0, and it grows when the samples miss modes (first term up) or all look alike (second term down,
    which a deterministic model cannot lower). With the diagonal included, even samples drawn from the
    true distribution score :math:`\pi^\top D \pi / n > 0` on average: :func:`ged_optimum` gives that
    target, so report the GED with its number of samples.

    Args:
      samples: the model's masks for one image, binary ``(n, height, width)``.
      annotations: the annotators' masks (or the distinct modes) of the same image, binary
        ``(m, height, width)``.
      weights: ``(m,)`` probabilities of the annotations; ``None`` weighs them equally (annotators'
        masks), the modes' exact probabilities give the GED against the true distribution.

    Returns:
      :math:`D^2_{\mathrm{GED}}`, a float (``>= 0`` because :math:`d` is a metric).

    Example:
      >>> empty, full = np.zeros((1, 2, 2), bool), np.ones((1, 2, 2), bool)
      >>> both = np.concatenate([empty, full])
      >>> generalized_energy_distance(both, both)       # samples in exactly the annotations' proportions
      0.0
      >>> generalized_energy_distance(np.repeat(full, 2, axis=0), both)   # always the same answer
      0.5
      >>> generalized_energy_distance(np.repeat(full, 2, axis=0), full)   # against one right answer
      0.0

    References:
      Székely & Rizzo, *Energy statistics*, 2013; Kohl et al., *A Probabilistic U-Net for Segmentation
      of Ambiguous Images*, NeurIPS 2018.
    """
    samples, annotations = _one_image_sets(samples, annotations)
    w = _weights("weights", weights, annotations.shape[0])
    across = pairwise_distances(samples, annotations).mean(axis=0) @ w
    within_samples = pairwise_distances(samples, samples).mean()
    within_annotations = w @ pairwise_distances(annotations, annotations) @ w
    return float(2.0 * across - within_samples - within_annotations)


def ged_optimum(modes, probabilities, num_samples: int) -> float:
    r"""The expected GED of ``num_samples`` samples drawn from the true distribution, against it.

    When the :math:`n` samples of :func:`generalized_energy_distance` are drawn independently from the
    modes :math:`Y_j` with probabilities :math:`\pi_j`, and scored against the modes with weights
    :math:`\pi`, the first and last terms have expectation :math:`2\pi^\top D\pi` and
    :math:`\pi^\top D\pi`, and the V-statistic of the samples, whose :math:`n` diagonal terms are 0,
    has :math:`\frac{n-1}{n}\pi^\top D\pi` (:math:`D_{jk} = d(Y_j, Y_k)`). So

    .. math::

       \mathbb E\, D^2_{\mathrm{GED}} = \frac{\pi^\top D \pi}{n},

    the estimator's bias: the best a model can expect with :math:`n` samples, and 0 only as
    :math:`n \to \infty` (or for an image with a single mode).

    Args:
      modes: the distinct plausible masks of one image, binary ``(m, height, width)``.
      probabilities: ``(m,)`` their probabilities (summing to 1; a mode of probability 0 is padding).
      num_samples: :math:`n`, the number of samples the GED is computed with (``>= 1``).

    Returns:
      The expected :math:`D^2_{\mathrm{GED}}`, a float.

    Example:
      >>> modes = np.stack([np.zeros((2, 2), bool), np.ones((2, 2), bool)])   # marked or not, 50/50
      >>> ged_optimum(modes, np.array([0.5, 0.5]), num_samples=1), ged_optimum(modes, [0.5, 0.5], 16)
      (0.5, 0.03125)
    """
    modes = _masks("modes", modes)
    if modes.shape[0] == 0:
        raise ValueError(f"modes must hold at least one mask; got shape {modes.shape}")
    pi = _weights("probabilities", probabilities, modes.shape[0])
    if not (isinstance(num_samples, numbers.Integral) and not isinstance(num_samples, bool) and num_samples >= 1):
        raise ValueError(f"num_samples must be an integer >= 1; got {num_samples!r}")
    return float(pi @ pairwise_distances(modes, modes) @ pi / num_samples)


def sample_diversity(samples) -> float:
    r"""The mean distance :math:`d = 1 - \mathrm{IoU}` between two different samples of one image.

    .. math::

       \frac{1}{n(n-1)} \sum_{i \ne i'} d(S_i, S_{i'}),

    over distinct pairs only (a U-statistic, unbiased for :math:`\mathbb E\,d(S, S')`). Near 0, every
    sample is the same mask: a Probabilistic U-Net whose KL has collapsed ignores its latent, and this
    is how to see it.

    Args:
      samples: ``(n, height, width)`` binary masks of one image, ``n >= 2``.

    Returns:
      A float in ``[0, 1]``.

    Example:
      >>> masks = np.zeros((3, 2, 2), bool); masks[0] = True
      >>> sample_diversity(masks)    # of the 6 ordered pairs, 4 differ
      0.6666666666666666
    """
    samples = _masks("samples", samples)
    count = samples.shape[0]
    if count < 2:
        raise ValueError(f"samples must hold at least 2 masks (diversity is about pairs); got {count}")
    return float(pairwise_distances(samples, samples).sum() / (count * (count - 1)))


def hungarian_iou(samples, annotations) -> float:
    r"""Mean IoU of the best one-to-one matching of samples to annotations (Kohl et al., 2019).

    Both sets are repeated to a common size :math:`L = \operatorname{lcm}(n, m)`, so that every sample
    and every annotation is matched the same number of times; the Hungarian method (Kuhn, 1955) then
    finds the permutation :math:`\sigma` of the :math:`L` slots that maximises

    .. math::

       \frac{1}{L} \sum_{k=1}^{L} \mathrm{IoU}\big(S_k, Y_{\sigma(k)}\big).

    Unlike the GED, a model scores 1 only if its samples reproduce the annotations in the right
    proportions, one for one; the empty-mask rule applies to each pair.

    Args:
      samples: ``(n, height, width)`` binary masks of one image.
      annotations: ``(m, height, width)`` binary masks of the same image; :math:`\operatorname{lcm}(n, m)`
        at most :data:`HUNGARIAN_MAX_SLOTS` (take :math:`n` a multiple of :math:`m`).

    Returns:
      A float in ``[0, 1]``.

    Example:
      >>> masks = np.zeros((2, 2, 2), bool); masks[1, 0] = True
      >>> hungarian_iou(masks[::-1], masks)    # the same masks in another order
      1.0

    References:
      Kuhn, *The Hungarian method for the assignment problem*, Naval Research Logistics Quarterly 2, 1955;
      Kohl et al., *A Hierarchical Probabilistic U-Net for Modeling Multi-Scale Ambiguities*, 2019.
    """
    samples, annotations = _one_image_sets(samples, annotations)
    n, m = samples.shape[0], annotations.shape[0]
    size = math.lcm(n, m)
    if size > HUNGARIAN_MAX_SLOTS:
        raise ValueError(f"the numbers of samples ({n}) and annotations ({m}) have a least common multiple of "
                         f"{size}, above {HUNGARIAN_MAX_SLOTS} slots: take a number of samples that is a multiple "
                         "of the number of annotations")
    overlap = 1.0 - pairwise_distances(samples, annotations)
    tiled = np.tile(overlap, (size // n, size // m))
    rows, columns = scipy.optimize.linear_sum_assignment(tiled, maximize=True)
    return float(tiled[rows, columns].mean())


# ---------------------------------------------------------------------------------------------------------------
# Error counts


def isolated_components(pred, target) -> np.ndarray:
    r"""The number of "black dots" per image: missed pieces of an object that the prediction surrounds.

    The false negatives :math:`T \setminus P` split into 4-connected components; a component counts
    when none of its pixels is 4-adjacent to a true-negative pixel (predicted and truly background) or to
    the image's edge, i.e. when predicted foreground encloses it. These are the holes a plain
    autoencoder punches into a mask that is otherwise right, which IoU barely registers (a 3-pixel hole
    in a 400-pixel object costs under 1 % of IoU) and an eye sees at once.

    Args:
      pred: binary masks ``(batch, height, width)``.
      target: binary masks of the same shape.

    Returns:
      ``(batch,)`` int64 counts.

    Example:
      >>> target = np.zeros((1, 7, 7), bool); target[0, 1:6, 1:6] = True
      >>> pred = target.copy(); pred[0, 2, 2] = pred[0, 4, 3] = pred[0, 4, 4] = False   # two holes
      >>> pred[0, 1, 5] = False                                                         # a notch: open
      >>> isolated_components(pred, target)
      array([2])
    """
    pred, target = _mask_pair(pred, target)
    missed = target & ~pred
    true_background = np.pad(~target & ~pred, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    open_to_background = scipy.ndimage.binary_dilation(true_background, structure=_CROSS)[:, 1:-1, 1:-1]
    labels, count = scipy.ndimage.label(missed, structure=_CROSS)
    open_labels = np.unique(labels[missed & open_to_background])
    enclosed = np.setdiff1d(np.arange(1, count + 1), open_labels)
    image_of_label = np.zeros(count + 1, np.int64)
    image_of_label[labels[missed]] = np.nonzero(missed)[0]
    return np.bincount(image_of_label[enclosed], minlength=pred.shape[0]).astype(np.int64)
