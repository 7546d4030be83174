r"""Monte-Carlo estimators of a VAE: the gradient of an expectation under its posterior, and the IWAE bound.

The ELBO's first term is an expectation over :math:`z \sim q_\phi(z|x) = \mathcal{N}(\mu, \operatorname{diag}\sigma^2)`
whose distribution itself depends on the encoder's outputs :math:`\mu, \log\sigma^2`. Its gradient
with respect to them can be estimated from samples in two ways, both unbiased:

* the **score function** (REINFORCE, the likelihood-ratio trick), which needs only values of :math:`f`,

  .. math::

     \nabla_\phi \mathbb{E}_{q_\phi}[f(z)] = \mathbb{E}_{q_\phi}\big[f(z)\,\nabla_\phi \log q_\phi(z)\big],
     \qquad
     \frac{\partial \log q}{\partial \mu_j} = \frac{z_j - \mu_j}{\sigma_j^2},\quad
     \frac{\partial \log q}{\partial \log\sigma_j^2} = \frac12\Big(\frac{(z_j - \mu_j)^2}{\sigma_j^2} - 1\Big);

* the **reparameterization** (pathwise) gradient, which differentiates through the sample
  :math:`z = \mu + \sigma\odot\varepsilon` (:func:`vaekit.elbo.reparameterize`),

  .. math::

     \nabla_\phi \mathbb{E}_{q_\phi}[f(z)] = \mathbb{E}_{\varepsilon \sim \mathcal{N}(0, I)}
       \big[\nabla_\phi f(\mu + \sigma\odot\varepsilon)\big].

Both return one gradient per draw, so their spread over the draws is the variance of a one-sample
estimate; a VAE trains with the second because that variance is far smaller.

The same draws also estimate :math:`\log p_\theta(x)` itself: :func:`iwae_bounds` turns
:math:`K` importance log-weights (:func:`vaekit.elbo.log_importance_weights`) into the bound
:math:`\mathcal{L}_k` for every :math:`k` at once, from the ELBO (:math:`k = 1`) upwards.

References:
  Williams, *Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
  Learning*, Machine Learning 1992.
  Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014, §2.4.
  Mohamed, Rosca, Figurnov & Mnih, *Monte Carlo Gradient Estimation in Machine Learning*, JMLR 2020.
  Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vaekit import elbo
from vaekit.models import check_positive_int

ScalarFunction = Callable[[jax.Array], jax.Array]


class PosteriorGradients(NamedTuple):
    """One gradient estimate per draw, with respect to the posterior's parameters.

    Attributes:
      mean: :math:`\\partial/\\partial\\mu`, shape ``(num_samples, latent_dim)``.
      log_var: :math:`\\partial/\\partial\\log\\sigma^2`, same shape.
    """

    mean: jax.Array
    log_var: jax.Array


def _check(mean: jax.Array, log_var: jax.Array, num_samples: int) -> None:
    if mean.ndim != 1 or mean.shape != log_var.shape:
        raise ValueError(f"mean and log_var must be vectors of one shape (latent_dim,); got {mean.shape} and "
                         f"{log_var.shape}")
    check_positive_int("num_samples", num_samples)


@functools.partial(jax.jit, static_argnames=("f", "num_samples"))
def score_function_gradients(f: ScalarFunction, mean: jax.Array, log_var: jax.Array, *, key: jax.Array,
                             num_samples: int) -> PosteriorGradients:
    r"""Score-function estimates :math:`f(z)\,\nabla_{\mu, \log\sigma^2} \log q(z)`, one per draw :math:`z \sim q`.

    Args:
      f: a function of one code ``(latent_dim,)`` to a scalar, e.g. :math:`\log p_\theta(x|z)` of one image.
      mean: :math:`\mu`, ``(latent_dim,)``.
      log_var: :math:`\log\sigma^2`, ``(latent_dim,)``.
      key: PRNG key of the draws.
      num_samples: the number of draws, at least 1.

    Returns:
      :class:`PosteriorGradients`, each ``(num_samples, latent_dim)``.

    Example:
      >>> g = score_function_gradients(jnp.sum, jnp.zeros(2), jnp.zeros(2), key=jax.random.key(0), num_samples=4)
      >>> g.mean.shape, g.log_var.shape
      ((4, 2), (4, 2))
    """
    _check(mean, log_var, num_samples)
    z = jax.vmap(lambda k: elbo.reparameterize(mean, log_var, key=k))(jax.random.split(key, num_samples))
    values = jax.vmap(f)(jax.lax.stop_gradient(z))[:, None]
    deviation, precision = z - mean[None], jnp.exp(-log_var)[None]
    return PosteriorGradients(mean=values * deviation * precision,
                              log_var=values * 0.5 * (jnp.square(deviation) * precision - 1.0))


@functools.partial(jax.jit, static_argnames=("f", "num_samples"))
def reparameterization_gradients(f: ScalarFunction, mean: jax.Array, log_var: jax.Array, *, key: jax.Array,
                                 num_samples: int) -> PosteriorGradients:
    r"""Reparameterization estimates :math:`\nabla_{\mu, \log\sigma^2} f(\mu + \sigma\odot\varepsilon)`, one per draw.

    Args:
      f: a differentiable function of one code ``(latent_dim,)`` to a scalar.
      mean: :math:`\mu`, ``(latent_dim,)``.
      log_var: :math:`\log\sigma^2`, ``(latent_dim,)``.
      key: PRNG key of the draws (the same key draws the same :math:`z` as
        :func:`score_function_gradients`).
      num_samples: the number of draws, at least 1.

    Returns:
      :class:`PosteriorGradients`, each ``(num_samples, latent_dim)``.

    Example:
      >>> g = reparameterization_gradients(jnp.sum, jnp.zeros(2), jnp.zeros(2), key=jax.random.key(0), num_samples=4)
      >>> g.mean  # d/dmu of sum(z) is 1 for every draw: no variance at all
      Array([[1., 1.],
             [1., 1.],
             [1., 1.],
             [1., 1.]], dtype=float32)
    """
    _check(mean, log_var, num_samples)

    def one(k):
        return jax.grad(lambda m, v: f(elbo.reparameterize(m, v, key=k)), argnums=(0, 1))(mean, log_var)

    grad_mean, grad_log_var = jax.vmap(one)(jax.random.split(key, num_samples))
    return PosteriorGradients(mean=grad_mean, log_var=grad_log_var)


def iwae_bounds(log_weights: jax.Array | np.ndarray, ks: Sequence[int]) -> np.ndarray:
    r"""The IWAE bound :math:`\mathcal{L}_k` for each :math:`k` in ``ks``, from :math:`K` log-weights per image.

    .. math::

       \mathcal{L}_k = \frac{1}{G} \sum_{g=1}^{G} \Big(\log \sum_{i \in \text{group } g} w_i - \log k\Big),
       \qquad G = \lfloor K / k \rfloor,

    averaged over the images: the first :math:`Gk` draws are split into :math:`G` disjoint groups of
    :math:`k`, each group is one draw of the bound, and their mean estimates
    :math:`\mathbb{E}\,\mathcal{L}_k` with less noise than one group would. :math:`\mathcal{L}_1` is
    the mean log-weight, the ELBO; :math:`\mathbb{E}\,\mathcal{L}_k` rises with :math:`k` towards
    :math:`\log p_\theta(x)`.

    Args:
      log_weights: :math:`\log w = \log p_\theta(x, z) - \log q_\phi(z|x)`, shape ``(K, batch)``
        (:func:`vaekit.elbo.log_importance_weights`).
      ks: group sizes, each in ``[1, K]``.

    Returns:
      ``(len(ks),)`` ``float64`` bounds in nats, the mean over the images.

    Example:
      >>> log_w = np.log([[1.0], [3.0]])  # two draws of one image: weights 1 and 3
      >>> iwae_bounds(log_w, [1, 2])  # mean of log w; log of the mean weight, log 2
      array([0.54930614, 0.69314718])
    """
    log_weights = np.asarray(log_weights, np.float64)
    if log_weights.ndim != 2:
        raise ValueError(f"log_weights must have shape (num_samples, batch); got {log_weights.shape}")
    total = log_weights.shape[0]
    bounds = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= total:
            raise ValueError(f"each k must be an integer in [1, {total}] (the number of log-weights); got {k!r}")
        groups = log_weights[: total // k * k].reshape(total // k, k, -1)
        bounds.append(np.mean(np.logaddexp.reduce(groups, axis=1) - np.log(k)))
    return np.array(bounds)
