"""The feature network: a cache that never retrains, features that are deterministic and separate data from noise."""

import dataclasses
import json

import numpy as np
import pytest

import vaekit as vk
from vaekit import features, train

TINY = dict(train_size=1024, train_config=vk.TrainConfig(epochs=1, batch_size=64),
            model_config=vk.ClassifierConfig(channels=(8, 16), hidden_dim=32))


@pytest.fixture
def fresh_memory(monkeypatch):
    """An empty in-memory cache: what a new process sees."""
    monkeypatch.setattr(features, "_LOADED", {})


@pytest.fixture(scope="module")
def tiny_network(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    network, record = features.feature_network("fashion-mnist", root=root, **TINY)
    return root, network, record


@pytest.fixture(scope="module")
def test_images():
    return vk.load("fashion-mnist", "test").images[:500]


def forbid_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("feature_network trained although the network is cached")

    monkeypatch.setattr(train, "fit", no_training)
    monkeypatch.setattr(vk, "fit", no_training)


def test_the_trained_network_is_recorded_under_the_zoo_root_and_classifies(tiny_network):
    root, network, record = tiny_network
    assert isinstance(network, vk.Classifier)
    assert record.path == (root / "features" / f"fashion-mnist-{record.spec.key}").absolute()
    assert (record.path / "record.json").is_file() and (record.path / "checkpoint").is_dir()
    # 16 steps on 1024 images: far from the full network's 90%, yet three times chance (10%).
    assert 0.3 < record.test_accuracy <= 1.0
    assert record.test_cross_entropy > 0


def test_a_second_call_reads_the_disk_and_a_third_answers_from_memory(tiny_network, fresh_memory, monkeypatch):
    root, network, record = tiny_network
    forbid_training(monkeypatch)
    from_disk, disk_record = features.feature_network("fashion-mnist", root=root, **TINY)
    assert from_disk is not network and disk_record == record
    x = vk.load("fashion-mnist", "test").images[:8]
    np.testing.assert_array_equal(np.asarray(from_disk(x)), np.asarray(network(x)))  # restored bit for bit
    monkeypatch.setattr(vk.checkpoint, "restore", lambda *a, **k: pytest.fail("read the disk again"))
    assert features.feature_network("fashion-mnist", root=root, **TINY)[0] is from_disk


def test_every_setting_is_part_of_the_key():
    base = features.FeatureSpec("fashion-mnist", **TINY)
    variants = [
        dataclasses.replace(base, dataset="mnist"),
        dataclasses.replace(base, train_size=512),
        dataclasses.replace(base, model_config=vk.ClassifierConfig(channels=(8, 16), hidden_dim=64)),
        dataclasses.replace(base, train_config=vk.TrainConfig(epochs=2, batch_size=64)),
        dataclasses.replace(base, train_config=vk.TrainConfig(epochs=1, batch_size=64, seed=1)),
    ]
    assert len({spec.key for spec in [base, *variants]}) == 1 + len(variants)
    assert features.FeatureSpec.from_dict(json.loads(json.dumps(base.to_dict()))) == base


def test_a_damaged_record_is_a_clear_error(tiny_network, fresh_memory, tmp_path):
    root, _, record = tiny_network
    copy = tmp_path / "features" / record.path.name
    copy.mkdir(parents=True)
    (copy / "record.json").write_text('{"features_format": 1, "spec": ')
    with pytest.raises(vk.CheckpointError, match=r"record\.json: damaged .*delete .* to retrain"):
        features.feature_network("fashion-mnist", root=tmp_path, **TINY)


def test_a_folder_without_its_record_counts_as_absent(tmp_path, fresh_memory, monkeypatch):
    forbid_training(monkeypatch)
    (features.FeatureSpec("fashion-mnist", **TINY).path(tmp_path) / "checkpoint").mkdir(parents=True)
    with pytest.raises(AssertionError, match="trained although"):  # interrupted: it trains again
        features.feature_network("fashion-mnist", root=tmp_path, **TINY)


def test_features_have_the_hidden_width_and_do_not_depend_on_batching(tiny_network, test_images):
    _, network, _ = tiny_network
    whole = features.embed(test_images, network=network)
    assert whole.shape == (500, 32) and whole.dtype == np.float32
    np.testing.assert_array_equal(features.embed(test_images, network=network), whole)
    np.testing.assert_allclose(features.embed(test_images, network=network, batch_size=64), whole, atol=1e-5)
    np.testing.assert_allclose(whole[:8], np.asarray(network.features(test_images[:8])), atol=1e-5)


def test_frechet_distance_on_features_is_zero_for_the_same_images_and_large_for_noise(tiny_network, test_images):
    _, network, _ = tiny_network
    real = features.embed(test_images, network=network)
    noise = np.random.default_rng(0).uniform(size=test_images.shape).astype(np.float32)
    other_real = features.embed(vk.load("fashion-mnist", "test").images[500:1000], network=network)
    assert vk.metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    to_real = vk.metrics.frechet_distance(real, other_real)
    to_noise = vk.metrics.frechet_distance(real, features.embed(noise, network=network))
    assert to_noise > 10 * to_real


def test_bad_input_is_a_clear_error(tiny_network, tmp_path):
    _, network, _ = tiny_network
    with pytest.raises(ValueError, match=r"dataset must be one of 'fashion-mnist', 'mnist'; got 'cifar'"):
        features.feature_network("cifar", root=tmp_path)
    with pytest.raises(vk.ConfigError, match="train_size must be a positive integer or None; got 0"):
        features.feature_network(root=tmp_path, train_size=0)
    with pytest.raises(ValueError, match=r"images must be a non-empty batch of shape \(n, 28, 28, 1\).*\(5, 28, 28\)"):
        features.embed(np.zeros((5, 28, 28), np.float32), network=network)
    with pytest.raises(ValueError, match="images must be floating point"):
        features.embed(np.zeros((5, 28, 28, 1), np.uint8), network=network)
    with pytest.raises(TypeError, match="network must be a vaekit.models.Classifier"):
        features.embed(np.zeros((5, 28, 28, 1), np.float32), network=vk.make_vae(vk.VAEConfig()))
