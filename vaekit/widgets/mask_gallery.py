r"""Several networks' masks of the same test scene side by side, at one threshold that a slider moves.

A segmentation network gives each pixel a foreground probability :math:`p_{ij}`; the mask is
:math:`\hat y_{ij} = [p_{ij} \ge t]`. The threshold :math:`t = 0.5` is the usual choice, not a law:
moving it trades missed foreground for false foreground, and a network whose probabilities sit
near 0.5 changes its masks far more than one that is sure. Pick a test scene and a threshold; for
each network the gallery shows

- its mask against the truth: right foreground white, false foreground red, missed foreground blue,
  right background black;
- that scene's foreground IoU, Dice and *black dots* (missed pieces that the predicted foreground
  encloses, :func:`~vaekit.metrics.segmentation.isolated_components`);
- the mean IoU over all the scenes at the same threshold, so that one lucky scene is not read as a
  verdict on the network.

Example (in a notebook)::

    probabilities = {"U-Net": p_unet, "repeat": p_repeat}   # each (N, H, W) in [0, 1]
    vk.widgets.MaskGallery(test_scenes, probabilities)
"""

from __future__ import annotations

import html
from typing import Mapping

import ipywidgets as widgets
import numpy as np

from vaekit import scenes
from vaekit.metrics import segmentation as seg
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_index, check_range

_NAME = "MaskGallery"
PANEL_PIXELS = 128
"""Each panel is enlarged by a whole factor to about this many pixels."""
HIT, FALSE_FOREGROUND, MISSED = (255, 255, 255), (220, 50, 50), (60, 110, 255)


def error_map(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``uint8`` ``(H, W, 3)``: right foreground white, false foreground red, missed blue, right background black.

    Example:
      >>> error_map(np.array([[True, True, False]]), np.array([[True, False, True]]))[0].tolist()
      [[255, 255, 255], [220, 50, 50], [60, 110, 255]]
    """
    picture = np.zeros((*pred.shape, 3), np.uint8)
    picture[pred & target], picture[pred & ~target], picture[~pred & target] = HIT, FALSE_FOREGROUND, MISSED
    return picture


class MaskGallery(Dashboard):
    """One test scene, its truth, and every network's mask at the threshold of the slider.

    Args:
      scene_set: the test scenes, a :class:`vaekit.scenes.SegmentationScenes` (their foreground is the truth).
      probabilities: ``{name: (N, H, W) foreground probabilities in [0, 1]}``, one entry per network,
        for the same scenes in the same order.
      index: the scene shown first.
      threshold: the first threshold, in [0, 1]; a pixel is foreground when its probability is at least this.

    Raises:
      TypeError, ValueError: naming the argument and what it must be.

    Attributes:
      masks: ``{name: bool (H, W)}``, each network's mask of the scene shown.
      scores: ``{name: {"iou", "dice", "black_dots", "mean_iou"}}``: the scene's IoU, Dice and black
        dots, and the mean IoU over all the scenes, at the threshold shown.
    """

    def __init__(self, scene_set: scenes.SegmentationScenes, probabilities: Mapping[str, np.ndarray], *,
                 index: int = 0, threshold: float = 0.5):
        super().__init__()
        if not isinstance(scene_set, scenes.SegmentationScenes):
            raise TypeError(f"{_NAME}: scene_set must be a vaekit.scenes.SegmentationScenes "
                            f"(vk.scenes.segmentation_scenes(...)); got {type(scene_set).__name__}")
        if not isinstance(probabilities, Mapping) or not probabilities:
            raise TypeError(f"{_NAME}: probabilities must be a non-empty dict {{name: (N, H, W) array in [0, 1]}}; "
                            f"got {type(probabilities).__name__}")
        self.scenes = scene_set
        self.probabilities = {}
        for name, p in probabilities.items():
            p = np.asarray(p)
            if (p.shape != scene_set.foreground.shape or not np.issubdtype(p.dtype, np.floating)
                    or not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1)):
                raise ValueError(f"{_NAME}: probabilities[{name!r}] must be floats in [0, 1] of shape "
                                 f"{scene_set.foreground.shape}, one map per scene; got {p.dtype} of shape {p.shape}")
            self.probabilities[str(name)] = p
        check_index(_NAME, "index", index, len(scene_set))
        check_range(_NAME, "threshold", threshold, 0.0, 1.0)
        self._zoom = max(1, PANEL_PIXELS // scene_set.images.shape[1])

        style = {"description_width": "initial"}
        self.index = widgets.IntSlider(value=index, min=0, max=len(scene_set) - 1, description="test scene",
                                       style=style)
        self.threshold = widgets.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.01, description="threshold t",
                                             readout_format=".2f", style=style)
        self.view = PngView(scale=1)
        self.readout = widgets.HTML()
        self._draw()

        hint = "move the control again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.index, "changing the scene", hint, self._draw)
        self._observe(self.threshold, "thresholding", hint, self._draw)
        names = ["image", "truth", *self.probabilities]
        legend = ("<small>panels: " + ", ".join(html.escape(n) for n in names)
                  + "; right foreground white, false foreground <span style='color:#dc3232'>red</span>, missed "
                    "foreground <span style='color:#3c6eff'>blue</span></small>")
        self.widget = self._assemble(widgets.HBox([self.index, self.threshold]), self.view.widget,
                                     widgets.HTML(legend), self.readout)

    def _draw(self) -> None:
        i, t = self.index.value, self.threshold.value
        truth = self.scenes.foreground
        self.masks, self.scores = {}, {}
        for name, p in self.probabilities.items():
            everywhere = p >= t
            mask = everywhere[i]
            self.masks[name] = mask
            self.scores[name] = {
                "iou": float(seg.iou(mask[None], truth[i:i + 1])[0]),
                "dice": float(seg.dice(mask[None], truth[i:i + 1])[0]),
                "black_dots": int(seg.isolated_components(mask[None], truth[i:i + 1])[0]),
                "mean_iou": float(np.mean(seg.iou(everywhere, truth))),
            }
        image = _render.to_uint8(self.scenes.images[i])
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        panels = [image, error_map(truth[i], truth[i]), *(error_map(m, truth[i]) for m in self.masks.values())]
        zoom = self._zoom
        panels = np.stack([np.repeat(np.repeat(p, zoom, 0), zoom, 1) for p in panels])
        self.view.show(_render.tile(panels, 1, len(panels)))
        self.readout.value = self._table()

    def _table(self) -> str:
        t = self.threshold.value
        header = ("network", "IoU (this scene)", "Dice", "black dots", f"mean IoU, all {len(self.scenes)} scenes")
        head = "".join(f"<th style='padding:0 8px'>{html.escape(h)}</th>" for h in header)
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{s['iou']:.3f}</td>"
            f"<td style='text-align:right'>{s['dice']:.3f}</td><td style='text-align:right'>{s['black_dots']}</td>"
            f"<td style='text-align:right'><b>{s['mean_iou']:.3f}</b></td></tr>"
            for name, s in self.scores.items())
        return f"<small>threshold t = {t:.2f}</small><table><tr>{head}</tr>{rows}</table>"
