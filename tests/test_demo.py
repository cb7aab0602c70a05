"""The demo runs the whole pipeline on built-in shapes and writes its report folder.

The tests shrink the ``cpu`` preset (8 views of 64x64 per shape) and every
schedule to one step, so that each runs in seconds; the numbers they check
are shapes and ranges, not quality.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from PIL import Image

from mvdecor import demo
from mvdecor.cli import main
from mvdecor.demo import run_demo
from mvdecor.demo.report import lookup_of as report_lookup
from mvdecor.errors import ConfigError
from mvdecor.inference.segment import Segmenter
from mvdecor.train.checkpoint import NETWORK_ENTRIES, load_checkpoint

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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _in_unit_interval(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


@pytest.fixture
def segmented(monkeypatch) -> list[str]:
    """The name of every mesh :meth:`Segmenter.segment` is called on, in order."""
    calls: list[str] = []
    original = Segmenter.segment

    def counting(self, mesh, *args, **kwargs):
        calls.append(mesh.name)
        return original(self, mesh, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", counting)
    return calls


def _check_pictures(out: Path) -> set[str]:
    """Check report.html and report.md against the pictures; the pictures both reference.

    Every picture either report references is a valid PNG in ``out``, and every
    PNG under ``out/pictures`` is shown in report.html.
    """
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    in_page = {unquote(src) for src in re.findall(r'<img src="([^"]+)"', page)}
    in_markdown = set(re.findall(r"\]\(([^)\s]+\.png)\)", markdown))
    assert "](report.html)" in markdown
    for name in in_page | in_markdown:
        path = out / name
        assert path.is_file(), name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as image:
            image.verify()
    written = {p.relative_to(out).as_posix() for p in (out / "pictures").rglob("*.png")}
    assert written == in_page, written ^ in_page
    assert in_markdown <= in_page
    return in_page


def _check_transfer(summary: dict, out: Path) -> None:
    """The learning-free transfer ran beside the networks: valid 3D scores, no 2D score, no network."""
    for category, runs in summary["fewshot"].items():
        run = runs["transfer"]
        assert run["labelled_shapes"] == runs["scratch"]["labelled_shapes"]
        assert _in_unit_interval(run["part_miou"]) and _in_unit_interval(run["shape_miou"]), category
        assert run["pixel_miou_2d"] is None and run["checkpoint"] is None
        assert (out / run["predictions"]).is_file()
        assert set(run["per_shape_miou"]) == set(summary["split"][category]["test"])
    mean = summary["mean"]["transfer"]
    assert _in_unit_interval(mean["part_miou"]) and mean["pixel_miou_2d"] is None
    vs = summary["vs_transfer"]
    learned = [m for m in summary["methods"] if m != "transfer"]
    assert vs["best_learned"] == max(learned, key=lambda m: summary["mean"][m]["part_miou"])
    assert vs["transfer_part_miou"] == mean["part_miou"]
    gain = vs["best_learned_minus_transfer_points"]
    assert math.isclose(gain, 100 * (summary["mean"][vs["best_learned"]]["part_miou"] - mean["part_miou"]))
    for record in summary["predictions"].values():
        assert _in_unit_interval(record["shape_miou"]["transfer"])
        assert (out / record["meshes"]["transfer"]["glb"]).is_file()
    text = (out / "report.md").read_text()
    assert "part mIoU transfer (no training)" in text and "2D pixel mIoU transfer (no training)" in text
    assert text.split("| **mean** |")[1].splitlines()[0].rstrip().endswith("| **n/a** |")
    page = (out / "report.html").read_text()
    assert "2D pixel mIoU transfer (no training)" in page and "<td>n/a</td>" in page
    assert "> transfer (no training)</label>" in page
    # One sentence against the floor, in both reports: "above" only when the learned method is above it.
    where = (
        "level with" if vs["ahead"] == "tie" else f"{abs(gain):.1f} points {'above' if gain > 0 else 'below'}"
    )
    assert f"mean part mIoU {where} the learning-free transfer's" in text
    assert f"mean part mIoU {where} the learning-free transfer's" in html.unescape(page)


def test_demo_compares_mvdecor_with_scratch_and_transfer(tmp_path, segmented):
    out = tmp_path / "demo"
    # The cpu preset's pair: each network fine-tuned, then averaged with its nearest labelled faces
    # (the lookup alone is covered by the test without pre-training below).
    settings = TINY
    report = run_demo(out, pretrain_iterations=1, **settings)
    assert report == out / "report.md" and report.is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "cpu" and summary["shapes"] == 6
    assert summary["categories"] == ["chair", "table"]
    # The cpu preset pre-trains from ImageNet weights: those weights alone are a column too.
    learned = ["mvdecor", "imagenet", "scratch"]
    assert summary["methods"] == [*learned, "transfer"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["preset"] == "cpu" and config["render"]["resolution"] == 64
    assert config["pretrain"]["iterations"] == 1 and config["pretrain"]["val_pairs"] == 2
    # Fine-tuning, paired with the nearest labelled faces of the preset's settings (k = 1: w as given).
    assert config["finetune"]["method"] == "network" and config["finetune"]["nearest_position_weight"] == 1.0
    assert (config["segment"]["prior_method"], config["segment"]["transfer_prior"]) == ("nearest", 0.5)
    assert (summary["settings"]["prior_method"], summary["settings"]["transfer_prior"]) == ("nearest", 0.5)
    assert json.loads((out / "split.json").read_text())["categories"] == summary["split"]

    stage = summary["pretraining"]
    assert stage["iterations"] == 1 and stage["train_shapes"] == 4 and stage["val_shapes"] == 2
    assert set(stage["correspondence"]) == {"pretrained", "random_network", "normals"}
    assert (out / "pretrain" / "checkpoints" / "last.pt").is_file()

    for category in ("chair", "table"):
        runs = summary["fewshot"][category]
        assert set(runs) == {*learned, "transfer"}
        assert runs["mvdecor"]["labelled_shapes"] == runs["scratch"]["labelled_shapes"]
        assert runs["imagenet"]["labelled_shapes"] == runs["scratch"]["labelled_shapes"]
        for method in learned:
            for key in ("part_miou", "shape_miou", "pixel_miou_2d"):
                assert _in_unit_interval(runs[method][key]), (category, method, key)
            assert (out / runs[method]["checkpoint"]).is_file()
    for method in learned:
        assert all(_in_unit_interval(v) for v in summary["mean"][method].values())
    assert summary["verdict"]["winner"] in ("mvdecor", "scratch", "tie", "mixed")
    added = summary["verdict"]["mvdecor_minus_imagenet_part_miou_points"]
    mean = summary["mean"]
    assert math.isclose(added, 100 * (mean["mvdecor"]["part_miou"] - mean["imagenet"]["part_miou"]))
    assert summary["verdict"]["vs_transfer"] == summary["vs_transfer"]
    assert summary["timings"]["total_s"] > 0 and len(summary["timings"]["finetune_and_evaluate_s"]) == 8
    _check_transfer(summary, out)

    test_shapes = [s for entry in summary["split"].values() for s in entry["test"]]
    assert sorted(summary["predictions"]) == sorted(test_shapes)
    for shape_id in test_shapes:
        assert (out / "pictures" / "predictions" / f"{shape_id}.png").is_file()
        for method in (*learned, "transfer", "ground_truth"):
            for suffix in (".ply", ".glb", ".labels.txt", ".legend.json"):
                assert (out / "segmentations" / method / f"{shape_id}{suffix}").is_file()
        assert set(summary["predictions"][shape_id]["shape_miou"]) == {*learned, "transfer"}
    assert len(list((out / "pictures").glob("*.png"))) == 6

    text = report.read_text()
    assert "## MvDeCor against its ImageNet weights, training from scratch" in text
    assert "## Pre-training" in text
    assert "were fine-tuned on the same k = 1 labelled training shape" in text
    assert "fused face distributions were then averaged with those of the nearest labelled faces" in text
    assert "1 fine-tuning step (then averaged with the nearest labelled faces)" in text
    assert "Fine-tuned networks and their lookups" in text and "--prior-model LOOKUP" in text
    for category in ("chair", "table"):
        for method in learned:
            lookup = report_lookup(summary["fewshot"][category][method]["checkpoint"])
            assert f"lookup `{lookup}`" in text and (out / lookup).is_file()
            assert load_checkpoint(out / lookup)["head"] == "nearest"
    assert "| chair |" in text and "| table |" in text and "| **mean** |" in text
    assert "part mIoU MvDeCor" in text and "part mIoU scratch" in text and "part mIoU ImageNet" in text
    assert "its pre-training started from the encoder's ImageNet weights" in text
    assert f"({added:+.1f} points: what the pre-training added)" in text
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

    # Each test shape was segmented twice per network (the network, its lookup), inside the few-shot
    # runs (transfer has none); the exports, pictures and reports reuse the labels those runs saved.
    assert Counter(segmented) == Counter(test_shapes * 6)
    for category in ("chair", "table"):
        for method in learned:
            run = summary["fewshot"][category][method]
            assert (out / run["predictions"]).is_file()
            assert set(run["per_shape_miou"]) == set(summary["split"][category]["test"])
    # Only last.pt is kept of each finished training run (keep_checkpoints="last").
    assert sorted(p.name for p in (out / "pretrain" / "checkpoints").iterdir()) == ["last.pt"]
    assert "optimizer" in load_checkpoint(out / "pretrain" / "checkpoints" / "last.pt")
    assert summary["keep_checkpoints"] == "last"

    pictures = _check_pictures(out)
    embeddings = {f"pictures/embeddings/{c}_{pair}_{net}.png" for c in ("chair", "table")
                  for pair in ("same_shape", "two_shapes") for net in ("pretrained", "random")}  # fmt: skip
    vote_shape = summary["split"]["chair"]["test"][0]
    votes = {f"pictures/vote_weights/{vote_shape}_{m}.png" for m in learned}
    curves = {"pictures/curves/pretrain.png"} | {
        f"pictures/curves/finetune_{c}_{m}.png" for c in ("chair", "table") for m in learned
    }
    predictions = {f"pictures/predictions/{s}.png" for s in test_shapes}
    shapes = {f"pictures/{r['shape']}.png" for r in summary["shapes_detail"]}
    assert pictures == embeddings | votes | curves | predictions | shapes
    assert all(p["caption"] for p in summary["pictures"])
    assert set(summary["vote_weights"]["weights"]) == set(learned)
    assert len(summary["vote_weights"]["weights"]["mvdecor"]) == 8
    page = (out / "report.html").read_text()
    assert page.count('<article class="viewer"') == len(test_shapes)
    assert "Scores in % (ShapeNet-Part rules, area-weighted)" in page
    for labeling in ("MvDeCor", "ImageNet", "scratch", "transfer (no training)", "ground truth"):
        assert f"> {labeling}</label>" in page
    assert (out / "report_assets" / "report-viewer" / "viewer.js").is_file()

    # A second run reuses every finished stage and segments nothing again.
    run_demo(out, pretrain_iterations=1, **settings)
    again = json.loads((out / "summary.json").read_text())
    assert again["reused_stages"] == ["pretrain", "correspondence"] + [
        f"fine-tune {c}/{m}" for c in ("chair", "table") for m in (*learned, "transfer")
    ]
    assert Counter(segmented) == Counter(test_shapes * 6)
    for category, runs in summary["fewshot"].items():
        for method, run in runs.items():
            assert not run["reused"] and again["fewshot"][category][method] == dict(run, reused=True)
    assert _check_pictures(out) == pictures


def test_demo_without_pretraining_runs_scratch_only_and_resumes(tmp_path):
    out = tmp_path / "demo"
    # Keeping only the networks' weights: the report and a re-run need nothing else.
    settings = dict(TINY, categories=("mug",), keep_checkpoints="weights")
    run_demo(out, pretrain_iterations=0, **settings)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == ["scratch", "transfer"] and summary["pretraining"] is None
    assert summary["verdict"] is None
    assert set(summary["fewshot"]["mug"]) == {"scratch", "transfer"}
    _check_transfer(summary, out)
    assert _in_unit_interval(summary["fewshot"]["mug"]["scratch"]["part_miou"])
    assert not (out / "pretrain").exists()
    text = (out / "report.md").read_text()
    assert "## Training from scratch" in text and "MvDeCor" not in text.split("## Predictions")[0]
    assert "Fine-tuned networks and their lookups" in text
    assert "1 fine-tuning step (then averaged with the nearest labelled faces)," in text
    shape_id = next(iter(summary["predictions"]))
    assert (out / "segmentations" / "scratch" / f"{shape_id}.glb").is_file()
    pictures = _check_pictures(out)
    assert not any(p.startswith("pictures/embeddings/") for p in pictures)
    assert f"pictures/vote_weights/{shape_id}_scratch.png" in pictures
    assert "pictures/curves/finetune_mug_scratch.png" in pictures
    checkpoint = out / summary["fewshot"]["mug"]["scratch"]["checkpoint"]
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.pt"]
    assert set(load_checkpoint(checkpoint)) == set(NETWORK_ENTRIES) - {
        "method",
        "best_val_loss",
        "validation",
        "head",
        "nearest_position_weight",
    } | {"format_version"}

    # A second run reuses the finished fine-tuning run instead of training again.
    run_demo(out, pretrain_iterations=0, **settings)
    again = json.loads((out / "summary.json").read_text())
    assert again["reused_stages"] == ["fine-tune mug/scratch", "fine-tune mug/transfer"]
    assert (
        again["fewshot"]["mug"]["scratch"]["part_miou"] == summary["fewshot"]["mug"]["scratch"]["part_miou"]
    )
    assert _check_pictures(out) == pictures


def test_demo_with_the_lookup_alone_reports_no_fine_tuning(tmp_path):
    out = tmp_path / "demo"
    lookup_alone = {**TINY_CONFIG, "finetune": {"method": "nearest"}}
    run_demo(out, pretrain_iterations=0, **dict(TINY, categories=("mug",), config_overrides=lookup_alone))
    summary = json.loads((out / "summary.json").read_text())
    config = yaml.safe_load((out / "config.yaml").read_text())
    # The lookup is not paired with itself: the preset's prior reads as none.
    assert config["finetune"]["method"] == "nearest" and config["segment"]["transfer_prior"] == 0.0
    assert (
        summary["settings"]["finetune_method"] == "nearest"
        and summary["settings"]["nearest_pooling"] == "faces"
    )
    checkpoint = out / summary["fewshot"]["mug"]["scratch"]["checkpoint"]
    assert load_checkpoint(checkpoint)["head"] == "nearest"
    text = (out / "report.md").read_text()
    assert "with no training (`finetune.method: nearest`)" in text
    assert "no fine-tuning (nearest labelled faces)" in text and "lookup `" not in text
    assert "Networks with their banks of labelled pixels" in text and "fine-tuned" not in text.lower()
    assert not any(p.startswith("pictures/curves/") for p in _check_pictures(out))


def test_demo_command_passes_keep_checkpoints_and_names_both_reports(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run_demo(out, **kwargs):
        seen.update(kwargs)
        return Path(out) / "report.md"

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path / "d"), "--keep-checkpoints", "weights", "--quiet"]) == 0
    assert seen["keep_checkpoints"] == "weights"
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(tmp_path / "d" / "report.html") in last_line and str(tmp_path / "d" / "report.md") in last_line
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        run_demo(tmp_path / "bad", keep_checkpoints="best", **dict(TINY, pretrain_iterations=0))
    assert not (tmp_path / "bad").exists()


def test_demo_needs_enough_training_shapes_for_k(tmp_path):
    with pytest.raises(ConfigError, match="labelled shapes"):
        run_demo(tmp_path / "demo", pretrain_iterations=0, **dict(TINY, labelled_shapes=3))
    assert not (tmp_path / "demo").exists()
