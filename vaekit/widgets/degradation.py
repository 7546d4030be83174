r"""Damage real images with sliders (blur, noise, JPEG) and watch PSNR, SSIM and sharpness answer.

Each move recomputes the degraded images from the originals, in a fixed order (a lens blurs,
a sensor adds noise, a file is compressed),

.. math::

   y = \mathrm{jpeg}_q\big(\operatorname{clip}_{[0,1]}(g_\sigma \ast x + s\,\varepsilon)\big),

with :func:`vaekit.corruptions.gaussian_blur`, :func:`~vaekit.corruptions.add_gaussian_noise`
(the same :math:`\varepsilon` at every move, so the slider changes only its amplitude) and
:func:`~vaekit.corruptions.jpeg_compress`, then scores them against the originals with
:func:`vaekit.metrics.psnr` and :func:`~vaekit.metrics.ssim`, and on their own with
:func:`~vaekit.metrics.sharpness`. Blur and noise both lower PSNR and SSIM, but move sharpness
in opposite directions.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import jax
import numpy as np

from vaekit import corruptions, datasets, metrics
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_range

_NAME = "ImageDegradation"
BLUR_RANGE = (0.0, 3.0)
NOISE_RANGE = (0.0, 0.5)
JPEG_OFF = 0
JPEG_OPTIONS = (("off", JPEG_OFF), ("95", 95), ("75", 75), ("50", 50), ("30", 30), ("20", 20), ("10", 10), ("5", 5),
                ("1", 1))
"""The JPEG slider's stops, (label, quality): no compression (:data:`JPEG_OFF`), then decreasing quality."""


class ImageDegradation(Dashboard):
    """Originals above, degraded copies below, and the three measures of both, for three sliders.

    Args:
      images: the images to degrade, a :class:`vaekit.Dataset` or an array
        ``(n, height, width, channels)`` in ``[0, 1]`` (at least 11×11 pixels, SSIM's window;
        1 or 3 channels); the first ``num_images`` are shown.
      num_images: how many images, 1–16.
      blur: the initial blur :math:`\\sigma` in pixels, in [0, 3].
      noise: the initial noise standard deviation, in [0, 0.5].
      jpeg_quality: the initial JPEG quality, ``None`` (no compression) or one of the
        slider's stops (95, 75, 50, 30, 20, 10, 5, 1).
      seed: seeds the noise :math:`\\varepsilon`.

    Raises:
      ValueError: images of the wrong shape, or a setting out of range (naming the range).

    Attributes:
      originals: the images shown, ``(num_images, height, width, channels)``.
      degraded: their degraded copies at the sliders' settings.
      scores: ``{"psnr", "ssim", "sharpness"}`` of the degraded images, each ``(num_images,)``;
        ``reference_sharpness``: the originals' sharpness.
    """

    def __init__(self, images, *, num_images: int = 8, blur: float = 0.0, noise: float = 0.0,
                 jpeg_quality: int | None = None, seed: int = 0):
        super().__init__()
        if isinstance(images, datasets.Dataset):
            images = images.images
        images = np.asarray(images)
        window = metrics.quality.SSIM_WINDOW_SIZE
        if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape[1:3]) < window:
            raise ValueError(f"{_NAME}: images must be (n, height, width, 1 or 3) with height and width at least "
                             f"{window} (SSIM's window); got shape {images.shape}")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{_NAME}: images must be floating point in [0, 1]; got dtype {images.dtype}")
        most = min(16, len(images))
        if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= most:
            raise ValueError(f"{_NAME}: num_images must be an integer in [1, {most}]; got {num_images!r}")
        check_range(_NAME, "blur", blur, *BLUR_RANGE)
        check_range(_NAME, "noise", noise, *NOISE_RANGE)
        stops = [quality for _, quality in JPEG_OPTIONS[1:]]
        if jpeg_quality is not None and (jpeg_quality not in stops or isinstance(jpeg_quality, bool)):
            raise ValueError(f"{_NAME}: jpeg_quality must be None or one of {stops}; got {jpeg_quality!r}")
        self.originals = images[:num_images].astype(np.float32)
        self.reference_sharpness = np.asarray(metrics.sharpness(self.originals))
        self._key = jax.random.key(seed)

        style = {"description_width": "initial"}
        self.blur = widgets.FloatSlider(value=blur, min=BLUR_RANGE[0], max=BLUR_RANGE[1], step=0.25,
                                        description="blur σ (pixels)", readout_format=".2f", style=style)
        self.noise = widgets.FloatSlider(value=noise, min=NOISE_RANGE[0], max=NOISE_RANGE[1], step=0.01,
                                         description="noise std", readout_format=".2f", style=style)
        self.jpeg = widgets.SelectionSlider(options=JPEG_OPTIONS, value=jpeg_quality or JPEG_OFF,
                                            description="JPEG quality", style=style)
        self.view = PngView(scale=3)
        self.readout = widgets.HTML()
        self._draw()
        hint = "move the slider again; if it persists, re-run the cell that built the dashboard"
        for slider, action in ((self.blur, "blurring"), (self.noise, "adding noise"), (self.jpeg, "compressing")):
            self._observe(slider, action, hint, self._draw)
        self.widget = self._assemble(widgets.HBox([self.blur, self.noise, self.jpeg]), self.view.widget, self.readout)

    def _degrade(self) -> np.ndarray:
        degraded = corruptions.gaussian_blur(self.originals, self.blur.value)
        if self.noise.value > 0:
            degraded = corruptions.add_gaussian_noise(degraded, self.noise.value, key=self._key)
        if self.jpeg.value != JPEG_OFF:
            degraded = corruptions.jpeg_compress(degraded, self.jpeg.value)
        return degraded

    def _draw(self) -> None:
        degraded = self._degrade()
        self.scores = {
            "psnr": np.asarray(metrics.psnr(self.originals, degraded)),
            "ssim": np.asarray(metrics.ssim(self.originals, degraded)),
            "sharpness": np.asarray(metrics.sharpness(degraded)),
        }
        self.degraded = degraded
        both = np.concatenate([self.originals, degraded])
        self.view.show(_render.tile(_render.to_uint8(both), 2, len(self.originals)))
        self.readout.value = self._table()

    def _table(self) -> str:
        psnr = self.scores["psnr"]
        shown_psnr = "∞ (identical)" if np.all(np.isinf(psnr)) else f"{np.mean(psnr[np.isfinite(psnr)]):.2f} dB"
        rows = (
            ("PSNR vs original", "∞", shown_psnr),
            ("SSIM vs original", "1.000", f"{np.mean(self.scores['ssim']):.3f}"),
            ("sharpness (Laplacian variance)", f"{np.mean(self.reference_sharpness):.4f}",
             f"{np.mean(self.scores['sharpness']):.4f}"),
        )
        cells = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{a}</td>"
                        f"<td style='text-align:right'><b>{b}</b></td></tr>" for name, a, b in rows)
        return ("<table><tr><th>mean over the images</th><th>top row (originals)</th>"
                f"<th>bottom row (degraded)</th></tr>{cells}</table>")
