"""The mask-samples dashboard, driven headless: move its controls as a browser would, read its PNGs and scores."""

import io

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from vaekit import probunet, scenes, segmentation
from vaekit.metrics import segmentation as seg
from vaekit.widgets.mask_samples import MaskSamples


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32)


@pytest.fixture(scope="module")
def scene_set():
    return scenes.ambiguous_scenes(5, "test", seed=1, size=32)


@pytest.fixture(scope="module")
def model():
    """An untrained Probabilistic U-Net whose prior is wide, so that its draws differ from one another."""
    config = probunet.ProbabilisticUNetConfig(
        unet=segmentation.UNetConfig(in_channels=3, num_classes=2, channels=(8, 16)), encoder_channels=(8, 16))
    return probunet.ProbabilisticUNet(config, rngs=nnx.Rngs(0))


class Deterministic(nnx.Module):
    """Draws the same mask every time: the left half of the image, whatever the code."""

    def sample(self, x, *, key, num_samples):
        del key
        logits = np.zeros((num_samples, *x.shape[:3], 2), np.float32)
        logits[..., : x.shape[2] // 2, 1] = 1.0
        return logits


def test_it_draws_the_image_modes_and_samples_and_scores_them_with_the_library(model, scene_set):
    dashboard = MaskSamples(model, scene_set, index=2, num_samples=6)
    assert dashboard.masks.shape == (6, 32, 32) and dashboard.masks.dtype == bool
    present = scene_set.mode_probabilities[2] > 0
    modes, p = scene_set.modes[2][present], scene_set.mode_probabilities[2][present]
    s = dashboard.scores
    assert s["ged"] == pytest.approx(seg.generalized_energy_distance(dashboard.masks, modes, weights=p))
    assert s["optimum"] == pytest.approx(seg.ged_optimum(modes, p, 6))
    assert s["diversity"] == pytest.approx(seg.sample_diversity(dashboard.masks))
    np.testing.assert_allclose(s["probabilities"], p / p.sum())
    assert s["nearest"].sum() == pytest.approx(1.0) and len(s["nearest"]) == len(modes)
    top, bottom = pixels(dashboard.top.value), pixels(dashboard.bottom.value)
    zoom = dashboard._zoom
    assert top.shape[0] == 32 * zoom and bottom.shape[0] == 32 * zoom  # six samples fit on one row
    # The first panel is the image itself, enlarged.
    np.testing.assert_allclose(top[:zoom * 32:zoom, :zoom * 32:zoom], np.round(scene_set.images[2] * 255), atol=1)
    assert "mode 1" in dashboard.readout.value and "optimum" in dashboard.readout.value
    dashboard.close()


def test_the_draw_slider_and_button_draw_new_masks_and_a_value_shows_the_same_masks_again(model, scene_set):
    dashboard = MaskSamples(model, scene_set, num_samples=8)
    first = dashboard.masks.copy()
    dashboard.again.click()
    assert dashboard.draw.value == 1 and not np.array_equal(dashboard.masks, first)
    dashboard.draw.value = 0
    np.testing.assert_array_equal(dashboard.masks, first)
    dashboard.index.value = 3
    assert dashboard.error.value == ""
    present = scene_set.mode_probabilities[3] > 0
    assert len(dashboard.scores["nearest"]) == int(present.sum())
    dashboard.close()


def test_a_model_that_always_draws_one_mask_has_zero_diversity(scene_set):
    dashboard = MaskSamples(Deterministic(), scene_set, num_samples=4)
    assert dashboard.scores["diversity"] == 0.0
    dashboard.again.click()
    assert dashboard.masks[:, :, :16].all() and not dashboard.masks[:, :, 16:].any()
    dashboard.close()


def test_construction_errors_name_the_parameter_and_the_allowed_values(model, scene_set):
    with pytest.raises(TypeError, match="MaskSamples: model must be an nnx.Module with a sample"):
        MaskSamples(segmentation.UNet(segmentation.UNetConfig(channels=(8, 16)), rngs=nnx.Rngs(0)), scene_set)
    with pytest.raises(TypeError, match="scene_set must be a vaekit.scenes.AmbiguousScenes"):
        MaskSamples(model, scenes.segmentation_scenes(4, "test", size=32))
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 4\]; got 5"):
        MaskSamples(model, scene_set, index=5)
    with pytest.raises(ValueError, match=r"num_samples must be an integer in \[2, 32\]; got 1"):
        MaskSamples(model, scene_set, num_samples=1)
    with pytest.raises(ValueError, match=r"draw must be an integer in \[0, 99\]; got 100"):
        MaskSamples(model, scene_set, draw=100)
