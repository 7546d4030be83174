"""vaekit.metrics: known answers, and agreement with independent implementations (scikit-image, dm-pix, SciPy)."""

import math

import dm_pix
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
from skimage.metrics import structural_similarity

from vaekit import metrics


def images(seed: int, shape=(3, 28, 28, 1)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def smooth_images(seed: int, shape=(3, 28, 28, 1)) -> np.ndarray:
    """Images with structure at several scales (random fields blurred a little), in [0, 1]."""
    fields = scipy.ndimage.gaussian_filter(images(seed, shape), sigma=(0, 1.0, 1.0, 0))
    low, high = fields.min(axis=(1, 2, 3), keepdims=True), fields.max(axis=(1, 2, 3), keepdims=True)
    return ((fields - low) / (high - low)).astype(np.float32)


# PSNR


def test_psnr_of_identical_images_is_infinite():
    x = images(0)
    assert np.all(np.isposinf(np.asarray(metrics.psnr(x, x))))


def test_psnr_of_a_known_mse_equals_the_formula_per_image():
    x = images(1, (4, 28, 28, 1))
    offsets = np.array([0.01, 0.05, 0.1, 0.3], np.float32)[:, None, None, None]
    signs = np.where(np.random.default_rng(2).uniform(size=x.shape) < 0.5, -1.0, 1.0).astype(np.float32)
    y = x + offsets * signs  # each image has its own MSE, offset²: not one MSE over the batch
    mse = np.mean((x.astype(np.float64) - y) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(mse, offsets.ravel() ** 2, rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(x, y), 10 * np.log10(1.0 / mse), rtol=1e-5)
    assert metrics.psnr(x, y).shape == (4,)


def test_psnr_is_invariant_to_the_pixel_scale_given_its_max_value():
    x, y = images(3), images(4)
    np.testing.assert_allclose(metrics.psnr(255 * x, 255 * y, max_value=255.0), metrics.psnr(x, y), rtol=1e-5)
    # A NumPy scalar is a number too.
    np.testing.assert_allclose(metrics.psnr(x, y, max_value=np.float32(1.0)), metrics.psnr(x, y))
    with pytest.raises(ValueError, match="max_value must be"):
        metrics.psnr(x, y, max_value=True)


# SSIM


def reference_ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                a.astype(np.float64),
                b.astype(np.float64),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=-1,
            )
            for a, b in zip(x, y)
        ]
    )


def test_ssim_of_identical_images_is_one():
    x = smooth_images(5)
    np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_agrees_with_scikit_image(channels):
    x = smooth_images(6, (3, 28, 28, channels))
    noise = np.random.default_rng(7).normal(size=x.shape).astype(np.float32)
    y = np.clip(x + np.array([0.02, 0.1, 0.3], np.float32)[:, None, None, None] * noise, 0, 1)
    unrelated = smooth_images(8, x.shape)
    ours = np.asarray(metrics.ssim(np.concatenate([x, x]), np.concatenate([y, unrelated])))
    reference = reference_ssim(np.concatenate([x, x]), np.concatenate([y, unrelated]))
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    # The pairs span a real range of SSIM, so agreement is not agreement on one value.
    assert reference.max() - reference.min() > 0.5


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_and_psnr_agree_with_dm_pix(channels):
    # DeepMind's dm-pix, a second independent implementation, in JAX (Gaussian window 11, sigma 1.5, valid region).
    x = smooth_images(16, (3, 28, 28, channels))
    noise = np.random.default_rng(17).normal(size=x.shape).astype(np.float32)
    y = np.clip(x + np.array([0.02, 0.1, 0.3], np.float32)[:, None, None, None] * noise, 0, 1)
    np.testing.assert_allclose(metrics.ssim(x, y), dm_pix.ssim(jnp.asarray(x), jnp.asarray(y)), atol=1e-4)
    np.testing.assert_allclose(metrics.psnr(x, y), dm_pix.psnr(jnp.asarray(x), jnp.asarray(y)), rtol=1e-5)


def test_ssim_falls_as_noise_grows():
    x = np.repeat(smooth_images(9, (1, 28, 28, 1)), 4, axis=0)
    noise = np.random.default_rng(10).normal(size=x.shape).astype(np.float32)
    y = x + np.array([0.0, 0.05, 0.2, 0.5], np.float32)[:, None, None, None] * noise
    assert np.all(np.diff(np.asarray(metrics.ssim(x, y))) < 0)


def test_gaussian_window_is_wang_et_al_s():
    window = metrics.gaussian_window()
    profile = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(window, np.outer(profile, profile) / np.outer(profile, profile).sum())


# Sharpness


def test_sharpness_of_a_constant_image_is_zero():
    assert np.all(np.asarray(metrics.sharpness(np.full((2, 28, 28, 3), 0.37, np.float32))) < 1e-12)


def test_sharpness_of_a_checkerboard_is_the_laplacian_variance():
    checkerboard = (np.indices((10, 10)).sum(0) % 2).astype(np.float32)[None, :, :, None]
    # The Laplacian is +4 on the 0 squares and -4 on the 1 squares, half each: variance 16.
    np.testing.assert_allclose(metrics.sharpness(checkerboard), [16.0])


def test_sharpness_falls_as_the_image_is_blurred():
    x = images(11, (1, 28, 28, 1))[0]
    blurred = np.stack([scipy.ndimage.gaussian_filter(x, sigma=(s, s, 0)) for s in (0.0, 0.5, 1.0, 2.0)])
    scores = np.asarray(metrics.sharpness(blurred.astype(np.float32)))
    assert np.all(np.diff(scores) < 0), scores


# Image metrics: bad input


@pytest.mark.parametrize("metric", [metrics.psnr, metrics.ssim])
def test_image_pair_metrics_name_bad_input(metric):
    x = images(12)
    with pytest.raises(ValueError, match="same shape"):
        metric(x, x[:2])
    with pytest.raises(ValueError, match=r"x must be a batch of NHWC images"):
        metric(x[0], x[0])
    with pytest.raises(ValueError, match="max_value must be"):
        metric(x, x, max_value=0.0)
    with pytest.raises(ValueError, match="floating point"):
        metric(x.astype(np.uint8), x.astype(np.uint8))


def test_ssim_and_sharpness_name_images_too_small_for_their_window():
    with pytest.raises(ValueError, match="window_size=11"):
        metrics.ssim(images(13, (1, 8, 8, 1)), images(14, (1, 8, 8, 1)))
    with pytest.raises(ValueError, match="window_size must be an odd integer"):
        metrics.ssim(images(13), images(14), window_size=10)
    with pytest.raises(ValueError, match="k2 must be"):
        metrics.ssim(images(13), images(14), k2=-0.03)
    with pytest.raises(ValueError, match="at least 3 pixels"):
        metrics.sharpness(images(13, (1, 2, 28, 1)))


# Checkerboard


def fft_checkerboard(x: np.ndarray) -> np.ndarray:
    """Independently, from NumPy's FFT in float64: the Nyquist bins' share of all energy but the DC term."""
    spectrum = np.abs(np.fft.fft2(x.astype(np.float64), axes=(1, 2))) ** 2
    h, w = x.shape[1] // 2, x.shape[2] // 2
    nyquist = spectrum[:, h, w] + spectrum[:, h, 0] + spectrum[:, 0, w]
    return nyquist.sum(-1) / (spectrum.sum(axis=(1, 2, 3)) - spectrum[:, 0, 0].sum(-1))


def period_two_board(height: int = 28, width: int = 28) -> np.ndarray:
    h, w = np.indices((height, width))
    return ((h + w) % 2).astype(np.float32)


def test_checkerboard_of_a_pure_checkerboard_or_stripes_is_one():
    h, w = np.indices((28, 28))
    patterns = np.stack([period_two_board(), h % 2, w % 2, 0.3 + 0.2 * (h % 2) + 0.1 * (w % 2)]).astype(np.float32)
    np.testing.assert_allclose(metrics.checkerboard(patterns[..., None]), 1.0, rtol=1e-5)


def test_checkerboard_of_flat_and_smooth_images_is_zero():
    h, w = np.indices((28, 28))
    flat = np.full((28, 28), 0.3, np.float32)
    wave = 0.5 + 0.4 * np.cos(2 * np.pi * 3 * h / 28) * np.sin(2 * np.pi * 2 * w / 28)  # DFT bins far from Nyquist
    assert np.asarray(metrics.checkerboard(np.stack([flat, np.zeros_like(flat)])[..., None])).tolist() == [0.0, 0.0]
    assert float(metrics.checkerboard(wave[None, :, :, None].astype(np.float32))[0]) == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.asarray(metrics.checkerboard(smooth_images(20))) < 0.01)


def test_checkerboard_is_the_pattern_share_of_a_mixture():
    # A checkerboard of amplitude a on a wave of amplitude b, both centred and orthogonal: share a^2 / (a^2 + b^2/2).
    h, w = np.indices((28, 28))
    wave = np.cos(2 * np.pi * 5 * h / 28)  # mean square 1/2
    board = np.where(period_two_board() > 0, 1.0, -1.0)  # mean square 1
    for a, b in ((0.1, 1.0), (0.5, 0.5), (1.0, 0.2)):
        x = (0.5 + a * board + b * wave)[None, :, :, None].astype(np.float32)
        assert float(metrics.checkerboard(x)[0]) == pytest.approx(a**2 / (a**2 + b**2 / 2), rel=1e-4)


def test_checkerboard_agrees_with_the_fft_for_any_image_and_colour():
    for x in (images(21, (3, 28, 28, 3)), smooth_images(22, (2, 16, 12, 3)), smooth_images(23)):
        np.testing.assert_allclose(metrics.checkerboard(x), fft_checkerboard(x), rtol=1e-4)


def test_checkerboard_of_white_noise_is_three_bins_of_the_spectrum():
    noise = np.random.default_rng(24).normal(size=(200, 28, 28, 1)).astype(np.float32)
    assert float(np.mean(metrics.checkerboard(noise))) == pytest.approx(3 / (28 * 28 - 1), rel=0.15)


def test_checkerboard_grows_with_the_amplitude_of_an_added_pattern():
    x = smooth_images(25)
    board = period_two_board()[None, :, :, None]
    scores = [np.asarray(metrics.checkerboard(x + a * board)) for a in (0.0, 0.01, 0.05, 0.2)]
    assert np.all(np.diff(np.stack(scores), axis=0) > 0)


def test_checkerboard_names_bad_input():
    with pytest.raises(ValueError, match="even height and width"):
        metrics.checkerboard(images(26, (2, 27, 28, 1)))
    with pytest.raises(ValueError, match="x must be a batch of NHWC images"):
        metrics.checkerboard(images(26)[0])
    with pytest.raises(ValueError, match="floating point"):
        metrics.checkerboard(images(26).astype(np.uint8))


# Fréchet distance


def scipy_frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with SciPy's general matrix square root, in float64."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * root.real))


def correlated_features(seed: int, n: int = 600, d: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = correlated_features(0)
    scale = np.trace(np.cov(x, rowvar=False))
    assert metrics.frechet_distance(x, x) <= 1e-6 * scale


def test_frechet_distance_of_a_singular_covariance_with_itself_is_zero():
    # 10 samples in 32 dimensions: a rank-9 covariance, whose zero eigenvalues come out slightly negative.
    x = correlated_features(1, n=10, d=32)
    assert 0.0 <= metrics.frechet_distance(x, x) <= 1e-6 * np.trace(np.cov(x, rowvar=False))


def test_frechet_distance_is_symmetric():
    a, b = correlated_features(2), correlated_features(3)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-10)


@pytest.mark.parametrize("seeds", [(4, 5), (6, 7)])
def test_frechet_distance_agrees_with_scipy_sqrtm(seeds):
    a, b = correlated_features(seeds[0]), correlated_features(seeds[1], n=400)
    assert metrics.frechet_distance(a, b) == pytest.approx(scipy_frechet_distance(a, b), rel=1e-8)


def test_frechet_distance_in_one_dimension_is_the_gaussian_formula():
    rng = np.random.default_rng(8)
    a, b = rng.normal(1.0, 2.0, size=(300, 1)), rng.normal(-0.5, 0.5, size=(200, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift():
    x = correlated_features(9)
    shift = np.arange(16) / 4.0
    assert metrics.frechet_distance(x, x + shift) == pytest.approx(np.sum(shift**2), rel=1e-9)


def test_frechet_distance_grows_monotonically_with_added_noise():
    real, generated = correlated_features(10), correlated_features(10, n=600)
    noise = np.random.default_rng(11).normal(size=generated.shape)
    distances = [metrics.frechet_distance(real, generated + s * noise) for s in (0.0, 0.3, 1.0, 3.0, 10.0)]
    assert distances[0] < 1e-9 and np.all(np.diff(distances) > 0), distances


def test_frechet_distance_names_bad_input():
    x = correlated_features(12)
    with pytest.raises(ValueError, match="same feature dimension"):
        metrics.frechet_distance(x, x[:, :8])
    with pytest.raises(ValueError, match="generated must be a 2-D array"):
        metrics.frechet_distance(x, x[0])
    with pytest.raises(ValueError, match="real needs at least 2 rows"):
        metrics.frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="real must be finite"):
        metrics.frechet_distance(np.where(x > 2, np.nan, x), x)


def test_frechet_distance_maps_images_to_features_first():
    flat_images = correlated_features(13, d=12).reshape(600, 2, 6, 1)
    other = correlated_features(14, n=300, d=12).reshape(300, 2, 6, 1)

    def flatten(x):
        return x.reshape(len(x), -1)

    expected = metrics.frechet_distance(flatten(flat_images), flatten(other))
    assert metrics.frechet_distance(flat_images, other, features=flatten) == pytest.approx(expected, rel=1e-12)
    assert metrics.precision_recall(flat_images, other, features=flatten) == metrics.precision_recall(
        flatten(flat_images), flatten(other))
    with pytest.raises(TypeError, match="features must be None"):
        metrics.frechet_distance(flat_images, other, features="inception")
    with pytest.raises(ValueError, match=r"or images with features="):
        metrics.frechet_distance(flat_images, other)


def test_frechet_distance_with_a_feature_network_embeds_the_images_with_it():
    from flax import nnx

    import vaekit as vk

    network = vk.Classifier(vk.ClassifierConfig(channels=(4,), hidden_dim=8), rngs=nnx.Rngs(0))  # untrained will do
    real, generated = images(15, (40, 28, 28, 1)), images(16, (30, 28, 28, 1)) ** 2
    expected = metrics.frechet_distance(vk.features.embed(real, network=network),
                                        vk.features.embed(generated, network=network))
    assert metrics.frechet_distance(real, generated, features=network) == pytest.approx(expected, rel=1e-9)
    assert expected > 0


# Precision and recall


def gaussian_cloud(seed: int, n: int, d: int = 4, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_precision_and_recall_of_a_set_against_itself_are_one():
    x = gaussian_cloud(0, 500)
    assert metrics.precision_recall(x, x) == (1.0, 1.0)


def test_samples_covering_half_of_the_data_have_high_precision_and_half_recall():
    real = gaussian_cloud(1, 2000)
    fresh = gaussian_cloud(2, 4000)
    generated = fresh[fresh[:, 0] < 0]  # the same distribution, but one half of it only
    precision, recall = metrics.precision_recall(real, generated)
    assert precision > 0.9
    assert recall == pytest.approx(0.5, abs=0.1)  # measured 0.566: real points near the cut are covered too


def test_precision_and_recall_of_far_disjoint_sets_are_zero():
    assert metrics.precision_recall(gaussian_cloud(3, 300), gaussian_cloud(4, 300, shift=50.0)) == (0.0, 0.0)


def test_precision_and_recall_are_computed_in_chunks_as_in_one_piece(monkeypatch):
    real, generated = gaussian_cloud(5, 700), gaussian_cloud(6, 500, shift=0.5)
    whole = metrics.precision_recall(real, generated)
    monkeypatch.setattr(metrics.quality, "DISTANCE_CHUNK", 64)
    assert metrics.precision_recall(real, generated) == whole
    assert 0.0 < whole[0] < 1.0 and 0.0 < whole[1] < 1.0


def test_precision_recall_names_bad_input():
    x = gaussian_cloud(7, 50)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        metrics.precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        metrics.precision_recall(x, x, k=2.0)
    with pytest.raises(ValueError, match="generated needs more than k=3 rows"):
        metrics.precision_recall(x, x[:3])
    with pytest.raises(ValueError, match="same feature dimension"):
        metrics.precision_recall(x, x[:, :2])


def test_metrics_are_exported_from_the_package():
    import vaekit

    assert vaekit.metrics is metrics
    assert math.isinf(float(vaekit.metrics.psnr(jnp.ones((1, 3, 3, 1)), jnp.ones((1, 3, 3, 1)))[0]))
