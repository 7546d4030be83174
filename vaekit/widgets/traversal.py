r"""Latent traversal: move one coordinate of :math:`z` at a time and watch the decoded image.

For a VAE the sliders are ordered by each dimension's average KL on the data,
:math:`\frac1N\sum_n \mathrm{KL}(q(z_j|x_n)\,\|\,p(z_j))` (:func:`vaekit.latent.kl_per_dimension`):
a dimension whose KL is near 0 has a posterior equal to the prior for every image, carries no
information, and the decoder learns to ignore it (an *inactive* unit, Burda et al., 2016).
Large β switches more of them off. An autoencoder's code has no KL: its dimensions are ordered
by their activity, the variance of the code over the data (:func:`vaekit.latent.activity`).
Offsets are in prior standard deviations (the prior is :math:`\mathcal{N}(0, I)`).
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from vaekit import datasets, latent
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_index, check_range, resolve_model

_NAME = "LatentTraversal"
LABEL_WIDTH = 56  # pixels of the grid's row labels
CENTRES = ("test image", "prior mean")


class LatentTraversal(Dashboard):
    """One slider per latent dimension around a test image's code or the prior mean, and a traversal grid.

    The grid has one row per dimension (most informative first) and one column per offset
    from −``span`` to +``span``: row :math:`j` decodes the current code with :math:`z_j`
    replaced by ``centre_j + offset``. Every move decodes the current image and the grid
    in one compiled call.

    Args:
      model: a model with ``encode`` and ``decode`` (:class:`vaekit.VAE`, :class:`vaekit.Autoencoder`,
        a module of one's own) or a :class:`vaekit.zoo.ZooModel`.
      data: test images (a :class:`vaekit.Dataset`); a zoo model's test split if ``None``.
      image_index: the test image whose code (posterior mean) is the centre, or ``None`` to
        start at the prior mean.
      steps: columns of the grid, 3–15.
      max_rows: rows of the grid (the dimensions that score highest), 1–64.
      span: the sliders' half-range in prior standard deviations, in (0, 5].
      threshold: dimensions scoring below this are marked inactive (mean KL in nats for a
        VAE, activity for an autoencoder; Burda et al. use 0.01).
      num_images: at most this many images of ``data`` score the dimensions.
      seed: seeds the random button.

    Raises:
      ValueError: a bad index, step count, span or count (naming the allowed values), or data of the wrong shape.

    Attributes:
      measure: ``"KL"`` for a model whose encoder gives a distribution, else ``"activity"``.
      scores: each latent dimension's mean KL (nats) or activity; ``order``: dimensions by
        decreasing score; ``active``: score at least ``threshold``.
      sliders: one per dimension, in ``order``; :meth:`slider` finds a dimension's.
      centre_code: the code the offsets are added to; ``grid_dims`` and ``grid_offsets``: the
        grid's rows (dimensions) and columns (offsets).
      current, grid: the image views (``.value`` holds the PNG bytes shown).
    """

    def __init__(
        self,
        model,
        data: datasets.Dataset | None = None,
        *,
        image_index: int | None = 0,
        steps: int = 9,
        max_rows: int = 10,
        span: float = 3.0,
        threshold: float = 0.01,
        num_images: int = 2000,
        seed: int = 0,
    ):
        super().__init__()
        self.compiled, data = resolve_model(model, data, dashboard=_NAME, needs_data=True)
        if image_index is not None:
            check_index(_NAME, "image_index", image_index, len(data))
        for name, value, low, high in (("steps", steps, 3, 15), ("max_rows", max_rows, 1, 64)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{_NAME}: {name} must be an integer in [{low}, {high}]; got {value!r}")
        check_range(_NAME, "span", span, 1e-3, 5.0)
        check_range(_NAME, "threshold", threshold, 0.0, float("inf"))
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"{_NAME}: num_images must be a positive integer; got {num_images!r}")
        self.data = data
        # No tqdm bar: one displayed while a dashboard is built, then closed, is a dead widget in a Voila page.
        images = data.images[:num_images]
        if self.compiled.gives_distribution:
            self.measure, self.scores = "KL", latent.kl_per_dimension(self.compiled.model, images, progress=False)
        else:
            self.measure, self.scores = "activity", latent.activity(self.compiled.model, images, progress=False)
        self.order = np.argsort(-self.scores, kind="stable")
        self.active = self.scores >= threshold
        self.grid_dims = self.order[: min(max_rows, self.compiled.latent_dim)]
        self.grid_offsets = np.linspace(-span, span, steps, dtype=np.float32)
        self._rng = np.random.default_rng(seed)
        self._span = span

        self.centre = widgets.ToggleButtons(options=CENTRES, value=CENTRES[0] if image_index is not None else CENTRES[1],
                                            description="centre")
        self.image_index = widgets.BoundedIntText(value=image_index or 0, min=0, max=len(data) - 1,
                                                  description="test image")
        self.reset_button = widgets.Button(description="reset", icon="undo", tooltip="all offsets to 0")
        self.random_button = widgets.Button(description="random", icon="random",
                                            tooltip="offsets drawn from the prior N(0, 1), clipped to the range")
        self.sliders: list[widgets.FloatSlider] = []
        rows = []
        for dim in self.order:
            slider = widgets.FloatSlider(value=0.0, min=-span, max=span, step=0.05, description=f"z{dim}",
                                         readout_format="+.2f", continuous_update=True)
            note = f"{self.measure} {self.scores[dim]:.2f}" + ("" if self.active[dim] else " · inactive")
            if not self.active[dim]:
                slider.style.handle_color = "#bdbdbd"
            self.sliders.append(slider)
            rows.append(widgets.HBox([slider, widgets.Label(note)]))
        self._slider_dims = self.order.copy()
        self.current = PngView(scale=4)
        self.grid = PngView(scale=2)
        size = data.image_shape[0]
        self._labels = _render.label_column(
            [f"z{d} {self.scores[d]:.2f}" + ("" if self.active[d] else " off") for d in self.grid_dims],
            row_height=size, width=LABEL_WIDTH, greyed=[not self.active[d] for d in self.grid_dims],
        )
        self.centre_code = np.zeros(self.compiled.latent_dim, np.float32)
        self._set_centre()
        self._draw()

        hint = "press reset; if it persists, re-run the cell that built the dashboard"
        for slider in self.sliders:
            self._observe(slider, "moving a latent slider", hint, self._draw)
        self._observe(self.centre, "changing the centre", hint, self._recentre)
        self._observe(self.image_index, "choosing the test image", "pick an index in the allowed range", self._recentre)
        self._on_click(self.reset_button, "resetting", hint, self.reset)
        self._on_click(self.random_button, "drawing random offsets", hint, self.randomize)
        self.widget = self._assemble(
            widgets.HBox([self.centre, self.image_index, self.reset_button, self.random_button]),
            widgets.HBox([
                widgets.VBox(rows, layout=widgets.Layout(max_height="420px", overflow="auto", width="430px")),
                widgets.VBox([widgets.HTML("<b>current code</b>"), self.current.widget]),
                widgets.VBox([widgets.HTML(f"<b>traversals</b> ({self.grid_offsets[0]:+g} … {self.grid_offsets[-1]:+g} σ)"),
                              self.grid.widget]),
            ]),
        )

    def slider(self, dim: int) -> widgets.FloatSlider:
        """The slider of latent dimension ``dim``."""
        return self.sliders[int(np.flatnonzero(self._slider_dims == dim)[0])]

    def offsets(self) -> np.ndarray:
        """The sliders' offsets, indexed by latent dimension."""
        values = np.zeros(self.compiled.latent_dim, np.float32)
        values[self._slider_dims] = [s.value for s in self.sliders]
        return values

    def _set_centre(self) -> None:
        if self.centre.value == CENTRES[1]:
            self.centre_code = np.zeros(self.compiled.latent_dim, np.float32)
        else:
            self.centre_code = self.compiled.encode(self.data.images[self.image_index.value][None])[0]

    def _recentre(self) -> None:
        self._set_centre()
        self._draw()

    def _set_offsets(self, values: np.ndarray) -> None:
        with self._hold():
            for slider, dim in zip(self.sliders, self._slider_dims):
                slider.value = float(values[dim])
        self._draw()

    def reset(self) -> None:
        """All offsets back to 0 (the centre itself)."""
        self._set_offsets(np.zeros(self.compiled.latent_dim, np.float32))

    def randomize(self) -> None:
        """Offsets drawn from the prior, clipped to the sliders' range."""
        draw = self._rng.standard_normal(self.compiled.latent_dim).astype(np.float32)
        self._set_offsets(np.clip(draw, -self._span, self._span))

    def _draw(self) -> None:
        code = self.centre_code + self.offsets()
        rows, steps = len(self.grid_dims), len(self.grid_offsets)
        grid_codes = np.repeat(code[None], rows * steps, axis=0).reshape(rows, steps, -1)
        grid_codes[np.arange(rows), :, self.grid_dims] = self.centre_code[self.grid_dims, None] + self.grid_offsets[None]
        decoded = self.compiled.decode(np.concatenate([code[None], grid_codes.reshape(rows * steps, -1)]))
        self.current.show(_render.tile(decoded[:1], 1, 1))
        grid = _render.tile(decoded[1:], rows, steps)
        labels = self._labels if grid.ndim == 2 else np.repeat(self._labels[..., None], grid.shape[-1], axis=-1)
        self.grid.show(np.concatenate([labels, grid], axis=1))
