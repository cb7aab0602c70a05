"""Cross-view and cross-person correspondence on the FAUST humans (paper Fig. 3, measured).

Given a network pre-trained on some of the meshes of ``faust_smpl`` (see
BENCHMARKS.md for the command), prints for the held-out meshes:

- **same shape**: the share of ground-truth matched pixels of two views whose
  nearest embedding in the other view lies within 2 / 5 pixels of the true match;
- **same person, another pose** and **another person**: the share of pixels
  whose nearest embedding in the other mesh's view (same camera direction)
  carries the same body-part label (24 SMPL parts), where no pixel-exact ground
  truth exists;

each for the pre-trained network, a randomly initialised network of the same
architecture (same input normalisation) and raw world normals.

Run: ``python benchmarks/faust_correspondence.py RUN/checkpoints/best.pt ../shared/data/faust_smpl
--same-person faust_088 faust_089 --other-person faust_090 ... [--json OUT]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from mvdecor.correspond.source import ViewSource
from mvdecor.evaluation.correspondence import (
    correspondence_accuracy,
    label_transfer_accuracy,
    network_embed_fn,
    normals_embed_fn,
)
from mvdecor.evaluation.embedding import sample_view_pairs
from mvdecor.models.checkpoints import build_model, load_embedding


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="the faust_smpl folder")
    parser.add_argument(
        "--same-person", nargs="+", required=True, help="held-out poses of the trained person"
    )
    parser.add_argument(
        "--other-person", nargs="+", required=True, help="meshes of a person never trained on"
    )
    parser.add_argument(
        "--pairs", type=int, default=8, help="view pairs per shape for the same-shape measure"
    )
    parser.add_argument("--views", type=int, default=12, help="camera directions compared across meshes")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    start = time.perf_counter()
    model, stats, config = load_embedding(args.checkpoint)
    torch.manual_seed(0)
    random_model = build_model(config).eval()
    source = ViewSource.from_config(args.data, config)
    radius = source.radius
    modalities = config.model.modalities
    embedders = {
        "pretrained": network_embed_fn(model, modalities, stats),
        "random_network": network_embed_fn(random_model, modalities, stats),
        "normals": normals_embed_fn,
    }

    same_shape = {}
    for group, shapes in (
        ("trained person, held-out poses", args.same_person),
        ("other person", args.other_person),
    ):
        pairs = sample_view_pairs(source, shapes, args.pairs, config.pretrain.overlap_threshold, seed=0)
        same_shape[group] = {
            name: correspondence_accuracy(fn, pairs, radius) for name, fn in embedders.items()
        }

    n_views = config.render.num_views
    view_ids = [round(i * (n_views - 1) / max(args.views - 1, 1)) for i in range(args.views)]

    def cross_pairs(shapes_a, shapes_b):
        pairs = []
        for a, b in itertools.product(shapes_a, shapes_b):
            if a == b:
                continue
            labels_a, labels_b = source.mesh(a).face_labels, source.mesh(b).face_labels
            for v in view_ids:
                pairs.append((source.view(a, v), labels_a, source.view(b, v), labels_b))
        return pairs

    other = args.other_person
    cross = {
        "other person, another pose (label transfer)": cross_pairs(
            other[: len(other) // 2], other[len(other) // 2 :]
        ),
        "across the two people (label transfer)": cross_pairs(args.same_person, other[:2]),
    }
    transfer = {
        group: {name: label_transfer_accuracy(fn, pairs) for name, fn in embedders.items()}
        for group, pairs in cross.items()
    }
    result = {
        "checkpoint": args.checkpoint,
        "preset": config.preset,
        "match_radius": radius,
        "same_shape": same_shape,
        "label_transfer": transfer,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(f"checkpoint {args.checkpoint} (preset {config.preset}), radius {radius:.4f}")
    print("\nsame shape, two views: share of matches found within 2 px / 5 px")
    for group, rows in same_shape.items():
        for name, r in rows.items():
            print(f"  {group:<34}{name:<16}{100 * r['acc@2px']:6.1f}%{100 * r['acc@5px']:7.1f}%")
    print(
        "\ndifferent meshes, same camera direction: share of pixels whose nearest embedding has their part label"
    )
    for group, rows in transfer.items():
        for name, value in rows.items():
            print(f"  {group:<46}{name:<16}{100 * value:6.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
