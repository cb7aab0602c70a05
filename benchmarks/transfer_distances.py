"""How close a category's test shapes lie to its training shapes after label transfer's box alignment.

For every (training shape, test shape) pair of each category in a few-shot benchmark's split,
the area-weighted mean distance from the test shape's face centroids, box-aligned onto the
training shape, to that shape's nearest surface point (the distance ``segment.transfer_vote:
near`` weighs transfer by), in the units of the unit-sphere-normalised training shape.
Printed per category: mean and median over the pairs. No network, no training.

    python benchmarks/transfer_distances.py partnet_mobility:root=PATH,categories=Laptop+Safe \
        --split WORK/split.json
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from mvdecor.data.datasets import open_dataset
from mvdecor.inference.transfer import LabelTransfer, reference_from_mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset spec, e.g. partnet_mobility:root=PATH,categories=A+B")
    parser.add_argument("--split", required=True, help="a few-shot benchmark's split.json (WORK/split.json)")
    parser.add_argument("--samples", type=int, default=20_000, help="surface samples per reference (20000)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # PartNet-Mobility's missing-piece warnings, one per shape
    dataset = open_dataset(args.dataset)
    with open(args.split) as handle:
        split = json.load(handle)["categories"]
    print("| category | training shapes | test shapes | mean | median |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for category, shapes in split.items():
        meshes = {s: dataset.load(s).normalized() for s in shapes["train"] + shapes["test"]}
        distances = []
        for reference_id in shapes["train"]:
            reference = meshes[reference_id]
            transfer = LabelTransfer(
                [reference_from_mesh(reference, samples=args.samples)], int(reference.face_labels.max()) + 1
            )
            for test_id in shapes["test"]:
                areas = meshes[test_id].face_areas()
                nearest = transfer.nearest_distances(meshes[test_id])
                distances.append(float((nearest * areas).sum() / areas.sum()))
        print(
            f"| {category} | {len(shapes['train'])} | {len(shapes['test'])} | "
            f"{np.mean(distances):.3f} | {np.median(distances):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
