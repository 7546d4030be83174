r"""Three ways to damage an image on purpose: blur, noise and JPEG compression.

Chapter 05 degrades real test images by a known amount and watches how PSNR, SSIM and
sharpness (:mod:`vaekit.metrics`) respond. Each function takes a batch of NHWC images in
``[0, 1]``, ``(batch, height, width, channels)``, and returns a new float32 batch of the same
shape; a strength of zero (``sigma=0``, ``std=0``) returns the images unchanged.

* :func:`gaussian_blur` removes fine detail, as an out-of-focus lens (or a VAE's averaging
  decoder) does: sharpness falls.
* :func:`add_gaussian_noise` adds detail that is not there, as a camera sensor does: sharpness
  *rises* while PSNR and SSIM fall, which is why sharpness alone does not say "better".
* :func:`jpeg_compress` throws away what the JPEG codec judges invisible, in 8×8 blocks.

They run in NumPy (and Pillow for JPEG): they prepare data, they are not part of a model.

Example:
  >>> import jax
  >>> x = np.linspace(0.0, 1.0, 2 * 8 * 8).reshape(2, 8, 8, 1).astype(np.float32)
  >>> gaussian_blur(x, 1.0).shape, add_gaussian_noise(x, 0.1, key=jax.random.key(0)).dtype
  ((2, 8, 8, 1), dtype('float32'))
  >>> bool(np.all(jpeg_compress(x, 100) >= 0.0))
  True
"""

from __future__ import annotations

import io
import math
import numbers

import jax
import numpy as np
from PIL import Image

TRUNCATE = 4.0
"""The blur kernel reaches :math:`\\lfloor 4\\sigma + 0.5 \\rfloor` pixels each way, as ``scipy.ndimage``'s."""

JPEG_QUALITIES = (1, 100)
"""The quality settings Pillow's JPEG encoder takes: 1 (worst) to 100 (least loss; JPEG is never lossless)."""


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of NHWC images, shape (batch, height, width, channels); "
                         f"got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be floating point in [0, 1]; got dtype {images.dtype}")
    return images


def _check_strength(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def gaussian_kernel(sigma: float) -> np.ndarray:
    r"""The 1-D Gaussian blur kernel, :math:`g_k \propto e^{-k^2 / 2\sigma^2}` for :math:`|k| \le r`, summing to 1.

    Args:
      sigma: the standard deviation in pixels, > 0.

    Returns:
      ``(2r + 1,)`` float64 weights, :math:`r = \lfloor 4\sigma + 0.5 \rfloor`.

    Example:
      >>> gaussian_kernel(0.5).round(4).tolist()  # r = 2
      [0.0003, 0.1065, 0.7866, 0.1065, 0.0003]
    """
    sigma = _check_strength("sigma", sigma)
    if sigma == 0:
        raise ValueError("sigma must be > 0 for a kernel (gaussian_blur with sigma=0 returns the images as they are)")
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def _filter_axis(images: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = len(kernel) // 2
    pad = [(0, 0)] * images.ndim
    pad[axis] = (radius, radius)
    # Mirrored edges (d c b a | a b c d | d c b a): no dark frame from zero padding.
    padded = np.pad(images, pad, mode="symmetric")
    length = images.shape[axis]
    return sum(weight * np.take(padded, np.arange(k, k + length), axis=axis) for k, weight in enumerate(kernel))


def gaussian_blur(images, sigma: float) -> np.ndarray:
    r"""Blurs each channel of each image with a Gaussian of standard deviation ``sigma`` pixels.

    .. math::

       y = g \ast_{h} (g \ast_{w} x), \qquad g_k = \frac{e^{-k^2/2\sigma^2}}{\sum_{|j| \le r} e^{-j^2/2\sigma^2}},
       \quad |k| \le r = \lfloor 4\sigma + 0.5 \rfloor,

    the 2-D Gaussian applied as two 1-D passes (it is separable), with the image mirrored at
    its edges. The result equals ``scipy.ndimage.gaussian_filter(x, (0, sigma, sigma, 0),
    mode="reflect")``. A blur averages neighbours, so it keeps the mean and stays in ``[0, 1]``.

    Args:
      images: ``(batch, height, width, channels)`` floating-point images.
      sigma: the blur's standard deviation in pixels, >= 0 (0: no blur).

    Returns:
      ``(batch, height, width, channels)`` float32 blurred images.

    Example:
      >>> dot = np.zeros((1, 5, 5, 1), np.float32); dot[0, 2, 2, 0] = 1.0
      >>> blurred = gaussian_blur(dot, 1.0)
      >>> round(float(blurred.sum()), 4), bool(blurred[0, 2, 2, 0] < 1.0)  # spread out, nothing lost
      (1.0, True)
    """
    images = _check_images(images)
    sigma = _check_strength("sigma", sigma)
    if sigma == 0:
        return images.astype(np.float32, copy=True)
    kernel = gaussian_kernel(sigma)
    blurred = _filter_axis(_filter_axis(images.astype(np.float64), kernel, axis=1), kernel, axis=2)
    return blurred.astype(np.float32)


def add_gaussian_noise(images, std: float, *, key: jax.Array, clip: bool = True) -> np.ndarray:
    r"""Adds independent Gaussian noise of standard deviation ``std`` to every pixel.

    .. math::

       y = \operatorname{clip}_{[0, 1]}(x + \mathrm{std}\cdot\varepsilon), \qquad
       \varepsilon \sim \mathcal N(0, I),

    clipped, as a stored image would be, unless ``clip=False``. The same ``key`` draws the
    same :math:`\varepsilon`, so two strengths with one key differ in amplitude only.

    Args:
      images: ``(batch, height, width, channels)`` floating-point images in ``[0, 1]``.
      std: the noise's standard deviation, in pixel units, >= 0.
      key: a JAX PRNG key (``jax.random.key(seed)``) for :math:`\varepsilon`.
      clip: clip the result to ``[0, 1]``.

    Returns:
      ``(batch, height, width, channels)`` float32 noisy images.

    Example:
      >>> x = np.full((1, 64, 64, 1), 0.5, np.float32)
      >>> y = add_gaussian_noise(x, 0.1, key=jax.random.key(0))
      >>> round(float(np.std(y - x)), 2)
      0.1
    """
    images = _check_images(images)
    std = _check_strength("std", std)
    noise = np.asarray(jax.random.normal(key, images.shape), np.float64)
    noisy = images.astype(np.float64) + std * noise
    return (np.clip(noisy, 0.0, 1.0) if clip else noisy).astype(np.float32)


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    channels = image.shape[-1]
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)  # uint8: grey ("L") or "RGB"
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255.0
    return decoded.reshape(image.shape)


def jpeg_compress(images, quality: int) -> np.ndarray:
    r"""Each image saved as a JPEG of the given ``quality`` and read back.

    The image is rounded to 8-bit grey levels (or RGB), encoded by Pillow's JPEG codec, which
    quantises the discrete cosine transform of each 8×8 block more coarsely as ``quality``
    falls (block edges and ringing near sharp edges appear), and decoded again.

    Args:
      images: ``(batch, height, width, channels)`` floating-point images in ``[0, 1]``, with 1
        (grey) or 3 (RGB) channels.
      quality: the encoder's quality, an integer from 1 (smallest file, most loss) to 100.

    Returns:
      ``(batch, height, width, channels)`` float32 images in ``[0, 1]``, multiples of 1/255.

    Example:
      >>> x = np.random.default_rng(0).uniform(size=(1, 16, 16, 1)).astype(np.float32)
      >>> err = [float(np.abs(jpeg_compress(x, q) - x).mean()) for q in (95, 10)]
      >>> err[0] < err[1]
      True
    """
    images = _check_images(images)
    low, high = JPEG_QUALITIES
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not low <= quality <= high:
        raise ValueError(f"quality must be an integer from {low} to {high}; got {quality!r}")
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels for JPEG; got {images.shape[-1]}")
    return np.stack([_jpeg_round_trip(image, int(quality)) for image in images]).astype(np.float32)
