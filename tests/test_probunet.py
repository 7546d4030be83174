"""The Probabilistic U-Net: shapes, pinned size, the KL, prior-only sampling, checkpoints, NaN guards, and diversity.

The last test is the one that matters most: trained with the cross-entropy summed over pixels the
model draws both annotations of an ambiguous toy task; averaged over pixels (the common mistake)
its KL collapses and every sample is the same mask.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vaekit import checkpoint, elbo, models, train
from vaekit.metrics.segmentation import sample_diversity
from vaekit.models import ConfigError
from vaekit.probunet import (
    LOG_VAR_LIMIT,
    ProbabilisticUNet,
    ProbabilisticUNetConfig,
    ProbabilisticUNetObjective,
    bounded_log_var,
    diagonal_gaussian_kl,
    foreground_diversity,
)
from vaekit.segmentation import UNet, UNetConfig, pixel_cross_entropy

# 336,618 = U-Net 154,130 (3 channels in, 2 classes) + prior net 90,000 + 780 + posterior net 90,288 + 780
# (its input has the 2 one-hot channels more) + fcomb 368 + 272 (the U-Net's head is the last fcomb layer).
PARAMETERS = 336_618

# Every test builds this one size (the parameter initialisers compile once per shape).
SMALL = ProbabilisticUNetConfig(unet=UNetConfig(in_channels=3, num_classes=2, channels=(8, 16)), latent_dim=6,
                                encoder_channels=(8, 16))


def conv(cin: int, cout: int, k: int) -> int:
    return k * k * cin * cout + cout


def expected_parameters(in_channels, num_classes, channels, latent_dim, fcomb_layers) -> int:
    """The count the docstrings describe: a U-Net, two encoders of its architecture with dense heads, the fcomb."""
    def encoder(cin):
        levels = conv(cin, channels[0], 3) + conv(channels[0], channels[0], 3)
        levels += sum(conv(a, b, 4) + conv(b, b, 3) for a, b in zip(channels[:-1], channels[1:]))
        return levels + channels[-1] * 2 * latent_dim + 2 * latent_dim

    unet = models.count_parameters(nnx.eval_shape(
        lambda: UNet(UNetConfig(in_channels=in_channels, num_classes=num_classes, channels=channels),
                     rngs=nnx.Rngs(0))))
    fcomb = conv(channels[0] + latent_dim, channels[0], 1) + (fcomb_layers - 2) * conv(channels[0], channels[0], 1)
    return unet + encoder(in_channels) + encoder(in_channels + num_classes) + fcomb


def small_model(seed: int = 0) -> ProbabilisticUNet:
    return ProbabilisticUNet(SMALL, rngs=nnx.Rngs(seed))


def images_and_masks(batch: int = 4, size: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    masks = (images[..., 0] > 0.5).astype(np.int32)
    return jnp.asarray(images), jnp.asarray(masks)


# --- the model ------------------------------------------------------------------------------------


def test_shapes_of_every_method():
    graphdef, params = nnx.split(nnx.eval_shape(lambda: ProbabilisticUNet(rngs=nnx.Rngs(0))))
    x, y = (jax.ShapeDtypeStruct(a.shape, a.dtype) for a in images_and_masks(batch=2, size=32))

    def shape_of(method, *args, **kwargs):
        out = jax.eval_shape(lambda p, *a: getattr(nnx.merge(graphdef, p), method)(*a, **kwargs), params, *args)
        return jax.tree.map(lambda a: a.shape, out)

    assert shape_of("prior", x) == shape_of("posterior", x, y) == ((2, 6), (2, 6))
    assert shape_of("logits", x, jax.ShapeDtypeStruct((2, 6), jnp.float32)) == (2, 32, 32, 2)
    assert shape_of("sample", x, key=jax.random.key(0), num_samples=5) == (5, 2, 32, 32, 2)
    assert shape_of("__call__", x) == shape_of("__call__", x, key=jax.random.key(0)) == (2, 32, 32, 2)
    objective = ProbabilisticUNetObjective(diversity_samples=3)
    losses, metrics = jax.eval_shape(lambda p, *batch: objective(nnx.merge(graphdef, p), batch, key=jax.random.key(0),
                                                                 beta=1.0), params, x, y)
    assert losses.shape == (2,) and {name: v.shape for name, v in metrics.items()} == {
        "cross_entropy": (2,), "kl": (2,), "sample_diversity": (2,)}


def test_parameter_count_of_the_default_is_pinned():
    model = nnx.eval_shape(lambda: ProbabilisticUNet(rngs=nnx.Rngs(0)))
    assert models.count_parameters(model) == PARAMETERS == expected_parameters(3, 2, (16, 32, 64), 6, 3)
    other = ProbabilisticUNetConfig(unet=UNetConfig(in_channels=1, num_classes=4, channels=(4, 8, 12)), latent_dim=2,
                                    encoder_channels=(4, 8, 12), fcomb_layers=4)
    assert (models.count_parameters(nnx.eval_shape(lambda: ProbabilisticUNet(other, rngs=nnx.Rngs(0))))
            == expected_parameters(1, 4, (4, 8, 12), 2, 4))


def test_the_logits_are_the_unet_head_on_features_mixed_with_z_by_1x1_convolutions():
    model = small_model()
    x, _ = images_and_masks()
    z = jax.random.normal(jax.random.key(1), (4, 6))
    features = model.unet.features(x)
    h = jnp.concatenate([features, jnp.broadcast_to(z[:, None, None, :], (4, 16, 16, 6))], axis=-1)
    for layer in model.fcomb:  # a 1x1 convolution is a matrix product at every pixel
        h = jax.nn.relu(jnp.einsum("bhwc,cd->bhwd", h, layer.kernel[0, 0]) + layer.bias[None, None, None, :])
    np.testing.assert_allclose(model.logits(x, z), model.unet.head(h), rtol=1e-5, atol=1e-5)
    # z is one vector per image: changing it changes every pixel's logits, changing another image's changes none.
    moved = model.logits(x, z.at[0].add(3.0))
    assert bool(jnp.all(jnp.any(moved[0] != model.logits(x, z)[0], axis=-1)))
    np.testing.assert_array_equal(moved[1:], model.logits(x, z)[1:])


def test_the_config_round_trips_through_a_dict_with_its_unet_config_nested():
    config = ProbabilisticUNetConfig(unet=UNetConfig(in_channels=1, num_classes=3, channels=(4, 8)), latent_dim=2,
                                     encoder_channels=[4, 8, 8], fcomb_layers=2)
    values = config.to_dict()
    assert values["unet"] == {"in_channels": 1, "num_classes": 3, "channels": [4, 8], "upsampling": "transposed"}
    assert ProbabilisticUNetConfig.from_dict(values) == config
    assert ProbabilisticUNetConfig().unet == UNetConfig(in_channels=3, num_classes=2)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(latent_dim=0), "latent_dim must be a positive integer"),
    (dict(encoder_channels=()), "encoder_channels must name at least one level"),
    (dict(encoder_channels=(8, -1)), r"encoder_channels\[1\] must be a positive integer"),
    (dict(fcomb_layers=1), "fcomb_layers must be at least 2"),
    (dict(unet={"in_channels": 3}), "unet must be a UNetConfig"),
])
def test_bad_configs_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ProbabilisticUNetConfig(**kwargs)


def test_bad_input_is_a_clear_error():
    model = small_model()
    x, y = images_and_masks()
    with pytest.raises(ValueError, match=r"x must be \(batch, height, width, 3\)"):
        model.prior(x[..., :1])
    with pytest.raises(ValueError, match=r"masks must be \(batch, height, width\)"):
        model.posterior(x, y[:, :8])
    with pytest.raises(ValueError, match="masks must be integer class maps"):
        model.posterior(x, y.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"z must be \(batch, latent_dim\) = \(4, 6\)"):
        model.logits(x, jnp.zeros((4, 2)))
    with pytest.raises(ConfigError, match="num_samples must be a positive integer"):
        model.sample(x, key=jax.random.key(0), num_samples=0)
    with pytest.raises(TypeError, match="config must be a ProbabilisticUNetConfig"):
        ProbabilisticUNet(UNetConfig(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="reduction must be one of 'sum', 'mean'"):
        ProbabilisticUNetObjective(reduction="average")
    with pytest.raises(ValueError, match="diversity_samples must be 0"):
        ProbabilisticUNetObjective(diversity_samples=1)


# --- the KL between two Gaussians -------------------------------------------------------------------


def test_the_kl_to_a_standard_normal_is_the_vaes_kl():
    mean, log_var = jax.random.normal(jax.random.key(0), (2, 5, 6))
    standard = jnp.zeros((5, 6))
    np.testing.assert_allclose(diagonal_gaussian_kl(mean, log_var, standard, standard),
                               elbo.gaussian_kl(mean, log_var), rtol=1e-6, atol=1e-6)


def test_the_kl_matches_a_monte_carlo_estimate():
    n = 200_000
    q_mean, q_log_var, p_mean, p_log_var = (jnp.broadcast_to(row, (n, 6))
                                            for row in 0.7 * jax.random.normal(jax.random.key(0), (4, 6)))
    exact = float(jnp.sum(diagonal_gaussian_kl(q_mean[0], q_log_var[0], p_mean[0], p_log_var[0])))
    z = elbo.reparameterize(q_mean, q_log_var, key=jax.random.key(1))
    log_ratio = elbo.gaussian_log_density(z, q_mean, q_log_var) - elbo.gaussian_log_density(z, p_mean, p_log_var)
    standard_error = float(jnp.std(log_ratio)) / math.sqrt(n)
    assert exact > 0.5, "the two Gaussians are far enough apart for the test to mean something"
    assert abs(float(jnp.mean(log_ratio)) - exact) < 4 * standard_error


def test_the_kl_is_exactly_zero_when_prior_and_posterior_nets_output_the_same(monkeypatch):
    model = small_model()
    x, y = images_and_masks()
    monkeypatch.setattr(model, "posterior", lambda images, masks: model.prior(images))
    _, metrics = ProbabilisticUNetObjective()(model, (x, y), key=jax.random.key(0), beta=1.0)
    np.testing.assert_array_equal(metrics["kl"], np.zeros(4))
    # The nets themselves: a posterior net holding the prior net's weights, blind to its mask channels.
    model = small_model()
    prior, posterior = model.prior_net, model.posterior_net
    for a, b in [(prior.head, posterior.head), (prior.encoder.stem[1], posterior.encoder.stem[1]),
                 (prior.encoder.down, posterior.encoder.down), (prior.encoder.down_mix, posterior.encoder.down_mix)]:
        nnx.update(b, nnx.state(a))
    first = posterior.encoder.stem[0]
    first.kernel[...] = jnp.concatenate([prior.encoder.stem[0].kernel[...], jnp.zeros((3, 3, 2, 8))], axis=2)
    first.bias[...] = prior.encoder.stem[0].bias[...]
    _, metrics = ProbabilisticUNetObjective()(model, (x, y), key=jax.random.key(0), beta=1.0)
    np.testing.assert_allclose(metrics["kl"], np.zeros(4), atol=1e-6)


def test_log_variances_are_bounded_smoothly():
    raw = jnp.array([-1e30, -100.0, -1.0, 0.0, 0.5, 100.0, 1e30])
    bounded = bounded_log_var(raw)
    assert bool(jnp.all(jnp.abs(bounded) <= LOG_VAR_LIMIT)) and bool(jnp.all(jnp.diff(bounded) >= 0))
    np.testing.assert_allclose(bounded[2:5], raw[2:5], atol=0.01)  # near 0, the identity
    assert bool(jnp.all(jnp.isfinite(jax.vmap(jax.grad(bounded_log_var))(raw))))


# --- which distribution each method draws from -------------------------------------------------------


def test_sample_and_call_use_the_prior_and_never_the_posterior(monkeypatch):
    model = small_model()
    x, _ = images_and_masks()

    def no_posterior(*args, **kwargs):
        raise AssertionError("the posterior needs the annotation; sampling must not use it")

    monkeypatch.setattr(ProbabilisticUNet, "posterior", no_posterior)
    assert model.sample(x, key=jax.random.key(0), num_samples=3).shape == (3, 4, 16, 16, 2)
    model(x), model(x, key=jax.random.key(0))
    # A prior of (almost) no variance around m: every sample, and the key-less call, decodes m.
    m = jax.random.normal(jax.random.key(1), (4, 6))
    monkeypatch.setattr(ProbabilisticUNet, "prior", lambda self, images: (m, jnp.full((4, 6), -40.0)))
    expected = model.logits(x, m)
    np.testing.assert_allclose(model.sample(x, key=jax.random.key(2), num_samples=3),
                               jnp.broadcast_to(expected, (3, *expected.shape)), atol=1e-5)
    np.testing.assert_allclose(model(x), expected, atol=1e-6)
    # A wide prior: the samples differ from one another.
    monkeypatch.setattr(ProbabilisticUNet, "prior", lambda self, images: (m, jnp.full((4, 6), 2.0)))
    samples = model.sample(x, key=jax.random.key(2), num_samples=3)
    assert float(jnp.min(jnp.abs(samples[0] - samples[1]).max(axis=(1, 2, 3)))) > 1e-3


def test_training_samples_z_from_the_posterior(monkeypatch):
    model = small_model()
    x, y = images_and_masks()
    q_mean = jax.random.normal(jax.random.key(1), (4, 6))
    monkeypatch.setattr(ProbabilisticUNet, "posterior", lambda self, images, masks: (q_mean, jnp.full((4, 6), -40.0)))
    _, metrics = ProbabilisticUNetObjective()(model, (x, y), key=jax.random.key(0), beta=1.0)
    np.testing.assert_allclose(metrics["cross_entropy"], pixel_cross_entropy(model.logits(x, q_mean), y), rtol=1e-5)


# --- the objective -------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_the_loss_sums_the_cross_entropy_over_pixels_and_adds_beta_kl(beta):
    model = small_model()
    batch = images_and_masks()
    losses, metrics = ProbabilisticUNetObjective()(model, batch, key=jax.random.key(0), beta=beta)
    np.testing.assert_allclose(losses, 16 * 16 * metrics["cross_entropy"] + beta * metrics["kl"], rtol=1e-6)
    mean_losses, mean_metrics = ProbabilisticUNetObjective(reduction="mean")(model, batch, key=jax.random.key(0),
                                                                              beta=beta)
    np.testing.assert_allclose(mean_losses, mean_metrics["cross_entropy"] + beta * mean_metrics["kl"], rtol=1e-6)
    np.testing.assert_allclose(mean_metrics["cross_entropy"], metrics["cross_entropy"])
    assert bool(jnp.all(metrics["kl"] > 0))


def test_one_training_step_lowers_the_loss_of_the_batch():
    model = small_model()
    batch = images_and_masks(batch=8)
    objective, optimizer = ProbabilisticUNetObjective(), optax.adam(1e-3)
    state = optimizer.init(nnx.state(model, nnx.Param))
    key = jax.random.key(0)
    before = float(jnp.mean(objective(model, batch, key=key, beta=1.0)[0]))
    state, losses, _ = train.train_step(model, state, batch, key=key, beta=1.0, objective=objective,
                                        optimizer=optimizer)
    assert float(jnp.mean(losses)) == pytest.approx(before, rel=1e-5)
    after = float(jnp.mean(objective(model, batch, key=key, beta=1.0)[0]))
    assert after < before


def test_no_nan_with_extreme_inputs_and_extreme_encoder_outputs():
    model = small_model()
    x, y = images_and_masks()
    # Raw log-variances of +-1,000: exp() of them overflows float32 without the bound.
    model.prior_net.head.bias[...] = jnp.full((12,), -1e3)
    model.posterior_net.head.bias[...] = jnp.full((12,), 1e3)
    objective = ProbabilisticUNetObjective()
    for images, masks in [(x, y), (1e4 * x, jnp.ones_like(y)), (-1e4 * x, jnp.zeros_like(y))]:
        losses, metrics = objective(model, (images, masks), key=jax.random.key(0), beta=1.0)
        assert bool(jnp.all(jnp.isfinite(losses))) and all(bool(jnp.all(jnp.isfinite(v))) for v in metrics.values())
        grads = nnx.grad(lambda m: jnp.mean(objective(m, (images, masks), key=jax.random.key(0), beta=1.0)[0]))(model)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
        for log_var in (model.prior(images)[1], model.posterior(images, masks)[1]):
            assert bool(jnp.all(jnp.abs(log_var) <= LOG_VAR_LIMIT))
        assert bool(jnp.all(jnp.isfinite(model.sample(images, key=jax.random.key(0), num_samples=2))))


# --- checkpoints -----------------------------------------------------------------------------------------


def test_a_checkpoint_restores_a_model_that_draws_the_same_samples(tmp_path):
    model = small_model(seed=3)
    x, _ = images_and_masks()
    path = checkpoint.save(tmp_path / "probunet", model)
    restored = checkpoint.restore(path)
    assert type(restored.model) is ProbabilisticUNet and restored.model_config == SMALL
    np.testing.assert_array_equal(restored.model.sample(x, key=jax.random.key(7), num_samples=4),
                                  model.sample(x, key=jax.random.key(7), num_samples=4))
    np.testing.assert_array_equal(restored.model(x), model(x))


# --- sample diversity --------------------------------------------------------------------------------------


def as_logits(masks) -> jax.Array:
    """Two-class logits whose argmax is ``masks`` (samples, batch, H, W)."""
    return jax.nn.one_hot(jnp.asarray(masks, jnp.int32), 2)


def test_foreground_diversity_known_answers_and_the_empty_mask_rule():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b = np.zeros((4, 4), bool)
    b[:2, :] = True  # contains a: IoU 4/8
    empty = np.zeros((4, 4), bool)
    cases = {(0, 0): 0.0, (1, 1): 0.0, (2, 2): 0.0, (0, 1): 0.5, (0, 2): 1.0}
    masks = (a, b, empty)
    for (i, j), expected in cases.items():
        assert float(foreground_diversity(as_logits(np.stack([masks[i], masks[j]])[:, None]))[0]) == expected
    # Distinct pairs only: three samples a, a, b have pairs (a, a), (a, b), (a, b): (0 + 0.5 + 0.5) / 3.
    three = foreground_diversity(as_logits(np.stack([a, a, b])[:, None]))
    assert float(three[0]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="num_samples >= 2"):
        foreground_diversity(as_logits(np.stack([a])[:, None]))


def test_foreground_diversity_agrees_with_the_metrics_module_image_by_image():
    masks = np.random.default_rng(0).random((5, 3, 6, 6)) < 0.3  # 5 samples of 3 images
    masks[:, 2] = False  # an image whose samples are all empty
    ours = foreground_diversity(as_logits(masks))
    for image in range(3):
        assert float(ours[image]) == pytest.approx(sample_diversity(masks[:, image]), abs=1e-6)


def ambiguous_toy(n: int, seed: int):
    """16×16 images all alike, each showing two candidate objects; the annotation marks one of them, each with ½.

    The two differ in size and place (3×3 top left, 9×10 bottom right). Nothing in the image says which
    is marked, so a model can only be right by drawing both.
    """
    small = np.zeros((16, 16), np.int32)
    small[2:5, 2:5] = 1
    large = np.zeros((16, 16), np.int32)
    large[6:15, 5:15] = 1
    image = np.stack([small, large, np.zeros_like(small)], axis=-1).astype(np.float32)
    pick_small = np.random.default_rng(seed).random(n) < 0.5
    masks = np.where(pick_small[:, None, None], small, large).astype(np.int32)
    return np.broadcast_to(image, (n, 16, 16, 3)).copy(), masks, small, large


def train_on_the_toy(reduction: str):
    """The small model (latent 6, as by default) after 240 steps; its last epoch, and what 64 prior samples show."""
    images, masks, small, large = ambiguous_toy(512, seed=0)
    model = small_model()
    result = train.fit(model, (images, masks), config=train.TrainConfig(epochs=15, batch_size=32, learning_rate=3e-3),
                       objective=ProbabilisticUNetObjective(reduction=reduction), progress=False)
    samples = model.sample(jnp.asarray(images[:1]), key=jax.random.key(1), num_samples=64)
    drawn = np.asarray(jnp.argmax(samples, axis=-1)[:, 0]).astype(bool)

    def share_drawing(shape):
        iou = (drawn & shape.astype(bool)).sum((1, 2)) / (drawn | shape.astype(bool)).sum((1, 2))
        return float(np.mean(iou > 0.8))

    return result.history[-1], float(foreground_diversity(samples)[0]), share_drawing(small), share_drawing(large)


def test_summed_cross_entropy_draws_both_annotations_and_averaged_collapses():
    history, summed_diversity, small, large = train_on_the_toy("sum")
    assert history["beta"] == 1.0 and history["train_kl"] > 0.5, history  # at least log 2: one bit, which shape
    # Two disjoint masks drawn half and half would give 1 - IoU = 1 for half the pairs (0.5); samples
    # between the two (parts of each) add to it.
    assert summed_diversity > 0.4 and small >= 0.1 and large >= 0.1, (summed_diversity, small, large)
    history, diversity, small, large = train_on_the_toy("mean")
    assert history["train_kl"] < 0.01, history  # beta is in effect 256 times larger: one bit is not worth its KL
    # Only one shape is ever drawn; what diversity is left comes from pixels the model leaves at p = 1/2.
    assert min(small, large) == 0.0 and diversity < 0.5 * summed_diversity, (diversity, small, large)
