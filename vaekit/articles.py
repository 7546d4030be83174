r"""The source articles' own setups, run as written and fixed only as far as needed to run.

The kit's chapters test what the articles claim by running what the articles wrote. Each
name here reproduces one article section (file name and section in its docstring) and
says what was changed to make it run; anything not named is as the article wrote it.
The corrected counterparts are the kit's own models and objectives.

Article ``001_193e1305f4a6772a.txt`` (a TensorFlow 2 VAE on MNIST):

* §4.2, the network: :class:`SharedHeadVAE`, built as written by :func:`make_article_001_vae`.
  One ReLU layer gives both the mean and the log-variance (:class:`SharedReluHeadEncoder`).
* §4.3, the loss: :class:`Article001Loss`, a pixel-mean squared error plus a KL that no
  gradient reaches.
* §3.2.2–§3.2.3, the signs: :class:`MinMaxElboObjective`, the encoder and decoder pushed
  in the directions the article writes.
* The corrected network of the same widths: :data:`CORRECTED_001_CONFIG`.

Article ``002_981696bee03063c6.txt`` (a NumPy/SciPy class it calls a VAE):

* §4.3, the density and the "KL": :func:`article_002_density`, :func:`article_002_kl`.
* §4.3's reductions with a Bernoulli decoder (chapter 03): :func:`pixel_mean_negative_elbo`, the
  cross-entropy averaged over pixels beside a KL summed over dimensions; :func:`implied_beta`
  reads the β such a loss trains with off its gradients, and :class:`LogitsLossObjective`
  trains a VAE with a loss written as the exercises write one.

References:
  Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vaekit import elbo, models

SHARED_HEAD_SNR_BOUND = 2.0 / math.e
r"""The largest signal-to-noise ratio :math:`|\mu|/\sigma` a dimension of a :class:`SharedReluHeadEncoder` can reach.

With :math:`\log\sigma^2 = \mu` (up to :math:`10^{-5}`), :math:`\mu/\sigma = \mu e^{-\mu/2}`,
whose derivative :math:`(1 - \mu/2) e^{-\mu/2}` vanishes at :math:`\mu = 2`: the maximum is :math:`2/e \approx 0.736`.
"""

LOG_VAR_OFFSET = 1e-5
"""What 001 §4.2 adds to the shared output to make the log-variance (it adds nothing useful: see :class:`SharedReluHeadEncoder`)."""

CORRECTED_001_CONFIG = models.VAEConfig(architecture="mlp", latent_dim=128, hidden_dims=(256, 128))
"""001 §4 corrected: the article's widths 784-256-128, then two linear heads for the mean and the
log-variance of a 128-dimensional code; the decoder mirrors the encoder (128-128-256-784) and gives
Bernoulli logits. Train it with :class:`vaekit.ElboObjective`."""


class SharedReluHeadEncoder(nnx.Module):
    r"""001 §4.2: one stack of ReLU layers whose last output is both the mean and the log-variance.

    .. math::

       h = \operatorname{ReLU}(W_L \cdots \operatorname{ReLU}(W_1 x + b_1) \cdots + b_L), \qquad
       \mu = h, \qquad \log\sigma^2 = h + 10^{-5}.

    The article calls its ``Dense(128, relu)`` encoder twice and reads the mean from one call and
    the log-variance (plus :math:`10^{-5}`) from the other; both calls give the same :math:`h`.
    Since :math:`h \ge 0`: every mean is non-negative (the codes fill one orthant of a prior
    that is symmetric), :math:`\sigma \ge 1` (a posterior never narrower than the prior), and
    :math:`|\mu|/\sigma = h e^{-h/2} \le 2/e` (:data:`SHARED_HEAD_SNR_BOUND`). The
    :math:`10^{-5}` shifts :math:`\log\sigma^2`, so it multiplies :math:`\sigma^2` by
    :math:`e^{10^{-5}}`: it guards against nothing.

    Fixed to run: the image is flattened to 784 pixels (the article feeds ``(N, 28, 28)``).

    Args:
      image_shape: ``(height, width, channels)``.
      hidden_dims: widths of the ReLU layers before the last (the article: ``(256,)``).
      latent_dim: width of the last ReLU layer, the size of :math:`z` (the article: 128).
      rngs: the parameters' random numbers.

    Example:
      >>> encoder = SharedReluHeadEncoder((28, 28, 1), (256,), 128, rngs=nnx.Rngs(0))
      >>> mean, log_var = encoder(jnp.ones((2, 28, 28, 1)))
      >>> bool(jnp.all(mean >= 0)), bool(jnp.all(log_var == mean + 1e-5))
      (True, True)
    """

    def __init__(self, image_shape: tuple[int, int, int], hidden_dims: tuple[int, ...], latent_dim: int, *,
                 rngs: nnx.Rngs):
        sizes = (math.prod(image_shape), *hidden_dims, latent_dim)
        self.layers = nnx.List([models.dense(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            h = jax.nn.relu(layer(h))
        return h, h + LOG_VAR_OFFSET


class SharedHeadVAE(models.VAE):
    r"""A :class:`vaekit.VAE` whose encoder is 001 §4.2's shared ReLU head (:class:`SharedReluHeadEncoder`).

    Everything else is the kit's VAE: the decoder (an MLP to Bernoulli logits; its ``decode`` is the
    sigmoid the article ends with), the likelihood, ``sample`` and ``reconstruct``. So it trains with
    :class:`vaekit.ElboObjective` (the shared head alone, everything else correct) as well as with
    :class:`Article001Loss` (the article as written), and the kit's tools (``vk.encode``,
    ``vaekit.latent.active_units``, the dashboards) take it as they take a VAE.

    Args:
      config: an unconditional ``"mlp"`` :class:`vaekit.VAEConfig`; ``hidden_dims`` are the encoder's
        layers before the shared head, whose width is ``latent_dim``.
      decoder_hidden_dims: the decoder's hidden widths, from :math:`z` to the pixels (the article:
        ``(128,)``); ``None`` mirrors ``hidden_dims``.
      rngs: the parameters' random numbers.

    Raises:
      vaekit.ConfigError: a conv or conditional config (the article's model is neither).
    """

    def __init__(self, config: models.VAEConfig, *, decoder_hidden_dims: tuple[int, ...] | None = None,
                 rngs: nnx.Rngs):
        if config.architecture != "mlp" or config.num_classes is not None:
            raise models.ConfigError(f"SharedHeadVAE is 001 §4.2's MLP: config.architecture must be 'mlp' and "
                                     f"num_classes None; got {config.architecture!r} and {config.num_classes!r}")
        super().__init__(config, rngs=rngs)
        self.encoder = SharedReluHeadEncoder(config.image_shape, config.hidden_dims, config.latent_dim, rngs=rngs)
        if decoder_hidden_dims is not None:
            # MLPDecoder takes the encoder's widths and reverses them.
            self.decoder = models.MLPDecoder(config.image_shape, tuple(reversed(decoder_hidden_dims)),
                                             config.latent_dim, rngs=rngs)

    def encode(self, x: jax.Array, *, condition: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Mean and log-variance from the one shared head, each ``(batch, latent_dim)`` and :math:`\\ge 0`."""
        self.one_hot(condition, x.shape[0])  # refuses a condition, as every unconditional kit model does
        return self.encoder(x)


def make_article_001_vae(*, seed: int = 0) -> SharedHeadVAE:
    """001 §4.2's VAE as written: encoder 784-256-128 (ReLU, shared head), 128-d code, decoder 128-128-784 sigmoid.

    351,504 parameters, as the article's Keras model has. Fixed to run: flattened float32 images (the
    kit's datasets are float32; ``vk.fit`` refuses others). Train it with :class:`Article001Loss` to
    reproduce §4.3, or with :class:`vaekit.ElboObjective` to isolate the shared head.

    Example:
      >>> models.count_parameters(make_article_001_vae())
      351504
    """
    config = models.VAEConfig(architecture="mlp", latent_dim=128, hidden_dims=(256,))
    return SharedHeadVAE(config, decoder_hidden_dims=(128,), rngs=nnx.Rngs(params=seed))


@dataclasses.dataclass(frozen=True)
class Article001Loss:
    r"""001 §4.3's loss: the pixel-mean squared error plus the KL, with the KL out of the gradient's reach.

    .. math::

       \ell(x) = \frac{1}{D}\sum_{i=1}^{D} \big(x_i - \hat x_i(z)\big)^2
               + \sum_j \tfrac12\big(\bar\mu_j^2 + \bar\sigma_j^2 - \log\bar\sigma_j^2 - 1\big),
       \qquad z = \mu + \sigma\odot\varepsilon,

    with :math:`\hat x = \operatorname{sigmoid}(\text{decoder}(z))`, :math:`D` the number of pixels
    and :math:`\bar\mu, \bar\sigma` the encoder's outputs computed *outside* the gradient tape: the
    article's loop calls the encoder before ``tf.GradientTape`` and passes the results in, so the KL
    has the right value and a zero gradient (``kl_gradient=False``, as written). The sample
    :math:`z` is drawn inside the tape, so the encoder still learns, but only from the squared error:
    a noisy autoencoder. ``kl_gradient=True`` computes the KL from the same forward pass (the fix
    of that one error), leaving the mean over pixels against a sum over dimensions (an effective
    :math:`\beta \approx 784`; chapter 03).

    ``fit`` averages the per-example losses over the batch, as the article's ``reduce_mean`` does.
    Fixed to run: flattened float32 images, a fresh key per step. Metrics: ``mse`` (the pixel mean),
    ``rate`` (the KL, nats) and ``article_loss``.

    Attributes:
      kl_gradient: ``False`` as written; ``True`` lets the KL's gradient reach the encoder.

    Example:
      >>> model = make_article_001_vae()
      >>> losses, metrics = Article001Loss()(model, (jnp.zeros((3, 28, 28, 1)),), key=jax.random.key(0))
      >>> losses.shape, sorted(metrics)
      ((3,), ['article_loss', 'mse', 'rate'])
    """

    kl_gradient: bool = False

    def __call__(self, model, batch: tuple[jax.Array, ...], *, key: jax.Array):
        x = batch[0]
        mean, log_var = model.encode(x)
        reconstruction = model.decode(elbo.reparameterize(mean, log_var, key=key))
        mse = jnp.mean(jnp.square(x - reconstruction).reshape(x.shape[0], -1), axis=-1)
        if not self.kl_gradient:
            mean, log_var = jax.lax.stop_gradient((mean, log_var))
        rate = jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)
        loss = mse + rate
        return loss, {"mse": mse, "rate": rate, "article_loss": loss}


DIRECTIONS = ("min", "max")


def _reverse_gradient(x: jax.Array) -> jax.Array:
    """``x`` itself, whose gradient arrives negated: :math:`2\\,\\mathrm{sg}(x) - x`."""
    return 2.0 * jax.lax.stop_gradient(x) - x


@dataclasses.dataclass(frozen=True)
class MinMaxElboObjective:
    r"""The ELBO pushed in the directions 001 §3.2.2–§3.2.3 write, one for the encoder and one for the decoder.

    §3.2.2 writes :math:`\min_\phi \max_\theta \mathcal{L}` (``encoder="min", decoder="max"``, the
    default); §3.2.3's update rule :math:`\phi \leftarrow \phi - \alpha\nabla_\phi\mathcal{L}`,
    :math:`\theta \leftarrow \theta - \alpha\nabla_\theta\mathcal{L}` descends the ELBO in both
    (``encoder="min", decoder="min"``). The right signs, :math:`\max_{\phi,\theta}\mathcal{L}`, are
    ``encoder="max", decoder="max"``: :class:`vaekit.ElboObjective` at :math:`\beta = 1`.

    Training minimises the returned loss, :math:`-\mathcal{L}` for a decoder that maximises and
    :math:`+\mathcal{L}` for one that minimises. The encoder's parameters reach the loss only through
    :math:`\mu` and :math:`\log\sigma^2`, so when the two directions differ the gradient is negated
    there (:math:`2\,\mathrm{sg}(u) - u`: the value :math:`u`, the gradient :math:`-1`), and
    :math:`\nabla_\phi` then climbs what :math:`\nabla_\theta` descends.

    Metrics (nats per example): ``neg_elbo``, ``rate``, ``distortion``, whatever the directions.

    Attributes:
      encoder: ``"min"`` or ``"max"``, the direction :math:`\phi` moves the ELBO.
      decoder: ``"min"`` or ``"max"``, the direction :math:`\theta` moves the ELBO.

    Example:
      >>> model = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> losses, metrics = MinMaxElboObjective()(model, (jnp.zeros((3, 28, 28, 1)),), key=jax.random.key(0))
      >>> bool(jnp.all(losses == metrics["neg_elbo"]))  # the decoder maximises: the loss is -ELBO
      True
    """

    encoder: str = "min"
    decoder: str = "max"

    def __post_init__(self):
        for name in ("encoder", "decoder"):
            value = getattr(self, name)
            if value not in DIRECTIONS:
                raise ValueError(f"{name} must be 'min' or 'max' (the direction it moves the ELBO); got {value!r}")

    def __call__(self, model, batch: tuple[jax.Array, ...], *, key: jax.Array):
        x = batch[0]
        mean, log_var = model.encode(x)
        if self.encoder != self.decoder:
            mean, log_var = _reverse_gradient(mean), _reverse_gradient(log_var)
        distortion = -model.log_likelihood(x, elbo.reparameterize(mean, log_var, key=key))
        rate = jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)
        neg_elbo = distortion + rate
        loss = neg_elbo if self.decoder == "max" else -neg_elbo
        return loss, {"neg_elbo": neg_elbo, "rate": rate, "distortion": distortion}


def pixel_mean_negative_elbo(logits: jax.Array, x: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    r"""001 §4.3's reductions with a Bernoulli decoder: the cross-entropy averaged over pixels, the KL summed.

    .. math::

       \ell(x) = \frac{1}{D}\sum_{i=1}^{D} -\log p(x_i|z) + \sum_j \mathrm{KL}_j
                = \frac{1}{D}\Big(-\log p(x|z) + D\cdot\mathrm{KL}\Big),

    :math:`D` pixels. Up to the factor :math:`1/D`, which Adam all but ignores, this is the
    β-ELBO with :math:`\beta = D` (784 for MNIST): the KL outweighs every pixel's evidence, and
    training pushes the posterior onto the prior. 001 §4.3 makes the same mistake with a squared
    error (:class:`Article001Loss`); chapter 03 hands this Bernoulli form to the learner to debug.

    Args:
      logits: decoder logits, ``(batch, ...)``.
      x: targets in ``[0, 1]``, same shape.
      mean: :math:`\mu`, ``(batch, latent_dim)``.
      log_var: :math:`\log\sigma^2`, same shape.

    Returns:
      ``(batch,)`` losses.

    Example:
      >>> logits, x = jnp.zeros((1, 784)), jnp.ones((1, 784))
      >>> loss = pixel_mean_negative_elbo(logits, x, jnp.zeros((1, 2)), jnp.zeros((1, 2)))
      >>> round(float(loss[0]), 4)  # log 2: the cross-entropy of one pixel, where the ELBO has 784 of them
      0.6931
    """
    distortion = -elbo.bernoulli_log_likelihood(logits, x)
    pixels = math.prod(x.shape[1:])
    return distortion / pixels + jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)


def _projection(gradient: jax.Array, direction: jax.Array) -> tuple[float, float]:
    """The least-squares ``c`` in ``gradient = c * direction``, and the relative size of what ``c`` leaves."""
    c = jnp.vdot(gradient, direction) / jnp.vdot(direction, direction)
    residual = jnp.linalg.norm(gradient - c * direction) / jnp.linalg.norm(gradient)
    return float(c), float(residual)


def implied_beta(loss: Callable[..., jax.Array], logits: jax.Array, x: jax.Array, mean: jax.Array,
                 log_var: jax.Array, *, tolerance: float = 1e-3) -> float:
    r"""The β a loss ``loss(logits, x, mean, log_var)`` trains with, read off its gradients.

    A loss of the form :math:`\ell = a\,(-\log p(x|z)) + b\,\mathrm{KL}` (Bernoulli
    :math:`-\log p` summed over pixels, KL summed over dimensions, both per example) has
    gradients :math:`\nabla_{\text{logits}}\ell = a\,\nabla_{\text{logits}}(-\log p)` and
    :math:`\nabla_{\mu,\log\sigma^2}\ell = b\,\nabla_{\mu,\log\sigma^2}\mathrm{KL}`. Minimising
    it is minimising :math:`a\,(-\log p + \beta\,\mathrm{KL})` with

    .. math::

       \beta = b / a,

    and a constant factor :math:`a` changes Adam's steps hardly at all. :math:`a` and :math:`b`
    are measured as the least-squares coefficients of the two gradients on the given inputs:
    the ELBO gives :math:`\beta = 1`, :func:`pixel_mean_negative_elbo` gives :math:`\beta = D`.

    Args:
      loss: a function ``(logits, x, mean, log_var) -> (batch,)``.
      logits, x, mean, log_var: inputs to measure at (random values, not all zero).
      tolerance: largest relative part of either gradient the form may leave unexplained.

    Returns:
      :math:`\beta` as a float.

    Raises:
      ValueError: if the loss is not of that form on these inputs (e.g. a squared error, or a
        KL that is not the Gaussian one), naming the term that does not fit and by how much.

    Example:
      >>> key1, key2, key3 = jax.random.split(jax.random.key(0), 3)
      >>> logits, x = jax.random.normal(key1, (4, 784)), jax.random.uniform(key2, (4, 784))
      >>> mean, log_var = jnp.split(jax.random.normal(key3, (4, 16)), 2, axis=-1)
      >>> round(implied_beta(pixel_mean_negative_elbo, logits, x, mean, log_var))
      784
    """
    total = lambda *args: jnp.sum(loss(*args))
    distortion = lambda lg: jnp.sum(-elbo.bernoulli_log_likelihood(lg, x))
    rate = lambda m, v: jnp.sum(elbo.gaussian_kl(m, v))
    d_logits, d_mean, d_log_var = jax.jit(jax.grad(total, argnums=(0, 2, 3)))(logits, x, mean, log_var)
    a, a_residual = _projection(d_logits, jax.jit(jax.grad(distortion))(logits))
    kl_mean, kl_log_var = jax.jit(jax.grad(rate, argnums=(0, 1)))(mean, log_var)
    b, b_residual = _projection(jnp.concatenate([d_mean, d_log_var]), jnp.concatenate([kl_mean, kl_log_var]))
    for term, residual in (("reconstruction (logits)", a_residual), ("KL (mean, log_var)", b_residual)):
        if not residual <= tolerance:
            raise ValueError(f"implied_beta: the loss's gradient in its {term} is not a multiple of the Bernoulli "
                             f"ELBO's ({residual:.1%} of it left unexplained; tolerance {tolerance:.1%}), so no "
                             f"single beta describes it")
    if a <= 0:
        raise ValueError(f"implied_beta: the loss weighs -log p(x|z) by {a:.3g}, not a positive number; a loss "
                         f"that rewards bad reconstructions has no beta")
    return b / a


@dataclasses.dataclass(frozen=True)
class LogitsLossObjective:
    r"""Trains a Bernoulli VAE with a loss written as the exercises write one: ``loss(logits, x, mean, log_var)``.

    .. math::

       (\mu, \log\sigma^2) = \text{encoder}(x), \qquad z = \mu + \sigma\odot\varepsilon, \qquad
       \text{losses} = \texttt{loss}(\text{decoder}(z), x, \mu, \log\sigma^2).

    Whatever the loss computes, the metrics are the true ELBO terms of the same draw, in nats:
    ``neg_elbo``, ``rate`` and ``distortion``; so a history shows what a wrong loss does to them.
    With :func:`pixel_mean_negative_elbo` it reproduces 001 §4.3's reductions on a Bernoulli VAE.

    Attributes:
      loss: a function ``(logits, x, mean, log_var) -> (batch,)``.

    Raises:
      ValueError: (when called) for a model that is conditional or not Bernoulli.

    Example:
      >>> model = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> objective = LogitsLossObjective(pixel_mean_negative_elbo)
      >>> losses, metrics = objective(model, (jnp.zeros((3, 28, 28, 1)),), key=jax.random.key(0))
      >>> losses.shape, sorted(metrics)
      ((3,), ['distortion', 'neg_elbo', 'rate'])
    """

    loss: Callable[..., jax.Array]

    def __call__(self, model, batch: tuple[jax.Array, ...], *, key: jax.Array):
        config = model.config
        if config.likelihood != "bernoulli" or config.num_classes is not None:
            raise ValueError(f"LogitsLossObjective trains an unconditional Bernoulli VAE (its decoder gives logits); "
                             f"got likelihood={config.likelihood!r}, num_classes={config.num_classes!r}")
        x = batch[0]
        mean, log_var = model.encode(x)
        logits = model.decoder(elbo.reparameterize(mean, log_var, key=key))
        losses = self.loss(logits, x, mean, log_var)
        distortion = -elbo.bernoulli_log_likelihood(logits, x)
        rate = jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)
        return losses, {"neg_elbo": distortion + rate, "rate": rate, "distortion": distortion}


def article_002_density(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    r"""002 §4.3's Gaussian density, normalised by :math:`2\pi\sigma^2` where :math:`\sqrt{2\pi\sigma^2}` belongs.

    .. math::

       \tilde p(x) = \frac{\exp\big(-(x - \mu)^2 / 2\sigma^2\big)}{2\pi\sigma^2},
       \qquad \int \tilde p(x)\,dx = \frac{1}{\sqrt{2\pi\sigma^2}} \ne 1.

    Fixed to run: the method's name loses its space (``prob_from_ mean_var`` is a SyntaxError) and
    takes ``x`` as an argument (the article reads an undefined global ``x``).

    Example:
      >>> float(article_002_density(jnp.float32(0.0), 0.0, 1.0))  # 1 / (2 pi); the true density is 1 / sqrt(2 pi)
      0.15915493667125702
    """
    return jnp.exp(-jnp.square(x - mean) / (2.0 * jnp.square(std))) / (2.0 * jnp.pi * jnp.square(std))


def article_002_kl(x: jax.Array, latent_samples: jax.Array) -> jax.Array:
    r"""002 §4.3's "KL divergence": the summed squared deviation of ``x`` from the latent samples' mean.

    .. math::

       \text{"KL"} = \sum_{n, i} \big(x_{ni} - \bar z_i\big)^2, \qquad \bar z = \text{mean of the latent samples},

    which compares no two distributions: it grows with the number of rows of ``x`` and is far from
    0 when ``x`` is drawn from the very distribution of the latent samples.

    Fixed to run: ``x`` is an argument (the article loops over an undefined ``x``), and the loop over
    columns is one sum.

    Args:
      x: ``(n, latent_dim)``.
      latent_samples: ``(m, latent_dim)``, the article's ``latent_space``.
    """
    return jnp.sum(jnp.square(x - jnp.mean(latent_samples, axis=0, keepdims=True)))
