"""Checkers of chapter 05: the PSNR of an image pair and the Fréchet distance between two feature sets."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from vaekit.exercises._core import ATOL, RTOL, Case, Edge, Feedback, Mistake, checker, compare, f32
from vaekit.metrics import quality

# ---------------------------------------------------------------------------------------------------------------
# Chapter 05: PSNR


_PSNR_CALL = "psnr(x, y, max_value)  # x, y: (batch, height, width, channels); max_value: a number -> (batch,)"


def _mse(x, y, axes=(1, 2, 3)):
    return np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2, axis=axes)


def _batch_mse_psnr(x, y, max_value):
    """One PSNR from the MSE over the whole batch, repeated for every image."""
    return np.full(x.shape[0], 10 * np.log10(max_value**2 / _mse(x, y, None)))


def _same_number_for_every_image(got: np.ndarray, want: np.ndarray) -> bool:
    """A scalar, or the same value broadcast over the batch, equal to the variant's (batch,) answer."""
    if got.size not in (1, want.size):
        return False
    values = np.broadcast_to(got.reshape(-1), want.shape) if got.size == 1 else got.reshape(want.shape)
    return bool(np.allclose(values, want, rtol=RTOL, atol=ATOL))


@checker(_PSNR_CALL, {
    "mse_over_batch": "takes the MSE over the whole batch: one PSNR for all images instead of one per image",
    "natural_log": "uses the natural logarithm instead of log10",
    "max_not_squared": "uses max_value instead of max_value**2 in the ratio",
    "twenty_log_of_mse": "takes 20 log10(max_value / MSE): the factor 20 belongs with the RMSE, not the MSE",
    "ratio_inverted": "takes 10 log10(MSE / max_value**2): the ratio upside down, a negative PSNR",
    "per_channel": "averages over height and width only: one PSNR per channel instead of per image",
    "finite_for_identical": "gives identical images a finite PSNR (a small number added to the MSE)",
})
def check_psnr(fn: Callable) -> Feedback:
    r"""Checks ``fn(x, y, max_value) -> (batch,)``: the peak signal-to-noise ratio of each image pair, in dB.

    .. math::

       \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{\mathrm{MAX}^2}{\mathrm{MSE}(x, y)},
       \qquad \mathrm{MSE}(x, y) = \frac{1}{HWC} \sum_{h,w,c} (x_{hwc} - y_{hwc})^2,

    as :func:`vaekit.metrics.psnr`. Tried on batches whose images differ by different amounts
    (so that an MSE over the whole batch shows), grey and colour, 28×28 to 5×7 pixels, with
    ``max_value`` 1, 255 and 2, then on a pair of identical images, whose PSNR is infinite.

    Args:
      fn: the learner's ``psnr(x, y, max_value)``.

    Returns:
      A :class:`Feedback`; ``check_psnr.mistakes`` lists the mistakes it names.

    Example:
      >>> check_psnr(lambda x, y, max_value: quality.psnr(x, y, max_value=max_value)).passed
      True
    """
    rng = np.random.default_rng(5)

    def pair(batch, height, width, channels, scale, levels):
        x = rng.uniform(size=(batch, height, width, channels))
        noise = np.asarray(levels)[:, None, None, None] * rng.standard_normal(x.shape)
        return f32(scale * x), f32(scale * np.clip(x + noise, 0.0, 1.0))

    cases = [
        Case((*pair(4, 28, 28, 1, 1.0, [0.02, 0.05, 0.1, 0.3]), 1.0),
             "4 grey 28x28 images in [0, 1], each with its own amount of noise, max_value = 1"),
        Case((*pair(3, 8, 8, 3, 255.0, [0.01, 0.1, 0.2]), 255.0),
             "3 colour 8x8 images in [0, 255], max_value = 255"),
        Case((*pair(1, 16, 16, 1, 1.0, [0.05]), 1.0), "a batch of 1 image, max_value = 1"),
        Case((*pair(2, 5, 7, 2, 2.0, [0.2, 0.4]), 2.0),
             "2 images of 5x7 pixels with 2 channels in [0, 2], max_value = 2"),
    ]
    x, _ = pair(2, 6, 6, 1, 1.0, [0.0, 0.0])
    identical = Case((x, x.at[1, 0, 0, 0].add(0.5), 1.0),
                     "two pairs: the first identical (MSE = 0), the second differing in one pixel")
    return compare(
        fn, call=_PSNR_CALL, arg_names=("x", "y", "max_value"),
        reference=lambda x, y, max_value: quality.psnr(x, y, max_value=max_value), cases=cases,
        mistakes={
            "mse_over_batch": Mistake(_batch_mse_psnr, (
                "You give every image the same PSNR, computed from the MSE over the whole batch. PSNR compares one "
                "image with its original: average the squared errors over each image's pixels and channels only, "
                "`axis=(1, 2, 3)`, and return one number per image."), _same_number_for_every_image),
            "natural_log": Mistake(lambda x, y, m: 10 * np.log(m**2 / _mse(x, y)), (
                "Your PSNR uses the natural logarithm: decibels are 10 log10 of a power ratio, so use `log10` "
                "(your values are 2.303 times too large).")),
            "max_not_squared": Mistake(lambda x, y, m: 10 * np.log10(m / _mse(x, y)), (
                "Your ratio is max_value / MSE: the MSE is a squared error, so compare it with the squared peak, "
                "max_value**2 (right by luck for max_value = 1 only).")),
            "twenty_log_of_mse": Mistake(lambda x, y, m: 20 * np.log10(m / _mse(x, y)), (
                "You take 20 log10(max_value / MSE). The factor 20 goes with amplitudes: 20 log10(max_value / "
                "RMSE), the RMSE being the square root of the MSE; with the MSE itself it is 10 log10(max_value**2 "
                "/ MSE).")),
            "ratio_inverted": Mistake(lambda x, y, m: 10 * np.log10(_mse(x, y) / m**2), (
                "Your ratio is upside down, MSE / max_value**2: the PSNR is the peak power over the noise power, "
                "so it grows as the images get closer (your values are the right ones negated).")),
            "per_channel": Mistake(lambda x, y, m: 10 * np.log10(m**2 / _mse(x, y, (1, 2))), (
                "You average over height and width only, which leaves one PSNR per channel: average the squared "
                "errors over `axis=(1, 2, 3)`, channels included.")),
        },
        edges=(Edge(identical, "finite_for_identical", (
            "Right for images that differ, not for identical ones: their MSE is 0 and their PSNR is infinite "
            "(10 log10(max_value**2 / 0) = inf, as vaekit.metrics.psnr returns). Do not add a small number to the "
            "MSE: that turns 'identical' into an arbitrary finite score.")),),
        passed="Your psnr matches vaekit.metrics.psnr on grey and colour batches with max_value 1, 255 and 2, one "
               "PSNR per image, and gives infinity for identical images.")


# ---------------------------------------------------------------------------------------------------------------
# Chapter 05: Fréchet distance


_FD_CALL = "frechet_distance(real, generated)  # real: (n1, d), generated: (n2, d) features -> a number"


def _moments(features, ddof=1):
    features = np.asarray(features, np.float64)
    covariance = np.cov(features, rowvar=False, ddof=ddof).reshape(features.shape[1], features.shape[1])
    return features.mean(axis=0), covariance


def _trace_sqrt_product(a, b):
    """Tr((a b)^(1/2)) as the sum of the square roots of the eigenvalues of a b (real and >= 0 for PSD a, b)."""
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvals(a @ b).real, 0.0, None))))


def _trace_of_entrywise_root(a, b):
    """Tr(sqrt(a b)) with the square root taken entry by entry (NaN where a diagonal entry is negative)."""
    with np.errstate(invalid="ignore"):
        return float(np.sum(np.sqrt(np.diag(a @ b))))


def _fd_variant(*, mean_term=lambda d: float(d @ d), cross_term=_trace_sqrt_product, ddof=1, root=False):
    def variant(real, generated):
        (mean_r, cov_r), (mean_g, cov_g) = _moments(real, ddof), _moments(generated, ddof)
        value = mean_term(mean_r - mean_g) + np.trace(cov_r) + np.trace(cov_g) - 2 * cross_term(cov_r, cov_g)
        return np.sqrt(max(value, 0.0)) if root else value

    return variant


def _real_valued(fn: Callable) -> Callable:
    """``fn`` with a complex answer (``scipy.linalg.sqrtm`` gives one) reduced to its real part, as FID code does."""

    @functools.wraps(fn)
    def run(*args):
        result = fn(*args)
        return np.real(result) if np.iscomplexobj(result) else result

    return run


@checker(_FD_CALL, {
    "no_square_root": "leaves out the square root: Tr(S1 + S2 - 2 S1 S2)",
    "square_root_of_trace": "takes the square root of the trace, sqrt(Tr(S1 S2)), not the trace of the square root",
    "elementwise_square_root": "takes the element-wise square root of S1 S2 (np.sqrt), not its matrix square root",
    "mean_term_missing": "leaves out the mean term |mu1 - mu2|^2",
    "mean_norm_not_squared": "adds the norm |mu1 - mu2| instead of its square",
    "population_covariance": "divides the covariances by n instead of n - 1",
    "square_root_of_result": "returns the square root of the result; the Fréchet distance of FID is the squared one",
    "singular_covariance_nan": "fails when a covariance is singular (fewer vectors than dimensions): NaN from tiny "
                               "negative eigenvalues",
})
def check_frechet_distance(fn: Callable) -> Feedback:
    r"""Checks ``fn(real, generated) -> number``: the Fréchet distance between Gaussian fits of two feature sets.

    .. math::

       d^2 = \lVert \mu_1 - \mu_2 \rVert^2
             + \operatorname{Tr}\!\big(\Sigma_1 + \Sigma_2 - 2\,(\Sigma_1 \Sigma_2)^{1/2}\big),

    with sample means and the unbiased sample covariances (divided by :math:`n - 1`, NumPy's
    ``np.cov`` and the FID reference code), as :func:`vaekit.metrics.frechet_distance`. Tried on
    sets of 2 to 6 dimensions, with different means, covariances and sizes (a set of 12
    vectors, where dividing by :math:`n` instead of :math:`n - 1` shows), then on sets with
    fewer vectors than dimensions, whose covariances are singular. A complex answer (from
    ``scipy.linalg.sqrtm``) counts by its real part.

    Args:
      fn: the learner's ``frechet_distance(real, generated)``.

    Returns:
      A :class:`Feedback`; ``check_frechet_distance.mistakes`` lists the mistakes it names.

    Example:
      >>> check_frechet_distance(quality.frechet_distance).passed
      True
    """
    rng = np.random.default_rng(11)

    def cloud(n, d, shift, scale):
        mixing = rng.standard_normal((d, d)) * scale / np.sqrt(d)
        return rng.standard_normal((n, d)) @ mixing + shift

    cases = [
        Case((cloud(400, 4, 0.0, 1.0), cloud(300, 4, 0.7, 2.0)), "real: 400 vectors, generated: 300, in 4 dimensions"),
        Case((cloud(500, 2, np.array([1.0, -1.0]), 0.5), cloud(500, 2, 0.0, 1.5)),
             "two sets of 500 vectors in 2 dimensions, means 1.41 apart"),
        Case((cloud(12, 3, 0.0, 1.0), cloud(20, 3, 2.0, 1.0)), "real: only 12 vectors, generated: 20, in 3 dimensions"),
        Case((cloud(250, 6, 0.2, 3.0), cloud(200, 6, -0.3, 1.0)), "250 and 200 vectors in 6 dimensions"),
    ]
    few = Case((cloud(5, 8, 0.0, 1.0), cloud(6, 8, 0.5, 1.0)),
               "real: 5 vectors, generated: 6, in 8 dimensions (both covariances singular)")
    return compare(
        _real_valued(fn), call=_FD_CALL, arg_names=("real", "generated"), reference=quality.frechet_distance,
        cases=cases,
        mistakes={
            "no_square_root": Mistake(_fd_variant(cross_term=lambda a, b: float(np.trace(a @ b))), (
                "Your cross term is Tr(S1 S2): the formula has the trace of the matrix SQUARE ROOT of S1 S2. "
                "Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2 "
                "(`np.linalg.eigvals(s1 @ s2).real`, clipped at 0).")),
            "square_root_of_trace": Mistake(_fd_variant(cross_term=lambda a, b: float(np.sqrt(np.trace(a @ b)))), (
                "You take sqrt(Tr(S1 S2)), the square root of the trace. The formula needs the trace of the square "
                "root, Tr((S1 S2)^(1/2)): the sum of the square roots of the eigenvalues of S1 S2, not the root of "
                "their sum.")),
            "elementwise_square_root": Mistake(_fd_variant(cross_term=_trace_of_entrywise_root), (
                "You take `np.sqrt` of the matrix S1 S2, which roots each entry. The formula needs the matrix "
                "square root, a matrix R with R R = S1 S2; only its trace is needed: the sum of the square roots "
                "of the eigenvalues of S1 S2.")),
            "mean_term_missing": Mistake(_fd_variant(mean_term=lambda d: 0.0), (
                "Your distance leaves out the mean term: add |mu1 - mu2|^2, the squared distance between the two "
                "sets' means (two sets with equal covariances but different means would otherwise score 0).")),
            "mean_norm_not_squared": Mistake(_fd_variant(mean_term=lambda d: float(np.linalg.norm(d))), (
                "Your mean term is |mu1 - mu2|, the norm: the formula adds its square, sum((mu1 - mu2)**2).")),
            "population_covariance": Mistake(_fd_variant(ddof=0), (
                "Your covariances divide by n; the kit (like `np.cov` and the FID reference code) uses the unbiased "
                "sample covariance, divided by n - 1. With 12 vectors the two differ by 9%; with thousands, "
                "hardly at all, but the convention must match to compare numbers.")),
            "square_root_of_result": Mistake(_fd_variant(root=True), (
                "You return the square root of the result. The formula is the SQUARED Fréchet (2-Wasserstein) "
                "distance between the two Gaussians, and FID and the kit report that squared value.")),
        },
        edges=(Edge(few, "singular_covariance_nan", (
            "Right when every set has more vectors than dimensions, not otherwise: with 5 vectors in 8 dimensions "
            "the covariance is singular, and roundoff leaves eigenvalues of S1 S2 slightly below 0 (or with a "
            "tiny imaginary part). Take the real part and clip them at 0 before the square root.")),),
        passed="Your frechet_distance matches vaekit.metrics.frechet_distance on sets of 2 to 8 dimensions, "
               "with different means, covariances and sizes, singular covariances included.")
