"""vaekit.detection: tight boxes, masks from boxes, and crops that paste back exactly at scale 1."""

import numpy as np
import pytest

from vaekit import detection
from vaekit.metrics import segmentation as seg


def painted_instances(seed: int, batch=5, size=24, max_items=3) -> np.ndarray:
    """Instance maps of overlapping random rectangles painted in turn (later ones hide earlier ones)."""
    rng = np.random.default_rng(seed)
    instances = np.zeros((batch, size, size), np.int32)
    for n in range(batch):
        for k in range(1, rng.integers(1, max_items + 1) + 1):
            top, left = rng.integers(0, size - 4, 2)
            bottom, right = top + rng.integers(3, 12), left + rng.integers(3, 12)
            instances[n, top:bottom, left:right] = k
    return instances


def test_boxes_enclose_exactly_the_pixels_of_each_instance():
    instances = painted_instances(0)
    instances[0, instances[0] == 1] = 0   # instance 1 of image 0 is now absent
    boxes, counts = detection.boxes_from_masks(instances, 3)
    assert boxes.shape == (5, 3, 4) and boxes.dtype == np.int32 and counts.shape == (5, 3)
    for n, k in np.ndindex(5, 3):
        pixels = np.argwhere(instances[n] == k + 1)
        assert counts[n, k] == len(pixels)
        if len(pixels) == 0:
            assert boxes[n, k].tolist() == [-1, -1, -1, -1]
            continue
        top, left, bottom, right = boxes[n, k]
        rows, columns = pixels[:, 0], pixels[:, 1]
        assert np.all((top <= rows) & (rows < bottom) & (left <= columns) & (columns < right))  # inside
        assert (rows.min(), columns.min(), rows.max() + 1, columns.max() + 1) == (top, left, bottom, right)  # tight
    assert counts[0, 0] == 0


def test_mask_from_boxes_is_the_union_of_the_boxes():
    boxes = np.array([[[0, 0, 2, 3], [1, 2, 4, 4], [-1, -1, -1, -1]], [[-1, -1, -1, -1]] * 3])
    expected = np.zeros((2, 5, 4), bool)
    expected[0, 0:2, 0:3] = True
    expected[0, 1:4, 2:4] = True
    np.testing.assert_array_equal(detection.mask_from_boxes(boxes, (5, 4)), expected)


def test_a_box_mask_covers_its_instance_and_its_area_is_the_box_area():
    instances = painted_instances(1)
    boxes, counts = detection.boxes_from_masks(instances, 3)
    assert np.all(detection.mask_from_boxes(boxes, 24)[instances > 0])
    for k in range(3):
        one = np.where(np.arange(3)[None, :, None] == k, boxes, -1)
        areas = detection.mask_from_boxes(one, 24).sum(axis=(1, 2))
        np.testing.assert_array_equal(areas, seg.box_area(boxes[:, k]))
        assert np.all(counts[:, k] <= areas)


def square_boxes(seed: int, batch: int, max_items: int, side: int, canvas: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, canvas - side + 1, size=(batch, max_items, 2))
    boxes = np.concatenate([corners, corners + side], axis=-1)
    boxes[0, -1] = -1   # one absent row
    return boxes


def test_crop_then_paste_is_exact_at_scale_1():
    rng = np.random.default_rng(2)
    boxes = square_boxes(3, batch=4, max_items=3, side=8, canvas=20)   # boxes may overlap
    masks = rng.uniform(size=(4, 20, 20)) < 0.5
    crops = detection.crop_and_resize(masks, boxes, 8)
    assert crops.shape == (11, 8, 8) and crops.dtype == bool
    pasted = detection.paste_masks(crops, boxes, 20)
    np.testing.assert_array_equal(pasted, masks & detection.mask_from_boxes(boxes, 20))
    # Probabilities too, where the boxes do not overlap: bit for bit.
    apart = np.array([[[0, 0, 8, 8], [10, 12, 18, 20]], [[5, 5, 13, 13], [-1, -1, -1, -1]]])
    probabilities = rng.uniform(size=(2, 20, 20)).astype(np.float32)
    pasted = detection.paste_masks(detection.crop_and_resize(probabilities, apart, 8), apart, 20)
    np.testing.assert_array_equal(pasted, np.where(detection.mask_from_boxes(apart, 20), probabilities, 0))


def test_a_crop_at_scale_1_is_the_box_s_pixels_in_order():
    images = np.random.default_rng(4).uniform(size=(3, 16, 16, 3))
    boxes = square_boxes(5, batch=3, max_items=2, side=6, canvas=16)
    crops = detection.crop_and_resize(images, boxes, 6)
    present = np.argwhere(np.any(boxes != -1, axis=-1))
    assert crops.shape == (len(present), 6, 6, 3)
    for crop, (n, k) in zip(crops, present):
        top, left, bottom, right = boxes[n, k]
        np.testing.assert_array_equal(crop, images[n, top:bottom, left:right])


def test_resampling_aligns_pixel_centres_and_reads_only_the_box():
    rows = np.arange(12.0)
    image = np.broadcast_to(rows[:, None, None], (12, 12, 1)).copy()
    image[:, :2] = image[:, 9:] = 1e6                  # outside the box's columns
    crop = detection.crop_and_resize(image[None], np.array([[[4, 2, 8, 9]]]), 8)[0, ..., 0]
    # Output row i reads row 4 + (i + 1/2) * 4/8 - 1/2 of the image, clamped to rows 4..7 of the box.
    expected = np.clip(4 + (np.arange(8) + 0.5) / 2 - 0.5, 4, 7)
    np.testing.assert_allclose(crop, np.broadcast_to(expected[:, None], (8, 8)), rtol=1e-12)


def test_a_mask_of_2x2_blocks_survives_the_round_trip_at_scale_2():
    blocks = np.random.default_rng(6).uniform(size=(1, 8, 8)) < 0.5
    mask = np.zeros((1, 20, 20), bool)
    mask[0, 2:18, 3:19] = np.kron(blocks[0], np.ones((2, 2), bool))
    boxes = np.array([[[2, 3, 18, 19]]])
    crops = detection.crop_and_resize(mask, boxes, 8)
    np.testing.assert_array_equal(crops, blocks)
    np.testing.assert_array_equal(detection.paste_masks(crops, boxes, 20), mask)


def test_overlapping_pastes_keep_the_larger_value():
    boxes = np.array([[[0, 0, 2, 2], [1, 1, 3, 3]]])
    crops = np.stack([np.full((2, 2), 0.2), np.full((2, 2), 0.7)])
    canvas = detection.paste_masks(crops, boxes, 3)[0]
    np.testing.assert_allclose(canvas, [[0.2, 0.2, 0.0], [0.2, 0.7, 0.7], [0.0, 0.7, 0.7]])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: detection.boxes_from_masks(np.zeros((4, 4), int), 2), "instances must be integer instance maps"),
    (lambda: detection.boxes_from_masks(np.full((1, 4, 4), 3), 2), "max_items = 2"),
    (lambda: detection.boxes_from_masks(np.zeros((1, 4, 4), int), 0), "max_items must be"),
    (lambda: detection.mask_from_boxes(np.array([[[0, 0, 5, 2]]]), 4), r"boxes\[0, 0\] is \[0, 0, 5, 2\]"),
    (lambda: detection.mask_from_boxes(np.array([[[2, 0, 2, 2]]]), 4), "top < bottom"),
    (lambda: detection.mask_from_boxes(np.array([[0, 0, 2, 2]]), 4), "boxes must be integers of shape"),
    (lambda: detection.mask_from_boxes(np.array([[[0, 0, 2, 2]]]), 0), "size must be"),
    (lambda: detection.crop_and_resize(np.zeros((2, 4, 4, 1)), np.array([[[0, 0, 2, 2]]]), 2), "one row of boxes"),
    (lambda: detection.crop_and_resize(np.zeros((1, 4, 4), int), np.array([[[0, 0, 2, 2]]]), 2), "floating point"),
    (lambda: detection.crop_and_resize(np.zeros((1, 4, 4)), np.array([[[0, 0, 2, 2]]]), 2.0), "size must be"),
    (lambda: detection.paste_masks(np.zeros((2, 2, 2)), np.array([[[0, 0, 2, 2]]]), 4), "one mask per present"),
    (lambda: detection.paste_masks(np.zeros((1, 2, 3)), np.array([[[0, 0, 2, 2]]]), 4), "square masks"),
    (lambda: detection.paste_masks(np.zeros((1, 2, 2)), np.array([[[0, 0, 2, 2]]]), (4,)), "canvas_size must be"),
])
def test_bad_input_gets_an_error_that_names_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()
