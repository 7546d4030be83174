r"""The 2-D latent map: the decoded manifold and where the test images land.

For a model with :math:`z \in \mathbb{R}^2`, the manifold is decoded on a grid that is
uniform in probability, :math:`z_i = \Phi^{-1}(p_i)` with :math:`p_i` evenly spaced in
(0.05, 0.95) (:func:`vaekit.latent.inverse_cdf_grid`; Kingma & Welling, 2014, Fig. 4): each
cell then covers the same prior mass.
Beside it, the posterior means of the test images, coloured by label, show which regions
the encoder gives to which class. Clicking either picture (or moving the sliders) picks a
code and shows its decode.
"""

from __future__ import annotations

import ipyevents
import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.patches import Rectangle

from vaekit import batched, datasets
from vaekit.latent import inverse_cdf_grid
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PlotView, PngView, resolve_model

_NAME = "LatentMap"


class LatentMap(Dashboard):
    """The decoded 2-D manifold and the test set's codes; picking a point shows its decode.

    Args:
      model: a model with ``encode`` and ``decode`` and 2-D codes (:class:`vaekit.VAE`,
        :class:`vaekit.Autoencoder`, a module of one's own) or a :class:`vaekit.zoo.ZooModel`.
      data: labelled test images; a zoo model's test split if ``None``.
      grid_size: rows and columns of the manifold, 3–25.
      max_points: at most this many test codes are plotted.

    Raises:
      ValueError: the model's latent dimension is not 2, or a bad ``grid_size`` or data.

    Attributes:
      code: the picked code; :meth:`pick` moves it.
      manifold, picked: image views; ``scatter``: the plot of codes and its marker overlay
        (clicks on ``scatter.overlay`` and on ``manifold`` pick).
    """

    def __init__(self, model, data: datasets.Dataset | None = None, *, grid_size: int = 15, max_points: int = 5000):
        super().__init__()
        self.compiled, data = resolve_model(model, data, dashboard=_NAME, needs_data=True)
        if self.compiled.latent_dim != 2:
            raise ValueError(
                f"{_NAME} needs a model with latent_dim 2; got latent_dim {self.compiled.latent_dim} "
                "(use e.g. vk.zoo.Zoo().load(beta=1.0, latent_dim=2), or LatentTraversal for larger codes)"
            )
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or not 3 <= grid_size <= 25:
            raise ValueError(f"{_NAME}: grid_size must be an integer in [3, 25]; got {grid_size!r}")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"{_NAME}: max_points must be a positive integer; got {max_points!r}")
        self.axis_values = inverse_cdf_grid(grid_size)
        # Rows run from high z2 (top) to low z2 (bottom), as on the scatter plot.
        z1, z2 = np.meshgrid(self.axis_values, self.axis_values[::-1])
        self.grid_codes = np.stack([z1.ravel(), z2.ravel()], axis=-1)
        self.manifold = PngView(scale=1)
        self.manifold.show(_render.tile(self.compiled.decode(self.grid_codes), grid_size, grid_size))
        self._cell = data.image_shape[0] + _render.GAP

        # No tqdm bar: one displayed while a dashboard is built, then closed, is a dead widget in a Voila page.
        self.codes, _ = batched.encode(self.compiled.model, data.images[:max_points], progress=False)
        self.labels = data.labels[:max_points]
        limit = 1.05 * max(1.15 * float(self.axis_values[-1]), float(np.percentile(np.abs(self.codes), 99.5)))
        self.scatter = PlotView(440, 420)
        self._draw_scatter(data.classes, limit)
        self.picked = PngView(scale=4)

        self.z1 = widgets.FloatSlider(value=0.0, min=-limit, max=limit, step=0.01, description="z₁",
                                      readout_format="+.2f")
        self.z2 = widgets.FloatSlider(value=0.0, min=-limit, max=limit, step=0.01, description="z₂",
                                      readout_format="+.2f")
        self._draw()
        hint = "move the sliders or click again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.z1, "moving z₁", hint, self._draw)
        self._observe(self.z2, "moving z₂", hint, self._draw)
        self._scatter_clicks = ipyevents.Event(source=self.scatter.overlay, watched_events=["click"])
        self._scatter_clicks.on_dom_event(lambda event: self._run("picking on the map", hint,
                                                                  lambda: self.on_scatter_click(event)))
        self._manifold_clicks = ipyevents.Event(source=self.manifold.widget, watched_events=["click"])
        self._manifold_clicks.on_dom_event(lambda event: self._run("picking on the manifold", hint,
                                                                   lambda: self.on_manifold_click(event)))
        self.widget = self._assemble(
            widgets.HBox([
                widgets.VBox([widgets.HTML("<b>decoded manifold</b> (inverse-CDF grid; click a cell)"),
                              self.manifold.widget]),
                widgets.VBox([widgets.HTML("<b>test codes</b> (posterior means; click to pick)"),
                              self.scatter.widget]),
                widgets.VBox([widgets.HTML("<b>picked code</b>"), self.z1, self.z2, self.picked.widget]),
            ]),
        )

    def _draw_scatter(self, classes: tuple[str, ...], limit: float) -> None:
        ax = self.scatter.ax
        colours = matplotlib.colormaps["tab10"]
        for label in np.unique(self.labels):
            points = self.codes[self.labels == label]
            name = classes[label] if label < len(classes) else str(label)
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color=colours(int(label) % 10), label=name,
                       rasterized=True)
        edge = float(self.axis_values[-1])
        ax.add_patch(Rectangle((-edge, -edge), 2 * edge, 2 * edge, fill=False, ls="--", lw=0.8, color="0.4"))
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_xlabel("z₁", fontsize=8)
        ax.set_ylabel("z₂", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, markerscale=4, loc="upper right", framealpha=0.8)
        self.scatter.canvas.figure.subplots_adjust(left=0.1, right=0.98, bottom=0.1, top=0.98)
        self.scatter.redraw()

    def close(self) -> None:
        self._scatter_clicks.close()
        self._manifold_clicks.close()
        super().close()

    def pick(self, z1: float, z2: float) -> None:
        """Moves the pick to ``(z1, z2)`` (clipped to the sliders' range) and shows its decode."""
        with self._hold():
            self.z1.value = float(np.clip(z1, self.z1.min, self.z1.max))
            self.z2.value = float(np.clip(z2, self.z2.min, self.z2.max))
        self._draw()

    def on_scatter_click(self, event: dict) -> None:
        """Handles an ipyevents click on the scatter plot (``dataX``, ``dataY``: pixels of the PNG)."""
        self.pick(*self.scatter.canvas.data_from_pixel(event["dataX"], event["dataY"]))

    def on_manifold_click(self, event: dict) -> None:
        """Handles an ipyevents click on the manifold: picks the code of the clicked cell."""
        size = len(self.axis_values)
        column = int(np.clip(event["dataX"] // self._cell, 0, size - 1))
        row = int(np.clip(event["dataY"] // self._cell, 0, size - 1))
        self.pick(*self.grid_codes[row * size + column])

    @property
    def code(self) -> np.ndarray:
        """The picked code ``(2,)``."""
        return np.array([self.z1.value, self.z2.value], np.float32)

    def _draw(self) -> None:
        code = self.code
        self.picked.show(_render.tile(self.compiled.decode(code[None]), 1, 1))
        self.scatter.mark(float(code[0]), float(code[1]))
