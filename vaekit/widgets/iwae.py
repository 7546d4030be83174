r"""The IWAE bound against the ELBO, with a slider over the number of importance samples :math:`k`.

.. math::

   \mathrm{ELBO} = \mathcal{L}_1 \le \mathcal{L}_k = \mathbb{E}\Big[\log \frac1k \sum_{i=1}^k w_i\Big]
   \le \log p_\theta(x), \qquad w_i = \frac{p_\theta(x, z_i)}{q_\phi(z_i|x)}, \quad z_i \sim q_\phi(z|x).

The dashboard draws :math:`K` importance samples per test image once, then shows the curve of
:math:`\mathcal{L}_k` over :math:`k` (:func:`vaekit.estimators.iwae_bounds`) and, at the slider's
:math:`k`, how many nats the bound has gained over the ELBO: the part of the ELBO's gap to
:math:`\log p_\theta(x)` that more samples recover.
"""

from __future__ import annotations

import functools

import ipywidgets as widgets
import jax
import numpy as np
from flax import nnx

from vaekit import datasets, elbo, estimators, zoo
from vaekit.widgets._dashboard import Dashboard, PlotView, resolve_model

_NAME = "IwaeGap"
SAMPLE_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""The values of :math:`k` the slider offers (those up to ``max_samples``)."""
CHUNK = 100


@functools.partial(nnx.jit, static_argnames="num_samples")
def _log_weights(model, x, key, num_samples):
    return elbo.log_importance_weights(model, x, key=key, num_samples=num_samples)


class IwaeGap(Dashboard):
    """A slider over :math:`k` and the curve of :math:`\\mathcal{L}_k` (nats per image) it moves along.

    Args:
      model: a VAE (``encode`` giving ``(mean, log_var)`` and ``log_likelihood``) or a
        :class:`vaekit.zoo.ZooModel`.
      data: test images; a zoo model's test split if ``None``. Use binarized images for
        :math:`\\mathcal{L}_k` to bound a log-likelihood (on grey pixels it bounds a cross-entropy).
      num_images: how many of ``data``'s first images are averaged, 1–1000.
      max_samples: :math:`K`, the importance samples drawn per image: one of :data:`SAMPLE_COUNTS`.
      k: the slider's first value, one of :data:`SAMPLE_COUNTS` up to ``max_samples``.
      seed: seeds the draws.

    Raises:
      TypeError: a model that is not a VAE (an autoencoder's code is a point: it has no bound).
      ValueError: a size outside its range (naming the allowed values).

    Attributes:
      ks: the slider's values of :math:`k`; ``bounds``: :math:`\\mathcal{L}_k` for each.
      elbo: :math:`\\mathcal{L}_1`, the ELBO of the same draws.
    """

    def __init__(self, model, data: datasets.Dataset | None = None, *, num_images: int = 100,
                 max_samples: int = 1000, k: int = 1, seed: int = 0):
        super().__init__()
        _, data = resolve_model(model, data, dashboard=_NAME, needs_data=True)
        model = model.model if isinstance(model, zoo.ZooModel) else model
        encoded = model.encode(jax.numpy.asarray(data.images[:1]))
        if not callable(getattr(model, "log_likelihood", None)) or not isinstance(encoded, tuple):
            raise TypeError(f"{_NAME}: the model must be a VAE, whose encode gives (mean, log_var) and which has a "
                            f"log_likelihood method; a {type(model).__name__} defines no bound")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= min(1000, len(data)):
            raise ValueError(f"{_NAME}: num_images must be an integer in [1, {min(1000, len(data))}]; got {num_images!r}")
        if max_samples not in SAMPLE_COUNTS:
            raise ValueError(f"{_NAME}: max_samples must be one of {SAMPLE_COUNTS}; got {max_samples!r}")
        self.ks = tuple(s for s in SAMPLE_COUNTS if s <= max_samples)
        if k not in self.ks:
            raise ValueError(f"{_NAME}: k must be one of {self.ks}; got {k!r}")
        x = jax.numpy.asarray(data.images[:num_images])
        keys = jax.random.split(jax.random.key(seed), -(-max_samples // CHUNK))
        chunk = min(CHUNK, max_samples)
        log_w = np.concatenate([np.asarray(_log_weights(model, x, key, chunk)) for key in keys])[:max_samples]
        self.bounds = estimators.iwae_bounds(log_w, self.ks)
        self.elbo = float(self.bounds[0])

        self.slider = widgets.SelectionSlider(options=self.ks, value=k, description="samples k",
                                              style={"description_width": "initial"})
        self.readout = widgets.HTML()
        self.plot = PlotView(460, 300)
        ax = self.plot.ax
        ax.semilogx(self.ks, self.bounds, "o-", color="#1f77b4", label=r"IWAE bound $\mathcal{L}_k$")
        ax.axhline(self.elbo, color="#888888", linestyle="--", label=r"ELBO ($\mathcal{L}_1$)")
        ax.set_xlabel("importance samples k")
        ax.set_ylabel("nats per image")
        ax.legend(loc="lower right")
        self.plot.canvas.figure.tight_layout()
        self.plot.redraw()
        self._draw()
        self._observe(self.slider, "changing k", "move the slider again; if it persists, re-run the cell", self._draw)
        self.widget = self._assemble(self.slider, self.readout, self.plot.widget)

    @property
    def bound(self) -> float:
        """:math:`\\mathcal{L}_k` at the slider's :math:`k`."""
        return float(self.bounds[self.ks.index(self.slider.value)])

    def _draw(self) -> None:
        k = self.slider.value
        self.plot.mark(k, self.bound, label=f"k={k}")
        self.readout.value = (f"k = {k}: IWAE bound {self.bound:.2f}, ELBO {self.elbo:.2f} nats per image; "
                              f"<b>gap {self.bound - self.elbo:.2f} nats</b>")
