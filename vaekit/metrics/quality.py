r"""Image- and sample-quality measures: PSNR, SSIM, sharpness, checkerboard, Fréchet distance, precision, recall.

Two families answer two questions.

*Is this image close to that one?* :func:`psnr` and :func:`ssim` compare a reconstruction
with its original, pixel by pixel or window by window. :func:`sharpness` and
:func:`checkerboard` need no original: the first measures how much fine detail an image has,
which is what a blurry VAE sample lacks; the second how much of it is the period-2 pattern a
transposed convolution leaves. These four take batches of images laid out NHWC,
``(batch, height, width, channels)``, and return one number per image, ``(batch,)``; they
are compiled with ``jax.jit``.

*Do these samples look like the data?* A generated image has no original to compare with,
so :func:`frechet_distance` and :func:`precision_recall` compare two *sets*, each given as
features ``(n, d)`` (the output of some feature network on each image). The Fréchet distance
compares the sets' means and covariances in one number; precision (are the samples
realistic?) and recall (is all of the data covered?) tell blur and missing modes apart.
These two run in NumPy float64, where the matrix square root and the nearest-neighbour
radii are accurate. For images, the kit's features are those of its own classifier,
:func:`vaekit.features.embed` (not Inception's: see :mod:`vaekit.features`)::

    real = vk.features.embed(test.images)   # (n, 128)
    fd = vk.metrics.frechet_distance(real, vk.features.embed(samples))
    fd = vk.metrics.frechet_distance(test.images, samples, features=network)  # the same, in one call

References:
  Huynh-Thu & Ghanbari, *Scope of validity of PSNR in image/video quality assessment*,
  Electronics Letters 44(13), 2008.
  Wang, Bovik, Sheikh & Simoncelli, *Image quality assessment: from error visibility to
  structural similarity*, IEEE Transactions on Image Processing 13(4), 2004.
  Pech-Pacheco, Cristóbal, Chamorro-Martínez & Fernández-Valdivia, *Diatom autofocusing in
  brightfield microscopy: a comparative study*, ICPR 2000.
  Odena, Dumoulin & Olah, *Deconvolution and Checkerboard Artifacts*, Distill 2016.
  Dowson & Landau, *The Fréchet distance between multivariate normal distributions*,
  Journal of Multivariate Analysis 12(3), 1982.
  Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium*, NeurIPS 2017 (FID).
  Kynkäänniemi, Karras, Laine, Lehtinen & Aila, *Improved Precision and Recall Metric for
  Assessing Generative Models*, NeurIPS 2019.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
"""The 4-neighbour discrete Laplacian, :math:`\\partial_x^2 + \\partial_y^2` on the pixel grid."""

FLAT_VARIANCE = 1e-12
"""Pixel variance below which :func:`checkerboard` calls an image flat (constant up to roundoff) and scores it 0."""

DISTANCE_CHUNK = 1024
"""Rows of the pairwise distance matrix computed at once in :func:`precision_recall` (bounds memory)."""


def _is_real(value) -> bool:
    """A real number: a Python or NumPy int or float, not a bool (``True`` is no pixel range)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_images(name: str, images) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a batch of NHWC images, shape (batch, height, width, channels); got {images.shape}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point (scaled to [0, max_value]); got dtype {images.dtype}")
    return images


def _check_pair(x, y) -> tuple[jax.Array, jax.Array]:
    x, y = _check_images("x", x), _check_images("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape; got {x.shape} and {y.shape}")
    return x, y


def _check_max_value(max_value: float) -> None:
    if not (_is_real(max_value) and math.isfinite(max_value) and max_value > 0):
        raise ValueError(f"max_value must be a finite number > 0 (the images' dynamic range); got {max_value!r}")


def _depthwise_valid(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """Filters every channel of NHWC ``images`` with one 2-D ``kernel``, keeping only positions where it fits."""
    channels = images.shape[-1]
    weights = jnp.broadcast_to(kernel[:, :, None, None], (*kernel.shape, 1, channels)).astype(images.dtype)
    return jax.lax.conv_general_dilated(
        images,
        weights,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
        # Full float32: TF32 on a GPU would cost SSIM its agreement with a float64 reference.
        precision=jax.lax.Precision.HIGHEST,
    )


@jax.jit
def _psnr(x: jax.Array, y: jax.Array, max_value: jax.Array) -> jax.Array:
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(max_value**2 / mse)


def psnr(x, y, *, max_value: float = 1.0) -> jax.Array:
    r"""Peak signal-to-noise ratio of each image pair, in decibels.

    .. math::

       \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{\mathrm{MAX}^2}{\mathrm{MSE}(x, y)},
       \qquad \mathrm{MSE}(x, y) = \frac{1}{HWC} \sum_{h,w,c} (x_{hwc} - y_{hwc})^2,

    the mean taken over each image's pixels and channels, never over the batch. Identical
    images have :math:`\mathrm{MSE} = 0` and an infinite PSNR. PSNR is a monotone function of
    the MSE and nothing more: it ranks distortions of *one* image well, but says little
    across images or kinds of distortion, and nothing about a sample without an original
    (Huynh-Thu & Ghanbari, 2008).

    Args:
      x: images, ``(batch, height, width, channels)``, floating point in ``[0, max_value]``.
      y: images of the same shape.
      max_value: the largest possible pixel value (1 for images scaled to ``[0, 1]``, 255 for bytes).

    Returns:
      ``(batch,)``: the PSNR of each pair, in dB (``inf`` for identical images).

    Example:
      >>> x = jnp.zeros((1, 4, 4, 1))
      >>> psnr(x, x + 0.1).round(4)  # MSE = 0.01: 10 log10(1 / 0.01) = 20 dB
      Array([20.], dtype=float32)
      >>> psnr(x, x)
      Array([inf], dtype=float32)

    References:
      Huynh-Thu & Ghanbari, *Scope of validity of PSNR in image/video quality assessment*, 2008.
    """
    x, y = _check_pair(x, y)
    _check_max_value(max_value)
    return _psnr(x, y, jnp.asarray(max_value, x.dtype))


def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    r"""The normalised 2-D Gaussian window of SSIM, :math:`w_{ij} \propto e^{-(i^2 + j^2) / 2\sigma^2}`.

    Args:
      size: the window's side, an odd number of pixels (11 in Wang et al., 2004).
      sigma: the Gaussian's standard deviation in pixels (1.5 in Wang et al., 2004).

    Returns:
      ``(size, size)`` weights that sum to 1.

    Example:
      >>> w = gaussian_window()
      >>> w.shape, round(float(w.sum()), 6), bool(w[5, 5] == w.max())
      ((11, 11), 1.0, True)
    """
    if not (isinstance(size, int) and size >= 1 and size % 2 == 1):
        raise ValueError(f"window_size must be an odd integer >= 1; got {size!r}")
    if not (_is_real(sigma) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
    offsets = np.arange(size) - size // 2
    profile = np.exp(-(offsets**2) / (2.0 * sigma**2))
    window = np.outer(profile, profile)
    return window / window.sum()


@jax.jit
def _ssim(x: jax.Array, y: jax.Array, window: jax.Array, c1: jax.Array, c2: jax.Array) -> jax.Array:
    def local_mean(images):
        return _depthwise_valid(images, window)

    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mean_x**2
    var_y = local_mean(y * y) - mean_y**2
    cov_xy = local_mean(x * y) - mean_x * mean_y
    similarity = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    )
    return jnp.mean(similarity, axis=(1, 2, 3))


def ssim(
    x,
    y,
    *,
    max_value: float = 1.0,
    window_size: int = SSIM_WINDOW_SIZE,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> jax.Array:
    r"""Structural similarity of each image pair (Wang et al., 2004), between -1 and 1.

    Around every pixel a Gaussian window :math:`w` gives local means, variances and the
    covariance of the two images,

    .. math::

       \mu_x = \sum w\,x, \qquad \sigma_x^2 = \sum w\,x^2 - \mu_x^2, \qquad
       \sigma_{xy} = \sum w\,xy - \mu_x \mu_y,

    and the local similarity compares luminance, contrast and structure at once:

    .. math::

       \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                                  {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
       \qquad C_1 = (K_1\,\mathrm{MAX})^2,\; C_2 = (K_2\,\mathrm{MAX})^2.

    The result is the mean of this map over the positions where the window fits inside the
    image (no padding) and over the channels. The defaults are Wang et al.'s: an 11×11
    window, :math:`\sigma = 1.5`, :math:`K_1 = 0.01`, :math:`K_2 = 0.03`; with them the value
    agrees with scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``.

    Args:
      x: images, ``(batch, height, width, channels)``, floating point in ``[0, max_value]``;
        height and width at least ``window_size``.
      y: images of the same shape.
      max_value: the largest possible pixel value (the dynamic range in :math:`C_1, C_2`).
      window_size: the Gaussian window's side, an odd number of pixels.
      sigma: the Gaussian window's standard deviation, in pixels.
      k1: the luminance stabiliser :math:`K_1 > 0`.
      k2: the contrast stabiliser :math:`K_2 > 0`.

    Returns:
      ``(batch,)``: the mean SSIM of each pair (1 for identical images).

    Example:
      >>> x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
      >>> ssim(x, x)
      Array([1., 1.], dtype=float32)

    References:
      Wang, Bovik, Sheikh & Simoncelli, *Image quality assessment: from error visibility to
      structural similarity*, IEEE Transactions on Image Processing 13(4), 2004.
    """
    x, y = _check_pair(x, y)
    _check_max_value(max_value)
    window = gaussian_window(window_size, sigma)
    if x.shape[1] < window_size or x.shape[2] < window_size:
        raise ValueError(
            f"x and y must be at least window_size={window_size} pixels high and wide; got {x.shape[1]}×{x.shape[2]}"
        )
    for name, k in (("k1", k1), ("k2", k2)):
        if not (_is_real(k) and math.isfinite(k) and k > 0):
            raise ValueError(f"{name} must be a finite number > 0; got {k!r}")
    c1 = jnp.asarray((k1 * max_value) ** 2, x.dtype)
    c2 = jnp.asarray((k2 * max_value) ** 2, x.dtype)
    return _ssim(x, y, jnp.asarray(window, x.dtype), c1, c2)


@jax.jit
def _sharpness(images: jax.Array) -> jax.Array:
    laplacian = _depthwise_valid(images, jnp.asarray(LAPLACIAN, images.dtype))
    return jnp.mean(jnp.var(laplacian, axis=(1, 2)), axis=-1)


def sharpness(x) -> jax.Array:
    r"""The variance of the Laplacian of each image (Pech-Pacheco et al., 2000): high for sharp, low for blurred.

    The discrete Laplacian responds to edges and fine texture and is near zero where the image
    varies smoothly; blur removes exactly what it responds to, so its variance drops:

    .. math::

       \mathrm{sharpness}(x) = \frac{1}{C}\sum_c \operatorname{Var}_{h,w}\big[(\nabla^2 x)_{hwc}\big],
       \qquad (\nabla^2 x)_{hw} = x_{h-1,w} + x_{h+1,w} + x_{h,w-1} + x_{h,w+1} - 4x_{hw},

    the variance taken over the positions where the 3×3 stencil fits (no padding), then
    averaged over channels. A constant image scores 0. The number is in (pixel units)²; it
    compares images of one dataset and scale, not across datasets.

    Args:
      x: images, ``(batch, height, width, channels)``, floating point, at least 3×3 pixels.

    Returns:
      ``(batch,)``: the variance of the Laplacian of each image.

    Example:
      >>> checkerboard = (jnp.indices((8, 8)).sum(0) % 2).astype(jnp.float32)[None, :, :, None]
      >>> sharpness(jnp.full((1, 8, 8, 1), 0.5)), sharpness(checkerboard)  # 0, and Laplacian ±4: variance 16
      (Array([0.], dtype=float32), Array([16.], dtype=float32))

    References:
      Pech-Pacheco, Cristóbal, Chamorro-Martínez & Fernández-Valdivia, *Diatom autofocusing in
      brightfield microscopy: a comparative study*, ICPR 2000.
    """
    x = _check_images("x", x)
    if x.shape[1] < 3 or x.shape[2] < 3:
        raise ValueError(f"x must be at least 3 pixels high and wide; got {x.shape[1]}×{x.shape[2]}")
    return _sharpness(x)


def _period_two_patterns(height: int, width: int) -> jax.Array:
    """The three sign patterns of period 2, ``(3, height, width)``: (-1)^(h+w), (-1)^h and (-1)^w."""
    rows = (-1.0) ** jnp.arange(height)
    cols = (-1.0) ** jnp.arange(width)
    return jnp.stack([jnp.outer(rows, cols), jnp.outer(rows, jnp.ones(width)), jnp.outer(jnp.ones(height), cols)])


@jax.jit
def _checkerboard(images: jax.Array) -> jax.Array:
    _, height, width, _ = images.shape
    centred = images - jnp.mean(images, axis=(1, 2), keepdims=True)
    patterns = _period_two_patterns(height, width).astype(images.dtype)
    projections = jnp.einsum("bhwc,khw->bkc", centred, patterns, precision=jax.lax.Precision.HIGHEST)
    period_two = jnp.sum(projections**2, axis=(1, 2))
    energy = height * width * jnp.sum(centred**2, axis=(1, 2, 3))
    flat = jnp.mean(centred**2, axis=(1, 2, 3)) < FLAT_VARIANCE
    return jnp.where(flat, 0.0, period_two / jnp.where(flat, 1.0, energy))


def checkerboard(x) -> jax.Array:
    r"""The share of each image's variation that is a period-2 pattern: 0 for smooth images, 1 for a checkerboard.

    A transposed convolution of stride 2 computes even and odd output pixels with different
    parts of its kernel, so its images can carry a pattern that repeats every two pixels
    (Odena et al., 2016). On the image's discrete Fourier transform :math:`\hat x_{k,l}` such a
    pattern sits at the highest frequencies the grid holds, the Nyquist frequencies
    :math:`\mathcal N = \{(\tfrac H2, \tfrac W2), (\tfrac H2, 0), (0, \tfrac W2)\}`, whose basis
    images are the sign patterns :math:`s_1 = (-1)^{h+w}` (a checkerboard), :math:`s_2 = (-1)^h`
    and :math:`s_3 = (-1)^w` (stripes). The statistic is their share of all the energy away from
    the mean (the DC term :math:`\hat x_{0,0}`):

    .. math::

       \mathrm{checkerboard}(x)
         = \frac{\sum_{(k,l) \in \mathcal N} |\hat x_{k,l}|^2}{\sum_{(k,l) \ne (0,0)} |\hat x_{k,l}|^2}
         = \frac{\sum_c \sum_{i=1}^{3} \big(\sum_{h,w} s_i[h,w]\,x_{hwc}\big)^2}
                {H W \sum_c \sum_{h,w} (x_{hwc} - \bar x_c)^2},

    the second form by Parseval's identity (:math:`\bar x_c` is channel :math:`c`'s mean); each
    channel is centred and the sums run over the channels too. It lies in :math:`[0, 1]`: it is
    the fraction of the image's variance that the three patterns explain. A smooth image has
    almost no energy at the Nyquist frequencies and scores near 0, white noise about
    :math:`3/(HW - 1)`, a pure checkerboard or pure 2-pixel stripes exactly 1. A flat image
    (pixel variance below :data:`FLAT_VARIANCE`) has nothing to share and scores 0.

    Args:
      x: images, ``(batch, height, width, channels)``, floating point; height and width even
        (only an even grid has a Nyquist frequency).

    Returns:
      ``(batch,)``: the period-2 share of each image, in ``[0, 1]``.

    Example:
      >>> h, w = jnp.indices((8, 8))
      >>> board = ((h + w) % 2).astype(jnp.float32)[None, :, :, None]
      >>> blob = jnp.exp(-((h - 3.5) ** 2 + (w - 3.5) ** 2) / 8.0)[None, :, :, None]
      >>> flat = jnp.full_like(board, 0.5)
      >>> checkerboard(jnp.concatenate([board, flat, blob, 0.9 * blob + 0.1 * board])).round(3)
      Array([1.   , 0.   , 0.   , 0.045], dtype=float32)

    References:
      Odena, Dumoulin & Olah, *Deconvolution and Checkerboard Artifacts*, Distill 2016.
    """
    x = _check_images("x", x)
    if x.shape[1] % 2 or x.shape[2] % 2 or x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(f"x must have an even height and width (a period-2 pattern needs an even grid); "
                         f"got {x.shape[1]}×{x.shape[2]}")
    return _checkerboard(x)


def _check_features(name: str, features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of features, shape (n, d) (or images with features=a "
                         f"feature network); got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    return features


FeatureMap = Callable[[np.ndarray], np.ndarray]


def _embedded(real, generated, features) -> tuple[np.ndarray, np.ndarray]:
    """The two sets as features: as given (``features=None``), or mapped by a feature network or callable."""
    if features is None:
        return real, generated
    from vaekit import features as feature_networks  # vaekit.features trains with vaekit.train: imported on use
    from vaekit.models import Classifier

    if isinstance(features, Classifier):  # before `callable`: a classifier called directly gives logits
        return (feature_networks.embed(np.asarray(real), network=features),
                feature_networks.embed(np.asarray(generated), network=features))
    if callable(features):
        return np.asarray(features(np.asarray(real))), np.asarray(features(np.asarray(generated)))
    raise TypeError(
        "features must be None (real and generated are already features), a vaekit.models.Classifier (its "
        "features, vaekit.features.embed) or a callable mapping images (n, H, W, C) to features (n, d); "
        f"got {type(features).__name__}"
    )


def _check_feature_sets(real, generated) -> tuple[np.ndarray, np.ndarray]:
    real, generated = _check_features("real", real), _check_features("generated", generated)
    if real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"real and generated must have the same feature dimension d; got {real.shape[1]} and {generated.shape[1]}"
        )
    return real, generated


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The positive semi-definite square root of a symmetric PSD matrix, by its eigendecomposition."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    # A covariance has eigenvalues >= 0; roundoff can leave tiny negative ones, which are 0.
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(real, generated, *, features: FeatureMap | None = None) -> float:
    r"""The Fréchet distance between Gaussian fits of two feature sets (Dowson & Landau, 1982).

    Each set of features is summarised by its mean :math:`\mu` and covariance :math:`\Sigma`;
    the squared 2-Wasserstein (Fréchet) distance between the two Gaussians is

    .. math::

       d^2 = \lVert \mu_1 - \mu_2 \rVert^2
             + \operatorname{Tr}\!\big(\Sigma_1 + \Sigma_2 - 2\,(\Sigma_1 \Sigma_2)^{1/2}\big).

    :math:`\Sigma_1\Sigma_2` is not symmetric, so its square root is computed through a
    symmetric matrix with the same eigenvalues, :math:`\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}`:

    .. math::

       \operatorname{Tr}(\Sigma_1 \Sigma_2)^{1/2} = \sum_i \sqrt{\lambda_i},
       \qquad \lambda_i \text{ the eigenvalues of } \Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2} \succeq 0,

    all in float64. Roundoff can make a :math:`\lambda_i` of a singular matrix slightly
    negative (about :math:`10^{-16}` of the largest); those are clipped to 0 before the square
    root. The covariances are the unbiased sample covariances (divided by :math:`n - 1`).

    This is the Fréchet Inception Distance (FID, Heusel et al., 2017) only when the features
    are those of the Inception-v3 network; the kit does not use Inception features, so call
    its numbers "FD on <these> features". FD is biased upwards for few samples: compare values
    computed with the same numbers of samples.

    Args:
      real: ``(n1, d)`` features of real images, ``n1 >= 2``; or, with ``features``, the
        images themselves ``(n1, height, width, channels)``.
      generated: ``(n2, d)`` features of generated images, ``n2 >= 2`` (or images, as ``real``).
      features: ``None`` when ``real`` and ``generated`` are already features; else what maps
        images to features: a trained :class:`vaekit.models.Classifier` (its last hidden layer,
        :func:`vaekit.features.embed`, e.g. ``vaekit.features.feature_network()[0]``) or any
        callable ``images -> (n, d)``.

    Returns:
      :math:`d^2 \ge 0`, a Python float (0 for two sets with equal means and covariances).

    Raises:
      TypeError: ``features`` that is neither ``None``, a classifier nor a callable.
      ValueError: sets that are not ``(n, d)`` with ``n >= 2``, of unequal ``d``, or not finite.

    Example:
      >>> real = np.random.default_rng(0).normal(size=(500, 3))
      >>> round(frechet_distance(real, real), 9), round(frechet_distance(real, real + 2.0), 9)  # ||(2, 2, 2)||² = 12
      (0.0, 12.0)
      >>> images = real.reshape(500, 1, 3, 1)  # "images" whose features are their pixels:
      >>> round(frechet_distance(images, images + 2.0, features=lambda x: x.reshape(len(x), -1)), 9)
      12.0

    References:
      Dowson & Landau, *The Fréchet distance between multivariate normal distributions*, 1982.
      Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium*, 2017.
    """
    real, generated = _check_feature_sets(*_embedded(real, generated, features))
    for name, values in (("real", real), ("generated", generated)):
        if values.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows to estimate a covariance; got {values.shape[0]}")
    mean_real, mean_generated = real.mean(axis=0), generated.mean(axis=0)
    cov_real = np.cov(real, rowvar=False).reshape(real.shape[1], real.shape[1])
    cov_generated = np.cov(generated, rowvar=False).reshape(real.shape[1], real.shape[1])
    sqrt_cov_real = _symmetric_sqrt(cov_real)
    product = sqrt_cov_real @ cov_generated @ sqrt_cov_real
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)  # symmetric up to roundoff; made exactly so
    trace_sqrt_product = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
    distance = (
        np.sum((mean_real - mean_generated) ** 2)
        + np.trace(cov_real)
        + np.trace(cov_generated)
        - 2.0 * trace_sqrt_product
    )
    # Equal distributions give 0 up to roundoff, which can land below it: with a singular covariance the
    # square roots of its near-zero eigenvalues (~1e-12 each) leave about 1e-8 of the trace.
    return float(max(distance, 0.0))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` squared Euclidean distances, in float64, clipped at 0 against roundoff."""
    squared = np.sum(a**2, axis=1)[:, None] + np.sum(b**2, axis=1)[None, :] - 2.0 * a @ b.T
    return np.clip(squared, 0.0, None)


def _knn_radii_squared(features: np.ndarray, k: int) -> np.ndarray:
    """The squared distance from each row to its k-th nearest other row."""
    radii = np.empty(len(features))
    for start in range(0, len(features), DISTANCE_CHUNK):
        distances = _squared_distances(features[start : start + DISTANCE_CHUNK], features)
        # Index 0 of each sorted row is the point itself (distance 0), so the k-th neighbour is at index k.
        radii[start : start + DISTANCE_CHUNK] = np.partition(distances, k, axis=1)[:, k]
    return radii


def _fraction_inside(points: np.ndarray, centres: np.ndarray, radii_squared: np.ndarray) -> float:
    """The fraction of ``points`` inside at least one ball (centre, radius) of the manifold estimate."""
    inside = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), DISTANCE_CHUNK):
        distances = _squared_distances(points[start : start + DISTANCE_CHUNK], centres)
        inside[start : start + DISTANCE_CHUNK] = np.any(distances <= radii_squared[None, :], axis=1)
    return float(inside.mean())


def precision_recall(real, generated, *, k: int = 3, features: FeatureMap | None = None) -> tuple[float, float]:
    r"""Precision and recall of generated samples against real ones (Kynkäänniemi et al., 2019).

    Each set's manifold is estimated as the union of balls around its points, each ball
    reaching the point's :math:`k`-th nearest neighbour in the same set:

    .. math::

       \mathcal{M}(\Phi) = \bigcup_{\phi \in \Phi} B\big(\phi, \lVert \phi - \mathrm{NN}_k(\phi, \Phi) \rVert\big),

    .. math::

       \text{precision} = \frac{1}{|\Phi_g|} \sum_{\phi \in \Phi_g} [\phi \in \mathcal{M}(\Phi_r)],
       \qquad
       \text{recall} = \frac{1}{|\Phi_r|} \sum_{\phi \in \Phi_r} [\phi \in \mathcal{M}(\Phi_g)].

    Precision is the fraction of samples that look real (fall on the data's manifold); recall
    is the fraction of the data the samples cover. A model that draws good images of only
    some classes has high precision and low recall; one that covers everything but blurs has
    the opposite. Distances are Euclidean, in float64.

    Args:
      real: ``(n1, d)`` features of real images, ``n1 > k``; or, with ``features``, the images.
      generated: ``(n2, d)`` features of generated images, ``n2 > k`` (or images, as ``real``).
      k: the neighbour that sets each ball's radius, an integer >= 1 (3 in Kynkäänniemi et al.).
      features: ``None`` when the sets are features, else what maps images to features, as in
        :func:`frechet_distance`.

    Returns:
      ``(precision, recall)``, Python floats in ``[0, 1]``.

    Example:
      >>> real = np.random.default_rng(0).normal(size=(200, 2))
      >>> precision_recall(real, real), precision_recall(real, real + 100.0)
      ((1.0, 1.0), (0.0, 0.0))

    References:
      Kynkäänniemi, Karras, Laine, Lehtinen & Aila, *Improved Precision and Recall Metric for
      Assessing Generative Models*, NeurIPS 2019.
    """
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"k must be an integer >= 1; got {k!r}")
    real, generated = _check_feature_sets(*_embedded(real, generated, features))
    for name, values in (("real", real), ("generated", generated)):
        if values.shape[0] <= k:
            raise ValueError(f"{name} needs more than k={k} rows for a k-th nearest neighbour; got {values.shape[0]}")
    precision = _fraction_inside(generated, real, _knn_radii_squared(real, k))
    recall = _fraction_inside(real, generated, _knn_radii_squared(generated, k))
    return precision, recall
