"""benchmarks/reference_table.py: one real row end to end, resuming, interrupted writes, and the Markdown table."""

import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import sys

import numpy as np
import pytest
from flax import nnx

import vaekit as vk
from vaekit import features

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "reference_table.py"
_spec = importlib.util.spec_from_file_location("reference_table", SCRIPT)
rt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = rt  # dataclasses look their module up while building the classes
_spec.loader.exec_module(rt)

# A few hundred images, one epoch, K = 8: every code path of a row, in seconds.
MINUSCULE = rt.Budget(fashion_mlp_epochs=1, fashion_conv_epochs=1, mnist_mlp_epochs=1, mnist_conv_epochs=1,
                      seeds=(0,), iwae_samples=8, iwae_images=300, fd_samples=300, reconstruction_images=300,
                      train_images=512, test_images=300, batch_size=64)
ROW_KEYS = {"dataset", "likelihood", "architecture", "latent_dim", "seeds", "parameters", "seconds_per_epoch",
            "test_neg_elbo", "iwae", "psnr", "ssim", "fd", "precision", "recall"}
TOP_KEYS = {"command", "date", "budget", "machine", "commit", "complete", "rows"}


@pytest.fixture(scope="module")
def feature_net():
    """A small untrained classifier: its features are a fixed random map, enough to exercise FD and precision/recall
    in seconds (the kit's trained network takes minutes; vaekit.features has its own tests)."""
    return vk.Classifier(vk.ClassifierConfig(channels=(8, 16), hidden_dim=32), rngs=nnx.Rngs(0))


@pytest.fixture
def kit_features_are_tiny(monkeypatch, feature_net):
    """``feature_network(dataset)`` with its defaults answers with the small network."""
    monkeypatch.setattr(features, "feature_network", lambda dataset, **kwargs: (feature_net, None))


def fake_run(setup, dataset, seed, budget, **kwargs):
    """What ``measure`` returns, with values that identify the call."""
    value = 100.0 + seed + setup.latent_dim
    return {"dataset": dataset, "architecture": setup.architecture, "latent_dim": setup.latent_dim, "seed": seed,
            "epochs": budget.epochs(setup, dataset), "parameters": 1000, "seconds_per_epoch": 1.0,
            "test_neg_elbo": value, "iwae": value - 1, "iwae_neg_elbo": value, "psnr": 20.0, "ssim": 0.5,
            "fd": 10.0, "precision": 0.5, "recall": 0.5, "seconds": 2.0, "compile_seconds": 1.0}


TWO_SETUPS = (rt.Setup("mlp", 2), rt.Setup("conv", 8))
TWO_SEEDS = dataclasses.replace(MINUSCULE, seeds=(0, 1))


def run(path, budget=TWO_SEEDS, setups=TWO_SETUPS):
    return rt.run_table(budget, path, command="test", table_setups=setups, table_datasets=("fashion-mnist",),
                        log=lambda line: None)


def test_one_row_measured_with_a_minuscule_budget_has_every_field_with_sane_values(tmp_path, kit_features_are_tiny):
    path = tmp_path / "table.json"
    results = run(path, budget=MINUSCULE, setups=(rt.Setup("mlp", 2),))
    assert json.loads(path.read_text()) == results
    assert TOP_KEYS <= set(results) and results["complete"] is True
    assert results["budget"] == MINUSCULE.to_dict() and results["machine"]["cpu_count"] == os.cpu_count()
    (row,) = results["rows"]
    assert ROW_KEYS <= set(row)
    assert (row["dataset"], row["likelihood"], row["architecture"], row["latent_dim"], row["seeds"]) == (
        "fashion-mnist", "bernoulli-cross-entropy", "mlp", 2, [0])
    # 784-400 encoder with a mean and a log-variance head; 2-400-784 decoder.
    assert row["parameters"] == (784 * 400 + 400) + (400 * 4 + 4) + (2 * 400 + 400) + (400 * 784 + 784)
    for name in rt.METRICS:
        assert math.isfinite(row[name]["mean"]) and row[name]["std"] is None, name  # one seed: no spread
    assert row["seconds_per_epoch"]["mean"] > 0
    assert (row["iwae"]["num_samples"], row["iwae"]["num_images"], row["fd"]["num_samples"]) == (8, 300, 300)
    assert row["test_neg_elbo"]["num_images"] == row["psnr"]["num_images"] == row["ssim"]["num_images"] == 300
    # The IWAE bound is the tighter one: on the same images, -L_8 <= -ELBO (up to the ELBO's one-sample noise).
    assert row["iwae"]["mean"] <= row["iwae"]["neg_elbo"]["mean"] + 0.5
    # A cross-entropy against grey targets is at least their entropy, far above 0 for Fashion-MNIST.
    assert 50 < row["iwae"]["mean"] < row["test_neg_elbo"]["mean"] + 50
    assert 5 < row["psnr"]["mean"] < 40 and 0 < row["ssim"]["mean"] <= 1
    assert row["fd"]["mean"] >= 0
    for name in ("precision", "recall"):
        assert 0 <= row[name]["mean"] <= 1


def test_binarized_mnist_scores_a_true_nll_and_compares_binary_samples(feature_net):
    run = rt.measure(rt.Setup("mlp", 2), "mnist-binarized", 1, MINUSCULE, network=feature_net)
    assert run["seed"] == 1 and run["epochs"] == 1
    assert 0 < run["iwae"] <= run["iwae_neg_elbo"] + 0.5  # -log p(x) of a binary image is >= 0
    assert all(0 <= run[name] <= 1 for name in ("precision", "recall")) and run["fd"] >= 0
    model = vk.make_vae(vk.VAEConfig(latent_dim=2), seed=0)
    drawn = rt.prior_samples(model, 50, binary=True, key=rt.jax.random.key(0))
    means = rt.prior_samples(model, 50, binary=False, key=rt.jax.random.key(0))
    assert set(np.unique(drawn)) <= {0.0, 1.0} and len(np.unique(means)) > 2


def measure_until(limit, calls):
    """A ``measure`` that records its calls and interrupts the run at call number ``limit + 1``."""

    def measure(setup, dataset, seed, budget, **kwargs):
        if len(calls) == limit:
            raise KeyboardInterrupt
        calls.append((setup.architecture, seed))
        return fake_run(setup, dataset, seed, budget)

    return measure


def test_a_rerun_skips_what_is_measured_and_measures_the_rest(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    calls = []
    monkeypatch.setattr(rt, "measure", measure_until(3, calls))
    with pytest.raises(KeyboardInterrupt):
        run(path)
    partial = json.loads(path.read_text())
    assert calls == [("mlp", 0), ("conv", 0), ("mlp", 1)]  # seeds outermost
    assert partial["complete"] is False
    assert {row["architecture"]: row["seeds"] for row in partial["rows"]} == {"mlp": [0, 1], "conv": [0]}

    calls.clear()
    monkeypatch.setattr(rt, "measure", measure_until(math.inf, calls))
    results = run(path)
    assert calls == [("conv", 1)]
    assert results["complete"] is True
    conv = next(row for row in results["rows"] if row["architecture"] == "conv")
    assert conv["seeds"] == [0, 1]
    assert conv["test_neg_elbo"]["mean"] == 108.5 and conv["test_neg_elbo"]["std"] == pytest.approx(0.5**0.5)

    calls.clear()
    assert run(path)["rows"] == results["rows"] and calls == []  # nothing left to measure


def test_a_table_of_another_budget_is_never_mixed_in(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    monkeypatch.setattr(rt, "measure", measure_until(math.inf, []))
    run(path)
    before = path.read_text()
    with pytest.raises(ValueError, match="another budget"):
        run(path, budget=dataclasses.replace(TWO_SEEDS, fashion_mlp_epochs=2))
    assert path.read_text() == before


def test_an_interrupted_write_leaves_the_previous_table_intact(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    monkeypatch.setattr(rt, "measure", measure_until(1, []))
    with pytest.raises(KeyboardInterrupt):
        run(path)
    before = path.read_text()
    assert len(json.loads(before)["rows"]) == 1

    def interrupted(source, destination):
        raise KeyboardInterrupt  # the process dies between writing the new table and putting it in place

    monkeypatch.setattr(rt, "measure", measure_until(math.inf, []))
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]  # no half-written file left behind


KNOWN = {
    "command": "python benchmarks/reference_table.py", "date": "2025-01-02T03:04:05+00:00", "complete": False,
    "budget": {"seeds": [0, 1], "learning_rate": 0.001, "batch_size": 128},
    "rows": [
        {"dataset": "fashion-mnist", "likelihood": "bernoulli-cross-entropy", "architecture": "conv", "latent_dim": 8,
         "seeds": [0], "parameters": 186804, "epochs": 2, "seconds_per_epoch": {"mean": 46.74, "std": None},
         "test_neg_elbo": {"mean": 249.371, "std": None, "num_images": 10000},
         "iwae": {"mean": 236.948, "std": None, "num_samples": 100, "num_images": 200},
         "psnr": {"mean": 18.256, "std": None, "num_images": 1000},
         "ssim": {"mean": 0.5931, "std": None, "num_images": 1000},
         "fd": {"mean": 75.483, "std": None, "num_samples": 2000},
         "precision": {"mean": 0.642, "std": None}, "recall": {"mean": 0.8884, "std": None}},
        {"dataset": "fashion-mnist", "likelihood": "bernoulli-cross-entropy", "architecture": "mlp", "latent_dim": 8,
         "seeds": [0, 1], "parameters": 638400, "epochs": 8, "seconds_per_epoch": {"mean": 5.24, "std": 0.3},
         "test_neg_elbo": {"mean": 244.029, "std": 0.2, "num_images": 10000},
         "iwae": {"mean": 232.599, "std": 0.25, "num_samples": 100, "num_images": 200},
         "psnr": {"mean": 19.04, "std": 0.01, "num_images": 1000},
         "ssim": {"mean": 0.619, "std": 0.004, "num_images": 1000},
         "fd": {"mean": 92.403, "std": 1.5, "num_samples": 2000},
         "precision": {"mean": 0.724, "std": 0.01}, "recall": {"mean": 0.885, "std": 0.02}},
    ],
}


def test_format_table_renders_a_known_table():
    assert rt.format_table(KNOWN) == (
        "Mean ± std over seeds 0, 1, each trained from scratch (Adam 0.001, batch 128). Measured "
        "2025-01-02T03:04:05+00:00 by `python benchmarks/reference_table.py` (incomplete: not every row has every "
        "seed).\n\n"
        "**Fashion-MNIST, grey pixels: the -ELBO and IWAE columns are Bernoulli cross-entropies against grey targets "
        "(nats per image), not likelihoods.** Test −ELBO on the first 10,000 test images, IWAE on the first 200, "
        "PSNR and SSIM of the reconstructions of the first 1,000; FD on the kit's classifier features (not FID), "
        "precision and recall: 2,000 prior samples against the first 2,000 test images.\n\n"
        "| architecture | latent | parameters | epochs | s / epoch | test −ELBO | IWAE-100 | PSNR (dB) | SSIM | FD "
        "| precision | recall |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        "| MLP 784-400 | 8 | 638,400 | 8 | 5.2 ± 0.3 | 244.03 ± 0.20 | 232.60 ± 0.25 | 19.04 ± 0.01 | 0.619 ± 0.004 "
        "| 92.40 ± 1.50 | 0.724 ± 0.010 | 0.885 ± 0.020 |\n"
        "| conv 32-64 (seeds 0) | 8 | 186,804 | 2 | 46.7 | 249.37 | 236.95 | 18.26 | 0.593 | 75.48 | 0.642 | 0.888 |"
    )


def test_main_writes_the_quick_table_apart_and_ends_with_a_json_summary(monkeypatch, capsys):
    calls = []

    def fake_run_table(budget, path, *, command, log):
        calls.append((budget, path, command))
        return KNOWN | {"seconds": 12.0}

    monkeypatch.setattr(rt, "run_table", fake_run_table)
    assert rt.main(["--quick"]) == 0
    assert calls == [(rt.QUICK, rt.QUICK_PATH, "python benchmarks/reference_table.py --quick")]
    assert rt.QUICK_PATH != rt.FULL_PATH
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["complete"] is False and summary["measurements"] == 3
    assert summary["output"] == "benchmarks/results/reference_table.quick.json"


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="architecture must be one of 'mlp', 'conv'"):
        rt.Setup("resnet", 8)
    with pytest.raises(ValueError, match="latent_dim of 'article-001' is the article's, 128"):
        rt.Setup("article-001", 64)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        dataclasses.replace(MINUSCULE, seeds=(0, 0))
    with pytest.raises(vk.ConfigError, match="iwae_samples"):
        dataclasses.replace(MINUSCULE, iwae_samples=0)
    with pytest.raises(ValueError, match="dataset must be one of 'fashion-mnist', 'mnist-binarized'"):
        rt.measure(rt.Setup("mlp", 2), "mnist", 0, MINUSCULE)


def test_the_table_holds_every_setup_and_the_articles_own():
    names = [(setup.architecture, setup.latent_dim) for setup in rt.setups()]
    assert names == [("mlp", d) for d in (2, 8, 16, 32, 64)] + [("conv", d) for d in (2, 8, 16, 32, 64)] + [
        ("article-001", 128), ("latent-512", 512)]
    assert rt.Setup("article-001", 128).config == vk.articles.CORRECTED_001_CONFIG
    assert rt.Setup("latent-512", 512).config == vk.VAEConfig(latent_dim=512)
    assert rt.FULL.epochs(rt.Setup("conv", 2), "fashion-mnist") == rt.FULL.fashion_conv_epochs
    assert rt.FULL.epochs(rt.Setup("latent-512", 512), "mnist-binarized") == rt.FULL.mnist_mlp_epochs
