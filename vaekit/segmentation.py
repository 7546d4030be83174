r"""Segmentation networks: a class for every pixel, from plain encoder-decoders to FCN and the U-Net.

Every network here maps an image :math:`x` of shape ``(batch, H, W, in_channels)`` to logits
:math:`\ell_\theta(x)` of shape ``(batch, H, W, K)``, one softmax distribution over the
:math:`K` classes per pixel,

.. math::

   p_\theta(y_{ij} = c \mid x) = \operatorname{softmax}_c\, \ell_\theta(x)_{ijc},

trained by the pixel cross-entropy against an integer mask :math:`y \in \{0, \dots, K-1\}^{H \times W}`
(:func:`pixel_cross_entropy`, :class:`SegmentationObjective`):
:math:`-\frac{1}{HW}\sum_{ij} \log p_\theta(y_{ij} \mid x)`. With :math:`K = 2` the classes are
background and foreground; the scenes of :mod:`vaekit.scenes` have :math:`K = 11`.

All of them share one encoder, so that a comparison measures the decoders: two 3×3
convolutions at full resolution (``channels[0]``), then per coarser level a kernel-4,
stride-2 :class:`~vaekit.nn.Downsample` and a 3×3 convolution. Level :math:`k` has stride
:math:`2^k` and ``channels[k]`` channels; call its features :math:`e_k` (ReLU after every layer).

* :class:`SegmentationAutoencoder` decodes the coarsest map alone: per level back up, a ×2
  upsampling :math:`u_k` and a 3×3 convolution :math:`m_k`,
  :math:`d_k = m_k(u_k(d_{k+1}))`, :math:`d_{L-1} = e_{L-1}`, then a 1×1 head. Everything the
  mask needs must pass the bottleneck. ``deep_supervision`` adds a 1×1 head at every
  decoder scale and :class:`MultiScaleSegmentationObjective` sums their cross-entropies,
  each against the mask reduced to that scale (:func:`downsample_masks`), as the
  Gated Feedback Refinement Network does (Islam et al., 2017; without its gates).
* :class:`UNet` (Ronneberger et al., 2015) concatenates the encoder map of the same
  resolution before each mixing convolution, :math:`d_k = m_k([u_k(d_{k+1}), e_k])`: the
  *skips* bring back the detail that downsampling threw away.
* :class:`FCN` (Long, Shelhamer & Darrell, 2015) turns features into class scores early:
  a 1×1 convolution :math:`s_k` per level gives :math:`K` score maps, and only scores are
  upsampled. From the coarsest level down to stride 2, :math:`f_{L-1} = s_{L-1}(e_{L-1})`,
  :math:`f_k = t_k(f_{k+1}) + s_k(e_k)` with :math:`t_k` a learned ×2 transposed convolution
  started as bilinear interpolation; a fixed bilinear ×2 gives the logits. With the
  default four levels this is FCN-8s's recipe at a smaller scale (a stride-8 net fused with
  its stride-4 and stride-2 scores); ``skips=False`` keeps only :math:`s_{L-1}`, upsampled
  bilinearly by :math:`2^{L-1}` (FCN-32s's coarse masks). An FCN has no fully connected layer
  at all: that is the point of its name. A network that averages its features over the whole
  image (global average pooling) keeps what the image holds but not where: moving an object
  leaves the pooled vector nearly unchanged, and so the mask decoded from it.

The segmentation VAE of the fourth case is in :mod:`vaekit.segmentation_vae`.

References:
  Long, Shelhamer & Darrell, *Fully Convolutional Networks for Semantic Segmentation*,
  CVPR 2015, pp. 3431-3440.
  Ronneberger, Fischer & Brox, *U-Net: Convolutional Networks for Biomedical Image
  Segmentation*, MICCAI 2015.
  Islam, Rochan, Bruce & Wang, *Gated Feedback Refinement Network for Dense Image
  Labeling*, CVPR 2017.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaekit import nn
from vaekit.models import Config, ConfigError, check_positive_int


# --- what the networks share ----------------------------------------------------------------------


def check_levels(config: Config) -> None:
    """Checks the fields every segmentation config has: ``in_channels``, ``num_classes``, ``channels``.

    Raises:
      ConfigError: naming the field and what it must be.
    """
    object.__setattr__(config, "channels", tuple(config.channels))
    check_positive_int("in_channels", config.in_channels)
    check_positive_int("num_classes", config.num_classes)
    if len(config.channels) < 2:
        raise ConfigError(f"channels must name at least two levels; got {config.channels!r}")
    for i, c in enumerate(config.channels):
        check_positive_int(f"channels[{i}]", c)


def check_upsampling(upsampling: str) -> None:
    """Raises :class:`~vaekit.models.ConfigError` unless ``upsampling`` is one of :data:`vaekit.nn.UPSAMPLINGS`."""
    if upsampling not in nn.UPSAMPLINGS:
        raise ConfigError(f"upsampling must be one of {', '.join(map(repr, nn.UPSAMPLINGS))}; got {upsampling!r}")


def check_flag(name: str, value) -> None:
    """Raises :class:`~vaekit.models.ConfigError` naming ``name`` unless ``value`` is a ``bool`` (``1`` is not)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False; got {value!r}")


def check_config(config, config_class: type) -> None:
    """Raises a TypeError unless a model was given a config of its own class."""
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}; got {config!r}")


def check_images(model: str, x: jax.Array, in_channels: int, scale: int) -> None:
    """A ValueError naming ``model`` unless ``x`` is ``(batch, H, W, in_channels)``, H and W multiples of ``scale``."""
    if x.ndim != 4 or x.shape[-1] != in_channels or x.shape[1] % scale or x.shape[2] % scale:
        raise ValueError(f"{model}: x must be (batch, height, width, {in_channels}) with height and width "
                         f"multiples of {scale}; got shape {tuple(x.shape)}")


class Encoder(nnx.Module):
    """The encoder all the segmentation networks share; returns the map of every level, finest first.

    Level 0: two 3×3 convolutions to ``channels[0]``; level :math:`k \\ge 1`: a kernel-4 stride-2
    :class:`~vaekit.nn.Downsample` to ``channels[k]`` and a 3×3 convolution; ReLU after each.

    Example:
      >>> levels = Encoder(3, (8, 16), rngs=nnx.Rngs(0))(jnp.zeros((1, 8, 8, 3)))
      >>> [level.shape for level in levels]
      [(1, 8, 8, 8), (1, 4, 4, 16)]
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], *, rngs: nnx.Rngs):
        self.stem = nnx.List([nn.Conv(in_channels, channels[0], 3, rngs=rngs),
                              nn.Conv(channels[0], channels[0], 3, rngs=rngs)])
        self.down = nnx.List([nn.Downsample(a, b, rngs=rngs) for a, b in zip(channels[:-1], channels[1:])])
        self.down_mix = nnx.List([nn.Conv(c, c, 3, rngs=rngs) for c in channels[1:]])

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        h = x
        for conv in self.stem:
            h = jax.nn.relu(conv(h))
        levels = [h]
        for down, mix in zip(self.down, self.down_mix):
            h = jax.nn.relu(mix(jax.nn.relu(down(h))))
            levels.append(h)
        return levels


class Decoder(nnx.Module):
    """Back up from the coarsest map without skips: per level a ×2 upsampling and a 3×3 convolution, ReLU after each.

    Returns the map of every scale, coarsest (its input) first, full resolution last.

    Example:
      >>> maps = Decoder((8, 16), "repeat", rngs=nnx.Rngs(0))(jnp.zeros((1, 4, 4, 16)))
      >>> [h.shape for h in maps]
      [(1, 4, 4, 16), (1, 8, 8, 8)]
    """

    def __init__(self, channels: tuple[int, ...], upsampling: str, *, rngs: nnx.Rngs):
        self.up = nnx.List(
            [nn.make_upsample(upsampling, b, a, rngs=rngs) for a, b in zip(channels[-2::-1], channels[:0:-1])]
        )
        self.up_mix = nnx.List([nn.Conv(c, c, 3, rngs=rngs) for c in channels[-2::-1]])

    def __call__(self, h: jax.Array) -> list[jax.Array]:
        maps = [h]
        for up, mix in zip(self.up, self.up_mix):
            h = jax.nn.relu(mix(jax.nn.relu(up(h))))
            maps.append(h)
        return maps


# --- the U-Net ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UNetConfig(Config):
    """The architecture of a :class:`UNet`.

    Attributes:
      in_channels: channels of the input image (3: the colour scenes).
      num_classes: classes per pixel (including background).
      channels: channels per resolution level, finest first; ``len(channels) - 1``
        downsamplings, so height and width must be multiples of ``2 ** (len(channels) - 1)``.
      upsampling: ``"transposed"``, ``"repeat"`` or ``"pixel_shuffle"`` (see :mod:`vaekit.nn`).
    """

    in_channels: int = 3
    num_classes: int = 11
    channels: tuple[int, ...] = (16, 32, 64)
    upsampling: str = "transposed"

    def __post_init__(self):
        check_levels(self)
        check_upsampling(self.upsampling)


class UNet(nnx.Module):
    """A U-Net: the shared encoder, then per level ×2 upsampling, the skip of that resolution and a 3×3 convolution.

    With ``channels = (16, 32, 64)``: two 3×3 convolutions at full resolution (16 channels),
    then per coarser level a kernel-4 stride-2 downsampling and a 3×3 convolution (32, then
    64 channels); back up, each level upsamples, concatenates the skip of its resolution
    and mixes the two with a 3×3 convolution; a 1×1 convolution gives the class logits.

    Args:
      config: the architecture (a :class:`UNetConfig`).
      rngs: initialises the parameters.

    Example:
      >>> unet = UNet(rngs=nnx.Rngs(0))
      >>> unet(jnp.zeros((2, 64, 64, 3))).shape
      (2, 64, 64, 11)
      >>> unet.features(jnp.zeros((2, 64, 64, 3))).shape
      (2, 64, 64, 16)
    """

    def __init__(self, config: UNetConfig = UNetConfig(), *, rngs: nnx.Rngs):
        check_config(config, UNetConfig)
        self.config = config
        channels = config.channels
        self.encoder = Encoder(config.in_channels, channels, rngs=rngs)
        self.up = nnx.List(
            [nn.make_upsample(config.upsampling, b, a, rngs=rngs) for a, b in zip(channels[-2::-1], channels[:0:-1])]
        )
        self.up_mix = nnx.List([nn.Conv(2 * c, c, 3, rngs=rngs) for c in channels[-2::-1]])
        self.head = nn.Conv(channels[0], config.num_classes, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits ``(batch, height, width, num_classes)`` of images ``(batch, height, width, in_channels)``."""
        return self.head(self.features(x))

    def features(self, x: jax.Array) -> jax.Array:
        """The last decoder map ``(batch, height, width, channels[0])``, before the 1×1 head.

        Models that put their own per-pixel head on a U-Net (the probabilistic U-Net) start here.
        """
        check_images("UNet", x, self.config.in_channels, 2 ** (len(self.config.channels) - 1))
        skips = self.encoder(x)
        h = skips[-1]
        for up, mix, skip in zip(self.up, self.up_mix, skips[-2::-1]):
            h = jax.nn.relu(up(h))
            h = jax.nn.relu(mix(jnp.concatenate([h, skip], axis=-1)))
        return h


# --- the plain and the deeply supervised autoencoder ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class SegmentationAutoencoderConfig(Config):
    """The architecture of a :class:`SegmentationAutoencoder`.

    Attributes:
      in_channels: channels of the input image.
      num_classes: classes per pixel (including background).
      channels: channels per level, finest first, as in :class:`UNetConfig`.
      upsampling: ``"transposed"`` (the first case), ``"repeat"`` (the third) or ``"pixel_shuffle"``.
      deep_supervision: a 1×1 head at every decoder scale (the second case), for
        :class:`MultiScaleSegmentationObjective`.
    """

    in_channels: int = 3
    num_classes: int = 2
    channels: tuple[int, ...] = (16, 32, 64)
    upsampling: str = "transposed"
    deep_supervision: bool = False

    def __post_init__(self):
        check_levels(self)
        check_upsampling(self.upsampling)
        check_flag("deep_supervision", self.deep_supervision)


class SegmentationAutoencoder(nnx.Module):
    """An encoder-decoder without skips: the U-Net's layers, less what the skips add.

    Back up from the coarsest map, each level upsamples ×2 and mixes with a 3×3 convolution
    of its own width (the U-Net's mixing convolution sees twice as many channels). With
    ``deep_supervision``, a 1×1 head turns every coarser decoder map into logits too.

    Args:
      config: the architecture (a :class:`SegmentationAutoencoderConfig`).
      rngs: initialises the parameters.

    Example:
      >>> model = SegmentationAutoencoder(SegmentationAutoencoderConfig(deep_supervision=True), rngs=nnx.Rngs(0))
      >>> [logits.shape for logits in model.scale_logits(jnp.zeros((1, 16, 16, 3)))]
      [(1, 4, 4, 2), (1, 8, 8, 2), (1, 16, 16, 2)]
    """

    def __init__(self, config: SegmentationAutoencoderConfig = SegmentationAutoencoderConfig(), *, rngs: nnx.Rngs):
        check_config(config, SegmentationAutoencoderConfig)
        self.config = config
        channels = config.channels
        self.encoder = Encoder(config.in_channels, channels, rngs=rngs)
        self.decoder = Decoder(channels, config.upsampling, rngs=rngs)
        self.head = nn.Conv(channels[0], config.num_classes, 1, rngs=rngs)
        # Coarsest first, the bottleneck included; the finest scale is ``head``'s.
        self.scale_heads = nnx.List([nn.Conv(c, config.num_classes, 1, rngs=rngs) for c in channels[:0:-1]]
                                    if config.deep_supervision else [])

    def _decoder_maps(self, x: jax.Array) -> list[jax.Array]:
        check_images("SegmentationAutoencoder", x, self.config.in_channels, 2 ** (len(self.config.channels) - 1))
        return self.decoder(self.encoder(x)[-1])

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits ``(batch, height, width, num_classes)``."""
        return self.head(self._decoder_maps(x)[-1])

    def scale_logits(self, x: jax.Array) -> tuple[jax.Array, ...]:
        """Logits at every decoder scale, coarsest (stride ``2 ** (len(channels) - 1)``) first, the finest last.

        The last is ``self(x)``. Only a model built with ``deep_supervision=True`` has the heads.
        """
        if not self.config.deep_supervision:
            raise ValueError("SegmentationAutoencoder.scale_logits: the model has no heads at the coarser scales; "
                             "build it with deep_supervision=True")
        maps = self._decoder_maps(x)
        return (*(head(h) for head, h in zip(self.scale_heads, maps[:-1])), self.head(maps[-1]))


# --- FCN ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FCNConfig(Config):
    """The architecture of an :class:`FCN`.

    Attributes:
      in_channels: channels of the input image.
      num_classes: classes per pixel (including background).
      channels: channels per level, finest first: the encoder's stride is
        ``2 ** (len(channels) - 1)`` (8 by default).
      skips: fuse the class scores of every level down to stride 2 (FCN-8s style), or
        upsample the coarsest scores alone (FCN-32s style).
    """

    in_channels: int = 3
    num_classes: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 64)
    skips: bool = True

    def __post_init__(self):
        check_levels(self)
        check_flag("skips", self.skips)


def bilinear_kernel(channels: int) -> np.ndarray:
    """A ``(4, 4, channels, channels)`` transposed-convolution kernel that upsamples ×2 bilinearly, channel by channel.

    With the padding of :class:`~vaekit.nn.ConvTranspose`, output ``2m`` gets
    :math:`\\tfrac14 x_{m-1} + \\tfrac34 x_m` and ``2m + 1`` gets :math:`\\tfrac34 x_m + \\tfrac14 x_{m+1}`
    on each axis: interpolation between pixel centres (zeros beyond the border).
    """
    taps = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
    return np.einsum("u,v,co->uvco", taps, taps, np.eye(channels, dtype=np.float32))


def bilinear_upsample(x: jax.Array, factor: int) -> jax.Array:
    """Bilinear interpolation of ``(batch, H, W, C)`` to ``(batch, factor·H, factor·W, C)``."""
    batch, height, width, channels = x.shape
    return jax.image.resize(x, (batch, factor * height, factor * width, channels), "bilinear")


class FCN(nnx.Module):
    """A fully convolutional network: class scores at coarse levels, upsampled and summed.

    The shared encoder; a 1×1 convolution ``scores[k]`` gives class scores from level
    :math:`k`. With ``skips`` the scores of the coarsest level go up ×2 at a time through
    learned transposed convolutions, started as bilinear interpolation
    (:func:`bilinear_kernel`), each time adding the scores of the next finer level, down to
    stride 2; a fixed bilinear ×2 gives full resolution. Without, the coarsest scores are
    interpolated straight to full resolution.

    Args:
      config: the architecture (an :class:`FCNConfig`).
      rngs: initialises the parameters.

    Example:
      >>> fcn = FCN(rngs=nnx.Rngs(0))
      >>> fcn(jnp.zeros((2, 32, 32, 3))).shape
      (2, 32, 32, 2)
    """

    def __init__(self, config: FCNConfig = FCNConfig(), *, rngs: nnx.Rngs):
        check_config(config, FCNConfig)
        self.config = config
        channels, k = config.channels, config.num_classes
        self.encoder = Encoder(config.in_channels, channels, rngs=rngs)
        # Coarsest first; level 0 (full resolution) has no scores, as FCN-8s stops short of its finest layers.
        fused = channels[:0:-1] if config.skips else channels[-1:]
        self.scores = nnx.List([nn.Conv(c, k, 1, rngs=rngs) for c in fused])
        for finer in self.scores[1:]:
            # Zero, as Long et al. start the added layers: the net starts as the coarse one, skips learn what it lacks.
            finer.kernel[...] = jnp.zeros_like(finer.kernel[...])
        self.up = nnx.List([nn.ConvTranspose(k, k, 4, 2, rngs=rngs) for _ in fused[1:]])
        for up in self.up:
            up.kernel[...] = jnp.asarray(bilinear_kernel(k))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits ``(batch, height, width, num_classes)``."""
        levels = len(self.config.channels)
        check_images("FCN", x, self.config.in_channels, 2 ** (levels - 1))
        features = self.encoder(x)[:0:-1]  # coarsest first, as self.scores
        h = self.scores[0](features[0])
        for up, score, e in zip(self.up, self.scores[1:], features[1:]):
            h = up(h) + score(e)
        return bilinear_upsample(h, x.shape[1] // h.shape[1])


# --- objectives -----------------------------------------------------------------------------------


def class_maps(masks: jax.Array, *, where: str) -> jax.Array:
    """Integer class maps ``(batch, H, W)`` as int32: booleans become 0/1; floats are refused (naming ``where``)."""
    if not (jnp.issubdtype(masks.dtype, jnp.integer) or masks.dtype == jnp.bool_):
        raise ValueError(f"{where}: masks must be integer class maps (or booleans) of shape (batch, height, width); "
                         f"got dtype {masks.dtype}")
    return masks.astype(jnp.int32)


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


def pixel_accuracy(logits: jax.Array, masks: jax.Array) -> jax.Array:
    """The fraction of pixels whose most likely class is the mask's, per image ``(batch,)``."""
    correct = (jnp.argmax(logits, axis=-1) == masks).astype(jnp.float32)
    return jnp.mean(correct.reshape(correct.shape[0], -1), axis=-1)


def downsample_masks(masks: jax.Array, factor: int, num_classes: int) -> jax.Array:
    """Class maps reduced ``factor`` times per axis: each ``factor × factor`` block takes its most frequent class.

    A tie goes to the smallest class (background before objects), a fixed rule so that the
    coarse targets do not depend on the order of pixels in a block.

    Args:
      masks: ``(batch, H, W)`` integer classes, ``H`` and ``W`` multiples of ``factor``.
      factor: the block size, a positive integer.
      num_classes: :math:`K`, classes are ``0 .. K - 1``.

    Returns:
      ``(batch, H / factor, W / factor)`` int32 class maps.

    Example:
      >>> downsample_masks(jnp.array([[[1, 1, 0, 0], [1, 0, 0, 1]]]), 2, 2)
      Array([[[1, 0]]], dtype=int32)
    """
    check_positive_int("factor", factor)
    batch, height, width = masks.shape
    if height % factor or width % factor:
        raise ValueError(f"downsample_masks: the masks' height and width must be multiples of factor = {factor}; "
                         f"got shape {tuple(masks.shape)}")
    counts = jax.nn.one_hot(masks, num_classes, dtype=jnp.int32)
    counts = counts.reshape(batch, height // factor, factor, width // factor, factor, num_classes).sum(axis=(2, 4))
    return jnp.argmax(counts, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class SegmentationObjective:
    """The loss :func:`vaekit.train.fit` minimises for a segmentation model on ``(images, masks)``.

    The pixel cross-entropy of ``model(images)``; reports ``cross_entropy`` (nats per pixel)
    and ``pixel_accuracy`` per image. No ``key`` and no ``beta``: the model is deterministic
    (a :class:`~vaekit.segmentation_vae.SegmentationVAE` is decoded at :math:`z = \\mu`).
    """

    def __call__(self, model, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        images, masks = batch[0], class_maps(batch[1], where="SegmentationObjective")
        logits = model(images)
        loss = pixel_cross_entropy(logits, masks)
        return loss, {"cross_entropy": loss, "pixel_accuracy": pixel_accuracy(logits, masks)}


@dataclasses.dataclass(frozen=True)
class MultiScaleSegmentationObjective:
    r"""Deep supervision: the sum over decoder scales of the pixel cross-entropy at that scale.

    .. math::

       \text{loss}(x, y) = \sum_{s} \mathrm{CE}\big(\ell^{(s)}_\theta(x),\, D_s(y)\big),

    :math:`\ell^{(s)}` the logits at stride :math:`s` (``model.scale_logits``) and
    :math:`D_s(y)` the mask reduced to that stride by majority (:func:`downsample_masks`).
    Each term is a mean over its pixels, so every scale weighs the same however few pixels
    it has: the coarse heads pull the decoder's inner layers towards the mask early.

    Metrics: ``cross_entropy`` and ``pixel_accuracy`` of the finest logits (the model's
    output), and ``cross_entropy_stride{s}`` for each coarser scale.
    """

    def __call__(self, model, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        if not hasattr(model, "scale_logits"):
            raise ValueError(f"MultiScaleSegmentationObjective: the model must give logits per scale "
                             f"(scale_logits), e.g. a SegmentationAutoencoder with deep_supervision=True; "
                             f"got a {type(model).__name__}")
        images, masks = batch[0], class_maps(batch[1], where="MultiScaleSegmentationObjective")
        all_logits = model.scale_logits(images)
        metrics, loss = {}, jnp.zeros(images.shape[0], jnp.float32)
        for logits in all_logits:
            stride = masks.shape[1] // logits.shape[1]
            cross_entropy = pixel_cross_entropy(logits, downsample_masks(masks, stride, logits.shape[-1]))
            metrics["cross_entropy" if stride == 1 else f"cross_entropy_stride{stride}"] = cross_entropy
            loss = loss + cross_entropy
        metrics["pixel_accuracy"] = pixel_accuracy(all_logits[-1], masks)
        return loss, metrics
