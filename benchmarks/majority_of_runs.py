"""Would an ensemble of fine-tuned networks help? The face-by-face majority of several variants' predictions.

Fine-tuning a few networks and letting them vote costs a multiple of the
fine-tuning time; whether it pays can be read off runs a ``benchmarks/fewshot.py``
work folder already holds. For variants of the same setting (run tags such as
``mvdecor-effnet-inet-net`` and ``mvdecor-effnet-inet-net-ft200``: the same labelled
draws and test shapes, networks trained differently), this script gives every test
face the label most variants give it (ties to the most confident: the sum of the
variants' face confidences) and reports part mIoU per category, for each variant
alone and for the majority, with the protocol's ``SegmentationEvaluator``. The kept
predictions hold labels and confidences only, not distributions, so a majority of
labels stands in for averaging the networks' probabilities.

Example::

    python benchmarks/majority_of_runs.py \\
        partnet_mobility:root=../shared/data/partnet_mobility,categories=Laptop+Safe \\
        --work W/fewshot --tags mvdecor-a,mvdecor-b,mvdecor-c --k 1 --runs 3
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from mvdecor.data import open_dataset
from mvdecor.evaluation.segmentation import SegmentationEvaluator
from mvdecor.protocols.predictions import PREDICTIONS_FILE, ShapePrediction, load_predictions

#: The column of the majority, after the variants' own.
MAJORITY = "majority"


def majority_labels(predictions: list[ShapePrediction], num_classes: int) -> np.ndarray:
    """``(F,)`` int64: each face's most frequent label among ``predictions``; ties go to the
    label whose voters' confidences sum highest (then to the smallest label)."""
    faces = len(predictions[0].face_labels)
    counts = np.zeros((faces, num_classes))
    confidence = np.zeros((faces, num_classes))
    rows = np.arange(faces)
    for prediction in predictions:
        np.add.at(counts, (rows, prediction.face_labels), 1.0)
        np.add.at(confidence, (rows, prediction.face_labels), prediction.face_confidence)
    # Confidences lie in [0, 1]: scaled below one vote, they only break ties.
    return np.argmax(counts + confidence / (len(predictions) + 1.0), axis=1).astype(np.int64)


def category_scores(
    dataset, folder: Path, tags: list[str], setting: str, runs: int, convention: str
) -> dict[str, float]:
    """Mean part mIoU over ``runs`` of each tag's runs of ``setting`` (``k1``, ``k2_v3``) and of their majority."""
    names = dataset.label_names_of(folder.name)
    scores: dict[str, list[float]] = {name: [] for name in [*tags, MAJORITY]}
    for run in range(runs):
        predicted = {
            tag: load_predictions(folder / f"{tag}_{setting}_run{run}" / PREDICTIONS_FILE) for tag in tags
        }
        evaluators = {name: SegmentationEvaluator(names, convention=convention) for name in scores}
        for shape_id in predicted[tags[0]]:
            mesh = dataset.load(shape_id)
            for tag in tags:
                evaluators[tag].process(mesh, None, predicted[tag][shape_id].face_labels, shape_id=shape_id)
            votes = majority_labels([predicted[tag][shape_id] for tag in tags], len(names))
            evaluators[MAJORITY].process(mesh, None, votes, shape_id=shape_id)
        for name, evaluator in evaluators.items():
            scores[name].append(evaluator.evaluate()["part_miou"])
    return {name: float(np.mean(values)) for name, values in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="the dataset spec the work folder's runs were made on")
    parser.add_argument(
        "--work", required=True, type=Path, help="the few-shot folder: one sub-folder per category"
    )
    parser.add_argument("--tags", required=True, help="the variants' run tags, comma-separated (two or more)")
    parser.add_argument("--k", type=int, required=True, help="labelled shapes of the setting")
    parser.add_argument(
        "--views", type=int, default=0, help="labelled views per shape of the setting (0: all)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--categories", required=True, help="A+B+...")
    parser.add_argument("--convention", default="partnet", choices=("partnet", "shapenet"))
    args = parser.parse_args(argv)
    tags = args.tags.split(",")
    if len(tags) < 2:
        parser.error("--tags needs two or more variants")
    warnings.filterwarnings("ignore", module="mvdecor.data")  # the loader's notes on skipped pieces
    dataset = open_dataset(args.dataset)
    setting = f"k{args.k}_v{args.views}" if args.views else f"k{args.k}"
    columns = [*tags, MAJORITY]
    print("| category | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    means: dict[str, list[float]] = {name: [] for name in columns}
    for category in args.categories.split("+"):
        scores = category_scores(dataset, args.work / category, tags, setting, args.runs, args.convention)
        for name in columns:
            means[name].append(scores[name])
        print(f"| {category} | " + " | ".join(f"{100 * scores[n]:.1f}" for n in columns) + " |")
    print("| **mean** | " + " | ".join(f"**{100 * np.mean(means[n]):.1f}**" for n in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
