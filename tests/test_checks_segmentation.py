"""The checkers of chapters 09-11: right answers pass, each catalogued mistake is named, anything else wrong fails.

As in tests/test_exercises.py, every wrong function is written the way a learner would write it (here in
jax.numpy, as the chapters do), independently of the checker's own catalogue.
"""

import jax
import jax.numpy as jnp
import pytest
from checker_contract import contract_tests

from vaekit.exercises import GENERIC_MISTAKES
from vaekit.exercises import checks_segmentation as checks

PIXELS = (1, 2)


def sizes(masks):
    return jnp.sum(masks, axis=PIXELS)


def shared(p, t):
    return jnp.sum(p & t, axis=PIXELS)


def covered(p, t):
    return jnp.sum(p | t, axis=PIXELS)


def safe_ratio(numerator, denominator):
    """numerator / denominator, and 1 where the denominator is 0 (two empty masks)."""
    return jnp.where(denominator > 0, numerator / jnp.maximum(denominator, 1), 1.0)


def iou(p, t):
    return safe_ratio(shared(p, t), covered(p, t))


def dice(p, t):
    return safe_ratio(2 * shared(p, t), sizes(p) + sizes(t))


def area(boxes, extra=0):
    return (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)


def overlap_sides(a, b):
    return (jnp.minimum(a[:, 2], b[:, 2]) - jnp.maximum(a[:, 0], b[:, 0]),
            jnp.minimum(a[:, 3], b[:, 3]) - jnp.maximum(a[:, 1], b[:, 1]))


def box_iou(a, b):
    height, width = overlap_sides(a, b)
    inter = jnp.maximum(height, 0) * jnp.maximum(width, 0)
    return inter / (area(a) + area(b) - inter)


def box_iou_of(inter, a, b, extra=0):
    return inter / (area(a, extra) + area(b, extra) - inter)


def pairwise_iou(a, b, *, safe=True):
    inter = jnp.sum(a[:, None] & b[None], axis=(2, 3))
    union = jnp.sum(a[:, None] | b[None], axis=(2, 3))
    return safe_ratio(inter, union) if safe else inter / union


def d(a, b):
    return 1 - pairwise_iou(a, b)


def ged(s, y):
    return 2 * jnp.mean(d(s, y)) - jnp.mean(d(s, s)) - jnp.mean(d(y, y))


def mean_without_diagonal(distances):
    n = distances.shape[0]
    return jnp.sum(distances) / (n * (n - 1))


def ged_u(s, y, *, samples=True, annotations=True):
    within_s = mean_without_diagonal(d(s, s)) if samples else jnp.mean(d(s, s))
    within_y = mean_without_diagonal(d(y, y)) if annotations else jnp.mean(d(y, y))
    return 2 * jnp.mean(d(s, y)) - within_s - within_y


def cross_entropy_map(logits, masks):
    """-log softmax(logits) of each pixel's class, (batch, height, width)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, masks[..., None], axis=-1)[..., 0]


def conditional_negative_elbo(logits, masks, kl):
    return jnp.sum(cross_entropy_map(logits, masks), axis=PIXELS) + kl


EXERCISES = {
    "iou": (
        checks.check_iou,
        iou,
        {
            "sum_not_union": lambda p, t: shared(p, t) / (sizes(p) + sizes(t)),
            "dice_not_iou": lambda p, t: 2 * shared(p, t) / (sizes(p) + sizes(t)),
            "complement": lambda p, t: 1 - iou(p, t),
            "pixel_accuracy": lambda p, t: jnp.mean(p == t, axis=PIXELS),
            "over_target": lambda p, t: shared(p, t) / sizes(t),
            "over_prediction": lambda p, t: shared(p, t) / sizes(p),
            "pooled_over_batch": lambda p, t: jnp.sum(p & t) / jnp.sum(p | t),
            "averaged_over_batch": lambda p, t: jnp.mean(iou(p, t)),
            "wrong_axes": lambda p, t: jnp.sum(p & t, axis=-1) / jnp.sum(p | t, axis=-1),
            "empty_masks": lambda p, t: shared(p, t) / covered(p, t),
        },
        {
            "zeros": lambda p, t: jnp.zeros(p.shape[0]),
            "identity": lambda p, t: p,
            "batch reversed": lambda p, t: iou(p, t)[::-1],
        },
    ),
    "dice": (
        checks.check_dice,
        dice,
        {
            "missing_factor_two": lambda p, t: shared(p, t) / (sizes(p) + sizes(t)),
            "iou_not_dice": iou,
            "union_in_denominator": lambda p, t: 2 * shared(p, t) / covered(p, t),
            "complement": lambda p, t: 1 - dice(p, t),
            "pooled_over_batch": lambda p, t: 2 * jnp.sum(p & t) / (jnp.sum(p) + jnp.sum(t)),
            "averaged_over_batch": lambda p, t: jnp.mean(dice(p, t)),
            "wrong_axes": lambda p, t: 2 * jnp.sum(p & t, axis=0) / (jnp.sum(p, axis=0) + jnp.sum(t, axis=0)),
            "empty_masks": lambda p, t: 2.0 * shared(p, t) / (sizes(p) + sizes(t)),
        },
        {
            "zeros": lambda p, t: jnp.zeros(p.shape[0]),
            "identity": lambda p, t: t,
            "batch reversed": lambda p, t: dice(p, t)[::-1],
        },
    ),
    "box_iou": (
        checks.check_box_iou,
        box_iou,
        {
            "no_clamp": lambda a, b: box_iou_of(jnp.prod(jnp.stack(overlap_sides(a, b)), axis=0), a, b),
            "clamped_product": lambda a, b: box_iou_of(
                jnp.maximum(0, overlap_sides(a, b)[0] * overlap_sides(a, b)[1]), a, b),
            "inclusive_corners": lambda a, b: box_iou_of(
                jnp.maximum(overlap_sides(a, b)[0] + 1, 0) * jnp.maximum(overlap_sides(a, b)[1] + 1, 0), a, b, 1),
            "sum_not_union": lambda a, b: (jnp.maximum(overlap_sides(a, b)[0], 0)
                                           * jnp.maximum(overlap_sides(a, b)[1], 0)) / (area(a) + area(b)),
            "enclosing_box": lambda a, b: box_iou_of(
                (jnp.maximum(a[:, 2], b[:, 2]) - jnp.minimum(a[:, 0], b[:, 0]))
                * (jnp.maximum(a[:, 3], b[:, 3]) - jnp.minimum(a[:, 1], b[:, 1])), a, b),
            "corners_as_sizes": lambda a, b: box_iou(
                jnp.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1),
                jnp.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)),
            "averaged_over_batch": lambda a, b: jnp.mean(box_iou(a, b)),
        },
        {
            "zeros": lambda a, b: jnp.zeros(a.shape[0]),
            "identity": lambda a, b: a,
            "batch reversed": lambda a, b: box_iou(a, b)[::-1],
        },
    ),
    "ged": (
        checks.check_ged,
        ged,
        {
            "missing_factor_two": lambda s, y: jnp.mean(d(s, y)) - jnp.mean(d(s, s)) - jnp.mean(d(y, y)),
            "missing_sample_term": lambda s, y: 2 * jnp.mean(d(s, y)) - jnp.mean(d(y, y)),
            "missing_annotation_term": lambda s, y: 2 * jnp.mean(d(s, y)) - jnp.mean(d(s, s)),
            "iou_not_distance": lambda s, y: (2 * jnp.mean(pairwise_iou(s, y)) - jnp.mean(pairwise_iou(s, s))
                                              - jnp.mean(pairwise_iou(y, y))),
            "u_statistic": ged_u,
            "paired_cross_term": lambda s, y: (2 * jnp.mean(jnp.array([d(a[None], b[None])[0, 0]
                                                                       for a, b in zip(s, y)]))
                                               - jnp.mean(d(s, s)) - jnp.mean(d(y, y))),
            "square_root": lambda s, y: jnp.sqrt(ged(s, y)),
            "empty_masks": lambda s, y: (2 * jnp.mean(1 - pairwise_iou(s, y, safe=False))
                                         - jnp.mean(1 - pairwise_iou(s, s, safe=False))
                                         - jnp.mean(1 - pairwise_iou(y, y, safe=False))),
        },
        {
            "zero": lambda s, y: 0.0,
            "identity": lambda s, y: s,
            "cross term only": lambda s, y: jnp.mean(d(s, y)),
        },
    ),
    "conditional_negative_elbo": (
        checks.check_conditional_negative_elbo,
        conditional_negative_elbo,
        {
            "pixel_mean": lambda l, m, kl: jnp.mean(cross_entropy_map(l, m), axis=PIXELS) + kl,
            "missing_kl": lambda l, m, kl: jnp.sum(cross_entropy_map(l, m), axis=PIXELS),
            "kl_scaled_by_pixels": lambda l, m, kl: m.shape[1] * m.shape[2] * (
                jnp.mean(cross_entropy_map(l, m), axis=PIXELS) + kl),
            "wrong_sign": lambda l, m, kl: jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(l), m[..., None], -1),
                                                   axis=(1, 2, 3)) - kl,
            "batch_mean": lambda l, m, kl: jnp.mean(conditional_negative_elbo(l, m, kl)),
            "log_of_softmax": lambda l, m, kl: -jnp.sum(
                jnp.log(jax.nn.softmax(l, axis=-1)) * jax.nn.one_hot(m, l.shape[-1]), axis=(1, 2, 3)) + kl,
            "unreduced_map": lambda l, m, kl: cross_entropy_map(l, m) + kl[:, None, None],
        },
        {
            "zeros": lambda l, m, kl: jnp.zeros(m.shape[0]),
            "kl only": lambda l, m, kl: kl,
            "height squared for the pixel count": lambda l, m, kl: (
                m.shape[1] ** 2 * jnp.mean(cross_entropy_map(l, m), axis=PIXELS) + kl),
            "batch reversed": lambda l, m, kl: conditional_negative_elbo(l, m, kl)[::-1],
        },
    ),
}

globals().update(contract_tests(EXERCISES))


@pytest.mark.parametrize("name", EXERCISES)
def test_every_catalogued_mistake_has_a_test_and_an_id_of_its_own(name):
    check, _, wrong, _ = EXERCISES[name]
    assert set(wrong) == set(check.mistakes), "each mistake the checker names has a wrong function here"
    assert not set(check.mistakes) & (set(GENERIC_MISTAKES) - {"wrong_values"})


@pytest.mark.parametrize("where", [{"samples": False}, {"annotations": False}])
def test_the_diagonal_left_out_of_either_within_set_term_is_the_u_statistic(where):
    feedback = checks.check_ged(lambda s, y: ged_u(s, y, **where))
    assert feedback.mistake == "u_statistic"
    assert "U-statistic" in feedback.message and "V-statistic" in feedback.message


def test_the_ged_is_symmetric_so_swapped_arguments_pass():
    assert checks.check_ged(lambda s, y: ged(y, s)).passed


def test_the_empty_mask_rule_is_stated_where_it_fails():
    feedback = checks.check_iou(EXERCISES["iou"][2]["empty_masks"])
    assert "two empty masks" in feedback.message and "1" in feedback.message
    assert "entry 1" in feedback.message   # the pair of empty masks is shown


def test_a_summed_batch_is_named_like_an_averaged_one():
    feedback = checks.check_conditional_negative_elbo(lambda l, m, kl: jnp.sum(conditional_negative_elbo(l, m, kl)))
    assert feedback.mistake == "batch_mean"


def test_the_collapsing_loss_is_explained_with_its_beta():
    feedback = checks.check_conditional_negative_elbo(EXERCISES["conditional_negative_elbo"][2]["pixel_mean"])
    assert "broken loss" in feedback.message and "beta = 1,024" in feedback.message


def test_the_mean_times_the_pixel_count_passes():
    from vaekit.segmentation import pixel_cross_entropy

    feedback = checks.check_conditional_negative_elbo(
        lambda l, m, kl: m.shape[1] * m.shape[2] * pixel_cross_entropy(l, m) + kl)
    assert feedback.passed, feedback.message
