"""Self-training on pseudo-labelled unlabelled shapes (``finetune.pseudo_shapes``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvdecor.config import load_config
from mvdecor.correspond.source import ViewSource
from mvdecor.errors import ConfigError
from mvdecor.protocols.fewshot import run_fewshot
from mvdecor.train.finetune import finetune, pseudo_face_labels
from mvdecor.train.labelled import LabelledView, LabelledViewDataset

pytestmark = pytest.mark.usefixtures("one_thread")

DATASET = "synthetic:categories=mug,n=3,textured=0"
TRAIN, TEST = ["mug_0000", "mug_0001"], ["mug_0002"]
TINY = {"render": {"rings": 1, "segments": 4, "resolution": 32}}


def test_pseudo_face_labels_keep_the_most_confident_fraction():
    labels = np.array([0, 1, 2, 1, 0, 2, -1, 1])
    confidence = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.0, 0.6])
    kept = pseudo_face_labels(labels, confidence, keep=0.5)
    # Naive reference: of the 7 labelled faces, those at or above the 50 % quantile of their confidences.
    threshold = np.quantile(confidence[labels >= 0], 0.5)
    expected = [
        label if label >= 0 and c >= threshold else -1 for label, c in zip(labels, confidence, strict=True)
    ]
    assert kept.tolist() == expected and (kept >= 0).sum() == 4
    assert (pseudo_face_labels(labels, confidence, keep=1.0) == labels).all()
    assert (pseudo_face_labels(labels, confidence, keep=0.0) == -1).all()
    assert labels[1] == 1  # the input is not changed


def test_pseudo_views_carry_their_pseudo_labels_and_are_drawn_at_their_share():
    config = load_config("cpu", TINY)
    source = ViewSource.from_config(DATASET, config)
    mesh = source.mesh(TRAIN[1])
    pseudo = np.full(mesh.num_faces, 2, np.int64)
    labelled = [LabelledView(TRAIN[0], 0, None)]
    pseudo_items = [LabelledView(TRAIN[1], v, None) for v in range(3)]
    common = dict(modalities=config.model.modalities, stats=None, num_classes=4)
    only_pseudo = LabelledViewDataset(source, labelled, **common, pseudo_items=pseudo_items,
                                      face_labels={TRAIN[1]: pseudo}, pseudo_share=1.0)  # fmt: skip
    for index in range(5):
        labels = only_pseudo[index]["labels"]
        assert set(np.unique(labels).tolist()) <= {-1, 2} and (labels == 2).any()
    never = LabelledViewDataset(source, labelled, **common, pseudo_items=pseudo_items,
                                face_labels={TRAIN[1]: pseudo}, pseudo_share=0.0)  # fmt: skip
    plain = LabelledViewDataset(source, labelled, **common)
    for index in range(5):
        assert (never[index]["labels"] == plain[index]["labels"]).all()
    with pytest.raises(ConfigError, match="without face labels"):
        LabelledViewDataset(source, labelled, **common, pseudo_items=pseudo_items)


def test_finetune_needs_a_pseudo_labeller_when_asked_to_self_train(tmp_path):
    config = load_config("cpu", {**TINY, "finetune": {"method": "network", "iterations": 1, "ssl_weight": 0.0,
                                                      "device": "cpu", "pseudo_shapes": 1}})  # fmt: skip
    with pytest.raises(ConfigError, match="pseudo-labeller"):
        finetune(config, DATASET, tmp_path / "run", labelled_shapes=TRAIN[:1], progress=False, report=False)
    asked = []

    def labeller(shape_id):
        asked.append(shape_id)
        faces = ViewSource.from_config(DATASET, config).mesh(shape_id).num_faces
        return np.ones(faces, np.int64), np.linspace(0, 1, faces)

    finetune(config, DATASET, tmp_path / "run", labelled_shapes=TRAIN[:1], unlabelled_shapes=TRAIN,
             pseudo_labeller=labeller, progress=False, report=False)  # fmt: skip
    assert asked == [TRAIN[1]]  # the one unlabelled shape that is not labelled
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["pseudo_labelled_shapes"] == [TRAIN[1]]
    # Opened again once finished (to be scored): no training, so no second pseudo-labelling.
    finetune(config, DATASET, tmp_path / "run", labelled_shapes=TRAIN[:1], unlabelled_shapes=TRAIN,
             pseudo_labeller=labeller, progress=False, report=False)  # fmt: skip
    assert asked == [TRAIN[1]]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["pseudo_labelled_shapes"] == [TRAIN[1]]


def test_the_protocol_pseudo_labels_with_the_initial_networks_lookup(tmp_path):
    finetune_settings = {"method": "network", "iterations": 2, "ssl_weight": 0.0, "device": "cpu"}
    cell = dict(train_shapes=TRAIN, test_shapes=TEST, k=1, runs=1, progress=False, keep_checkpoints="weights")
    plain = run_fewshot(
        load_config("cpu", {**TINY, "finetune": finetune_settings}), DATASET, tmp_path / "a", **cell
    )
    config = load_config(
        "cpu", {**TINY, "finetune": {**finetune_settings, "pseudo_shapes": 1, "pseudo_share": 1.0}}
    )
    selftrained = run_fewshot(config, DATASET, tmp_path / "b", **cell)
    run = tmp_path / "b" / "scratch_k1_run0"
    labelled = json.loads((run / "run.json").read_text())["labelled_shapes"]
    assert json.loads((run / "run.json").read_text())["pseudo_labelled_shapes"] == sorted(
        set(TRAIN) - set(labelled)
    )
    # The lookup that labelled them is the pair's bank, beside the run's folder.
    assert (tmp_path / "b" / "scratch_k1_run0_nearest-prior" / "checkpoints" / "last.pt").exists()
    # Trained on other views, from the same start and seed: another network.
    weights = [torch.load(folder / "checkpoints" / "last.pt", weights_only=False)["model"]
               for folder in (tmp_path / "a" / "scratch_k1_run0", run)]  # fmt: skip
    assert any(not torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert plain["training"]["finetune"]["pseudo_shapes"] == 0
    assert selftrained["training"]["finetune"]["pseudo_shapes"] == 1
