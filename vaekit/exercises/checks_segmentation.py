"""Checkers of chapters 09-11: IoU and Dice of masks, IoU of boxes, the generalized energy distance, and the
Probabilistic U-Net's per-image loss."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

from vaekit.exercises._core import Case, Edge, Feedback, Mistake, checker, close, compare, f32
from vaekit.metrics import segmentation as seg
from vaekit.segmentation import pixel_cross_entropy


def _divide(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` as a learner's division gives it (0/0 is NaN, x/0 infinite), without warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, np.float64) / np.asarray(denominator, np.float64)


def _blobs(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    """Random smooth binary masks, each covering 15 % to 70 % of its image (never empty)."""
    field = scipy.ndimage.gaussian_filter(rng.standard_normal((batch, height, width)), sigma=(0, 2.0, 2.0))
    covered = np.round(rng.uniform(0.15, 0.7, size=batch) * height * width).astype(int)
    levels = -np.sort(-field.reshape(batch, -1), axis=1)[np.arange(batch), covered - 1]
    return field >= levels[:, None, None]


def _counts(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(masks.shape[0], -1).sum(axis=1)


def _mask_cases(seed: int) -> tuple[list[Case], Case]:
    """Pairs of masks per image: overlapping, identical, disjoint, one empty; then two empty masks."""
    rng = np.random.default_rng(seed)
    pred, target = _blobs(rng, 4, 16, 12), _blobs(rng, 4, 16, 12)
    special_pred, special_target = _blobs(rng, 4, 20, 20), _blobs(rng, 4, 20, 20)
    special_target[0] = special_pred[0]                       # identical
    special_pred[1], special_target[1] = False, False
    special_pred[1, :, :8], special_target[1, :, 12:] = True, True   # disjoint
    special_pred[2] = False                                  # nothing predicted on a real object
    cases = [
        Case((pred, target), "4 pairs of 16x12 masks that overlap in part", (0, 0)),
        Case((_blobs(rng, 1, 8, 8), _blobs(rng, 1, 8, 8)), "a batch of 1 pair of 8x8 masks", (0, 0)),
        Case((special_pred, special_target), "4 pairs of 20x20 masks: identical, disjoint, an empty prediction "
             "against an object, and an overlapping pair", (0, 0)),
    ]
    empty_pred, empty_target = _blobs(rng, 3, 10, 10), _blobs(rng, 3, 10, 10)
    empty_pred[1], empty_target[1] = False, False
    edge = Case((empty_pred, empty_target), "3 pairs of 10x10 masks whose second pair is two empty masks", (0, 0))
    return cases, edge


def _batch_mistakes(per_image: Callable, shared: Callable, name: str) -> dict[str, Mistake]:
    """Where the answer is reduced, the mistakes common to IoU and Dice; ``shared`` gives (numerator, denominator)."""
    return {
        "pooled_over_batch": Mistake(lambda p, t: _divide(*(np.sum(part) for part in shared(p, t))), (
            f"You return one {name} for the whole batch, pooling the pixels of every image before dividing. "
            f"Return one {name} per image, shape (batch,): sum over each image's pixels, axes (1, 2).")),
        "averaged_over_batch": Mistake(lambda p, t: np.mean(per_image(p, t)), (
            f"You return the average {name} of the batch. Return one {name} per image, shape (batch,); "
            "averaging is for whoever reports the results.")),
        "wrong_axes": Mistake(per_image, (
            "Your answer has the wrong shape: the masks are (batch, height, width), and each image's pixels are "
            "summed over axes (1, 2), which leaves one number per image, shape (batch,)."),
            matches=lambda got, want: got.ndim >= 1 and got.shape != want.shape),
    }


def _empty_rule(name: str) -> str:
    return (f"Right on every pair except two empty masks: there the denominator is 0, and 0 / 0 gives NaN (or a "
            f"guard gives 0). Two empty masks agree perfectly, so the kit's rule gives them {name} 1: return 1 "
            "where the denominator is 0, `jnp.where(denominator > 0, numerator / jnp.maximum(denominator, 1), 1.0)`.")


# ---------------------------------------------------------------------------------------------------------------
# Chapter 09


_IOU_CALL = "iou(pred, target)  # pred, target: (batch, height, width) bool masks -> (batch,)"


def _iou_parts(p, t):
    return _counts(p & t), _counts(p | t)


@checker(_IOU_CALL, {
    "sum_not_union": "divides the intersection by |A| + |B| instead of the union (counting the overlap twice)",
    "dice_not_iou": "computes the Dice coefficient 2|A n B| / (|A| + |B|) instead of IoU",
    "complement": "returns 1 - IoU, the distance, instead of IoU",
    "pixel_accuracy": "returns the fraction of pixels where the masks agree (pixel accuracy)",
    "over_target": "divides the intersection by the target's pixels (recall) instead of the union",
    "over_prediction": "divides the intersection by the prediction's pixels (precision) instead of the union",
    "pooled_over_batch": "pools the pixels of the whole batch: one IoU instead of one per image",
    "averaged_over_batch": "returns the mean IoU of the batch instead of one per image",
    "wrong_axes": "reduces over the wrong axes (the answer is not one number per image)",
    "empty_masks": "gives NaN (or 0) for two empty masks, which the kit's rule scores 1",
})
def check_iou(fn: Callable) -> Feedback:
    r"""Checks ``fn(pred, target) -> (batch,)``: the IoU of each pair of binary masks.

    .. math::

       \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|}, \qquad \text{1 for two empty masks},

    as :func:`vaekit.metrics.segmentation.iou`. Tried on batches of 1 to 4 pairs of 8x8 to 20x20
    ``bool`` masks (NumPy arrays), overlapping, identical, disjoint, and an empty prediction against
    an object; then on a batch with two empty masks.

    Args:
      fn: the learner's ``iou(pred, target)``.

    Returns:
      A :class:`Feedback`; ``check_iou.mistakes`` lists the mistakes it names.

    Example:
      >>> check_iou(seg.iou).passed
      True
    """
    cases, edge = _mask_cases(9)

    def area(parts):
        return lambda p, t: _divide(_counts(p & t), parts(p, t))

    return compare(
        fn, call=_IOU_CALL, arg_names=("pred", "target"), reference=seg.iou, cases=cases,
        mistakes={
            "sum_not_union": Mistake(area(lambda p, t: _counts(p) + _counts(t)), (
                "You divide the intersection by |A| + |B|, which counts the overlap twice: two identical masks "
                "then score 0.5. The union is |A| + |B| - |A n B|, the pixels in either mask (`pred | target`).")),
            "dice_not_iou": Mistake(lambda p, t: _divide(2 * _counts(p & t), _counts(p) + _counts(t)), (
                "That is the Dice coefficient, 2|A n B| / (|A| + |B|). IoU divides the intersection by the "
                "union: |A n B| / |A u B|. (The two are related: Dice = 2 IoU / (1 + IoU).)")),
            "complement": Mistake(lambda p, t: 1.0 - seg.iou(p, t), (
                "You return 1 - IoU, the distance between the masks (the d of the GED). IoU itself is 1 for "
                "identical masks and 0 for disjoint ones.")),
            "pixel_accuracy": Mistake(lambda p, t: (p == t).reshape(len(p), -1).mean(axis=1), (
                "You return the fraction of pixels where the masks agree: that is pixel accuracy, which counts the "
                "background both masks leave out as agreement. IoU looks only at the pixels in either mask.")),
            "over_target": Mistake(area(lambda p, t: _counts(t)), (
                "You divide the intersection by the target's pixels: that is recall, which a prediction covering "
                "the whole image maximises. Divide by the union, `pred | target`.")),
            "over_prediction": Mistake(area(lambda p, t: _counts(p)), (
                "You divide the intersection by the predicted pixels: that is precision, which a tiny prediction "
                "inside the object maximises. Divide by the union, `pred | target`.")),
            **_batch_mistakes(seg.iou, _iou_parts, "IoU"),
        },
        edges=(Edge(edge, "empty_masks", _empty_rule("IoU")),),
        passed="Your IoU matches |A n B| / |A u B| per image on batches of 1 to 4 pairs of masks (overlapping, "
               "identical, disjoint, an empty prediction), and scores two empty masks 1.")


_DICE_CALL = "dice(pred, target)  # pred, target: (batch, height, width) bool masks -> (batch,)"


def _dice_parts(p, t):
    return 2 * _counts(p & t), _counts(p) + _counts(t)


@checker(_DICE_CALL, {
    "missing_factor_two": "leaves out the factor 2 of the intersection",
    "iou_not_dice": "computes IoU, |A n B| / |A u B|, instead of Dice",
    "union_in_denominator": "divides 2|A n B| by the union instead of |A| + |B|",
    "complement": "returns 1 - Dice, the Dice loss, instead of Dice",
    "pooled_over_batch": "pools the pixels of the whole batch: one Dice instead of one per image",
    "averaged_over_batch": "returns the mean Dice of the batch instead of one per image",
    "wrong_axes": "reduces over the wrong axes (the answer is not one number per image)",
    "empty_masks": "gives NaN (or 0) for two empty masks, which the kit's rule scores 1",
})
def check_dice(fn: Callable) -> Feedback:
    r"""Checks ``fn(pred, target) -> (batch,)``: the Dice coefficient of each pair of binary masks.

    .. math::

       \mathrm{Dice}(A, B) = \frac{2\,|A \cap B|}{|A| + |B|}, \qquad \text{1 for two empty masks},

    as :func:`vaekit.metrics.segmentation.dice`. Tried on the same masks as :func:`check_iou`.

    Args:
      fn: the learner's ``dice(pred, target)``.

    Returns:
      A :class:`Feedback`; ``check_dice.mistakes`` lists the mistakes it names.

    Example:
      >>> check_dice(seg.dice).passed
      True
    """
    cases, edge = _mask_cases(10)
    return compare(
        fn, call=_DICE_CALL, arg_names=("pred", "target"), reference=seg.dice, cases=cases,
        mistakes={
            "missing_factor_two": Mistake(lambda p, t: _divide(_counts(p & t), _counts(p) + _counts(t)), (
                "Your Dice is half the answer: the factor 2 is missing. |A| + |B| counts the overlap twice, so "
                "the intersection is counted twice too, 2|A n B|, and identical masks score 1.")),
            "iou_not_dice": Mistake(seg.iou, (
                "That is IoU, |A n B| / |A u B|. Dice divides twice the intersection by the sum of the two "
                "masks' sizes: 2|A n B| / (|A| + |B|).")),
            "union_in_denominator": Mistake(lambda p, t: _divide(2 * _counts(p & t), _counts(p | t)), (
                "You divide 2|A n B| by the union, which can exceed 1 (identical masks score 2). The "
                "denominator of Dice is |A| + |B|, the two sizes added.")),
            "complement": Mistake(lambda p, t: 1.0 - seg.dice(p, t), (
                "You return 1 - Dice, the Dice loss that training minimises. The coefficient itself is 1 for "
                "identical masks.")),
            **_batch_mistakes(seg.dice, _dice_parts, "Dice"),
        },
        edges=(Edge(edge, "empty_masks", _empty_rule("Dice")),),
        passed="Your Dice matches 2|A n B| / (|A| + |B|) per image on batches of 1 to 4 pairs of masks "
               "(overlapping, identical, disjoint, an empty prediction), and scores two empty masks 1.")


# ---------------------------------------------------------------------------------------------------------------
# Chapter 10


_BOX_IOU_CALL = ("box_iou(boxes_a, boxes_b)  # (batch, 4) integer boxes (top, left, bottom, right), bottom and "
                 "right exclusive -> (batch,)")


def _sides(a, b, *, clamp=True, inclusive=False, enclosing=False):
    lower, upper = (np.minimum, np.maximum) if enclosing else (np.maximum, np.minimum)
    extra = 1 if inclusive else 0
    height = upper(a[:, 2], b[:, 2]) - lower(a[:, 0], b[:, 0]) + extra
    width = upper(a[:, 3], b[:, 3]) - lower(a[:, 1], b[:, 1]) + extra
    return (np.maximum(height, 0), np.maximum(width, 0)) if clamp else (height, width)


def _areas(boxes, *, inclusive=False):
    extra = 1 if inclusive else 0
    return (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)


def _box_ratio(shared, a, b, *, inclusive=False):
    return _divide(shared, _areas(a, inclusive=inclusive) + _areas(b, inclusive=inclusive) - shared)


def _as_corners(boxes):
    """Reads (top, left, height, width) boxes the way the learner did, as (top, left, bottom, right)."""
    top, left, height, width = boxes.T
    return np.stack([top, left, top + height, left + width], axis=1)


@checker(_BOX_IOU_CALL, {
    "no_clamp": "does not clamp the overlap's sides at 0 (boxes apart get a negative or positive overlap)",
    "clamped_product": "clamps the product of the sides instead of each side: two negative sides give a "
                       "positive overlap",
    "inclusive_corners": "treats bottom and right as inclusive (+1 on every side)",
    "sum_not_union": "divides the overlap by the sum of the areas instead of the union",
    "enclosing_box": "swaps min and max: the smallest box enclosing both instead of their overlap",
    "corners_as_sizes": "reads (bottom, right) as (height, width)",
    "averaged_over_batch": "returns the mean IoU of the batch instead of one per pair",
})
def check_box_iou(fn: Callable) -> Feedback:
    r"""Checks ``fn(boxes_a, boxes_b) -> (batch,)``: the IoU of each pair of boxes.

    .. math::

       |A \cap B| = \max\big(0, \min(b_A, b_B) - \max(t_A, t_B)\big)
                    \max\big(0, \min(r_A, r_B) - \max(l_A, l_B)\big), \qquad
       \mathrm{IoU} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|},

    boxes ``(top, left, bottom, right)`` with bottom and right exclusive, as
    :func:`vaekit.metrics.segmentation.box_iou`. Tried on integer boxes (NumPy arrays) that overlap,
    contain one another, are identical, share an edge, lie apart in one direction and apart in both, and
    on 20 random pairs.

    Args:
      fn: the learner's ``box_iou(boxes_a, boxes_b)``.

    Returns:
      A :class:`Feedback`; ``check_box_iou.mistakes`` lists the mistakes it names.

    Example:
      >>> check_box_iou(seg.box_iou).passed
      True
    """
    rng = np.random.default_rng(11)
    kinds_a = np.array([[0, 0, 4, 4], [0, 0, 8, 8], [2, 3, 7, 9], [0, 0, 3, 3], [0, 0, 3, 5], [0, 0, 2, 3],
                        [1, 1, 6, 4]])
    kinds_b = np.array([[2, 1, 6, 6], [2, 2, 5, 6], [2, 3, 7, 9], [3, 0, 6, 3], [5, 1, 8, 4], [4, 5, 7, 9],
                        [10, 2, 12, 3]])
    top_left = rng.integers(0, 20, size=(20, 2, 2))
    sizes = rng.integers(1, 12, size=(20, 2, 2))
    random_a, random_b = (np.concatenate([top_left[:, i], top_left[:, i] + sizes[:, i]], axis=1) for i in (0, 1))
    cases = [
        Case((kinds_a, kinds_b), "7 pairs: overlapping, one inside the other, identical, sharing an edge, apart in "
             "one direction, apart in both, apart in rows only", (0, 0)),
        Case((np.array([[3, 2, 9, 7]]), np.array([[5, 0, 8, 12]])), "a batch of 1 pair", (0, 0)),
        Case((random_a, random_b), "20 random pairs of boxes on a 30x30 canvas", (0, 0)),
    ]
    return compare(
        fn, call=_BOX_IOU_CALL, arg_names=("boxes_a", "boxes_b"), reference=seg.box_iou, cases=cases,
        mistakes={
            "no_clamp": Mistake(lambda a, b: _box_ratio(np.prod(_sides(a, b, clamp=False), axis=0), a, b), (
                "Boxes that do not overlap get a non-zero overlap: min(bottoms) - max(tops) is negative when the "
                "boxes lie apart vertically (and likewise for columns). Clamp each side at 0, "
                "max(0, min(bottoms) - max(tops)), before multiplying.")),
            "clamped_product": Mistake(
                lambda a, b: _box_ratio(np.maximum(np.prod(_sides(a, b, clamp=False), axis=0), 0), a, b), (
                    "You clamp the product of the sides at 0, not each side: for two boxes apart in both directions "
                    "both sides are negative and their product is positive, a false overlap. Clamp each side at 0, "
                    "then multiply.")),
            "inclusive_corners": Mistake(
                lambda a, b: _box_ratio(np.prod(_sides(a, b, inclusive=True), axis=0), a, b, inclusive=True), (
                    "You add 1 to every side, as for inclusive corners. Here bottom and right are exclusive (the "
                    "box (0, 0, 2, 2) is 2x2 pixels): the height is bottom - top, and boxes that share an edge do "
                    "not overlap.")),
            "sum_not_union": Mistake(
                lambda a, b: _divide(np.prod(_sides(a, b), axis=0), _areas(a) + _areas(b)), (
                    "You divide the overlap by the sum of the areas, which counts the overlap twice. The union is "
                    "area_a + area_b - overlap.")),
            "enclosing_box": Mistake(lambda a, b: _box_ratio(np.prod(_sides(a, b, enclosing=True), axis=0), a, b), (
                "Your 'overlap' is the smallest box enclosing both (max of the bottoms minus min of the tops). "
                "The overlap runs from the larger top to the smaller bottom: min(bottoms) - max(tops).")),
            "corners_as_sizes": Mistake(lambda a, b: seg.box_iou(_as_corners(a), _as_corners(b)), (
                "You read the boxes as (top, left, height, width). The kit's boxes are corners, (top, left, "
                "bottom, right): the height is bottom - top.")),
            "averaged_over_batch": Mistake(lambda a, b: np.mean(seg.box_iou(a, b)), (
                "You return the average IoU of the batch: return one IoU per pair of boxes, shape (batch,).")),
        },
        passed="Your box IoU matches the kit's on boxes that overlap, nest, coincide, share an edge or lie apart "
               "in one or both directions, and on 20 random pairs.")


# ---------------------------------------------------------------------------------------------------------------
# Chapter 11


_GED_CALL = ("ged(samples, annotations)  # samples: (n, height, width), annotations: (m, height, width) bool masks "
             "of one image -> a number")


def _distance_terms(samples, annotations):
    return (seg.pairwise_distances(samples, annotations), seg.pairwise_distances(samples, samples),
            seg.pairwise_distances(annotations, annotations))


def _off_diagonal_mean(distances):
    count = len(distances)
    return _divide(distances.sum(), count * (count - 1))


def _ged_variant(cross=2.0, samples_term=1.0, annotations_term=1.0):
    def ged(s, y):
        across, within_s, within_y = _distance_terms(s, y)
        return cross * across.mean() - samples_term * within_s.mean() - annotations_term * within_y.mean()

    return ged


def _u_statistics(s, y):
    """The GED with the diagonal left out of the sample term, the annotation term, or both."""
    across, within_s, within_y = _distance_terms(s, y)
    return np.array([2 * across.mean() - _off_diagonal_mean(within_s) - within_y.mean(),
                     2 * across.mean() - within_s.mean() - _off_diagonal_mean(within_y),
                     2 * across.mean() - _off_diagonal_mean(within_s) - _off_diagonal_mean(within_y)])


def _paired(s, y):
    across, within_s, within_y = _distance_terms(s, y)
    return 2 * np.diag(across).mean() - within_s.mean() - within_y.mean()


@checker(_GED_CALL, {
    "missing_factor_two": "counts the sample-annotation term once instead of twice",
    "missing_sample_term": "leaves out the term of distances between samples, E d(S, S')",
    "missing_annotation_term": "leaves out the term of distances between annotations, E d(Y, Y')",
    "iou_not_distance": "uses IoU where the distance is 1 - IoU (the answer comes out negated)",
    "u_statistic": "leaves the diagonal (a mask against itself) out of a within-set average: a U-statistic "
                   "instead of the kit's V-statistic",
    "paired_cross_term": "pairs sample i with annotation i only, instead of every sample with every annotation",
    "square_root": "returns the distance D instead of its square D^2_GED",
    "empty_masks": "gives NaN for two empty masks, whose distance is 0 by the kit's rule",
})
def check_ged(fn: Callable) -> Feedback:
    r"""Checks ``fn(samples, annotations) -> float``: the squared generalized energy distance of one image.

    .. math::

       D^2_{\mathrm{GED}} = \frac{2}{nm} \sum_{i,j} d(S_i, Y_j) - \frac{1}{n^2} \sum_{i,i'} d(S_i, S_{i'})
                          - \frac{1}{m^2} \sum_{j,j'} d(Y_j, Y_{j'}), \qquad d = 1 - \mathrm{IoU},

    every average over all pairs, a mask against itself included (the V-statistic, as Kohl et al. 2018
    compute it), and two empty masks at distance 0; that is
    :func:`vaekit.metrics.segmentation.generalized_energy_distance` with equal weights. Tried on 2 to 6
    samples against 2 to 5 annotations (``bool`` NumPy masks), then on sets that contain empty masks.

    Args:
      fn: the learner's ``ged(samples, annotations)``.

    Returns:
      A :class:`Feedback`; ``check_ged.mistakes`` lists the mistakes it names.

    Example:
      >>> check_ged(seg.generalized_energy_distance).passed
      True
    """
    rng = np.random.default_rng(12)
    overlapping = _blobs(rng, 5, 12, 12)
    cases = [
        Case((_blobs(rng, 6, 16, 16), _blobs(rng, 4, 16, 16)), "6 samples against 4 annotations of 16x16"),
        Case((_blobs(rng, 3, 8, 8), _blobs(rng, 2, 8, 8)), "3 samples against 2 annotations of 8x8"),
        Case((overlapping[:2], overlapping), "2 samples against 5 annotations of 12x12, the samples equal to the "
             "first two annotations"),
    ]
    with_empty_samples, with_empty_annotations = _blobs(rng, 4, 10, 10), _blobs(rng, 3, 10, 10)
    with_empty_samples[[0, 2]], with_empty_annotations[1] = False, False
    edge = Case((with_empty_samples, with_empty_annotations), "4 samples, two of them empty, against 3 annotations, "
                "one of them empty (an annotator who marks nothing)")
    return compare(
        fn, call=_GED_CALL, arg_names=("samples", "annotations"),
        reference=seg.generalized_energy_distance, cases=cases,
        mistakes={
            "missing_factor_two": Mistake(_ged_variant(cross=1.0), (
                "The term between samples and annotations counts twice: D^2 = 2 E d(S, Y) - E d(S, S') - "
                "E d(Y, Y'). With the factor 1 the GED of a perfect model is negative.")),
            "missing_sample_term": Mistake(_ged_variant(samples_term=0.0), (
                "The term E d(S, S') between the samples is missing. It is what rewards diverse samples: without "
                "it, a model that always predicts the same mask scores as well as one that covers every mode.")),
            "missing_annotation_term": Mistake(_ged_variant(annotations_term=0.0), (
                "The term E d(Y, Y') between the annotations is missing. It makes the GED 0 when the samples "
                "follow the annotations' distribution: subtract the average distance between annotations.")),
            "iou_not_distance": Mistake(lambda s, y: -seg.generalized_energy_distance(s, y), (
                "Your GED is the answer negated: you use IoU itself where the distance is d = 1 - IoU (or the "
                "signs of the terms are flipped). Identical masks are at distance 0.")),
            "u_statistic": Mistake(_u_statistics, (
                "You leave out the pairs of a mask with itself (i = i') when averaging distances within the "
                "samples or within the annotations: that is the U-statistic, an unbiased estimate of E d(S, S'). "
                "The kit, like Kohl et al. (2018), uses the V-statistic: the mean over all n^2 pairs, the "
                "diagonal (distance 0) included. Both are estimators; the published GED figures use the second."),
                matches=lambda got, variants: any(close(got, v) for v in variants)),
            "paired_cross_term": Mistake(_paired, (
                "Your first term pairs sample i with annotation i only. E d(S, Y) is over independent draws: "
                "average the distance of every sample to every annotation, n x m pairs.")),
            "square_root": Mistake(lambda s, y: np.sqrt(np.maximum(seg.generalized_energy_distance(s, y), 0.0)), (
                "You return the square root. Kohl et al. report D^2_GED itself, the combination of the three "
                "averages, without a root.")),
        },
        edges=(Edge(edge, "empty_masks", (
            "Right until some masks are empty: the IoU of two empty masks is 0 / 0. By the kit's rule two empty "
            "masks agree, IoU 1 and distance 0 (and an empty mask against a non-empty one is at distance 1); "
            "models sample empty masks whenever an annotator may mark nothing.")),),
        passed="Your GED matches 2 E d(S, Y) - E d(S, S') - E d(Y, Y') with d = 1 - IoU over all pairs (the "
               "V-statistic) for 2 to 6 samples and 2 to 5 annotations, with empty masks too.")


_CONDITIONAL_ELBO_CALL = ("conditional_negative_elbo(logits, masks, kl)  # logits: (batch, height, width, classes); "
                          "masks: (batch, height, width) int classes; kl: (batch,) -> (batch,)")


def _pixels(masks) -> int:
    return masks.shape[1] * masks.shape[2]


def _conditional_negative_elbo(logits, masks, kl):
    return _pixels(masks) * pixel_cross_entropy(logits, masks) + kl


def _segmentation_case(rng: np.random.Generator, batch: int, height: int, width: int, classes: int,
                       describe: str) -> Case:
    logits = f32(2.0 * rng.standard_normal((batch, height, width, classes)))
    masks = jnp.asarray(rng.integers(0, classes, size=(batch, height, width)), jnp.int32)
    return Case((logits, masks, f32(rng.uniform(0.5, 8.0, size=batch))), describe, (0, 0, 0))


@checker(_CONDITIONAL_ELBO_CALL, {
    "pixel_mean": "averages the cross-entropy over pixels while the KL is for the whole code (the collapsing loss)",
    "missing_kl": "leaves the KL out",
    "kl_scaled_by_pixels": "multiplies the KL by the pixel count too (the mean loss times H * W)",
    "wrong_sign": "returns the ELBO instead of its negative",
    "batch_mean": "returns one number for the batch (its mean or sum) instead of one loss per image",
    "unreduced_map": "returns the loss of every pixel instead of one number per image",
    "log_of_softmax": "takes log(softmax(logits)), which is -inf once a class's probability rounds to 0 "
                      "(logit gaps beyond ~100 in float32)",
})
def check_conditional_negative_elbo(fn: Callable) -> Feedback:
    r"""Checks ``fn(logits, masks, kl) -> (batch,)``: the negative conditional ELBO of a Probabilistic U-Net.

    .. math::

       -\mathrm{ELBO}(y \mid x) = -\sum_{\text{pixels}} \log \operatorname{softmax}(\ell)_{y}
                                 + \mathrm{KL}\big(q(z \mid x, y) \,\|\, p(z \mid x)\big),

    the cross-entropy SUMMED over the :math:`H \times W` pixels (:func:`vaekit.segmentation.pixel_cross_entropy`
    is its mean, so the reference is ``H * W * pixel_cross_entropy(logits, masks) + kl``). The debugging exercise
    of chapter 11: the broken loss keeps the mean over pixels, which weighs the KL :math:`HW` times more
    (:math:`\beta = 1024` on 32×32 masks), so the KL collapses to 0 and every sample is the same mask. Tried on
    batches of 1 to 3 masks of 6×10, 5×7 and 8×4 pixels with 2 and 11 classes, then at logits of ±120.

    Args:
      fn: the learner's ``conditional_negative_elbo(logits, masks, kl)``.

    Returns:
      A :class:`Feedback`; ``check_conditional_negative_elbo.mistakes`` lists the mistakes it names.

    Example:
      >>> check_conditional_negative_elbo(lambda logits, masks, kl: masks.shape[1] * masks.shape[2]
      ...                                 * pixel_cross_entropy(logits, masks) + kl).passed
      True
    """
    rng = np.random.default_rng(31)
    cases = [
        _segmentation_case(rng, 3, 6, 10, 2, "3 masks of 6x10 pixels with 2 classes"),
        _segmentation_case(rng, 1, 5, 7, 11, "a batch of 1 mask of 5x7 pixels with 11 classes"),
        _segmentation_case(rng, 2, 8, 4, 11, "2 masks of 8x4 pixels with 11 classes"),
    ]
    # The logits of class 0 and class 1 are (g, -g); some masks pick the class that the network rules out.
    gaps = np.array([[[120.0, -120.0, 30.0], [-30.0, 0.0, 120.0]], [[-120.0, 120.0, -30.0], [30.0, 0.0, -120.0]]])
    sure_masks = jnp.asarray([[[0, 0, 1], [1, 0, 1]], [[1, 0, 0], [1, 1, 1]]], jnp.int32)
    edge = Case((f32(np.stack([gaps, -gaps], axis=-1)), sure_masks, f32([1.5, 4.0])),
                "2 masks of 2x3 pixels with logits of ±30 and ±120, where the network is very sure (and sometimes "
                "wrong)", (0, 0, 0))

    def cross_entropy_sum(l, m):
        return _pixels(m) * pixel_cross_entropy(l, m)

    def per_pixel(l, m, k):
        return -jnp.sum(jax.nn.log_softmax(l, axis=-1) * jax.nn.one_hot(m, l.shape[-1]), axis=-1)

    return compare(
        fn, call=_CONDITIONAL_ELBO_CALL, arg_names=("logits", "masks", "kl"),
        reference=_conditional_negative_elbo, cases=cases,
        mistakes={
            "pixel_mean": Mistake(lambda l, m, k: pixel_cross_entropy(l, m) + k, (
                "This is the broken loss: the cross-entropy is averaged over the H x W pixels while the KL is that "
                "of the whole code. Against the negative ELBO that weighs the KL H * W times more (beta = 1,024 on "
                "32x32 masks), so training sets the posterior equal to the prior, the KL falls to ~0 and every "
                "sample decodes to the same mask. Sum the cross-entropy over the pixels (or multiply the mean by "
                "H * W, `masks.shape[1] * masks.shape[2]`).")),
            "missing_kl": Mistake(lambda l, m, k: cross_entropy_sum(l, m), (
                "Your loss has no KL term: the prior net then gets no training signal and the posterior net is "
                "free to encode the whole mask in z. Add `kl`, one number per image.")),
            "kl_scaled_by_pixels": Mistake(lambda l, m, k: _pixels(m) * (pixel_cross_entropy(l, m) + k), (
                "You multiply the KL by the pixel count too (the whole mean loss times H * W): that is the broken "
                "balance again, beta = H * W. Only the cross-entropy is summed over the pixels; the KL is already "
                "one number per image.")),
            "wrong_sign": Mistake(lambda l, m, k: -_conditional_negative_elbo(l, m, k), (
                "You return the ELBO itself. The loss to minimise is its negative: the cross-entropy (a positive "
                "number of nats) plus the KL.")),
            "batch_mean": Mistake(
                lambda l, m, k: np.array([np.mean(_conditional_negative_elbo(l, m, k)),
                                          np.sum(_conditional_negative_elbo(l, m, k))]), (
                    "You return one number for the whole batch. Return one loss per image, shape (batch,): sum "
                    "the cross-entropy over each image's pixels only; the training step averages over the batch."),
                matches=lambda got, variants: any(close(got, v) for v in variants)),
            "unreduced_map": Mistake(per_pixel, (
                "You return one number per pixel, shape (batch, height, width). Sum the cross-entropy over each "
                "image's pixels, axes (1, 2), and add the KL: one loss per image, shape (batch,)."),
                matches=lambda got, want: got.shape == want.shape),
        },
        edges=(Edge(edge, "log_of_softmax", (
            "Right on ordinary logits, wrong on very confident ones: softmax rounds a class's probability to 0 "
            "in float32 once its logit is ~100 below the largest, and log(0) = -inf makes the loss infinite or "
            "NaN. Use `jax.nn.log_softmax(logits, axis=-1)` (or `vk.segmentation.pixel_cross_entropy`), which "
            "computes log softmax as logits - logsumexp(logits) and stays finite.")),),
        passed="Your loss matches the cross-entropy summed over the H x W pixels plus the KL, per image, on batches "
               "of 1 to 3 masks of three shapes with 2 and 11 classes, and on logits up to ±120.")
