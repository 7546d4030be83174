r"""Segmentation models: a U-Net that gives every pixel a class, and its training objective.

The U-Net (Ronneberger et al., 2015) encodes the image with strided convolutions, decodes
it with ×2 upsamplings, and concatenates each decoder level with the encoder features of
the same resolution (the *skips*), so the fine detail that downsampling discards reaches
the output. Its logits give, per pixel, a softmax distribution over the classes

.. math::

   p_\theta(c \mid x)_{ij} = \operatorname{softmax}_c\, \ell_\theta(x)_{ijc},

trained by the pixel-wise cross-entropy :math:`-\frac{1}{HW}\sum_{ij} \log p_\theta(y_{ij} \mid x)_{ij}`.

References:
  Ronneberger, Fischer & Brox, *U-Net: Convolutional Networks for Biomedical Image
  Segmentation*, MICCAI 2015.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vaekit import nn
from vaekit.models import Config, ConfigError, check_positive_int


@dataclasses.dataclass(frozen=True)
class UNetConfig(Config):
    """The architecture of a :class:`UNet`.

    Attributes:
      in_channels: channels of the input image.
      num_classes: classes per pixel (including background).
      channels: channels per resolution level, finest first; ``len(channels) - 1``
        downsamplings, so height and width must be multiples of ``2 ** (len(channels) - 1)``.
      upsampling: ``"transposed"``, ``"repeat"`` or ``"pixel_shuffle"`` (see :mod:`vaekit.nn`).
    """

    in_channels: int = 1
    num_classes: int = 11
    channels: tuple[int, ...] = (16, 32, 64)
    upsampling: str = "transposed"

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(self.channels))
        check_positive_int("in_channels", self.in_channels)
        check_positive_int("num_classes", self.num_classes)
        if len(self.channels) < 2:
            raise ConfigError(f"channels must name at least two levels; got {self.channels!r}")
        for i, c in enumerate(self.channels):
            check_positive_int(f"channels[{i}]", c)
        if self.upsampling not in nn.UPSAMPLINGS:
            raise ConfigError(f"upsampling must be one of {', '.join(map(repr, nn.UPSAMPLINGS))}; "
                              f"got {self.upsampling!r}")


class UNet(nnx.Module):
    """A U-Net: per level two ReLU convolutions, strided downsampling, ×2 upsampling and skips.

    With ``channels = (16, 32, 64)``: two 3×3 convolutions at full resolution (16 channels),
    then per coarser level a kernel-4 stride-2 downsampling and a 3×3 convolution (32, then
    64 channels); back up, each level upsamples, concatenates the skip of its resolution
    and mixes the two with a 3×3 convolution; a 1×1 convolution gives the class logits.

    Args:
      config: the architecture (a :class:`UNetConfig`).
      rngs: initialises the parameters.

    Example:
      >>> unet = UNet(rngs=nnx.Rngs(0))
      >>> unet(jnp.zeros((2, 64, 64, 1))).shape
      (2, 64, 64, 11)
      >>> UNet(UNetConfig(in_channels=3, num_classes=2), rngs=nnx.Rngs(0))(jnp.zeros((1, 32, 32, 3))).shape
      (1, 32, 32, 2)
    """

    def __init__(self, config: UNetConfig = UNetConfig(), *, rngs: nnx.Rngs):
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig; got {config!r}")
        self.config = config
        channels = config.channels
        self.stem = nnx.List([nn.Conv(config.in_channels, channels[0], 3, rngs=rngs),
                              nn.Conv(channels[0], channels[0], 3, rngs=rngs)])
        self.down = nnx.List([nn.Downsample(a, b, rngs=rngs) for a, b in zip(channels[:-1], channels[1:])])
        self.down_mix = nnx.List([nn.Conv(c, c, 3, rngs=rngs) for c in channels[1:]])
        self.up = nnx.List(
            [nn.make_upsample(config.upsampling, b, a, rngs=rngs) for a, b in zip(channels[-2::-1], channels[:0:-1])]
        )
        self.up_mix = nnx.List([nn.Conv(2 * c, c, 3, rngs=rngs) for c in channels[-2::-1]])
        self.head = nn.Conv(channels[0], config.num_classes, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits ``(batch, height, width, num_classes)`` of images ``(batch, height, width, in_channels)``."""
        scale = 2 ** (len(self.config.channels) - 1)
        if x.ndim != 4 or x.shape[1] % scale or x.shape[2] % scale:
            raise ValueError(f"UNet: x must be (batch, height, width, channels) with height and width "
                             f"multiples of {scale}; got shape {tuple(x.shape)}")
        h = x
        for conv in self.stem:
            h = jax.nn.relu(conv(h))
        skips = [h]
        for down, mix in zip(self.down, self.down_mix):
            h = jax.nn.relu(mix(jax.nn.relu(down(h))))
            skips.append(h)
        for up, mix, skip in zip(self.up, self.up_mix, skips[-2::-1]):
            h = jax.nn.relu(up(h))
            h = jax.nn.relu(mix(jnp.concatenate([h, skip], axis=-1)))
        return self.head(h)


def pixel_cross_entropy(logits: jax.Array, masks: jax.Array) -> jax.Array:
    r"""Mean over pixels of :math:`-\log \operatorname{softmax}(\ell)_{y}`, per image, in nats.

    Args:
      logits: ``(batch, height, width, classes)``.
      masks: ``(batch, height, width)`` integer classes in ``[0, classes)``.

    Returns:
      ``(batch,)`` cross-entropies.

    Example:
      >>> float(pixel_cross_entropy(jnp.zeros((1, 2, 2, 4)), jnp.zeros((1, 2, 2), jnp.int32))[0])  # log 4
      1.3862943649291992
    """
    if masks.shape != logits.shape[:-1]:
        raise ValueError(f"pixel_cross_entropy: masks must have the shape of logits without its class axis, "
                         f"{tuple(logits.shape[:-1])}; got {tuple(masks.shape)}")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    # A one-hot product rather than a gather: its gradient is elementwise, not a scatter.
    picked = jnp.sum(log_p * jax.nn.one_hot(masks, logits.shape[-1], dtype=log_p.dtype), axis=-1)
    return -jnp.mean(picked.reshape(picked.shape[0], -1), axis=-1)


class SegmentationObjective:
    """The loss :func:`vaekit.train.fit` minimises for a segmentation model on ``(images, masks)``.

    Reports ``cross_entropy`` (nats per pixel) and ``pixel_accuracy`` per image; ``key`` and
    ``beta`` are not used (the U-Net is deterministic).
    """

    def __call__(self, model, batch, *, key: jax.Array, beta: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        del key, beta
        images, masks = batch[0], batch[1]
        logits = model(images)
        loss = pixel_cross_entropy(logits, masks)
        correct = (jnp.argmax(logits, axis=-1) == masks).astype(jnp.float32)
        return loss, {"cross_entropy": loss, "pixel_accuracy": jnp.mean(correct.reshape(correct.shape[0], -1), axis=-1)}
