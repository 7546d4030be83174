"""vaekit.metrics.segmentation: known answers worked by hand, the empty-mask rule, and the GED's expectation."""

import itertools
import math

import numpy as np
import pytest
import scipy.ndimage

from vaekit.metrics import segmentation as seg


def blobs(seed: int, shape=(6, 16, 16), sigma=2.0) -> np.ndarray:
    """Random binary masks made of smooth blobs, each covering about 60 % of its image."""
    field = scipy.ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma=(0, sigma, sigma))
    return field > -0.25 * field.std()


def square(size=16, top=4, left=4, side=6) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


EMPTY = np.zeros((1, 8, 8), bool)


# IoU, Dice, pixel accuracy


def test_identical_masks_score_1_and_disjoint_masks_0():
    a = blobs(0)
    np.testing.assert_array_equal(seg.iou(a, a), np.ones(len(a)))
    np.testing.assert_array_equal(seg.dice(a, a), np.ones(len(a)))
    left, right = np.zeros((1, 8, 8), bool), np.zeros((1, 8, 8), bool)
    left[0, :, :3], right[0, :, 5:] = True, True
    assert seg.iou(left, right)[0] == 0.0 and seg.dice(left, right)[0] == 0.0


def test_iou_and_dice_of_a_pair_worked_by_hand():
    a, b = square(8, 0, 0, 4)[None], square(8, 2, 2, 4)[None]   # 16 pixels each, sharing a 2x2 square
    np.testing.assert_allclose(seg.iou(a, b), [4 / (16 + 16 - 4)])
    np.testing.assert_allclose(seg.dice(a, b), [2 * 4 / (16 + 16)])


def test_the_empty_mask_rule():
    full = np.ones((1, 8, 8), bool)
    assert seg.iou(EMPTY, EMPTY)[0] == 1.0 and seg.dice(EMPTY, EMPTY)[0] == 1.0
    assert seg.iou(EMPTY, full)[0] == 0.0 and seg.dice(full, EMPTY)[0] == 0.0
    assert seg.iou(EMPTY, EMPTY, empty=0.0)[0] == 0.0  # the rule is a stated choice, and can be changed
    assert seg.pairwise_distances(EMPTY, EMPTY)[0, 0] == 0.0
    assert seg.pairwise_distances(EMPTY, full)[0, 0] == 1.0


def test_dice_is_a_function_of_iou():
    a, b = blobs(1), blobs(2)
    jaccard = seg.iou(a, b)
    assert np.all((jaccard > 0.05) & (jaccard < 0.95)), "the pairs overlap partly"
    np.testing.assert_allclose(seg.dice(a, b), 2 * jaccard / (1 + jaccard), rtol=1e-12)


def test_iou_is_per_image_not_pooled_over_the_batch():
    a, b = blobs(3), blobs(4)
    for k in range(len(a)):
        np.testing.assert_allclose(seg.iou(a, b)[k], np.sum(a[k] & b[k]) / np.sum(a[k] | b[k]), rtol=1e-12)


def test_masks_may_be_0_1_numbers():
    a, b = blobs(5), blobs(6)
    np.testing.assert_array_equal(seg.iou(a.astype(np.int32), b.astype(np.float32)), seg.iou(a, b))


def test_pixel_accuracy_worked_by_hand():
    target = np.zeros((2, 10, 10), np.int32)
    target[:, :3, :3] = 4
    pred = target.copy()
    pred[0] = 0               # background everywhere: 91 of 100 right
    pred[1, 9, :5] = 2        # 5 wrong pixels
    np.testing.assert_allclose(seg.pixel_accuracy(pred, target), [0.91, 0.95])
    np.testing.assert_allclose(seg.pixel_accuracy(pred.astype(np.float32), target), [0.91, 0.95])  # whole numbers


# Class maps over the whole set


def test_confusion_matrix_and_mean_iou_worked_by_hand():
    target = np.array([[[0, 0, 1], [0, 1, 1], [2, 2, 2]]])
    pred = np.array([[[0, 1, 1], [0, 1, 1], [2, 2, 0]]])
    matrix = seg.confusion_matrix(pred, target, 3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 3, 0], [1, 0, 2]])  # rows: the true class
    np.testing.assert_allclose(seg.per_class_iou(pred, target, 3), [2 / 4, 3 / 4, 2 / 3])
    assert seg.mean_iou(pred, target, 3) == pytest.approx((2 / 4 + 3 / 4 + 2 / 3) / 3, rel=1e-12)


def test_a_class_absent_from_both_is_nan_and_left_out_of_the_mean():
    target = np.array([[[0, 0, 1]]])
    pred = np.array([[[0, 1, 1]]])
    per_class = seg.per_class_iou(pred, target, 5)
    np.testing.assert_allclose(per_class[:2], [0.5, 0.5])
    assert np.all(np.isnan(per_class[2:]))
    assert seg.mean_iou(pred, target, 5) == 0.5


def test_per_class_iou_pools_the_pixels_of_the_set_before_dividing():
    # Image 0: class 1 right on 1 pixel of 1; image 1: class 1 right on 1 of 9 predicted pixels.
    target = np.zeros((2, 3, 3), np.int32)
    target[:, 0, 0] = 1
    pred = target.copy()
    pred[1] = 1
    pooled = seg.per_class_iou(pred, target, 2)[1]
    assert pooled == pytest.approx(2 / 10)
    per_image_mean = (1.0 + 1 / 9) / 2
    assert abs(pooled - per_image_mean) > 0.3


def test_two_class_mean_iou_of_binary_masks_includes_the_background():
    a, b = blobs(7), blobs(8)
    background = np.sum(~a & ~b) / np.sum(~a | ~b)
    foreground = np.sum(a & b) / np.sum(a | b)
    assert seg.mean_iou(a, b, 2) == pytest.approx((background + foreground) / 2, rel=1e-12)


# Boundaries


def reference_boundary_f(pred_edge, target_edge, tolerance):
    """The same score from Euclidean distance transforms, one image at a time (an independent route)."""
    scores = []
    for p, t in zip(pred_edge, target_edge):
        to_target = scipy.ndimage.distance_transform_edt(~t)
        to_pred = scipy.ndimage.distance_transform_edt(~p)
        precision = np.mean(to_target[p] <= tolerance)
        recall = np.mean(to_pred[t] <= tolerance)
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return np.array(scores)


def test_boundaries_are_the_pixels_with_a_neighbour_outside_but_not_the_image_edge():
    mask = np.zeros((1, 6, 6), bool)
    mask[0, :3, :4] = True     # touches the top and left edges of the image
    expected = np.zeros((6, 6), bool)
    expected[2, :4] = True     # the bottom row of the mask
    expected[:3, 3] = True     # its right column
    np.testing.assert_array_equal(seg.boundaries(mask)[0], expected)
    assert not seg.boundaries(np.ones((1, 5, 5), bool)).any()


def test_boundary_f_is_1_for_identical_masks_and_falls_once_the_shift_passes_the_tolerance():
    base = square(24, 8, 6, 8)
    scores = [seg.boundary_f_score(base[None], np.roll(base, shift, axis=1)[None], tolerance=2)[0]
              for shift in range(8)]
    assert scores[0] == scores[1] == scores[2] == 1.0
    assert scores[3] < 1.0
    assert all(later <= earlier for earlier, later in zip(scores, scores[1:]))
    assert scores[7] < 0.5


def test_boundary_f_agrees_with_distance_transforms():
    pred, target = blobs(9, sigma=1.5), blobs(10, sigma=1.5)
    for tolerance in (0, 1, 2, 3.5):
        np.testing.assert_allclose(
            seg.boundary_f_score(pred, target, tolerance=tolerance),
            reference_boundary_f(seg.boundaries(pred), seg.boundaries(target), tolerance), rtol=1e-12)


def test_boundary_f_empty_rule():
    full = np.ones((1, 8, 8), bool)   # fills the image: no outline either
    assert seg.boundary_f_score(EMPTY, EMPTY)[0] == 1.0
    assert seg.boundary_f_score(EMPTY, full)[0] == 1.0
    assert seg.boundary_f_score(EMPTY, square(8, 2, 2, 3)[None])[0] == 0.0


# Boxes


def test_box_iou_worked_by_hand():
    a = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 4]])
    b = np.array([[2, 2, 6, 6], [1, 1, 3, 3], [2, 0, 4, 2], [5, 5, 7, 7], [0, 0, 4, 4]])
    # overlap 2x2 of 16 + 16 - 4; contained 4 of 16; sharing an edge (exclusive corners): 0;
    # apart in both directions (two negative sides, clamped): 0; identical: 1.
    np.testing.assert_allclose(seg.box_iou(a, b), [4 / 28, 4 / 16, 0.0, 0.0, 1.0])


def test_box_iou_broadcasts_to_every_pair():
    a = np.array([[0, 0, 4, 4], [1, 1, 3, 3], [5, 5, 7, 8]])
    b = np.array([[0, 0, 4, 4], [2, 2, 6, 6]])
    pairs = seg.box_iou(a[:, None], b[None])
    assert pairs.shape == (3, 2)
    for i, j in itertools.product(range(3), range(2)):
        assert pairs[i, j] == seg.box_iou(a[i], b[j])


def test_box_iou_equals_the_iou_of_the_boxes_drawn_as_masks():
    rng = np.random.default_rng(11)
    corners = np.sort(rng.integers(0, 20, size=(50, 2, 2)), axis=1)   # (top, bottom), (left, right) sorted
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0] + 1, corners[:, 1, 1] + 1], axis=-1)
    rows, cols = np.arange(21)[None, :, None], np.arange(21)[None, None, :]

    def drawn(bx):
        return ((rows >= bx[:, 0, None, None]) & (rows < bx[:, 2, None, None])
                & (cols >= bx[:, 1, None, None]) & (cols < bx[:, 3, None, None]))

    np.testing.assert_allclose(seg.box_iou(boxes[:25], boxes[25:]), seg.iou(drawn(boxes[:25]), drawn(boxes[25:])))


def test_absent_boxes_follow_the_empty_rule():
    absent = np.full(4, -1)
    assert seg.box_iou(absent, absent) == 1.0
    assert seg.box_iou(absent, np.array([0, 0, 2, 2])) == 0.0
    np.testing.assert_array_equal(seg.box_area(np.array([[0, 0, 2, 3], [-1, -1, -1, -1]])), [6.0, 0.0])


# GED and friends


def modes_of_an_ambiguous_image():
    """Three plausible masks: nothing marked, a small object, a larger one (the small one's outline varied)."""
    modes = np.zeros((3, 10, 10), bool)
    modes[1, 3:7, 3:7] = True
    modes[2, 2:8, 2:8] = True
    return modes, np.array([0.5, 0.3, 0.2])


def test_pairwise_distances_worked_by_hand():
    modes, _ = modes_of_an_ambiguous_image()
    np.testing.assert_allclose(seg.pairwise_distances(modes, modes),
                               [[0, 1, 1], [1, 0, 1 - 16 / 36], [1, 1 - 16 / 36, 0]])


def test_ged_of_a_single_deterministic_mode_against_itself_is_0():
    mode = square(12, 3, 3, 5)[None]
    assert seg.generalized_energy_distance(np.repeat(mode, 7, axis=0), mode) == 0.0
    assert seg.ged_optimum(mode, np.array([1.0]), 7) == 0.0


def test_ged_optimum_is_the_exact_expectation_over_every_draw_of_samples():
    modes, probabilities = modes_of_an_ambiguous_image()
    for n in (1, 2, 3):
        expectation = 0.0
        for draw in itertools.product(range(3), repeat=n):
            chance = np.prod(probabilities[list(draw)])
            expectation += chance * seg.generalized_energy_distance(modes[list(draw)], modes, weights=probabilities)
        assert expectation == pytest.approx(seg.ged_optimum(modes, probabilities, n), rel=1e-12)


def test_ged_of_samples_from_the_true_distribution_matches_the_optimum_within_sampling_error():
    modes, probabilities = modes_of_an_ambiguous_image()
    rng = np.random.default_rng(12)
    num_samples, draws = 8, 2000
    geds = np.array([seg.generalized_energy_distance(modes[rng.choice(3, num_samples, p=probabilities)], modes,
                                                     weights=probabilities) for _ in range(draws)])
    optimum = seg.ged_optimum(modes, probabilities, num_samples)
    standard_error = geds.std(ddof=1) / math.sqrt(draws)
    # 4 standard errors: a correct estimator fails this about once in 16,000 seeds; the seed is fixed.
    assert abs(geds.mean() - optimum) < 4 * standard_error
    assert standard_error < 0.05 * optimum, "the tolerance is tight enough to mean something"


def test_a_deterministic_predictor_scores_worse_than_the_true_distribution_on_an_ambiguous_image():
    modes, probabilities = modes_of_an_ambiguous_image()
    likeliest = np.repeat(modes[:1], 16, axis=0)    # always the most probable answer
    deterministic = seg.generalized_energy_distance(likeliest, modes, weights=probabilities)
    optimum = seg.ged_optimum(modes, probabilities, 16)
    assert deterministic > 10 * optimum
    # By hand: the empty mask is at distance 1 from either object, so 2 E d(S, Y) = 2 (0.3 + 0.2); E d(S, S') = 0.
    d = seg.pairwise_distances(modes, modes)
    assert deterministic == pytest.approx(2 * 0.5 - probabilities @ d @ probabilities, rel=1e-12)


def test_ged_with_uniform_weights_is_the_annotators_average():
    samples, annotations = blobs(13, (5, 12, 12)), blobs(14, (3, 12, 12))
    d_sy = seg.pairwise_distances(samples, annotations)
    d_ss = seg.pairwise_distances(samples, samples)
    d_yy = seg.pairwise_distances(annotations, annotations)
    expected = 2 * d_sy.mean() - d_ss.mean() - d_yy.mean()
    assert seg.generalized_energy_distance(samples, annotations) == pytest.approx(expected, rel=1e-12)
    assert expected > 0


def test_sample_diversity():
    masks = blobs(15, (4, 12, 12))
    assert seg.sample_diversity(np.repeat(masks[:1], 5, axis=0)) == 0.0
    d = seg.pairwise_distances(masks, masks)
    assert seg.sample_diversity(masks) == pytest.approx(d[~np.eye(4, dtype=bool)].mean(), rel=1e-12)


def test_hungarian_iou_is_1_for_a_permutation_and_matches_by_hand_across_sizes():
    annotations = blobs(16, (5, 12, 12))
    assert seg.hungarian_iou(annotations[[3, 0, 4, 1, 2]], annotations) == 1.0
    a, b, c = square(8, 0, 0, 4), square(8, 4, 4, 4), square(8, 4, 4, 2)   # iou(b, c) = 4 / 16
    samples = np.stack([a, b])
    # 2 samples and 4 annotations: each sample is matched twice; a-a, a-a, b-b, b-c is the best.
    assert seg.hungarian_iou(samples, np.stack([a, a, b, c])) == pytest.approx((3 + 4 / 16) / 4)


def test_isolated_components_counts_enclosed_misses_only():
    target = np.zeros((3, 9, 9), bool)
    target[:, 1:8, 1:8] = True
    pred = target.copy()
    pred[0, 2, 2] = False               # a dot
    pred[0, 4:6, 4] = False             # a 2-pixel dot
    pred[0, 2, 5] = pred[0, 3, 6] = False   # diagonal neighbours: two 4-connected components
    pred[1, 1, 3:5] = False             # a notch open to the true background: not a dot
    pred[1, 3, 3] = False               # one dot
    pred[2, 4, 4] = False
    target[2, 4, 4] = False             # a real hole, predicted as one: no error at all
    np.testing.assert_array_equal(seg.isolated_components(pred, target), [4, 1, 0])
    edge = np.ones((1, 5, 5), bool)
    cut = edge.copy()
    cut[0, 0, 2] = False                # a miss at the image's edge is not enclosed
    np.testing.assert_array_equal(seg.isolated_components(cut, edge), [0])


# Errors name the parameter


@pytest.mark.parametrize(("call", "message"), [
    (lambda: seg.iou(np.ones((2, 4, 4), bool), np.ones((2, 4, 5), bool)), "pred and target must have the same shape"),
    (lambda: seg.iou(np.ones((4, 4), bool), np.ones((4, 4), bool)), "pred must be binary masks of shape"),
    (lambda: seg.dice(np.full((1, 4, 4), 2), np.ones((1, 4, 4), bool)), "pred must be binary"),
    (lambda: seg.iou(np.ones((1, 4, 4)), np.full((1, 4, 4), 0.5)), "target must be binary"),
    (lambda: seg.iou(np.ones((1, 4, 4)), np.ones((1, 4, 4)), empty=2.0), "empty must be a number in"),
    (lambda: seg.confusion_matrix(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int), 1), "num_classes must be"),
    (lambda: seg.mean_iou(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int), 2.5), "num_classes must be"),
    (lambda: seg.mean_iou(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int), True), "num_classes must be"),
    (lambda: seg.mean_iou(np.full((1, 2, 2), 3), np.zeros((1, 2, 2), int), 3), "pred must hold classes 0 to"),
    (lambda: seg.per_class_iou(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 0.3), 3), "target must hold integer"),
    (lambda: seg.pixel_accuracy(np.zeros((1, 2, 2), int), np.zeros((1, 2, 3), int)), "same shape"),
    (lambda: seg.boundary_f_score(EMPTY, EMPTY, tolerance=-1), "tolerance must be"),
    (lambda: seg.box_iou(np.zeros(3), np.zeros(4)), "boxes_a must be boxes of shape"),
    (lambda: seg.box_iou(np.zeros(4), np.array([3, 0, 1, 2])), "boxes_b must have top <= bottom"),
    (lambda: seg.box_iou(np.zeros((2, 4)), np.zeros((3, 4))), "must broadcast"),
    (lambda: seg.pairwise_distances(EMPTY, np.zeros((1, 8, 9), bool)), "same height and width"),
    (lambda: seg.generalized_energy_distance(EMPTY, EMPTY, weights=[0.5, 0.5]), "weights must have shape"),
    (lambda: seg.generalized_energy_distance(EMPTY, np.repeat(EMPTY, 2, 0), weights=[0.5, 0.6]), "summing to 1"),
    (lambda: seg.generalized_energy_distance(EMPTY[:0], EMPTY), "samples must hold at least one"),
    (lambda: seg.ged_optimum(EMPTY, [1.0], 0), "num_samples must be"),
    (lambda: seg.sample_diversity(EMPTY), "samples must hold at least 2"),
    (lambda: seg.hungarian_iou(EMPTY, np.zeros((1, 8, 8), np.int8) + 3), "annotations must be binary"),
    (lambda: seg.hungarian_iou(np.zeros((31, 2, 2)), np.zeros((37, 2, 2))), "least common multiple of 1147"),
    (lambda: seg.generalized_energy_distance(EMPTY, np.zeros((2, 8, 7))), "samples and annotations must be masks"),
    (lambda: seg.ged_optimum(np.repeat(EMPTY, 2, 0), [0.5, 0.4], 4), "probabilities must be probabilities"),
    (lambda: seg.pixel_accuracy(np.full((1, 2, 2), 0.5), np.zeros((1, 2, 2), int)), "pred must hold integer"),
])
def test_bad_input_gets_an_error_that_names_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()
