"""vaekit.classical: Otsu's threshold against an exhaustive search, and region growing that stops at an edge."""

import math

import numpy as np
import pytest

from vaekit import classical


def bimodal(seed: int, dark: float, bright: float, spread: float = 0.03, size: int = 32):
    """A grey image: a bright square on a dark background, each with Gaussian noise; and the square's mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), bool)
    mask[size // 4: size // 2 + 4, size // 3: 3 * size // 4] = True
    image = np.where(mask, bright, dark) + spread * rng.standard_normal((size, size))
    return np.clip(image, 0.0, 1.0)[..., None], mask


def between_class_variance(levels: np.ndarray, split: float) -> float:
    low, high = levels[levels < split], levels[levels >= split]
    if len(low) == 0 or len(high) == 0:
        return 0.0
    w0, w1 = len(low) / len(levels), len(high) / len(levels)
    return w0 * w1 * (low.mean() - high.mean()) ** 2


def test_luminance_weights_the_channels_as_bt601():
    grey = np.random.default_rng(0).uniform(size=(2, 4, 4, 1))
    np.testing.assert_array_equal(classical.luminance(grey), grey[..., 0])
    colour = np.zeros((1, 1, 3, 3))
    colour[0, 0] = np.eye(3)
    np.testing.assert_allclose(classical.luminance(colour), [[[0.299, 0.587, 0.114]]])


def test_otsu_splits_the_two_modes_of_a_bimodal_image():
    pairs = [bimodal(1, 0.2, 0.7), bimodal(2, 0.1, 0.4, spread=0.02), bimodal(3, 0.5, 0.9)]
    images = np.stack([image for image, _ in pairs])
    masks = np.stack([mask for _, mask in pairs])
    thresholds = classical.otsu_threshold(images)
    for t, (dark, bright, spread) in zip(thresholds, [(0.2, 0.7, 0.03), (0.1, 0.4, 0.02), (0.5, 0.9, 0.03)]):
        assert dark + 4 * spread < t < bright - 4 * spread
    np.testing.assert_array_equal(classical.threshold_segmentation(images), masks)


def test_otsu_finds_the_best_split_of_an_8_bit_image_by_exhaustive_search():
    # With values k / 255 each grey level has a bin of its own, so the histogram loses nothing.
    rng = np.random.default_rng(4)
    for seed in range(4):
        image, _ = bimodal(seed, rng.uniform(0.1, 0.4), rng.uniform(0.5, 0.9), spread=0.12)
        image = np.round(image * 255) / 255
        levels = image.ravel()
        candidates = np.unique(levels)[1:]
        best = max(candidates, key=lambda split: between_class_variance(levels, split))
        threshold = classical.otsu_threshold(image[None])[0]
        np.testing.assert_array_equal(levels >= threshold, levels >= best)


def test_otsu_thresholds_colour_images_on_their_luminance():
    image, mask = bimodal(5, 0.15, 0.75)
    tint = np.array([1.0, 0.8, 0.6])
    colour = image * tint    # a darker copy in every channel, luminance scaled by tint @ weights
    np.testing.assert_array_equal(classical.threshold_segmentation(colour[None])[0], mask)


def test_a_constant_image_has_no_split():
    flat = np.full((1, 8, 8, 1), 0.4)
    assert classical.otsu_threshold(flat)[0] == math.inf
    assert not classical.threshold_segmentation(flat).any()


def test_a_given_threshold_is_used_as_is_for_all_images_or_per_image():
    ramp = np.broadcast_to(np.linspace(0, 1, 11)[None, :, None, None], (2, 11, 3, 1))
    np.testing.assert_array_equal(classical.threshold_segmentation(ramp, threshold=0.5)[:, :, 0].sum(axis=1), [6, 6])
    per_image = classical.threshold_segmentation(ramp, threshold=np.array([0.25, 0.85]))
    np.testing.assert_array_equal(per_image[:, :, 0].sum(axis=1), [8, 2])


def test_region_growing_stops_at_a_contrast_edge():
    rng = np.random.default_rng(6)
    image = np.where(np.arange(20)[None, :] < 12, 0.3, 0.6) + 0.03 * rng.uniform(-1, 1, (20, 20))
    images = np.repeat(image[None, ..., None], 2, axis=0)
    seeds = np.array([[10, 3], [5, 15]])
    grown = classical.region_growing(images, seeds, tolerance=0.1)
    left = np.broadcast_to(np.arange(20)[None, :] < 12, (20, 20))
    np.testing.assert_array_equal(grown[0], left)
    np.testing.assert_array_equal(grown[1], ~left)
    # A tolerance above the contrast takes in everything.
    assert classical.region_growing(images, seeds, tolerance=0.5).all()


def test_region_growing_follows_connectivity_not_just_colour():
    image = np.zeros((1, 12, 12, 1))
    image[0, 2:5, 2:5] = image[0, 7:10, 7:10] = 0.9    # two bright squares, apart
    image[0, 5, 5] = 0.9                             # touches the first only diagonally
    grown = classical.region_growing(image, np.array([[3, 3]]), tolerance=0.1)[0]
    expected = np.zeros((12, 12), bool)
    expected[2:5, 2:5] = True
    np.testing.assert_array_equal(grown, expected)


def test_region_growing_separates_colours_of_equal_luminance_that_a_threshold_cannot():
    red = np.array([0.6, 0.2, 0.2])
    green_level = (red @ classical.LUMA_WEIGHTS - 0.2 * (0.299 + 0.114)) / 0.587
    green = np.array([0.2, green_level, 0.2])
    image = np.broadcast_to(red, (1, 10, 10, 3)).copy()
    image[0, :, 6:] = green
    np.testing.assert_allclose(classical.luminance(image), red @ classical.LUMA_WEIGHTS)
    assert classical.otsu_threshold(image)[0] == math.inf
    grown = classical.region_growing(image, np.array([[0, 0]]), tolerance=0.1)[0]
    np.testing.assert_array_equal(grown, np.broadcast_to(np.arange(10) < 6, (10, 10)))


def test_the_deepest_pixel_is_the_centre_of_a_square_and_lies_inside_any_shape():
    masks = np.zeros((3, 9, 9), bool)
    masks[0, 1:8, 1:8] = True  # a 7x7 square: its centre alone lies 4 pixels from the background
    masks[0, 1, 1] = False
    masks[1, 2, 1:8] = True    # an L: one row and one column, each 1 pixel deep
    masks[1, 2:8, 7] = True
    np.testing.assert_array_equal(classical.deepest_pixels(masks), [[4, 4], [2, 1], [0, 0]])  # empty: (0, 0)
    rows, columns = classical.deepest_pixels(masks[:2]).T
    assert masks[[0, 1], rows, columns].all()


def test_the_best_threshold_separates_bright_items_and_finds_the_side_of_dark_ones():
    pairs = [bimodal(seed, 0.2, 0.7) for seed in range(4)]
    images, masks = np.stack([image for image, _ in pairs]), np.stack([mask for _, mask in pairs])
    level, darker = classical.best_threshold(images, masks)
    assert 0.3 < level < 0.6 and not darker
    np.testing.assert_array_equal(classical.threshold_segmentation(images, threshold=level) != darker, masks)
    level, darker = classical.best_threshold(1.0 - images, masks)  # the same items, now darker than the background
    assert 0.3 < level < 0.6 and darker
    assert classical.best_threshold(1.0 - images, masks, thresholds="otsu") == (None, True)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: classical.otsu_threshold(np.zeros((4, 4, 1))), "images must be NHWC"),
    (lambda: classical.otsu_threshold(np.zeros((1, 4, 4, 2))), "images must be NHWC"),
    (lambda: classical.otsu_threshold(np.zeros((1, 4, 4, 1), np.uint8)), "images must be floating point"),
    (lambda: classical.otsu_threshold(np.full((1, 4, 4, 1), 255.0)), r"images must be in \[0, 1\]"),
    (lambda: classical.threshold_segmentation(np.zeros((2, 4, 4, 1)), threshold=[0.1, 0.2, 0.3]), "threshold must"),
    (lambda: classical.region_growing(np.zeros((2, 4, 4, 1)), np.array([[0, 0]]), tolerance=0.1), "seeds must be"),
    (lambda: classical.region_growing(np.zeros((1, 4, 4, 1)), np.array([[0, 4]]), tolerance=0.1), "inside"),
    (lambda: classical.region_growing(np.zeros((1, 4, 4, 1)), np.array([[0.0, 1.0]]), tolerance=0.1), "integers"),
    (lambda: classical.region_growing(np.zeros((1, 4, 4, 1)), np.array([[0, 0]]), tolerance=-0.1), "tolerance"),
    (lambda: classical.deepest_pixels(np.zeros((4, 4), bool)), "masks must be bool"),
    (lambda: classical.deepest_pixels(np.zeros((1, 4, 4))), "masks must be bool"),
    (lambda: classical.best_threshold(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4), bool), thresholds=[1.5]),
     r"thresholds must be levels in \[0, 1\]"),
    (lambda: classical.best_threshold(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4), bool), thresholds="median"),
     "thresholds must be"),
    (lambda: classical.best_threshold(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 5), bool)), "masks must be bool"),
])
def test_bad_input_gets_an_error_that_names_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()
