"""Training: the loss falls, runs are reproducible, loops agree, schedules apply, divergence stops, devices agree."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaekit import datasets, models, train

TRAIN = datasets.load("mnist", "train").take(2048)
TEST = datasets.load("mnist", "test").take(500)
SMALL = models.VAEConfig(latent_dim=4, hidden_dims=(128,))
TIMINGS = ("images_per_s", "seconds")


def run(config=train.TrainConfig(epochs=2, batch_size=64), model_config=SMALL, data=TRAIN, **kwargs):
    kwargs.setdefault("progress", False)
    return train.fit(models.make_vae(model_config), data, TEST, config, **kwargs)


def without_timings(history):
    return [{k: v for k, v in entry.items() if k not in TIMINGS} for entry in history]


def test_loss_falls_over_one_short_epoch():
    model = models.make_vae(SMALL)
    before = train.evaluate(model, TEST, key=jax.random.key(0))["neg_elbo"]
    result = train.fit(model, TRAIN, TEST, train.TrainConfig(epochs=1, batch_size=32), progress=False)
    entry = result.history[0]
    assert entry["test_neg_elbo"] < 0.5 * before  # an untrained model scores ~540 nats on MNIST
    assert entry["test_neg_elbo"] == pytest.approx(entry["test_rate"] + entry["test_distortion"], rel=1e-5)
    assert set(entry) >= {"epoch", "beta", "train_neg_elbo", "train_rate", "train_distortion", "test_neg_elbo",
                          "test_rate", "test_distortion", "images_per_s", "seconds"}


def test_same_seed_gives_the_same_history_and_another_seed_does_not():
    config = train.TrainConfig(epochs=2, batch_size=64, seed=3)
    first, second = run(config), run(config)
    assert without_timings(first.history) == without_timings(second.history)
    other = run(train.TrainConfig(epochs=2, batch_size=64, seed=4))
    assert without_timings(other.history) != without_timings(first.history)


def test_scan_and_step_loops_compute_the_same_training():
    scan = run(train.TrainConfig(epochs=2, batch_size=64, loop="scan"))
    step = run(train.TrainConfig(epochs=2, batch_size=64, loop="step"))
    for a, b in zip(without_timings(scan.history), without_timings(step.history)):
        for name in a:
            assert a[name] == pytest.approx(b[name], rel=1e-4), name


def test_history_reports_epochs_and_throughput():
    result = run(train.TrainConfig(epochs=3, batch_size=128))
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert all(h["images_per_s"] > 0 for h in result.history)
    assert result.compile_seconds > 0
    assert result.history[-1]["test_neg_elbo"] < result.history[0]["test_neg_elbo"]


def test_kl_warmup_raises_beta_linearly_to_its_target():
    result = run(train.TrainConfig(epochs=4, batch_size=128, beta=2.0, warmup_epochs=2))
    assert [h["beta"] for h in result.history] == pytest.approx([1.0, 2.0, 2.0, 2.0])


def test_free_bits_keep_the_rate_up():
    plain = run(train.TrainConfig(epochs=2, batch_size=64, beta=8.0))
    floored = run(train.TrainConfig(epochs=2, batch_size=64, beta=8.0, free_bits=1.0))
    assert floored.history[-1]["test_rate"] > plain.history[-1]["test_rate"]


def test_dynamic_binarization_draws_binary_pixels_anew_each_epoch():
    seen = []

    def binary_check(model, batch, *, key, beta):
        loss, metrics = train.ElboObjective()(model, batch, key=key, beta=beta)
        x = batch[0]
        metrics["binary_fraction"] = jnp.mean(((x == 0) | (x == 1)).reshape(x.shape[0], -1), axis=1)
        metrics["first_pixel_sum"] = jnp.sum(x[:, 14, 14, 0]) * jnp.ones(x.shape[0])
        return loss, metrics

    data = datasets.load("mnist", "train", binarization="dynamic").take(256)
    # One batch of all 256 images per epoch: the same images, so differences come from resampling.
    result = train.fit(models.make_vae(SMALL), data, config=train.TrainConfig(epochs=2, batch_size=256),
                       objective=binary_check, progress=False)
    assert [h["train_binary_fraction"] for h in result.history] == [1.0, 1.0]
    assert result.history[0]["train_first_pixel_sum"] != result.history[1]["train_first_pixel_sum"]
    grey = train.fit(models.make_vae(SMALL), datasets.load("mnist", "train").take(256),
                     config=train.TrainConfig(epochs=1, batch_size=256), objective=binary_check, progress=False)
    assert grey.history[0]["train_binary_fraction"] < 0.95


def test_divergence_stops_naming_epoch_and_step_and_keeps_the_last_finite_epoch():
    def blows_up(model, batch, *, key, beta):
        loss, metrics = train.ElboObjective()(model, batch, key=key, beta=beta)
        # beta rises by 1 / (2 * 32) per step during warm-up; past 0.75 the loss turns into NaN.
        return jnp.where(beta > 0.75, jnp.nan, loss), metrics

    model = models.make_vae(SMALL)
    config = train.TrainConfig(epochs=3, batch_size=64, warmup_epochs=2)
    after_one = train.fit(models.make_vae(SMALL), TRAIN, config=train.TrainConfig(epochs=1, batch_size=64,
                                                                                    warmup_epochs=2),
                          objective=blows_up, progress=False)
    with pytest.raises(train.TrainingDivergedError, match=r"epoch 2, step 17 of 32.*lower the learning rate"):
        train.fit(model, TRAIN, config=config, objective=blows_up, progress=False)
    for kept, expected in zip(jax.tree.leaves(model), jax.tree.leaves(after_one.model)):
        np.testing.assert_array_equal(kept, expected)


def test_progress_callback_counts_every_step():
    calls = []
    run(train.TrainConfig(epochs=2, batch_size=256, loop="step"), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (16, 16)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_evaluate_reports_elbo_terms_and_an_iwae_nll_below_the_neg_elbo():
    model = run().model
    scores = train.evaluate(model, TEST, key=jax.random.key(0), iwae_samples=50, batch_size=200)
    assert scores["neg_elbo"] == pytest.approx(scores["rate"] + scores["distortion"], rel=1e-6)
    assert scores["iwae_nll"] < scores["neg_elbo"]


SHARDED_RUN = textwrap.dedent("""
    import json, jax
    from vaekit import datasets, models, train
    data = datasets.load("mnist", "train").take(1024)
    test = datasets.load("mnist", "test").take(400)
    model = models.make_vae(models.VAEConfig(latent_dim=4, hidden_dims=(128,)))
    result = train.fit(model, data, test, train.TrainConfig(epochs=2, batch_size=64, eval_batch_size=200, loop=LOOP),
                       progress=False)
    print(json.dumps({"devices": jax.local_device_count(), "history": result.history}))
""")


def _run_on_devices(count: int, loop: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
    out = subprocess.run([sys.executable, "-c", SHARDED_RUN.replace("LOOP", repr(loop))], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("loop", ["scan", "step"])
def test_data_parallel_training_on_four_devices_matches_one_device(loop):
    one, four = _run_on_devices(1, loop), _run_on_devices(4, loop)
    assert (one["devices"], four["devices"]) == (1, 4)
    for a, b in zip(without_timings(one["history"]), without_timings(four["history"])):
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=1e-5), name
