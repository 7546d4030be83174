"""The fast image path shared by the dashboards: compiled decoding, image grids, PNG bytes, blitted plots.

Every slider move ends in a PNG written into an existing ``ipywidgets.Image``. Images of
digits and clothes are decoded by one compiled call per move and tiled with NumPy;
Pillow encodes the PNG (about 0.5 ms for a 224 x 224 grid). Plots (the rate–distortion
plane, the latent scatter) are drawn by matplotlib when their data change; a move only
redraws a transparent overlay with the current point, stacked on the plot.
"""

from __future__ import annotations

import functools
import io
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from vaekit import batched

GAP = 1  # pixels between tiles
GAP_VALUE = 128  # mid grey: visible next to black backgrounds and white strokes alike
PIXELATED_CLASS = "vaekit-pixelated"
PIXELATED_STYLE = f"<style>.{PIXELATED_CLASS} {{ image-rendering: pixelated; }}</style>"


def _as_uint8(images: jax.Array) -> jax.Array:
    return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)


# The graph definition is static, so models of one architecture (e.g. every β at one latent
# size) share a single compiled function: switching models costs no compilation.
@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, state, z):
    return _as_uint8(nnx.merge(graphdef, state).decode(z))


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, state, x):
    return batched.point_code(nnx.merge(graphdef, state).encode(x))


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct_and_decode(graphdef, state, x, z):
    model = nnx.merge(graphdef, state)
    return _as_uint8(model.decode(batched.point_code(model.encode(x)))), _as_uint8(model.decode(z))


class CompiledModel:
    """A model with ``encode`` and ``decode`` split once into graph and state, with compiled calls.

    ``encode`` may give a distribution ``(mean, log_var)`` (a VAE) or a point (an autoencoder);
    either way the code a dashboard moves from is the point :func:`vaekit.batched.point_code`.

    Args:
      model: an ``nnx.Module`` with ``encode`` and ``decode`` (a :class:`vaekit.VAE`, a
        :class:`vaekit.Autoencoder`, or a module of one's own).
      image_shape: ``(height, width, channels)`` of its inputs, when known (from the data or
        the model's config); from it the latent size is read off ``encode``'s output shape.
        Without it, the model's ``config.latent_dim`` gives the latent size.

    Attributes:
      latent_dim: the size of a code: ``model.config.latent_dim``, else found from ``encode``.
      gives_distribution: whether ``encode`` gives ``(mean, log_var)``; ``None`` when no image shape was given.
    """

    def __init__(self, model: nnx.Module, *, image_shape: tuple[int, ...] | None = None):
        self.model = model
        self._graphdef, self._state = nnx.split(model)
        latent_dim = getattr(getattr(model, "config", None), "latent_dim", None)
        self.gives_distribution = None
        if image_shape is not None:
            encoded = jax.eval_shape(lambda x: nnx.merge(self._graphdef, self._state).encode(x),
                                     jax.ShapeDtypeStruct((1, *image_shape), np.float32))
            self.gives_distribution = isinstance(encoded, tuple)
            latent_dim = batched.point_code(encoded).shape[-1]
        self.latent_dim = int(latent_dim)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """``(n, latent_dim)`` codes to ``(n, height, width, channels)`` ``uint8`` images."""
        return np.asarray(_decode(self._graphdef, self._state, np.asarray(z, np.float32)))

    def encode(self, x: np.ndarray) -> np.ndarray:
        """The codes ``(n, latent_dim)`` of ``(n, height, width, channels)`` images in [0, 1] (posterior means)."""
        return np.asarray(_encode(self._graphdef, self._state, np.asarray(x, np.float32)))

    def reconstruct_and_decode(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reconstructions of ``x`` (decoded codes) and decodes of ``z``, in one compiled call."""
        recon, decoded = _reconstruct_and_decode(
            self._graphdef, self._state, np.asarray(x, np.float32), np.asarray(z, np.float32)
        )
        return np.asarray(recon), np.asarray(decoded)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``float`` images in [0, 1] to ``uint8``."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def tile(images: np.ndarray, rows: int, cols: int, *, gap: int = GAP) -> np.ndarray:
    """Arranges ``rows * cols`` images ``(n, h, w, c)`` row-major into one ``(H, W)`` or ``(H, W, c)`` grid."""
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"tile: {n} images do not fill {rows} x {cols}")
    canvas = np.full((rows, h + gap, cols, w + gap, c), GAP_VALUE, np.uint8)
    canvas[:, :h, :, :w] = images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
    grid = canvas.reshape(rows * (h + gap), cols * (w + gap), c)[: rows * (h + gap) - gap, : cols * (w + gap) - gap]
    return grid[..., 0] if c == 1 else grid


def png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` grey ``(H, W)`` or colour ``(H, W, 3|4)`` array (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # matplotlib's DejaVu Sans has the Greek letters (β, σ) that Pillow's default font lacks.
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def label_column(labels: Sequence[str], *, row_height: int, width: int, gap: int = GAP,
                 greyed: Sequence[bool] = ()) -> np.ndarray:
    """A white ``(H, width)`` strip with one label per row, to put beside a grid (drawn once, reused)."""
    height = len(labels) * (row_height + gap) - gap
    strip = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(strip)
    font = _font(max(8, min(12, row_height // 2)))
    for i, text in enumerate(labels):
        grey = bool(greyed[i]) if i < len(greyed) else False
        draw.text((2, i * (row_height + gap) + row_height // 2), text, fill=150 if grey else 0, font=font, anchor="lm")
    return np.asarray(strip)


class PlotCanvas:
    """A matplotlib figure rendered to PNG only when its data change, plus a cheap overlay per move.

    Encoding a whole plot costs several milliseconds (a scatter of thousands of points, ~8 ms),
    so a move never re-encodes it: the marker of the current point goes into a transparent
    overlay of the same size, drawn with Pillow and shown stacked on the plot (~1 ms).

    Args:
      width: width in pixels.
      height: height in pixels.
    """

    DPI = 100

    def __init__(self, width: int, height: int):
        self.size = (width, height)
        self.figure = Figure(figsize=(width / self.DPI, height / self.DPI), dpi=self.DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()

    def png(self) -> bytes:
        """The whole figure as PNG bytes (slow: call when the plotted data change)."""
        self.canvas.draw()
        return png(np.ascontiguousarray(np.asarray(self.canvas.buffer_rgba())[..., :3]))

    def marker_png(self, x: float | None, y: float | None, *, label: str = "",
                   colour: tuple[int, int, int] = (220, 20, 60)) -> bytes:
        """A transparent PNG of the figure's size with a ring and cross at data point ``(x, y)`` (none if ``None``)."""
        overlay = Image.new("RGBA", self.size, (0, 0, 0, 0))
        if x is not None and y is not None:
            px, py = self.pixel_from_data(x, y)
            draw = ImageDraw.Draw(overlay)
            ink = (*colour, 255)
            draw.ellipse((px - 7, py - 7, px + 7, py + 7), outline=ink, width=2)
            draw.line((px - 12, py, px - 4, py), fill=(0, 0, 0, 255), width=1)
            draw.line((px + 4, py, px + 12, py), fill=(0, 0, 0, 255), width=1)
            draw.line((px, py - 12, px, py - 4), fill=(0, 0, 0, 255), width=1)
            draw.line((px, py + 4, px, py + 12), fill=(0, 0, 0, 255), width=1)
            if label:
                draw.text((px + 10, py - 10), label, fill=ink, font=_font(11), anchor="lb")
        buffer = io.BytesIO()
        overlay.save(buffer, format="png", compress_level=1)
        return buffer.getvalue()

    def data_from_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Data coordinates of a pixel of the PNG (``y`` counted from the top, as browsers do)."""
        height = self.figure.bbox.height
        data = self.ax.transData.inverted().transform((x, height - y))
        return float(data[0]), float(data[1])

    def pixel_from_data(self, x: float, y: float) -> tuple[float, float]:
        """The PNG pixel (``y`` from the top) of a point in data coordinates."""
        height = self.figure.bbox.height
        px, py = self.ax.transData.transform((x, y))
        return float(px), float(height - py)
