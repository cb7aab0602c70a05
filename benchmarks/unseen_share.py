"""How much of each shape's surface the test views never see, and how much of that is far from every seen face.

``segment.transfer_vote: unseen`` (the ``cpu`` preset's) changes the labels of the
faces no test view sees that lie farther than ``segment.unseen_transfer_distance``
(a share of the bounding-box diagonal) from every seen face; every other face keeps
the pair's label. So the area of those faces bounds what the rule can change on a
dataset, and it needs no network: only the meshes and the preset's test cameras
(the training scheme, or ``segment.rings`` / ``segments`` when set). This script
prints, per shape and over all shapes, the unseen and the far-unseen shares of
the surface area (area-weighted, every face counted, labelled or not).

Example::

    python benchmarks/unseen_share.py ../shared/data/faust_smpl --preset cpu
    python benchmarks/unseen_share.py \\
        partnet_mobility:root=../shared/data/partnet_mobility,categories=Oven --distance 0.02
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from mvdecor.config import Config, load_config
from mvdecor.data import open_dataset
from mvdecor.data.mesh import LabelledMesh
from mvdecor.inference.refine import far_unseen_faces
from mvdecor.render import Renderer
from mvdecor.render.cameras import shape_cameras
from mvdecor.render.views import seen_faces


def surface_shares(mesh: LabelledMesh, config: Config, distance: float) -> tuple[float, float, int]:
    """``(unseen area share, far-unseen area share, far-unseen faces)`` of a unit-sphere-normalised
    ``mesh`` under ``config``'s test cameras, far meaning :func:`far_unseen_faces` at ``distance``."""
    cameras = shape_cameras(config.render, mesh.name, config.segment.rings, config.segment.segments)
    renderer = Renderer(mesh)
    seen = seen_faces([renderer.render_view(cameras, index) for index in range(len(cameras))], mesh.num_faces)
    far = far_unseen_faces(mesh, seen, distance)
    areas = mesh.face_areas()
    total = float(areas.sum())
    return float(areas[~seen].sum()) / total, float(areas[far].sum()) / total, int(far.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a dataset spec or folder")
    parser.add_argument("--preset", default="cpu", help="the preset or config file whose test views count")
    parser.add_argument(
        "--distance",
        type=float,
        default=None,
        help="far: farther than this share of the box diagonal from every seen face "
        "(default: the preset's segment.unseen_transfer_distance)",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="mvdecor.data")  # the loader's notes on skipped pieces
    config = load_config(args.preset)
    distance = config.segment.unseen_transfer_distance if args.distance is None else args.distance
    dataset = open_dataset(args.dataset)
    print(f"preset {args.preset}, distance {distance} of the box diagonal")
    print("| shape | unseen area % | far unseen area % | far unseen faces |")
    print("| --- | ---: | ---: | ---: |")
    shares = []
    for shape_id in dataset.shape_ids():
        mesh = dataset.load(shape_id).normalized().replace(name=shape_id)
        unseen, far, count = surface_shares(mesh, config, distance)
        shares.append((unseen, far))
        print(f"| {shape_id} | {100 * unseen:.2f} | {100 * far:.3f} | {count} |")
    unseen_mean, far_mean = np.mean(shares, axis=0) if shares else (float("nan"), float("nan"))
    print(f"| **mean of {len(shares)} shapes** | **{100 * unseen_mean:.2f}** | **{100 * far_mean:.3f}** | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
