"""The command line: train writes a checkpoint and metrics.json, evaluate prints JSON."""

import json
import os
import socket
import subprocess
import sys

import pytest

from vaekit import checkpoint


def vaekit(*args, check=True):
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, timeout=600,
                          check=check)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    vaekit("train", "--dataset", "mnist", "--model", "mlp", "--latent", "8", "--beta", "1", "--epochs", "2",
           "--seed", "0", "--out", str(out), "--quiet")
    return out


def test_train_writes_a_checkpoint_and_per_epoch_metrics(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist"
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2]
    for entry in metrics["history"]:
        assert {"images_per_s", "train_neg_elbo", "test_neg_elbo", "test_rate", "test_distortion"} <= set(entry)
    assert metrics["history"][1]["test_neg_elbo"] < metrics["history"][0]["test_neg_elbo"]
    restored = checkpoint.restore(run_dir / "checkpoint")
    assert restored.model_config.latent_dim == 8
    assert restored.history == metrics["history"]


def test_evaluate_prints_test_elbo_and_an_iwae_bound_named_for_what_it_is(run_dir):
    result = json.loads(vaekit("evaluate", str(run_dir), "--num-samples", "50", "--quiet").stdout)
    assert result["test_images"] == 2000
    assert result["num_samples"] == 50
    assert "iwae_nll" not in result  # grey digits: the bound is a cross-entropy, not -log p(x)
    assert result["iwae_bce"] < result["test_neg_elbo"]
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert result["test_neg_elbo"] == pytest.approx(history[-1]["test_neg_elbo"], rel=0.01)


@pytest.mark.parametrize("args, message", [
    (["train", "--latent", "0", "--out", "x"], "latent_dim must be a positive integer; got 0"),
    (["train", "--beta", "-1", "--out", "x"], "beta must be a finite number >= 0; got -1.0"),
    (["train", "--dataset", "cifar", "--out", "x"], "argument --dataset: invalid choice: 'cifar'"),
    (["evaluate", "/nonexistent/run"], "not a vaekit checkpoint"),
    (["train", "--coordinator", "127.0.0.1:1234", "--out", "x"], "give all three or none"),
    (["train", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2", "--out", "x"],
     "--process-id must be in 0..1"),
])
def test_bad_arguments_exit_with_a_clear_message(args, message):
    result = vaekit(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_evaluate_on_binarized_digits_reports_a_true_nll(tmp_path):
    vaekit("train", "--dataset", "mnist", "--binarization", "dynamic", "--latent", "8", "--epochs", "1",
           "--out", str(tmp_path), "--quiet")
    result = json.loads(vaekit("evaluate", str(tmp_path), "--num-samples", "20", "--quiet").stdout)
    assert result["binarization"] == "dynamic"
    assert "iwae_bce" not in result
    assert result["iwae_nll"] < result["test_neg_elbo"]


def test_train_on_two_processes_writes_one_checkpoint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    args = ["train", "--dataset", "mnist", "--latent", "4", "--epochs", "1", "--batch-size", "64", "--quiet",
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    cluster = [subprocess.Popen([sys.executable, "-m", "vaekit", *args, "--process-id", str(i),
                                 "--out", str(tmp_path / f"out{i}")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for process in cluster:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    metrics = json.loads((tmp_path / "out0" / "metrics.json").read_text())
    assert (metrics["processes"], metrics["devices"]) == (2, 2)
    assert checkpoint.restore(tmp_path / "out0" / "checkpoint").history == metrics["history"]
    assert not (tmp_path / "out1").exists()  # only process 0 writes
