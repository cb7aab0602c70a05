"""The demo runs the whole pipeline on built-in shapes and writes its report folder.

The tests shrink the ``cpu`` preset (8 views of 64x64 per shape) and every
schedule to one step, so that each runs in seconds; the numbers they check
are shapes and ranges, not quality.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from mvdecor.demo import run_demo
from mvdecor.errors import ConfigError

#: 2 + 1 x 6 = 8 views of 64x64 per shape and 2 validation pairs: the pipeline's shapes, a fraction of its cost.
TINY_CONFIG = {"render": {"rings": 1, "segments": 6, "resolution": 64}, "pretrain": {"val_pairs": 2}}

TINY = dict(
    shapes_per_category=3,
    workers=1,
    finetune_iterations=1,
    labelled_shapes=1,
    test_fraction=0.34,
    config_overrides=TINY_CONFIG,
    progress=False,
)


def _in_unit_interval(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def test_demo_compares_mvdecor_with_scratch(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, pretrain_iterations=1, **TINY)
    assert report == out / "report.md" and report.is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "cpu" and summary["shapes"] == 6
    assert summary["categories"] == ["chair", "table"] and summary["methods"] == ["mvdecor", "scratch"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["preset"] == "cpu" and config["render"]["resolution"] == 64
    assert config["pretrain"]["iterations"] == 1 and config["pretrain"]["val_pairs"] == 2
    assert config["finetune"]["iterations"] == 1
    assert json.loads((out / "split.json").read_text())["categories"] == summary["split"]

    stage = summary["pretraining"]
    assert stage["iterations"] == 1 and stage["train_shapes"] == 4 and stage["val_shapes"] == 2
    assert set(stage["correspondence"]) == {"pretrained", "random_network", "normals"}
    assert (out / "pretrain" / "checkpoints" / "last.pt").is_file()

    for category in ("chair", "table"):
        runs = summary["fewshot"][category]
        assert set(runs) == {"mvdecor", "scratch"}
        assert runs["mvdecor"]["labelled_shapes"] == runs["scratch"]["labelled_shapes"]
        for method in ("mvdecor", "scratch"):
            for key in ("part_miou", "shape_miou", "pixel_miou_2d"):
                assert _in_unit_interval(runs[method][key]), (category, method, key)
            assert (out / runs[method]["checkpoint"]).is_file()
    for method in ("mvdecor", "scratch"):
        assert all(_in_unit_interval(v) for v in summary["mean"][method].values())
    assert summary["verdict"]["winner"] in ("mvdecor", "scratch", "tie", "mixed")
    assert summary["timings"]["total_s"] > 0 and len(summary["timings"]["finetune_and_evaluate_s"]) == 4

    test_shapes = [s for entry in summary["split"].values() for s in entry["test"]]
    assert sorted(summary["predictions"]) == sorted(test_shapes)
    for shape_id in test_shapes:
        assert (out / "pictures" / "predictions" / f"{shape_id}.png").is_file()
        for method in ("mvdecor", "scratch", "ground_truth"):
            for suffix in (".ply", ".glb", ".labels.txt", ".legend.json"):
                assert (out / "segmentations" / method / f"{shape_id}{suffix}").is_file()
        assert set(summary["predictions"][shape_id]["shape_miou"]) == {"mvdecor", "scratch"}
    assert len(list((out / "pictures").glob("*.png"))) == 6

    text = report.read_text()
    assert "## MvDeCor against training from scratch" in text and "## Pre-training" in text
    assert "| chair |" in text and "| table |" in text and "| **mean** |" in text
    assert "part mIoU MvDeCor" in text and "part mIoU scratch" in text
    assert "tiny CPU budgets" in text
    verdicts = (
        "**MvDeCor won**",
        "**Training from scratch won**",
        "**Neither method won**",
        "**No clear winner**",
    )
    assert sum(v in text for v in verdicts) == 1
    assert "## Where the time went" in text
    for shape_id in test_shapes:
        assert f"pictures/predictions/{shape_id}.png" in text


def test_demo_without_pretraining_runs_scratch_only_and_resumes(tmp_path):
    out = tmp_path / "demo"
    settings = dict(TINY, categories=("mug",))
    run_demo(out, pretrain_iterations=0, **settings)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == ["scratch"] and summary["pretraining"] is None
    assert summary["verdict"] is None
    assert set(summary["fewshot"]["mug"]) == {"scratch"}
    assert _in_unit_interval(summary["fewshot"]["mug"]["scratch"]["part_miou"])
    assert not (out / "pretrain").exists()
    text = (out / "report.md").read_text()
    assert "## Training from scratch" in text and "MvDeCor" not in text.split("## Predictions")[0]
    shape_id = next(iter(summary["predictions"]))
    assert (out / "segmentations" / "scratch" / f"{shape_id}.glb").is_file()

    # A second run reuses the finished fine-tuning run instead of training again.
    run_demo(out, pretrain_iterations=0, **settings)
    again = json.loads((out / "summary.json").read_text())
    assert again["reused_stages"] == ["fine-tune mug/scratch"]
    assert (
        again["fewshot"]["mug"]["scratch"]["part_miou"] == summary["fewshot"]["mug"]["scratch"]["part_miou"]
    )


def test_demo_needs_enough_training_shapes_for_k(tmp_path):
    with pytest.raises(ConfigError, match="labelled shapes"):
        run_demo(tmp_path / "demo", pretrain_iterations=0, **dict(TINY, labelled_shapes=3))
    assert not (tmp_path / "demo").exists()
