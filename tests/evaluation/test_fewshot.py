"""The few-shot protocol: label-covering draws, runs, and the report."""

from __future__ import annotations

import json

from mvdecor.cli import main
from mvdecor.evaluation.fewshot import draw_labelled_sets


def test_draws_cover_labels_and_are_seeded():
    sets = {"a": {0}, "b": {1}, "c": {0, 1, 2}, "d": {2}, "e": {0}}
    runs = draw_labelled_sets(sets, k=2, runs=4, seed=3)
    assert runs == draw_labelled_sets(sets, k=2, runs=4, seed=3)
    for chosen in runs:
        assert len(chosen) == 2 and set().union(*(sets[s] for s in chosen)) == {0, 1, 2}
    assert len({tuple(c) for c in draw_labelled_sets(sets, k=1, runs=6, seed=0)}) == 1  # only "c" covers all


def test_fewshot_command_writes_results(tmp_path, capsys):
    out = tmp_path / "fs"
    args = ["fewshot", "synthetic:categories=mug,n=4,textured=0", str(out), "--k", "1", "--runs", "2",
            "--iterations", "2", "--ssl-weight", "0", "--preset", "cpu", "--rings", "1", "--segments", "4",
            "--resolution", "32", "--device", "cpu", "--quiet", "--test-fraction", "0.5"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "Few-shot: scratch, k = 1" in capsys.readouterr().out
    result = json.loads((out / "results_scratch_k1.json").read_text())
    assert result["runs"] == 2 and len(result["per_run"]) == 2
    assert len(result["test_shapes"]) == 2 and not set(result["test_shapes"]) & set(result["train_shapes"])
    for key in ("part_miou", "shape_miou", "pixel_miou_2d"):
        assert 0.0 <= result[key]["mean"] <= 1.0
    assert json.loads((out / "split.json").read_text())["test"] == result["test_shapes"]
    assert (out / "results_scratch_k1.md").read_text().startswith("# Few-shot")
