r"""A gallery of prior samples with a temperature slider.

Each image decodes :math:`z = \tau\,\varepsilon` with :math:`\varepsilon \sim \mathcal{N}(0, I)` fixed
between moves, so the slider shows the same samples sharpen towards the decoded prior mean
(:math:`\tau \to 0`) or wander off into codes the decoder never saw (:math:`\tau > 1`).
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_range, resolve_model

_NAME = "SampleGallery"
TEMPERATURE_RANGE = (0.0, 2.0)


class SampleGallery(Dashboard):
    """Prior samples decoded at a temperature; the reseed button draws new noise.

    Args:
      model: a model with ``encode`` and ``decode`` (:class:`vaekit.VAE`, :class:`vaekit.Autoencoder`,
        a module of one's own) or a :class:`vaekit.zoo.ZooModel`.
      rows: rows of the gallery, 1–16.
      cols: columns of the gallery, 1–16.
      temperature: initial :math:`\\tau`, in [0, 2].
      seed: the first noise's seed (each reseed adds 1).

    Raises:
      ValueError: a size or temperature out of range (naming the range).
    """

    def __init__(self, model, *, rows: int = 8, cols: int = 8, temperature: float = 1.0, seed: int = 0):
        super().__init__()
        self.compiled, _ = resolve_model(model, None, dashboard=_NAME, needs_data=False)
        for name, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise ValueError(f"{_NAME}: {name} must be an integer in [1, 16]; got {value!r}")
        check_range(_NAME, "temperature", temperature, *TEMPERATURE_RANGE)
        self._shape = (rows, cols)
        self.seed = seed
        self.temperature = widgets.FloatSlider(value=temperature, min=TEMPERATURE_RANGE[0], max=TEMPERATURE_RANGE[1],
                                               step=0.05, description="temperature τ", readout_format=".2f",
                                               style={"description_width": "initial"})
        self.reseed_button = widgets.Button(description="reseed", icon="refresh", tooltip="draw new noise ε")
        self.gallery = PngView(scale=2)
        self._draw_noise()
        self._draw()
        hint = "move the slider again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.temperature, "changing the temperature", hint, self._draw)
        self._on_click(self.reseed_button, "reseeding", hint, self.reseed)
        self.widget = self._assemble(widgets.HBox([self.temperature, self.reseed_button]), self.gallery.widget)

    def _draw_noise(self) -> None:
        rows, cols = self._shape
        self._noise = np.random.default_rng(self.seed).standard_normal((rows * cols, self.compiled.latent_dim),
                                                                       dtype=np.float32)

    def reseed(self) -> None:
        """New noise :math:`\\varepsilon` (the next seed), same temperature."""
        self.seed += 1
        self._draw_noise()
        self._draw()

    def _draw(self) -> None:
        decoded = self.compiled.decode(np.float32(self.temperature.value) * self._noise)
        self.gallery.show(_render.tile(decoded, *self._shape))
