"""Chapter 11's claims on small data: the marginal, the GED of one mask against the optimum, the pixel-mean loss
as a β multiplied by H·W, the guards against NaN, and the collapse it causes on the ambiguous scenes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import elbo, probunet, scenes, segmentation, train
from vaekit.metrics import segmentation as seg

COUNTS = (1, 4, 32)


@pytest.fixture(scope="module")
def test_scenes():
    return scenes.ambiguous_scenes(30, "test", seed=1, size=32)


def modes_of(scene_set, i):
    present = scene_set.mode_probabilities[i] > 0
    return scene_set.modes[i][present], scene_set.mode_probabilities[i][present]


def small_model(seed=0):
    config = probunet.ProbabilisticUNetConfig(
        unet=segmentation.UNetConfig(in_channels=3, num_classes=2, channels=(8, 16)), encoder_channels=(8, 16))
    return probunet.ProbabilisticUNet(config, rngs=nnx.Rngs(params=seed))


def test_the_marginal_is_the_share_of_many_annotators_who_mark_each_pixel():
    many = scenes.ambiguous_scenes(10, "test", seed=1, size=32, num_annotators=400)
    marginal = np.einsum("nk,nkhw->nhw", many.mode_probabilities, many.modes.astype(float))
    # 400 draws: the standard error is at most 0.025 per pixel; 0.12 is beyond 4.5 of them.
    assert np.abs(many.annotations.mean(axis=1) - marginal).max() < 0.12
    assert np.abs(many.annotations.mean(axis=1) - marginal).mean() < 0.01


def test_one_mask_has_the_same_ged_for_every_n_and_stays_above_the_optimum_on_average(test_scenes):
    geds, optima = {n: [] for n in COUNTS}, {n: [] for n in COUNTS}
    for i in range(len(test_scenes.images)):
        modes, p = modes_of(test_scenes, i)
        likeliest = modes[np.argmax(p)]
        for n in COUNTS:
            geds[n].append(seg.generalized_energy_distance(np.repeat(likeliest[None], n, axis=0), modes, weights=p))
            optima[n].append(seg.ged_optimum(modes, p, n))
    np.testing.assert_allclose(geds[1], geds[32], atol=1e-12)
    assert np.mean(geds[32]) > 5 * np.mean(optima[32])
    # With n = 1 the optimum is the average over one random draw, pi^T D pi: above zero wherever modes differ.
    assert np.mean(optima[1]) == pytest.approx(32 * np.mean(optima[32]))


def test_samples_of_the_true_distribution_reach_the_optimum(test_scenes):
    rng = np.random.default_rng(0)
    n, gaps = 16, []
    for i in range(len(test_scenes.images)):
        modes, p = modes_of(test_scenes, i)
        draws = [seg.generalized_energy_distance(modes[rng.choice(len(p), size=n, p=p)], modes, weights=p)
                 for _ in range(40)]
        gaps.append(np.mean(draws) - seg.ged_optimum(modes, p, n))
    assert abs(np.mean(gaps)) < 0.01


def test_averaging_the_cross_entropy_over_pixels_is_beta_times_the_pixel_count(test_scenes):
    model = small_model()
    images = jnp.asarray(test_scenes.images[:4])
    masks = jnp.asarray(test_scenes.annotations[:4, 0].astype(np.int32))
    key = jax.random.key(0)
    summed, metrics = probunet.ProbabilisticUNetObjective()(model, (images, masks), key=key, beta=1.0)
    averaged, _ = probunet.ProbabilisticUNetObjective(reduction="mean")(model, (images, masks), key=key, beta=1.0)
    pixels = 32 * 32
    np.testing.assert_allclose(pixels * averaged, pixels * metrics["cross_entropy"] + pixels * metrics["kl"],
                               rtol=1e-5)
    np.testing.assert_allclose(summed, pixels * metrics["cross_entropy"] + metrics["kl"], rtol=1e-5)
    # The chapter's fixed loss, from the logits the objective decodes (same posterior draw).
    q_mean, q_log_var = model.posterior(images, masks)
    logits = model.logits(images, elbo.reparameterize(q_mean, q_log_var, key=jax.random.split(key)[0]))
    np.testing.assert_allclose(pixels * segmentation.pixel_cross_entropy(logits, masks) + metrics["kl"], summed,
                               rtol=1e-5)


def test_unbounded_log_variances_overflow_and_the_bounded_ones_do_not():
    raw = jnp.array([0.0, 20.0, 100.0])
    zero = jnp.zeros(3)
    assert not np.isfinite(np.asarray(probunet.diagonal_gaussian_kl(zero, raw, zero, -raw))[2])
    bounded = probunet.bounded_log_var(raw)
    assert np.all(np.isfinite(np.asarray(probunet.diagonal_gaussian_kl(zero, bounded, zero, -bounded))))
    assert float(jnp.max(jnp.exp(bounded))) <= np.exp(probunet.LOG_VAR_LIMIT) * (1 + 1e-6)
    logits = jnp.array([[0.0, 120.0]])
    assert not np.isfinite(float(-jnp.log(jax.nn.softmax(logits))[0, 0]))
    assert float(-jax.nn.log_softmax(logits)[0, 0]) == pytest.approx(120.0)


def test_on_the_ambiguous_scenes_the_pixel_mean_loss_collapses_the_kl_and_the_sum_does_not():
    """Chapter 11's section 6 at a smaller budget: 128 images x 4 annotators, 4 epochs, channels 8-16."""
    data = scenes.ambiguous_scenes(128, "train", seed=0, size=32)
    test_images = jnp.asarray(scenes.ambiguous_scenes(20, "test", seed=1, size=32).images)
    config = train.TrainConfig(epochs=4, batch_size=32, learning_rate=3e-3)
    kl, diversity = {}, {}
    for reduction in ("sum", "mean"):
        model = small_model()
        result = train.fit(model, data.arrays, config=config, progress=False,
                           objective=probunet.ProbabilisticUNetObjective(reduction=reduction))
        kl[reduction] = result.history[-1]["train_kl"]
        samples = model.sample(test_images, key=jax.random.key(1), num_samples=8)
        diversity[reduction] = float(jnp.mean(probunet.foreground_diversity(samples)))
    assert kl["sum"] > 0.5 and kl["mean"] < 0.05, kl
    assert diversity["mean"] < 0.5 * diversity["sum"], diversity
