r"""Encoders, decoders and the models built from them: VAE, autoencoder, conditional VAE, classifier.

The encoder maps an image to the mean and log-variance of a diagonal Gaussian
:math:`q_\phi(z|x)`; the decoder maps a latent code to the parameters of
:math:`p_\theta(x|z)`: Bernoulli logits, or a Gaussian mean with a fixed or learned variance.

* :class:`VAE`: encoder and decoder joined by the reparameterized sample (:mod:`vaekit.elbo`).
* :class:`Autoencoder`: the same networks, but the encoder gives one point :math:`z = f_\phi(x)`,
  not a distribution, and nothing ties the codes to a prior.
* Conditional VAE: ``VAEConfig(num_classes=K)``. A label :math:`y` enters both networks as a
  one-hot vector, :math:`q_\phi(z|x, y)` and :math:`p_\theta(x|z, y)`, so that decoding a
  prior sample with a chosen :math:`y` draws an image of that class (Sohn et al., 2015).
* :class:`Classifier`: a small CNN, :math:`p_\theta(y|x) = \operatorname{softmax}(\ell_\theta(x))`.
* :class:`AutoregressiveVAE`: a VAE whose decoder also reads the pixels before each pixel, a
  decoder strong enough to model much of an image without :math:`z` (posterior collapse, chapter 03).

References:
  Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
  Sohn, Lee & Yan, *Learning Structured Output Representation using Deep Conditional
  Generative Models*, NeurIPS 2015.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaekit import elbo, nn

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
GAUSSIAN_VARIANCES = ("fixed", "learned")


class ConfigError(ValueError):
    """A model or training setting outside its allowed values."""


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_positive_int(name: str, value: Any) -> None:
    """Raises :class:`ConfigError` naming ``name`` unless ``value`` is an ``int`` of at least 1.

    ``True`` is not a size, so booleans are refused; so are floats such as ``2.0``, which
    would be stored in a config and written to JSON as they are.

    Example:
      >>> check_positive_int("latent_dim", 0)
      Traceback (most recent call last):
        ...
      vaekit.models.ConfigError: latent_dim must be a positive integer; got 0
    """
    if not _is_positive_int(value):
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


def _check_sizes(name: str, values: tuple[int, ...], *, allow_empty: bool) -> None:
    if not allow_empty and not values:
        raise ConfigError(f"{name} must hold at least one size; got ()")
    if not all(map(_is_positive_int, values)):
        raise ConfigError(f"{name} must be positive integers; got {values!r}")


def _check_image_shape(image_shape: tuple[int, ...], *, halvings: int, channels_name: str) -> None:
    if len(image_shape) != 3:
        raise ConfigError(f"image_shape must be (height, width, channels); got {image_shape!r}")
    _check_sizes("image_shape", image_shape, allow_empty=False)
    scale = 2**halvings
    if image_shape[0] % scale or image_shape[1] % scale:
        raise ConfigError(f"image_shape {image_shape[:2]} must be divisible by 2**len({channels_name}) = {scale}")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


class Config:
    """Base of the kit's frozen config dataclasses: to and from JSON, and a hash of the contents.

    Tuples become lists; a field that is itself a :class:`Config` (a zoo point's model and
    training configs) becomes a nested dict and is rebuilt as its own class.
    """

    def to_dict(self) -> dict[str, Any]:
        def plain(value):
            if isinstance(value, Config):
                return value.to_dict()
            return list(value) if isinstance(value, tuple) else value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
        types = typing.get_type_hints(cls)
        nested = {name: types[name].from_dict(value) for name, value in values.items()
                  if isinstance(types[name], type) and issubclass(types[name], Config) and isinstance(value, dict)}
        return cls(**{**values, **nested})

    def fingerprint(self, **salt: Any) -> str:
        """16 hex digits of a SHA-256 of every field (and of ``salt``, e.g. a storage format's version)."""
        canonical = json.dumps({**salt, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class VAEConfig(Config):
    """Everything that determines a VAE's (or an :class:`Autoencoder`'s) architecture and so its parameters.

    Attributes:
      architecture: ``"mlp"`` (dense layers on flattened pixels) or ``"conv"``.
      latent_dim: size of :math:`z`, at least 1.
      hidden_dims: widths of the MLP's hidden layers (the decoder mirrors them).
      conv_channels: channels after each stride-2 convolution of the conv encoder
        (kernel 4); the decoder mirrors them with ``upsampling`` layers.
      upsampling: ``"pixel_shuffle"``, ``"transposed"`` or ``"repeat"`` (conv decoder).
      likelihood: ``"bernoulli"`` (logits) or ``"gaussian"``.
      gaussian_variance: ``"fixed"`` (:math:`\\sigma` = ``gaussian_std``) or ``"learned"``
        (one :math:`\\log\\sigma^2` per channel, starting at ``gaussian_std``).
      gaussian_std: the fixed or initial standard deviation of the Gaussian likelihood.
      image_shape: ``(height, width, channels)``.
      num_classes: ``None`` for an unconditional model; else the number of labels :math:`K`
        of a conditional one, whose one-hot label joins the encoder's input (the flattened
        image, or the conv features) and the decoder's (:math:`z`).
    """

    architecture: str = "mlp"
    latent_dim: int = 20
    hidden_dims: tuple[int, ...] = (400,)
    conv_channels: tuple[int, ...] = (32, 64)
    upsampling: str = "pixel_shuffle"
    likelihood: str = "bernoulli"
    gaussian_variance: str = "learned"
    gaussian_std: float = 0.1
    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        object.__setattr__(self, "conv_channels", tuple(self.conv_channels))
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("gaussian_variance", self.gaussian_variance, GAUSSIAN_VARIANCES)
        _check_choice("upsampling", self.upsampling, nn.UPSAMPLINGS)
        check_positive_int("latent_dim", self.latent_dim)
        _check_sizes("hidden_dims", self.hidden_dims, allow_empty=True)
        _check_sizes("conv_channels", self.conv_channels, allow_empty=self.architecture == "mlp")
        _check_image_shape(self.image_shape, halvings=len(self.conv_channels) if self.architecture == "conv" else 0,
                           channels_name="conv_channels")
        if not self.gaussian_std > 0:
            raise ConfigError(f"gaussian_std must be > 0; got {self.gaussian_std!r}")
        if self.num_classes is not None:
            check_positive_int("num_classes", self.num_classes)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(Config):
    """The architecture of a :class:`Classifier`.

    Attributes:
      num_classes: number of labels, at least 1.
      channels: channels of each convolution block; each block halves height and width.
      hidden_dim: width of the dense layer before the logits (the classifier's features).
      image_shape: ``(height, width, channels)``; height and width divisible by ``2**len(channels)``.
    """

    num_classes: int = 10
    channels: tuple[int, ...] = (32, 64)
    hidden_dim: int = 128
    image_shape: tuple[int, int, int] = (28, 28, 1)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        check_positive_int("num_classes", self.num_classes)
        _check_sizes("channels", self.channels, allow_empty=False)
        check_positive_int("hidden_dim", self.hidden_dim)
        _check_image_shape(self.image_shape, halvings=len(self.channels), channels_name="channels")


def _flat_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _with_label(h: jax.Array, y: jax.Array | None) -> jax.Array:
    """``h`` with the one-hot label ``y`` appended to its features, or ``h`` itself when unconditional."""
    return h if y is None else jnp.concatenate([h, y.astype(h.dtype)], axis=-1)


def dense(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    r"""A dense layer whose kernel and bias start uniform in :math:`\pm 1/\sqrt{\text{in\_features}}`.

    This is PyTorch's default for ``nn.Linear`` (Kaiming-uniform with :math:`a = \sqrt 5`).
    Against flax's default (LeCun-normal kernel, zero bias) it trained the 784-400-20 VAE
    to a test -ELBO 0.5 nats lower after 10 epochs on Fashion-MNIST, on each of three seeds
    (``benchmarks/quality.py``): the random biases start the ReLU units at different offsets.
    """
    bound = 1.0 / math.sqrt(in_features)
    uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
    return nnx.Linear(in_features, out_features, kernel_init=uniform, bias_init=uniform, rngs=rngs)


class MLPEncoder(nnx.Module):
    """Flattened image (with the one-hot label ``y`` of a conditional model) → hidden ReLU layers → dense head.

    The head has ``out_features`` outputs: :math:`2 \\times` ``latent_dim`` for a VAE's mean and
    log-variance, ``latent_dim`` for an autoencoder's code.
    """

    def __init__(self, image_shape: tuple[int, int, int], hidden_dims: tuple[int, ...], out_features: int, *,
                 label_features: int = 0, rngs: nnx.Rngs):
        sizes = (_flat_size(image_shape) + label_features, *hidden_dims)
        self.hidden = nnx.List([dense(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = dense(sizes[-1], out_features, rngs=rngs)

    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        h = _with_label(x.reshape(x.shape[0], -1), y)
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.head(h)


class MLPDecoder(nnx.Module):
    """Latent code (with the one-hot label ``y``) → the encoder's hidden ReLU layers reversed → a value per pixel."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_dims: tuple[int, ...], latent_dim: int, *,
                 label_features: int = 0, rngs: nnx.Rngs):
        self.image_shape = image_shape
        sizes = (latent_dim + label_features, *reversed(hidden_dims), _flat_size(image_shape))
        self.layers = nnx.List([dense(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, z: jax.Array, y: jax.Array | None = None) -> jax.Array:
        h = _with_label(z, y)
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h).reshape(z.shape[0], *self.image_shape)


class ConvEncoder(nnx.Module):
    """Stride-2, kernel-4 convolutions with ReLU, then (with the one-hot label ``y``) one dense head."""

    def __init__(self, image_shape: tuple[int, int, int], channels: tuple[int, ...], out_features: int, *,
                 label_features: int = 0, rngs: nnx.Rngs):
        sizes = (image_shape[-1], *channels)
        self.convs = nnx.List([nn.Conv(a, b, 4, 2, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        scale = 2 ** len(channels)
        flat = image_shape[0] // scale * image_shape[1] // scale * channels[-1]
        self.head = dense(flat + label_features, out_features, rngs=rngs)

    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        h = x
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        return self.head(_with_label(h.reshape(h.shape[0], -1), y))


class ConvDecoder(nnx.Module):
    """Code (with the one-hot label ``y``) → dense layer → the encoder's last feature map → ×2 upsamplings."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        latent_dim: int,
        upsampling: str,
        *,
        label_features: int = 0,
        rngs: nnx.Rngs,
    ):
        scale = 2 ** len(channels)
        self.start_shape = (image_shape[0] // scale, image_shape[1] // scale, channels[-1])
        self.dense = dense(latent_dim + label_features, _flat_size(self.start_shape), rngs=rngs)
        sizes = (*reversed(channels), image_shape[-1])
        self.ups = nnx.List([nn.make_upsample(upsampling, a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, z: jax.Array, y: jax.Array | None = None) -> jax.Array:
        h = jax.nn.relu(self.dense(_with_label(z, y))).reshape(z.shape[0], *self.start_shape)
        for up in self.ups[:-1]:
            h = jax.nn.relu(up(h))
        return self.ups[-1](h)


class _EncoderDecoder(nnx.Module):
    """What a :class:`VAE` and an :class:`Autoencoder` share: the networks, the likelihood, the labels."""

    def __init__(self, config: VAEConfig, *, code_features: int, rngs: nnx.Rngs):
        self.config = config
        labels = config.num_classes or 0
        if config.architecture == "mlp":
            self.encoder = MLPEncoder(config.image_shape, config.hidden_dims, code_features,
                                      label_features=labels, rngs=rngs)
            self.decoder = MLPDecoder(config.image_shape, config.hidden_dims, config.latent_dim,
                                      label_features=labels, rngs=rngs)
        else:
            self.encoder = ConvEncoder(config.image_shape, config.conv_channels, code_features,
                                       label_features=labels, rngs=rngs)
            self.decoder = ConvDecoder(config.image_shape, config.conv_channels, config.latent_dim,
                                       config.upsampling, label_features=labels, rngs=rngs)
        if config.likelihood == "gaussian":
            initial = jnp.full((config.image_shape[-1],), 2.0 * math.log(config.gaussian_std), jnp.float32)
            self.log_var = nnx.Param(initial) if config.gaussian_variance == "learned" else nnx.Variable(initial)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def one_hot(self, condition: jax.Array | np.ndarray | None, batch: int) -> jax.Array | None:
        """The one-hot labels :math:`y` that a conditional model feeds its networks; ``None`` if unconditional.

        Args:
          condition: integer labels ``(batch,)`` in ``[0, num_classes)``, or ``None``.
          batch: the number of examples they label.

        Raises:
          ValueError: a conditional model without ``condition``, an unconditional one with it,
            or labels of the wrong shape, type or range (the range is checked outside ``jit``).
        """
        name, num_classes = type(self).__name__, self.config.num_classes
        if num_classes is None:
            if condition is not None:
                raise ValueError(f"condition was given, but this {name} is unconditional (num_classes=None); "
                                 f"build it with VAEConfig(num_classes=...) to condition on labels")
            return None
        if condition is None:
            raise ValueError(f"this {name} is conditional (num_classes={num_classes}): pass condition=, "
                             f"integer labels of shape ({batch},)")
        labels = jnp.asarray(condition)
        if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"condition must be integer labels of shape ({batch},); "
                             f"got {labels.dtype} of shape {labels.shape}")
        if not isinstance(labels, jax.core.Tracer):
            low, high = int(jnp.min(labels)), int(jnp.max(labels))
            if low < 0 or high >= num_classes:
                raise ValueError(f"condition labels must lie in [0, num_classes) = [0, {num_classes}); "
                                 f"got labels from {low} to {high}")
        return jax.nn.one_hot(labels, num_classes)

    def decode(self, z: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """The expected image :math:`\\mathbb{E}[x|z]`, ``(batch, *image_shape)`` in ``[0, 1]``."""
        out = self.decoder(z, self.one_hot(condition, z.shape[0]))
        return jax.nn.sigmoid(out) if self.config.likelihood == "bernoulli" else jnp.clip(out, 0.0, 1.0)

    def log_likelihood(self, x: jax.Array, z: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """:math:`\\log p_\\theta(x|z)` per example, in nats."""
        out = self.decoder(z, self.one_hot(condition, z.shape[0]))
        if self.config.likelihood == "bernoulli":
            return elbo.bernoulli_log_likelihood(out, x)
        return elbo.gaussian_log_likelihood(out, self.log_var[...], x)


class VAE(_EncoderDecoder):
    """A variational autoencoder: encoder, decoder and the likelihood that links the decoder to pixels.

    With ``config.num_classes`` set it is a conditional VAE: every method then takes the
    labels as ``condition=``, integers ``(batch,)``.

    Example:
      >>> model = VAE(VAEConfig(latent_dim=2), rngs=nnx.Rngs(0))
      >>> mean, log_var = model.encode(jnp.zeros((5, 28, 28, 1)))
      >>> mean.shape, model.decode(mean).shape
      ((5, 2), (5, 28, 28, 1))
      >>> cvae = VAE(VAEConfig(latent_dim=2, num_classes=10), rngs=nnx.Rngs(0))
      >>> cvae.sample(3, key=jax.random.key(0), condition=jnp.array([7, 7, 7])).shape  # three sevens
      (3, 28, 28, 1)
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        super().__init__(config, code_features=2 * config.latent_dim, rngs=rngs)

    def encode(self, x: jax.Array, *, condition: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Mean and log-variance of :math:`q_\\phi(z|x)` (or :math:`q_\\phi(z|x, y)`), each ``(batch, latent_dim)``."""
        mean, log_var = jnp.split(self.encoder(x, self.one_hot(condition, x.shape[0])), 2, axis=-1)
        return mean, log_var

    def reconstruct(self, x: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """Decodes the posterior mean: the deterministic reconstruction of ``x``."""
        mean, _ = self.encode(x, condition=condition)
        return self.decode(mean, condition=condition)

    def sample(self, num: int, *, key: jax.Array, temperature: float = 1.0,
               condition: jax.Array | None = None) -> jax.Array:
        """Decodes ``num`` draws :math:`z \\sim \\mathcal{N}(0, \\tau^2 I)` from the (tempered) prior."""
        check_positive_int("num", num)
        z = temperature * jax.random.normal(key, (num, self.latent_dim))
        return self.decode(z, condition=condition)


class Autoencoder(_EncoderDecoder):
    r"""A deterministic autoencoder: the VAE's encoder and decoder, but one code per image.

    .. math::

       z = f_\phi(x), \qquad \text{loss}(x) = -\log p_\theta(x \mid z),

    the VAE's distortion with its noise and its KL removed: nothing asks the codes to
    fill a prior, so there is no :meth:`VAE.sample`, and decoding a point between the
    codes of the data need not give an image.

    :meth:`encode` returns the code itself, an array ``(batch, latent_dim)``, where a
    VAE's returns the pair ``(mean, log_var)`` of a distribution: ``z = ae.encode(x)``
    against ``mean, log_var = vae.encode(x)``. The whole-dataset calls treat both alike:
    :func:`vaekit.batched.encode` gives ``(codes, None)`` for an autoencoder.

    The encoder's head has ``latent_dim`` outputs (a VAE's has twice as many), so the
    two models differ in parameter count by the size of the log-variance head.

    Example:
      >>> ae = Autoencoder(VAEConfig(latent_dim=2), rngs=nnx.Rngs(0))
      >>> z = ae.encode(jnp.zeros((5, 28, 28, 1)))
      >>> z.shape, ae.decode(z).shape
      ((5, 2), (5, 28, 28, 1))
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        super().__init__(config, code_features=config.latent_dim, rngs=rngs)

    def encode(self, x: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """The code :math:`z = f_\\phi(x)`, ``(batch, latent_dim)``."""
        return self.encoder(x, self.one_hot(condition, x.shape[0]))

    def reconstruct(self, x: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """Decodes the code of ``x``."""
        return self.decode(self.encode(x, condition=condition), condition=condition)


class Classifier(nnx.Module):
    r"""A small convolutional image classifier, :math:`p_\theta(y|x) = \operatorname{softmax}(\ell_\theta(x))`.

    Per entry of ``config.channels`` a block of a 3×3 convolution and a kernel-4 stride-2
    downsampling, each followed by a ReLU, so each block halves height and width; then a
    dense ReLU layer of ``hidden_dim`` units (:meth:`features`) and a dense layer to the logits.

    Example:
      >>> classifier = Classifier(ClassifierConfig(), rngs=nnx.Rngs(0))
      >>> classifier(jnp.zeros((5, 28, 28, 1))).shape, classifier.features(jnp.zeros((5, 28, 28, 1))).shape
      ((5, 10), (5, 128))
    """

    def __init__(self, config: ClassifierConfig, *, rngs: nnx.Rngs):
        self.config = config
        sizes = (config.image_shape[-1], *config.channels)
        convs, downs = [], []
        for a, b in zip(sizes[:-1], sizes[1:]):
            convs.append(nn.Conv(a, b, 3, rngs=rngs))
            downs.append(nn.Downsample(b, b, rngs=rngs))
        self.convs, self.downs = nnx.List(convs), nnx.List(downs)
        scale = 2 ** len(config.channels)
        flat = config.image_shape[0] // scale * config.image_shape[1] // scale * config.channels[-1]
        self.hidden = dense(flat, config.hidden_dim, rngs=rngs)
        self.head = dense(config.hidden_dim, config.num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """The last hidden layer, ``(batch, hidden_dim)``: the representation the logits read."""
        h = x
        for conv, down in zip(self.convs, self.downs):
            h = jax.nn.relu(down(jax.nn.relu(conv(h))))
        return jax.nn.relu(self.hidden(h.reshape(h.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits :math:`\\ell_\\theta(x)`, ``(batch, num_classes)``."""
        return self.head(self.features(x))


def make_vae(config: VAEConfig, *, seed: int = 0) -> VAE:
    """Builds a freshly initialised :class:`VAE`; the same config and seed give the same parameters."""
    return VAE(config, rngs=nnx.Rngs(params=seed))


def count_parameters(model: nnx.Module) -> int:
    """The number of trainable scalars."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


class AutoregressiveVAE(VAE):
    r"""A Bernoulli VAE whose decoder also sees every earlier pixel: a decoder that needs :math:`z` less.

    .. math::

       p_\theta(x|z) = \prod_{i=1}^{D} \operatorname{Bernoulli}\Big(x_i \,\Big|\,
           s\big(a_i(z) + \textstyle\sum_{j<i} W_{ij}\, x_j\big)\Big),

    with :math:`a(z)` the MLP decoder's logits, :math:`s` the sigmoid, pixels in raster order and
    :math:`W` a strictly lower-triangular :math:`D \times D` matrix (a fully visible sigmoid
    belief net, Frey 1998, added to the decoder). :math:`W` starts at zero, where the model is
    the plain :class:`VAE`; it is stored as a full matrix whose upper half gets no gradient and stays 0. Pixel :math:`i` can be predicted from its neighbours above and to the
    left, so the decoder can explain much of an image without the code, and the ELBO's KL makes
    the code carry less: a standard route to posterior collapse (Bowman et al., 2016; Chen et al., 2017).

    :meth:`decode` cannot give :math:`\mathbb{E}[x|z]` in closed form (each pixel depends on the
    pixels drawn before it); it gives the *greedy* decode: pixel by pixel, the probability
    :math:`p_i` given the earlier pixels set to their more likely value :math:`[p_j > 1/2]`.

    Args:
      config: an unconditional ``"mlp"`` Bernoulli :class:`VAEConfig`.
      rngs: the parameters' random numbers.

    Raises:
      ConfigError: for a conv, conditional or Gaussian config.

    Example:
      >>> model = AutoregressiveVAE(VAEConfig(latent_dim=2), rngs=nnx.Rngs(0))
      >>> plain = VAE(VAEConfig(latent_dim=2), rngs=nnx.Rngs(0))
      >>> x, z = jnp.ones((1, 28, 28, 1)), jnp.zeros((1, 2))
      >>> bool(jnp.allclose(model.log_likelihood(x, z), plain.log_likelihood(x, z)))  # W = 0: the plain VAE
      True

    References:
      Frey, *Graphical Models for Machine Learning and Digital Communication*, MIT Press 1998.
      Bowman et al., *Generating Sentences from a Continuous Space*, CoNLL 2016.
      Chen et al., *Variational Lossy Autoencoder*, ICLR 2017.
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        if config.architecture != "mlp" or config.likelihood != "bernoulli" or config.num_classes is not None:
            raise ConfigError(f"AutoregressiveVAE needs an unconditional 'mlp' Bernoulli config; got architecture="
                              f"{config.architecture!r}, likelihood={config.likelihood!r}, "
                              f"num_classes={config.num_classes!r}")
        super().__init__(config, rngs=rngs)
        pixels = _flat_size(config.image_shape)
        self.visible = nnx.Param(jnp.zeros((pixels, pixels), jnp.float32))

    def _earlier_pixel_weights(self) -> jax.Array:
        """:math:`W` with everything on and above the diagonal zeroed: pixel ``i`` reads pixels ``j < i`` only."""
        weights = self.visible[...]
        return weights * jnp.tril(jnp.ones_like(weights), k=-1)

    def log_likelihood(self, x: jax.Array, z: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """:math:`\\log p_\\theta(x|z)` per example, in nats (all pixels at once: the earlier ones are known)."""
        self.one_hot(condition, z.shape[0])  # refuses a condition, as every unconditional kit model does
        flat = x.reshape(x.shape[0], -1)
        logits = self.decoder(z).reshape(z.shape[0], -1) + flat @ self._earlier_pixel_weights().T
        return elbo.bernoulli_log_likelihood(logits, flat)

    def decode(self, z: jax.Array, *, condition: jax.Array | None = None) -> jax.Array:
        """The greedy decode, ``(batch, *image_shape)`` in ``[0, 1]`` (see the class docstring)."""
        self.one_hot(condition, z.shape[0])
        from_code = self.decoder(z).reshape(z.shape[0], -1)
        weights = self._earlier_pixel_weights()

        def next_pixel(pixels, i):
            p = jax.nn.sigmoid(from_code[:, i] + pixels @ weights[i])
            return pixels.at[:, i].set((p > 0.5).astype(pixels.dtype)), p

        _, probabilities = jax.lax.scan(next_pixel, jnp.zeros_like(from_code), jnp.arange(from_code.shape[1]))
        return probabilities.T.reshape(z.shape[0], *self.config.image_shape)
