"""The few-shot protocol: label-covering draws, runs, saved predictions, and the report."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mvdecor.cli import main
from mvdecor.config import load_config
from mvdecor.data.synthetic import CATEGORIES
from mvdecor.errors import ConfigError
from mvdecor.inference.segment import Segmenter, SegmenterPrior
from mvdecor.inference.transfer import LabelTransfer, reference_from_mesh
from mvdecor.protocols import fewshot
from mvdecor.protocols.fewshot import (
    cached_fewshot,
    draw_labelled_sets,
    finished_fewshot,
    format_fewshot,
    method_of_init,
    repeated_draws,
    run_fewshot,
    run_fewshot_cached,
    training_settings,
)
from mvdecor.protocols.predictions import load_predictions
from mvdecor.protocols.refinements import check_refinements
from mvdecor.train.checkpoint import load_checkpoint, save_checkpoint
from mvdecor.train.data import ViewSource


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


#: A few-shot setting small enough for seconds: 2 + 1 x 4 = 6 views of 32x32, 1 fine-tuning step.
TINY_FEWSHOT_CONFIG = {
    "render": {"rings": 1, "segments": 4, "resolution": 32},
    # The trained head, whose runs these tests resume and refine, alone (the cpu preset pairs it with
    # the nearest labelled faces of its initial network: the first test below keeps the pair).
    "finetune": {"method": "network", "iterations": 1, "ssl_weight": 0.0, "device": "cpu"},
    "segment": {"prior_method": "transfer", "transfer_prior": 0.0},
}


def test_runs_save_the_labels_they_scored_and_record_their_files(tmp_path):
    # The pair: the fine-tuned network averaged with its lookup, banked beside the run (without
    # the cpu preset's transfer vote on the faces no view sees, which the check below would need).
    pair = {"prior_method": "nearest", "transfer_prior": 0.5, "transfer_vote": "off"}
    config = load_config("cpu", {**TINY_FEWSHOT_CONFIG, "segment": pair})
    dataset = "synthetic:categories=mug,n=3,textured=0"
    out = tmp_path / "fs"
    summary = run_fewshot(
        config, dataset, out, train_shapes=["mug_0000", "mug_0001"], test_shapes=["mug_0002"], k=1,
        runs=1, progress=False, keep_checkpoints="weights",
    )  # fmt: skip
    source = ViewSource.from_config(dataset, config)
    assert len(summary["per_run"]) == 1
    for run in summary["per_run"]:
        checkpoint, predictions = out / run["checkpoint"], out / run["predictions"]
        assert checkpoint.is_file() and predictions.is_file()
        assert checkpoint.parent.parent == predictions.parent == out / f"scratch_k1_run{run['run']}"
        # Trimmed to the network once the results were written: it segments, it cannot resume.
        assert [p.name for p in checkpoint.parent.iterdir()] == ["last.pt"]
        assert "optimizer" not in load_checkpoint(checkpoint) and "model" in load_checkpoint(checkpoint)
        saved = load_predictions(predictions)
        assert list(saved) == summary["test_shapes"] == list(run["per_shape"])
        assert abs(run["shape_miou"] - sum(run["per_shape"].values()) / len(run["per_shape"])) < 1e-12
        segmenter = Segmenter.from_checkpoint(checkpoint)
        lookup = out / f"scratch_k1_run{run['run']}_nearest-prior" / "checkpoints" / "last.pt"
        prior = SegmenterPrior(Segmenter.from_checkpoint(lookup))
        assert segmenter.config.segment.prior_method == "nearest" and not segmenter.pools_faces
        for shape_id, prediction in saved.items():
            again = segmenter.segment(source.mesh(shape_id), normalize=False, transfer=prior)
            alone = segmenter.segment(source.mesh(shape_id), normalize=False)
            assert not np.allclose(alone.face_confidence, again.face_confidence)  # the lookup counts
            assert prediction.face_labels.dtype == np.int64
            np.testing.assert_array_equal(prediction.face_labels, again.face_labels)
            np.testing.assert_allclose(
                prediction.face_confidence, again.face_confidence, rtol=1e-6, atol=1e-6
            )
    # The results file records the same, and reads back as a finished protocol.
    written = json.loads((out / "results_scratch_k1.json").read_text())
    assert written["per_run"] == json.loads(json.dumps(summary["per_run"]))


def test_results_written_before_runs_recorded_their_files_are_still_read(tmp_path, monkeypatch):
    # The keys of a results file of the first protocol version, without checkpoint, predictions, per_shape.
    old_run = {"run": 0, "labelled_shapes": ["a"], "part_miou": 0.5, "shape_miou": 0.5, "fused_miou": 0.5,
               "pixel_miou_2d": 0.4, "part_iou": {"body": 0.5}}  # fmt: skip
    stats = {"mean": 0.5, "std": 0.0, "runs": [0.5]}
    old = {"dataset": "d", "category": "mug", "preset": "cpu", "method": "scratch", "init": "scratch", "k": 1,
           "v": None, "runs": 1, "convention": "shapenet", "weighting": "area", "label_names": ["body"],
           "train_shapes": ["a", "b"], "test_shapes": ["c"], "wall_s": 1.0, "part_miou": stats,
           "shape_miou": stats, "fused_miou": stats, "pixel_miou_2d": stats,
           "per_run": [old_run]}  # fmt: skip
    (tmp_path / "results_scratch_k1.json").write_text(json.dumps(old))
    setting = dict(method="scratch", k=1, runs=1, train_shapes=["a", "b"], test_shapes=["c"])
    assert finished_fewshot(tmp_path, views_per_shape=0, **setting) == old

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished protocol ran again")

    monkeypatch.setattr(fewshot, "run_fewshot", must_not_run)
    assert run_fewshot_cached(load_config("cpu"), "d", tmp_path, **setting) == old
    assert format_fewshot(old).startswith("# Few-shot: scratch, k = 1")


def test_draws_use_different_sets_where_enough_cover_all_labels():
    sets = {"a": {0, 1}, "b": {0, 1}, "c": {0, 1}, "d": {0}}
    runs = draw_labelled_sets(sets, k=1, runs=3, seed=0)
    assert sorted(s[0] for s in runs) == ["a", "b", "c"]  # three covering shapes: three different runs
    assert repeated_draws(runs) == []
    # Only one covering shape: it repeats, and the repeats are reported.
    runs = draw_labelled_sets({"a": {0, 1}, "d": {0}}, k=1, runs=3, seed=0)
    assert runs == [["a"]] * 3 and repeated_draws(runs) == [1, 2]


def test_transfer_method_runs_the_protocol_without_a_network(tmp_path):
    config = load_config("cpu", TINY_FEWSHOT_CONFIG)
    dataset = "synthetic:categories=mug,n=3,textured=0"
    train, test = ["mug_0000", "mug_0001"], ["mug_0002"]
    summary = run_fewshot(
        config, dataset, tmp_path, train_shapes=train, test_shapes=test, k=1, runs=2, init="transfer",
        progress=False,
    )  # fmt: skip
    assert summary["method"] == "transfer" and method_of_init("transfer") == "transfer"
    assert summary["pixel_miou_2d"]["mean"] is None  # no per-view prediction without a network
    assert "n/a" in (tmp_path / "results_transfer_k1.md").read_text()
    source = ViewSource(dataset, config.render)
    names = source.mesh(test[0]).label_names
    for run in summary["per_run"]:
        assert run["checkpoint"] is None and not list(
            (tmp_path / f"transfer_k1_run{run['run']}").glob("*.pt")
        )
        # The saved labels are the transfer from that run's labelled shape, and were scored.
        reference = reference_from_mesh(source.mesh(run["labelled_shapes"][0]), seed=run["run"])
        expected = LabelTransfer([reference], len(names)).face_labels(source.mesh(test[0]))
        saved = load_predictions(tmp_path / run["predictions"])[test[0]]
        np.testing.assert_array_equal(saved.face_labels, expected)
        assert 0.0 < run["part_miou"] <= 1.0
    assert sorted(r["labelled_shapes"][0] for r in summary["per_run"]) == train  # different draws
    # Sparse labelled views: the references are the labelled views' pixels, so the result differs.
    sparse = run_fewshot(
        config, dataset, tmp_path, train_shapes=train, test_shapes=test, k=1, runs=1, init="transfer",
        views_per_shape=1, progress=False,
    )  # fmt: skip
    assert sparse["v"] == 1 and (tmp_path / "results_transfer_k1_v1.json").is_file()


def test_a_face_methods_results_follow_its_own_settings(tmp_path):
    # transfer is decided by the transfer and render sections, not by fine-tuning's.
    config = load_config("cpu", TINY_FEWSHOT_CONFIG)
    dataset = "synthetic:categories=mug,n=3,textured=0"
    cell = dict(method="transfer", init="transfer", train_shapes=["mug_0000", "mug_0001"], k=1, runs=1)
    cell["test_shapes"] = ["mug_0002"]
    run_fewshot(config, dataset, tmp_path, progress=False, **cell)
    longer = replace(config, finetune=replace(config.finetune, iterations=config.finetune.iterations + 1))
    assert cached_fewshot(longer, tmp_path, **cell) is not None
    softer = replace(config, transfer=replace(config.transfer, neighbours=3))
    assert cached_fewshot(softer, tmp_path, **cell) is None
    assert set(training_settings(config, "transfer")) == {"init", "transfer", "render"}


def test_refinement_variants_score_one_network_several_ways(tmp_path, monkeypatch):
    config = load_config("cpu", TINY_FEWSHOT_CONFIG)
    dataset = "synthetic:categories=mug,n=3,textured=0"
    setting = dict(train_shapes=["mug_0000", "mug_0001"], test_shapes=["mug_0002"], k=1, runs=1,
                   progress=False, keep_checkpoints="weights")  # fmt: skip
    # A prior of weight 1 replaces the network's votes by the transfer's distribution; "same"
    # names the training cameras (1 ring of 4) explicitly, "more" asks for 3 rings of 4, "flip"
    # for mirrored predictions too, "large" for 48-pixel views (training: 32).
    refinements = {"prior": {"transfer_prior": 1.0}, "smooth": {"smoothing": 1.0},
                   "same": {"rings": 1, "segments": 4}, "more": {"rings": 3}, "flip": {"flip": 1},
                   "large": {"resolution": 48}}  # fmt: skip
    segmented = []
    original_predict = fewshot.Segmenter.predict

    def recording_predict(self, views, box=None):
        probs = original_predict(self, views, box)
        segmented.append((len(views), probs.shape[-1], self.config.segment.flip))
        return probs

    monkeypatch.setattr(fewshot.Segmenter, "predict", recording_predict)
    plain = run_fewshot(config, dataset, tmp_path, refinements=refinements, **setting)
    # One segmentation per view set, as (views, size, mirrored) per batch of at most 8: the
    # training's 6 views (2 poles + 4), again as "same", 3 x 4 + 2, mirrored, then larger.
    assert segmented == [
        (6, 32, False), (6, 32, False), (8, 32, False), (6, 32, False), (6, 32, True), (6, 48, False)
    ]  # fmt: skip
    monkeypatch.undo()
    same = json.loads((tmp_path / "results_scratch+same_k1.json").read_text())
    more = json.loads((tmp_path / "results_scratch+more_k1.json").read_text())
    assert same["part_miou"] == plain["part_miou"] and same["segment"]["rings"] == 1
    assert more["segment"]["rings"] == 3 and more["segment"]["segments"] == 0
    assert more["per_run"][0]["checkpoint"] == plain["per_run"][0]["checkpoint"]
    transfer = run_fewshot(config, dataset, tmp_path / "transfer", init="transfer", **setting)
    prior = json.loads((tmp_path / "results_scratch+prior_k1.json").read_text())
    smooth = json.loads((tmp_path / "results_scratch+smooth_k1.json").read_text())
    assert prior["segment"]["transfer_prior"] == 1.0 and plain["segment"]["transfer_prior"] == 0.0
    assert smooth["segment"]["smoothing"] == 1.0 and prior["method"] == "scratch+prior"
    assert prior["part_miou"]["mean"] == transfer["part_miou"]["mean"]
    # The same network and the same per-view predictions behind every variant.
    assert prior["per_run"][0]["checkpoint"] == plain["per_run"][0]["checkpoint"]
    assert prior["pixel_miou_2d"] == smooth["pixel_miou_2d"] == plain["pixel_miou_2d"]
    saved = load_predictions(tmp_path / prior["per_run"][0]["predictions"])
    np.testing.assert_array_equal(
        saved["mug_0002"].face_labels, load_predictions(tmp_path / transfer["per_run"][0]["predictions"].replace(
            "transfer_k1", "transfer/transfer_k1"))["mug_0002"].face_labels,
    )  # fmt: skip
    assert plain["refinements"] == {
        "scratch+prior": {"transfer_prior": 1.0},
        "scratch+smooth": {"smoothing": 1.0},
        "scratch+same": {"rings": 1, "segments": 4},
        "scratch+more": {"rings": 3},
        "scratch+flip": {"flip": True},
        "scratch+large": {"resolution": 48},
    }
    mirrored = json.loads((tmp_path / "results_scratch+flip_k1.json").read_text())
    assert mirrored["segment"]["flip"] is True and plain["segment"]["flip"] is False

    # Finished: asked again with the same variants nothing runs; a new variant needs a new run.
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished protocol ran again")

    monkeypatch.setattr(fewshot, "run_fewshot", must_not_run)
    assert run_fewshot_cached(config, dataset, tmp_path, method="scratch", refinements=refinements, **setting)
    with pytest.raises(AssertionError, match="ran again"):
        run_fewshot_cached(config, dataset, tmp_path, method="scratch", refinements={"s2": {"smoothing": 2}},
                           **setting)  # fmt: skip
    with pytest.raises(ConfigError, match="unknown key"):
        check_refinements({"x": {"gamma": 3}})
    with pytest.raises(ConfigError, match="flip must be 0 or 1"):
        check_refinements({"x": {"flip": 2}})


def test_finished_results_are_reused_only_with_the_same_training_settings(tmp_path, monkeypatch):
    config = load_config("cpu", TINY_FEWSHOT_CONFIG)
    dataset = "synthetic:categories=mug,n=3,textured=0"
    setting = dict(train_shapes=["mug_0000", "mug_0001"], test_shapes=["mug_0002"], k=1, runs=1)
    transfer = run_fewshot_cached(config, dataset, tmp_path, method="transfer", init="transfer", progress=False,
                                  **setting)  # fmt: skip
    # A finished fine-tuning cell, without fine-tuning: the transfer's record under scratch's settings.
    first = {
        **transfer,
        "method": "scratch",
        "init": "scratch",
        "training": training_settings(config, "scratch"),
    }
    (tmp_path / "results_scratch_k1.json").write_text(json.dumps(first))
    assert "device" not in first["training"]["finetune"]
    calls = []

    def record_run(*args, **kwargs):
        calls.append(args[0])
        return {"ran": True}

    monkeypatch.setattr(fewshot, "run_fewshot", record_run)
    # The same settings (and another device or worker count): the finished results.
    for same in (config, replace(config, finetune=replace(config.finetune, device="cpu", num_workers=3))):
        assert (
            run_fewshot_cached(same, dataset, tmp_path, method="scratch", init="scratch", **setting) == first
        )
    assert calls == []
    # Another learning rate, or another initialisation: a new run, not the old numbers.
    other = replace(config, finetune=replace(config.finetune, lr=config.finetune.lr / 2))
    assert run_fewshot_cached(other, dataset, tmp_path, method="scratch", init="scratch", **setting) == {
        "ran": True
    }
    assert run_fewshot_cached(config, dataset, tmp_path, method="scratch", init="other.pt", **setting) == {
        "ran": True
    }
    assert len(calls) == 2
