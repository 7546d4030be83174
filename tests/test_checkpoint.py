"""Checkpoints round-trip bit for bit, resume training exactly, and never lose the last good save."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vaekit import checkpoint, datasets, models, train

DATA = datasets.load("mnist", "train").take(512)
MODEL_CONFIG = models.VAEConfig(latent_dim=3, hidden_dims=(64,))
TRAIN_CONFIG = train.TrainConfig(epochs=1, batch_size=64, seed=1)


def trained(epochs=1):
    model = models.make_vae(MODEL_CONFIG)
    config = train.TrainConfig(epochs=epochs, batch_size=64, seed=1)
    return train.fit(model, DATA, config=config, progress=False)


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_bit_exact(tmp_path):
    result = trained()
    path = checkpoint.save(tmp_path / "ck", result.model, opt_state=result.opt_state, train_config=TRAIN_CONFIG,
                           history=result.history)
    restored = checkpoint.restore(path)
    assert_trees_equal(restored.model, result.model)
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
    assert_trees_equal(resumed.model, straight.model)


def test_a_model_without_optimizer_state_round_trips(tmp_path):
    model = models.make_vae(MODEL_CONFIG)
    restored = checkpoint.restore(checkpoint.save(tmp_path / "ck", model))
    assert restored.opt_state is None and restored.train_config is None
    assert_trees_equal(restored.model, model)


def test_an_interrupted_save_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    good = trained()
    checkpoint.save(tmp_path / "ck", good.model, opt_state=good.opt_state, train_config=TRAIN_CONFIG)

    def crash_midway(self, directory, *args, **kwargs):
        (directory / "partial").mkdir(parents=True)
        (directory / "partial" / "half-written").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG, seed=9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no staging folder left behind
    assert_trees_equal(checkpoint.restore(tmp_path / "ck").model, good.model)


def test_a_save_interrupted_between_its_renames_still_restores(tmp_path):
    model = models.make_vae(MODEL_CONFIG)
    checkpoint.save(tmp_path / "ck", model)
    (tmp_path / "ck").rename(tmp_path / ".ck.retired")  # the state between the two renames of a swap
    assert_trees_equal(checkpoint.restore(tmp_path / "ck").model, model)


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG, seed=0))
    newer = models.make_vae(MODEL_CONFIG, seed=1)
    checkpoint.save(tmp_path / "ck", newer)
    assert_trees_equal(checkpoint.restore(tmp_path / "ck").model, newer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_restoring_into_a_mismatching_config_names_the_fields(tmp_path):
    checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG))
    asked = models.VAEConfig(latent_dim=5, hidden_dims=(64,))
    with pytest.raises(checkpoint.CheckpointError, match="latent_dim: checkpoint has 3, asked for 5"):
        checkpoint.restore(tmp_path / "ck", model_config=asked)


def test_damaged_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="not a vaekit checkpoint"):
        checkpoint.restore(tmp_path / "nowhere")
    path = checkpoint.save(tmp_path / "ck", models.make_vae(MODEL_CONFIG))
    (path / "meta.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="meta.json: damaged"):
        checkpoint.restore(path)
    path = checkpoint.save(tmp_path / "ck2", models.make_vae(MODEL_CONFIG))
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(checkpoint.CheckpointError, match="format 99, this vaekit reads format 1"):
        checkpoint.restore(path)
    path = checkpoint.save(tmp_path / "ck3", models.make_vae(MODEL_CONFIG))
    for item in (path / "state").iterdir():
        if item.is_dir():
            for f in item.rglob("*"):
                if f.is_file():
                    f.write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="cannot restore the arrays"):
        checkpoint.restore(path)
