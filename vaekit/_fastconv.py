r"""How the layers of :mod:`vaekit.nn` are computed: the same maths, the backend's fastest way.

:mod:`vaekit.nn` says *what* each layer computes; this module decides *how*. Every
formulation here gives the output and derivatives of flax's own layer (``tests/test_nn.py``
compares them under every :class:`ConvPlan`); only the work done differs. The layers call
three functions, :func:`conv`, :func:`conv_transpose` and :func:`repeat_conv`, each of
which picks its formulation from :func:`current_plan`.

Sub-pixel (phase) form of an upsampling
---------------------------------------

A ×2 upsampling writes an output twice as fine as its input. Call an output pixel's
*phase* :math:`r` its position inside its block of :math:`f` fine pixels (:math:`f = 2`:
even pixels have phase 0, odd ones phase 1), so that fine pixel :math:`i = f m + r` sits in
coarse cell :math:`m`. Both the transposed convolution and repeat-then-convolve are linear
in the coarse input :math:`x`, and each kernel tap :math:`t` of a phase-:math:`r` output
lands on a coarse pixel at a fixed offset :math:`d = \mathrm{offset}_r(t)` from :math:`m`.
Grouping the taps by offset,

.. math::

   y[f m + r] = \sum_{d} x[m + d]\, K_r[d],
   \qquad K_r[d] = \sum_{t \,:\, \mathrm{offset}_r(t) = d} W[t],

so each phase is a *stride-1* convolution of the coarse image with a small kernel
:math:`K_r` made of the layer's own weights; the :math:`f` results are then interleaved.

Worked example: a 1-D transposed convolution, stride 2, kernel :math:`W = (W_0, W_1, W_2, W_3)`,
``"SAME"`` padding, input :math:`(x_0, x_1, x_2)`. ``lax.conv_transpose`` inserts a zero
between input pixels, :math:`z = (x_0, 0, x_1, 0, x_2)` (zero outside), and convolves it
without flipping the kernel, two pixels of padding in front (``lead`` in
:func:`_transposed_taps`): :math:`y_i = \sum_t z_{i + t - 2} W_t`. For an even output
:math:`i = 2m` only the even taps meet a non-zero :math:`z`, for an odd one only the odd taps::

    phase 0:  y[2m]     = W0 x[m-1] + W2 x[m]        taps (t, d): (0, -1), (2, 0)
    phase 1:  y[2m + 1] = W1 x[m]   + W3 x[m+1]      taps (t, d): (1,  0), (3, 1)

Each phase is a two-tap convolution of :math:`x` (2×2 in 2-D): the zeros of the dilated
image (one pixel in two in 1-D, three in four in 2-D) are never multiplied. With :math:`x = (1, 10, 100)` and
:math:`W = (1, 2, 3, 4)` the digits show which inputs each output read:

>>> x, w = jnp.array([1.0, 10.0, 100.0]), jnp.array([1.0, 2.0, 3.0, 4.0])
>>> lax.conv_transpose(x.reshape(1, 3, 1), w.reshape(4, 1, 1), (2,), "SAME",
...                    dimension_numbers=("NWC", "WIO", "NWC"))[0, :, 0]
Array([  3.,  42.,  31., 420., 310., 200.], dtype=float32)
>>> _transposed_taps(4, 2)
(((0, -1), (2, 0)), ((1, 0), (3, 1)))

(:math:`y_0 = 3 \cdot 1`, :math:`y_1 = 2 \cdot 1 + 4 \cdot 10`, :math:`y_2 = 1 \cdot 1 + 3 \cdot 10`, ...)

Repeat then convolve works the same way. Repeating :math:`x` gives :math:`u_i = x_{\lfloor i/2 \rfloor}`,
and a SAME 3-tap convolution reads :math:`u_{i-1}, u_i, u_{i+1}`; for :math:`i = 2m` these
are :math:`x_{m-1}, x_m, x_m`, for :math:`i = 2m + 1` they are :math:`x_m, x_m, x_{m+1}`::

    phase 0:  y[2m]     = W0 x[m-1] + (W1 + W2) x[m]
    phase 1:  y[2m + 1] = (W0 + W1) x[m] + W2 x[m+1]

>>> _repeat_taps(3, 2)
(((0, -1), (1, 0), (2, 0)), ((0, 0), (1, 0), (2, 1)))

Two taps per phase instead of three: in 2-D a 3×3 kernel on the fine grid becomes four 2×2
kernels on the coarse one, 2.25 times fewer multiplications. The 2-D phase kernels are the
outer product of the 1-D tap groupings (:func:`_phase_kernel`), and :func:`_subpixel_conv`
convolves and interleaves them.

Strided convolutions and thin layers
------------------------------------

A strided convolution is a stride-1 convolution over ``s × s`` blocks of pixels moved into
channels (space-to-depth, :func:`_space_to_depth_conv`); its input gradient is then a
stride-1 convolution too, where XLA's convolves an image dilated with zeros. A stride-1
convolution with one input channel, or a 1×1 one, is one matrix product with its patches
(:func:`_patches_conv`).

One part at a time
------------------

A layer is bilinear in its input and kernel, so its derivative is
:math:`y' = f(x', W) + f(x, W')`, and reverse mode computes the input and kernel gradients
as the transposes of those two terms. A ``jax.custom_jvp`` (:func:`_by_forms`) lets the
output and each term take its own formulation, all of them the same maths: a strided
convolution keeps XLA's output and kernel gradient but takes its input gradient through
space-to-depth blocks. The rule is plain JAX, so ``jax.jvp``, ``jax.vmap`` and higher
derivatives pass through every layer.

References:
  Dumoulin & Visin, *A guide to convolution arithmetic for deep learning*, 2016.
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
    (``benchmarks/README.md`` has the numbers: 5.6-12.7x for transposed convolutions,
    2.4-2.8x for the strided convolution at full resolution). On GPUs and
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


def preferred_loop(model: nnx.Module) -> str:
    """``"scan"`` (whole epoch in one ``lax.scan``) or ``"step"`` (a compiled step per batch).

    ``"step"`` as soon as any module in the model's graph is an ``nnx.Conv`` or an
    ``nnx.ConvTranspose`` (the upsamplings of :mod:`vaekit.nn` own one). Measured on a 2-core
    CPU (``benchmarks/conv_throughput.py``, ``benchmarks/train_throughput.py``): XLA runs
    ``lax.conv`` inside a scan body 4-10x slower than in a per-step jit, layer by layer, and
    the conv VAE trained 13x faster with steps (4,011 against 305 images/s), while a
    dense-only model is fastest as one scan (no Python between steps). On GPUs and TPUs this
    choice is unmeasured; steps are right everywhere, only the speed differs.
    """
    has_conv = any(isinstance(m, (nnx.Conv, nnx.ConvTranspose)) for _, m in nnx.iter_graph(model))
    return "step" if has_conv else "scan"


# --------------------------------------------------------------------------- formulations


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's (and flax's) SAME padding: output ``ceil(size / stride)``, the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


Taps = tuple[tuple[tuple[int, int], ...], ...]  # per phase: (kernel tap, coarse offset) pairs


def _transposed_taps(kernel: int, stride: int) -> Taps:
    """Phases of ``lax.conv_transpose(..., "SAME")``: fine pixel ``s m + r`` reads coarse ``m + d`` with tap ``t``.

    ``lead`` is the zero padding ``lax.conv_transpose`` puts in front of the dilated input.
    """
    lead = kernel - 1 if stride > kernel - 1 else -(-(kernel + stride - 2) // 2)
    return tuple(
        tuple((t, (r + t - lead) // stride) for t in range(kernel) if (r + t - lead) % stride == 0)
        for r in range(stride)
    )


def _repeat_taps(kernel: int, factor: int) -> Taps:
    """Phases of a SAME stride-1 convolution of an image whose pixels are repeated ``factor`` times."""
    lead = (kernel - 1) // 2
    return tuple(tuple((t, (r + t - lead) // factor) for t in range(kernel)) for r in range(factor))


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


# --------------------------------------------------------------------------- one form per part


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


def _conv_transpose_forms(x: jax.Array, kernel: jax.Array, strides: int, plan: ConvPlan) -> _Forms:
    dilated = functools.partial(_dilated_conv_transpose, strides=strides)
    # With one output channel each phase would be a one-channel convolution: the dilated one is faster.
    if plan.subpixel and kernel.shape[0] == kernel.shape[1] and kernel.shape[-1] > 1:
        phases = functools.partial(_subpixel_conv, taps=_transposed_taps(kernel.shape[0], strides),
                                   out_size=(x.shape[1] * strides, x.shape[2] * strides))
        # The input derivative of the dilated form is a strided convolution, without dilation.
        return _Forms(phases, dilated, phases)
    return _Forms(dilated, dilated, dilated)


# --------------------------------------------------------------------------- what the layers call


def conv(x: jax.Array, kernel: jax.Array, *, strides: int = 1, plan: ConvPlan | None = None) -> jax.Array:
    r"""A SAME convolution without bias, NHWC, kernel ``(k, k, in, out)``: ``nnx.Conv``'s maths.

    .. math::

       y[n, i, j, o] = \sum_{u, v, c} x_{\mathrm{pad}}[n, s i + u, s j + v, c]\, W[u, v, c, o].

    Args:
      x: images ``(batch, height, width, in)``.
      kernel: ``(k, k, in, out)``.
      strides: ``s``, the step between outputs.
      plan: how to compute it; :func:`current_plan` if ``None``.

    Returns:
      ``(batch, ceil(height / s), ceil(width / s), out)``.
    """
    return _apply(_conv_forms(x, kernel, strides, plan or current_plan()), x, kernel)


def conv_transpose(x: jax.Array, kernel: jax.Array, *, strides: int = 2, plan: ConvPlan | None = None) -> jax.Array:
    """A SAME transposed convolution without bias that multiplies height and width by ``strides``.

    ``nnx.ConvTranspose``'s maths (``padding="SAME"``, ``transpose_kernel=False``).

    Args:
      x: images ``(batch, height, width, in)``.
      kernel: ``(k, k, in, out)``.
      strides: the upsampling factor.
      plan: how to compute it; :func:`current_plan` if ``None``.

    Returns:
      ``(batch, strides * height, strides * width, out)``.
    """
    return _apply(_conv_transpose_forms(x, kernel, strides, plan or current_plan()), x, kernel)


def repeat_conv(x: jax.Array, kernel: jax.Array, *, factor: int = 2, plan: ConvPlan | None = None) -> jax.Array:
    """Repeats each pixel into a ``factor × factor`` block, then a SAME stride-1 convolution without bias.

    Args:
      x: images ``(batch, height, width, in)``.
      kernel: ``(k, k, in, out)``.
      factor: the upsampling factor.
      plan: how to compute it; :func:`current_plan` if ``None``.

    Returns:
      ``(batch, factor * height, factor * width, out)``.
    """
    plan = plan or current_plan()
    if plan.subpixel and kernel.shape[0] == kernel.shape[1]:
        taps = _repeat_taps(kernel.shape[0], factor)
        return _subpixel_conv(x, kernel, taps=taps, out_size=(x.shape[1] * factor, x.shape[2] * factor))
    return conv(jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2), kernel, plan=plan)
