r"""The latent space: paths between codes, grids over the prior, and the dimensions that carry information.

* :func:`lerp` and :func:`slerp`: the straight and the great-circle path between two codes.
* :func:`inverse_cdf_grid`: a grid over the prior :math:`\mathcal{N}(0, 1)` whose cells hold equal mass.
* :func:`kl_per_dimension`: the rate split by latent dimension.
* :func:`activity` and :func:`active_units`: how much each dimension's code varies with the input
  (Burda et al., 2016); a dimension the decoder ignores collapses to the prior and stops varying.

Pure NumPy maths on top of :mod:`vaekit.batched`; the dashboards draw it.

References:
  Shoemake, *Animating Rotation with Quaternion Curves*, SIGGRAPH 1985 (slerp).
  White, *Sampling Generative Networks*, 2016.
  Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 (active units).
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from flax import nnx

from vaekit import batched, elbo
from vaekit.datasets import Dataset
from vaekit.models import check_positive_int

# Below this angle (radians) two codes point the same way and slerp is lerp to float64 precision.
_PARALLEL = 1e-7


def _endpoints(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be codes of the same shape (latent_dim,); got {a.shape} and {b.shape}")
    return a, b


def _path_times(t, dtype) -> np.ndarray:
    """``t`` with a trailing axis: ``t * a`` is ``(latent_dim,)`` for a number, ``(n, latent_dim)`` for ``(n,)``."""
    t = np.asarray(t, dtype)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D array of numbers; got shape {t.shape}")
    return t[..., None]


def lerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    r"""The straight path between two codes.

    .. math::

       \operatorname{lerp}(a, b; t) = (1 - t)\,a + t\,b.

    Its norm dips in the middle: for orthogonal codes of equal norm :math:`r`, the midpoint
    has norm :math:`r/\sqrt 2`. In high dimensions prior samples lie near the sphere
    :math:`\lVert z\rVert \approx \sqrt{d}`, so the middle of a straight path falls where the
    decoder saw few codes (White, 2016).

    Args:
      a: the code at :math:`t = 0`, ``(latent_dim,)``.
      b: the code at :math:`t = 1`, same shape.
      t: a number, or ``(n,)`` numbers (usually in ``[0, 1]``).

    Returns:
      ``(latent_dim,)`` for a number ``t``, ``(n, latent_dim)`` for ``(n,)``.

    Example:
      >>> lerp(np.array([0.0, 2.0]), np.array([2.0, 0.0]), 0.5)
      array([1., 1.])
    """
    a, b = _endpoints(a, b)
    dtype = np.result_type(a, b, np.float32)
    t = _path_times(t, dtype)
    return ((1 - t) * a + t * b).astype(dtype)


def slerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    r"""The great-circle path between two codes (spherical linear interpolation).

    .. math::

       \operatorname{slerp}(a, b; t) = \frac{\sin((1 - t)\Omega)}{\sin\Omega}\,a
                                      + \frac{\sin(t\Omega)}{\sin\Omega}\,b,
       \qquad \Omega = \angle(a, b) \in [0, \pi].

    The path lies in the plane of :math:`a` and :math:`b` and turns at a constant rate:
    the angle from :math:`a` is :math:`t\Omega`. What it does to the norm:

    * when :math:`\lVert a\rVert = \lVert b\rVert = r`, every point has norm :math:`r`: the
      path stays on the sphere, so it **keeps the norm** (and lerp's dip disappears);
    * otherwise the norm is neither kept nor linear in :math:`t`. For orthogonal codes,
      :math:`\lVert\operatorname{slerp}(a, b; t)\rVert^2 = \cos^2(\tfrac{\pi t}{2})\lVert a\rVert^2
      + \sin^2(\tfrac{\pi t}{2})\lVert b\rVert^2`.

    Two prior samples in many dimensions have nearly equal norms (:math:`\approx\sqrt d`),
    which is why slerp suits them (White, 2016). The angle is computed as
    :math:`\Omega = 2\arctan\big(\lVert\hat a - \hat b\rVert / \lVert\hat a + \hat b\rVert\big)`
    (:math:`\hat a = a/\lVert a\rVert`), accurate at small and large angles alike; all
    arithmetic is in ``float64``.

    Special cases: when :math:`a` and :math:`b` point the same way (:math:`\Omega = 0`) or one
    of them is zero, the angle gives no plane and slerp returns :func:`lerp`, the formula's
    limit as :math:`\Omega \to 0`. Opposite codes (:math:`\Omega = \pi`) lie on infinitely many
    great circles: that is an error.

    Args:
      a: the code at :math:`t = 0`, ``(latent_dim,)``.
      b: the code at :math:`t = 1`, same shape.
      t: a number, or ``(n,)`` numbers (usually in ``[0, 1]``).

    Returns:
      ``(latent_dim,)`` for a number ``t``, ``(n, latent_dim)`` for ``(n,)``.

    Raises:
      ValueError: if ``a`` and ``b`` point in opposite directions.

    Example:
      >>> np.round(slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5), 4)  # stays on the unit circle
      array([0.7071, 0.7071])
    """
    a, b = _endpoints(a, b)
    dtype = np.result_type(a, b, np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norm_a, norm_b = np.linalg.norm(a64), np.linalg.norm(b64)
    if norm_a == 0 or norm_b == 0:
        return lerp(a, b, t)
    unit_a, unit_b = a64 / norm_a, b64 / norm_b
    omega = 2.0 * math.atan2(np.linalg.norm(unit_a - unit_b), np.linalg.norm(unit_a + unit_b))
    if omega < _PARALLEL:
        return lerp(a, b, t)
    if math.pi - omega < _PARALLEL:
        raise ValueError("slerp: a and b point in opposite directions, so no single great circle joins them; "
                         "use lerp, or move one code slightly")
    t = _path_times(t, np.float64)
    path = (np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / math.sin(omega)
    return path.astype(dtype)


def inverse_cdf_grid(steps: int, *, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    r"""``steps`` values :math:`\Phi^{-1}(p)` for probabilities :math:`p` evenly spaced from ``low`` to ``high``.

    :math:`\Phi` is the standard normal CDF, so neighbouring values enclose equal prior
    mass: a grid of them over a 2-D latent space decodes the manifold with as many cells
    where the prior is dense as where it is thin (Kingma & Welling, 2014, figure 4).
    ``low`` and ``high`` stay away from 0 and 1, where :math:`\Phi^{-1}` is infinite.

    Args:
      steps: number of values, at least 1 (one value is :math:`\Phi^{-1}(\text{low})`).
      low: the first probability, ``0 < low < high``.
      high: the last probability, ``low < high < 1``.

    Returns:
      ``(steps,)`` increasing ``float32`` values.

    Example:
      >>> inverse_cdf_grid(4, low=0.2, high=0.8)  # the quantiles of 20%, 40%, 60%, 80%
      array([-0.8416212, -0.2533471,  0.2533471,  0.8416212], dtype=float32)
    """
    check_positive_int("steps", steps)
    if not 0 < low < high < 1:
        raise ValueError(f"low and high must satisfy 0 < low < high < 1; got low={low!r}, high={high!r}")
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf(p) for p in np.linspace(low, high, steps)], np.float32)


def kl_per_dimension(model: nnx.Module, data: Dataset | np.ndarray, *, condition: np.ndarray | int | None = None,
                     batch_size: int = batched.BATCH_SIZE, progress: bool | None = None) -> np.ndarray:
    r"""The mean KL of each latent dimension over the data, in nats.

    .. math::

       \overline{\mathrm{KL}}_j = \frac1N \sum_{n=1}^N \mathrm{KL}\big(q_\phi(z_j|x_n)\,\|\,p(z_j)\big),
       \qquad \sum_j \overline{\mathrm{KL}}_j = \text{mean rate}.

    A dimension with :math:`\overline{\mathrm{KL}}_j \approx 0` has a posterior equal to the
    prior for every input: it carries no information about :math:`x`.

    Args:
      model: a VAE (its ``encode`` gives ``(mean, log_var)``).
      data: a :class:`~vaekit.datasets.Dataset` or an array of images.
      condition: labels of a conditional model (a dataset's own by default).
      batch_size, progress: as in :func:`vaekit.batched.encode`.

    Returns:
      ``(latent_dim,)`` ``float64`` values :math:`\ge 0`.

    Raises:
      ValueError: for a model whose encoder gives a point (an autoencoder): it has no KL.
    """
    means, log_vars = batched.encode(model, data, condition=condition, batch_size=batch_size, progress=progress)
    if log_vars is None:
        raise ValueError(f"kl_per_dimension needs an encoder that gives a distribution (mean, log_var), as a VAE's "
                         f"does; this {type(model).__name__}'s gives a point, which has no KL")
    return np.asarray(elbo.gaussian_kl(means, log_vars), np.float64).mean(axis=0)


def activity(model: nnx.Module, data: Dataset | np.ndarray, *, condition: np.ndarray | int | None = None,
             batch_size: int = batched.BATCH_SIZE, progress: bool | None = None) -> np.ndarray:
    r"""How much each dimension's code moves with the input: Burda et al.'s activity statistic.

    .. math::

       A_j = \operatorname{Cov}_x\big(\mathbb{E}_{q_\phi(z|x)}[z_j]\big)
           = \frac1N \sum_{n=1}^N \big(\mu_j(x_n) - \bar\mu_j\big)^2,

    the variance over the data of the posterior mean :math:`\mu_j(x)` (of the code, for
    an autoencoder). :math:`A_j = 0` means dimension :math:`j` says the same thing about
    every input.

    Args:
      model: a VAE or an autoencoder.
      data: a :class:`~vaekit.datasets.Dataset` or an array of images.
      condition: labels of a conditional model (a dataset's own by default).
      batch_size, progress: as in :func:`vaekit.batched.encode`.

    Returns:
      ``(latent_dim,)`` ``float64`` variances.
    """
    means, _ = batched.encode(model, data, condition=condition, batch_size=batch_size, progress=progress)
    return np.var(means.astype(np.float64), axis=0)


def active_units(model: nnx.Module, data: Dataset | np.ndarray, threshold: float = 0.01, *,
                 condition: np.ndarray | int | None = None, batch_size: int = batched.BATCH_SIZE,
                 progress: bool | None = None) -> int:
    r"""The number of active latent dimensions: those whose :func:`activity` exceeds ``threshold``.

    .. math::

       \#\{\, j : A_j > \text{threshold} \,\}, \qquad
       A_j = \operatorname{Cov}_x\big(\mathbb{E}_{q_\phi(z|x)}[z_j]\big).

    Burda et al. (2016) use the threshold :math:`10^{-2}`: in their models the activities
    fall into two well-separated groups, and the threshold lies between them.

    Args:
      model: a VAE or an autoencoder.
      data: a :class:`~vaekit.datasets.Dataset` or an array of images.
      threshold: the activity above which a dimension counts, :math:`\ge 0`.
      condition, batch_size, progress: as in :func:`activity`.

    Returns:
      An ``int`` between 0 and ``latent_dim``.
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0; got {threshold!r}")
    values = activity(model, data, condition=condition, batch_size=batch_size, progress=progress)
    return int(np.sum(values > threshold))
