"""benchmarks/majority_of_runs.py: the face-by-face majority of several variants' kept predictions."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from mvdecor.data import open_dataset
from mvdecor.protocols.predictions import ShapePrediction, save_predictions

DATASET = "synthetic:categories=mug,n=2,textured=0"


@pytest.fixture(scope="module")
def script():
    return load_benchmark("majority_of_runs")


def _prediction(labels, confidence) -> ShapePrediction:
    return ShapePrediction(np.asarray(labels, np.int64), np.asarray(confidence, np.float32))


def test_the_majority_label_wins_and_confidence_breaks_ties(script):
    a = _prediction([0, 1, 2, 0], [0.9, 0.2, 0.5, 0.1])
    b = _prediction([0, 2, 1, 1], [0.1, 0.9, 0.4, 0.8])
    c = _prediction([1, 1, 1, 2], [1.0, 0.1, 0.1, 0.3])
    assert script.majority_labels([a, b, c], 3).tolist() == [0, 1, 1, 1]  # face 3: one vote each, 0.8 wins
    assert script.majority_labels([a, b], 3).tolist() == [0, 2, 2, 1]  # two voters: the more confident


def test_three_variants_each_wrong_on_other_faces_vote_right(tmp_path, script, capsys):
    dataset = open_dataset(DATASET)
    meshes = {shape_id: dataset.load(shape_id) for shape_id in dataset.shape_ids()}
    folder = tmp_path / "mug"
    for index, tag in enumerate(("a", "b", "c")):
        predictions = {}
        for shape_id, mesh in meshes.items():
            wrong = np.arange(mesh.num_faces) % 3 == index  # a third of the faces, another third per variant
            labels = np.where(wrong, (mesh.face_labels + 1) % mesh.num_labels, mesh.face_labels)
            predictions[shape_id] = _prediction(labels, np.ones(mesh.num_faces))
        save_predictions(folder / f"{tag}_k1_run0" / "predictions.npz", predictions)
    scores = script.category_scores(dataset, folder, ["a", "b", "c"], "k1", 1, "partnet")
    assert scores["majority"] == pytest.approx(1.0)
    assert all(scores[tag] < 0.9 for tag in "abc")
    args = [
        DATASET,
        "--work",
        str(tmp_path),
        "--tags",
        "a,b,c",
        "--k",
        "1",
        "--runs",
        "1",
        "--categories",
        "mug",
    ]
    assert script.main(args) == 0
    table = capsys.readouterr().out
    assert table.startswith("| category | a | b | c | majority |") and "| **mean** |" in table
    assert "| mug |" in table and "100.0 |" in table
