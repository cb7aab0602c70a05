"""The few-shot protocol: label-covering draws, runs, and the report."""

from __future__ import annotations

import json

from mvdecor.cli import main
from mvdecor.data.synthetic import CATEGORIES
from mvdecor.evaluation.fewshot import draw_labelled_sets, method_of_init
from mvdecor.train.checkpoint import save_checkpoint


def test_draws_cover_labels_and_are_seeded():
    sets = {"a": {0}, "b": {1}, "c": {0, 1, 2}, "d": {2}, "e": {0}}
    runs = draw_labelled_sets(sets, k=2, runs=4, seed=3)
    assert runs == draw_labelled_sets(sets, k=2, runs=4, seed=3)
    for chosen in runs:
        assert len(chosen) == 2 and set().union(*(sets[s] for s in chosen)) == {0, 1, 2}
    assert len({tuple(c) for c in draw_labelled_sets(sets, k=1, runs=6, seed=0)}) == 1  # only "c" covers all


def test_fewshot_command_reports_each_category(tmp_path, capsys):
    out = tmp_path / "fs"
    args = ["fewshot", "synthetic:categories=mug+bottle,n=3,textured=0", str(out), "--k", "1", "--runs", "2",
            "--iterations", "2", "--ssl-weight", "0", "--preset", "cpu", "--rings", "1", "--segments", "4",
            "--resolution", "32", "--device", "cpu", "--quiet", "--test-fraction", "0.34"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "Few-shot: scratch, k = 1" in printed and "| mug |" in printed and "| bottle |" in printed
    combined = json.loads((out / "results_scratch_k1.json").read_text())
    split = json.loads((out / "split.json").read_text())["categories"]
    assert sorted(combined["per_category"]) == sorted(split) == ["bottle", "mug"]
    for category, result in combined["per_category"].items():
        # Each category is scored over its own vocabulary and its own shapes.
        assert result["label_names"] == list(CATEGORIES[category])
        assert all(s.startswith(category) for s in result["train_shapes"] + result["test_shapes"])
        assert result["test_shapes"] == split[category]["test"] and len(result["test_shapes"]) == 1
        assert result["runs"] == 2 and len(result["per_run"]) == 2
        for key in ("part_miou", "shape_miou", "pixel_miou_2d"):
            assert 0.0 <= result[key]["mean"] <= 1.0
        assert (out / category / "results_scratch_k1.md").read_text().startswith("# Few-shot")
    per_category_means = [r["part_miou"]["mean"] for r in combined["per_category"].values()]
    assert abs(combined["mean"]["part_miou"] - sum(per_category_means) / 2) < 1e-12
    # A second call reads the finished categories back instead of re-running them.
    before = (out / "mug" / "results_scratch_k1.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "mug" / "results_scratch_k1.json").stat().st_mtime_ns == before


def test_results_are_filed_under_the_method_that_wrote_the_checkpoint(tmp_path):
    assert method_of_init("scratch") == "scratch" and method_of_init("imagenet") == "imagenet"
    save_checkpoint(tmp_path / "densecl.pt", {"model": {}, "method": "densecl"})
    assert method_of_init(tmp_path / "densecl.pt") == "densecl"
    # Checkpoints written before methods were recorded are MvDeCor's.
    save_checkpoint(tmp_path / "old.pt", {"model": {}, "config": {"pretrain": {}}})
    assert method_of_init(str(tmp_path / "old.pt")) == "mvdecor"
