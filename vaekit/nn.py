r"""Convolution layers for the conv models: convolution, strided downsampling, three ×2 upsamplings.

Each layer *is* its ``flax.nnx`` counterpart (a subclass of ``nnx.Conv`` or
``nnx.ConvTranspose`` with ``padding="SAME"``): the same parameter names, shapes and
initialisation, the same outputs and gradients. Only *how* an output is computed depends
on the backend, and that choice is made in one place, :func:`plan_for`.

The three ways to double the resolution that the segmentation chapters compare:

* ``"transposed"``: a transposed convolution with stride 2 (kernel 4), the adjoint of
  a strided convolution (Dumoulin & Visin, 2016);
* ``"repeat"``: nearest-neighbour upsampling (each pixel repeated into a 2×2 block) followed
  by a 3×3 convolution (Odena et al., 2016: no checkerboard artefacts);
* ``"pixel_shuffle"``: a 3×3 convolution to :math:`4C` channels whose groups of four are
  rearranged into 2×2 blocks (sub-pixel convolution, Shi et al., 2016).

Sub-pixel form. The first two are linear in the input, and each output pixel of phase
:math:`(r_y, r_x)` (its position inside its 2×2 block) reads a fixed neighbourhood of the
coarse input, so

.. math::

   y[f m + r] = \sum_{d} x[m + d]\, K_r[d],
   \qquad K_r[d] = \sum_{t \,:\, \mathrm{offset}_r(t) = d} W[t],

a stride-1 convolution of the coarse image with a small kernel :math:`K_r` made of the
layer's own weights, one per phase, then interleaved. For a 4×4 transposed convolution
each :math:`K_r` is 2×2 (the zeros that ``lax.conv_transpose`` inserts between input
pixels are never multiplied); for repeat + 3×3 it is 2×2 as well (9 taps on the fine grid
fall on 4 coarse pixels), 2.25 times fewer multiplications.

One part at a time. A layer is bilinear in its input and kernel, so its derivative is
:math:`y' = f(x', W) + f(x, W')` and reverse mode computes the input and kernel gradients
as the transposes of those two terms. A ``jax.custom_jvp`` lets each of the three (the
output and the two terms) take its own formulation, all of them the same maths: a strided
convolution keeps XLA's output and kernel gradient but takes its input gradient through
space-to-depth blocks, where XLA's would convolve a zero-dilated image. The rule is plain
JAX, so ``jax.jvp``, ``jax.vmap`` and higher derivatives pass through every layer.

References:
  Dumoulin & Visin, *A guide to convolution arithmetic for deep learning*, 2016.
  Odena, Dumoulin & Olah, *Deconvolution and Checkerboard Artifacts*, Distill 2016.
  Shi et al., *Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network*, CVPR 2016.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jax.custom_derivatives import SymbolicZero

UPSAMPLINGS = ("transposed", "repeat", "pixel_shuffle")

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class ConvPlan:
    """How the layers compute (never what: every plan gives flax's outputs and derivatives).

    Attributes:
      subpixel: upsamplings as stride-1 convolutions of the coarse grid, one small kernel
        per output phase (see the module docstring), output and kernel gradient; the input
        gradient of a transposed convolution stays ``lax.conv_transpose``'s, a strided
        convolution. ``False`` uses ``lax.conv_transpose`` and ``jnp.repeat``, as flax does.
      space_to_depth: strided convolutions regroup each ``stride × stride`` block of pixels
        into channels and convolve with stride 1 (:func:`_space_to_depth_conv`): for the
        input's derivative always, for the output too when the input has one channel.
      patches: a stride-1 convolution as one matrix product with its patches
        (:func:`_patches_conv`): with a 1×1 kernel always, with one input channel for the
        output and input derivative (``k × k`` patches of one number each).
    """

    subpixel: bool = False
    space_to_depth: bool = False
    patches: bool = False


def plan_for(backend: str) -> ConvPlan:
    """The fastest plan measured on ``backend`` (``"cpu"``, ``"gpu"``, ``"tpu"``).

    On the CPU, XLA computes a transposed convolution, and the input gradient of a strided
    one, as a convolution of an image dilated with zeros (three multiplications in four by
    zero for stride 2); its convolution kernel vectorises over channels, so a layer with a
    single input channel runs at a fraction of its speed; and it computes the gradients of
    a 1×1 convolution more slowly than the matmul that it is. Each field of the CPU plan
    removes one of these; ``benchmarks/conv_throughput.py`` measures every layer both ways
    (the README's Performance section has the numbers: 5.6-12.7x for transposed
    convolutions, 2.4-2.8x for the strided convolution at full resolution). On GPUs and
    TPUs, cuDNN and the TPU compiler handle dilations and thin layers natively, so the
    layers are flax's own.
    """
    if backend == "cpu":
        return ConvPlan(subpixel=True, space_to_depth=True, patches=True)
    return ConvPlan()


_forced_plan: ConvPlan | None = None


def current_plan() -> ConvPlan:
    """The plan layers use now: :func:`plan_for` the default backend, unless :func:`use_plan` says otherwise."""
    return _forced_plan if _forced_plan is not None else plan_for(jax.default_backend())


@contextlib.contextmanager
def use_plan(plan: ConvPlan) -> Iterator[ConvPlan]:
    """Traces the layers with ``plan`` inside the ``with`` block (for tests and benchmarks).

    The plan is read when a function is traced: a function compiled before the block keeps its plan.
    """
    global _forced_plan
    if not isinstance(plan, ConvPlan):
        raise TypeError(f"plan must be a ConvPlan; got {type(plan).__name__}")
    previous, _forced_plan = _forced_plan, plan
    try:
        yield plan
    finally:
        _forced_plan = previous


# --------------------------------------------------------------------------- functional core


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's (and flax's) SAME padding: output ``ceil(size / stride)``, the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    if bias is None:
        return y
    return y + bias.reshape(1, 1, 1, -1)


Taps = tuple[tuple[tuple[int, int], ...], ...]  # per phase: (kernel tap, coarse offset) pairs


def _phase_kernel(kernel: jax.Array, taps_y, taps_x) -> tuple[jax.Array, tuple[int, int], tuple[int, int]]:
    """:math:`K_r[d] = \\sum_{t \\to d} W[t]` as a 0/1 contraction, and its span of offsets per axis."""

    def selector(taps, size):
        offsets = sorted({d for _, d in taps})
        matrix = np.zeros((len(offsets), size), np.float32)
        for t, d in taps:
            matrix[offsets.index(d), t] = 1.0
        return matrix, (offsets[0], offsets[-1])

    select_y, span_y = selector(taps_y, kernel.shape[0])
    select_x, span_x = selector(taps_x, kernel.shape[1])
    phase = jnp.einsum("at,bu,tuio->abio", select_y, select_x, kernel, precision=lax.Precision.HIGHEST)
    return phase.astype(kernel.dtype), span_y, span_x


def _subpixel_conv(x: jax.Array, kernel: jax.Array, *, taps: Taps, out_size: tuple[int, int]) -> jax.Array:
    """Interleaves one stride-1 convolution of ``x`` per phase: ``y[f m + r] = sum_d x[m + d] K_r[d]``.

    ``taps[r]`` lists the (kernel tap, coarse offset) pairs of phase ``r``, the same on both axes.
    """
    n, h, w, _ = x.shape
    f = len(taps)
    rows = []
    for taps_y in taps:
        columns = []
        for taps_x in taps:
            if not taps_y or not taps_x:  # a kernel smaller than the stride leaves this phase empty
                columns.append(jnp.zeros((n, h, w, kernel.shape[-1]), x.dtype))
                continue
            phase, (y0, y1), (x0, x1) = _phase_kernel(kernel, taps_y, taps_x)
            columns.append(
                lax.conv_general_dilated(x, phase, (1, 1), [(-y0, y1), (-x0, x1)], dimension_numbers=_DIMENSIONS)
            )
        rows.append(jnp.stack(columns, axis=3))
    y = jnp.stack(rows, axis=2).reshape(n, h * f, w * f, kernel.shape[-1])
    return y[:, : out_size[0], : out_size[1]]


def _transposed_taps(kernel: int, stride: int) -> Taps:
    """Phases of ``lax.conv_transpose(..., "SAME")``: fine pixel ``s m + r`` reads coarse ``m + d``."""
    lead = kernel - 1 if stride > kernel - 1 else -(-(kernel + stride - 2) // 2)
    return tuple(
        tuple((t, (r + t - lead) // stride) for t in range(kernel) if (r + t - lead) % stride == 0)
        for r in range(stride)
    )


def _repeat_taps(kernel: int, factor: int) -> Taps:
    """Phases of a SAME stride-1 convolution of an image whose pixels are repeated ``factor`` times."""
    lead = (kernel - 1) // 2
    return tuple(tuple((t, (r + t - lead) // factor) for t in range(kernel)) for r in range(factor))


Padding = tuple[tuple[int, int], tuple[int, int]]


def _lax_conv(x: jax.Array, kernel: jax.Array, *, strides: int, padding: Padding) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (strides, strides), padding, dimension_numbers=_DIMENSIONS)


def _dilated_conv_transpose(x: jax.Array, kernel: jax.Array, *, strides: int) -> jax.Array:
    return lax.conv_transpose(x, kernel, (strides, strides), "SAME", dimension_numbers=_DIMENSIONS)


def _space_to_depth_conv(x: jax.Array, kernel: jax.Array, *, strides: int, padding: Padding) -> jax.Array:
    r"""A strided convolution as a stride-1 one: each ``s × s`` pixel block becomes ``s²`` channels.

    .. math::

       y[i] = \sum_u x_{\mathrm{pad}}[s i + u]\, W[u]
            = \sum_{a} \sum_{p < s} x_{\mathrm{pad}}[s (i + a) + p]\, W[s a + p],

    a stride-1 convolution over the blocks :math:`x_{\mathrm{pad}}[s b + p]` with the kernel
    :math:`W[s a + p]` (zero-padded to a multiple of :math:`s` taps). Its input derivative is
    a stride-1 convolution too, where ``lax.conv``'s is one of a zero-dilated image.
    """
    n, h, w, c = x.shape
    k = kernel.shape[0]
    blocks = -(-k // strides)
    (top, _), (left, _) = padding
    out_h, out_w = -(-h // strides), -(-w // strides)
    rows, cols = (out_h - 1 + blocks) * strides, (out_w - 1 + blocks) * strides
    x = jnp.pad(x, ((0, 0), (top, rows - h - top), (left, cols - w - left), (0, 0)))
    x = x.reshape(n, rows // strides, strides, cols // strides, strides, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(n, rows // strides, cols // strides, strides * strides * c)
    kernel = jnp.pad(kernel, ((0, blocks * strides - k), (0, blocks * strides - k), (0, 0), (0, 0)))
    kernel = kernel.reshape(blocks, strides, blocks, strides, c, -1).transpose(0, 2, 1, 3, 4, 5)
    kernel = kernel.reshape(blocks, blocks, strides * strides * c, -1)
    return _lax_conv(x, kernel, strides=1, padding=((0, 0), (0, 0)))


def _patches_conv(x: jax.Array, kernel: jax.Array, *, padding: Padding) -> jax.Array:
    r"""A stride-1 convolution as one matrix product: :math:`y[i] = \sum_{u} x_{\mathrm{pad}}[i + u]\, W[u]`.

    The ``k × k`` shifted copies of the image are its patch matrix, ``(pixels, k² · in)``;
    worth it when ``in`` is so small that a convolution cannot vectorise over it.
    """
    (top, bottom), (left, right) = padding
    k_h, k_w, c, _ = kernel.shape
    h, w = x.shape[1:3]
    if k_h * k_w > 1:
        x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        x = jnp.concatenate([x[:, u : u + h, v : v + w] for u in range(k_h) for v in range(k_w)], axis=-1)
    return jnp.einsum("nhwp,po->nhwo", x, kernel.reshape(k_h * k_w * c, -1))


Form = Callable[[jax.Array, jax.Array], jax.Array]  # (x, kernel) -> y, one formulation of one linear map


class _Forms(NamedTuple):
    """Which formulation computes each part of a layer: its output and its two derivatives."""

    output: Form
    input_tangent: Form
    kernel_tangent: Form


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _by_forms(x: jax.Array, kernel: jax.Array, forms: _Forms) -> jax.Array:
    return forms.output(x, kernel)


@functools.partial(_by_forms.defjvp, symbolic_zeros=True)
def _by_forms_jvp(forms, primals, tangents):
    # The layers are bilinear: y' = f(x', W) + f(x, W'). Reverse mode transposes each term,
    # so the form chosen for a tangent is the form its gradient takes; every form is plain
    # JAX, so forward mode, vmap and higher derivatives pass through.
    x, kernel = primals
    dx, dkernel = tangents
    y = _by_forms(x, kernel, forms)
    parts = []
    if not isinstance(dx, SymbolicZero):
        parts.append(forms.input_tangent(dx, kernel))
    if not isinstance(dkernel, SymbolicZero):
        parts.append(forms.kernel_tangent(x, dkernel))
    return y, functools.reduce(jnp.add, parts) if parts else jnp.zeros_like(y)


def _apply(forms: _Forms, x: jax.Array, kernel: jax.Array) -> jax.Array:
    if forms.output is forms.input_tangent is forms.kernel_tangent:
        return forms.output(x, kernel)  # one form: autodiff's derivatives are that form's
    return _by_forms(x, kernel, forms)


def _conv_forms(x: jax.Array, kernel: jax.Array, strides: int, plan: ConvPlan) -> _Forms:
    """The plan's formulation of each part of a SAME convolution (measured choices, see :func:`plan_for`)."""
    padding = (_same_padding(x.shape[1], kernel.shape[0], strides), _same_padding(x.shape[2], kernel.shape[1], strides))
    plain = functools.partial(_lax_conv, strides=strides, padding=padding)
    square = kernel.shape[0] == kernel.shape[1]
    one_channel = x.shape[-1] == 1
    if square and strides > 1 and plan.space_to_depth:
        blocks = functools.partial(_space_to_depth_conv, strides=strides, padding=padding)
        if one_channel:  # the input derivative of data is rarely formed; lax's was faster for it
            return _Forms(blocks, plain, blocks)
        return _Forms(plain, blocks, plain)
    if square and strides == 1 and plan.patches:
        patches = functools.partial(_patches_conv, padding=padding)
        if kernel.shape[0] == 1:  # a matmul over channels: XLA's convolution gradients were 1.5-2x slower
            return _Forms(patches, patches, patches)
        if one_channel:
            return _Forms(patches, patches, plain)
    return _Forms(plain, plain, plain)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *, strides: int = 1,
           plan: ConvPlan | None = None) -> jax.Array:
    r"""A SAME convolution, NHWC, kernel ``(k, k, in, out)``: ``nnx.Conv``'s maths.

    .. math::

       y[n, i, j, o] = b[o] + \sum_{u, v, c} x_{\mathrm{pad}}[n, s i + u, s j + v, c]\, W[u, v, c, o].

    Args:
      x: images ``(batch, height, width, in)``.
      kernel: ``(k, k, in, out)``.
      bias: ``(out,)`` or ``None``.
      strides: ``s``, the step between outputs.
      plan: how to compute it; :func:`current_plan` if ``None``.

    Returns:
      ``(batch, ceil(height / s), ceil(width / s), out)``.
    """
    forms = _conv_forms(x, kernel, strides, plan or current_plan())
    return _add_bias(_apply(forms, x, kernel), bias)


def _conv_transpose_forms(x: jax.Array, kernel: jax.Array, strides: int, plan: ConvPlan) -> _Forms:
    dilated = functools.partial(_dilated_conv_transpose, strides=strides)
    # With one output channel each phase would be a one-channel convolution: the dilated one is faster.
    if plan.subpixel and kernel.shape[0] == kernel.shape[1] and kernel.shape[-1] > 1:
        phases = functools.partial(_subpixel_conv, taps=_transposed_taps(kernel.shape[0], strides),
                                   out_size=(x.shape[1] * strides, x.shape[2] * strides))
        # The input derivative of the dilated form is a strided convolution, without dilation.
        return _Forms(phases, dilated, phases)
    return _Forms(dilated, dilated, dilated)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *, strides: int = 2,
                     plan: ConvPlan | None = None) -> jax.Array:
    """A SAME transposed convolution that multiplies height and width by ``strides``: ``nnx.ConvTranspose``'s maths.

    Args:
      x: images ``(batch, height, width, in)``.
      kernel: ``(k, k, in, out)`` (flax's layout, ``transpose_kernel=False``).
      bias: ``(out,)`` or ``None``.
      strides: the upsampling factor.
      plan: how to compute it; :func:`current_plan` if ``None``.

    Returns:
      ``(batch, strides * height, strides * width, out)``.
    """
    forms = _conv_transpose_forms(x, kernel, strides, plan or current_plan())
    return _add_bias(_apply(forms, x, kernel), bias)


def repeat_conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *, factor: int = 2,
                  plan: ConvPlan | None = None) -> jax.Array:
    """Repeats each pixel into a ``factor × factor`` block, then a SAME stride-1 convolution.

    Returns:
      ``(batch, factor * height, factor * width, out)``.
    """
    plan = plan or current_plan()
    if plan.subpixel and kernel.shape[0] == kernel.shape[1]:
        taps = _repeat_taps(kernel.shape[0], factor)
        y = _subpixel_conv(x, kernel, taps=taps, out_size=(x.shape[1] * factor, x.shape[2] * factor))
        return _add_bias(y, bias)
    x = jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
    return conv2d(x, kernel, bias, plan=plan)


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


# --------------------------------------------------------------------------- layers


def _check_positive(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _check_image(layer: str, x: jax.Array, channels: int) -> None:
    if x.ndim != 4 or x.shape[-1] != channels:
        raise ValueError(f"{layer}: x must be (batch, height, width, {channels}); got shape {tuple(x.shape)}")


def _checked_inputs(layer, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """The input, kernel and bias in one dtype, promoted as ``nnx.Conv`` promotes them."""
    _check_image(type(layer).__name__, x, layer.in_features)
    bias = layer.bias[...] if layer.bias is not None else None
    return layer.promote_dtype((x, layer.kernel[...], bias), dtype=layer.dtype)


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        _check_positive(name, value)


class Conv(nnx.Conv):
    """A SAME 2-D convolution (NHWC): an ``nnx.Conv`` computed the backend's fastest way.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: height and width of the (square) kernel.
      strides: step between outputs; ``strides = 2`` halves height and width.
      rngs: initialises the kernel (LeCun normal) and the bias (zeros) as ``nnx.Conv`` does.

    Example:
      >>> conv = Conv(1, 8, 3, rngs=nnx.Rngs(0))
      >>> conv(jnp.zeros((2, 28, 28, 1))).shape
      (2, 28, 28, 8)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, strides: int = 1, *, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features, kernel_size=kernel_size, strides=strides)
        super().__init__(in_features, out_features, (kernel_size, kernel_size), (strides, strides), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = _checked_inputs(self, x)
        return conv2d(x, kernel, bias, strides=self.strides[0])


class Downsample(Conv):
    """Strided downsampling: a SAME convolution with kernel 4 and stride 2 halves height and width.

    The kernel is a multiple of the stride, so every input pixel feeds the same number of
    outputs (no checkerboard in the gradient) and the padding is symmetric.
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 4, factor: int = 2, rngs: nnx.Rngs):
        _check_sizes(factor=factor)
        super().__init__(in_features, out_features, kernel_size, factor, rngs=rngs)


class ConvTranspose(nnx.ConvTranspose):
    """A SAME transposed convolution that multiplies height and width by ``strides``: an ``nnx.ConvTranspose``.

    Example:
      >>> up = ConvTranspose(8, 4, rngs=nnx.Rngs(0))
      >>> up(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 4, strides: int = 2, *, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features, kernel_size=kernel_size, strides=strides)
        super().__init__(in_features, out_features, (kernel_size, kernel_size), (strides, strides), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = _checked_inputs(self, x)
        return conv_transpose2d(x, kernel, bias, strides=self.strides[0])


class RepeatUpsample(nnx.Conv):
    """Repeats each pixel into a ``factor × factor`` block, then a SAME 3×3 convolution.

    Its parameters are those of the ``nnx.Conv`` applied after ``jnp.repeat``.

    Example:
      >>> up = RepeatUpsample(8, 4, rngs=nnx.Rngs(0))
      >>> up(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, factor: int = 2, *, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features, kernel_size=kernel_size, factor=factor)
        self.factor = factor
        super().__init__(in_features, out_features, (kernel_size, kernel_size), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = _checked_inputs(self, x)
        return repeat_conv2d(x, kernel, bias, factor=self.factor)


class PixelShuffleUpsample(nnx.Conv):
    """A SAME 3×3 convolution to ``factor**2 * out_features`` channels, then :func:`pixel_shuffle`.

    Its parameters are those of that ``nnx.Conv`` (``out_features * factor**2`` outputs).

    Example:
      >>> up = PixelShuffleUpsample(8, 4, rngs=nnx.Rngs(0))
      >>> up(jnp.zeros((2, 7, 7, 8))).shape
      (2, 14, 14, 4)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, factor: int = 2, *, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features, kernel_size=kernel_size, factor=factor)
        self.factor = factor
        super().__init__(in_features, out_features * factor * factor, (kernel_size, kernel_size), padding="SAME",
                         rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = _checked_inputs(self, x)
        return pixel_shuffle(conv2d(x, kernel, bias), self.factor)


def make_upsample(kind: str, in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """A ×2 upsampling layer: ``"transposed"`` (kernel 4), ``"repeat"`` or ``"pixel_shuffle"`` (kernel 3)."""
    if kind == "transposed":
        return ConvTranspose(in_features, out_features, 4, 2, rngs=rngs)
    if kind == "repeat":
        return RepeatUpsample(in_features, out_features, 3, 2, rngs=rngs)
    if kind == "pixel_shuffle":
        return PixelShuffleUpsample(in_features, out_features, 3, 2, rngs=rngs)
    raise ValueError(f"upsampling must be one of {', '.join(map(repr, UPSAMPLINGS))}; got {kind!r}")


def preferred_loop(model: nnx.Module) -> str:
    """``"scan"`` (whole epoch in one ``lax.scan``) or ``"step"`` (a compiled step per batch).

    Measured on a 2-core CPU (``benchmarks/conv_throughput.py``, ``benchmarks/train_throughput.py``):
    XLA runs ``lax.conv`` inside a scan body 4-10x slower than in a per-step jit, layer by
    layer, and the conv VAE trained 13x faster with steps (4,011 against 305 images/s), while a dense-only model is fastest as one scan
    (no Python between steps). On GPUs and TPUs this choice is unmeasured; steps are right
    everywhere, only the speed differs.
    """
    has_conv = any(isinstance(m, (nnx.Conv, nnx.ConvTranspose)) for _, m in nnx.iter_graph(model))
    return "step" if has_conv else "scan"
