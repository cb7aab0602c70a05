"""Where a few-shot run's errors lie: the faces no test view saw, against the faces seen.

The fusion labels each face from the views that see it; a face no view sees
(inside a closed object, the back of a panel lying on another) takes the label
of the nearest seen face (by centroid). On PartNet-style meshes such faces can
be a large share of the surface, so their labels weigh on an area-weighted
score as much as the seen faces'. This script reads the predictions a
``benchmarks/fewshot.py`` work folder kept (``<category>/<tag>_k<k>_run<r>/predictions.npz``;
a face with confidence 0 was unseen) and reports, per category and over its runs:

- the unseen share of the surface area;
- the area-weighted accuracy on seen and on unseen faces;
- the accuracy of the fill itself: unseen faces given the *true* label of their
  nearest seen face (how much of the unseen faces' error the fill adds, rather
  than inherits from wrong seen faces);
- part mIoU as predicted, with the unseen faces labelled by label transfer
  instead (when the folder holds transfer's predictions for the same runs), with
  only the unseen faces far from every seen one labelled by transfer (the rule
  of ``segment.transfer_vote: unseen``, :func:`~mvdecor.inference.refine.far_unseen_faces`
  at ``--far-distance``; a pair's predictions become exactly what that option
  gives), and with every seen face given its true label and the same fill (the
  ceiling of a perfect classifier of the seen faces).

With ``--confusion`` it also lists, per category, the wrong (true part, predicted part)
pairs that cover 0.5 % or more of the scored area, on seen and on unseen faces, for the
runs and for transfer's runs: where a method's errors lie that transfer avoids, or shares.

Nothing is segmented again; it needs only the dataset (to read the meshes) and
the work folder. Example::

    python benchmarks/unseen_faces.py \\
        partnet_mobility:root=../shared/data/partnet_mobility,categories=Laptop+Safe \\
        --work W/fewshot --tag mvdecor-cosine-nnposbalfaces --k 2 --runs 3
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from mvdecor.data import labels_from_nearest_faces, open_dataset
from mvdecor.evaluation.segmentation import SegmentationEvaluator
from mvdecor.inference.refine import far_unseen_faces
from mvdecor.protocols.predictions import PREDICTIONS_FILE, load_predictions, predictions_file

#: Part mIoU columns, in order.
VARIANTS = ("as predicted", "unseen by transfer", "far unseen by transfer", "seen faces true")


def nearest_seen_fill(centroids: np.ndarray, seen: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` with every unseen face given the label of the seen face whose centroid is nearest."""
    return labels_from_nearest_faces(labels, centroids, seen, ~seen)


def category_figures(
    dataset,
    folder: Path,
    tag: str,
    transfer: str,
    k: int,
    runs: int,
    convention: str,
    variant: str = "",
    far_distance: float = 0.01,
    views: int = 0,
) -> dict:
    """The figures of one category's runs (see the module docstring); fractions in [0, 1].

    ``variant``: a refinement variant's predictions (``predictions_<variant>.npz``) instead of
    the run's own. ``far_distance``: :func:`far_unseen_faces`' distance. ``views``: the
    setting's labelled views per shape (``k2_v3`` folders), 0 for whole shapes.
    """
    names = dataset.label_names_of(folder.name)
    sums = dict.fromkeys(("area", "unseen", "seen_ok", "unseen_ok", "fill_ok"), 0.0)
    # Area of (true part, predicted part) on seen / unseen faces, for the runs and for transfer.
    confusion = {
        (source, where): np.zeros((len(names), len(names)))
        for source in ("predicted", "transfer")
        for where in ("seen", "unseen")
    }
    scores: dict[str, list[float]] = {name: [] for name in VARIANTS}
    meshes: dict = {}
    for run in range(runs):
        setting = f"k{k}_v{views}" if views else f"k{k}"
        predicted = load_predictions(folder / f"{tag}_{setting}_run{run}" / predictions_file(variant))
        transfer_file = folder / f"{transfer}_{setting}_run{run}" / PREDICTIONS_FILE
        transferred = load_predictions(transfer_file) if transfer_file.is_file() else None
        evaluators = {name: SegmentationEvaluator(names, convention=convention) for name in VARIANTS}
        for shape_id, prediction in predicted.items():
            if shape_id not in meshes:
                meshes[shape_id] = dataset.load(shape_id)
            mesh = meshes[shape_id]
            truth, areas = mesh.face_labels, mesh.face_areas()
            labelled = truth >= 0
            seen = prediction.face_confidence > 0
            correct = prediction.face_labels == truth
            filled = nearest_seen_fill(mesh.vertices[mesh.faces].mean(axis=1), seen, truth)
            weight = np.where(labelled, areas, 0.0)
            sums["area"] += weight.sum()
            sums["unseen"] += weight[~seen].sum()
            sums["seen_ok"] += (weight * correct)[seen].sum()
            sums["unseen_ok"] += (weight * correct)[~seen].sum()
            sums["fill_ok"] += (weight * (filled == truth))[~seen].sum()
            scored = labelled & (truth > 0) if convention == "partnet" else labelled  # not "other"
            for source, labels in (
                ("predicted", prediction.face_labels),
                ("transfer", None if transferred is None else transferred[shape_id].face_labels),
            ):
                if labels is None:
                    continue
                for where, mask in (("seen", seen & scored), ("unseen", ~seen & scored)):
                    valid = mask & (labels >= 0)
                    np.add.at(confusion[source, where], (truth[valid], labels[valid]), areas[valid])
            evaluators["as predicted"].process(mesh, None, prediction.face_labels, shape_id=shape_id)
            evaluators["seen faces true"].process(mesh, None, filled, shape_id=shape_id)
            if transferred is not None:
                mixed = np.where(seen, prediction.face_labels, transferred[shape_id].face_labels)
                evaluators["unseen by transfer"].process(mesh, None, mixed, shape_id=shape_id)
                far = far_unseen_faces(mesh, seen, far_distance)
                mixed = np.where(far, transferred[shape_id].face_labels, prediction.face_labels)
                evaluators["far unseen by transfer"].process(mesh, None, mixed, shape_id=shape_id)
        for name, evaluator in evaluators.items():
            result = evaluator.evaluate()
            if result["num_shapes"]:
                scores[name].append(result["part_miou"])
    seen_area = sums["area"] - sums["unseen"]
    return {
        "unseen_share": sums["unseen"] / sums["area"],
        "seen_accuracy": sums["seen_ok"] / seen_area if seen_area else float("nan"),
        "unseen_accuracy": sums["unseen_ok"] / sums["unseen"] if sums["unseen"] else float("nan"),
        "fill_accuracy": sums["fill_ok"] / sums["unseen"] if sums["unseen"] else float("nan"),
        **{name: float(np.mean(values)) if values else float("nan") for name, values in scores.items()},
        "confusion": {key: matrix / sums["area"] for key, matrix in confusion.items()},
        "label_names": names,
    }


def confusion_rows(figures: dict, least: float = 0.005) -> list[tuple[str, str, list[float]]]:
    """The wrong (true part, predicted part) pairs that cover at least ``least`` of the labelled
    area in any of the four matrices: ``(true, predicted, [seen by the runs, seen by transfer,
    unseen by the runs, unseen by transfer])``, shares of the area, largest first."""
    keys = [("predicted", "seen"), ("transfer", "seen"), ("predicted", "unseen"), ("transfer", "unseen")]
    matrices = [figures["confusion"][key] for key in keys]
    names = figures["label_names"]
    rows = []
    for true in range(len(names)):
        for guess in range(len(names)):
            shares = [float(m[true, guess]) for m in matrices]
            if true != guess and max(shares) >= least:
                rows.append((names[true], names[guess], shares))
    return sorted(rows, key=lambda row: -max(row[2]))


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="the dataset spec the work folder's runs were made on")
    parser.add_argument(
        "--work", required=True, type=Path, help="the few-shot folder: one sub-folder per category"
    )
    parser.add_argument(
        "--tag", required=True, help="the method's name in the run folders (e.g. mvdecor-cosine)"
    )
    parser.add_argument("--transfer", default="transfer", help="transfer's name in the run folders")
    parser.add_argument(
        "--variant",
        default="",
        help="a refinement variant of the runs (fewshot.py --refine NAME=...): read its predictions",
    )
    parser.add_argument("--k", type=int, required=True, help="labelled shapes of the setting")
    parser.add_argument(
        "--views", type=int, default=0, help="labelled views per shape of the setting (0: all)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--categories", default="", help="A+B+...; default: every category folder with runs")
    parser.add_argument("--convention", default="partnet", choices=("partnet", "shapenet"))
    parser.add_argument(
        "--far-distance",
        type=float,
        default=0.01,
        help="the 'far unseen' column: an unseen face farther than this share of the mesh's "
        "bounding-box diagonal from every seen face takes transfer's label (segment.unseen_transfer_distance)",
    )
    parser.add_argument(
        "--confusion",
        action="store_true",
        help="also print, per category, the wrong (true, predicted) part pairs covering 0.5 %% or "
        "more of the labelled area, on seen and unseen faces, for the runs and for transfer",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="mvdecor.data")  # the loader's notes on skipped pieces
    dataset = open_dataset(args.dataset)
    if args.categories:
        categories = args.categories.split("+")
    else:
        categories = sorted(
            p.name
            for p in args.work.iterdir()
            if (p / (f"{args.tag}_k{args.k}" + (f"_v{args.views}" if args.views else "") + "_run0")).is_dir()
        )
    header = [
        "category",
        "unseen area %",
        "accuracy seen",
        "accuracy unseen",
        "fill accuracy, true seen labels",
    ]
    print("| " + " | ".join(header + [f"part mIoU, {name}" for name in VARIANTS]) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1 + len(VARIANTS)))
    means: dict[str, list[float]] = {name: [] for name in VARIANTS}
    confusions: dict[str, list] = {}
    for category in categories:
        figures = category_figures(
            dataset,
            args.work / category,
            args.tag,
            args.transfer,
            args.k,
            args.runs,
            args.convention,
            args.variant,
            args.far_distance,
            args.views,
        )
        if args.confusion:
            confusions[category] = confusion_rows(figures)
        for name in VARIANTS:
            means[name].append(figures[name])
        cells = [
            figures[key] for key in ("unseen_share", "seen_accuracy", "unseen_accuracy", "fill_accuracy")
        ]
        print(f"| {category} | " + " | ".join(_pct(v) for v in cells + [figures[n] for n in VARIANTS]) + " |")
    print(
        "| **mean** |"
        + " |" * 4
        + " "
        + " | ".join(f"**{_pct(np.mean(means[n]))}**" for n in VARIANTS)
        + " |"
    )
    if args.confusion:
        print()
        print(
            "Wrong (true, predicted) part pairs covering 0.5 % or more of the labelled area "
            "(% of the test shapes' labelled area, over all runs):"
        )
        print()
        print(
            "| category | true | predicted | seen, runs | seen, transfer | unseen, runs | unseen, transfer |"
        )
        print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for category, rows in confusions.items():
            for true, guess, shares in rows:
                print(f"| {category} | {true} | {guess} | " + " | ".join(_pct(v) for v in shares) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
