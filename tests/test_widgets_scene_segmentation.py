"""The scene segmentation dashboard, driven headless: each control recomputes the mask the library would give."""

import io

import numpy as np
import pytest
from PIL import Image

from vaekit import classical, scenes
from vaekit.metrics import segmentation as seg
from vaekit.widgets import scene_segmentation as ss
from vaekit.widgets._render import GAP


@pytest.fixture(scope="module")
def scene_set():
    return scenes.segmentation_scenes(6, "test", seed=1, size=32)


@pytest.fixture(scope="module")
def single_items():
    return scenes.segmentation_scenes(4, "test", seed=2, size=32, items_per_scene=(1, 1))


def picture(dashboard) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(dashboard.view.value)))


def test_deepest_pixel_and_component_boxes_known_answers():
    mask = np.zeros((7, 9), bool)
    mask[1:6, 1:6] = True          # a 5x5 square: its centre is farthest from the background
    mask[0, 8] = True              # a one-pixel speck
    assert ss.deepest_pixel(mask) == (3, 3)
    assert ss.deepest_pixel(np.zeros((4, 6), bool)) == (2, 3)
    assert ss.component_boxes(mask, min_pixels=1).tolist() == [[0, 8, 1, 9], [1, 1, 6, 6]]   # in raster order
    assert ss.component_boxes(mask, min_pixels=2).tolist() == [[1, 1, 6, 6]]
    assert ss.component_boxes(np.zeros((3, 3), bool), min_pixels=1).shape == (0, 4)


def test_threshold_method_is_the_library_threshold_and_its_scores(scene_set):
    dashboard = ss.SceneSegmentation(scene_set, index=2, method="threshold", threshold=0.45)
    image, truth = scene_set.images[2:3], scene_set.foreground[2]
    expected = classical.threshold_segmentation(image, threshold=0.45)[0]
    np.testing.assert_array_equal(dashboard.mask, expected)
    assert dashboard.scores["iou"] == pytest.approx(seg.iou(expected[None], truth[None])[0])
    assert dashboard.scores["pixel_accuracy"] == pytest.approx(np.mean(expected == truth))
    assert dashboard.scores["background_accuracy"] == pytest.approx(1 - truth.mean())
    before = picture(dashboard)
    dashboard.threshold.value = 0.7
    np.testing.assert_array_equal(dashboard.mask, classical.threshold_segmentation(image, threshold=0.7)[0])
    assert np.abs(picture(dashboard).astype(float) - before).mean() > 0
    dashboard.invert.value = True
    np.testing.assert_array_equal(dashboard.mask, ~classical.threshold_segmentation(image, threshold=0.7)[0])
    assert f"{dashboard.scores['iou']:.3f}" in dashboard.readout.value


def test_otsu_ignores_the_threshold_slider_and_disables_it(scene_set):
    dashboard = ss.SceneSegmentation(scene_set, method="otsu")
    np.testing.assert_array_equal(dashboard.mask, classical.threshold_segmentation(scene_set.images[:1])[0])
    assert dashboard.threshold.disabled and dashboard.tolerance.disabled and not dashboard.invert.disabled
    dashboard.threshold.value = 0.9
    np.testing.assert_array_equal(dashboard.mask, classical.threshold_segmentation(scene_set.images[:1])[0])


def test_network_probabilities_at_the_extremes(single_items):
    truth = single_items.foreground.astype(np.float32)
    dashboard = ss.SceneSegmentation(single_items, probabilities=truth, method="network", index=1)
    # Probabilities equal to the truth: a perfect mask, and its one box is the item's box.
    assert dashboard.scores["iou"] == 1.0 and dashboard.scores["pixel_accuracy"] == 1.0
    np.testing.assert_array_equal(dashboard.scores["best_box_iou"], [1.0])
    assert dashboard.scores["found"] == 1
    # Threshold 0: everything is foreground, IoU = the share of item pixels, and the one box is the canvas.
    dashboard.threshold.value = 0.0
    share = single_items.foreground[1].mean()
    assert dashboard.scores["iou"] == pytest.approx(share)
    assert dashboard.scores["pixel_accuracy"] == pytest.approx(share)
    assert dashboard.predicted_boxes.tolist() == [[0, 0, 32, 32]]


def test_region_growing_starts_at_the_deepest_pixel_and_a_click_moves_the_seed(scene_set):
    dashboard = ss.SceneSegmentation(scene_set, method="region growing", tolerance=0.3, index=3)
    assert dashboard.seed == ss.deepest_pixel(scene_set.foreground[3])
    np.testing.assert_array_equal(
        dashboard.mask, classical.region_growing(scene_set.images[3:4], np.array([dashboard.seed]), tolerance=0.3)[0])
    zoom = dashboard._zoom
    panel = 32 * zoom + GAP
    dashboard.on_image_click({"dataX": panel + 5 * zoom + 1, "dataY": 20 * zoom + 1})   # the middle panel, (20, 5)
    assert dashboard.seed == (20, 5)
    np.testing.assert_array_equal(
        dashboard.mask, classical.region_growing(scene_set.images[3:4], np.array([[20, 5]]), tolerance=0.3)[0])
    assert tuple(picture(dashboard)[20 * zoom, 5 * zoom]) == ss.SEED
    dashboard.tolerance.value = 0.0
    assert dashboard.mask.sum() >= 1 and dashboard.mask[20, 5]
    dashboard.index.value = 4          # a new scene: the seed goes back to its deepest pixel
    assert dashboard.seed == ss.deepest_pixel(scene_set.foreground[4])


def test_true_boxes_are_drawn_in_green_around_their_items(single_items):
    dashboard = ss.SceneSegmentation(single_items, method="threshold", threshold=1.0)
    top, left, bottom, right = single_items.boxes[0, 0]
    zoom = dashboard._zoom
    image = picture(dashboard)
    assert tuple(image[top * zoom, left * zoom]) == ss.TRUE_BOX
    assert tuple(image[bottom * zoom - 1, right * zoom - 1]) == ss.TRUE_BOX


def test_a_callback_error_is_shown_and_the_dashboard_stays_usable(scene_set, monkeypatch):
    dashboard = ss.SceneSegmentation(scene_set, method="threshold")

    def broken(*args, **kwargs):
        raise RuntimeError("no threshold today")

    with monkeypatch.context() as patch:
        patch.setattr(classical, "threshold_segmentation", broken)
        dashboard.threshold.value = 0.3
        assert "RuntimeError" in dashboard.error.value and "no threshold today" in dashboard.error.value
    dashboard.threshold.value = 0.4
    assert dashboard.error.value == ""
    np.testing.assert_array_equal(dashboard.mask,
                                  classical.threshold_segmentation(scene_set.images[:1], threshold=0.4)[0])
    dashboard.close()


def test_construction_errors_name_the_argument(scene_set):
    with pytest.raises(TypeError, match="scene_set must be a vaekit.scenes.SegmentationScenes"):
        ss.SceneSegmentation(scene_set.images)
    with pytest.raises(ValueError, match=r"method must be one of 'otsu', 'threshold', 'region growing' "
                                         r"\(\"network\" needs probabilities=\); got 'network'"):
        ss.SceneSegmentation(scene_set, method="network")
    with pytest.raises(ValueError, match="method must be one of"):
        ss.SceneSegmentation(scene_set, method="watershed")
    with pytest.raises(ValueError, match=r"probabilities must be floats in \[0, 1\] of shape \(6, 32, 32\)"):
        ss.SceneSegmentation(scene_set, probabilities=np.zeros((5, 32, 32), np.float32))
    with pytest.raises(ValueError, match="probabilities must be floats"):
        ss.SceneSegmentation(scene_set, probabilities=np.full((6, 32, 32), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 5\]; got 6"):
        ss.SceneSegmentation(scene_set, index=6)
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]; got 2"):
        ss.SceneSegmentation(scene_set, threshold=2)
    with pytest.raises(ValueError, match=r"tolerance must be a number in \[0, 1\]; got -0.1"):
        ss.SceneSegmentation(scene_set, tolerance=-0.1)
    with pytest.raises(ValueError, match="invert must be True or False"):
        ss.SceneSegmentation(scene_set, invert=1)
    with pytest.raises(ValueError, match="min_pixels must be an integer >= 1; got 0"):
        ss.SceneSegmentation(scene_set, min_pixels=0)
