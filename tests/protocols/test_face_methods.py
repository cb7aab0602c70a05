"""The 3D face methods (scratch3d, pointcontrast, deform) through the few-shot protocol, and the deformation prior."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mvdecor.config import load_config
from mvdecor.correspond.source import ViewSource
from mvdecor.errors import ConfigError
from mvdecor.points import pretrain_pointcontrast
from mvdecor.protocols.fewshot import (
    cached_fewshot,
    method_of_init,
    run_fewshot,
    training_settings,
)
from mvdecor.protocols.methods import FaceRun, labelled_meshes
from mvdecor.protocols.refinements import check_refinements
from mvdecor.protocols.stages import STAGE_RECORD
from mvdecor.train.labelled import select_labelled_views

pytestmark = pytest.mark.usefixtures("one_thread")

DATASET = "synthetic:categories=mug,n=3,textured=0"
TRAIN, TEST = ["mug_0000", "mug_0001"], ["mug_0002"]
#: Tiny point network and short runs: seconds on one core.
TINY_POINTS = {
    "render": {"rings": 1, "segments": 4, "resolution": 32},
    "points": {
        "num_points": 128, "neighbours": 8, "widths": [16, 16], "global_dim": 16, "head_width": 16,
        "embed_dim": 16, "pretrain_points": 64, "pretrain_iterations": 2, "pretrain_pairs_per_batch": 1,
        "pretrain_matches_per_pair": 16, "finetune_iterations": 5, "finetune_shapes_per_batch": 2,
        "predict_clouds": 1, "checkpoint_every": 5, "log_every": 1, "device": "cpu",
    },
}  # fmt: skip
TINY_DEFORM = {"num_points": 64, "width": 8, "iterations": 2, "pairs_per_batch": 1, "transfer_samples": 200,
               "device": "cpu"}  # fmt: skip


def test_scratch3d_runs_are_stages_scored_like_every_method(tmp_path):
    config = load_config("cpu", TINY_POINTS)
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, k=1, runs=2, init="scratch3d")
    summary = run_fewshot(config, DATASET, tmp_path, progress=False, **cell)
    assert summary["method"] == "scratch3d" and method_of_init("scratch3d") == "scratch3d"
    assert summary["pixel_miou_2d"]["mean"] is None  # no views
    assert set(summary["training"]) == {"init", "points"}
    for run in summary["per_run"]:
        folder = tmp_path / f"scratch3d_k1_run{run['run']}"
        record = json.loads((folder / STAGE_RECORD).read_text())
        assert record["settings"]["labelled_shapes"] == run["labelled_shapes"] and "result" in record
        assert (folder / "checkpoints" / "last.pt").is_file()
        assert 0.0 <= run["part_miou"] <= 1.0
    # Its own section decides it: fine-tuning's settings do not, the point network's do.
    cell["method"] = "scratch3d"
    other_finetune = load_config("cpu", {**TINY_POINTS, "finetune": {"iterations": 7}})
    assert cached_fewshot(other_finetune, tmp_path, **cell) is not None
    other_points = load_config(
        "cpu", {**TINY_POINTS, "points": {**TINY_POINTS["points"], "finetune_lr": 0.01}}
    )
    assert cached_fewshot(other_points, tmp_path, **cell) is None
    # Labelled views instead of whole shapes: a cell of its own, trained on what they see.
    sparse = run_fewshot(config, DATASET, tmp_path, progress=False, views_per_shape=1, **cell)
    assert sparse["v"] == 1 and (tmp_path / "scratch3d_k1_v1_run0" / "checkpoints" / "last.pt").is_file()
    # The cameras decide what labelled views label: render settings decide those cells only.
    assert set(sparse["training"]) == {"init", "points", "render"}
    assert cached_fewshot(config, tmp_path, views_per_shape=1, **cell) is not None
    other_render = load_config("cpu", {**TINY_POINTS, "render": {**TINY_POINTS["render"], "segments": 5}})
    assert cached_fewshot(other_render, tmp_path, views_per_shape=1, **cell) is None
    assert cached_fewshot(other_render, tmp_path, **cell) is not None


def test_3d_methods_learn_from_the_faces_the_labelled_views_see(tmp_path):
    config = load_config("cpu", TINY_POINTS)
    source = ViewSource.from_config(DATASET, config)
    run = FaceRun(
        config=config, source=source, labelled_shapes=TRAIN, unlabelled_shapes=TRAIN, num_classes=8,
        views_per_shape=1, seed=3, exclude_classes=(), init="scratch3d", folder=tmp_path,
    )  # fmt: skip
    items = select_labelled_views(TRAIN, config.render.num_views, 1, 3)
    for shape_id, mesh in zip(TRAIN, labelled_meshes(run), strict=True):
        whole = source.mesh(shape_id)
        # Naive reference: every pixel of the shape's labelled views labels the face it sees.
        expected = np.full(whole.num_faces, -1)
        for item in (i for i in items if i.shape_id == shape_id):
            view = source.view(shape_id, item.view_index)
            for row in range(view.height):
                for col in range(view.width):
                    face = int(view.face_ids[row, col])
                    if face >= 0:
                        expected[face] = whole.face_labels[face]
        assert 0 < (expected >= 0).sum() < whole.num_faces  # one view sees part of the mug
        np.testing.assert_array_equal(mesh.face_labels, expected)
        np.testing.assert_array_equal(mesh.vertices, whole.vertices)
        np.testing.assert_array_equal(mesh.faces, whole.faces)
    # Whole labelled shapes: the meshes as they are.
    for shape_id, mesh in zip(TRAIN, labelled_meshes(replace(run, views_per_shape=0)), strict=True):
        np.testing.assert_array_equal(mesh.face_labels, source.mesh(shape_id).face_labels)


def test_pointcontrast_is_named_by_its_checkpoint_and_identified_by_what_it_holds(tmp_path):
    config = load_config("cpu", TINY_POINTS)
    checkpoint = pretrain_pointcontrast(config, DATASET, tmp_path / "pre", shape_ids=TRAIN, progress=False)
    assert method_of_init(checkpoint) == "pointcontrast"
    init = training_settings(config, checkpoint)["init"]
    assert init["method"] == "pointcontrast" and init["points"]["pretrain_iterations"] == 2
    summary = run_fewshot(
        config, DATASET, tmp_path / "fs", train_shapes=TRAIN, test_shapes=TEST, k=1, runs=1, init=checkpoint,
        progress=False,
    )  # fmt: skip
    assert summary["method"] == "pointcontrast"
    assert (tmp_path / "fs" / "pointcontrast_k1_run0" / "checkpoints" / "last.pt").is_file()


def test_deform_trains_one_network_per_category_and_reuses_it(tmp_path):
    config = load_config("cpu", {**TINY_POINTS, "deform": TINY_DEFORM})
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, k=1, runs=2, init="deform")
    summary = run_fewshot(config, DATASET, tmp_path, progress=False, **cell)
    assert summary["method"] == "deform" and set(summary["training"]) == {"init", "deform"}
    network = tmp_path / "deformation" / "last.pt"
    record = json.loads((tmp_path / "deformation" / STAGE_RECORD).read_text())
    assert record["settings"]["shapes"] == TRAIN and "result" in record
    written = network.stat().st_mtime_ns
    # Another draw of labelled shapes: the same network, not trained again.
    run_fewshot(config, DATASET, tmp_path, progress=False, **{**cell, "runs": 1, "seed": 5})
    assert network.stat().st_mtime_ns == written
    # Labels carried from every labelled shape: a transfer-time choice, the same network again.
    pooled = load_config("cpu", {**TINY_POINTS, "deform": {**TINY_DEFORM, "combine": "all"}})
    summary = run_fewshot(pooled, DATASET, tmp_path, progress=False, **{**cell, "runs": 1, "k": 2})
    assert network.stat().st_mtime_ns == written and summary["training"]["deform"]["combine"] == "all"
    # Other deformation settings: trained afresh.
    other = load_config("cpu", {**TINY_POINTS, "deform": {**TINY_DEFORM, "iterations": 3}})
    run_fewshot(other, DATASET, tmp_path, progress=False, **cell)
    assert (
        json.loads((tmp_path / "deformation" / STAGE_RECORD).read_text())["settings"]["deform"]["iterations"]
        == 3
    )


def test_a_deformation_prior_of_weight_one_gives_the_deform_methods_labels(tmp_path):
    # A 2D network's votes mixed with the deformation's labels (segment.prior_method: deform):
    # at weight 1 the prior replaces the votes, so the variant scores what the deform method
    # scores, through the one deformation network of the category.
    config = load_config(
        "cpu",
        {**TINY_POINTS, "deform": TINY_DEFORM, "finetune": {"method": "network", "iterations": 1, "ssl_weight": 0.0,
                                                             "device": "cpu"},
         # The network alone (the preset pairs it with its lookup); the variants name their prior.
         "segment": {"prior_method": "transfer", "transfer_prior": 0.0}},
    )  # fmt: skip
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, k=1, runs=1, progress=False, keep_checkpoints="weights")
    deform = run_fewshot(config, DATASET, tmp_path, init="deform", **cell)
    network = tmp_path / "deformation" / "last.pt"
    written = network.stat().st_mtime_ns
    refinements = {
        "dprior": {"transfer_prior": 1.0, "prior_method": "deform"},
        "tprior": {"transfer_prior": 1.0},
    }
    plain = run_fewshot(config, DATASET, tmp_path, refinements=refinements, **cell)
    assert network.stat().st_mtime_ns == written  # the deform method's network, not another
    dprior = json.loads((tmp_path / "results_scratch+dprior_k1.json").read_text())
    tprior = json.loads((tmp_path / "results_scratch+tprior_k1.json").read_text())
    assert dprior["segment"]["prior_method"] == "deform" and plain["segment"]["prior_method"] == "transfer"
    assert dprior["part_miou"]["mean"] == deform["part_miou"]["mean"]
    assert dprior["per_run"][0]["per_shape"] == deform["per_run"][0]["per_shape"]
    assert tprior["segment"]["prior_method"] == "transfer"
    # Labelled views: the prior carries the labels the deform method carries from the same views.
    views = tmp_path / "views"
    deform_views = run_fewshot(config, DATASET, views, init="deform", views_per_shape=1, **cell)
    run_fewshot(config, DATASET, views, refinements=refinements, views_per_shape=1, **cell)
    dprior_views = json.loads((views / "results_scratch+dprior_k1_v1.json").read_text())
    assert dprior_views["per_run"][0]["per_shape"] == deform_views["per_run"][0]["per_shape"]
    with pytest.raises(ConfigError, match="prior_method must be one of transfer, deform"):
        check_refinements({"x": {"prior_method": "magic"}})
    with pytest.raises(ConfigError, match="transfer_prior must be a number"):
        check_refinements({"x": {"transfer_prior": "high"}})


def test_a_nearest_prior_of_weight_one_gives_the_nearest_heads_labels(tmp_path):
    # A fine-tuned network's votes mixed with the nearest labelled faces of the network it
    # started from (segment.prior_method: nearest): at weight 1 the prior replaces the votes, so
    # the variant scores what the nearest head scores on the same draw, seed and views.
    overrides = {"render": TINY_POINTS["render"]}
    network = load_config(
        "cpu",
        {**overrides, "finetune": {"method": "network", "iterations": 1, "ssl_weight": 0.0, "device": "cpu"}},
    )
    nearest = load_config("cpu", {**overrides, "finetune": {"method": "nearest", "device": "cpu"}})
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, k=1, runs=1, progress=False, keep_checkpoints="weights")
    lookup = run_fewshot(nearest, DATASET, tmp_path / "lookup", **cell)
    # Without transfer's vote on the faces no view sees (the cpu preset's), which the lookup alone lacks.
    refinements = {"ens": {"transfer_prior": 1.0, "prior_method": "nearest", "transfer_vote": "off"},
                   "half": {"transfer_prior": 0.5, "prior_method": "nearest", "transfer_vote": "off"}}  # fmt: skip
    plain = run_fewshot(network, DATASET, tmp_path, refinements=refinements, **cell)
    ens = json.loads((tmp_path / "results_scratch+ens_k1.json").read_text())
    half = json.loads((tmp_path / "results_scratch+half_k1.json").read_text())
    assert ens["segment"]["prior_method"] == "nearest"
    assert ens["per_run"][0]["per_shape"] == lookup["per_run"][0]["per_shape"]
    # The fine-tuned network alone labels otherwise, or the test would prove nothing.
    assert plain["per_run"][0]["per_shape"] != lookup["per_run"][0]["per_shape"]
    assert half["part_miou"]["mean"] is not None
    # The bank is a stage beside the run's folder, reused by a second scoring.
    bank = tmp_path / "scratch_k1_run0_nearest-prior" / "checkpoints" / "last.pt"
    written = bank.stat().st_mtime_ns
    run_fewshot(network, DATASET, tmp_path, refinements={"ens": refinements["ens"]}, **cell)
    assert bank.stat().st_mtime_ns == written
    # Other nearest settings: a new bank.
    other = load_config(
        "cpu",
        {**overrides, "finetune": {"method": "network", "iterations": 1, "ssl_weight": 0.0, "device": "cpu",
                                   "nearest_neighbours": 3}},
    )  # fmt: skip
    run_fewshot(other, DATASET, tmp_path, refinements={"ens": refinements["ens"]}, **cell)
    record = json.loads((bank.parent.parent / STAGE_RECORD).read_text())
    assert record["settings"]["training"]["finetune"]["nearest_neighbours"] == 3
    assert record["settings"]["training"]["finetune"]["method"] == "nearest"


def test_a_shape_prototypes_variant_segments_again_and_scores_as_the_setting_itself(tmp_path):
    # The prototypes change a face-pooling head's votes, so a variant with them segments each
    # test shape again (same bank) and scores what a run with the setting in its config scores.
    overrides = {"render": TINY_POINTS["render"], "finetune": {"method": "nearest", "device": "cpu"}}
    nearest = load_config("cpu", overrides)
    assert nearest.finetune.nearest_pooling == "faces"
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, k=1, runs=1, progress=False, keep_checkpoints="weights")
    plain = run_fewshot(nearest, DATASET, tmp_path / "plain", refinements={"proto": {"shape_prototypes": 1.0}},
                        **cell)  # fmt: skip
    variant = json.loads((tmp_path / "plain" / "results_scratch+proto_k1.json").read_text())
    direct = load_config("cpu", {**overrides, "segment": {"shape_prototypes": 1.0}})
    alone = run_fewshot(direct, DATASET, tmp_path / "direct", **cell)
    assert variant["segment"]["shape_prototypes"] == 1.0 and alone["segment"]["shape_prototypes"] == 1.0
    assert variant["per_run"][0]["per_shape"] == alone["per_run"][0]["per_shape"]
    assert variant["per_run"][0]["per_shape"] != plain["per_run"][0]["per_shape"]
