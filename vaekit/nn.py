r"""Convolution layers of the conv models: a convolution, a strided downsampling, three ×2 upsamplings.

Images are ``(batch, height, width, channels)`` and every layer pads ``"SAME"``: a
convolution with stride :math:`s` returns ``ceil(height / s)`` rows, an upsampling by
:math:`f` returns ``f * height``. :class:`Conv` (and :class:`Downsample`) and
:class:`ConvTranspose` *are* ``nnx.Conv`` and ``nnx.ConvTranspose``: the same parameters,
initialisation, outputs and gradients. The two other upsamplings own such a :class:`Conv`.

Three ways to double the resolution (:func:`make_upsample`; the segmentation chapters
compare them). Write :math:`W \star h` for a SAME stride-1 convolution of :math:`h` with
the kernel :math:`W`, in one dimension for short (images do the same on both axes):

* ``"transposed"`` (:class:`ConvTranspose`, kernel 4): put a zero between input pixels,
  then convolve (two zeros of padding in front),

  .. math::

     y[i] = b + \sum_{t=0}^{3} z[i + t - 2]\, W[t], \qquad z[2m] = x[m],\ z[2m + 1] = 0.

  It is the adjoint (transpose) of a strided convolution, its kernel flipped (Dumoulin &
  Visin, 2016). Even outputs meet the non-zero pixels of :math:`z` with the even taps of
  :math:`W`, odd outputs with the odd taps: neighbouring pixels come from two different
  sub-kernels, which training can leave unequal, hence checkerboard artefacts (Odena et al., 2016).
* ``"repeat"`` (:class:`RepeatUpsample`, kernel 3): nearest-neighbour upsampling, then a
  convolution; every output pixel is computed alike, so no checkerboard (Odena et al., 2016):

  .. math::

     y = W \star \mathrm{repeat}(x) + b, \qquad \mathrm{repeat}(x)[2m + r] = x[m],\ r \in \{0, 1\}.
* ``"pixel_shuffle"`` (:class:`PixelShuffleUpsample`, kernel 3): a convolution on the coarse
  grid to :math:`4C` channels, whose groups of four become 2×2 blocks (sub-pixel
  convolution, Shi et al., 2016; :func:`pixel_shuffle`):

  .. math::

     h = W \star x + b, \qquad y[2i + a, 2j + a', c] = h[i, j, (2a + a') C + c].

How each layer is computed (on the CPU, the first two as four small convolutions of the
coarse image, one per output phase) is decided in the private module ``vaekit._fastconv``,
whose docstring works the arithmetic out; the maths above is what every formulation gives.

References:
  Dumoulin & Visin, *A guide to convolution arithmetic for deep learning*, 2016.
  Odena, Dumoulin & Olah, *Deconvolution and Checkerboard Artifacts*, Distill 2016.
  Shi et al., *Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network*, CVPR 2016.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp  # noqa: F401  (the examples' arrays)
import numpy as np
from flax import nnx

from vaekit import _fastconv

UPSAMPLINGS = ("transposed", "repeat", "pixel_shuffle")


def _check_positive(name: str, value) -> None:
    # models.check_positive_int says the same; nn cannot import models (models imports nn).
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        _check_positive(name, value)


def _check_image(layer: str, x: jax.Array, channels: int) -> None:
    if x.ndim != 4 or x.shape[-1] != channels:
        raise ValueError(f"{layer}: x must be (batch, height, width, {channels}); got shape {tuple(x.shape)}")


def _promoted(conv: nnx.Conv | nnx.ConvTranspose, x: jax.Array, *, layer: str):
    """The input, ``conv``'s kernel and bias in one dtype, as ``nnx.Conv`` promotes them.

    The bias comes as ``(1, 1, 1, out)``, ready to add to images (the kit forbids implicit rank promotion).
    """
    _check_image(layer, x, conv.in_features)
    x, kernel, bias = conv.promote_dtype((x, conv.kernel[...], conv.bias[...]), dtype=conv.dtype)
    return x, kernel, bias.reshape(1, 1, 1, -1)


class Conv(nnx.Conv):
    r"""A SAME 2-D convolution with a square kernel: an ``nnx.Conv``.

    .. math::

       y[n, i, j, o] = b[o] + \sum_{u, v, c} x_{\mathrm{pad}}[n, s i + u, s j + v, c]\, W[u, v, c, o],

    :math:`x_{\mathrm{pad}}` the input with zeros around it, so that the output has
    ``ceil(height / s)`` rows and ``ceil(width / s)`` columns.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: height and width of the kernel :math:`W`, ``(k, k, in, out)``.
      strides: :math:`s`, the step between outputs; ``strides = 2`` halves height and width.
      rngs: initialises the kernel (LeCun normal) and the bias (zeros) as ``nnx.Conv`` does.

    Example:
      >>> conv = Conv(1, 8, 3, rngs=nnx.Rngs(0))
      >>> conv(jnp.zeros((2, 28, 28, 1))).shape
      (2, 28, 28, 8)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, strides: int = 1, *, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features, kernel_size=kernel_size, strides=strides)
        super().__init__(in_features, out_features, (kernel_size, kernel_size), (strides, strides), padding="SAME",
                         rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = _promoted(self, x, layer=type(self).__name__)
        return _fastconv.conv(x, kernel, strides=self.strides[0]) + bias


class Downsample(Conv):
    """Strided downsampling: a :class:`Conv` with kernel 4 and stride 2 halves height and width.

    The kernel is a multiple of the stride, so every input pixel feeds the same number of
    outputs (no checkerboard in the gradient) and the padding is symmetric.

    Example:
      >>> down = Downsample(1, 8, rngs=nnx.Rngs(0))
      >>> down(jnp.zeros((2, 28, 28, 1))).shape
      (2, 14, 14, 8)
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 4, factor: int = 2, rngs: nnx.Rngs):
        _check_sizes(factor=factor)
        super().__init__(in_features, out_features, kernel_size, factor, rngs=rngs)


class ConvTranspose(nnx.ConvTranspose):
    r"""A SAME transposed convolution that multiplies height and width by ``strides``: an ``nnx.ConvTranspose``.

    With :math:`s` = ``strides``, the input is dilated (:math:`s - 1` zeros between pixels)
    and convolved with stride 1, the kernel not flipped (flax's ``transpose_kernel=False``):

    .. math::

       y[n, i, j, o] = b[o] + \sum_{u, v, c} z[n, i + u - p, j + v - p, c]\, W[u, v, c, o],
       \qquad z[n, s i, s j, c] = x[n, i, j, c], \text{ zero elsewhere,}

    with :math:`p = \lceil (k + s - 2) / 2 \rceil` (:math:`k - 1` when :math:`s > k - 1`)
    zeros of padding in front, as ``lax.conv_transpose(..., "SAME")`` pads.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: height and width of the kernel :math:`W`, ``(k, k, in, out)``.
      strides: :math:`s`, the upsampling factor.
      rngs: initialises the kernel and the bias as ``nnx.ConvTranspose`` does.

    Example:
      >>> up = ConvTranspose(8, 4, rngs=nnx.Rngs(0))
      >>> up(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 4, strides: int = 2, *, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features, kernel_size=kernel_size, strides=strides)
        super().__init__(in_features, out_features, (kernel_size, kernel_size), (strides, strides), padding="SAME",
                         rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = _promoted(self, x, layer=type(self).__name__)
        return _fastconv.conv_transpose(x, kernel, strides=self.strides[0]) + bias


class RepeatUpsample(nnx.Module):
    r"""Nearest-neighbour upsampling, then a SAME stride-1 convolution ``conv``.

    .. math::

       y = W \star \mathrm{repeat}_f(x) + b, \qquad \mathrm{repeat}_f(x)[n, f i + r, f j + r', c] = x[n, i, j, c]
       \quad (0 \le r, r' < f).

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: height and width of ``conv``'s kernel.
      factor: :math:`f`, the upsampling factor.
      rngs: initialises ``conv``.

    Example:
      >>> up = RepeatUpsample(8, 4, rngs=nnx.Rngs(0))
      >>> up(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
      >>> up.conv.kernel.shape
      (3, 3, 8, 4)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, factor: int = 2, *, rngs: nnx.Rngs):
        _check_sizes(factor=factor)
        self.factor = factor
        self.conv = Conv(in_features, out_features, kernel_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Not self.conv(repeat(x)): _fastconv may convolve the coarse image once per output phase instead.
        x, kernel, bias = _promoted(self.conv, x, layer=type(self).__name__)
        return _fastconv.repeat_conv(x, kernel, factor=self.factor) + bias


class PixelShuffleUpsample(nnx.Module):
    r"""A SAME convolution ``conv`` to :math:`f^2` times ``out_features`` channels, then :func:`pixel_shuffle`.

    .. math::

       h = W \star x + b, \qquad y[n, f i + a, f j + a', c] = h[n, i, j, (a f + a') C + c],

    with :math:`C` = ``out_features``.

    Args:
      in_features: input channels.
      out_features: :math:`C`, output channels (``conv`` has :math:`f^2 C`).
      kernel_size: height and width of ``conv``'s kernel.
      factor: :math:`f`, the upsampling factor.
      rngs: initialises ``conv``.

    Example:
      >>> up = PixelShuffleUpsample(8, 4, rngs=nnx.Rngs(0))
      >>> up(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
      >>> up.conv.kernel.shape
      (3, 3, 8, 16)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, factor: int = 2, *, rngs: nnx.Rngs):
        _check_sizes(out_features=out_features, factor=factor)
        self.factor = factor
        self.conv = Conv(in_features, out_features * factor * factor, kernel_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_image(type(self).__name__, x, self.conv.in_features)
        return pixel_shuffle(self.conv(x), self.factor)


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Rearranges ``(N, H, W, f·f·C)`` into ``(N, f·H, f·W, C)`` (Shi et al., 2016).

    Channel ``(a f + b) C + c`` of pixel ``(i, j)`` goes to pixel ``(f i + a, f j + b)``, channel ``c``.

    Example:
      >>> pixel_shuffle(jnp.arange(4.0).reshape(1, 1, 1, 4), 2)[0, :, :, 0]
      Array([[0., 1.],
             [2., 3.]], dtype=float32)
    """
    _check_positive("factor", factor)
    if x.ndim != 4:
        raise ValueError(f"pixel_shuffle: x must be (batch, height, width, channels); got shape {x.shape}")
    n, h, w, c = x.shape
    if c % (factor * factor):
        raise ValueError(f"pixel_shuffle: channels ({c}) must be a multiple of factor**2 = {factor * factor}")
    out = c // (factor * factor)
    x = x.reshape(n, h, w, factor, factor, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * factor, w * factor, out)


def make_upsample(kind: str, in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """A ×2 upsampling layer: ``"transposed"`` (kernel 4), ``"repeat"`` or ``"pixel_shuffle"`` (kernel 3).

    Example:
      >>> make_upsample("repeat", 8, 4, rngs=nnx.Rngs(0))(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
    """
    if kind == "transposed":
        return ConvTranspose(in_features, out_features, 4, 2, rngs=rngs)
    if kind == "repeat":
        return RepeatUpsample(in_features, out_features, 3, 2, rngs=rngs)
    if kind == "pixel_shuffle":
        return PixelShuffleUpsample(in_features, out_features, 3, 2, rngs=rngs)
    raise ValueError(f"upsampling must be one of {', '.join(map(repr, UPSAMPLINGS))}; got {kind!r}")
