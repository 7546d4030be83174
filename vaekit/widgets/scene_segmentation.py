r"""Segment one scene by a threshold, by region growing or by a network, and see its mask, its boxes and its scores.

Pick a scene and a method, move the threshold or the tolerance, and three panels answer at once:

- the image, with the true boxes (green) and the boxes of the predicted mask's connected components (red);
- the predicted mask against the true foreground: right foreground white, false foreground red, missed
  foreground blue, right background black;
- a table: foreground IoU, pixel accuracy beside what predicting background everywhere would score, and
  how well the predicted boxes find the true ones.

The methods are those of :mod:`vaekit.classical` and a network's output:

- ``"otsu"``: :func:`~vaekit.classical.threshold_segmentation` with Otsu's threshold of each image;
- ``"threshold"``: the luminance against the threshold slider, :math:`\hat y = [\mathrm{lum} \ge t]`;
- ``"region growing"``: :func:`~vaekit.classical.region_growing` from a seed pixel with the tolerance
  slider; the seed starts at the true foreground's deepest pixel (the one farthest from the background,
  an *oracle* seed that no real pipeline has), and a click on the image moves it;
- ``"network"``: a network's foreground probabilities for the same scenes against the threshold slider.

"Items darker" flips the two threshold methods (foreground below the threshold). A predicted box is the
tightest box around one connected component (4-connected) of the predicted mask of at least
``min_pixels`` pixels; each true box is scored by its best :func:`~vaekit.metrics.segmentation.box_iou`
with a predicted box, and counts as *found* at 0.5 or more (the Pascal VOC rule).
"""

from __future__ import annotations

import html

import ipyevents
import ipywidgets as widgets
import numpy as np
import scipy.ndimage

from vaekit import classical, detection, scenes
from vaekit.metrics import segmentation as seg
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_index, check_range

_NAME = "SceneSegmentation"
METHODS = ("otsu", "threshold", "region growing", "network")
TOLERANCE_RANGE = (0.0, 1.0)
FOUND_BOX_IOU = 0.5
"""A true box is found when a predicted box overlaps it with IoU at least this (Pascal VOC)."""
PANEL_PIXELS = 192
"""Each panel is enlarged by a whole factor to about this many pixels, so boxes can be drawn between pixels."""

TRUE_BOX, PREDICTED_BOX, SEED = (40, 200, 40), (230, 40, 40), (255, 230, 0)
HIT, FALSE_FOREGROUND, MISSED = (255, 255, 255), (220, 50, 50), (60, 110, 255)


def deepest_pixel(mask: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the foreground pixel farthest from the background (the image centre if empty)."""
    if not mask.any():
        return mask.shape[0] // 2, mask.shape[1] // 2
    depth = scipy.ndimage.distance_transform_edt(mask)
    row, col = np.unravel_index(np.argmax(depth), mask.shape)
    return int(row), int(col)


def component_boxes(mask: np.ndarray, *, min_pixels: int) -> np.ndarray:
    """``(K, 4)`` boxes of the 4-connected components of a ``(H, W)`` mask with at least ``min_pixels`` pixels."""
    labels, count = scipy.ndimage.label(mask)
    if count == 0:
        return np.zeros((0, 4), np.int32)
    boxes, pixels = detection.boxes_from_masks(labels[None], count)
    return boxes[0][pixels[0] >= min_pixels]


class SceneSegmentation(Dashboard):
    """One scene, one method, its mask and boxes against the truth, redrawn at each move.

    Args:
      scene_set: the scenes, a :class:`vaekit.scenes.SegmentationScenes` (their foreground is the truth).
      probabilities: ``None``, or a network's foreground probabilities for the same scenes, ``(N, H, W)``
        in ``[0, 1]``; they enable the ``"network"`` method.
      index: the scene shown first.
      method: one of :data:`METHODS` (``"network"`` needs ``probabilities``).
      threshold: the threshold of the ``"threshold"`` and ``"network"`` methods, in [0, 1].
      tolerance: the colour distance of region growing, in [0, 1].
      invert: foreground below the threshold (items darker than their background).
      min_pixels: the smallest component that gets a predicted box.

    Raises:
      TypeError, ValueError: naming the argument and what it must be.

    Attributes:
      mask: the predicted foreground of the scene shown, ``bool`` ``(H, W)``.
      predicted_boxes: ``(K, 4)`` boxes of its components.
      seed: the region-growing seed ``(row, col)``.
      scores: ``iou``, ``pixel_accuracy``, ``background_accuracy`` (of an all-background mask),
        ``best_box_iou`` (per true box, its best IoU with a predicted box) and ``found`` (how many true
        boxes reach :data:`FOUND_BOX_IOU`).
    """

    def __init__(self, scene_set: scenes.SegmentationScenes, *, probabilities=None, index: int = 0,
                 method: str = "threshold", threshold: float = 0.5, tolerance: float = 0.2, invert: bool = False,
                 min_pixels: int = 10):
        super().__init__()
        if not isinstance(scene_set, scenes.SegmentationScenes):
            raise TypeError(f"{_NAME}: scene_set must be a vaekit.scenes.SegmentationScenes "
                            f"(vk.scenes.segmentation_scenes(...)); got {type(scene_set).__name__}")
        self.scenes = scene_set
        self.probabilities = None if probabilities is None else np.asarray(probabilities)
        if self.probabilities is not None:
            p = self.probabilities
            if (p.shape != scene_set.foreground.shape or not np.issubdtype(p.dtype, np.floating)
                    or not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1)):
                raise ValueError(f"{_NAME}: probabilities must be floats in [0, 1] of shape "
                                 f"{scene_set.foreground.shape}, one map per scene; got {p.dtype} of shape {p.shape}")
        methods = METHODS if self.probabilities is not None else METHODS[:-1]
        if method not in methods:
            extra = " (\"network\" needs probabilities=)" if method == "network" else ""
            raise ValueError(f"{_NAME}: method must be one of {', '.join(map(repr, methods))}{extra}; got {method!r}")
        check_index(_NAME, "index", index, len(scene_set))
        check_range(_NAME, "threshold", threshold, 0.0, 1.0)
        check_range(_NAME, "tolerance", tolerance, *TOLERANCE_RANGE)
        if not isinstance(invert, bool):
            raise ValueError(f"{_NAME}: invert must be True or False; got {invert!r}")
        if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
            raise ValueError(f"{_NAME}: min_pixels must be an integer >= 1; got {min_pixels!r}")
        self.min_pixels = min_pixels
        size = scene_set.images.shape[1]
        self._zoom = max(1, PANEL_PIXELS // size)

        style = {"description_width": "initial"}
        self.index = widgets.IntSlider(value=index, min=0, max=len(scene_set) - 1, description="scene", style=style)
        self.method = widgets.ToggleButtons(options=methods, value=method, description="method", style=style)
        self.threshold = widgets.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.01, description="threshold",
                                             readout_format=".2f", style=style)
        self.tolerance = widgets.FloatSlider(value=tolerance, min=TOLERANCE_RANGE[0], max=TOLERANCE_RANGE[1],
                                             step=0.01, description="tolerance (colour distance)",
                                             readout_format=".2f", style=style)
        self.invert = widgets.Checkbox(value=invert, description="items darker (invert)", indent=False)
        self.seed = deepest_pixel(scene_set.foreground[index])
        self.view = PngView(scale=1)
        self.readout = widgets.HTML()
        self._draw()

        hint = "move the control again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.index, "changing the scene", hint, self._new_scene)
        for control, action in ((self.method, "changing the method"), (self.threshold, "thresholding"),
                                (self.tolerance, "growing the region"), (self.invert, "inverting")):
            self._observe(control, action, hint, self._draw)
        self._clicks = ipyevents.Event(source=self.view.widget, watched_events=["click"])
        self._clicks.on_dom_event(lambda event: self._run("moving the seed", hint, lambda: self.on_image_click(event)))
        legend = ("<small>left: the image, true boxes <span style='color:#28c828'>green</span>, predicted boxes "
                  "<span style='color:#e62828'>red</span>, region-growing seed <span style='color:#e6c800'>yellow"
                  "</span> (click the image to move it); middle: the predicted mask; right: right foreground white, "
                  "false foreground red, missed foreground blue</small>")
        self.widget = self._assemble(
            widgets.HBox([self.index, self.method]), widgets.HBox([self.threshold, self.tolerance, self.invert]),
            self.view.widget, widgets.HTML(legend), self.readout)

    def close(self) -> None:
        self._clicks.close()
        super().close()

    def _new_scene(self) -> None:
        self.seed = deepest_pixel(self.scenes.foreground[self.index.value])
        self._draw()

    def on_image_click(self, event: dict) -> None:
        """Handles an ipyevents click (``dataX``, ``dataY``: pixels of the PNG): a click on any panel moves the seed."""
        size = self.scenes.images.shape[1]
        panel = size * self._zoom + _render.GAP
        column = int(np.clip((event["dataX"] % panel) // self._zoom, 0, size - 1))
        row = int(np.clip(event["dataY"] // self._zoom, 0, size - 1))
        self.seed = (row, column)
        if self.method.value == "region growing":
            self._draw()

    def predict(self) -> np.ndarray:
        """The predicted foreground ``(H, W)`` of the scene shown, at the controls' settings."""
        i, method = self.index.value, self.method.value
        image = self.scenes.images[i:i + 1]
        if method == "otsu":
            return classical.threshold_segmentation(image)[0] != self.invert.value
        if method == "threshold":
            return classical.threshold_segmentation(image, threshold=self.threshold.value)[0] != self.invert.value
        if method == "region growing":
            return classical.region_growing(image, np.array([self.seed]), tolerance=self.tolerance.value)[0]
        return self.probabilities[i] >= self.threshold.value

    def _draw(self) -> None:
        method = self.method.value
        self.threshold.disabled = method not in ("threshold", "network")
        self.tolerance.disabled = method != "region growing"
        self.invert.disabled = method not in ("otsu", "threshold")
        i = self.index.value
        truth, true_boxes = self.scenes.foreground[i], self.scenes.boxes[i][self.scenes.boxes[i, :, 0] >= 0]
        self.mask = self.predict()
        self.predicted_boxes = component_boxes(self.mask, min_pixels=self.min_pixels)
        if len(self.predicted_boxes):
            best = seg.box_iou(true_boxes[:, None], self.predicted_boxes[None]).max(axis=1)
        else:
            best = np.zeros(len(true_boxes))
        self.scores = {
            "iou": float(seg.iou(self.mask[None], truth[None])[0]),
            "pixel_accuracy": float(seg.pixel_accuracy(self.mask[None], truth[None])[0]),
            "background_accuracy": float(1.0 - truth.mean()),
            "best_box_iou": best,
            "found": int(np.sum(best >= FOUND_BOX_IOU)),
        }
        self.view.show(self._panels(i, truth, true_boxes))
        self.readout.value = self._table(len(true_boxes))

    def _panels(self, i: int, truth: np.ndarray, true_boxes: np.ndarray) -> np.ndarray:
        zoom = self._zoom
        image = np.repeat(np.repeat(_render.to_uint8(self.scenes.images[i]), zoom, 0), zoom, 1)
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        mask = np.where(self.mask[..., None], np.uint8(255), np.uint8(0)).repeat(3, -1)
        errors = np.zeros((*truth.shape, 3), np.uint8)
        errors[self.mask & truth] = HIT
        errors[self.mask & ~truth] = FALSE_FOREGROUND
        errors[~self.mask & truth] = MISSED
        mask, errors = (np.repeat(np.repeat(a, zoom, 0), zoom, 1) for a in (mask, errors))
        for box in self.predicted_boxes:
            _outline(image, box, zoom, PREDICTED_BOX)
            _outline(mask, box, zoom, PREDICTED_BOX)
        for box in true_boxes:
            _outline(image, box, zoom, TRUE_BOX)
        if self.method.value == "region growing":
            row, col = self.seed
            image[row * zoom:(row + 1) * zoom, col * zoom:(col + 1) * zoom] = SEED
        return _render.tile(np.stack([image, mask, errors]), 1, 3)

    def _table(self, true_items: int) -> str:
        s = self.scores
        boxes = ", ".join(f"{v:.2f}" for v in s["best_box_iou"]) or "–"
        rows = (
            ("foreground IoU", f"{s['iou']:.3f}"),
            ("pixel accuracy", f"{s['pixel_accuracy']:.3f}"),
            ("pixel accuracy of an all-background mask", f"{s['background_accuracy']:.3f}"),
            ("best box IoU of each true item", boxes),
            (f"true items found (box IoU ≥ {FOUND_BOX_IOU})", f"{s['found']} of {true_items}"),
            (f"predicted boxes (components of ≥ {self.min_pixels} pixels)", str(len(self.predicted_boxes))),
        )
        cells = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'><b>{value}</b></td></tr>"
                        for name, value in rows)
        return f"<table>{cells}</table>"


def _outline(canvas: np.ndarray, box: np.ndarray, zoom: int, colour: tuple[int, int, int]) -> None:
    """Draws a box's outline along the outer edge of its pixels on a canvas enlarged ``zoom`` times."""
    top, left, bottom, right = (int(v) * zoom for v in box)
    bottom, right = bottom - 1, right - 1
    canvas[top, left:right + 1] = canvas[bottom, left:right + 1] = colour
    canvas[top:bottom + 1, left] = canvas[top:bottom + 1, right] = colour
