r"""A fully convolutional VAE for segmentation: the image encoded to a Gaussian map, a mask decoded from a draw.

The encoder of :mod:`vaekit.segmentation` reads the image :math:`x`; at its coarsest level
(stride :math:`2^{L-1}`) a 1×1 convolution gives, at every position :math:`(i, j)`, the mean
and log-variance of ``latent_channels`` Gaussians,

.. math::

   q_\phi(z \mid x) = \prod_{i, j, c} \mathcal{N}\big(z_{ijc};\ \mu_\phi(x)_{ijc},\ \sigma^2_\phi(x)_{ijc}\big),
   \qquad p(z) = \mathcal{N}(0, I).

A 1×1 convolution takes :math:`z` back to ``channels[-1]`` features and the decoder of
:class:`~vaekit.segmentation.SegmentationAutoencoder` (×2 upsamplings, no skips) gives mask
logits :math:`\ell_\theta(z)`. Training (:class:`SegmentationVAEObjective`) draws
:math:`z = \mu + \sigma \odot \varepsilon` (Kingma & Welling, 2014) and minimises, per image,

.. math::

   -\sum_{i,j} \log p_\theta(y_{ij} \mid z) \;+\; \beta \sum_{i,j,c} \mathrm{KL}\big(q_\phi(z_{ijc} \mid x)
   \,\|\, \mathcal{N}(0, 1)\big),

both terms summed, so that :math:`\beta = 1` weighs one nat of mask against one nat of code.
(Averaging the cross-entropy over pixels instead would multiply :math:`\beta` by
:math:`HW` in effect, and the code would collapse to the prior.)

What the model is. The encoder sees the image, never the mask, so this is not the ELBO of a
conditional model :math:`p(y \mid x)` (that needs a posterior that sees :math:`y`, as in the
conditional VAE of Sohn et al., 2015, or the probabilistic U-Net of :mod:`vaekit.probunet`).
It is a segmentation autoencoder whose bottleneck is noisy and priced in nats: the
variational information bottleneck of Alemi et al. (2017). Its masks look noisy when
decoded from a draw because the decoder is fed noise; decoding the mean
(``model(x)``, :math:`z = \mu`) removes that noise, which the chapters measure.

References:
  Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
  Sohn, Lee & Yan, *Learning Structured Output Representation using Deep Conditional
  Generative Models*, NeurIPS 2015.
  Alemi, Fischer, Dillon & Murphy, *Deep Variational Information Bottleneck*, ICLR 2017.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vaekit import elbo, nn
from vaekit.models import Config, check_positive_int
from vaekit.segmentation import (Decoder, Encoder, check_config, check_images, check_levels, check_upsampling,
                                 class_maps, pixel_accuracy, pixel_cross_entropy)


@dataclasses.dataclass(frozen=True)
class SegmentationVAEConfig(Config):
    """The architecture of a :class:`SegmentationVAE`.

    Attributes:
      in_channels: channels of the input image.
      num_classes: classes per pixel (including background).
      channels: channels per level, finest first, as in :class:`~vaekit.segmentation.UNetConfig`;
        the latent map has stride ``2 ** (len(channels) - 1)``.
      latent_channels: Gaussian variables per position of the latent map.
      upsampling: ``"transposed"``, ``"repeat"`` or ``"pixel_shuffle"`` (see :mod:`vaekit.nn`).
    """

    in_channels: int = 3
    num_classes: int = 2
    channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 8
    upsampling: str = "transposed"

    def __post_init__(self):
        check_levels(self)
        check_positive_int("latent_channels", self.latent_channels)
        check_upsampling(self.upsampling)


class SegmentationVAE(nnx.Module):
    """Image → Gaussian latent map → mask logits, every layer a convolution.

    Args:
      config: the architecture (a :class:`SegmentationVAEConfig`).
      rngs: initialises the parameters.

    Example:
      >>> model = SegmentationVAE(rngs=nnx.Rngs(0))
      >>> x = jnp.zeros((2, 16, 16, 3))
      >>> mean, log_var = model.encode(x)
      >>> mean.shape, model(x).shape, model(x, key=jax.random.key(0)).shape
      ((2, 4, 4, 8), (2, 16, 16, 2), (2, 16, 16, 2))
    """

    def __init__(self, config: SegmentationVAEConfig = SegmentationVAEConfig(), *, rngs: nnx.Rngs):
        check_config(config, SegmentationVAEConfig)
        self.config = config
        channels, latent = config.channels, config.latent_channels
        self.encoder = Encoder(config.in_channels, channels, rngs=rngs)
        self.to_latent = nn.Conv(channels[-1], 2 * latent, 1, rngs=rngs)
        self.from_latent = nn.Conv(latent, channels[-1], 1, rngs=rngs)
        self.decoder = Decoder(channels, config.upsampling, rngs=rngs)
        self.head = nn.Conv(channels[0], config.num_classes, 1, rngs=rngs)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log-variance of :math:`q_\\phi(z|x)`, each ``(batch, H / s, W / s, latent_channels)``.

        The stride :math:`s` is ``2 ** (len(channels) - 1)``.
        """
        check_images("SegmentationVAE", x, self.config.in_channels, 2 ** (len(self.config.channels) - 1))
        mean, log_var = jnp.split(self.to_latent(self.encoder(x)[-1]), 2, axis=-1)
        return mean, log_var

    def decode(self, z: jax.Array) -> jax.Array:
        """Mask logits ``(batch, H, W, num_classes)`` of a latent map ``z``."""
        if z.ndim != 4 or z.shape[-1] != self.config.latent_channels:
            raise ValueError(f"SegmentationVAE.decode: z must be (batch, height, width, "
                             f"{self.config.latent_channels}); got shape {tuple(z.shape)}")
        return self.head(self.decoder(jax.nn.relu(self.from_latent(z)))[-1])

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Mask logits of ``x``: from a draw :math:`z \\sim q_\\phi(z|x)` with ``key``, else from :math:`z = \\mu`."""
        mean, log_var = self.encode(x)
        return self.decode(mean if key is None else elbo.reparameterize(mean, log_var, key=key))


@dataclasses.dataclass(frozen=True)
class SegmentationVAEObjective:
    r"""Per image, the cross-entropy summed over pixels plus :math:`\beta` times the KL summed over the latent map.

    .. math::

       \text{loss}(x, y) = -\sum_{i,j} \log p_\theta(y_{ij} \mid z) + \beta\, \mathrm{KL}(q_\phi(z|x) \,\|\, p(z)),
       \qquad z \sim q_\phi(z \mid x),

    one draw of :math:`z` per image (``key``), the KL in closed form
    (:func:`vaekit.elbo.gaussian_kl`). Metrics: ``cross_entropy`` in nats **per pixel** (the
    summed term over :math:`HW`, comparable with the deterministic models'), ``kl`` in nats
    per image, and ``pixel_accuracy`` of the sampled decoding.

    Example:
      >>> model = SegmentationVAE(rngs=nnx.Rngs(0))
      >>> batch = (jnp.zeros((3, 16, 16, 3)), jnp.zeros((3, 16, 16), jnp.int32))
      >>> losses, metrics = SegmentationVAEObjective()(model, batch, key=jax.random.key(0), beta=1.0)
      >>> losses.shape, sorted(metrics)
      ((3,), ['cross_entropy', 'kl', 'pixel_accuracy'])
    """

    def __call__(self, model, batch, *, key: jax.Array, beta: float | jax.Array) -> tuple[jax.Array, dict]:
        images, masks = batch[0], class_maps(batch[1], where="SegmentationVAEObjective")
        mean, log_var = model.encode(images)
        logits = model.decode(elbo.reparameterize(mean, log_var, key=key))
        cross_entropy = pixel_cross_entropy(logits, masks)  # per pixel: times H W for the sum
        pixels = masks.shape[1] * masks.shape[2]
        kl = jnp.sum(elbo.gaussian_kl(mean, log_var).reshape(mean.shape[0], -1), axis=-1)
        return pixels * cross_entropy + beta * kl, {"cross_entropy": cross_entropy, "kl": kl,
                                                    "pixel_accuracy": pixel_accuracy(logits, masks)}
