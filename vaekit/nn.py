"""Convolution layers shared by the conv models: convolution, downsampling and three kinds of upsampling.

(First version: thin wrappers over ``flax.nnx``; the CPU-fast formulation replaces their
internals without changing their parameters.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

UPSAMPLINGS = ("transposed", "repeat", "pixel_shuffle")


class Conv(nnx.Module):
    """A 2-D convolution, NHWC, with the parameters of ``flax.nnx.Conv``."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, strides: int = 1, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_features, out_features, (kernel_size, kernel_size), (strides, strides), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class ConvTranspose(nnx.Module):
    """A transposed convolution that multiplies height and width by ``strides``."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, strides: int = 2, *, rngs: nnx.Rngs):
        self.conv = nnx.ConvTranspose(in_features, out_features, (kernel_size, kernel_size), (strides, strides), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class RepeatUpsample(nnx.Module):
    """Repeats each pixel ``factor`` times along height and width, then convolves."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, factor: int = 2, *, rngs: nnx.Rngs):
        self.factor = factor
        self.conv = Conv(in_features, out_features, kernel_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, self.factor, axis=1), self.factor, axis=2)
        return self.conv(x)


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Rearranges ``(N, H, W, C * f * f)`` into ``(N, H * f, W * f, C)`` (Shi et al., 2016)."""
    n, h, w, c = x.shape
    out = c // (factor * factor)
    x = x.reshape(n, h, w, factor, factor, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * factor, w * factor, out)


class PixelShuffleUpsample(nnx.Module):
    """Convolves to ``factor**2`` times the channels, then rearranges them into a larger image."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, factor: int = 2, *, rngs: nnx.Rngs):
        self.factor = factor
        self.conv = Conv(in_features, out_features * factor * factor, kernel_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return pixel_shuffle(self.conv(x), self.factor)


def make_upsample(kind: str, in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """A ×2 upsampling layer of the named kind: ``"transposed"``, ``"repeat"`` or ``"pixel_shuffle"``."""
    if kind == "transposed":
        return ConvTranspose(in_features, out_features, 4, 2, rngs=rngs)
    if kind == "repeat":
        return RepeatUpsample(in_features, out_features, 3, 2, rngs=rngs)
    if kind == "pixel_shuffle":
        return PixelShuffleUpsample(in_features, out_features, 3, 2, rngs=rngs)
    raise ValueError(f"upsampling must be one of {', '.join(map(repr, UPSAMPLINGS))}; got {kind!r}")


def preferred_loop(model: nnx.Module) -> str:
    """``"scan"`` (whole epoch in one ``lax.scan``) or ``"step"`` (a compiled step per batch).

    Measured on a 2-core CPU: ``lax.conv`` inside a scan body ran 4-10x slower than in a
    per-step jit, while dense-only models are fastest as one scan.
    """
    has_conv = any(isinstance(m, (nnx.Conv, nnx.ConvTranspose)) for _, m in nnx.iter_graph(model))
    return "step" if has_conv else "scan"
