r"""Interpolating between two test images in latent space: linear and spherical paths side by side.

With codes :math:`a, b` (posterior means, or an autoencoder's codes) and :math:`t \in [0, 1]`, the
paths are :func:`vaekit.latent.lerp` and :func:`vaekit.latent.slerp`:

.. math::

   \operatorname{lerp}(a, b; t) = (1 - t)\,a + t\,b, \qquad
   \operatorname{slerp}(a, b; t) = \frac{\sin((1 - t)\Omega)}{\sin\Omega}\,a + \frac{\sin(t\Omega)}{\sin\Omega}\,b,
   \quad \Omega = \angle(a, b).

In high dimensions prior samples concentrate near the sphere :math:`\lVert z\rVert \approx \sqrt{d}`;
the midpoint of a straight line is shorter than both ends and falls where the decoder saw
few codes, while the spherical path between codes of equal norm keeps it (White, *Sampling
Generative Networks*, 2016). The dashboard prints the norms along both paths.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from vaekit import datasets
from vaekit.latent import lerp, slerp
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PngView, check_index, resolve_model

_NAME = "Interpolation"


class Interpolation(Dashboard):
    """Two test images, a slider ``t``, and the linear and spherical paths between their codes.

    The strips show both whole paths (originals at the ends); the pair of larger images
    shows both interpolants at the slider's ``t``, decoded together in one compiled call.

    Args:
      model: a model with ``encode`` and ``decode`` (:class:`vaekit.VAE`, :class:`vaekit.Autoencoder`,
        a module of one's own) or a :class:`vaekit.zoo.ZooModel`.
      data: test images; a zoo model's test split if ``None``.
      start: index of the first image.
      end: index of the second image.
      steps: decoded points along each strip, 3–15.
      seed: seeds the random-pair button.

    Raises:
      ValueError: an index outside the data or a bad ``steps`` (naming the allowed range).

    Attributes:
      code_a, code_b: the codes of the two images (posterior means for a VAE).
      strips, current: the image views (``.value`` holds the PNG bytes shown).
    """

    def __init__(self, model, data: datasets.Dataset | None = None, *, start: int = 0, end: int = 1,
                 steps: int = 9, seed: int = 0):
        super().__init__()
        self.compiled, data = resolve_model(model, data, dashboard=_NAME, needs_data=True)
        check_index(_NAME, "start", start, len(data))
        check_index(_NAME, "end", end, len(data))
        if isinstance(steps, bool) or not isinstance(steps, int) or not 3 <= steps <= 15:
            raise ValueError(f"{_NAME}: steps must be an integer in [3, 15]; got {steps!r}")
        self.data = data
        self._steps = np.linspace(0.0, 1.0, steps, dtype=np.float32)
        self._rng = np.random.default_rng(seed)

        self.start = widgets.BoundedIntText(value=start, min=0, max=len(data) - 1, description="image A")
        self.end = widgets.BoundedIntText(value=end, min=0, max=len(data) - 1, description="image B")
        self.random_button = widgets.Button(description="random pair", icon="random")
        self.t = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="t", readout_format=".2f")
        self.strips = PngView(scale=2)
        self.current = PngView(scale=4)
        self.norms = widgets.HTML()
        self._set_pair()
        self._draw()

        hint = "move the slider again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.t, "moving t", hint, self._draw)
        for control in (self.start, self.end):
            self._observe(control, "choosing an image", "pick an index in the allowed range", self._change_pair)
        self._on_click(self.random_button, "drawing a random pair", hint, self.random_pair)
        self.widget = self._assemble(
            widgets.HBox([self.start, self.end, self.random_button]),
            widgets.HTML("<b>linear</b> (top) and <b>spherical</b> (bottom) paths from A to B"),
            self.strips.widget,
            self.t,
            widgets.HBox([widgets.VBox([widgets.HTML("<b>linear</b> &nbsp;&nbsp;&nbsp; <b>spherical</b> at t"),
                                        self.current.widget]), self.norms]),
        )

    def random_pair(self) -> None:
        """Two different random test images."""
        a, b = self._rng.choice(len(self.data), size=2, replace=False)
        with self._hold():
            self.start.value, self.end.value = int(a), int(b)
        self._change_pair()

    def _set_pair(self) -> None:
        images = self.data.images[[self.start.value, self.end.value]]
        self.code_a, self.code_b = self.compiled.encode(images)
        path = np.concatenate([lerp(self.code_a, self.code_b, self._steps), slerp(self.code_a, self.code_b, self._steps)])
        decoded = self.compiled.decode(path)
        decoded = decoded.reshape(2, len(self._steps), *decoded.shape[1:])
        ends = _render.to_uint8(images)
        rows = [np.concatenate([ends[:1], decoded[i], ends[1:]]) for i in range(2)]
        self.strips.show(_render.tile(np.concatenate(rows), 2, len(self._steps) + 2))

    def _change_pair(self) -> None:
        self._set_pair()
        self._draw()

    def _draw(self) -> None:
        t = self.t.value
        codes = np.stack([lerp(self.code_a, self.code_b, t), slerp(self.code_a, self.code_b, t)])
        self.current.show(_render.tile(self.compiled.decode(codes), 1, 2))
        norm_a, norm_b = np.linalg.norm(self.code_a), np.linalg.norm(self.code_b)
        self.norms.value = (f"‖z‖ at t = {t:.2f}: linear <b>{np.linalg.norm(codes[0]):.2f}</b>, "
                            f"spherical <b>{np.linalg.norm(codes[1]):.2f}</b> (ends: {norm_a:.2f}, {norm_b:.2f}; "
                            f"√d = {np.sqrt(self.compiled.latent_dim):.2f})")
