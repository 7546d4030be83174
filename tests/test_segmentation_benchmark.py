"""benchmarks/segmentation.py: a tiny end-to-end run yields every field, resumes, and ends with its JSON line."""

import importlib.util
import json
import math
import dataclasses
import pathlib

import numpy as np
import pytest

from vaekit import scenes

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "segmentation.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("segmentation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_script()

TINY = bench.Budget(train_scenes=48, test_scenes=16, size=32, binary_epochs=1, semantic_epochs=1, seeds=(0,),
                    models=("vae", "unet"), channels=(8, 16), batch_size=16, baseline_scenes=16, ambiguous_train=16,
                    ambiguous_test=6, ambiguous_epochs=1, ambiguous_models=("probunet", "unet"), ged_samples=(1, 4),
                    classifier_train_size=256)

HEADLINE_KEYS = ("unet_fg_iou", "threshold_fg_iou", "unet_miou", "classifier_ceiling", "probunet_ged", "unet_ged",
                 "ged_optimum", "seconds", "unet_fg_iou_64", "best_baseline_fg_iou_64")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("segmentation-benchmark") / "segmentation.json"
    return path, bench.run(TINY, path, command="pytest tiny", log=lambda line: None)


def _fraction(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_a_tiny_run_measures_every_field(tiny):
    path, results = tiny
    assert json.loads(path.read_text()) == json.loads(json.dumps(results))  # the file holds what was returned
    assert results["budget"] == TINY.to_dict() and results["command"] == "pytest tiny"
    assert results["vaekit_commit"] and results["machine"]["cpu_count"] >= 1

    runs = results["segmentation"]
    assert sorted(runs) == ["binary/unet/0", "binary/vae/0", "semantic/unet/0", "semantic/vae/0"]
    for run in runs.values():
        assert run["parameters"] > 0 and run["train_seconds"] > run["compile_seconds"] > 0
        assert set(run["scores"]) == ({"mean", "sampled"} if run["model"] == "vae" else {"mean"})
        for scores in run["scores"].values():
            if run["task"] == "binary":
                assert all(_fraction(scores[k]) for k in ("fg_iou", "dice", "boundary_f", "checkerboard"))
                assert scores["black_dots"] >= 0
            else:
                assert _fraction(scores["mean_iou"]) and _fraction(scores["pixel_accuracy"])
                assert len(scores["per_class_iou"]) == 11

    baselines = results["sections"]["baselines"]
    for name in ("otsu", "threshold", "region_growing", "constant"):
        assert _fraction(baselines[name]["fg_iou"]) and _fraction(baselines[name]["dice"])
    assert baselines["region_growing"]["tolerance"] in bench.REGION_TOLERANCES
    by_items = baselines["region_growing"]["fg_iou_by_items"]
    assert set(by_items) <= {"1", "2", "3"} and all(_fraction(v) for v in by_items.values())
    classifier = results["sections"]["classifier"]
    assert all(_fraction(classifier[k]) for k in ("item_pixels", "item_pixels_by_area", "item_pixels_on_top",
                                                  "box_crop"))
    assert classifier["items"] >= classifier["items_on_top"] == TINY.test_scenes

    optimum = results["sections"]["ged_reference"]["optimum"]
    assert optimum["1"] > 0 and math.isclose(optimum["4"], optimum["1"] / 4)  # the bias pi'D pi / n
    unet = results["ambiguous"]["unet/0"]["scores"]["mean"]
    assert unet["ged"]["1"] == pytest.approx(unet["ged"]["4"])  # one mask repeated: the GED ignores n
    assert unet["sample_diversity"] == 0.0
    probunet = results["ambiguous"]["probunet/0"]["scores"]
    assert set(probunet) == {"mean", "sampled"}
    assert all(v >= 0 for v in probunet["sampled"]["ged"].values()) and _fraction(probunet["sampled"]["hungarian_iou"])

    summary = results["summary"]
    assert set(summary["binary"]) == {"vae:mean", "vae:sampled", "unet"}
    assert summary["binary"]["unet"]["fg_iou"]["seeds"] == 1
    assert set(summary["ambiguous"]) == {"probunet:sampled", "probunet:mean", "unet"}
    tables = bench.format_tables(results)
    assert set(tables) == {"budget", "binary", "semantic", "baselines", "large_canvas", "classifier", "ambiguous"}
    large = results["large_canvas"]
    assert sorted(large) == ["baselines", "unet/0"]
    assert _fraction(large["unet/0"]["scores"]["mean"]["fg_iou"]) and _fraction(large["baselines"]["otsu"]["fg_iou"])
    assert summary["large_canvas"]["unet"]["fg_iou"]["seeds"] == 1 and "U-Net" in tables["large_canvas"]
    assert all(table.startswith("| ") for table in tables.values())
    assert "U-Net" in tables["binary"] and "optimum" in tables["ambiguous"]


def test_the_last_printed_line_is_the_headline_json(tiny, capsys):
    bench.report(tiny[1])
    headline = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in HEADLINE_KEYS:
        assert isinstance(headline[key], float), key
    assert headline["ged_samples"] == 4 and headline["ged_optimum"] > 0
    assert headline["seconds"] == pytest.approx(bench.measured_seconds(tiny[1]))


def test_a_rerun_under_the_same_budget_skips_measured_rows(tiny, monkeypatch):
    path, results = tiny
    for name in ("train", "baseline_scores", "classifier_ceiling", "ged_reference"):
        monkeypatch.setattr(bench, name, lambda *a, name=name, **k: pytest.fail(f"{name} ran again"))
    lines = []
    again = bench.run(TINY, path, command="pytest rerun", log=lines.append)
    assert any("resuming" in line for line in lines)
    for part in ("segmentation", "ambiguous", "sections", "large_canvas"):
        assert again[part] == results[part]


def test_another_budget_or_other_scenes_start_afresh(tmp_path):
    path = tmp_path / "segmentation.json"
    path.write_text(json.dumps({"results_format": bench.RESULTS_FORMAT, "budget": bench.QUICK.to_dict(),
                                "data": "0123", "segmentation": {"binary/unet/0": {}}, "ambiguous": {},
                                "sections": {}}))
    lines = []
    nothing = {"segmentation": {}, "ambiguous": {}, "sections": {}, "large_canvas": {}}
    assert bench._load(path, TINY, "0123", lines.append) == nothing
    assert "another budget" in lines[-1]
    assert bench._load(path, bench.QUICK, "4567", lines.append) == nothing
    assert "other scenes" in lines[-1]
    assert bench._load(path, bench.QUICK, "0123", lines.append)["segmentation"] == {"binary/unet/0": {}}


def test_the_data_fingerprint_tells_scenes_apart():
    a = scenes.segmentation_scenes(4, "test", seed=0, size=32)
    assert bench.data_fingerprint(a) == bench.data_fingerprint(scenes.segmentation_scenes(4, "test", seed=0, size=32))
    assert bench.data_fingerprint(a) != bench.data_fingerprint(scenes.segmentation_scenes(4, "test", seed=1, size=32))
    assert bench.data_fingerprint(a) != bench.data_fingerprint(a.binary())


def test_best_constant_mask_is_all_foreground_or_all_background():
    target = np.zeros((3, 4, 4), bool)
    target[0, :2, :2] = True  # a quarter: all foreground scores IoU 1/4
    target[2] = True          # all foreground: IoU 1
    # Image 1 is empty: the empty prediction matches it (two empty masks have IoU 1).
    assert bench.constant_prediction_scores(target)["fg_iou"] == pytest.approx((0.25 + 1 + 1) / 3)


def test_item_crops_hold_each_visible_item_alone():
    scene_set = scenes.segmentation_scenes(6, "test", seed=3, size=32, items_per_scene=(1, 1), background="black")
    items = bench.item_crops(scene_set, masked=True)
    crops, labels = items["crops"], items["labels"]
    assert crops.shape == (6, 28, 28, 1) and labels.tolist() == (scene_set.box_classes[:, 0] - 1).tolist()
    assert np.allclose(crops.max(axis=(1, 2, 3)), 1.0) and items["on_top"].all()
    # Every pixel of the item, and nothing else, is kept.
    visible = np.count_nonzero(scene_set.instances, axis=(1, 2))
    assert (np.count_nonzero(crops, axis=(1, 2, 3)) == visible).all() and (items["pixels"] == visible).all()


def test_only_the_item_painted_last_is_on_top():
    scene_set = scenes.segmentation_scenes(8, "test", seed=0, size=32, items_per_scene=(3, 3))
    items = bench.item_crops(scene_set, masked=False)
    assert items["on_top"].sum() == 8  # one per scene
    assert len(items["labels"]) == (scene_set.boxes[:, :, 0] >= 0).sum()


def test_visible_items_counts_the_instances_that_show_a_pixel():
    scene_set = scenes.segmentation_scenes(20, "test", seed=3, size=32)
    expected = [len(set(np.unique(instances)) - {0}) for instances in scene_set.instances]
    assert bench.visible_items(scene_set).tolist() == expected
    hidden = scene_set.instances.copy()
    hidden[0][hidden[0] == hidden[0].max()] = 0
    assert bench.visible_items(dataclasses.replace(scene_set, instances=hidden))[0] == expected[0] - 1
