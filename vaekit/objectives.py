r"""Objectives: what training minimises, one loss per example, and the metrics it reports.

An objective is a callable ``objective(model, batch, *, key, beta) -> (losses, metrics)``
(the protocol :class:`vaekit.train.Objective`):

* ``batch`` is a tuple of arrays with a common first axis, e.g. a dataset's
  ``(images, labels)`` (:attr:`vaekit.datasets.Dataset.arrays`);
* ``losses`` has shape ``(batch,)``, one value per example: training minimises their mean;
* ``metrics`` maps names to ``(batch,)`` arrays, whose means make the training history.

``key`` (randomness) and ``beta`` (the KL weight) are keywords an objective names only if
it uses them: :func:`vaekit.train.fit` passes the ones its signature names, and only an
objective that takes ``beta`` has it in its history.

The kit's three, one per kind of model:

* :class:`ElboObjective` for a :class:`~vaekit.models.VAE`: :math:`-\log p_\theta(x|z) + \beta\,\mathrm{KL}`;
* :class:`ReconstructionObjective` for an :class:`~vaekit.models.Autoencoder`: :math:`-\log p_\theta(x|f_\phi(x))`;
* :class:`ClassificationObjective` for a :class:`~vaekit.models.Classifier`: :math:`-\log p_\theta(y|x)`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vaekit import elbo

Batch = tuple[jax.Array, ...]
Metrics = dict[str, jax.Array]


def condition_of(model: nnx.Module, batch: Batch, *, objective: str) -> jax.Array | None:
    """The labels ``batch[1]`` when ``model`` is conditional (``model.config.num_classes`` set), else ``None``.

    Raises:
      ValueError: naming ``objective``, if a conditional model's batch holds no labels.
    """
    if getattr(getattr(model, "config", None), "num_classes", None) is None:
        return None
    if len(batch) < 2:
        raise ValueError(f"{objective}: the model is conditional (num_classes={model.config.num_classes}), so the "
                         f"batch must be (images, labels), e.g. a Dataset's arrays; got {len(batch)} array(s)")
    return batch[1]


@dataclasses.dataclass(frozen=True)
class ElboObjective:
    r"""The (β-)ELBO of a VAE: per example, the distortion plus β times the (free-bits) rate.

    .. math::

       \text{loss}(x) = -\log p_\theta(x|z) + \beta \sum_j \max\big(\lambda, \mathrm{KL}_j\big),
       \qquad z \sim q_\phi(z|x),

    with :math:`\lambda` = ``free_bits`` nats per latent dimension (0: the plain β-ELBO),
    the KL of each dimension taken per example or averaged over the minibatch
    (``free_bits_per``, see :func:`vaekit.elbo.free_bits_rate`). ``batch[0]`` holds the
    images; a conditional VAE (``num_classes`` set) reads its labels from ``batch[1]``.

    Metrics, in nats per example: ``neg_elbo`` (:math:`-\mathrm{ELBO}`, the bound at β = 1
    without free bits), ``rate`` (the KL) and ``distortion`` (:math:`-\log p_\theta(x|z)`).

    Attributes:
      free_bits: :math:`\lambda \ge 0`.
      free_bits_per: ``"example"`` or ``"minibatch"`` (Kingma et al., 2016).

    Example:
      >>> from vaekit import models
      >>> vae = models.make_vae(models.VAEConfig(latent_dim=2))
      >>> losses, metrics = ElboObjective()(vae, (jnp.zeros((3, 28, 28, 1)),), key=jax.random.key(0), beta=1.0)
      >>> losses.shape, sorted(metrics)
      ((3,), ['distortion', 'neg_elbo', 'rate'])
    """

    free_bits: float = 0.0
    free_bits_per: str = "example"

    def __post_init__(self):
        elbo.check_free_bits(self.free_bits, self.free_bits_per)

    def __call__(self, model, batch: Batch, *, key: jax.Array, beta: float | jax.Array) -> tuple[jax.Array, Metrics]:
        terms = elbo.elbo_terms(model, batch[0], key=key, beta=beta, free_bits=self.free_bits,
                                free_bits_per=self.free_bits_per,
                                condition=condition_of(model, batch, objective="ElboObjective"))
        return terms.loss, {"neg_elbo": terms.neg_elbo, "rate": terms.rate, "distortion": terms.distortion}


@dataclasses.dataclass(frozen=True)
class ReconstructionObjective:
    r"""An autoencoder's loss: the distortion of its deterministic code, :math:`-\log p_\theta(x \mid f_\phi(x))`.

    With a Bernoulli likelihood this is the binary cross-entropy summed over pixels; with a
    fixed-variance Gaussian, the squared error scaled by :math:`1/2\sigma^2` plus a constant.
    No sampling and no prior, so no ``key`` and no ``beta``. ``batch[0]`` holds the
    images; a conditional model reads its labels from ``batch[1]``.

    Metric: ``distortion`` (nats per example, the loss itself).

    Example:
      >>> from vaekit import models
      >>> ae = models.Autoencoder(models.VAEConfig(latent_dim=2), rngs=nnx.Rngs(0))
      >>> losses, metrics = ReconstructionObjective()(ae, (jnp.zeros((3, 28, 28, 1)),))
      >>> losses.shape, sorted(metrics)
      ((3,), ['distortion'])
    """

    def __call__(self, model, batch: Batch) -> tuple[jax.Array, Metrics]:
        x = batch[0]
        condition = elbo.condition_keyword(condition_of(model, batch, objective="ReconstructionObjective"))
        distortion = -model.log_likelihood(x, model.encode(x, **condition), **condition)
        return distortion, {"distortion": distortion}


@dataclasses.dataclass(frozen=True)
class ClassificationObjective:
    r"""A classifier's cross-entropy on ``(images, labels)``: :math:`-\log \operatorname{softmax}(\ell_\theta(x))_y`.

    .. math::

       \text{loss}(x, y) = -\log p_\theta(y|x) = -\ell_\theta(x)_y + \log \sum_c \exp \ell_\theta(x)_c,

    with :math:`\ell_\theta(x)` the model's logits ``model(images)``, ``(batch, num_classes)``.
    No ``key``, no ``beta``.

    Metrics: ``cross_entropy`` (nats per example, the loss) and ``accuracy`` (1 where the
    largest logit is the label's, else 0; its mean is the accuracy).

    Example:
      >>> from vaekit import models
      >>> classifier = models.Classifier(models.ClassifierConfig(), rngs=nnx.Rngs(0))
      >>> batch = (jnp.zeros((3, 28, 28, 1)), jnp.array([0, 1, 2]))
      >>> losses, metrics = ClassificationObjective()(classifier, batch)
      >>> losses.shape, sorted(metrics)
      ((3,), ['accuracy', 'cross_entropy'])
    """

    def __call__(self, model, batch: Batch) -> tuple[jax.Array, Metrics]:
        if len(batch) < 2:
            raise ValueError(f"ClassificationObjective: the batch must be (images, labels); got {len(batch)} array(s)")
        images, labels = batch[0], batch[1]
        logits = model(images)
        if labels.shape != logits.shape[:1]:
            raise ValueError(f"ClassificationObjective: labels must have shape ({logits.shape[0]},), one per image; "
                             f"got {tuple(labels.shape)}")
        log_p = jax.nn.log_softmax(logits, axis=-1)
        # A one-hot product rather than a gather: its gradient is elementwise, not a scatter.
        cross_entropy = -jnp.sum(log_p * jax.nn.one_hot(labels, logits.shape[-1], dtype=log_p.dtype), axis=-1)
        accuracy = (jnp.argmax(logits, axis=-1) == labels).astype(log_p.dtype)
        return cross_entropy, {"cross_entropy": cross_entropy, "accuracy": accuracy}
