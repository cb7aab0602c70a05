"""Label transfer as a third voter beside a fine-tuned network and its lookup (``segment.transfer_vote``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvdecor.config import load_config
from mvdecor.correspond.source import ViewSource
from mvdecor.errors import ConfigError
from mvdecor.evaluation.segmentation import SegmentationEvaluator
from mvdecor.inference.segment import SegmenterPrior
from mvdecor.protocols import methods
from mvdecor.protocols.fewshot import run_fewshot
from mvdecor.protocols.methods import (
    FaceRun,
    build_transfer,
    choose_transfer_vote,
    label_prior,
    transfer_vote_record,
)
from mvdecor.protocols.predictions import load_predictions, predictions_file

pytestmark = pytest.mark.usefixtures("one_thread")

DATASET = "synthetic:categories=mug,n=3,textured=0"
TRAIN, TEST = ["mug_0000", "mug_0001"], ["mug_0002"]
TINY = {"render": {"rings": 1, "segments": 4, "resolution": 32}}
PAIR = {"transfer_prior": 0.5, "prior_method": "nearest", "transfer_vote": "off"}


def _network_config():
    finetune = {"method": "network", "iterations": 1, "ssl_weight": 0.0, "device": "cpu"}
    return load_config("cpu", {**TINY, "finetune": finetune})


def _part_miou(gt, predicted, areas):
    """Naive per-shape part mIoU, area-weighted, under the PartNet rule: faces whose truth is
    class 0 are left out (the synthetic mugs' 0 is their body, excluded as PartNet's "other"),
    and every part the truth or the prediction holds there counts."""
    pairs = [(g, p, a) for g, p, a in zip(gt, predicted, areas, strict=True) if g != 0]
    ious = []
    for part in sorted(({g for g, _, _ in pairs} | {p for _, p, _ in pairs}) - {0, -1}):
        inter = sum(a for g, p, a in pairs if g == part and p == part)
        union = sum(a for g, p, a in pairs if g == part or p == part)
        ious.append(inter / union)
    return float(np.mean(ious))


def test_the_leave_one_out_score_counts_a_part_predicted_where_there_is_none():
    gt = np.array([1, 1, 2, 2, 0, 0])
    areas = np.ones(6)
    # Part 3 is predicted on a face of part 2: 2 scores 1/2 and 3 scores 0, as the evaluator
    # would; the faces whose truth is "other" (0) weigh nothing, whatever they are called.
    predicted = np.array([1, 1, 2, 3, 3, -1])
    got = methods._part_miou(gt, predicted, areas, (0,))
    assert got == pytest.approx((1.0 + 0.5 + 0.0) / 3) == pytest.approx(_part_miou(gt, predicted, areas))
    evaluator = SegmentationEvaluator(["other", "a", "b", "c"], convention="partnet", weighting="faces")
    evaluator.process(6, gt, np.where(predicted < 0, 0, predicted), shape_id="s")
    assert got == pytest.approx(evaluator.evaluate()["per_shape"]["s"])
    # A face with no label (-1) is wrong for its part and predicts none.
    assert methods._part_miou(gt, np.array([1, -1, 2, 2, 0, 0]), areas, (0,)) == pytest.approx(0.75)


def test_transfer_vote_names_a_known_vote():
    with pytest.raises(ConfigError, match="transfer_vote"):
        load_config("cpu", {"segment": {"transfer_vote": "sometimes"}})
    # It acts on a nearest pair only; with another prior it is read and plays no part.
    assert load_config("cpu", {"segment": {"prior_method": "transfer"}}).segment.transfer_vote == "unseen"
    assert load_config("paper").segment.transfer_vote == "off"


def test_auto_leaves_each_labelled_shape_out_and_scores_both_sources(tmp_path):
    config = _network_config()
    source = ViewSource.from_config(DATASET, config)
    run = FaceRun(config=config, source=source, labelled_shapes=list(TRAIN), unlabelled_shapes=list(TRAIN),
                  num_classes=len(source.dataset.label_names), views_per_shape=0, seed=0, exclude_classes=(0,),
                  init="scratch", folder=tmp_path / "scratch_k2_run0", progress=False)  # fmt: skip
    decision = choose_transfer_vote(run)
    assert [fold["left_out"] for fold in decision["folds"]] == TRAIN
    # Transfer's score is what carrying the other shape's labels gives, computed here naively.
    for fold, other in zip(decision["folds"], TRAIN[::-1], strict=True):
        target = source.mesh(fold["left_out"])
        transfer = build_transfer(config, source, [other], run.num_classes, exclude_classes=(0,))
        probs = transfer.face_probabilities(target)
        probs[:, 0] = -1
        expected = _part_miou(target.face_labels, probs.argmax(axis=1), target.face_areas())
        assert fold["transfer"] == pytest.approx(expected)
        assert 0.0 <= fold["lookup"] <= 1.0
    assert decision["transfer"] == pytest.approx(sum(f["transfer"] for f in decision["folds"]))
    assert decision["joined"] == (decision["transfer"] > decision["lookup"])
    # Each fold's lookup is a bank of the other shape, beside the run's folder.
    for index in range(2):
        assert (tmp_path / f"scratch_k2_run0_loo{index}_nearest-prior" / "checkpoints" / "last.pt").exists()
    # One labelled shape: nothing to leave out, transfer stays out.
    single = FaceRun(**{**run.__dict__, "labelled_shapes": TRAIN[:1]})
    assert choose_transfer_vote(single) == {
        "joined": False, "transfer": None, "lookup": None, "folds": [],
        "reason": "one labelled shape: nothing to leave out",
    }  # fmt: skip
    prior = label_prior("nearest", single, "auto")
    assert not prior.joined and json.loads(transfer_vote_record(single.folder).read_text())["joined"] is False
    assert label_prior("nearest", single, "equal").joined
    # Beside another prior than the pair's lookup, transfer does not vote: that prior alone.
    assert type(label_prior("transfer", single, "equal")).__name__ == "LabelTransfer"


def test_the_protocol_scores_auto_as_the_pair_or_the_thirds_it_chose(tmp_path):
    config = _network_config()
    variants = {
        "pair": PAIR,
        "auto": {**PAIR, "transfer_vote": "auto"},
        "thirds": {**PAIR, "transfer_vote": "equal"},
        # near: transfer's third fades with distance; far beyond every distance it is the thirds,
        # far below them the pair, and in between something else.
        "nearwide": {**PAIR, "transfer_vote": "near", "transfer_vote_radius": 1e3},
        "nearnarrow": {**PAIR, "transfer_vote": "near", "transfer_vote_radius": 1e-9},
        "near": {**PAIR, "transfer_vote": "near"},
        # unseen: transfer labels the unseen faces farther than the distance from every seen one.
        "unseenall": {**PAIR, "transfer_vote": "unseen", "unseen_transfer_distance": 0.0},
        "unseennone": {**PAIR, "transfer_vote": "unseen", "unseen_transfer_distance": 1e3},
    }
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, runs=1, progress=False, keep_checkpoints="weights")
    run_fewshot(config, DATASET, tmp_path, k=2, refinements=variants, **cell)
    scores = {
        name: json.loads((tmp_path / f"results_scratch+{name}_k2.json").read_text())["per_run"][0][
            "per_shape"
        ]
        for name in variants
    }
    decision = json.loads(transfer_vote_record(tmp_path / "scratch_k2_run0").read_text())
    assert scores["auto"] == scores["thirds" if decision["joined"] else "pair"]
    # The thirds are another segmentation than the pair, or this would prove nothing.
    assert scores["thirds"] != scores["pair"]
    assert scores["nearwide"] == scores["thirds"] and scores["nearnarrow"] == scores["pair"]
    assert scores["unseennone"] == scores["pair"]
    # unseen at distance 0: the pair's labels on every seen face, transfer's on the unseen ones.
    run = tmp_path / "scratch_k2_run0"
    pair = load_predictions(run / predictions_file("pair"))["mug_0002"]
    unseen = load_predictions(run / predictions_file("unseenall"))["mug_0002"]
    thirds = load_predictions(run / predictions_file("thirds"))["mug_0002"]
    hidden = pair.face_confidence == 0
    assert hidden.any() and not hidden.all()
    np.testing.assert_array_equal(unseen.face_labels[~hidden], pair.face_labels[~hidden])
    # The thirds give unseen faces transfer's labels too (nothing else votes there).
    np.testing.assert_array_equal(unseen.face_labels[hidden], thirds.face_labels[hidden])
    # At k = 1 auto keeps the pair.
    run_fewshot(config, DATASET, tmp_path, k=1, refinements=variants, **cell)
    k1 = {
        name: json.loads((tmp_path / f"results_scratch+{name}_k1.json").read_text())["per_run"][0][
            "per_shape"
        ]
        for name in variants
    }
    assert k1["auto"] == k1["pair"]


def test_one_lookup_per_run_serves_the_pair_its_transfer_votes_and_self_training(tmp_path, monkeypatch):
    from mvdecor.protocols import methods

    loads = []
    load = methods._nearest_prior
    monkeypatch.setattr(methods, "_nearest_prior", lambda run: loads.append(run.folder.name) or load(run))
    finetune = {"method": "network", "iterations": 1, "ssl_weight": 0.0, "device": "cpu", "pseudo_shapes": 1}
    config = load_config("cpu", {**TINY, "finetune": finetune, "segment": PAIR})
    segmented = []
    face_probabilities = SegmenterPrior.face_probabilities
    monkeypatch.setattr(
        SegmenterPrior,
        "face_probabilities",
        lambda self, mesh: segmented.append(mesh.name) or face_probabilities(self, mesh),
    )
    variants = {"thirds": {**PAIR, "transfer_vote": "equal"}, "near": {**PAIR, "transfer_vote": "near"}}
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, runs=1, progress=False, keep_checkpoints="weights")
    run_fewshot(config, DATASET, tmp_path, k=1, refinements=variants, **cell)
    assert loads == ["scratch_k1_run0"]
    # The lookup segments each test shape twice: for the pair's own vote, and once for every variant.
    assert sorted(segmented) == sorted(2 * TEST)
    # The thirds were scored, with the same lookup the pair used.
    assert (tmp_path / "results_scratch+thirds_k1.json").exists()
    record = json.loads((tmp_path / "scratch_k1_run0" / "run.json").read_text())
    # Self-training labelled the unlabelled shape, with that lookup (no load of its own).
    assert record["pseudo_labelled_shapes"] == sorted(set(TRAIN) - set(record["labelled_shapes"]))
