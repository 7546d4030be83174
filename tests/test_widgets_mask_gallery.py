"""The mask gallery, driven headless: move the scene picker and the threshold, read the masks, scores and PNG."""

import io

import numpy as np
import pytest
from PIL import Image

from vaekit import scenes
from vaekit.metrics import segmentation as seg
from vaekit.widgets import mask_gallery
from vaekit.widgets.mask_gallery import MaskGallery, error_map


@pytest.fixture(scope="module")
def test_scenes():
    return scenes.segmentation_scenes(12, "test", seed=1, size=32).binary()


@pytest.fixture(scope="module")
def probabilities(test_scenes):
    """A perfect network, one right but unsure (0.45 on foreground, 0.3 on background), and a wrong one."""
    truth = test_scenes.foreground.astype(np.float32)
    return {"perfect": truth, "unsure": np.where(truth > 0, 0.45, 0.3).astype(np.float32),
            "inverted": 1.0 - truth}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32)


def test_error_map_colours_each_kind_of_pixel():
    pred = np.array([[True, True, False, False]])
    target = np.array([[True, False, True, False]])
    picture = error_map(pred, target)
    assert picture[0].tolist() == [list(mask_gallery.HIT), list(mask_gallery.FALSE_FOREGROUND),
                                   list(mask_gallery.MISSED), [0, 0, 0]]


def test_the_gallery_scores_each_network_at_the_threshold_and_redraws(test_scenes, probabilities):
    gallery = MaskGallery(test_scenes, probabilities, index=3, threshold=0.5)
    assert gallery._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]
    truth = test_scenes.foreground
    # At 0.5: the perfect network is right, the unsure one calls everything background.
    np.testing.assert_array_equal(gallery.masks["perfect"], truth[3])
    assert gallery.scores["perfect"] == {"iou": 1.0, "dice": 1.0, "black_dots": 0, "mean_iou": 1.0}
    assert not gallery.masks["unsure"].any() and gallery.scores["unsure"]["iou"] == 0.0
    assert gallery.scores["inverted"]["mean_iou"] == pytest.approx(np.mean(seg.iou(~truth, truth)))
    # One panel per network after the image and the truth, each enlarged to about 128 pixels.
    zoom = mask_gallery.PANEL_PIXELS // 32
    picture = pixels(gallery.view.value)
    assert picture.shape == (32 * zoom, 5 * 32 * zoom + 4, 3)
    before = gallery.view.value

    gallery.threshold.value = 0.4  # between the unsure network's 0.3 and 0.45: now it is exactly right
    assert gallery.scores["unsure"]["iou"] == 1.0 and gallery.scores["unsure"]["mean_iou"] == 1.0
    assert gallery.scores["perfect"]["iou"] == 1.0
    assert gallery.view.value != before and "0.40" in gallery.readout.value

    gallery.index.value = 7  # the picker: another scene's masks
    np.testing.assert_array_equal(gallery.masks["perfect"], truth[7])
    assert gallery.scores["inverted"]["iou"] == pytest.approx(float(seg.iou(~truth[7:8], truth[7:8])[0]))
    assert gallery.error.value == ""
    gallery.close()


def test_black_dots_are_counted_for_the_scene_shown(test_scenes):
    truth = test_scenes.foreground
    index = int(np.argmax(truth.sum(axis=(1, 2))))
    row, col = np.argwhere(truth[index])[np.argmax(seg_depth(truth[index]))]
    holed = truth.astype(np.float32)
    holed[index, row, col] = 0.0  # one missed pixel deep inside an item: one black dot
    gallery = MaskGallery(test_scenes, {"holed": holed}, index=index)
    assert gallery.scores["holed"]["black_dots"] == 1
    assert 0.98 < gallery.scores["holed"]["iou"] < 1.0


def seg_depth(mask: np.ndarray) -> np.ndarray:
    """Distance of each foreground pixel (in np.argwhere order) to the background."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask)[mask]


def test_bad_arguments_name_the_parameter(test_scenes, probabilities):
    with pytest.raises(TypeError, match="MaskGallery: scene_set must be a vaekit.scenes.SegmentationScenes"):
        MaskGallery(test_scenes.images, probabilities)
    with pytest.raises(TypeError, match="probabilities must be a non-empty dict"):
        MaskGallery(test_scenes, {})
    with pytest.raises(ValueError, match=r"probabilities\['bad'\] must be floats in \[0, 1\] of shape \(12, 32, 32\)"):
        MaskGallery(test_scenes, {"bad": probabilities["perfect"][:5]})
    with pytest.raises(ValueError, match=r"probabilities\['bad'\] must be floats in \[0, 1\]"):
        MaskGallery(test_scenes, {"bad": probabilities["perfect"] * 2})
    with pytest.raises(ValueError, match=r"probabilities\['bad'\] must be floats"):
        MaskGallery(test_scenes, {"bad": test_scenes.foreground})
    with pytest.raises(ValueError, match=r"MaskGallery: index must be an integer in \[0, 11\]; got 12"):
        MaskGallery(test_scenes, probabilities, index=12)
    with pytest.raises(ValueError, match=r"MaskGallery: threshold must be a number in \[0, 1\]; got 1.5"):
        MaskGallery(test_scenes, probabilities, threshold=1.5)


def test_a_callback_error_is_shown_and_the_gallery_stays_usable(test_scenes, probabilities, monkeypatch):
    gallery = MaskGallery(test_scenes, probabilities)

    def broken(pred, target):
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(mask_gallery.seg, "isolated_components", broken)
    gallery.threshold.value = 0.3
    assert "RuntimeError" in gallery.error.value and "thresholding" in gallery.error.value
    monkeypatch.undo()
    gallery.threshold.value = 0.6
    assert gallery.error.value == ""
    gallery.close()
