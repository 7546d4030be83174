r"""Draw masks for one ambiguous image and set them beside its annotations' modes and their probabilities.

Pick a test image of :func:`vaekit.scenes.ambiguous_scenes` and move the *draw* slider: each value is a
fresh set of codes :math:`z_1, \dots, z_n \sim p(z \mid x)` from the model's **prior**, decoded into
:math:`n` masks. The panels show

- top row: the image; its plausible masks (the *modes* :math:`y_j`, blank where an image has fewer);
  the true probability that each pixel is marked, :math:`\sum_j \pi_j [y_j]_{ij}`; and the share of the
  drawn masks that mark it (black 0, white 1): the two maps agree when the model samples the modes in
  the right proportions;
- below: the :math:`n` drawn masks.

The table says, per mode, its probability :math:`\pi_j` and the share of the drawn masks nearest to it
(by :math:`d = 1 - \mathrm{IoU}`), and the drawn set's :math:`D^2_{\mathrm{GED}}` against the modes
(:func:`~vaekit.metrics.segmentation.generalized_energy_distance`, weights :math:`\pi`) beside the
expected GED of :math:`n` draws from the true distribution
(:func:`~vaekit.metrics.segmentation.ged_optimum`, the V-statistic's bias :math:`\pi^\top D \pi / n`),
and the sample diversity. A deterministic model, or one whose KL collapsed, draws the same mask at
every move of the slider.
"""

from __future__ import annotations

import functools
import html

import ipywidgets as widgets
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaekit import scenes
from vaekit.metrics import segmentation as seg
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_index

_NAME = "MaskSamples"
MAX_SAMPLES = 32
DRAWS = 100
"""The draw slider's values: each is one fixed set of codes, so a value shows the same masks again."""
PANEL_PIXELS = 96
"""Each panel is enlarged by a whole factor to about this many pixels."""


@functools.partial(jax.jit, static_argnums=(0, 4))
def _foreground_samples(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array, key: jax.Array,
                        num_samples: int) -> jax.Array:
    logits = nnx.merge(graphdef, state).sample(images, key=key, num_samples=num_samples)
    return jnp.argmax(logits, axis=-1) != 0


def _grey(maps: np.ndarray) -> np.ndarray:
    """``(n, H, W)`` values in [0, 1] to ``uint8`` RGB ``(n, H, W, 3)``."""
    return np.repeat(_render.to_uint8(np.asarray(maps, np.float32))[..., None], 3, axis=-1)


class MaskSamples(Dashboard):
    """Prior samples of one ambiguous test image beside its modes, redrawn at each move.

    Args:
      model: a trained model with ``sample(x, *, key, num_samples)`` giving logits
        ``(num_samples, batch, H, W, classes)`` from its prior, such as
        :class:`vaekit.probunet.ProbabilisticUNet`; class 0 is background.
      scene_set: the images and their modes, a :class:`vaekit.scenes.AmbiguousScenes`.
      index: the image shown first.
      draw: the draw shown first, in ``[0, 99]`` (the key of the codes is ``fold_in(key(seed), draw)``).
      num_samples: masks drawn per move, in ``[2, 32]``.
      seed: the base of the draws' keys.

    Raises:
      TypeError, ValueError: naming the argument and what it must be.

    Attributes:
      masks: the masks drawn now, ``bool`` ``(num_samples, H, W)``.
      scores: ``ged`` and ``optimum`` (for ``num_samples`` draws), ``diversity``, ``probabilities``
        (of the modes shown) and ``nearest`` (the share of the masks nearest to each mode).
    """

    def __init__(self, model: nnx.Module, scene_set: scenes.AmbiguousScenes, *, index: int = 0, draw: int = 0,
                 num_samples: int = 8, seed: int = 0):
        super().__init__()
        if not isinstance(model, nnx.Module) or not callable(getattr(model, "sample", None)):
            raise TypeError(f"{_NAME}: model must be an nnx.Module with a sample(x, *, key, num_samples) method, such "
                            f"as vk.probunet.ProbabilisticUNet; got {type(model).__name__}")
        if not isinstance(scene_set, scenes.AmbiguousScenes):
            raise TypeError(f"{_NAME}: scene_set must be a vaekit.scenes.AmbiguousScenes "
                            f"(vk.scenes.ambiguous_scenes(...)); got {type(scene_set).__name__}")
        check_index(_NAME, "index", index, len(scene_set.images))
        check_index(_NAME, "draw", draw, DRAWS)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 2 <= num_samples <= MAX_SAMPLES:
            raise ValueError(f"{_NAME}: num_samples must be an integer in [2, {MAX_SAMPLES}]; got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{_NAME}: seed must be an integer; got {seed!r}")
        self.scenes = scene_set
        self.num_samples = num_samples
        self._key = jax.random.key(seed)
        self._graphdef, self._state = nnx.split(model)
        size = scene_set.images.shape[1]
        self._zoom = max(1, PANEL_PIXELS // size)
        self._columns = max(scene_set.modes.shape[1] + 3, min(num_samples, 8))

        style = {"description_width": "initial"}
        self.index = widgets.IntSlider(value=index, min=0, max=len(scene_set.images) - 1, description="test image",
                                       style=style)
        self.draw = widgets.IntSlider(value=draw, min=0, max=DRAWS - 1, description="draw", style=style)
        self.again = widgets.Button(description="draw again")
        self.top = PngView()
        self.bottom = PngView()
        self.readout = widgets.HTML()
        self._draw()

        hint = "move the control again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.index, "changing the image", hint, self._draw)
        self._observe(self.draw, "drawing masks", hint, self._draw)
        self._on_click(self.again, "drawing masks", hint, self._next_draw)
        legend = ("<small>top: the image, its plausible masks (modes), the true probability that each pixel is "
                  f"marked, the share of the {num_samples} drawn masks that mark it; below: the drawn masks, "
                  "each from its own z ~ p(z|x)</small>")
        self.widget = self._assemble(widgets.HBox([self.index, self.draw, self.again]), self.top.widget,
                                     widgets.HTML(legend), self.bottom.widget, self.readout)

    def _next_draw(self) -> None:
        self.draw.value = (self.draw.value + 1) % DRAWS

    def sample(self) -> np.ndarray:
        """``bool`` ``(num_samples, H, W)``: the masks of the image and draw shown."""
        i = self.index.value
        key = jax.random.fold_in(self._key, self.draw.value)
        masks = _foreground_samples(self._graphdef, self._state, jnp.asarray(self.scenes.images[i:i + 1]), key,
                                    self.num_samples)
        return np.asarray(masks)[:, 0]

    def _draw(self) -> None:
        i = self.index.value
        present = self.scenes.mode_probabilities[i] > 0
        modes, p = self.scenes.modes[i][present], self.scenes.mode_probabilities[i][present]
        p = p / p.sum()
        self.masks = self.sample()
        nearest = np.argmin(seg.pairwise_distances(self.masks, modes), axis=1)
        self.scores = {
            "ged": seg.generalized_energy_distance(self.masks, modes, weights=p),
            "optimum": seg.ged_optimum(modes, p, self.num_samples),
            "diversity": seg.sample_diversity(self.masks),
            "probabilities": p,
            "nearest": np.bincount(nearest, minlength=len(p)) / self.num_samples,
        }
        self.top.show(self._top_row(i, modes, p))
        self.bottom.show(self._samples_grid())
        self.readout.value = self._table()

    def _enlarge(self, panels: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(panels, self._zoom, axis=1), self._zoom, axis=2)

    def _top_row(self, i: int, modes: np.ndarray, p: np.ndarray) -> np.ndarray:
        size = self.scenes.images.shape[1]
        blank = np.full((self._columns - len(modes) - 3, size, size, 3), _render.GAP_VALUE, np.uint8)
        marked = np.tensordot(p, modes.astype(np.float64), axes=1)
        panels = np.concatenate([_render.to_uint8(self.scenes.images[i:i + 1]), _grey(modes), blank,
                                 _grey(np.stack([marked, self.masks.mean(axis=0)]))])
        return _render.tile(self._enlarge(panels), 1, self._columns)

    def _samples_grid(self) -> np.ndarray:
        rows = -(-self.num_samples // self._columns)
        size = self.masks.shape[1]
        panels = np.full((rows * self._columns, size, size, 3), _render.GAP_VALUE, np.uint8)
        panels[:self.num_samples] = _grey(self.masks)
        return _render.tile(self._enlarge(panels), rows, self._columns)

    def _table(self) -> str:
        s = self.scores
        modes = "".join(f"<tr><td>mode {j + 1}</td><td style='text-align:right'>{p:.2f}</td>"
                        f"<td style='text-align:right'>{share:.2f}</td></tr>"
                        for j, (p, share) in enumerate(zip(s["probabilities"], s["nearest"])))
        n = self.num_samples
        summary = (
            (f"D²_GED of these {n} masks against the modes (d = 1 − IoU)", f"{s['ged']:.3f}"),
            (f"expected D²_GED of {n} draws from the true distribution (the optimum)", f"{s['optimum']:.3f}"),
            ("sample diversity (mean d between two drawn masks)", f"{s['diversity']:.3f}"),
        )
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'><b>{value}</b></td></tr>"
                       for name, value in summary)
        return ("<table><tr><th></th><th>probability π</th><th>share of drawn masks nearest</th></tr>"
                f"{modes}</table><table>{rows}</table>")
