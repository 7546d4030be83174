r"""The Probabilistic U-Net: a U-Net that draws several plausible masks for one image.

When annotators disagree about an image (a faint object some mark and others do not), a
U-Net trained on their masks learns the per-pixel average and draws one blurred compromise.
The Probabilistic U-Net (Kohl et al., 2018) is a conditional VAE (Sohn, Lee & Yan, 2015)
around a U-Net: a low-dimensional code :math:`z` picks *which* plausible mask to draw,

.. math::

   p_\theta(y \mid x) = \int p_\theta(y \mid x, z)\, p_\psi(z \mid x)\, dz, \qquad
   p_\theta(y \mid x, z) = \prod_{ij} \operatorname{softmax}\big(\ell_\theta(x, z)_{ij}\big)_{y_{ij}},

with a *prior net* :math:`p_\psi(z \mid x) = \mathcal{N}(\mu_\psi(x), \operatorname{diag}\sigma^2_\psi(x))`
that sees only the image. The logits :math:`\ell_\theta(x, z)` come from the U-Net's last
feature map with :math:`z` copied to every pixel and appended to its channels, mixed by a few
1×1 convolutions (*fcomb*): the U-Net runs once per image, and each new :math:`z` costs only the
1×1 convolutions. In training, a *posterior net* :math:`q_\phi(z \mid x, y)`, which also sees
the annotation :math:`y`, proposes the code that explains that annotation, and the model
maximises the conditional ELBO

.. math::

   \log p_\theta(y \mid x) \ge
     \mathbb{E}_{q_\phi(z \mid x, y)}\big[\log p_\theta(y \mid x, z)\big]
     - \mathrm{KL}\big(q_\phi(z \mid x, y) \,\|\, p_\psi(z \mid x)\big),

whose first term is minus the cross-entropy *summed* over the :math:`H \times W` pixels. The
KL pulls the prior towards every posterior it has to cover, so that at test time
:meth:`ProbabilisticUNet.sample` draws :math:`z` from the **prior** (the annotation is unknown)
and decodes one plausible mask per draw. The posterior is used in training only.

Three things go wrong in reimplementations, and this module guards against each:

* **NaN losses.** The networks output log-variances, and :math:`e^{\log\sigma^2}` overflows
  once a log-variance passes ~88. Here they are bounded smoothly,
  :math:`\log\sigma^2 = L \tanh(a / L)` with :math:`L` = :data:`LOG_VAR_LIMIT`, and the
  cross-entropy uses a log-softmax (never the log of a softmax).
* **A KL that collapses to ~0.** Averaging the cross-entropy over pixels while summing the
  KL over latent dimensions gives the loss :math:`\frac{1}{HW}\big(\sum_{ij} \mathrm{CE}_{ij} + HW\beta\,
  \mathrm{KL}\big)`: :math:`\beta` is multiplied by :math:`HW` (16,384 at 128×128), no code is worth
  its KL, the posterior copies the prior, the decoder learns to ignore :math:`z` and every
  sample shows the same annotation. :class:`ProbabilisticUNetObjective` sums over pixels
  (``reduction="mean"`` reproduces the mistake, to show it); :func:`foreground_diversity`
  (the objective's ``diversity_samples``) shows a collapse as it happens.
* **Prior and posterior confused.** Sampling from the posterior needs the annotation it is
  supposed to predict. The methods are named for what they use: :meth:`~ProbabilisticUNet.prior`
  and :meth:`~ProbabilisticUNet.sample` never touch the posterior net.

As in Kohl et al., the prior and posterior nets have the architecture of the U-Net's encoder
(their own weights), here the kit's (:class:`vaekit.segmentation.Encoder`: fewer convolutions per
level than theirs, strided downsampling rather than average pooling), then a global average.

References:
  Kohl et al., *A Probabilistic U-Net for Segmentation of Ambiguous Images*, NeurIPS 2018.
  Sohn, Lee & Yan, *Learning Structured Output Representation using Deep Conditional
  Generative Models*, NeurIPS 2015.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vaekit import elbo, nn
from vaekit.models import Config, ConfigError, check_positive_int
from vaekit.segmentation import Encoder, UNet, UNetConfig, check_config, check_images, class_maps, pixel_cross_entropy

LOG_VAR_LIMIT = 10.0
"""Bound :math:`L` on every log-variance: :math:`\\sigma^2 \\in (e^{-10}, e^{10})`, far from float32 overflow."""

REDUCTIONS = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class ProbabilisticUNetConfig(Config):
    """The architecture of a :class:`ProbabilisticUNet`.

    Attributes:
      unet: the U-Net that gives the per-pixel features (its 1×1 head becomes the last
        fcomb layer).
      latent_dim: size of :math:`z` (Kohl et al. use 6).
      encoder_channels: channels per resolution of the prior and posterior nets, finest first.
      fcomb_layers: 1×1 convolutions from the features with :math:`z` appended to the logits,
        the U-Net's head included; at least 2, so that :math:`z` meets a nonlinearity.
    """

    unet: UNetConfig = UNetConfig(in_channels=3, num_classes=2)
    latent_dim: int = 6
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    fcomb_layers: int = 3

    def __post_init__(self):
        object.__setattr__(self, "encoder_channels", tuple(self.encoder_channels))
        if not isinstance(self.unet, UNetConfig):
            raise ConfigError(f"unet must be a UNetConfig; got {self.unet!r}")
        check_positive_int("latent_dim", self.latent_dim)
        if not self.encoder_channels:
            raise ConfigError("encoder_channels must name at least one level; got ()")
        for i, c in enumerate(self.encoder_channels):
            check_positive_int(f"encoder_channels[{i}]", c)
        check_positive_int("fcomb_layers", self.fcomb_layers)
        if self.fcomb_layers < 2:
            raise ConfigError(f"fcomb_layers must be at least 2 (a hidden 1x1 layer that mixes z with the features, "
                              f"then the U-Net's head); got {self.fcomb_layers}")


def bounded_log_var(raw: jax.Array) -> jax.Array:
    r"""Maps a network output :math:`a` smoothly into :math:`(-L, L)`: :math:`L \tanh(a / L)`.

    :math:`L` is :data:`LOG_VAR_LIMIT`. Near 0 the map is the identity, so training starts as
    it would without the bound.

    Example:
      >>> bounded_log_var(jnp.array([0.0, 1e30])).tolist()
      [0.0, 10.0]
    """
    return LOG_VAR_LIMIT * jnp.tanh(raw / LOG_VAR_LIMIT)


def diagonal_gaussian_kl(q_mean: jax.Array, q_log_var: jax.Array, p_mean: jax.Array,
                         p_log_var: jax.Array) -> jax.Array:
    r"""Closed-form :math:`\mathrm{KL}(q \,\|\, p)` of two diagonal Gaussians, per dimension.

    For :math:`q = \mathcal{N}(\mu_q, \sigma_q^2)` and :math:`p = \mathcal{N}(\mu_p, \sigma_p^2)`,

    .. math::

       \mathrm{KL} = \tfrac12 \Big(\log\sigma_p^2 - \log\sigma_q^2
         + \frac{\sigma_q^2 + (\mu_q - \mu_p)^2}{\sigma_p^2} - 1\Big) \ge 0,

    zero exactly when the two Gaussians are equal. With :math:`\mu_p = 0, \sigma_p = 1` it is
    :func:`vaekit.elbo.gaussian_kl`. The ratio of variances is computed as
    :math:`e^{\log\sigma_q^2 - \log\sigma_p^2}`, one exponential of a difference.

    Args:
      q_mean, q_log_var: :math:`\mu_q, \log\sigma_q^2`, shape ``(..., latent_dim)``.
      p_mean, p_log_var: :math:`\mu_p, \log\sigma_p^2`, same shape.

    Returns:
      The KL of each dimension; sum over the last axis for a diagonal Gaussian's.

    Example:
      >>> float(diagonal_gaussian_kl(jnp.ones(()), jnp.zeros(()), jnp.ones(()), jnp.zeros(())))
      0.0
      >>> float(diagonal_gaussian_kl(jnp.zeros(()), jnp.zeros(()), jnp.zeros(()), jnp.log(4.0)))  # log 2 - 3/8
      0.3181471824645996
    """
    for name, value in (("q_log_var", q_log_var), ("p_mean", p_mean), ("p_log_var", p_log_var)):
        if value.shape != q_mean.shape:
            raise ValueError(f"diagonal_gaussian_kl: {name} must have the shape of q_mean, {q_mean.shape}; "
                             f"got {value.shape}")
    return 0.5 * (p_log_var - q_log_var + jnp.exp(q_log_var - p_log_var)
                  + jnp.square(q_mean - p_mean) * jnp.exp(-p_log_var) - 1.0)


class GaussianEncoder(nnx.Module):
    r"""Image (and one-hot mask, for the posterior) → U-Net encoder → global average → :math:`\mu, \log\sigma^2`.

    The encoder is :class:`vaekit.segmentation.Encoder` with weights of its own; the average of
    its coarsest map over all pixels feeds a dense layer with the mean and the (bounded)
    log-variance of :math:`z`. The average makes the code one vector per image whatever its size.

    Example:
      >>> mean, log_var = GaussianEncoder(3, (8, 16), 6, rngs=nnx.Rngs(0))(jnp.zeros((2, 16, 16, 3)))
      >>> mean.shape, log_var.shape
      ((2, 6), (2, 6))
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], latent_dim: int, *, rngs: nnx.Rngs):
        self.encoder = Encoder(in_channels, channels, rngs=rngs)
        self.head = nnx.Linear(channels[-1], 2 * latent_dim, rngs=rngs)

    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        coarsest = self.encoder(h)[-1]
        mean, raw_log_var = jnp.split(self.head(jnp.mean(coarsest, axis=(1, 2))), 2, axis=-1)
        return mean, bounded_log_var(raw_log_var)


class ProbabilisticUNet(nnx.Module):
    r"""A U-Net, a prior net :math:`p(z|x)`, a posterior net :math:`q(z|x, y)` and the fcomb that joins :math:`z`.

    The posterior net reads the image with the annotation's one-hot classes appended as
    channels. The fcomb is ``fcomb_layers - 1`` ReLU 1×1 convolutions (the first reads the
    U-Net features and :math:`z`, the others keep the features' width), then the U-Net's own
    1×1 head.

    Args:
      config: the architecture (a :class:`ProbabilisticUNetConfig`).
      rngs: initialises the parameters.

    Example:
      >>> config = ProbabilisticUNetConfig(unet=UNetConfig(in_channels=3, num_classes=2, channels=(8, 16)),
      ...                                  encoder_channels=(8, 16))
      >>> model = ProbabilisticUNet(config, rngs=nnx.Rngs(0))
      >>> images = jnp.zeros((4, 16, 16, 3))
      >>> model.sample(images, key=jax.random.key(0), num_samples=5).shape  # 5 masks per image, from the prior
      (5, 4, 16, 16, 2)
      >>> [a.shape for a in model.posterior(images, jnp.zeros((4, 16, 16), jnp.int32))]  # training only
      [(4, 6), (4, 6)]
    """

    def __init__(self, config: ProbabilisticUNetConfig = ProbabilisticUNetConfig(), *, rngs: nnx.Rngs):
        check_config(config, ProbabilisticUNetConfig)
        self.config = config
        unet = config.unet
        features = unet.channels[0]
        self.unet = UNet(unet, rngs=rngs)
        self.prior_net = GaussianEncoder(unet.in_channels, config.encoder_channels, config.latent_dim, rngs=rngs)
        self.posterior_net = GaussianEncoder(unet.in_channels + unet.num_classes, config.encoder_channels,
                                             config.latent_dim, rngs=rngs)
        widths = (features + config.latent_dim, *(features,) * (config.fcomb_layers - 1))
        self.fcomb = nnx.List([nn.Conv(a, b, 1, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])

    def _check_images(self, x: jax.Array) -> None:
        unet = self.config.unet
        check_images("ProbabilisticUNet", x, unet.in_channels, 2 ** (len(unet.channels) - 1))

    def prior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log-variance of the prior :math:`p(z|x)`, each ``(batch, latent_dim)``: what sampling uses."""
        self._check_images(x)
        return self.prior_net(x)

    def posterior(self, x: jax.Array, masks: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log-variance of the posterior :math:`q(z|x, y)`, each ``(batch, latent_dim)``: training only.

        Args:
          x: images ``(batch, height, width, in_channels)``.
          masks: the annotations :math:`y`, integer classes ``(batch, height, width)`` in
            ``[0, num_classes)`` (or a boolean foreground mask for two classes).
        """
        self._check_images(x)
        if masks.shape != x.shape[:3]:
            raise ValueError(f"ProbabilisticUNet.posterior: masks must be (batch, height, width) = {x.shape[:3]}; "
                             f"got shape {tuple(masks.shape)}")
        classes = class_maps(masks, where="ProbabilisticUNet.posterior")
        one_hot = jax.nn.one_hot(classes, self.config.unet.num_classes, dtype=x.dtype)
        return self.posterior_net(jnp.concatenate([x, one_hot], axis=-1))

    def combine(self, features: jax.Array, z: jax.Array) -> jax.Array:
        """The fcomb: logits from U-Net features ``(batch, H, W, channels[0])`` and codes ``(batch, latent_dim)``."""
        if z.shape != (features.shape[0], self.config.latent_dim):
            raise ValueError(f"ProbabilisticUNet: z must be (batch, latent_dim) = "
                             f"{(features.shape[0], self.config.latent_dim)}; got shape {tuple(z.shape)}")
        tiled = jnp.broadcast_to(z[:, None, None, :], (*features.shape[:3], z.shape[-1]))
        h = jnp.concatenate([features, tiled.astype(features.dtype)], axis=-1)
        for conv in self.fcomb:
            h = jax.nn.relu(conv(h))
        return self.unet.head(h)

    def logits(self, x: jax.Array, z: jax.Array) -> jax.Array:
        r"""The logits :math:`\ell_\theta(x, z)`, ``(batch, H, W, classes)``, of codes ``z`` ``(batch, latent_dim)``."""
        self._check_images(x)
        return self.combine(self.unet.features(x), z)

    def sample(self, x: jax.Array, *, key: jax.Array, num_samples: int) -> jax.Array:
        r"""Logits of ``num_samples`` masks per image, each decoded from its own :math:`z \sim p(z|x)`, the **prior**.

        The U-Net runs once; the samples share its features.

        Returns:
          ``(num_samples, batch, height, width, num_classes)``; ``argmax`` over the last axis
          gives the masks.
        """
        check_positive_int("num_samples", num_samples)
        mean, log_var = self.prior(x)
        features = self.unet.features(x)
        batch = x.shape[0]
        z = elbo.reparameterize(jnp.broadcast_to(mean, (num_samples, *mean.shape)),
                                jnp.broadcast_to(log_var, (num_samples, *log_var.shape)), key=key)
        # The samples ride along the batch axis: one pass of the 1x1 convolutions for all of them.
        stacked = jnp.broadcast_to(features, (num_samples, *features.shape)).reshape(-1, *features.shape[1:])
        logits = self.combine(stacked, z.reshape(num_samples * batch, -1))
        return logits.reshape(num_samples, *x.shape[:3], -1)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Logits decoded from the prior mean (``key=None``) or from one sample of the prior (``key`` given)."""
        if key is not None:
            return self.sample(x, key=key, num_samples=1)[0]
        mean, _ = self.prior(x)
        return self.logits(x, mean)


def foreground_diversity(logits: jax.Array) -> jax.Array:
    r"""Mean :math:`1 - \mathrm{IoU}` over the distinct pairs of sampled masks, per image.

    A mask's foreground is every pixel whose most likely class is not 0 (background); two
    empty foregrounds have IoU 1 (distance 0), one empty and one not IoU 0. A value near 0
    means the samples are all one mask: the KL has collapsed (or the images are unambiguous).
    It is :func:`vaekit.metrics.segmentation.sample_diversity` of the foregrounds, for a whole
    batch at once and in JAX, so that it can run inside a training step.

    Args:
      logits: ``(num_samples, batch, height, width, num_classes)``, e.g. from
        :meth:`ProbabilisticUNet.sample`; at least two samples.

    Returns:
      ``(batch,)`` diversities in ``[0, 1]``.

    Example:
      >>> square = jnp.zeros((4, 4, 2)).at[:2, :2, 1].set(1.0)  # foreground: the top-left 2x2
      >>> float(foreground_diversity(jnp.stack([square, square])[:, None])[0])
      0.0
      >>> float(foreground_diversity(jnp.stack([square, square[::-1]])[:, None])[0])  # disjoint squares
      1.0
    """
    if logits.ndim != 5 or logits.shape[0] < 2:
        raise ValueError(f"foreground_diversity: logits must be (num_samples >= 2, batch, height, width, classes); "
                         f"got shape {tuple(logits.shape)}")
    n = logits.shape[0]
    foreground = (jnp.argmax(logits, axis=-1) != 0).reshape(n, logits.shape[1], -1).astype(jnp.float32)
    intersection = jnp.einsum("ibp,jbp->bij", foreground, foreground)
    area = jnp.sum(foreground, axis=-1).T  # (batch, n)
    union = area[:, :, None] + area[:, None, :] - intersection
    distance = 1.0 - jnp.where(union > 0, intersection / jnp.maximum(union, 1.0), 1.0)
    return jnp.sum(distance, axis=(1, 2)) / (n * (n - 1))  # the diagonal is 0


@dataclasses.dataclass(frozen=True)
class ProbabilisticUNetObjective:
    r"""The β-weighted negative conditional ELBO of a :class:`ProbabilisticUNet`, per image, on ``(images, masks)``.

    .. math::

       \text{loss}(x, y) = \sum_{ij} -\log \operatorname{softmax}\big(\ell_\theta(x, z)_{ij}\big)_{y_{ij}}
         + \beta\, \mathrm{KL}\big(q_\phi(z|x, y) \,\|\, p_\psi(z|x)\big), \qquad z \sim q_\phi(z|x, y),

    :math:`z` drawn from the **posterior** (reparameterized), the KL in closed form
    (:func:`diagonal_gaussian_kl`), :math:`\beta` the one :func:`vaekit.train.fit` passes.

    The cross-entropy is summed over the :math:`H W` pixels, as the likelihood of the whole
    mask is. Its mean over pixels is :math:`\frac{1}{HW}` of that, so minimising
    :math:`\text{mean} + \beta\,\mathrm{KL}` is minimising :math:`\text{sum} + HW\beta\,\mathrm{KL}`: on
    32×32 masks β is silently 1,024 times larger, and the KL collapses to ~0 (every sample the
    same mask). ``reduction="mean"`` is that mistake, kept so that it can be shown. On the
    two-annotation toy task of ``tests/test_probunet.py`` (16×16, 240 steps) we measured, for
    100 prior samples: summed, a KL of 2–4 nats, sample diversity 0.55 and GED 0.07 (the
    optimum for 100 samples is 0.005); averaged, a KL below 0.001, diversity 0.02 and GED
    0.48, no better than a deterministic U-Net's 0.50.

    Metrics per image: ``cross_entropy`` (nats per pixel, for reading, whatever the
    reduction), ``kl`` (nats) and, when ``diversity_samples`` is at least 2,
    ``sample_diversity`` (:func:`foreground_diversity` of that many prior samples: watch it
    to see a collapse as it happens; it costs one more forward pass per step).

    Attributes:
      reduction: ``"sum"`` (the ELBO) or ``"mean"`` (the collapsing mistake).
      diversity_samples: prior samples per image for the ``sample_diversity`` metric; 0 skips it.

    Example:
      >>> config = ProbabilisticUNetConfig(unet=UNetConfig(in_channels=3, num_classes=2, channels=(8, 16)),
      ...                                  encoder_channels=(8, 16))
      >>> model = ProbabilisticUNet(config, rngs=nnx.Rngs(0))
      >>> batch = (jnp.zeros((3, 16, 16, 3)), jnp.zeros((3, 16, 16), jnp.int32))
      >>> losses, metrics = ProbabilisticUNetObjective()(model, batch, key=jax.random.key(0), beta=1.0)
      >>> losses.shape, sorted(metrics)
      ((3,), ['cross_entropy', 'kl'])
    """

    reduction: str = "sum"
    diversity_samples: int = 0

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {self.reduction!r}")
        samples = self.diversity_samples
        if isinstance(samples, bool) or not isinstance(samples, int) or not (samples == 0 or samples >= 2):
            raise ValueError(f"diversity_samples must be 0 (off) or an integer >= 2; got {self.diversity_samples!r}")

    def __call__(self, model: ProbabilisticUNet, batch, *, key: jax.Array,
                 beta: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        images, masks = batch[0], class_maps(batch[1], where="ProbabilisticUNetObjective")
        posterior_key, diversity_key = jax.random.split(key)
        q_mean, q_log_var = model.posterior(images, masks)
        p_mean, p_log_var = model.prior(images)
        z = elbo.reparameterize(q_mean, q_log_var, key=posterior_key)
        cross_entropy = pixel_cross_entropy(model.logits(images, z), masks)  # nats per pixel
        pixels = masks.shape[1] * masks.shape[2]
        reconstruction = pixels * cross_entropy if self.reduction == "sum" else cross_entropy
        kl = jnp.sum(diagonal_gaussian_kl(q_mean, q_log_var, p_mean, p_log_var), axis=-1)
        metrics = {"cross_entropy": cross_entropy, "kl": kl}
        if self.diversity_samples:
            samples = model.sample(images, key=diversity_key, num_samples=self.diversity_samples)
            metrics["sample_diversity"] = foreground_diversity(samples)
        return reconstruction + beta * kl, metrics
