"""The U-Net: shapes, pinned sizes, its forward pass spelled in flax, errors; the pixel cross-entropy; training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import datasets, models, nn, train
from vaekit.segmentation import SegmentationObjective, UNet, UNetConfig, pixel_cross_entropy

# 153,995 = stem 160 + 2,320; down 8,224 + 32,832; down_mix 9,248 + 36,928; up 32,800 + 8,208;
# up_mix 18,464 + 4,624; head 187. The upsamplings differ only in the two ``up`` layers.
PARAMETERS = {"transposed": 153_995, "repeat": 136_075, "pixel_shuffle": 205_339}


def abstract_unet(**kwargs):
    """A U-Net's graph and parameter shapes, without running its initialisers."""
    return nnx.split(nnx.eval_shape(lambda: UNet(UNetConfig(**kwargs), rngs=nnx.Rngs(0))))


def expected_parameters(in_channels, num_classes, channels, upsampling) -> int:
    """The count the docstring's description implies, layer by layer."""
    conv = lambda cin, cout, k: k * k * cin * cout + cout
    up = {"transposed": lambda cin, cout: conv(cin, cout, 4), "repeat": lambda cin, cout: conv(cin, cout, 3),
          "pixel_shuffle": lambda cin, cout: conv(cin, 4 * cout, 3)}[upsampling]
    fine_to_coarse = list(zip(channels[:-1], channels[1:]))
    return (conv(in_channels, channels[0], 3) + conv(channels[0], channels[0], 3)
            + sum(conv(a, b, 4) + conv(b, b, 3) for a, b in fine_to_coarse)
            + sum(up(b, a) + conv(2 * a, a, 3) for a, b in fine_to_coarse)
            + conv(channels[0], num_classes, 1))


# --- the model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_parameter_count_is_pinned(upsampling):
    graphdef, params = abstract_unet(upsampling=upsampling)
    count = models.count_parameters(nnx.merge(graphdef, params))
    assert count == PARAMETERS[upsampling] == expected_parameters(1, 11, (16, 32, 64), upsampling)


def test_the_default_unet_is_the_transposed_one_on_one_channel_with_eleven_classes():
    graphdef, params = abstract_unet()
    assert models.count_parameters(nnx.merge(graphdef, params)) == PARAMETERS["transposed"]
    assert params["stem"][0]["kernel"].shape == (3, 3, 1, 16) and params["head"]["kernel"].shape == (1, 1, 16, 11)
    assert all(type(up) is nn.ConvTranspose for up in nnx.merge(graphdef, params).up)


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_other_sizes_follow_the_described_architecture(upsampling):
    kwargs = dict(in_channels=3, num_classes=4, channels=(8, 12, 16, 24), upsampling=upsampling)
    graphdef, params = abstract_unet(**kwargs)
    assert models.count_parameters(nnx.merge(graphdef, params)) == expected_parameters(3, 4, (8, 12, 16, 24), upsampling)
    x = jax.ShapeDtypeStruct((2, 24, 40, 3), jnp.float32)  # multiples of 2**3, not square
    out = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params, x)
    assert (out.shape, out.dtype) == ((2, 24, 40, 4), jnp.float32)


def lecun_parameters(params, seed: int, bias_std: float = 0.1):
    """Random kernels as the initialiser draws them (LeCun normal), and biases (zero where ``bias_std = 0``)."""
    rng = np.random.default_rng(seed)

    def draw(p):
        if len(p.shape) == 1:
            return (bias_std * rng.standard_normal(p.shape)).astype(np.float32)
        return (rng.standard_normal(p.shape) / math.sqrt(math.prod(p.shape[:-1]))).astype(np.float32)

    return jax.tree.map(draw, params)


def flax_conv(state, cin: int, cout: int, kernel: int, strides: int = 1, transpose: bool = False):
    """A plain ``nnx.Conv`` (or ``nnx.ConvTranspose``) holding ``state``."""
    make = nnx.ConvTranspose if transpose else nnx.Conv
    graphdef, _ = nnx.split(nnx.eval_shape(
        lambda: make(cin, cout, (kernel, kernel), (strides, strides), padding="SAME", rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, state)


def flax_unet(params, x, *, channels, upsampling):
    """The U-Net of the docstring, spelled with plain flax modules holding the model's parameters."""
    relu = jax.nn.relu
    c0 = channels[0]
    h = relu(flax_conv(params["stem"][0], x.shape[-1], c0, 3)(x))
    h = relu(flax_conv(params["stem"][1], c0, c0, 3)(h))
    skips = [h]
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        h = relu(flax_conv(params["down"][i], a, b, 4, 2)(h))
        h = relu(flax_conv(params["down_mix"][i], b, b, 3)(h))
        skips.append(h)
    for i, (fine, coarse) in enumerate(zip(channels[-2::-1], channels[:0:-1])):
        if upsampling == "transposed":
            h = flax_conv(params["up"][i], coarse, fine, 4, 2, transpose=True)(h)
        elif upsampling == "repeat":
            h = flax_conv(params["up"][i]["conv"], coarse, fine, 3)(jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2))
        else:  # pixel_shuffle, itself checked against explicit indexing in test_nn.py
            h = nn.pixel_shuffle(flax_conv(params["up"][i]["conv"], coarse, 4 * fine, 3)(h), 2)
        h = relu(h)
        h = relu(flax_conv(params["up_mix"][i], 2 * fine, fine, 3)(jnp.concatenate([h, skips[-2 - i]], axis=-1)))
    return flax_conv(params["head"], c0, params["head"]["kernel"].shape[-1], 1)(h)


SCENES = datasets.segmentation_scenes(2, "test", seed=5)


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_output_equals_the_forward_pass_written_with_flax_modules(upsampling):
    graphdef, abstract = abstract_unet(upsampling=upsampling)
    params = lecun_parameters(abstract, seed=1)
    x = SCENES.images

    @jax.jit
    def both(params, x):
        return nnx.merge(graphdef, params)(x), flax_unet(params, x, channels=(16, 32, 64), upsampling=upsampling)

    with jax.default_matmul_precision("highest"):
        ours, theirs = both(params, x)
    assert ours.shape == (2, 64, 64, 11) and ours.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(theirs)))
    assert scale > 0.1
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


# --- errors ---------------------------------------------------------------------------------------

ERRORS = {  # config fields, the input's shape (None: the config refuses), the message
    "size not a multiple of 4": ({}, (1, 30, 30, 1), "UNet: x must be (batch, height, width, channels) with height "
                                 "and width multiples of 4; got shape (1, 30, 30, 1)"),
    "width not a multiple of 4": ({}, (1, 64, 62, 1), "multiples of 4; got shape (1, 64, 62, 1)"),
    "four levels, size not a multiple of 8": (dict(channels=(8, 8, 8, 8)), (1, 36, 36, 1),
                                              "multiples of 8; got shape (1, 36, 36, 1)"),
    "no batch axis": ({}, (64, 64, 1), "multiples of 4; got shape (64, 64, 1)"),
    "wrong input channels": ({}, (1, 64, 64, 3), "Conv: x must be (batch, height, width, 1); got shape (1, 64, 64, 3)"),
    "unknown upsampling": (dict(upsampling="bilinear"), None,
                           "upsampling must be one of 'transposed', 'repeat', 'pixel_shuffle'; got 'bilinear'"),
    "one level": (dict(channels=(16,)), None, "channels must name at least two levels; got (16,)"),
    "no levels": (dict(channels=()), None, "channels must name at least two levels; got ()"),
    "a level of 0 channels": (dict(channels=(16, 0)), None, "channels[1] must be a positive integer; got 0"),
    "a level of 2.0 channels": (dict(channels=(16, 2.0)), None, "channels[1] must be a positive integer; got 2.0"),
    "0 classes": (dict(num_classes=0), None, "num_classes must be a positive integer; got 0"),
    "0 input channels": (dict(in_channels=0), None, "in_channels must be a positive integer; got 0"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_is_a_clear_error(case):
    kwargs, shape, message = ERRORS[case]
    if shape is None:
        with pytest.raises(models.ConfigError) as raised:
            UNetConfig(**kwargs)
    else:
        graphdef, params = abstract_unet(**kwargs)
        with pytest.raises(ValueError) as raised:
            nnx.merge(graphdef, params)(jnp.zeros(shape))  # the checks come before any arithmetic
    assert message in str(raised.value)


def test_the_config_round_trips_through_a_dict_and_refuses_unknown_fields():
    config = UNetConfig(in_channels=3, num_classes=4, channels=[8, 12], upsampling="repeat")
    assert config.channels == (8, 12)
    assert config.to_dict() == {"in_channels": 3, "num_classes": 4, "channels": [8, 12], "upsampling": "repeat"}
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(models.ConfigError, match="unknown UNetConfig fields: depth"):
        UNetConfig.from_dict({**config.to_dict(), "depth": 3})


def test_the_model_keeps_its_config_and_refuses_anything_else():
    config = UNetConfig(channels=(8, 16))
    unet = nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0)))
    assert unet.config is config and unet.head.kernel.shape == (1, 1, 8, 11)
    with pytest.raises(TypeError, match="config must be a UNetConfig; got 3"):
        UNet(3, rngs=nnx.Rngs(0))


# --- the pixel cross-entropy ----------------------------------------------------------------------


def random_masks(rng, shape, classes):
    return jnp.asarray(rng.integers(0, classes, shape), jnp.int32)


def test_uniform_logits_cost_log_of_the_class_count():
    rng = np.random.default_rng(0)
    masks = random_masks(rng, (3, 5, 7), 11)
    # Uniform over classes, whatever each pixel's level.
    logits = jnp.broadcast_to(jnp.asarray(rng.standard_normal((3, 5, 7, 1)) * 10, jnp.float32), (3, 5, 7, 11))
    ce = pixel_cross_entropy(logits, masks)
    assert ce.shape == (3,) and ce.dtype == jnp.float32
    np.testing.assert_allclose(ce, math.log(11), rtol=1e-6)


def test_a_confident_right_answer_costs_nothing_and_a_wrong_one_its_margin():
    masks = random_masks(np.random.default_rng(1), (2, 4, 4), 11)
    right = 50.0 * jax.nn.one_hot(masks, 11)
    np.testing.assert_allclose(pixel_cross_entropy(right, masks), 0.0, atol=1e-6)
    wrong = 50.0 * jax.nn.one_hot((masks + 1) % 11, 11)
    np.testing.assert_allclose(pixel_cross_entropy(wrong, masks), 50.0, rtol=1e-6)


def test_pixel_cross_entropy_equals_the_explicit_log_softmax():
    rng = np.random.default_rng(2)
    logits = (3 * rng.standard_normal((4, 6, 5, 11))).astype(np.float32)
    masks = rng.integers(0, 11, (4, 6, 5))
    z = logits.astype(np.float64)
    log_softmax = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_softmax, masks[..., None], axis=-1)[..., 0]
    explicit = -picked.reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(masks, jnp.int32)), explicit,
                               rtol=1e-5)


def test_pixel_cross_entropy_gradient_is_softmax_minus_one_hot_over_the_pixel_count():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.standard_normal((2, 3, 4, 5)), jnp.float32)
    masks = random_masks(rng, (2, 3, 4), 5)
    grad = jax.grad(lambda l: jnp.sum(pixel_cross_entropy(l, masks)))(logits)
    np.testing.assert_allclose(grad, (jax.nn.softmax(logits) - jax.nn.one_hot(masks, 5)) / 12, rtol=1e-5, atol=1e-7)


def test_pixel_cross_entropy_refuses_masks_of_another_shape():
    with pytest.raises(ValueError) as raised:
        pixel_cross_entropy(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 1, 4), jnp.int32))  # would broadcast
    assert str(raised.value) == ("pixel_cross_entropy: masks must have the shape of logits without its class axis, "
                                 "(2, 4, 4); got (2, 1, 4)")


def test_objective_reports_cross_entropy_and_pixel_accuracy_per_image():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.standard_normal((3, 4, 4, 11)), jnp.float32)
    masks = np.array(jnp.argmax(logits, axis=-1))
    masks[0, :2] = (masks[0, :2] + 1) % 11  # 8 of 16 pixels wrong
    masks[1, 0, 0] = (masks[1, 0, 0] + 1) % 11  # 1 wrong
    masks = jnp.asarray(masks, jnp.int32)
    images = jnp.zeros((3, 4, 4, 1))
    model = lambda x: logits
    objective = SegmentationObjective()
    loss, metrics = objective(model, (images, masks), key=jax.random.key(0), beta=jnp.float32(1.0))
    np.testing.assert_array_equal(loss, pixel_cross_entropy(logits, masks))
    assert set(metrics) == {"cross_entropy", "pixel_accuracy"}
    np.testing.assert_array_equal(metrics["cross_entropy"], loss)
    np.testing.assert_allclose(metrics["pixel_accuracy"], [0.5, 15 / 16, 1.0])
    # The key and beta are not used.
    again, _ = objective(model, (images, masks), key=jax.random.key(9), beta=jnp.float32(0.0))
    np.testing.assert_array_equal(again, loss)


# --- training -------------------------------------------------------------------------------------


def test_training_on_scenes_lowers_the_pixel_cross_entropy():
    scenes = datasets.segmentation_scenes(128, seed=0)
    # The initialiser's distributions (LeCun normal kernels, zero biases), drawn without compiling it.
    graphdef, abstract = abstract_unet()
    model = nnx.merge(graphdef, lecun_parameters(abstract, seed=0, bias_std=0.0))
    result = train.fit(model, scenes.arrays, config=train.TrainConfig(epochs=2, batch_size=32),
                       objective=SegmentationObjective(), progress=False)
    first, second = result.history
    for entry in result.history:
        assert set(entry) == {"epoch", "beta", "train_loss", "train_cross_entropy", "train_pixel_accuracy",
                              "images_per_s", "seconds"}
        assert entry["train_loss"] == entry["train_cross_entropy"]
        assert 0.0 <= entry["train_pixel_accuracy"] <= 1.0
    assert first["train_cross_entropy"] < 1.5 * math.log(11), "an untrained U-Net starts near log 11 nats"
    assert second["train_cross_entropy"] < first["train_cross_entropy"]
    assert second["train_pixel_accuracy"] > first["train_pixel_accuracy"]
    assert result.model is model
