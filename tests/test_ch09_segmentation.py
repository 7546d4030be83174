"""Chapter 09's claims on small data: the scores, the best constant mask, the article's "FCN", the six networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vaekit as vk
from vaekit import nn, scenes, segmentation, segmentation_vae
from vaekit.metrics import segmentation as seg


@pytest.fixture(scope="module")
def small_scenes():
    return (scenes.segmentation_scenes(300, "train", seed=0, size=32).binary(),
            scenes.segmentation_scenes(100, "test", seed=1, size=32).binary())


def _random_masks(seed, shape=(20, 12, 12)):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=shape) < rng.uniform(0.1, 0.7, size=(shape[0], 1, 1))


def test_dice_is_a_function_of_iou():
    a, b = _random_masks(0), _random_masks(1)
    iou = seg.iou(a, b)
    np.testing.assert_allclose(seg.dice(a, b), 2 * iou / (1 + iou), rtol=1e-12)
    assert np.all(seg.dice(a, b) >= iou)


def test_all_background_has_the_background_share_as_accuracy_and_zero_iou(small_scenes):
    _, test = small_scenes
    empty = np.zeros_like(test.foreground)
    np.testing.assert_allclose(seg.pixel_accuracy(empty, test.foreground), 1 - test.foreground.mean(axis=(1, 2)))
    assert test.foreground.any(axis=(1, 2)).all()  # every scene has an item, so no empty-mask rule applies
    assert np.all(seg.iou(empty, test.foreground) == 0)


def test_the_best_constant_mask_scores_the_foreground_share(small_scenes):
    """Section 7: all foreground gives IoU |B| / HW, all background 0; nothing else is constant."""
    _, test = small_scenes
    truth = test.foreground
    share = truth.mean(axis=(1, 2))
    full, empty = np.ones_like(truth), np.zeros_like(truth)
    best = np.maximum(seg.iou(full, truth), seg.iou(empty, truth))
    np.testing.assert_allclose(best, share, rtol=1e-12)
    assert 0.1 < share.mean() < 0.6  # the scenes are neither nearly empty nor nearly full


def test_the_articles_transposed_convolution_on_pooled_features_does_not_build():
    pooled = jnp.zeros((2, 256))
    with pytest.raises(Exception):
        nn.ConvTranspose(256, 2, 3, strides=2, rngs=nnx.Rngs(0))(pooled)
    # Even reshaped to a 1x1 map, it gives a 2x2 map: not a mask of the image.
    assert nn.ConvTranspose(256, 2, 3, strides=2, rngs=nnx.Rngs(0))(pooled.reshape(2, 1, 1, 256)).shape == (2, 2, 2, 2)


def test_a_globally_pooled_network_draws_the_same_mask_wherever_the_item_is():
    """What global pooling costs: an item moved (circularly, on black) gives the same pooled vector and mask."""
    encoder = segmentation.Encoder(3, (8, 16), rngs=nnx.Rngs(0))
    x = np.zeros((1, 40, 40, 3), np.float32)
    x[0, 8:12, 8:12] = [0.9, 0.2, 0.4]
    moved = np.roll(x, (20, 16), axis=(1, 2))  # by multiples of the stride, and far from the borders both times
    pooled = [np.asarray(jnp.mean(encoder(jnp.asarray(v))[-1], axis=(1, 2))) for v in (x, moved)]
    assert not np.allclose(encoder(jnp.asarray(x))[-1], encoder(jnp.asarray(moved))[-1])  # the maps do move
    np.testing.assert_allclose(pooled[0], pooled[1], atol=1e-6)


NETWORKS = ("autoencoder", "multiscale", "repeat", "vae", "fcn", "unet")


def _build(name, channels=(8, 16, 32)):
    rngs = nnx.Rngs(params=0)
    auto = segmentation.SegmentationAutoencoderConfig
    return {
        "autoencoder": lambda: segmentation.SegmentationAutoencoder(auto(channels=channels), rngs=rngs),
        "multiscale": lambda: segmentation.SegmentationAutoencoder(auto(channels=channels, deep_supervision=True),
                                                                   rngs=rngs),
        "repeat": lambda: segmentation.SegmentationAutoencoder(auto(channels=channels, upsampling="repeat"),
                                                               rngs=rngs),
        "vae": lambda: segmentation_vae.SegmentationVAE(segmentation_vae.SegmentationVAEConfig(channels=channels),
                                                        rngs=rngs),
        "fcn": lambda: segmentation.FCN(segmentation.FCNConfig(channels=(*channels, channels[-1])), rngs=rngs),
        "unet": lambda: segmentation.UNet(segmentation.UNetConfig(num_classes=2, channels=channels), rngs=rngs),
    }[name]()


def _modules(model):
    return [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)]


@pytest.mark.parametrize("name", NETWORKS)
def test_no_network_has_a_dense_layer_and_each_gives_a_full_size_mask(name):
    model = _build(name)
    assert not any(isinstance(m, nnx.Linear) for m in _modules(model))
    assert model(jnp.zeros((2, 32, 32, 3))).shape == (2, 32, 32, 2)


def test_only_the_repeat_autoencoder_has_no_transposed_convolution():
    counts = {name: sum(isinstance(m, nnx.ConvTranspose) for m in _modules(_build(name)))
              for name in ("autoencoder", "repeat", "unet")}
    assert counts == {"autoencoder": 2, "repeat": 0, "unet": 2}


def test_the_unet_adds_skips_to_the_autoencoders_layers():
    assert vk.count_parameters(_build("unet")) > vk.count_parameters(_build("autoencoder"))


def test_deep_supervision_predicts_at_strides_4_2_and_1():
    logits = _build("multiscale").scale_logits(jnp.zeros((1, 32, 32, 3)))
    assert [l.shape for l in logits] == [(1, 8, 8, 2), (1, 16, 16, 2), (1, 32, 32, 2)]


def test_the_vae_decodes_the_mean_deterministically_and_draws_differently():
    vae = _build("vae")
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 32, 32, 3)), jnp.float32)
    np.testing.assert_array_equal(vae(x), vae(x))
    assert not np.allclose(vae(x, key=jax.random.key(0)), vae(x, key=jax.random.key(1)))


def test_kl_warm_up_ramps_beta_over_half_the_epochs(small_scenes):
    train, _ = small_scenes
    history = vk.fit(_build("vae", channels=(8, 16)), train.take(64).arrays, None,
                     vk.TrainConfig(epochs=4, batch_size=32, warmup_epochs=2.0),
                     objective=segmentation_vae.SegmentationVAEObjective(), progress=False).history
    betas = [h["beta"] for h in history]
    assert betas[0] < betas[1] == pytest.approx(1.0) and betas[-1] == pytest.approx(1.0)


def test_a_briefly_trained_unet_beats_the_best_constant_mask(small_scenes):
    """The chapter's answer to the article's "FCN": a network that keeps position beats any constant mask."""
    train, test = small_scenes
    model = _build("unet", channels=(8, 16))
    vk.fit(model, train.arrays, None, vk.TrainConfig(epochs=3, batch_size=32, learning_rate=2e-3),
           objective=segmentation.SegmentationObjective(), progress=False)
    pred = np.asarray(jnp.argmax(model(jnp.asarray(test.images)), -1)) == 1
    constant = test.foreground.mean(axis=(1, 2)).mean()
    assert seg.iou(pred, test.foreground).mean() > constant + 0.1


def test_the_black_dot_example_of_the_chapter():
    target = np.zeros((1, 8, 8), bool)
    target[0, 1:7, 1:7] = True
    pred = target.copy()
    pred[0, 3, 3] = pred[0, 4, 4] = pred[0, 4, 5] = False
    pred[0, 1, 6] = False
    assert seg.isolated_components(pred, target)[0] == 2
    assert seg.iou(pred, target)[0] == pytest.approx(32 / 36)
