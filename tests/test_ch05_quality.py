"""Chapter 05's claims as behaviour tests on small data, and the corruptions its dashboard applies.

- The mean image beats shuffled real images on PSNR and loses to them on FD (PSNR and SSIM are not
  measures of generation).
- FD between two samples of the same real images falls as the samples grow (its bias).
- A transposed-convolution decoder starts with a large share of its images in the period-2 pattern,
  a repeat-then-convolve decoder with almost none. (After two epochs on Fashion-MNIST both are
  down to the data's own share, and their order changes with the seed: the chapter says so.)
- Samples of a Gaussian VAE with a fixed variance are blurrier (lower Laplacian variance) than the data.
"""

import jax
import numpy as np
import pytest
import scipy.ndimage

import vaekit as vk
from vaekit import corruptions, features, metrics

# A small feature network (about 5 s): the claims hold for any reasonable features, the kit's default included.
TINY_FEATURES = dict(train_size=2048, train_config=vk.TrainConfig(epochs=1, batch_size=64),
                     model_config=vk.ClassifierConfig(channels=(8, 16), hidden_dim=32))


@pytest.fixture(scope="module")
def test_images():
    return vk.load("fashion-mnist", "test").images


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return features.feature_network("fashion-mnist", root=tmp_path_factory.mktemp("zoo"), **TINY_FEATURES)[0]


@pytest.fixture(scope="module")
def test_features(network, test_images):
    return features.embed(test_images[:4000], network=network)


# The article says PSNR and SSIM judge generation; the mean image and shuffled real images disagree.


def test_the_mean_image_wins_on_psnr_and_ssim_and_loses_on_fd(network, test_images):
    train = vk.load("fashion-mnist", "train").images[:5000]
    targets = test_images[:500]
    mean_image = np.broadcast_to(train.mean(axis=0), targets.shape).astype(np.float32)
    shuffled = test_images[500:1000]  # real images, none of them the target's
    assert np.mean(metrics.psnr(targets, mean_image)) > np.mean(metrics.psnr(targets, shuffled)) + 2.0
    assert np.mean(metrics.ssim(targets, mean_image)) > np.mean(metrics.ssim(targets, shuffled))
    fd_mean = metrics.frechet_distance(targets, mean_image, features=network)
    fd_shuffled = metrics.frechet_distance(targets, shuffled, features=network)
    assert fd_mean > 10 * fd_shuffled


def test_fd_between_two_samples_of_the_same_images_falls_with_the_sample_size(test_features):
    sizes = (50, 200, 800, 2000)
    distances = [metrics.frechet_distance(test_features[:n], test_features[2000:2000 + n]) for n in sizes]
    assert np.all(np.diff(distances) < 0), distances
    assert distances[-1] < distances[0] / 5, distances


# Upsampling: transposed convolutions leave a period-2 pattern.


def conv_vae(upsampling: str, seed: int) -> vk.VAE:
    config = vk.VAEConfig(architecture="conv", latent_dim=8, conv_channels=(8, 16), upsampling=upsampling)
    return vk.make_vae(config, seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_transposed_convolution_decoder_starts_with_a_checkerboard_and_repeat_does_not(seed):
    z = jax.random.normal(jax.random.key(seed), (64, 8))
    scores = {up: float(np.mean(metrics.checkerboard(conv_vae(up, seed).decode(z)))) for up in ("transposed", "repeat")}
    assert scores["transposed"] > 0.05 and scores["repeat"] < 0.01, scores
    assert scores["transposed"] > 30 * scores["repeat"], scores


# Likelihoods: a fixed-variance Gaussian decoder averages, and its samples lose the data's detail.


def test_gaussian_fixed_variance_samples_are_blurrier_than_the_data(test_images):
    config = vk.VAEConfig(latent_dim=8, hidden_dims=(256,), likelihood="gaussian", gaussian_variance="fixed",
                          gaussian_std=0.5**0.5)
    model = vk.make_vae(config, seed=0)
    data = np.asarray(metrics.sharpness(test_images[:500]))
    before = np.asarray(metrics.sharpness(model.sample(500, key=jax.random.key(0))))
    vk.fit(model, vk.load("fashion-mnist", "train").take(4000), None,
           vk.TrainConfig(epochs=3, batch_size=64, learning_rate=2e-3), progress=False)
    after = np.asarray(metrics.sharpness(model.sample(500, key=jax.random.key(0))))
    assert np.mean(before) > np.mean(after)  # an untrained decoder's noise is "sharp": training smooths it away
    assert np.mean(after) < 0.5 * np.mean(data), (np.mean(after), np.mean(data))


# Corruptions


def grey(seed: int, shape=(3, 28, 28, 1)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.3])
def test_gaussian_blur_is_scipys_gaussian_filter(sigma):
    x = grey(0, (2, 28, 20, 3))
    expected = scipy.ndimage.gaussian_filter(x.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect")
    np.testing.assert_allclose(corruptions.gaussian_blur(x, sigma), expected, atol=1e-6)


def test_gaussian_blur_of_zero_is_a_copy_and_more_blur_means_less_sharpness():
    x = grey(1)
    unchanged = corruptions.gaussian_blur(x, 0)
    np.testing.assert_array_equal(unchanged, x)
    assert unchanged is not x
    scores = [float(np.mean(metrics.sharpness(corruptions.gaussian_blur(x, s)))) for s in (0.0, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(scores) < 0), scores
    np.testing.assert_allclose(corruptions.gaussian_kernel(1.3).sum(), 1.0)
    assert len(corruptions.gaussian_kernel(1.3)) == 2 * int(4 * 1.3 + 0.5) + 1


def test_gaussian_noise_has_its_standard_deviation_and_one_key_one_pattern():
    x = np.full((4, 32, 32, 1), 0.5, np.float32)
    key = jax.random.key(3)
    weak = corruptions.add_gaussian_noise(x, 0.05, key=key)
    strong = corruptions.add_gaussian_noise(x, 0.1, key=key, clip=False)
    assert float(np.std(strong - x)) == pytest.approx(0.1, rel=0.05)
    np.testing.assert_allclose(strong - x, 2 * (weak - x), atol=1e-6)  # same pattern, twice the amplitude
    other = corruptions.add_gaussian_noise(x, 0.05, key=jax.random.key(4))
    assert not np.allclose(other, weak)
    clipped = corruptions.add_gaussian_noise(x, 2.0, key=key)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    np.testing.assert_array_equal(corruptions.add_gaussian_noise(x, 0.0, key=key), x)


def test_jpeg_loses_more_as_quality_falls_and_gives_8_bit_images():
    images = vk.load("fashion-mnist", "test").images[:8]
    errors = [float(np.mean((corruptions.jpeg_compress(images, q) - images) ** 2)) for q in (100, 75, 30, 5)]
    assert errors[0] < 1e-3 and np.all(np.diff(errors) > 0), errors
    levels = corruptions.jpeg_compress(images, 50) * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    colour = np.repeat(images, 3, axis=-1) * np.array([1.0, 0.6, 0.3], np.float32)
    assert corruptions.jpeg_compress(colour, 50).shape == colour.shape


def test_corruptions_name_bad_input():
    x = grey(5)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0; got -1"):
        corruptions.gaussian_blur(x, -1)
    with pytest.raises(ValueError, match="std must be a finite number >= 0; got nan"):
        corruptions.add_gaussian_noise(x, float("nan"), key=jax.random.key(0))
    with pytest.raises(ValueError, match="quality must be an integer from 1 to 100; got 0"):
        corruptions.jpeg_compress(x, 0)
    with pytest.raises(ValueError, match="quality must be an integer from 1 to 100; got 50.0"):
        corruptions.jpeg_compress(x, 50.0)
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        corruptions.jpeg_compress(grey(6, (1, 8, 8, 2)), 50)
    with pytest.raises(ValueError, match="images must be a batch of NHWC images"):
        corruptions.gaussian_blur(x[0], 1.0)
    with pytest.raises(ValueError, match="floating point"):
        corruptions.jpeg_compress((x * 255).astype(np.uint8), 50)
    with pytest.raises(ValueError, match="sigma must be > 0 for a kernel"):
        corruptions.gaussian_kernel(0.0)
