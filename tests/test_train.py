"""Training: the loss falls, runs are reproducible, loops agree, schedules apply, divergence stops, devices agree."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vaekit import _engine, datasets, models, train
from vaekit.objectives import ElboObjective

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
    def binary_check(model, batch, *, key, beta):
        loss, metrics = ElboObjective()(model, batch, key=key, beta=beta)
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
        loss, metrics = ElboObjective()(model, batch, key=key, beta=beta)
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


def test_evaluate_reports_elbo_terms_and_an_iwae_bound_below_the_neg_elbo():
    model = run().model
    scores = train.evaluate(model, TEST, key=jax.random.key(0), num_samples=50, batch_size=200)
    assert scores["neg_elbo"] == pytest.approx(scores["rate"] + scores["distortion"], rel=1e-6)
    assert scores["iwae_bce"] < scores["neg_elbo"]  # grey MNIST: a cross-entropy


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


# --- state that is not a parameter, objectives, optimizers ---------------------------------------


def test_a_fixed_gaussian_variance_stays_bit_identical_through_training():
    config = models.VAEConfig(latent_dim=4, hidden_dims=(64,), likelihood="gaussian", gaussian_variance="fixed")
    model = models.make_vae(config)
    before = np.asarray(model.log_var[...]).copy()
    result = train.fit(model, TRAIN.take(512), config=train.TrainConfig(epochs=1, batch_size=64), progress=False)
    np.testing.assert_array_equal(np.asarray(model.log_var[...]), before)
    # and the optimizer never saw it: its state covers exactly the parameters
    param_shapes = [p.shape for p in jax.tree.leaves(nnx.state(model, nnx.Param))]
    assert [m.shape for m in jax.tree.leaves(result.opt_state[0].mu)] == param_shapes


class _NoisyClassifier(nnx.Module):
    """Dense layers with BatchNorm and Dropout: state that is not a parameter, and randomness of its own."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(784, 32, rngs=rngs)
        self.norm = nnx.BatchNorm(32, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        h = self.dropout(jax.nn.relu(self.norm(self.hidden(x.reshape(x.shape[0], -1)))))
        return self.out(h)


def cross_entropy(model, batch):
    """A classifier's objective: it takes no key and no beta."""
    images, labels = batch
    logits = model(images)
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return losses, {"accuracy": (jnp.argmax(logits, axis=1) == labels).astype(jnp.float32)}


def test_batchnorm_and_dropout_modules_train_and_update_their_statistics():
    model = _NoisyClassifier(rngs=nnx.Rngs(0))
    mean_before = np.asarray(model.norm.mean[...]).copy()
    count_before = int(model.dropout.rngs.count[...])
    result = train.fit(model, TRAIN, TEST, train.TrainConfig(epochs=2, batch_size=64), objective=cross_entropy,
                       progress=False)
    assert not np.allclose(np.asarray(model.norm.mean[...]), mean_before)  # running statistics were updated
    assert int(model.dropout.rngs.count[...]) > count_before  # each step drew new dropout masks
    assert result.history[-1]["test_accuracy"] > 0.6  # chance is 0.1
    assert "beta" not in result.history[0]  # the objective takes no beta, so none is reported
    # scoring runs in eval mode (no dropout, running statistics), so it is deterministic
    accuracy = lambda model, batch, key: cross_entropy(model, batch)[1]
    scores = [_engine.score(model, accuracy, TEST.arrays, batch_size=100, key=jax.random.key(i)) for i in range(2)]
    assert scores[0] == scores[1]


def test_any_optax_optimizer_trains():
    config = train.TrainConfig(epochs=2, batch_size=64)
    sgd = run(config, optimizer=optax.sgd(1e-3, momentum=0.9))
    clipped = run(config, optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
    for result in (sgd, clipped):
        assert result.history[-1]["test_neg_elbo"] < result.history[0]["test_neg_elbo"]
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        run(config, optimizer="adam")


def test_an_objective_returning_a_scalar_is_refused_naming_it():
    def mean_elbo(model, batch, *, key):
        losses, metrics = ElboObjective()(model, batch, key=key, beta=1.0)
        return jnp.mean(losses), metrics

    with pytest.raises(ValueError, match=r"objective .*mean_elbo must return per-example losses of shape \(64,\); "
                                         r"got shape \(\)"):
        run(train.TrainConfig(epochs=1, batch_size=64), objective=mean_elbo)

    def mean_metric(model, batch, *, key):
        losses, metrics = ElboObjective()(model, batch, key=key, beta=1.0)
        return losses, {**metrics, "rate": jnp.mean(metrics["rate"])}

    with pytest.raises(ValueError, match=r"per-example metric 'rate' of shape \(64,\)"):
        run(train.TrainConfig(epochs=1, batch_size=64), objective=mean_metric)


def test_evaluation_of_a_test_set_not_a_multiple_of_the_batch_equals_the_unpadded_mean():
    model = run(train.TrainConfig(epochs=1, batch_size=64)).model
    test = TEST.take(437)  # 437 = 2 * 200 + 37: the last chunk is mostly padding

    def deterministic(model, batch):
        x = batch[0]
        mean, _ = model.encode(x)
        distortion = -model.log_likelihood(x, mean)
        return distortion, {"distortion": distortion}

    history = train.fit(model, TRAIN.take(64), test, train.TrainConfig(epochs=1, batch_size=64, eval_batch_size=200),
                        objective=deterministic, optimizer=optax.sgd(0.0), progress=False).history[0]
    mean, _ = model.encode(jnp.asarray(test.images))
    expected = float(jnp.mean(-model.log_likelihood(jnp.asarray(test.images), mean)))
    assert history["test_loss"] == pytest.approx(expected, rel=1e-5)
    assert history["test_distortion"] == pytest.approx(expected, rel=1e-5)


def test_fit_and_a_loop_of_train_step_reach_the_same_parameters():
    config = train.TrainConfig(epochs=1, batch_size=128, seed=5)
    data = TRAIN.take(640)  # five steps
    fitted = models.make_vae(SMALL)
    train.fit(fitted, data, config=config, progress=False)

    stepped = models.make_vae(SMALL)
    optimizer = train.make_optimizer(config)
    state = optimizer.init(nnx.state(stepped, nnx.Param))
    order, keys = _engine.epoch_schedule(len(data), config.batch_size, seed=config.seed, epoch=1)
    for indices, (_, loss_key) in zip(np.asarray(order), keys):
        state, _, _ = train.train_step(stepped, state, (jnp.asarray(data.images[indices]),), key=loss_key,
                                       objective=ElboObjective(), optimizer=optimizer)
    for a, b in zip(jax.tree.leaves(nnx.state(fitted)), jax.tree.leaves(nnx.state(stepped))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_dataset_passes_its_labels_to_the_objective():
    seen = {}

    def labelled(model, batch, *, key):
        seen["arity"] = len(batch)
        losses, metrics = ElboObjective()(model, batch[:1], key=key, beta=1.0)
        return losses, {**metrics, "label": batch[1].astype(jnp.float32)}

    result = train.fit(models.make_vae(SMALL), TRAIN.take(256), config=train.TrainConfig(epochs=1, batch_size=256),
                       objective=labelled, progress=False)
    assert seen["arity"] == 2
    assert result.history[0]["train_label"] == pytest.approx(float(np.mean(TRAIN.labels[:256])), rel=1e-6)


# --- several processes ---------------------------------------------------------------------------

CLUSTER_RUN = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if process >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
    from flax import nnx
    from vaekit import datasets, models, train
    data = datasets.load("mnist", "train").take(1024)
    test = datasets.load("mnist", "test").take(400)
    model = models.make_vae(models.VAEConfig(latent_dim=4, hidden_dims=(128,)))
    result = train.fit(model, data, test, train.TrainConfig(epochs=1, batch_size=64, eval_batch_size=200),
                       progress=False)
    np.savez(out, *[np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model))])
    print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(), "history": result.history}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one_process_on_two_devices(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    port = str(_free_port())
    cluster = [subprocess.Popen([sys.executable, "-c", CLUSTER_RUN, str(i), port, str(tmp_path / f"p{i}.npz")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outputs = [p.communicate(timeout=600) for p in cluster]
    for p, (_, err) in zip(cluster, outputs):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run([sys.executable, "-c", CLUSTER_RUN, "-1", "0", str(tmp_path / "single.npz")],
                            env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                            capture_output=True, text=True, timeout=600, check=True)
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    reference = json.loads(single.stdout.strip().splitlines()[-1])
    assert [(r["devices"], r["processes"]) for r in runs] == [(2, 2), (2, 2)]
    assert (reference["devices"], reference["processes"]) == (2, 1)
    for r in runs:
        for name, value in without_timings(reference["history"])[0].items():
            assert without_timings(r["history"])[0][name] == pytest.approx(value, rel=1e-5), name
    expected = np.load(tmp_path / "single.npz")
    for i in (0, 1):
        got = np.load(tmp_path / f"p{i}.npz")
        assert got.files == expected.files
        for name in expected.files:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-7)


def test_evaluating_again_reuses_the_compiled_scorer():
    model = models.make_vae(SMALL)
    first = train.evaluate(model, TEST, key=jax.random.key(0), num_samples=5)
    hits = _engine._chunk_sums.cache_info().hits
    assert train.evaluate(model, TEST, key=jax.random.key(0), num_samples=5) == first
    assert _engine._chunk_sums.cache_info().hits == hits + 1
