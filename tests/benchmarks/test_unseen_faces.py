"""benchmarks/unseen_faces.py: its figures on predictions made up for two tiny synthetic shapes."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from mvdecor.data import open_dataset
from mvdecor.protocols.predictions import ShapePrediction, save_predictions

DATASET = "synthetic:categories=mug,n=2,textured=0"


@pytest.fixture(scope="module")
def script():
    return load_benchmark("unseen_faces")


def test_the_fill_takes_the_nearest_seen_faces_label(script):
    centroids = np.array([[0.0, 0, 0], [1, 0, 0], [0.1, 0, 0], [0.9, 0, 0]])
    seen = np.array([True, True, False, False])
    filled = script.nearest_seen_fill(centroids, seen, np.array([3, 5, -1, -1]))
    assert filled.tolist() == [3, 5, 3, 5]


def test_figures_split_the_errors_between_seen_and_unseen_faces(tmp_path, script, capsys):
    dataset = open_dataset(DATASET)
    shapes = dataset.shape_ids()
    meshes = {shape_id: dataset.load(shape_id) for shape_id in shapes}
    folder = tmp_path / "mug"
    # Run 0 of "net": every face seen and right. Transfer: every face wrong.
    right = {s: ShapePrediction(m.face_labels, np.ones(m.num_faces, np.float32)) for s, m in meshes.items()}
    save_predictions(folder / "net_k1_run0" / "predictions.npz", right)
    wrong = {s: ShapePrediction((m.face_labels + 1) % m.num_labels, p.face_confidence) for (s, m), p in
             zip(meshes.items(), right.values(), strict=True)}  # fmt: skip
    save_predictions(folder / "transfer_k1_run0" / "predictions.npz", wrong)
    figures = script.category_figures(dataset, folder, "net", "transfer", 1, 1, "partnet")
    assert figures["unseen_share"] == 0 and figures["seen_accuracy"] == pytest.approx(1)
    assert figures["as predicted"] == figures["seen faces true"] == 1
    # The confusion: the runs' errors none; transfer's every scored face (all seen) shifted by one.
    # PartNet's rule: faces whose truth is "other" (0) are not scored.
    runs_seen = figures["confusion"]["predicted", "seen"]
    transfer_seen = figures["confusion"]["transfer", "seen"]
    areas = [(m.face_areas(), m.face_labels) for m in meshes.values()]
    scored = sum(a[t > 0].sum() for a, t in areas) / sum(a[t >= 0].sum() for a, t in areas)
    assert 0 < scored < 1
    assert np.trace(runs_seen) == pytest.approx(scored)
    assert not (runs_seen - np.diag(np.diag(runs_seen))).any() and not runs_seen[0].any()
    assert np.trace(transfer_seen) == 0 and transfer_seen.sum() == pytest.approx(scored)
    assert not figures["confusion"]["predicted", "unseen"].any()
    rows = script.confusion_rows(figures)
    names = figures["label_names"]
    for true, guess, shares in rows:
        assert names.index(guess) == (names.index(true) + 1) % len(names)
        assert shares[0] == shares[2] == shares[3] == 0 and shares[1] >= 0.005
    assert sum(row[2][1] for row in rows) <= 1 + 1e-9 and rows
    # Half the faces unseen and labelled wrong: the seen ones stay right, the ceiling fills from them.
    mesh = meshes[shapes[0]]
    unseen = np.arange(mesh.num_faces) % 2 == 1
    labels = np.where(unseen, (mesh.face_labels + 1) % mesh.num_labels, mesh.face_labels)
    confidence = np.where(unseen, 0.0, 1.0).astype(np.float32)
    save_predictions(folder / "net_k1_run0" / "predictions.npz",
                     {**right, shapes[0]: ShapePrediction(labels, confidence)})  # fmt: skip
    figures = script.category_figures(dataset, folder, "net", "transfer", 1, 1, "partnet")
    area = mesh.face_areas()
    total = sum(m.face_areas()[m.face_labels >= 0].sum() for m in meshes.values())
    assert figures["unseen_share"] == pytest.approx(area[unseen & (mesh.face_labels >= 0)].sum() / total)
    assert figures["seen_accuracy"] == pytest.approx(1) and figures["unseen_accuracy"] == 0
    assert 0.5 < figures["fill_accuracy"] <= 1
    assert figures["as predicted"] < 1 and figures["unseen by transfer"] < figures["seen faces true"]

    # Only the unseen faces far from every seen one by transfer: none at a huge distance, all at 0.
    # (A variant right on its unseen faces, so that transfer's wrong labels there show.)
    save_predictions(folder / "net_k1_run0" / "predictions_hidden_right.npz",
                     {**right, shapes[0]: ShapePrediction(mesh.face_labels, confidence)})  # fmt: skip

    def far(distance):
        args = (dataset, folder, "net", "transfer", 1, 1, "partnet", "hidden_right", distance)
        return script.category_figures(*args)

    assert far(1e3)["far unseen by transfer"] == far(1e3)["as predicted"] == 1
    assert far(0.0)["far unseen by transfer"] == far(0.0)["unseen by transfer"] < 1
    # A refinement variant's predictions are read in place of the run's own.
    save_predictions(folder / "net_k1_run0" / "predictions_all_right.npz", right)
    variant = script.category_figures(dataset, folder, "net", "transfer", 1, 1, "partnet", "all_right")
    assert variant["unseen_share"] == 0 and variant["as predicted"] == 1
    # A setting of labelled views (k2_v3-style folders) is read from its own folders.
    save_predictions(folder / "net_k1_v2_run0" / "predictions.npz", right)
    save_predictions(folder / "transfer_k1_v2_run0" / "predictions.npz", wrong)
    views = script.category_figures(dataset, folder, "net", "transfer", 1, 1, "partnet", views=2)
    assert views["as predicted"] == 1 and views["unseen_share"] == 0
    assert script.main([DATASET, "--work", str(tmp_path), "--tag", "net", "--k", "1", "--runs", "1"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| category | unseen area %") and "| mug |" in table and "**mean**" in table
    assert "Wrong (true, predicted)" not in table
    args = [DATASET, "--work", str(tmp_path), "--tag", "net", "--k", "1", "--runs", "1", "--confusion"]
    assert script.main(args) == 0
    table = capsys.readouterr().out
    assert "| category | true | predicted | seen, runs |" in table
