r"""The variational objective: reparameterization, likelihoods, KL, ELBO and IWAE bounds.

All quantities are in nats and per example (summed over pixels and latent dimensions,
never averaged over them), so that numbers compare with the literature.

A VAE with encoder :math:`q_\phi(z|x) = \mathcal{N}(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))`,
prior :math:`p(z) = \mathcal{N}(0, I)` and decoder :math:`p_\theta(x|z)` maximises the
evidence lower bound

.. math::

   \log p_\theta(x) \ge \mathrm{ELBO}(x)
     = \underbrace{\mathbb{E}_{q_\phi(z|x)}[\log p_\theta(x|z)]}_{-\text{distortion}}
       - \underbrace{\mathrm{KL}(q_\phi(z|x)\,\|\,p(z))}_{\text{rate}}.

Training minimises :math:`\text{distortion} + \beta \cdot \text{rate}` (Higgins et al., 2017);
:math:`\beta = 1` is the true bound.

References:
  Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
  Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
  Alemi et al., *Fixing a Broken ELBO*, ICML 2018.
  Kingma et al., *Improved Variational Inference with Inverse Autoregressive Flow*, NeurIPS 2016 (free bits).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)


class VariationalModel(Protocol):
    """What the bounds need of a model (:class:`vaekit.models.VAE` is one)."""

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]: ...

    def log_likelihood(self, x: jax.Array, z: jax.Array) -> jax.Array: ...


def _same_shape(a_name: str, a: jax.Array, b_name: str, b: jax.Array) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape; got {a.shape} and {b.shape}")


def reparameterize(mean: jax.Array, log_var: jax.Array, *, key: jax.Array) -> jax.Array:
    r"""Draws :math:`z \sim \mathcal{N}(\mu, \sigma^2)` as a differentiable function of :math:`\mu, \log\sigma^2`.

    .. math::

       z = \mu + \sigma \odot \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, I),
       \qquad \sigma = \exp(\tfrac12 \log\sigma^2).

    The noise carries no parameters, so gradients flow through :math:`\mu` and
    :math:`\sigma` (the reparameterization trick).

    Args:
      mean: :math:`\mu`, shape ``(..., latent_dim)``.
      log_var: :math:`\log\sigma^2`, same shape.
      key: a PRNG key.

    Returns:
      A sample with the shape of ``mean``.

    Example:
      >>> z = reparameterize(jnp.zeros(3), jnp.zeros(3), key=jax.random.key(0))
      >>> z.shape
      (3,)
    """
    _same_shape("mean", mean, "log_var", log_var)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    r"""Closed-form :math:`\mathrm{KL}(\mathcal{N}(\mu, \sigma^2) \| \mathcal{N}(0, 1))` per latent dimension.

    .. math::

       \mathrm{KL} = \tfrac12 \left(\mu^2 + \sigma^2 - \log\sigma^2 - 1\right) \ge 0.

    Args:
      mean: :math:`\mu`, shape ``(..., latent_dim)``.
      log_var: :math:`\log\sigma^2`, same shape.

    Returns:
      The KL of each dimension, shape of ``mean``; sum over the last axis for the rate.

    Example:
      >>> float(gaussian_kl(jnp.zeros(()), jnp.zeros(())))  # the prior itself
      0.0
    """
    _same_shape("mean", mean, "log_var", log_var)
    return 0.5 * (jnp.square(mean) + jnp.exp(log_var) - log_var - 1.0)


def gaussian_log_density(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    r""":math:`\log \mathcal{N}(z; \mu, \sigma^2)`, summed over the last axis."""
    return -0.5 * jnp.sum(LOG_2PI + log_var + jnp.square(z - mean) * jnp.exp(-log_var), axis=-1)


def _sum_pixels(values: jax.Array) -> jax.Array:
    return jnp.sum(values.reshape(values.shape[0], -1), axis=-1) if values.ndim > 1 else values


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
    r"""Bernoulli log-likelihood from logits, summed over all but the first axis.

    .. math::

       \log p(x|\ell) = \sum_i x_i \log s(\ell_i) + (1 - x_i) \log(1 - s(\ell_i))
                      = \sum_i x_i \ell_i - \operatorname{softplus}(\ell_i),

    with :math:`s` the logistic sigmoid. The right-hand form never takes the log of a
    rounded-to-zero probability, so it stays finite for any logit. Grey targets
    :math:`x \in [0, 1]` give the binary cross-entropy used for Fashion-MNIST.

    Args:
      logits: :math:`\ell`, shape ``(batch, ...)``.
      x: targets in ``[0, 1]``, same shape.

    Returns:
      ``(batch,)`` log-likelihoods in nats.

    Example:
      >>> float(bernoulli_log_likelihood(jnp.zeros((1, 2)), jnp.ones((1, 2)))[0])  # 2 log(1/2)
      -1.3862943649291992
    """
    _same_shape("logits", logits, "x", x)
    return _sum_pixels(x * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(mean: jax.Array, log_var: jax.Array, x: jax.Array) -> jax.Array:
    r"""Gaussian log-likelihood :math:`\log\mathcal{N}(x; \mu, \sigma^2)`, summed over all but the first axis.

    .. math::

       \log p(x|\mu,\sigma^2) = -\tfrac12 \sum_i \left(\log 2\pi + \log\sigma_i^2 + \frac{(x_i-\mu_i)^2}{\sigma_i^2}\right).

    Args:
      mean: :math:`\mu`, shape ``(batch, ...)``.
      log_var: :math:`\log\sigma^2`, broadcastable to ``mean`` (a fixed or learned variance).
      x: targets, shape of ``mean``.

    Returns:
      ``(batch,)`` log-likelihoods in nats (a density: it can be positive).
    """
    _same_shape("mean", mean, "x", x)
    log_var = jnp.broadcast_to(log_var, mean.shape)
    return _sum_pixels(-0.5 * (LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var)))


class ElboTerms(NamedTuple):
    r"""The per-example terms of the (β-)ELBO, in nats.

    Attributes:
      distortion: :math:`-\log p_\theta(x|z)` for one :math:`z \sim q_\phi(z|x)`.
      rate: :math:`\mathrm{KL}(q_\phi(z|x)\|p(z))`, in closed form.
      loss: the training objective, :math:`\text{distortion} + \beta \cdot \text{rate}`
        (with free bits, the rate of each dimension is floored first).
    """

    distortion: jax.Array
    rate: jax.Array
    loss: jax.Array

    @property
    def neg_elbo(self) -> jax.Array:
        r""":math:`-\mathrm{ELBO} = \text{distortion} + \text{rate}`, the true bound (β = 1)."""
        return self.distortion + self.rate


def elbo_terms(
    model: VariationalModel,
    x: jax.Array,
    *,
    key: jax.Array,
    beta: float | jax.Array = 1.0,
    free_bits: float = 0.0,
) -> ElboTerms:
    r"""Single-sample estimate of the (β-)ELBO terms for a batch.

    .. math::

       \text{loss} = -\log p_\theta(x|z) + \beta \sum_j \max\big(\lambda, \mathrm{KL}_j\big),
       \qquad z = \mu + \sigma\odot\varepsilon,

    where :math:`\lambda` is ``free_bits`` in nats per latent dimension (0 disables it):
    dimensions whose KL is below :math:`\lambda` feel no pressure towards the prior,
    which keeps them from collapsing early in training.

    Args:
      model: a :class:`VariationalModel`.
      x: a batch of images, ``(batch, height, width, channels)``.
      key: PRNG key of the reparameterized sample.
      beta: weight :math:`\beta \ge 0` of the rate in the loss.
      free_bits: :math:`\lambda \ge 0`, in nats per latent dimension.

    Returns:
      :class:`ElboTerms` of shape ``(batch,)`` each.
    """
    if not isinstance(beta, jax.Array) and not beta >= 0:
        raise ValueError(f"beta must be >= 0; got {beta!r}")
    if not free_bits >= 0:
        raise ValueError(f"free_bits must be >= 0 nats per dimension; got {free_bits!r}")
    mean, log_var = model.encode(x)
    z = reparameterize(mean, log_var, key=key)
    distortion = -model.log_likelihood(x, z)
    kl = gaussian_kl(mean, log_var)
    rate = jnp.sum(kl, axis=-1)
    penalised = jnp.sum(jnp.maximum(kl, free_bits), axis=-1) if free_bits > 0 else rate
    return ElboTerms(distortion=distortion, rate=rate, loss=distortion + beta * penalised)


def log_importance_weights(model: VariationalModel, x: jax.Array, *, key: jax.Array, num_samples: int) -> jax.Array:
    r""":math:`\log w_k = \log p_\theta(x|z_k) + \log p(z_k) - \log q_\phi(z_k|x)` for ``num_samples`` draws.

    Returns:
      ``(num_samples, batch)`` log-weights.
    """
    mean, log_var = model.encode(x)

    def one(sample_key):
        z = reparameterize(mean, log_var, key=sample_key)
        log_prior = gaussian_log_density(z, jnp.zeros_like(z), jnp.zeros_like(z))
        log_posterior = gaussian_log_density(z, mean, log_var)
        return model.log_likelihood(x, z) + log_prior - log_posterior

    return jax.lax.map(one, jax.random.split(key, num_samples))


def iwae_bound(
    model: VariationalModel,
    x: jax.Array,
    *,
    key: jax.Array,
    num_samples: int,
    chunk_size: int = 100,
) -> jax.Array:
    r"""The importance-weighted bound :math:`\mathcal{L}_k`, an estimate of :math:`\log p_\theta(x)`.

    .. math::

       \mathcal{L}_k(x) = \log \frac{1}{k} \sum_{i=1}^{k} \frac{p_\theta(x, z_i)}{q_\phi(z_i|x)},
       \qquad z_i \sim q_\phi(z|x).

    :math:`\mathcal{L}_1` is the ELBO in expectation,
    :math:`\mathbb{E}\,\mathcal{L}_k \le \mathbb{E}\,\mathcal{L}_{k+1} \le \log p_\theta(x)`, and
    :math:`\mathcal{L}_k \to \log p_\theta(x)` as :math:`k \to \infty`. The samples are
    drawn ``chunk_size`` at a time and folded into a running log-sum-exp, so
    ``num_samples = 1000`` needs the memory of ``chunk_size`` samples only.

    Args:
      model: a :class:`VariationalModel`.
      x: a batch of images.
      key: PRNG key.
      num_samples: :math:`k \ge 1`.
      chunk_size: samples evaluated at once; ``num_samples`` need not be a multiple.

    Returns:
      ``(batch,)`` values of :math:`\mathcal{L}_k` in nats (negate for the NLL).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk_size = min(chunk_size, num_samples)
    num_chunks = -(-num_samples // chunk_size)
    keys = jax.random.split(key, num_chunks)

    def add_chunk(running, chunk):
        index, chunk_key = chunk
        log_w = log_importance_weights(model, x, key=chunk_key, num_samples=chunk_size)
        # The last chunk may hold more samples than asked for: mask the surplus.
        valid = index * chunk_size + jnp.arange(chunk_size) < num_samples
        log_w = jnp.where(valid[:, None], log_w, -jnp.inf)
        return jnp.logaddexp(running, jax.nn.logsumexp(log_w, axis=0)), None

    start = jnp.full((x.shape[0],), -jnp.inf, dtype=jnp.float32)
    total, _ = jax.lax.scan(add_chunk, start, (jnp.arange(num_chunks), keys))
    return total - math.log(num_samples)
