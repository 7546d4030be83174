"""Chapter 10's claims on small data: what a box says about a mask, crops, baselines, and what accuracy hides."""

import numpy as np
import pytest
import scipy.ndimage

import vaekit as vk
from vaekit import classical, detection, scenes
from vaekit.metrics import segmentation as seg


@pytest.fixture(scope="module")
def test_scenes():
    return scenes.segmentation_scenes(120, "test", seed=1, size=32)


def test_boxes_from_the_instance_maps_are_the_scenes_boxes(test_scenes):
    boxes, pixels = detection.boxes_from_masks(test_scenes.instances, test_scenes.boxes.shape[1])
    np.testing.assert_array_equal(boxes, test_scenes.boxes)
    assert np.all((pixels > 0) == (test_scenes.boxes[..., 0] >= 0))


def test_a_filled_box_scores_its_fill_ratio_as_a_mask_and_a_perfect_box_can_carry_a_poor_mask(test_scenes):
    boxes, pixels = detection.boxes_from_masks(test_scenes.instances, 3)
    present = boxes[..., 0] >= 0
    items = (test_scenes.instances[:, None] == np.arange(1, 4)[:, None, None])[present]
    filled = detection.mask_from_boxes(boxes.reshape(-1, 1, 4), 32)[present.ravel()]
    fill = pixels[present] / seg.box_area(boxes)[present]
    np.testing.assert_allclose(seg.iou(filled, items), fill)        # the item lies inside its box
    assert np.all(seg.box_iou(boxes[present], boxes[present]) == 1.0)
    assert 0.3 < fill.mean() < 0.65                                 # about half of each box is the item
    assert np.mean(fill < 0.5) > 0.25                               # box IoU 1, mask IoU below 0.5


def test_crop_then_paste_of_a_perfect_crop_mask_loses_little(test_scenes):
    # The pipeline's geometry alone: the true foreground cropped to 32x32 per box and pasted back.
    crops = detection.crop_and_resize(test_scenes.foreground, test_scenes.boxes, 32)
    pasted = detection.paste_masks(crops, test_scenes.boxes, 32)
    assert np.mean(seg.iou(pasted, test_scenes.foreground)) > 0.95


def test_a_threshold_segments_plain_scenes_but_not_textured_ones():
    plain = scenes.segmentation_scenes(60, "test", seed=3, size=32, background="black")
    textured = scenes.segmentation_scenes(60, "test", seed=3, size=32)
    anything_lit = classical.threshold_segmentation(plain.images, threshold=1e-6)   # the background is exactly 0
    assert np.mean(seg.iou(anything_lit, plain.foreground)) == 1.0
    for side in (False, True):      # either polarity of Otsu's split
        otsu = classical.threshold_segmentation(textured.images) != side
        assert np.mean(seg.iou(otsu, textured.foreground)) < 0.7


def test_the_position_prior_is_a_strong_baseline_on_small_canvases(test_scenes):
    train = scenes.segmentation_scenes(300, "train", seed=0, size=32)
    prior = train.foreground.mean(axis=0) >= 0.4
    at_32 = np.mean(seg.iou(np.broadcast_to(prior, test_scenes.foreground.shape), test_scenes.foreground))
    assert at_32 > 0.6


def test_touching_items_merge_into_one_component(test_scenes):
    components = [scipy.ndimage.label(mask)[1] for mask in test_scenes.foreground]
    items = (test_scenes.boxes[..., 0] >= 0).sum(axis=1)
    # An item's visible pixels can also fall apart (straps, occlusion), but merging wins by far.
    assert np.mean(components) < 0.75 * np.mean(items)
    assert np.mean(np.array(components) < items) > 0.4


def test_pixel_accuracy_of_an_empty_mask_grows_with_the_canvas_while_its_iou_stays_zero():
    accuracies = []
    for size in (32, 64, 128):
        canvas = scenes.segmentation_scenes(20, "test", seed=2, size=size)
        nothing = np.zeros_like(canvas.foreground)
        accuracy = seg.pixel_accuracy(nothing, canvas.foreground)
        np.testing.assert_allclose(accuracy, 1 - canvas.foreground.mean(axis=(1, 2)))
        assert np.all(seg.iou(nothing, canvas.foreground) == 0.0)
        accuracies.append(accuracy.mean())
    assert accuracies[0] < accuracies[1] < accuracies[2] and accuracies[2] > 0.9


def test_the_article_accuracy_of_a_perfect_reconstruction_counts_saturated_pixels(test_scenes):
    images = test_scenes.images
    article_accuracy = np.mean((images > 0.5) == images)   # 000 §4.2: a bool mask against float pixels
    assert article_accuracy == pytest.approx(np.mean((images == 0) | (images == 1)))
    assert article_accuracy < 0.05


def test_a_softmax_over_pixels_cannot_go_below_the_mean_error_floor():
    rng = np.random.default_rng(0)
    n = 64
    target = rng.random((5, n))
    floor = ((1 - target.sum(axis=1)) / n) ** 2
    for _ in range(20):
        logits = rng.normal(scale=rng.uniform(0.1, 10), size=(5, n))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        assert np.all(np.mean((p - target) ** 2, axis=1) >= floor - 1e-12)
    # The floor is reached where the target shifted by the mean error is itself a distribution.
    small = rng.random((3, n)) / n + 0.5 / n
    shifted = small + (1 - small.sum(axis=1, keepdims=True)) / n
    assert np.all(shifted > 0) and np.allclose(shifted.sum(axis=1), 1)
    np.testing.assert_allclose(np.mean((shifted - small) ** 2, axis=1), ((1 - small.sum(axis=1)) / n) ** 2)


def test_a_vae_of_masks_cleans_a_mask_with_a_fifth_of_its_pixels_flipped():
    masks = vk.load("fashion-mnist", "train").images[:3000, ..., 0] > scenes.ITEM_THRESHOLD
    boxes, _ = detection.boxes_from_masks(masks.astype(np.int32), 1)
    frames = detection.crop_and_resize(masks, boxes, 32)
    prior = vk.make_vae(vk.VAEConfig(latent_dim=16, image_shape=(32, 32, 1)), seed=0)
    vk.fit(prior, (frames[:2500].astype(np.float32)[..., None],), None, vk.TrainConfig(epochs=4, batch_size=100),
           progress=False)
    clean = frames[2500:]
    noisy = clean ^ (np.random.default_rng(0).random(clean.shape) < 0.2)
    projected = vk.reconstruct(prior, noisy.astype(np.float32)[..., None], progress=False)[..., 0] >= 0.5
    before, after = np.mean(seg.iou(noisy, clean)), np.mean(seg.iou(projected, clean))
    assert after > before + 0.05, (before, after)
