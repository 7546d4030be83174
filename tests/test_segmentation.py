"""The segmentation networks (U-Net, autoencoders, FCN, the segmentation VAE) and their objectives.

Shapes and pinned sizes, the U-Net's forward pass spelled in flax, what each architecture can
and cannot represent, the losses' known answers, errors, a few steps of training and a
checkpoint round trip per model.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vaekit import checkpoint, models, nn, train
from vaekit.segmentation import (FCN, FCNConfig, MultiScaleSegmentationObjective, SegmentationAutoencoder,
                                 SegmentationAutoencoderConfig, SegmentationObjective, UNet, UNetConfig,
                                 bilinear_kernel, bilinear_upsample, downsample_masks, pixel_cross_entropy)
from vaekit.segmentation_vae import SegmentationVAE, SegmentationVAEConfig, SegmentationVAEObjective

conv = lambda cin, cout, k: k * k * cin * cout + cout  # noqa: E731  (a convolution's kernel and bias)
UP = {"transposed": lambda cin, cout: conv(cin, cout, 4), "repeat": lambda cin, cout: conv(cin, cout, 3),
      "pixel_shuffle": lambda cin, cout: conv(cin, 4 * cout, 3)}


def encoder_parameters(in_channels, channels) -> int:
    return (conv(in_channels, channels[0], 3) + conv(channels[0], channels[0], 3)
            + sum(conv(a, b, 4) + conv(b, b, 3) for a, b in zip(channels[:-1], channels[1:])))


def abstract(make, config):
    """A model's graph and parameter shapes, without running its initialisers."""
    return nnx.split(nnx.eval_shape(lambda: make(config, rngs=nnx.Rngs(0))))


def count(make, config) -> int:
    return models.count_parameters(nnx.merge(*abstract(make, config)))


def colour_images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float32)


# --- the U-Net ------------------------------------------------------------------------------------

# 154,283 = encoder (stem 448 + 2,320; down 8,224 + 32,832; mix 9,248 + 36,928) + up 32,800 + 8,208
# + up_mix 18,464 + 4,624 + head 187. The upsamplings differ only in the two ``up`` layers.
UNET_PARAMETERS = {"transposed": 154_283, "repeat": 136_363, "pixel_shuffle": 205_627}


def unet_parameters(in_channels, num_classes, channels, upsampling) -> int:
    """The count the U-Net's docstring implies, layer by layer."""
    fine_to_coarse = list(zip(channels[:-1], channels[1:]))
    return (encoder_parameters(in_channels, channels)
            + sum(UP[upsampling](b, a) + conv(2 * a, a, 3) for a, b in fine_to_coarse)
            + conv(channels[0], num_classes, 1))


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_unet_parameter_count_is_pinned(upsampling):
    assert (count(UNet, UNetConfig(upsampling=upsampling)) == UNET_PARAMETERS[upsampling]
            == unet_parameters(3, 11, (16, 32, 64), upsampling))


def test_the_default_unet_is_the_transposed_one_on_colour_images_with_eleven_classes():
    graphdef, params = abstract(UNet, UNetConfig())
    assert count(UNet, UNetConfig()) == UNET_PARAMETERS["transposed"]
    assert params["encoder"]["stem"][0]["kernel"].shape == (3, 3, 3, 16)
    assert params["head"]["kernel"].shape == (1, 1, 16, 11)
    assert all(type(up) is nn.ConvTranspose for up in nnx.merge(graphdef, params).up)


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_other_unet_sizes_follow_the_described_architecture(upsampling):
    config = UNetConfig(in_channels=1, num_classes=4, channels=(8, 12, 16, 24), upsampling=upsampling)
    graphdef, params = abstract(UNet, config)
    assert count(UNet, config) == unet_parameters(1, 4, (8, 12, 16, 24), upsampling)
    x = jax.ShapeDtypeStruct((2, 24, 40, 1), jnp.float32)  # multiples of 2**3, not square
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
    c0, encoder = channels[0], params["encoder"]
    h = relu(flax_conv(encoder["stem"][0], x.shape[-1], c0, 3)(x))
    h = relu(flax_conv(encoder["stem"][1], c0, c0, 3)(h))
    skips = [h]
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        h = relu(flax_conv(encoder["down"][i], a, b, 4, 2)(h))
        h = relu(flax_conv(encoder["down_mix"][i], b, b, 3)(h))
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


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_unet_output_equals_the_forward_pass_written_with_flax_modules(upsampling):
    graphdef, shapes = abstract(UNet, UNetConfig(upsampling=upsampling))
    params = lecun_parameters(shapes, seed=1)
    x = colour_images((2, 32, 32, 3), seed=5)

    @jax.jit
    def both(params, x):
        return nnx.merge(graphdef, params)(x), flax_unet(params, x, channels=(16, 32, 64), upsampling=upsampling)

    with jax.default_matmul_precision("highest"):
        ours, theirs = both(params, x)
    assert ours.shape == (2, 32, 32, 11) and ours.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(theirs)))
    assert scale > 0.1
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


def test_unet_features_are_the_map_the_head_reads():
    unet = UNet(UNetConfig(num_classes=2, channels=(8, 16)), rngs=nnx.Rngs(0))
    x = colour_images((2, 16, 16, 3))
    features = unet.features(x)
    assert features.shape == (2, 16, 16, 8)
    assert bool(jnp.all(features >= 0)), "the features come out of a ReLU"
    np.testing.assert_array_equal(unet(x), unet.head(features))


# --- the autoencoders: (a) plain, (b) deeply supervised, (c) repeat upsampling ---------------------

# 142,610 = encoder 90,000 + up 32,800 + 8,208 + up_mix 9,248 + 2,320 + head 34; deep supervision adds
# the 1×1 heads of the 64- and 32-channel maps, 130 + 66.
AUTOENCODER_PARAMETERS = {("transposed", False): 142_610, ("transposed", True): 142_806,
                          ("repeat", False): 124_690, ("repeat", True): 124_886,
                          ("pixel_shuffle", False): 193_954, ("pixel_shuffle", True): 194_150}


def autoencoder_parameters(in_channels, num_classes, channels, upsampling, deep_supervision) -> int:
    fine_to_coarse = list(zip(channels[:-1], channels[1:]))
    heads = sum(conv(c, num_classes, 1) for c in channels[1:]) if deep_supervision else 0
    return (encoder_parameters(in_channels, channels)
            + sum(UP[upsampling](b, a) + conv(a, a, 3) for a, b in fine_to_coarse)
            + conv(channels[0], num_classes, 1) + heads)


@pytest.mark.parametrize(("upsampling", "deep_supervision"), list(AUTOENCODER_PARAMETERS))
def test_autoencoder_parameter_count_is_pinned(upsampling, deep_supervision):
    config = SegmentationAutoencoderConfig(upsampling=upsampling, deep_supervision=deep_supervision)
    assert (count(SegmentationAutoencoder, config) == AUTOENCODER_PARAMETERS[upsampling, deep_supervision]
            == autoencoder_parameters(3, 2, (16, 32, 64), upsampling, deep_supervision))
    other = SegmentationAutoencoderConfig(in_channels=1, num_classes=5, channels=(4, 8, 8, 12), upsampling=upsampling,
                                          deep_supervision=deep_supervision)
    assert count(SegmentationAutoencoder, other) == autoencoder_parameters(1, 5, (4, 8, 8, 12), upsampling,
                                                                           deep_supervision)


def test_the_autoencoder_is_the_unet_less_its_skips():
    """Same layers, but each mixing convolution sees the upsampled map alone: no channels from the encoder."""
    unet = abstract(UNet, UNetConfig(num_classes=2))[1]
    autoencoder = abstract(SegmentationAutoencoder, SegmentationAutoencoderConfig())[1]
    assert jax.tree.map(jnp.shape, unet["encoder"]) == jax.tree.map(jnp.shape, autoencoder["encoder"])
    assert [unet["up_mix"][i]["kernel"].shape for i in (0, 1)] == [(3, 3, 64, 32), (3, 3, 32, 16)]
    assert [autoencoder["decoder"]["up_mix"][i]["kernel"].shape for i in (0, 1)] == [(3, 3, 32, 32), (3, 3, 16, 16)]


def test_without_skips_the_output_depends_on_the_image_only_through_the_bottleneck():
    model = SegmentationAutoencoder(SegmentationAutoencoderConfig(channels=(4, 8)), rngs=nnx.Rngs(0))
    x = colour_images((1, 8, 8, 3))
    # Zero the downsampling: the bottleneck becomes a constant map, and so must the output.
    model.encoder.down[0].kernel[...] = jnp.zeros_like(model.encoder.down[0].kernel[...])
    out = model(x)
    np.testing.assert_array_equal(out, model(colour_images((1, 8, 8, 3), seed=1)))
    unet = UNet(UNetConfig(num_classes=2, channels=(4, 8)), rngs=nnx.Rngs(0))
    unet.encoder.down[0].kernel[...] = jnp.zeros_like(unet.encoder.down[0].kernel[...])
    assert not np.array_equal(unet(x), unet(colour_images((1, 8, 8, 3), seed=1))), "the skip still carries x"


@pytest.mark.parametrize("upsampling", nn.UPSAMPLINGS)
def test_deep_supervision_gives_logits_at_every_decoder_scale_coarsest_first(upsampling):
    config = SegmentationAutoencoderConfig(num_classes=3, channels=(4, 8, 8, 12), upsampling=upsampling,
                                           deep_supervision=True)
    model = SegmentationAutoencoder(config, rngs=nnx.Rngs(0))
    x = colour_images((2, 16, 24, 3))
    scales = model.scale_logits(x)
    assert [s.shape for s in scales] == [(2, 2, 3, 3), (2, 4, 6, 3), (2, 8, 12, 3), (2, 16, 24, 3)]
    np.testing.assert_array_equal(scales[-1], model(x))


def test_the_third_case_upsamples_by_repeating_pixels():
    model = nnx.merge(*abstract(SegmentationAutoencoder, SegmentationAutoencoderConfig(upsampling="repeat")))
    assert [type(up) for up in model.decoder.up] == [nn.RepeatUpsample, nn.RepeatUpsample]
    plain = nnx.merge(*abstract(SegmentationAutoencoder, SegmentationAutoencoderConfig()))
    assert [type(up) for up in plain.decoder.up] == [nn.ConvTranspose, nn.ConvTranspose]


def test_scale_logits_without_deep_supervision_is_an_error():
    model = nnx.merge(*abstract(SegmentationAutoencoder, SegmentationAutoencoderConfig()))
    with pytest.raises(ValueError, match="no heads at the coarser scales; build it with deep_supervision=True"):
        model.scale_logits(jnp.zeros((1, 8, 8, 3)))


# --- FCN ------------------------------------------------------------------------------------------

# 192,986 = encoder 192,528 (16-32-64-64) + scores 130 + 130 + 66 (from the 64-, 64-, 32-channel
# levels) + two 2→2 transposed convolutions 66 + 66. Without skips: encoder + one score layer, 130.
FCN_PARAMETERS = {True: 192_986, False: 192_658}


def fcn_parameters(in_channels, num_classes, channels, skips) -> int:
    scored = channels[1:] if skips else channels[-1:]
    return (encoder_parameters(in_channels, channels) + sum(conv(c, num_classes, 1) for c in scored)
            + (len(scored) - 1) * conv(num_classes, num_classes, 4))


@pytest.mark.parametrize("skips", [True, False])
def test_fcn_parameter_count_is_pinned(skips):
    assert count(FCN, FCNConfig(skips=skips)) == FCN_PARAMETERS[skips] == fcn_parameters(3, 2, (16, 32, 64, 64), skips)
    assert count(FCN, FCNConfig(num_classes=11, channels=(8, 8, 16), skips=skips)) == fcn_parameters(
        3, 11, (8, 8, 16), skips)


def test_fcn_shapes():
    for config in (FCNConfig(), FCNConfig(skips=False), FCNConfig(in_channels=1, num_classes=11, channels=(4, 8))):
        graphdef, params = abstract(FCN, config)
        x = jax.ShapeDtypeStruct((2, 16, 24, config.in_channels), jnp.float32)
        out = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params, x)
        assert out.shape == (2, 16, 24, config.num_classes)


def test_the_bilinear_kernel_interpolates_between_pixel_centres():
    x = colour_images((1, 5, 6, 2))
    up = nn.ConvTranspose(2, 2, 4, 2, rngs=nnx.Rngs(0))
    up.kernel[...] = jnp.asarray(bilinear_kernel(2))
    up.bias[...] = jnp.zeros(2)
    with jax.default_matmul_precision("highest"):
        ours = up(x)
    # jax.image.resize clamps at the border where the transposed convolution sees zeros: compare inside.
    np.testing.assert_allclose(ours[:, 1:-1, 1:-1], bilinear_upsample(x, 2)[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-6)


def test_fcn_starts_as_its_coarse_net_with_bilinear_upsamplings():
    fcn = FCN(rngs=nnx.Rngs(0))
    assert [float(jnp.abs(score.kernel[...]).max()) > 0 for score in fcn.scores] == [True, False, False]
    for up in fcn.up:
        np.testing.assert_array_equal(up.kernel[...], bilinear_kernel(2))


def rank(matrix, tolerance=1e-4) -> int:
    singular = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    return int(np.sum(singular > tolerance * singular[0]))


def test_without_skips_fcn_masks_are_coarse_and_with_them_they_are_not():
    """Bilinear ×8 of a 4×4 map is U S Uᵀ with U 32×4: every class map has rank at most 4."""
    x = colour_images((1, 32, 32, 3))
    coarse = FCN(FCNConfig(skips=False), rngs=nnx.Rngs(0))
    assert rank(coarse(x)[0, :, :, 1] - coarse(x)[0, :, :, 0]) <= 4
    graphdef, shapes = abstract(FCN, FCNConfig())
    fused = nnx.merge(graphdef, lecun_parameters(shapes, seed=0))  # skip scores no longer zero
    assert rank(fused(x)[0, :, :, 1] - fused(x)[0, :, :, 0]) > 8


# --- the segmentation VAE -------------------------------------------------------------------------

# 144,226 = encoder 90,000 + to_latent 1,040 + from_latent 576 + the autoencoder's decoder 52,610.
VAE_PARAMETERS = 144_226


def vae_parameters(in_channels, num_classes, channels, latent_channels, upsampling) -> int:
    return (autoencoder_parameters(in_channels, num_classes, channels, upsampling, False)
            + conv(channels[-1], 2 * latent_channels, 1) + conv(latent_channels, channels[-1], 1))


def test_vae_parameter_count_is_pinned():
    assert count(SegmentationVAE, SegmentationVAEConfig()) == VAE_PARAMETERS == vae_parameters(3, 2, (16, 32, 64), 8,
                                                                                                "transposed")
    other = SegmentationVAEConfig(in_channels=1, num_classes=11, channels=(4, 8, 12), latent_channels=3,
                                  upsampling="repeat")
    assert count(SegmentationVAE, other) == vae_parameters(1, 11, (4, 8, 12), 3, "repeat")


def test_vae_latent_map_and_output_shapes():
    model = SegmentationVAE(SegmentationVAEConfig(num_classes=3, channels=(4, 8, 8, 12), latent_channels=5),
                            rngs=nnx.Rngs(0))
    x = colour_images((2, 16, 24, 3))
    mean, log_var = model.encode(x)
    assert mean.shape == log_var.shape == (2, 2, 3, 5)
    assert model.decode(mean).shape == model(x).shape == model(x, key=jax.random.key(0)).shape == (2, 16, 24, 3)


def test_vae_decodes_the_mean_without_a_key_and_a_draw_with_one():
    model = SegmentationVAE(SegmentationVAEConfig(channels=(4, 8)), rngs=nnx.Rngs(0))
    x = colour_images((2, 8, 8, 3))
    mean, log_var = model.encode(x)
    np.testing.assert_array_equal(model(x), model.decode(mean))
    np.testing.assert_array_equal(model(x), model(x))
    first, again, second = model(x, key=jax.random.key(1)), model(x, key=jax.random.key(1)), model(
        x, key=jax.random.key(2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, second) and not np.allclose(first, model(x))
    # The draw is the reparameterised mean + sigma * epsilon.
    eps = jax.random.normal(jax.random.key(1), mean.shape)
    np.testing.assert_allclose(first, model.decode(mean + jnp.exp(0.5 * log_var) * eps), rtol=1e-5, atol=1e-6)


class FixedVAE:
    """A stand-in VAE: a given posterior, and logits that ignore z."""

    def __init__(self, mean, log_var, logits):
        self.mean, self.log_var, self.logits = mean, log_var, logits

    def encode(self, x):
        return self.mean, self.log_var

    def decode(self, z):
        assert z.shape == self.mean.shape
        return self.logits


def test_vae_objective_sums_the_cross_entropy_over_pixels_and_the_kl_over_the_map():
    masks = jnp.asarray(np.random.default_rng(0).integers(0, 4, (2, 4, 6)), jnp.int32)
    mean = jnp.stack([jnp.ones((2, 3, 3)), jnp.zeros((2, 3, 3))])  # KL 1/2 per variable in the first image, 0
    model = FixedVAE(mean, jnp.zeros_like(mean), jnp.zeros((2, 4, 6, 4)))  # uniform over 4 classes
    for beta in (1.0, 0.25):
        loss, metrics = SegmentationVAEObjective()(model, (jnp.zeros((2, 4, 6, 3)), masks), key=jax.random.key(0),
                                                   beta=beta)
        # 24 pixels at log 4 nats each, summed; the KL summed over 2×3×3 = 18 variables.
        np.testing.assert_allclose(loss, [24 * math.log(4) + beta * 9.0, 24 * math.log(4)], rtol=1e-6)
        np.testing.assert_allclose(metrics["cross_entropy"], [math.log(4)] * 2, rtol=1e-6)
        np.testing.assert_allclose(metrics["kl"], [9.0, 0.0], atol=1e-6)
        assert set(metrics) == {"cross_entropy", "kl", "pixel_accuracy"}


def test_vae_objective_samples_z_with_its_key():
    model = SegmentationVAE(SegmentationVAEConfig(channels=(4, 8)), rngs=nnx.Rngs(0))
    batch = (colour_images((2, 8, 8, 3)), jnp.zeros((2, 8, 8), jnp.int32))
    objective = SegmentationVAEObjective()
    a, _ = objective(model, batch, key=jax.random.key(0), beta=1.0)
    b, _ = objective(model, batch, key=jax.random.key(0), beta=1.0)
    c, _ = objective(model, batch, key=jax.random.key(1), beta=1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# --- the pixel cross-entropy and the masks --------------------------------------------------------


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


def test_masks_are_downsampled_by_majority_with_ties_to_the_smaller_class():
    masks = jnp.array([[[3, 3, 1, 2, 0, 0],
                        [3, 1, 1, 2, 0, 5],
                        [0, 0, 2, 2, 4, 4],
                        [0, 1, 1, 2, 5, 5]]], jnp.int32)
    # Blocks: {3,3,3,1} -> 3; {1,2,1,2} tie -> 1; {0,0,0,5} -> 0; {0,0,0,1} -> 0; {2,2,1,2} -> 2; {4,4,5,5} tie -> 4.
    np.testing.assert_array_equal(downsample_masks(masks, 2, 6), [[[3, 1, 0], [0, 2, 4]]])
    np.testing.assert_array_equal(downsample_masks(masks, 1, 6), masks)
    binary = jnp.asarray(np.kron(np.array([[[1, 0], [0, 1]]]), np.ones((4, 4))), jnp.int32)  # 4×4 blocks
    np.testing.assert_array_equal(downsample_masks(binary, 4, 2), [[[1, 0], [0, 1]]])
    with pytest.raises(ValueError, match=r"multiples of factor = 4; got shape \(1, 4, 6\)"):
        downsample_masks(masks, 4, 6)


def test_objective_reports_cross_entropy_and_pixel_accuracy_per_image():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.standard_normal((3, 4, 4, 11)), jnp.float32)
    masks = np.array(jnp.argmax(logits, axis=-1))
    masks[0, :2] = (masks[0, :2] + 1) % 11  # 8 of 16 pixels wrong
    masks[1, 0, 0] = (masks[1, 0, 0] + 1) % 11  # 1 wrong
    masks = jnp.asarray(masks, jnp.int32)
    images = jnp.zeros((3, 4, 4, 3))
    loss, metrics = SegmentationObjective()(lambda x: logits, (images, masks))
    np.testing.assert_array_equal(loss, pixel_cross_entropy(logits, masks))
    assert set(metrics) == {"cross_entropy", "pixel_accuracy"}
    np.testing.assert_array_equal(metrics["cross_entropy"], loss)
    np.testing.assert_allclose(metrics["pixel_accuracy"], [0.5, 15 / 16, 1.0])


def test_binary_masks_may_be_booleans_but_not_floats():
    logits = jnp.asarray(np.random.default_rng(5).standard_normal((2, 4, 4, 2)), jnp.float32)
    foreground = jnp.asarray(np.random.default_rng(6).random((2, 4, 4)) > 0.5)
    images = jnp.zeros((2, 4, 4, 3))
    as_bool, _ = SegmentationObjective()(lambda x: logits, (images, foreground))
    as_int, _ = SegmentationObjective()(lambda x: logits, (images, foreground.astype(jnp.int32)))
    np.testing.assert_array_equal(as_bool, as_int)
    with pytest.raises(ValueError, match="SegmentationObjective: masks must be integer class maps .* dtype float32"):
        SegmentationObjective()(lambda x: logits, (images, foreground.astype(jnp.float32)))


class FixedScales:
    """A stand-in deeply supervised model: given logits per scale."""

    def __init__(self, *scales):
        self.scales = scales

    def scale_logits(self, x):
        return self.scales


def test_multiscale_objective_sums_each_scales_cross_entropy_against_the_reduced_masks():
    masks = jnp.asarray(np.kron(np.random.default_rng(7).integers(0, 3, (2, 2, 2)), np.ones((4, 4))), jnp.int32)
    half = downsample_masks(masks, 2, 3)
    model = FixedScales(jnp.zeros((2, 2, 2, 3)),                # stride 4: uniform, log 3 nats
                        50.0 * jax.nn.one_hot((half + 1) % 3, 3),  # stride 2: confidently wrong, 50 nats
                        50.0 * jax.nn.one_hot(masks, 3))           # stride 1: right, 0 nats
    loss, metrics = MultiScaleSegmentationObjective()(model, (jnp.zeros((2, 8, 8, 3)), masks))
    np.testing.assert_allclose(loss, math.log(3) + 50.0, rtol=1e-6)
    assert set(metrics) == {"cross_entropy", "cross_entropy_stride2", "cross_entropy_stride4", "pixel_accuracy"}
    np.testing.assert_allclose(metrics["cross_entropy_stride4"], math.log(3), rtol=1e-6)
    np.testing.assert_allclose(metrics["cross_entropy_stride2"], 50.0, rtol=1e-6)
    np.testing.assert_allclose(metrics["cross_entropy"], 0.0, atol=1e-6)
    np.testing.assert_array_equal(metrics["pixel_accuracy"], [1.0, 1.0])


def test_multiscale_objective_needs_a_model_with_scale_logits():
    with pytest.raises(ValueError, match="must give logits per scale .* got a UNet"):
        MultiScaleSegmentationObjective()(UNet(UNetConfig(channels=(4, 8)), rngs=nnx.Rngs(0)),
                                          (jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8), jnp.int32)))


# --- errors ---------------------------------------------------------------------------------------

MAKERS = {"UNet": (UNet, UNetConfig),
          "SegmentationAutoencoder": (SegmentationAutoencoder, SegmentationAutoencoderConfig),
          "FCN": (FCN, FCNConfig), "SegmentationVAE": (SegmentationVAE, SegmentationVAEConfig)}

INPUT_ERRORS = {  # model, config fields, input shape, message
    "size not a multiple of 4": ("UNet", {}, (1, 30, 30, 3), "UNet: x must be (batch, height, width, 3) with "
                                 "height and width multiples of 4; got shape (1, 30, 30, 3)"),
    "width not a multiple of 4": ("SegmentationAutoencoder", {}, (1, 64, 62, 3), "SegmentationAutoencoder: x must be "
                                  "(batch, height, width, 3) with height and width multiples of 4; got shape "
                                  "(1, 64, 62, 3)"),
    "FCN: size not a multiple of 8": ("FCN", {}, (1, 36, 36, 3), "FCN: x must be (batch, height, width, 3) with "
                                      "height and width multiples of 8; got shape (1, 36, 36, 3)"),
    "four levels": ("UNet", dict(channels=(8, 8, 8, 8)), (1, 36, 36, 3), "multiples of 8; got shape (1, 36, 36, 3)"),
    "no batch axis": ("SegmentationVAE", {}, (64, 64, 3), "SegmentationVAE: x must be (batch, height, width, 3) "
                      "with height and width multiples of 4; got shape (64, 64, 3)"),
    "grey image to a colour model": ("UNet", {}, (1, 64, 64, 1), "UNet: x must be (batch, height, width, 3)"),
    "colour image to a grey model": ("FCN", dict(in_channels=1), (1, 64, 64, 3),
                                     "FCN: x must be (batch, height, width, 1)"),
}


@pytest.mark.parametrize("case", INPUT_ERRORS)
def test_bad_images_are_a_clear_error(case):
    name, kwargs, shape, message = INPUT_ERRORS[case]
    make, make_config = MAKERS[name]
    model = nnx.merge(*abstract(make, make_config(**kwargs)))
    with pytest.raises(ValueError) as raised:
        model(jnp.zeros(shape))  # the checks come before any arithmetic
    assert message in str(raised.value)


def test_decoding_a_latent_map_of_the_wrong_depth_is_a_clear_error():
    model = nnx.merge(*abstract(SegmentationVAE, SegmentationVAEConfig()))
    with pytest.raises(ValueError, match=r"SegmentationVAE.decode: z must be \(batch, height, width, 8\); "
                                         r"got shape \(1, 4, 4, 6\)"):
        model.decode(jnp.zeros((1, 4, 4, 6)))


CONFIG_ERRORS = {  # config class, fields, message
    "unknown upsampling": (UNetConfig, dict(upsampling="bilinear"),
                           "upsampling must be one of 'transposed', 'repeat', 'pixel_shuffle'; got 'bilinear'"),
    "autoencoder upsampling": (SegmentationAutoencoderConfig, dict(upsampling="nearest"),
                               "upsampling must be one of 'transposed', 'repeat', 'pixel_shuffle'; got 'nearest'"),
    "one level": (UNetConfig, dict(channels=(16,)), "channels must name at least two levels; got (16,)"),
    "FCN without levels": (FCNConfig, dict(channels=()), "channels must name at least two levels; got ()"),
    "a level of 0 channels": (SegmentationVAEConfig, dict(channels=(16, 0)),
                              "channels[1] must be a positive integer; got 0"),
    "a level of 2.0 channels": (UNetConfig, dict(channels=(16, 2.0)),
                                "channels[1] must be a positive integer; got 2.0"),
    "0 classes": (FCNConfig, dict(num_classes=0), "num_classes must be a positive integer; got 0"),
    "0 input channels": (SegmentationAutoencoderConfig, dict(in_channels=0),
                         "in_channels must be a positive integer; got 0"),
    "deep supervision as a string": (SegmentationAutoencoderConfig, dict(deep_supervision="yes"),
                                     "deep_supervision must be True or False; got 'yes'"),
    "skips as 1": (FCNConfig, dict(skips=1), "skips must be True or False; got 1"),
    "no latent channels": (SegmentationVAEConfig, dict(latent_channels=0),
                           "latent_channels must be a positive integer; got 0"),
}


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_bad_configs_are_a_clear_error(case):
    config_class, kwargs, message = CONFIG_ERRORS[case]
    with pytest.raises(models.ConfigError) as raised:
        config_class(**kwargs)
    assert str(raised.value) == message


@pytest.mark.parametrize("name", MAKERS)
def test_configs_round_trip_through_a_dict_and_models_refuse_another_config(name):
    make, make_config = MAKERS[name]
    config = make_config(in_channels=1, num_classes=4, channels=[8, 12])
    assert config.channels == (8, 12)
    assert make_config.from_dict(config.to_dict()) == config
    with pytest.raises(models.ConfigError, match=f"unknown {make_config.__name__} fields: depth"):
        make_config.from_dict({**config.to_dict(), "depth": 3})
    model = nnx.eval_shape(lambda: make(config, rngs=nnx.Rngs(0)))
    assert model.config is config
    other = FCNConfig() if make_config is not FCNConfig else UNetConfig()
    with pytest.raises(TypeError, match=f"config must be a {make_config.__name__}; got {type(other).__name__}"):
        make(other, rngs=nnx.Rngs(0))


# --- training and checkpoints ---------------------------------------------------------------------


def squares(num: int, size: int = 16, seed: int = 0):
    """Colour noise with a reddish square in each image, and the square as the foreground mask."""
    rng = np.random.default_rng(seed)
    images = 0.6 * rng.random((num, size, size, 3)).astype(np.float32)
    masks = np.zeros((num, size, size), np.int32)
    for i in range(num):
        side = rng.integers(4, size // 2 + 1)
        top, left = rng.integers(0, size - side + 1, 2)
        masks[i, top:top + side, left:left + side] = 1
    images[..., 0] += 0.4 * masks
    return jnp.asarray(images), jnp.asarray(masks)


TINY = {  # the models at the test's size: a few thousand parameters
    "unet": (lambda: UNet(UNetConfig(num_classes=2, channels=(8, 16)), rngs=nnx.Rngs(0)), SegmentationObjective()),
    "autoencoder": (lambda: SegmentationAutoencoder(SegmentationAutoencoderConfig(channels=(8, 16)), rngs=nnx.Rngs(0)),
                    SegmentationObjective()),
    "deeply supervised": (lambda: SegmentationAutoencoder(
        SegmentationAutoencoderConfig(channels=(8, 16), deep_supervision=True), rngs=nnx.Rngs(0)),
        MultiScaleSegmentationObjective()),
    "repeat": (lambda: SegmentationAutoencoder(SegmentationAutoencoderConfig(channels=(8, 16), upsampling="repeat"),
                                               rngs=nnx.Rngs(0)), SegmentationObjective()),
    "fcn": (lambda: FCN(FCNConfig(channels=(8, 8, 16)), rngs=nnx.Rngs(0)), SegmentationObjective()),
    "fcn without skips": (lambda: FCN(FCNConfig(channels=(8, 8, 16), skips=False), rngs=nnx.Rngs(0)),
                          SegmentationObjective()),
    "vae": (lambda: SegmentationVAE(SegmentationVAEConfig(channels=(8, 16), latent_channels=4), rngs=nnx.Rngs(0)),
            SegmentationVAEObjective()),
}


@pytest.mark.parametrize("name", TINY)
def test_a_few_training_steps_lower_the_loss(name):
    make, objective = TINY[name]
    model = make()
    batch = squares(16)
    optimizer = optax.adam(1e-2)
    state = optimizer.init(nnx.state(model, nnx.Param))
    losses = []
    for step in range(10):
        state, loss, metrics = train.train_step(model, state, batch, key=jax.random.key(step), beta=1.0,
                                                objective=objective, optimizer=optimizer)
        assert loss.shape == (16,) and all(value.shape == (16,) for value in metrics.values())
        losses.append(float(jnp.mean(loss)))
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.8 * losses[0], losses  # all measured at 0.51-0.62 of the first


def test_fit_trains_the_vae_with_beta_in_its_history():
    make, objective = TINY["vae"]
    result = train.fit(make(), squares(16), config=train.TrainConfig(epochs=2, batch_size=8, beta=0.5),
                       objective=objective, progress=False)
    assert set(result.history[0]) == {"epoch", "beta", "train_loss", "train_cross_entropy", "train_kl",
                                      "train_pixel_accuracy", "images_per_s", "seconds"}
    assert result.history[0]["beta"] == 0.5
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]


def test_fit_reports_every_scale_of_the_deeply_supervised_autoencoder():
    make, objective = TINY["deeply supervised"]
    result = train.fit(make(), squares(16), config=train.TrainConfig(epochs=1, batch_size=8), objective=objective,
                       progress=False)
    entry = result.history[0]
    assert set(entry) == {"epoch", "train_loss", "train_cross_entropy", "train_cross_entropy_stride2",
                          "train_pixel_accuracy", "images_per_s", "seconds"}
    assert entry["train_loss"] == pytest.approx(entry["train_cross_entropy"] + entry["train_cross_entropy_stride2"],
                                                rel=1e-5)


@pytest.mark.parametrize("name", ["unet", "deeply supervised", "repeat", "fcn", "fcn without skips", "vae"])
def test_checkpoint_round_trip_rebuilds_the_model_from_its_config(tmp_path, name):
    make, _ = TINY[name]
    model = make()
    x = squares(2)[0]
    # Not the initial values: the restore must bring the saved ones, not rebuild the initialisation.
    nnx.update(model, jax.tree.map(lambda p: p + 0.01, nnx.state(model, nnx.Param)))
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model))
    assert type(restored.model) is type(model) and restored.model_config == model.config
    np.testing.assert_array_equal(restored.model(x), model(x))
    if name == "deeply supervised":
        for ours, theirs in zip(restored.model.scale_logits(x), model.scale_logits(x)):
            np.testing.assert_array_equal(ours, theirs)
    if name == "vae":
        key = jax.random.key(3)
        np.testing.assert_array_equal(restored.model(x, key=key), model(x, key=key))
