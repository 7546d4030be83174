r"""Inference without an encoder: fitting the posterior of each image by gradient ascent on its own ELBO.

A VAE's encoder *amortises* inference: one network maps any image to its posterior
:math:`q_\phi(z|x) = \mathcal{N}(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))` in one forward pass. The
alternative, classic variational inference, gives every image :math:`x_n` parameters of its own,
:math:`(\mu_n, \log\sigma^2_n)`, and maximises that image's ELBO over them with the decoder fixed:

.. math::

   (\mu_n, \log\sigma^2_n) = \arg\max_{\mu, \log\sigma^2}\;
     \mathbb{E}_{\varepsilon}\big[\log p_\theta(x_n \mid \mu + \sigma\odot\varepsilon)\big]
     - \mathrm{KL}\big(\mathcal{N}(\mu, \sigma^2) \,\|\, \mathcal{N}(0, I)\big).

The difference between the two ELBOs is the *amortisation gap* (Cremer, Li & Duvenaud, 2018): what
the encoder loses by serving every image with one network, paid for with an optimisation per image.

References:
  Cremer, Li & Duvenaud, *Inference Suboptimality in Variational Autoencoders*, ICML 2018.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vaekit import elbo
from vaekit.models import check_positive_int


def _neg_elbo(model, x: jax.Array, mean: jax.Array, log_var: jax.Array, key: jax.Array,
              num_samples: int) -> jax.Array:
    distortion = jax.vmap(lambda k: -model.log_likelihood(x, elbo.reparameterize(mean, log_var, key=k)))(
        jax.random.split(key, num_samples))
    return jnp.mean(distortion, axis=0) + jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)


@functools.partial(nnx.jit, static_argnames="num_samples")
def neg_elbo(model, x: jax.Array, mean: jax.Array, log_var: jax.Array, *, key: jax.Array,
             num_samples: int = 1) -> jax.Array:
    r""":math:`-\mathrm{ELBO}` of each image under a given posterior, averaged over ``num_samples`` draws.

    .. math::

       -\mathrm{ELBO}(x) \approx -\frac1S \sum_{s=1}^S \log p_\theta(x \mid \mu + \sigma\odot\varepsilon_s)
         + \mathrm{KL}\big(\mathcal{N}(\mu, \sigma^2)\,\|\,\mathcal{N}(0, I)\big).

    Args:
      model: a VAE (its ``log_likelihood`` is used; its encoder is not).
      x: images ``(batch, ...)``.
      mean, log_var: the posterior of each image, ``(batch, latent_dim)``.
      key: PRNG key of the draws.
      num_samples: :math:`S \ge 1`.

    Returns:
      ``(batch,)`` values in nats.
    """
    check_positive_int("num_samples", num_samples)
    return _neg_elbo(model, x, mean, log_var, key, num_samples)


@functools.partial(nnx.jit, static_argnames=("steps", "learning_rate"))
def fit_posteriors(model, x: jax.Array, *, key: jax.Array, steps: int = 300,
                   learning_rate: float = 0.05) -> tuple[jax.Array, jax.Array]:
    r"""Per-image posteriors :math:`(\mu_n, \log\sigma^2_n)` that maximise each image's ELBO, the decoder fixed.

    They start at the prior (:math:`\mu = 0, \sigma = 1`) and take ``steps`` Adam steps on the
    one-sample ELBO estimate (reparameterized, a fresh draw per step); images do not interact, since
    the loss is their sum. The model is not changed.

    Args:
      model: a VAE (``log_likelihood`` and ``latent_dim``).
      x: images ``(batch, ...)``.
      key: PRNG key of the draws.
      steps: Adam steps, at least 1.
      learning_rate: Adam's step size.

    Returns:
      ``(mean, log_var)``, each ``(batch, latent_dim)``.

    Example:
      >>> from vaekit import models
      >>> vae = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> mean, log_var = fit_posteriors(vae, jnp.zeros((3, 28, 28, 1)), key=jax.random.key(0), steps=5)
      >>> mean.shape, log_var.shape
      ((3, 2), (3, 2))
    """
    check_positive_int("steps", steps)
    shape = (x.shape[0], model.latent_dim)
    params = (jnp.zeros(shape, x.dtype), jnp.zeros(shape, x.dtype))
    optimizer = optax.adam(learning_rate)

    def step(carry, step_key):
        params, state = carry
        loss = lambda p: jnp.sum(_neg_elbo(model, x, *p, step_key, 1))
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, steps))
    return params
