"""The model zoo: keys that cover everything that determines a model, a cache that never retrains."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli, train, zoo


ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY_TRAINING = vk.TrainConfig(epochs=1, batch_size=64)
Zoo = zoo.Zoo  # kept: the command test replaces zoo.Zoo by tiny_zoo


def tiny_zoo(root, **overrides) -> zoo.Zoo:
    settings = dict(dataset="mnist", train_size=512, train_config=TINY_TRAINING,
                    model_config=vk.VAEConfig(hidden_dims=(64,)))
    settings.update(overrides)
    return Zoo(root, **settings)


@pytest.fixture
def count_fits(monkeypatch):
    calls = []
    original = train.fit

    def counting_fit(*args, **kwargs):
        calls.append(args[3] if len(args) > 3 else kwargs.get("config"))
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "fit", counting_fit)
    return calls


ALTERNATIVES = {
    "dataset": "fashion-mnist",
    "train_size": 256,
    "binarization": "dynamic",
    "model_config": {"architecture": "conv", "latent_dim": 3, "hidden_dims": (32,), "conv_channels": (8, 16),
                     "upsampling": "repeat", "likelihood": "gaussian", "gaussian_variance": "fixed",
                     "gaussian_std": 0.2, "num_classes": 10},
    "train_config": {"epochs": 2, "batch_size": 32, "learning_rate": 2e-3, "beta": 4.0, "warmup_epochs": 1.0,
                     "free_bits": 0.1, "free_bits_per": "minibatch", "seed": 1, "loop": "step",
                     "eval_batch_size": 500},
}


def test_key_changes_with_every_field_that_determines_the_model():
    base = zoo.PointSpec("mnist", vk.VAEConfig(), vk.TrainConfig(), train_size=512)
    model_fields = {f.name for f in dataclasses.fields(vk.VAEConfig)} - {"image_shape"}
    train_fields = {f.name for f in dataclasses.fields(vk.TrainConfig)}
    assert model_fields == set(ALTERNATIVES["model_config"])
    assert train_fields == set(ALTERNATIVES["train_config"])
    keys = {base.key}
    for field in ("dataset", "train_size", "binarization"):
        keys.add(dataclasses.replace(base, **{field: ALTERNATIVES[field]}).key)
    for group in ("model_config", "train_config"):
        for field, value in ALTERNATIVES[group].items():
            config = dataclasses.replace(getattr(base, group), **{field: value})
            keys.add(dataclasses.replace(base, **{group: config}).key)
    assert len(keys) == 1 + 3 + len(model_fields) + len(train_fields)
    assert zoo.PointSpec.from_dict(json.loads(json.dumps(base.to_dict()))) == base


def test_a_trained_point_is_read_back_without_training(tmp_path, count_fits):
    first = tiny_zoo(tmp_path).load(beta=1.0, latent_dim=2, progress=False)
    assert len(count_fits) == 1 and count_fits[0].beta == 1.0
    assert (first.record.path / "point.json").is_file()
    assert np.isfinite([first.record.rate, first.record.distortion]).all()
    assert first.record.neg_elbo == pytest.approx(first.record.rate + first.record.distortion, rel=1e-5)

    again = tiny_zoo(tmp_path)  # a new process would see only the disk
    assert again.is_trained(beta=1.0, latent_dim=2) and not again.is_loaded(beta=1.0, latent_dim=2)
    second = again.load(beta=1.0, latent_dim=2, progress=False)
    assert len(count_fits) == 1, "a cached point was retrained"
    z = np.linspace(-2, 2, 6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(np.asarray(first.model.decode(z)), np.asarray(second.model.decode(z)))
    assert second.record == first.record
    assert again.load(beta=1.0, latent_dim=2) is second  # then from memory


def test_points_differing_in_beta_latent_or_setup_are_different_models(tmp_path, count_fits):
    family = tiny_zoo(tmp_path)
    family.load(beta=1.0, latent_dim=2, progress=False)
    family.load(beta=4.0, latent_dim=2, progress=False)
    other = tiny_zoo(tmp_path, train_size=256)  # same root, different training data
    other.load(beta=1.0, latent_dim=2, progress=False)
    assert len(count_fits) == 3
    assert [(r.spec.beta, r.spec.latent_dim) for r in family.records()] == [(1.0, 2), (4.0, 2)]
    assert [(r.spec.beta, r.spec.train_size) for r in other.records()] == [(1.0, 256)]
    low, high = family.records()
    assert high.rate < low.rate, "a larger beta should buy a lower rate"


def test_a_point_without_its_record_counts_as_absent_and_is_retrained(tmp_path, count_fits):
    family = tiny_zoo(tmp_path)
    entry = family.load(beta=1.0, latent_dim=2, progress=False)
    (entry.record.path / "point.json").unlink()  # as if training had been interrupted before the record
    fresh = tiny_zoo(tmp_path)
    assert not fresh.is_trained(beta=1.0, latent_dim=2)
    with pytest.raises(LookupError, match=r"not in the zoo .*python -m vaekit zoo"):
        fresh.load(beta=1.0, latent_dim=2, train=False)
    fresh.load(beta=1.0, latent_dim=2, progress=False)
    assert len(count_fits) == 2 and fresh.is_trained(beta=1.0, latent_dim=2)


def test_a_damaged_record_is_a_clear_error(tmp_path):
    entry = tiny_zoo(tmp_path).load(beta=1.0, latent_dim=2, progress=False)
    (entry.record.path / "point.json").write_text("{not json")
    with pytest.raises(vk.CheckpointError, match=r"point.json: damaged .*delete .* to retrain"):
        tiny_zoo(tmp_path).load(beta=1.0, latent_dim=2)


def test_progress_callback_reaches_the_total(tmp_path):
    seen = []
    tiny_zoo(tmp_path).load(beta=1.0, latent_dim=2, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == 512 // 64


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dataset must be one of 'fashion-mnist', 'mnist'; got 'cifar'"):
        zoo.Zoo(tmp_path, dataset="cifar")
    with pytest.raises(ValueError, match=r"train_size must be a positive integer or None; got 0"):
        tiny_zoo(tmp_path, train_size=0)
    with pytest.raises(ValueError, match=r"beta must be a finite number >= 0; got -1"):
        tiny_zoo(tmp_path).spec(beta=-1, latent_dim=2)
    with pytest.raises(ValueError, match=r"latent_dim must be a positive integer; got 0"):
        tiny_zoo(tmp_path).spec(beta=1.0, latent_dim=0)


def test_root_is_the_environment_else_the_checkouts_zoo_never_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(zoo.ROOT_ENV, str(tmp_path / "elsewhere"))
    assert zoo.Zoo().root == tmp_path / "elsewhere"
    monkeypatch.delenv(zoo.ROOT_ENV)
    assert zoo.Zoo().root == zoo.DEFAULT_ROOT == ROOT / "zoo"  # an installed kit's: tests/test_datasets.py


def snapshot(folder: pathlib.Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time (empty if there is no folder)."""
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


NOTEBOOK_ZOO = """\
import vaekit as vk
zoo = vk.zoo.Zoo(dataset="mnist", train_size=256, train_config=vk.TrainConfig(epochs=1, batch_size=64))
print(zoo.load(beta=1.0, latent_dim=2, progress=False).record.path)
"""


def test_notebooks_under_the_suite_train_into_a_temporary_zoo_not_the_work_tree(tmp_path):
    """nbval's kernels inherit this process's environment, as this child process does (tests/conftest.py)."""
    before = snapshot(ROOT / "zoo")
    run = subprocess.run([sys.executable, "-c", NOTEBOOK_ZOO], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    point = pathlib.Path(run.stdout.splitlines()[-1])
    assert point.is_relative_to(os.environ[zoo.ROOT_ENV]) and (point / "point.json").is_file()
    assert not point.is_relative_to(ROOT), f"a notebook's zoo landed in the work tree: {point}"
    assert snapshot(ROOT / "zoo") == before, "the repository's zoo/ changed"


def test_zoo_command_trains_the_missing_points_only(tmp_path, monkeypatch, capsys, count_fits):
    # The command's grid uses the chapters' training budget; a tiny one keeps this test fast.
    monkeypatch.setattr(cli.zoo, "Zoo", tiny_zoo)
    args = ["zoo", "--dataset", "mnist", "--out", str(tmp_path), "--betas", "0.5", "2", "--latent-dims", "2"]
    assert cli.main([*args, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/2] beta=0.5 latent_dim=2: not trained" and len(count_fits) == 0
    assert cli.main([*args, "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("[2/2] beta=2 latent_dim=2: trained in ")
    assert json.loads(lines[-1])["trained"] == 2 and len(count_fits) == 2
    assert cli.main([*args, "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["trained"] == 0 and summary["already_trained"] == 2 and len(count_fits) == 2
