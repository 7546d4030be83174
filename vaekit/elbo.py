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


FREE_BITS_PER = ("example", "minibatch")


class VariationalModel(Protocol):
    """What the bounds need of a model (:class:`vaekit.models.VAE` is one).

    A conditional model's two methods also take the labels as ``condition=``; the bounds
    pass that keyword only when given a condition, so an unconditional model need not accept it.
    """

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]: ...

    def log_likelihood(self, x: jax.Array, z: jax.Array) -> jax.Array: ...


def check_free_bits(free_bits: float, free_bits_per: str) -> None:
    """Raises a ValueError naming the parameter unless ``free_bits >= 0`` and ``free_bits_per`` is a variant."""
    if not free_bits >= 0:
        raise ValueError(f"free_bits must be >= 0 nats per dimension; got {free_bits!r}")
    if free_bits_per not in FREE_BITS_PER:
        raise ValueError(f"free_bits_per must be one of {', '.join(map(repr, FREE_BITS_PER))}; got {free_bits_per!r}")


def condition_keyword(condition: jax.Array | None) -> dict[str, jax.Array]:
    """``{"condition": condition}`` to pass on to a model's method, or no keyword at all for ``None``.

    Example:
      >>> condition_keyword(None), condition_keyword(jnp.array([3]))
      ({}, {'condition': Array([3], dtype=int32)})
    """
    return {} if condition is None else {"condition": condition}


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


def free_bits_rate(kl: jax.Array, free_bits: float, *, per: str = "example") -> jax.Array:
    r"""The rate with free bits: the KL of each latent dimension floored at :math:`\lambda` nats.

    A dimension whose KL is below :math:`\lambda` feels no pull towards the prior, which
    keeps dimensions from collapsing early in training (Kingma et al., 2016). The floor
    applies to one of two KLs:

    * ``per="example"``: each example's own KL,
      :math:`\text{penalised}_n = \sum_j \max(\lambda, \mathrm{KL}_{nj})`.
    * ``per="minibatch"``: Kingma et al.'s variant (each dimension a group of its own):
      the KL of dimension :math:`j` averaged over the :math:`M` examples of the minibatch,
      :math:`\overline{\mathrm{KL}}_j = \frac1M \sum_n \mathrm{KL}_{nj}`, so that the
      minibatch's loss is
      :math:`\frac1M \sum_n \text{distortion}_n + \beta \sum_j \max(\lambda, \overline{\mathrm{KL}}_j)`.
      It is returned per example as

      .. math::

         \text{penalised}_n = \sum_j \begin{cases}
             \mathrm{KL}_{nj} & \text{if } \overline{\mathrm{KL}}_j > \lambda, \\
             \lambda & \text{otherwise,}
         \end{cases}

      whose mean over the minibatch is :math:`\sum_j \max(\lambda, \overline{\mathrm{KL}}_j)`,
      with the same gradient. One example's value depends on the rest of its minibatch.

    The two differ where a dimension carries information about some examples and not
    others: per example, the examples below :math:`\lambda` on it are free and the others
    pay; per minibatch, all of them pay when its mean KL is above :math:`\lambda`, and none
    when it is below.

    Args:
      kl: :math:`\mathrm{KL}_{nj}`, shape ``(batch, latent_dim)`` (see :func:`gaussian_kl`).
      free_bits: :math:`\lambda \ge 0`, nats per latent dimension.
      per: ``"example"`` or ``"minibatch"``.

    Returns:
      ``(batch,)`` penalised rates.

    Example:
      >>> kl = jnp.array([[0.0, 3.0], [2.0, 3.0]])
      >>> free_bits_rate(kl, 1.5)  # [1.5 + 3, 2 + 3]
      Array([4.5, 5. ], dtype=float32)
      >>> free_bits_rate(kl, 1.5, per="minibatch")  # dimension 0's mean KL is 1 < 1.5: floored for both
      Array([4.5, 4.5], dtype=float32)
    """
    check_free_bits(free_bits, per)
    if per == "example":
        return jnp.sum(jnp.maximum(kl, free_bits), axis=-1)
    mean_kl = jnp.mean(kl, axis=0, keepdims=True)
    return jnp.sum(jnp.where(mean_kl > free_bits, kl, free_bits), axis=-1)


def elbo_terms(
    model: VariationalModel,
    x: jax.Array,
    *,
    key: jax.Array,
    beta: float | jax.Array = 1.0,
    free_bits: float = 0.0,
    free_bits_per: str = "example",
    condition: jax.Array | None = None,
) -> ElboTerms:
    r"""Single-sample estimate of the (β-)ELBO terms for a batch.

    .. math::

       \text{loss} = -\log p_\theta(x|z) + \beta \sum_j \max\big(\lambda, \mathrm{KL}_j\big),
       \qquad z = \mu + \sigma\odot\varepsilon,

    where :math:`\lambda` is ``free_bits`` in nats per latent dimension (0 disables it), the
    floor of each example's KL as written here, or with ``free_bits_per="minibatch"`` the floor
    of each dimension's mean KL over the minibatch (see :func:`free_bits_rate`). A conditional
    model's terms are those of :math:`q_\phi(z|x, y)` and :math:`p_\theta(x|z, y)`.

    Args:
      model: a :class:`VariationalModel`.
      x: a batch of images, ``(batch, height, width, channels)``.
      key: PRNG key of the reparameterized sample.
      beta: weight :math:`\beta \ge 0` of the rate in the loss.
      free_bits: :math:`\lambda \ge 0`, in nats per latent dimension.
      free_bits_per: ``"example"`` or ``"minibatch"`` (Kingma et al., 2016).
      condition: integer labels ``(batch,)`` of a conditional model, else ``None``.

    Returns:
      :class:`ElboTerms` of shape ``(batch,)`` each; ``rate`` is always the true KL.
    """
    if not isinstance(beta, jax.Array) and not beta >= 0:
        raise ValueError(f"beta must be >= 0; got {beta!r}")
    check_free_bits(free_bits, free_bits_per)
    mean, log_var = model.encode(x, **condition_keyword(condition))
    z = reparameterize(mean, log_var, key=key)
    distortion = -model.log_likelihood(x, z, **condition_keyword(condition))
    kl = gaussian_kl(mean, log_var)
    rate = jnp.sum(kl, axis=-1)
    penalised = free_bits_rate(kl, free_bits, per=free_bits_per) if free_bits > 0 else rate
    return ElboTerms(distortion=distortion, rate=rate, loss=distortion + beta * penalised)


def _log_weights(model: VariationalModel, x: jax.Array, mean: jax.Array, log_var: jax.Array, keys: jax.Array,
                 condition: jax.Array | None) -> jax.Array:
    """:math:`\\log w` of one draw per key from the given posterior, all keys at once: ``(len(keys), batch)``."""

    def one(key):
        z = reparameterize(mean, log_var, key=key)
        log_prior = gaussian_log_density(z, jnp.zeros_like(z), jnp.zeros_like(z))
        log_posterior = gaussian_log_density(z, mean, log_var)
        return model.log_likelihood(x, z, **condition_keyword(condition)) + log_prior - log_posterior

    return jax.vmap(one)(keys)


def log_importance_weights(model: VariationalModel, x: jax.Array, *, key: jax.Array, num_samples: int,
                           condition: jax.Array | None = None) -> jax.Array:
    r""":math:`\log w_k = \log p_\theta(x|z_k) + \log p(z_k) - \log q_\phi(z_k|x)` for ``num_samples`` draws.

    The encoder runs once; the ``num_samples`` draws are decoded together (``jax.vmap``).

    Returns:
      ``(num_samples, batch)`` log-weights.
    """
    mean, log_var = model.encode(x, **condition_keyword(condition))
    return _log_weights(model, x, mean, log_var, jax.random.split(key, num_samples), condition)


def iwae_bound(
    model: VariationalModel,
    x: jax.Array,
    *,
    key: jax.Array,
    num_samples: int,
    chunk_size: int = 100,
    condition: jax.Array | None = None,
) -> jax.Array:
    r"""The importance-weighted bound :math:`\mathcal{L}_k`, an estimate of :math:`\log p_\theta(x)`.

    .. math::

       \mathcal{L}_k(x) = \log \frac{1}{k} \sum_{i=1}^{k} \frac{p_\theta(x, z_i)}{q_\phi(z_i|x)},
       \qquad z_i \sim q_\phi(z|x).

    :math:`\mathcal{L}_1` is the ELBO in expectation,
    :math:`\mathbb{E}\,\mathcal{L}_k \le \mathbb{E}\,\mathcal{L}_{k+1} \le \log p_\theta(x)`, and
    :math:`\mathcal{L}_k \to \log p_\theta(x)` as :math:`k \to \infty`.

    The encoder runs once for the batch. The samples are then decoded ``chunk_size`` at a
    time, each chunk in one vectorised call (``jax.vmap``), and folded into a running
    log-sum-exp, so ``num_samples = 1000`` needs the memory of ``chunk_size`` decodes of
    the batch only. The running sum has the dtype of ``x`` and the posterior (``float64``
    under ``jax.enable_x64`` with a ``float64`` input).

    Args:
      model: a :class:`VariationalModel`.
      x: a batch of images.
      key: PRNG key.
      num_samples: :math:`k \ge 1`.
      chunk_size: samples evaluated at once; ``num_samples`` need not be a multiple.
      condition: integer labels ``(batch,)`` of a conditional model, else ``None``.

    Returns:
      ``(batch,)`` values of :math:`\mathcal{L}_k` in nats (negate for the NLL).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk_size = min(chunk_size, num_samples)
    num_chunks = -(-num_samples // chunk_size)
    mean, log_var = model.encode(x, **condition_keyword(condition))
    dtype = jnp.result_type(x.dtype, mean.dtype)

    def add_chunk(running, chunk):
        index, chunk_key = chunk
        log_w = _log_weights(model, x, mean, log_var, jax.random.split(chunk_key, chunk_size), condition)
        # The last chunk may hold more samples than asked for: mask the surplus.
        valid = index * chunk_size + jnp.arange(chunk_size) < num_samples
        log_w = jnp.where(valid[:, None], log_w, -jnp.inf)
        return jnp.logaddexp(running, jax.nn.logsumexp(log_w, axis=0).astype(dtype)), None

    start = jnp.full((x.shape[0],), -jnp.inf, dtype)
    total, _ = jax.lax.scan(add_chunk, start, (jnp.arange(num_chunks), jax.random.split(key, num_chunks)))
    return total - math.log(num_samples)
