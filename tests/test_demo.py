"""The demo runs on built-in shapes and writes its report and pictures."""

from __future__ import annotations

import json

from mvdecor.demo import run_demo


def test_demo_writes_report(tmp_path):
    report = run_demo(tmp_path / "demo", shapes_per_category=1, workers=1, pretrain_iterations=0)
    assert report.name == "report.md" and report.is_file()
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["preset"] == "cpu" and summary["shapes"] == 5
    pictures = sorted((tmp_path / "demo" / "pictures").glob("*.png"))
    assert len(pictures) == 5
    text = report.read_text()
    for row in summary["shapes_detail"]:
        assert row["shape"] in text and row["store_mb"] > 0
    assert (tmp_path / "demo" / "config.yaml").read_text().startswith("preset: cpu")


def test_demo_with_pretraining_reports_correspondence(tmp_path):
    report = run_demo(tmp_path / "demo", shapes_per_category=1, workers=1, pretrain_iterations=2)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    stage = summary["pretraining"]
    assert stage["iterations"] == 2
    assert set(stage["correspondence"]) == {"pretrained", "random_network", "normals"}
    assert "## Pre-training" in report.read_text()
    assert (tmp_path / "demo" / "pretrain" / "checkpoints" / "last.pt").is_file()
