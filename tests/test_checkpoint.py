"""Checkpoints hold a model's whole state, resume training exactly, and never lose the last good save."""

import hashlib
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from vaekit import checkpoint, datasets, models, train
from vaekit.segmentation import UNet, UNetConfig

DATA = datasets.load("mnist", "train").take(512)
MODEL_CONFIG = models.VAEConfig(latent_dim=3, hidden_dims=(64,))
GAUSSIAN_CONFIG = models.VAEConfig(latent_dim=3, hidden_dims=(64,), likelihood="gaussian", gaussian_variance="fixed")
TRAIN_CONFIG = train.TrainConfig(epochs=1, batch_size=64, seed=1)


def trained(epochs=1, model_config=MODEL_CONFIG):
    model = models.make_vae(model_config)
    config = train.TrainConfig(epochs=epochs, batch_size=64, seed=1)
    return train.fit(model, DATA, config=config, progress=False)


def host(leaf):
    """A leaf as a NumPy array; a typed PRNG key as its key data."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [path for path, _ in leaves_a] == [path for path, _ in leaves_b]
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
        assert x.dtype == y.dtype, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(host(x), host(y), err_msg=jax.tree_util.keystr(path))


def assert_states_equal(a: nnx.Module, b: nnx.Module):
    """The whole state, variable types included (a fixed variance must not come back as a Param)."""
    flat_a, flat_b = nnx.to_flat_state(nnx.state(a)), nnx.to_flat_state(nnx.state(b))
    assert [(p, type(v)) for p, v in flat_a] == [(p, type(v)) for p, v in flat_b]
    assert_trees_equal(nnx.state(a), nnx.state(b))


def entries(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- round trips ----------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(tmp_path):
    result = trained()
    path = checkpoint.save(tmp_path / "ck", result.model, opt_state=result.opt_state, train_config=TRAIN_CONFIG,
                           history=result.history)
    restored = checkpoint.restore(path)
    assert type(restored.model) is models.VAE
    assert_states_equal(restored.model, result.model)
    assert_trees_equal(restored.opt_state, result.opt_state)
    assert jax.tree.structure(restored.opt_state) == jax.tree.structure(result.opt_state)
    assert restored.model_config == MODEL_CONFIG
    assert restored.train_config == TRAIN_CONFIG
    assert restored.history == result.history


def test_resuming_from_a_checkpoint_continues_exactly_as_an_uninterrupted_run(tmp_path):
    straight = trained(epochs=2)
    first = trained(epochs=1)
    checkpoint.save(tmp_path / "ck", first.model, opt_state=first.opt_state, train_config=TRAIN_CONFIG)
    restored = checkpoint.restore(tmp_path / "ck")
    resumed = train.fit(restored.model, DATA, config=TRAIN_CONFIG, opt_state=restored.opt_state, first_epoch=2,
                        progress=False)
    assert resumed.history[0]["train_loss"] == straight.history[1]["train_loss"]
    assert_states_equal(resumed.model, straight.model)


def test_a_fixed_gaussian_variance_is_saved_and_restored(tmp_path):
    model = models.make_vae(GAUSSIAN_CONFIG)
    assert type(model.log_var) is nnx.Variable  # state, not a parameter
    model.log_var[...] = jnp.array([-1.2345], jnp.float32)  # not the value a fresh model starts from
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model)).model
    assert type(restored.log_var) is nnx.Variable
    np.testing.assert_array_equal(restored.log_var[...], np.array([-1.2345], np.float32))
    assert_states_equal(restored, model)


def test_a_gaussian_vae_saved_with_its_optimizer_state_resumes_bit_identically(tmp_path):
    straight = trained(epochs=2, model_config=GAUSSIAN_CONFIG)
    first = trained(epochs=1, model_config=GAUSSIAN_CONFIG)
    checkpoint.save(tmp_path / "ck", first.model, opt_state=first.opt_state, train_config=TRAIN_CONFIG,
                    history=first.history)
    restored = checkpoint.restore(tmp_path / "ck")
    resumed = train.fit(restored.model, DATA, config=TRAIN_CONFIG, opt_state=restored.opt_state, first_epoch=2,
                        progress=False)
    assert resumed.history[0]["train_loss"] == straight.history[1]["train_loss"]
    assert_states_equal(resumed.model, straight.model)
    assert_trees_equal(resumed.opt_state, straight.opt_state)


def test_a_model_without_optimizer_state_round_trips(tmp_path):
    model = models.make_vae(MODEL_CONFIG)
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model))
    assert restored.opt_state is None and restored.train_config is None and restored.history == []
    assert_states_equal(restored.model, model)


def test_an_optimizer_state_restores_with_the_optimizer_it_belongs_to(tmp_path):
    model = models.make_vae(MODEL_CONFIG)
    sgd = optax.sgd(0.1, momentum=0.9)
    params = nnx.state(model, nnx.Param)
    opt_state = jax.tree.map(lambda x: x + 0.5, sgd.init(params))  # a momentum that is not all zeros
    checkpoint.save(tmp_path / "ck", model, opt_state=opt_state, train_config=TRAIN_CONFIG)
    restored = checkpoint.restore(tmp_path / "ck", optimizer=sgd)
    assert jax.tree.structure(restored.opt_state) == jax.tree.structure(opt_state)
    assert_trees_equal(restored.opt_state, opt_state)
    # By default the optimizer is the training config's Adam, whose state has other leaves.
    with pytest.raises(checkpoint.CheckpointError) as raised:
        checkpoint.restore(tmp_path / "ck")
    assert "the optimizer state does not fit the checkpoint" in str(raised.value)
    assert "[0].count: in the optimizer state, not in the checkpoint" in str(raised.value)


class DropoutNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(4, 8, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.dropout(self.linear(x))


class BatchNormNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(4, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)

    def __call__(self, x):
        return self.norm(self.linear(x))


X = jnp.asarray(np.random.default_rng(0).standard_normal((16, 4)), jnp.float32)


def test_a_module_with_dropout_round_trips_with_its_random_state(tmp_path):
    model = DropoutNet(rngs=nnx.Rngs(0, dropout=1))
    for _ in range(3):
        model(X)  # each call draws a mask and advances the dropout stream's count
    assert int(model.dropout.rngs.count[...]) == 3
    like = DropoutNet(rngs=nnx.Rngs(5, dropout=6))
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model), like=like)
    assert restored.model is like and restored.model_config is None
    assert_states_equal(like, model)
    assert jax.random.key_impl(like.dropout.rngs.key[...]) == jax.random.key_impl(model.dropout.rngs.key[...])
    # The same random state draws the same next masks.
    np.testing.assert_array_equal(like(X), model(X))


def test_a_module_with_batch_norm_round_trips_with_its_statistics(tmp_path):
    model = BatchNormNet(rngs=nnx.Rngs(0))
    for shift in (1.0, 2.0):
        model(X + shift)  # training mode: the running mean and variance move
    assert float(jnp.abs(model.norm.mean[...]).max()) > 0.1
    like = BatchNormNet(rngs=nnx.Rngs(3))
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model), like=like)
    assert_states_equal(restored.model, model)
    model.eval()
    like.eval()
    np.testing.assert_array_equal(like(X), model(X))


def test_a_like_of_another_structure_is_refused_naming_the_paths(tmp_path):
    checkpoint.save(tmp_path / "ck", BatchNormNet(rngs=nnx.Rngs(0)))
    with pytest.raises(checkpoint.CheckpointError) as raised:
        checkpoint.restore(tmp_path / "ck", like=DropoutNet(rngs=nnx.Rngs(0)))
    message = str(raised.value)
    assert "the model does not fit the checkpoint" in message
    assert "norm/mean: in the checkpoint, not in the model" in message
    assert "dropout/rngs/key: in the model, not in the checkpoint" in message
    assert "linear/kernel" not in message  # the same in both
    with pytest.raises(checkpoint.CheckpointError, match="holds a test_checkpoint.BatchNormNet, not a vaekit model; "
                                                         "pass like="):
        checkpoint.restore(tmp_path / "ck")
    wider = nnx.Linear(4, 9, rngs=nnx.Rngs(0))
    checkpoint.save(tmp_path / "linear", nnx.Linear(4, 8, rngs=nnx.Rngs(0)))
    with pytest.raises(checkpoint.CheckpointError, match=r"kernel: checkpoint has type=Param shape=\[4, 8\] "
                                                         r"dtype=float32, the model has type=Param shape=\[4, 9\]"):
        checkpoint.restore(tmp_path / "linear", like=wider)


def test_a_unet_is_rebuilt_from_its_config(tmp_path):
    config = UNetConfig(in_channels=2, num_classes=3, channels=(4, 8), upsampling="repeat")
    unet = UNet(config, rngs=nnx.Rngs(0))
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", unet))
    assert type(restored.model) is UNet and restored.model_config == config
    assert_states_equal(restored.model, unet)
    x = jnp.asarray(np.random.default_rng(1).random((1, 8, 8, 2)), jnp.float32)
    np.testing.assert_array_equal(restored.model(x), unet(x))
    with pytest.raises(checkpoint.CheckpointError, match=r"channels: checkpoint has \[4, 8\], asked for \[4, 16\]"):
        checkpoint.restore(tmp_path / "ck", model_config=UNetConfig(in_channels=2, num_classes=3, channels=(4, 16),
                                                                   upsampling="repeat"))
    with pytest.raises(checkpoint.CheckpointError, match="holds a vaekit.segmentation.UNet \\(a UNetConfig\\); "
                                                         "model_config is a VAEConfig"):
        checkpoint.restore(tmp_path / "ck", model_config=MODEL_CONFIG)


@pytest.mark.parametrize("build", [
    lambda: models.VAE(models.VAEConfig(latent_dim=2, hidden_dims=(8,), num_classes=3), rngs=nnx.Rngs(1)),
    lambda: models.Autoencoder(models.VAEConfig(latent_dim=2, hidden_dims=(8,)), rngs=nnx.Rngs(1)),
    lambda: models.Classifier(models.ClassifierConfig(channels=(4,), hidden_dim=8), rngs=nnx.Rngs(1)),
], ids=["conditional VAE", "Autoencoder", "Classifier"])
def test_every_kit_model_is_rebuilt_from_its_config(tmp_path, build):
    model = build()
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model))
    assert type(restored.model) is type(model) and restored.model_config == model.config
    assert_states_equal(restored.model, model)


def test_restoring_into_a_mismatching_config_names_the_fields(tmp_path):
    checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG))
    asked = models.VAEConfig(latent_dim=5, hidden_dims=(64,))
    with pytest.raises(checkpoint.CheckpointError, match="latent_dim: checkpoint has 3, asked for 5"):
        checkpoint.restore(tmp_path / "ck", model_config=asked)
    with pytest.raises(checkpoint.CheckpointError, match="latent_dim: checkpoint has 3, asked for 5"):
        checkpoint.restore(tmp_path / "ck", like=models.make_vae(asked))  # like's own config is checked too


# --- the folder: replacing, failing, crashing -----------------------------------------------------


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG, seed=0))
    newer = models.make_vae(MODEL_CONFIG, seed=1)
    checkpoint.save(tmp_path / "ck", newer)
    assert_states_equal(checkpoint.restore(tmp_path / "ck").model, newer)
    assert entries(tmp_path) == ["ck"]
    assert entries(tmp_path / "ck") == ["LATEST", "v000002"]
    assert entries(tmp_path / "ck" / "v000002") == ["COMPLETE", "meta.json", "state"]


class CloseCounter:
    """Counts the Orbax checkpointers made and closed."""

    def __init__(self, monkeypatch):
        self.made = self.closed = 0
        make, close = ocp.StandardCheckpointer.__init__, ocp.StandardCheckpointer.close

        def counting_make(checkpointer, *args, **kwargs):
            self.made += 1
            make(checkpointer, *args, **kwargs)

        def counting_close(checkpointer):
            self.closed += 1
            close(checkpointer)

        monkeypatch.setattr(ocp.StandardCheckpointer, "__init__", counting_make)
        monkeypatch.setattr(ocp.StandardCheckpointer, "close", counting_close)


def test_a_save_that_fails_in_orbax_leaves_the_last_good_checkpoint_and_closes_the_checkpointer(tmp_path, monkeypatch):
    good = models.make_vae(MODEL_CONFIG, seed=0)
    checkpoint.save(tmp_path / "ck", good)
    counter = CloseCounter(monkeypatch)

    def crash_midway(self, directory, *args, **kwargs):
        (directory / "partial").mkdir(parents=True)
        (directory / "partial" / "half-written").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG, seed=9))
    assert counter.made == counter.closed == 1
    assert entries(tmp_path / "ck") == ["LATEST", "v000001"]  # no staging version left behind
    assert_states_equal(checkpoint.restore(tmp_path / "ck").model, good)


def test_a_history_that_is_not_json_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    good = models.make_vae(MODEL_CONFIG, seed=0)
    checkpoint.save(tmp_path / "ck", good)
    counter = CloseCounter(monkeypatch)
    with pytest.raises(checkpoint.CheckpointError, match="the configs and history must be JSON values "
                                                         r"\(Object of type ndarray is not JSON serializable\)"):
        checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG, seed=9), history=[{"loss": np.zeros(2)}])
    assert counter.made == counter.closed == 0
    assert entries(tmp_path / "ck") == ["LATEST", "v000001"]
    assert_states_equal(checkpoint.restore(tmp_path / "ck").model, good)


def test_a_folder_that_is_not_a_checkpoint_is_not_replaced(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("months of work")
    with pytest.raises(checkpoint.CheckpointError, match="notes: a folder that is not a vaekit checkpoint"):
        checkpoint.save(tmp_path / "notes", models.make_vae(MODEL_CONFIG))
    assert entries(tmp_path / "notes") == ["thesis.tex"]
    (tmp_path / "file").write_text("")
    with pytest.raises(checkpoint.CheckpointError, match="file: is a file, not a checkpoint folder"):
        checkpoint.save(tmp_path / "file", models.make_vae(MODEL_CONFIG))


def two_versions(tmp_path):
    """A checkpoint folder holding two complete versions, v000001 and v000002, as a save that died can leave it."""
    path = tmp_path / "ck"
    first, second = models.make_vae(MODEL_CONFIG, seed=0), models.make_vae(MODEL_CONFIG, seed=1)
    checkpoint.save(path, first)
    shutil.copytree(path / "v000001", tmp_path / "v000001")
    checkpoint.save(path, second)  # removes v000001 once LATEST names v000002; put it back
    (tmp_path / "v000001").rename(path / "v000001")
    return path, first, second


def test_restore_falls_back_to_the_newest_complete_version_when_latest_is_missing_or_damaged(tmp_path):
    path, first, second = two_versions(tmp_path)
    assert entries(path) == ["LATEST", "v000001", "v000002"]
    (path / "LATEST").unlink()  # as a first save that died before switching LATEST leaves it
    assert_states_equal(checkpoint.restore(path).model, second)
    (path / "LATEST").write_text("\0\0garbage")
    assert_states_equal(checkpoint.restore(path).model, second)
    (path / "LATEST").write_text("v000007\n")  # names a version that is not there
    assert_states_equal(checkpoint.restore(path).model, second)
    (path / "v000002" / "COMPLETE").unlink()  # and the newest is incomplete
    assert_states_equal(checkpoint.restore(path).model, first)


def test_restore_follows_latest_past_versions_of_saves_that_died(tmp_path):
    path, first, second = two_versions(tmp_path)
    (path / "LATEST").write_text("v000001\n")
    # v000002 complete but LATEST not yet switched: a save that died between its two steps.
    assert_states_equal(checkpoint.restore(path).model, first)
    (path / "v000002" / "COMPLETE").unlink()  # a save that died while writing
    (path / ".LATEST.tmp").write_text("v0000")  # one that died while writing the new name
    assert_states_equal(checkpoint.restore(path).model, first)
    third = models.make_vae(MODEL_CONFIG, seed=2)
    checkpoint.save(path, third)  # cleans up what the dead saves left, and never reuses a version's name
    assert entries(path) == ["LATEST", "v000003"]
    assert_states_equal(checkpoint.restore(path).model, third)


# Saves a small VAE again and again, every leaf of save number c filled with c, and records
# (atomically, flushed) the last c whose save returned. NumPy fills: no JAX compilation to wait for.
SAVER = """
import os, sys
import jax, numpy as np
from flax import nnx
from vaekit import checkpoint, models, train

path, finished, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = nnx.eval_shape(lambda: models.VAE(models.VAEConfig(latent_dim=1, hidden_dims=(4,), image_shape=(4, 4, 1)),
                                          rngs=nnx.Rngs(0)))
config = train.TrainConfig()
params = nnx.state(model, nnx.Param)
opt_state = jax.eval_shape(train.make_optimizer(config).init, params)
for counter in range(first, first + 1_000_000):
    fill = lambda x: np.full(x.shape, counter, x.dtype)
    nnx.update(model, jax.tree.map(fill, params))
    checkpoint.save(path, model, opt_state=jax.tree.map(fill, opt_state), train_config=config,
                    history=[{"counter": counter}])
    with open(finished + ".tmp", "w") as f:
        f.write(str(counter))
        f.flush()
        os.fsync(f.fileno())
    os.replace(finished + ".tmp", finished)
"""


def wait_for_counter(finished: pathlib.Path, counter: int, child: subprocess.Popen, errors: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while not (finished.exists() and int(finished.read_text()) >= counter):
        assert child.poll() is None, f"the saving process died on its own:\n{errors.read_text()}"
        assert time.monotonic() < deadline, "the saving process made no progress in 60 s"
        time.sleep(0.001)


def test_a_save_killed_at_a_random_instant_leaves_the_last_finished_checkpoint(tmp_path):
    path, finished, errors = tmp_path / "ck", tmp_path / "finished", tmp_path / "stderr"
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(checkpoint.__file__).parents[1]), "JAX_PLATFORMS": "cpu"}
    rng = random.Random(0)
    for trial in range(20):
        first = 1000 * trial + 1
        with open(errors, "w") as stderr:
            child = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(finished), str(first)],
                                     env=env, stderr=stderr)
        try:
            wait_for_counter(finished, first, child, errors)
            tic = time.monotonic()
            wait_for_counter(finished, first + 1, child, errors)
            one_save = time.monotonic() - tic
            time.sleep(rng.uniform(0.0, 2.0 * one_save))  # saves run back to back: any instant of one
        finally:
            child.kill()  # SIGKILL: no cleanup of any kind runs
            child.wait()
        last_finished = int(finished.read_text())
        restored = checkpoint.restore(path)
        counter = restored.history[0]["counter"]
        # The last save that returned, or the one that was cut short after switching LATEST.
        assert last_finished <= counter <= last_finished + 1
        for leaf in jax.tree.leaves(nnx.state(restored.model)) + jax.tree.leaves(restored.opt_state):
            np.testing.assert_array_equal(leaf, np.full(leaf.shape, counter, leaf.dtype))
    model = models.make_vae(MODEL_CONFIG)
    checkpoint.save(path, model)  # clears what the killed saves left behind
    assert [name for name in entries(path) if name != "LATEST"] == [(path / "LATEST").read_text().strip()]
    assert_states_equal(checkpoint.restore(path).model, model)


# Under jax.distributed, process 0 alone saves (as the command line does); then each process restores.
CLUSTER_SAVE = """
import os, sys, time
import jax, numpy as np
process, port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
jax.devices()  # every process joins the backend's start, as training would
from flax import nnx
from vaekit import checkpoint, models, train
if process == 0:
    model = models.make_vae(models.VAEConfig(latent_dim=2, hidden_dims=(8,)), seed=3)
    config = train.TrainConfig()
    checkpoint.save(path, model, opt_state=train.make_optimizer(config).init(nnx.state(model, nnx.Param)),
                    train_config=config)
deadline = time.monotonic() + 120
while not os.path.exists(os.path.join(path, "LATEST")) and time.monotonic() < deadline:
    time.sleep(0.05)
restored = checkpoint.restore(path)
np.savez(out, *jax.tree.leaves(nnx.state(restored.model)), *jax.tree.leaves(restored.opt_state))
"""


def test_under_jax_distributed_one_process_saves_and_every_process_restores(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(pathlib.Path(checkpoint.__file__).parents[1])
    cluster = [subprocess.Popen([sys.executable, "-c", CLUSTER_SAVE, str(i), port, str(tmp_path / "ck"),
                                 str(tmp_path / f"p{i}.npz")], env=env, stderr=subprocess.PIPE, text=True)
               for i in (0, 1)]
    errors = [p.communicate(timeout=300)[1] for p in cluster]
    for p, err in zip(cluster, errors):
        assert p.returncode == 0, err[-3000:]
    saved = checkpoint.restore(tmp_path / "ck")
    expected = jax.tree.leaves(nnx.state(saved.model)) + jax.tree.leaves(saved.opt_state)
    for i in (0, 1):
        got = np.load(tmp_path / f"p{i}.npz")
        assert len(got.files) == len(expected)
        for name, leaf in zip(got.files, expected):
            np.testing.assert_array_equal(got[name], leaf)


# --- damaged or foreign folders -------------------------------------------------------------------


def rewrite(version: pathlib.Path, name: str, content: bytes) -> None:
    """Replaces a file of a version and its record in COMPLETE, as a save that wrote it so would have."""
    (version / name).write_bytes(content)
    recorded = json.loads((version / "COMPLETE").read_text())
    recorded[name] = [len(content), hashlib.sha256(content).hexdigest()]
    (version / "COMPLETE").write_text(json.dumps(recorded))


def test_damaged_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="nowhere: not a vaekit checkpoint"):
        checkpoint.restore(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="empty: not a vaekit checkpoint"):
        checkpoint.restore(tmp_path / "empty")
    version = checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG)) / "v000001"
    meta = (version / "meta.json").read_bytes()
    (version / "meta.json").write_bytes(meta.replace(b'"latent_dim": 3', b'"latent_dim": 4'))
    with pytest.raises(checkpoint.CheckpointError, match="v000001/meta.json: damaged \\(its size or SHA-256 differs"):
        checkpoint.restore(version.parent)
    rewrite(version, "meta.json", b"{not json")
    with pytest.raises(checkpoint.CheckpointError, match="meta.json: damaged \\(Expecting property name"):
        checkpoint.restore(version.parent)
    rewrite(version, "meta.json", json.dumps({**json.loads(meta), "format": 99}).encode())
    with pytest.raises(checkpoint.CheckpointError, match="format 99, this vaekit reads format 2"):
        checkpoint.restore(version.parent)
    (version / "COMPLETE").write_text("[1, 2")
    with pytest.raises(checkpoint.CheckpointError, match="v000001/COMPLETE: damaged"):
        checkpoint.restore(version.parent)


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "removed"])
def test_damaged_arrays_are_named_before_orbax_reads_them(tmp_path, monkeypatch, damage):
    version = checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG)) / "v000001"
    largest = max((f for f in (version / "state").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    if damage == "removed":
        largest.unlink()
    else:
        content = largest.read_bytes()
        largest.write_bytes(content[: len(content) // 2] if damage == "truncated" else content[::-1])
    counter = CloseCounter(monkeypatch)
    word = "missing" if damage == "removed" else "damaged"
    with pytest.raises(checkpoint.CheckpointError, match=f"{largest.relative_to(tmp_path)}: {word}"):
        checkpoint.restore(version.parent)
    assert counter.made == 0  # Orbax never opens a damaged checkpoint


def test_arrays_that_orbax_cannot_read_are_a_clear_error_and_the_checkpointer_is_closed(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG))
    counter = CloseCounter(monkeypatch)

    def unreadable(self, directory, *args, **kwargs):
        raise ValueError("written by a newer Orbax")

    monkeypatch.setattr(ocp.StandardCheckpointer, "restore", unreadable)
    with pytest.raises(checkpoint.CheckpointError, match="v000001/state: cannot restore the arrays "
                                                         "\\(ValueError: written by a newer Orbax\\)"):
        checkpoint.restore(path)
    assert counter.made == counter.closed == 1


def test_a_checkpoint_of_the_first_format_is_named_and_replaced_by_a_save(tmp_path):
    old = tmp_path / "ck"
    (old / "state").mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(checkpoint.CheckpointError, match="written by an older vaekit \\(format 1\\), this vaekit "
                                                         "reads format 2; save the model again"):
        checkpoint.restore(old)
    model = models.make_vae(MODEL_CONFIG)
    checkpoint.save(old, model)
    assert entries(old) == ["LATEST", "v000001"]
    assert_states_equal(checkpoint.restore(old).model, model)
