r"""The latent space: paths between codes, grids over the prior, and the dimensions that carry information.

* :func:`lerp` and :func:`slerp`: the straight and the great-circle path between two codes.
* :func:`inverse_cdf_grid`: a grid over the prior :math:`\mathcal{N}(0, 1)` whose cells hold equal mass.
* :func:`kl_per_dimension`: the rate split by latent dimension.
* :func:`activity` and :func:`active_units`: how much each dimension's code varies with the input
  (Burda et al., 2016); a dimension the decoder ignores collapses to the prior and stops varying.
* :func:`prior_log_density`, :func:`aggregate_log_density`, :func:`hole_fraction` and
  :func:`moment_matched_kl`: the codes of a whole data set (the aggregate posterior) against the prior.
* :func:`posterior_codes`, :func:`fitted_gaussian_sample`, :func:`nearest_code_distance` and
  :func:`holes_by_distance`: holes between the codes of any model with an encoder, an autoencoder's
  included, measured by distances alone.

Pure NumPy maths on top of :mod:`vaekit.batched`; the dashboards draw it.

References:
  Shoemake, *Animating Rotation with Quaternion Curves*, SIGGRAPH 1985 (slerp).
  White, *Sampling Generative Networks*, 2016.
  Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 (active units).
  Rosca, Lakshminarayanan & Mohamed, *Distribution Matching in Variational Inference*, 2018 (holes).
"""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple

import jax
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


# --- the aggregate posterior against the prior --------------------------------------------------------

def _code_matrix(name: str, codes) -> np.ndarray:
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (num, latent_dim) array; got shape {codes.shape}")
    return codes


def prior_log_density(z: np.ndarray) -> np.ndarray:
    r"""The log-density of the prior :math:`p(z) = \mathcal{N}(0, I)` at each row of ``z``.

    .. math::

       \log p(z) = -\tfrac12 \sum_{j=1}^{d} \big(z_j^2 + \log 2\pi\big).

    Args:
      z: ``(num, latent_dim)`` codes.

    Returns:
      ``(num,)`` ``float64`` log-densities.

    Example:
      >>> float(prior_log_density(np.zeros((1, 2)))[0]) == -math.log(2 * math.pi)
      True
    """
    z = _code_matrix("z", z)
    return -0.5 * np.sum(z**2 + math.log(2 * math.pi), axis=1)


def aggregate_log_density(z: np.ndarray, means: np.ndarray, log_vars: np.ndarray, *,
                          chunk_size: int = 256) -> np.ndarray:
    r"""The log-density of the aggregate posterior of a data set at each row of ``z``.

    The aggregate posterior is the mixture of every example's posterior, the distribution of
    codes the decoder is trained on:

    .. math::

       q(z) = \frac1N \sum_{n=1}^N \mathcal{N}\big(z;\, \mu_n, \operatorname{diag}\sigma_n^2\big),
       \qquad
       \log q(z) = \operatorname*{logsumexp}_n \Big[-\tfrac12 \sum_j \Big(\log 2\pi\sigma_{nj}^2
                   + \frac{(z_j - \mu_{nj})^2}{\sigma_{nj}^2}\Big)\Big] - \log N.

    The squares are expanded into matrix products, so memory grows with
    ``chunk_size * N``, not with ``latent_dim``. A VAE's ELBO pulls each
    :math:`q(z|x_n)` towards :math:`p(z)`, but nothing forces the mixture :math:`q(z)` to
    fill :math:`p(z)`: where :math:`q(z) \ll p(z)` the prior has *holes*, codes that prior
    samples reach and the decoder never saw (Rosca, Lakshminarayanan & Mohamed, 2018).

    Args:
      z: ``(num, latent_dim)`` points.
      means: ``(N, latent_dim)`` posterior means :math:`\mu_n`, e.g. from :func:`vaekit.batched.encode`.
      log_vars: ``(N, latent_dim)`` posterior log-variances :math:`\log\sigma_n^2`.
      chunk_size: rows of ``z`` handled at once.

    Returns:
      ``(num,)`` ``float64`` log-densities.

    Example:
      >>> codes = np.zeros((3, 2))  # three posteriors equal to the prior: q = p
      >>> bool(np.allclose(aggregate_log_density(np.ones((1, 2)), codes, codes), prior_log_density(np.ones((1, 2)))))
      True
    """
    z, means, log_vars = _code_matrix("z", z), _code_matrix("means", means), _code_matrix("log_vars", log_vars)
    if means.shape != log_vars.shape or z.shape[1] != means.shape[1]:
        raise ValueError(f"means and log_vars must have one shape (N, latent_dim) and z the same latent_dim; "
                         f"got z {z.shape}, means {means.shape}, log_vars {log_vars.shape}")
    check_positive_int("chunk_size", chunk_size)
    precisions = np.exp(-log_vars)
    # sum_j (z_j - mu_j)^2 / var_j = z^2 . prec - 2 z . (mu prec) + sum_j mu_j^2 prec_j
    constant = -0.5 * np.sum(log_vars + math.log(2 * math.pi) + means**2 * precisions, axis=1)
    out = np.empty(z.shape[0])
    for start in range(0, z.shape[0], chunk_size):
        chunk = z[start:start + chunk_size]
        log_components = constant - 0.5 * (chunk**2) @ precisions.T + chunk @ (means * precisions).T
        peak = log_components.max(axis=1, keepdims=True)
        out[start:start + chunk_size] = (peak[:, 0] + np.log(np.exp(log_components - peak).sum(axis=1))
                                         - math.log(means.shape[0]))
    return out


def hole_fraction(means: np.ndarray, log_vars: np.ndarray, *, key: jax.Array, num_draws: int = 2000,
                  ratio: float = 0.1, temperature: float = 1.0) -> float:
    r"""The share of prior samples that land where the encoded data are rare: the prior's holes.

    .. math::

       H_r(\tau) = \Pr_{z \sim \mathcal{N}(0, \tau^2 I)}\big[\, q(z) < r\, p(z) \,\big]
           \approx \frac1M \sum_{m=1}^M \mathbb{1}\big[\log q(z_m) - \log p(z_m) < \log r\big],

    with :math:`q` the aggregate posterior (:func:`aggregate_log_density`). Since
    :math:`\mathbb{E}_p[q/p] = 1`, a prior filled by the codes has :math:`q/p \approx 1`
    everywhere and :math:`H_r \approx 0`; :math:`H_{0.1} = 0.4` says that 40 % of prior samples
    fall where the training codes are at least ten times rarer than the prior expects, and
    decode to images from nowhere in the data. A temperature :math:`\tau < 1` draws from the
    tempered prior :math:`\mathcal{N}(0, \tau^2 I)`, as :meth:`vaekit.VAE.sample` does, and
    measures how many of *those* samples fall into holes (the hole is still judged against
    :math:`p`).

    Args:
      means, log_vars: ``(N, latent_dim)`` posterior parameters of a data set.
      key: PRNG key for the :math:`M` prior draws.
      num_draws: :math:`M`.
      ratio: :math:`r`, in ``(0, 1]``.
      temperature: :math:`\tau > 0`; 1 draws from the prior itself.

    Returns:
      A ``float`` in ``[0, 1]``.
    """
    means = _code_matrix("means", means)
    check_positive_int("num_draws", num_draws)
    if isinstance(ratio, bool) or not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise ValueError(f"ratio must be a number in (0, 1]; got {ratio!r}")
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                                             and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    z = temperature * np.asarray(jax.random.normal(key, (num_draws, means.shape[1])), np.float64)
    log_ratio = aggregate_log_density(z, means, log_vars) - prior_log_density(z)
    return float(np.mean(log_ratio < math.log(ratio)))


def moment_matched_kl(codes: np.ndarray) -> float:
    r"""How far a cloud of codes is from the prior, by its mean and covariance alone.

    Fits :math:`\mathcal{N}(m, S)` to the codes (sample mean :math:`m`, maximum-likelihood
    covariance :math:`S`) and returns its KL to the prior:

    .. math::

       \mathrm{KL}\big(\mathcal{N}(m, S)\,\|\,\mathcal{N}(0, I)\big)
       = \tfrac12\big(\operatorname{tr} S + m^\top m - d - \log\det S\big).

    Fed with one draw :math:`z_n \sim q(z|x_n)` per example (a sample of the aggregate
    posterior), it is 0 when the codes have the prior's first two moments. It cannot see
    holes inside a cloud with the right moments (:func:`hole_fraction` can), but it works in
    any dimension where there are more codes than dimensions.

    Args:
      codes: ``(num, latent_dim)`` with ``num > latent_dim``.

    Returns:
      A ``float`` :math:`\ge 0`, in nats.

    Raises:
      ValueError: if there are not more codes than dimensions, or the codes lie in a
        lower-dimensional subspace (a singular :math:`S`).

    Example:
      >>> round(moment_matched_kl(np.array([[1.0], [-1.0]])), 6)  # mean 0, variance 1: the prior's moments
      0.0
    """
    codes = _code_matrix("codes", codes)
    num, dim = codes.shape
    if num <= dim:
        raise ValueError(f"moment_matched_kl needs more codes than dimensions to estimate a covariance; "
                         f"got {num} codes of dimension {dim}")
    mean = codes.mean(axis=0)
    covariance = np.cov(codes, rowvar=False, bias=True).reshape(dim, dim)
    sign, log_det = np.linalg.slogdet(covariance)
    if sign <= 0:
        raise ValueError("moment_matched_kl: the codes' covariance is singular (they lie in a subspace); "
                         "pass samples z ~ q(z|x), not identical or collinear codes")
    return float(0.5 * (np.trace(covariance) + mean @ mean - dim - log_det))


# --- holes between the codes, for any model with an encoder --------------------------------------------

def posterior_codes(model: nnx.Module, data: Dataset | np.ndarray, *, key: jax.Array,
                    condition: np.ndarray | int | None = None, batch_size: int = batched.BATCH_SIZE,
                    progress: bool | None = None) -> np.ndarray:
    r"""One code per example, as the decoder meets them in training.

    .. math::

       z_n \sim q_\phi(z|x_n) = \mathcal{N}\big(\mu_n, \operatorname{diag}\sigma_n^2\big) \ \text{(a VAE)},
       \qquad z_n = f_\phi(x_n) \ \text{(an autoencoder)}.

    A VAE's decoder is trained on draws from each posterior, not on its mean, so the cloud
    of codes it has seen is the cloud of draws (a sample of the aggregate posterior); an
    autoencoder's decoder sees the code itself, and ``key`` is not used.

    Args:
      model: a VAE (``encode`` gives ``(mean, log_var)``) or an autoencoder (``encode`` gives a code).
      data: a :class:`~vaekit.datasets.Dataset` or an array of images.
      key: PRNG key of the draws.
      condition, batch_size, progress: as in :func:`vaekit.batched.encode`.

    Returns:
      ``(N, latent_dim)`` ``float32`` codes.
    """
    means, log_vars = batched.encode(model, data, condition=condition, batch_size=batch_size, progress=progress)
    if log_vars is None:
        return means
    return np.asarray(elbo.reparameterize(means, log_vars, key=key))


def fitted_gaussian_sample(codes: np.ndarray, num: int, *, key: jax.Array) -> np.ndarray:
    r"""Draws from the Gaussian with the mean and covariance of a cloud of codes.

    .. math::

       z = m + L\varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, I), \qquad LL^\top = S,

    with :math:`m` the codes' mean and :math:`S` their (unbiased) covariance. An autoencoder
    has no prior to sample; this is the most generous stand-in for one built from its codes
    alone: it puts random codes where the codes are on average and as spread as they are,
    but knows nothing of the gaps inside the cloud (Ghosh et al., 2020, fit such densities
    to a deterministic autoencoder's codes after training).

    Args:
      codes: ``(n, latent_dim)`` with ``n > latent_dim``.
      num: number of draws, at least 1.
      key: PRNG key.

    Returns:
      ``(num, latent_dim)`` ``float32`` codes.

    Raises:
      ValueError: if there are not more codes than dimensions, or their covariance is singular.

    Example:
      >>> codes = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
      >>> fitted_gaussian_sample(codes, 3, key=jax.random.key(0)).shape
      (3, 2)

    References:
      Ghosh, Sajjadi, Vergari, Black & Schölkopf, *From Variational to Deterministic
      Autoencoders*, ICLR 2020.
    """
    codes = _code_matrix("codes", codes)
    check_positive_int("num", num)
    count, dim = codes.shape
    if count <= dim:
        raise ValueError(f"fitted_gaussian_sample needs more codes than dimensions to estimate a covariance; "
                         f"got {count} codes of dimension {dim}")
    covariance = np.cov(codes, rowvar=False).reshape(dim, dim)
    eigenvalues = np.linalg.eigvalsh(covariance)
    if eigenvalues[0] <= dim * np.finfo(np.float64).eps * eigenvalues[-1]:
        raise ValueError("fitted_gaussian_sample: the codes' covariance is singular (they lie in a subspace), "
                         "so no Gaussian density fits them")
    cholesky = np.linalg.cholesky(covariance)
    noise = np.asarray(jax.random.normal(key, (num, dim)), np.float64)
    return (codes.mean(axis=0) + noise @ cholesky.T).astype(np.float32)


def nearest_code_distance(points: np.ndarray, codes: np.ndarray, *, chunk_size: int = 1024) -> np.ndarray:
    r"""The Euclidean distance from each point to the nearest of a set of codes.

    .. math::

       d(z) = \min_{n=1..N} \lVert z - c_n \rVert_2,
       \qquad \lVert z - c \rVert^2 = \lVert z\rVert^2 - 2\, z^\top c + \lVert c\rVert^2,

    the expansion computing all :math:`N` squared distances of ``chunk_size`` points as one
    matrix product, in ``float64`` (memory grows with ``chunk_size * N``).

    Args:
      points: ``(num, latent_dim)``.
      codes: ``(N, latent_dim)``, the same ``latent_dim``.
      chunk_size: points handled at once.

    Returns:
      ``(num,)`` ``float64`` distances.

    Example:
      >>> nearest_code_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 1.0], [3.0, 0.0]]))
      array([1., 4.])
    """
    points, codes = _code_matrix("points", points), _code_matrix("codes", codes)
    if points.shape[1] != codes.shape[1]:
        raise ValueError(f"points and codes must have the same latent_dim; got {points.shape[1]} and {codes.shape[1]}")
    check_positive_int("chunk_size", chunk_size)
    code_norms = np.sum(codes**2, axis=1)
    out = np.empty(points.shape[0])
    for start in range(0, points.shape[0], chunk_size):
        chunk = points[start:start + chunk_size]
        # ||z||^2 is the same for every code, so it joins after the minimum; in place, the
        # (chunk_size, N) matrix is written once instead of three times (about 10x faster).
        partial = chunk @ codes.T
        partial *= -2.0
        partial += code_norms
        squared = partial.min(axis=1) + np.sum(chunk**2, axis=1)
        out[start:start + chunk_size] = np.sqrt(np.maximum(squared, 0.0))  # rounding can dip below 0
    return out


class HoleTest(NamedTuple):
    """What :func:`holes_by_distance` measured.

    Attributes:
      radius: :math:`r`, the ``quantile`` of the held-out codes' distances to the training codes.
      distances: ``(M,)`` each sample's distance :math:`d(z_m)` to the nearest training code.
      in_hole: ``(M,)`` booleans, :math:`d(z_m) > r`.
      fraction: the share of samples in holes, :math:`H`.
    """

    radius: float
    distances: np.ndarray
    in_hole: np.ndarray
    fraction: float


def holes_by_distance(samples: np.ndarray, codes: np.ndarray, held_out: np.ndarray, *,
                      quantile: float = 0.99) -> HoleTest:
    r"""Which sampled codes fall in holes of a cloud of training codes: farther from all of them than new data's are.

    .. math::

       r = Q_q\big(d(z'_1), \dots, d(z'_K)\big), \qquad
       \text{hole}(z) = \big[d(z) > r\big], \qquad
       H = \frac1M \sum_{m=1}^M \big[d(z_m) > r\big],

    with :math:`d` the distance to the nearest training code (:func:`nearest_code_distance`),
    :math:`z'_k` the codes of held-out images and :math:`Q_q` their :math:`q`-quantile. A
    code is in a hole when it lies farther from every training code than all but
    :math:`1 - q` of new images' codes do: by construction a fraction :math:`1 - q` of the
    held-out codes themselves counts as in holes, so :math:`H \approx 1 - q` says the samples
    land among the training codes as closely as real new images do, and :math:`H \to 1` says
    they land where the decoder never saw a code.

    :func:`hole_fraction` compares densities and so needs a VAE's posterior variances; this
    test uses distances only, so it applies to an autoencoder's points as well, and each
    model is measured against its own held-out codes whatever the size of its code cloud.
    Nearest-neighbour distances grow with the latent size and shrink as :math:`N` grows:
    compare models at the same latent size and the same number of codes. And it says where
    the decoder was not trained, not what it does there: a smooth decoder may still turn a
    code in a hole into a plausible image.

    Args:
      samples: ``(M, latent_dim)`` codes to test, e.g. prior draws.
      codes: ``(N, latent_dim)`` the training codes (e.g. :func:`posterior_codes` of the training set).
      held_out: ``(K, latent_dim)`` codes of images not among the training ones, drawn the same way.
      quantile: :math:`q`, in ``(0, 1)``.

    Returns:
      A :class:`HoleTest`.

    Example:
      >>> codes = np.array([[-1.0], [-0.9], [0.9], [1.0]])  # two clumps, a gap at 0
      >>> test = holes_by_distance(np.array([[0.0], [0.99]]), codes, np.array([[-1.05], [1.02]]), quantile=0.5)
      >>> test.in_hole.tolist(), test.fraction
      ([True, False], 0.5)
    """
    if not (isinstance(quantile, (int, float)) and not isinstance(quantile, bool) and 0 < quantile < 1):
        raise ValueError(f"quantile must be a number in (0, 1); got {quantile!r}")
    codes = _code_matrix("codes", codes)
    reference = nearest_code_distance(_code_matrix("held_out", held_out), codes)
    radius = float(np.quantile(reference, quantile))
    distances = nearest_code_distance(samples, codes)
    in_hole = distances > radius
    return HoleTest(radius, distances, in_hole, float(in_hole.mean()))
