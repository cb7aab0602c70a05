"""How often cross-shape matches join the same part: the signal of cross-shape pre-training pairs.

Cross-shape pairs (``pretrain.cross_shape_pairs``) match a view of one shape to
a view of another shape of its category after mapping the first shape's
bounding box onto the second's, axis by axis
(:func:`mvdecor.correspond.match_views_aligned`). Pre-training then gives the
matched pixels one embedding, so those matches are only worth training on when
they mostly join pixels of the same part. This script draws pairs the way
pre-training does (a training shape, another training shape of its category, a
pair of overlapping views of the first, view ``j`` taken of the second) and
prints, per category and matching radius:

- ``matches``: matched pixels per pair (pre-training samples up to
  ``matches_per_pair`` of them);
- ``agree``: share of the matches whose two pixels carry the same part label
  (pixels without a label left out);
- ``chance``: the same share when each matched A pixel is paired with a random
  foreground pixel of the B view instead: what matching adds over none.

Labels are read for this measurement only; pre-training never reads them. The
shapes are the training shapes of the few-shot benchmark's split (same seed), so
a radius chosen from this table has not seen a test shape.

    python benchmarks/cross_shape_matches.py \\
        partnet_mobility:root=../shared/data/partnet_mobility,categories=Laptop+Bucket+Safe+Faucet+Microwave \\
        --pairs 40 --radii 0.02,0.05,0.1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mvdecor.config import load_config
from mvdecor.correspond import PairSampler, ViewSource, match_views_aligned
from mvdecor.data.datasets import open_dataset
from mvdecor.data.splits import make_split


def measure_category(
    source: ViewSource,
    shapes: list[str],
    radii: list[float],
    pairs: int,
    overlap_threshold: float,
    rng: np.random.Generator,
) -> list[dict]:
    """One row per radius for one category's ``shapes``, over ``pairs`` drawn pairs (see the module notes)."""
    boxes = {s: source.mesh(s).bounds() for s in shapes}
    # Per radius: matches, agreeing, labelled; and the same two for random B pixels.
    stats = {r: np.zeros(5, np.int64) for r in radii}
    for _ in range(pairs):
        first, second = rng.choice(len(shapes), size=2, replace=False)
        shape_a, shape_b = shapes[first], shapes[second]
        i, j = PairSampler(source.overlaps(shape_a), overlap_threshold).sample(rng)
        view_a, view_b = source.view(shape_a, i), source.view(shape_b, j)
        # Flat (H * W,) part label of every pixel, -1 on background (and unlabelled faces).
        labels_a = view_a.face_labels(source.mesh(shape_a).face_labels).reshape(-1)
        labels_b = view_b.face_labels(source.mesh(shape_b).face_labels).reshape(-1)
        foreground_b = np.flatnonzero(view_b.mask.reshape(-1))
        for radius in radii:
            found = match_views_aligned(view_a, view_b, boxes[shape_a], boxes[shape_b], radius)
            if len(found) == 0:
                continue
            matched_a, matched_b = labels_a[found.index_a], labels_b[found.index_b]
            random_b = labels_b[rng.choice(foreground_b, size=len(found))]
            both = (matched_a >= 0) & (matched_b >= 0)
            both_random = (matched_a >= 0) & (random_b >= 0)
            stats[radius] += [
                len(found),
                np.count_nonzero(both & (matched_a == matched_b)),
                np.count_nonzero(both),
                np.count_nonzero(both_random & (matched_a == random_b)),
                np.count_nonzero(both_random),
            ]
    rows = []
    for radius in radii:
        matches, agree, labelled, chance, labelled_random = (int(v) for v in stats[radius])
        rows.append(
            {
                "radius": radius,
                "matches_per_pair": matches / pairs,
                "agree": 100 * agree / max(labelled, 1),
                "chance": 100 * chance / max(labelled_random, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset spec, e.g. partnet_mobility:root=DIR,categories=A+B")
    parser.add_argument("--preset", default="cpu", help="preset or YAML whose render settings to use (cpu)")
    parser.add_argument("--categories", default="", help="categories joined by + (default: all)")
    parser.add_argument("--pairs", type=int, default=40, help="pairs drawn per category (40)")
    parser.add_argument("--radii", default="0.02,0.05,0.1", help="matching radii, unit-sphere units")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the draws (0)")
    parser.add_argument("--json", default="", help="also write the table to this JSON file")
    args = parser.parse_args()

    config = load_config(args.preset)
    dataset = open_dataset(args.dataset)
    categories = args.categories.split("+") if args.categories else list(dataset.categories())
    split = make_split(dataset, 0.3, args.seed)  # as benchmarks/fewshot.py makes it
    source = ViewSource.from_config(dataset, config, max_cached_shapes=16)
    radii = [float(r) for r in args.radii.split(",")]
    rng = np.random.default_rng(args.seed)
    rows: list[dict] = []
    started = time.perf_counter()
    render = config.render
    print(f"preset {args.preset}, {render.resolution} px, {render.num_views} views, seed {args.seed}")
    print(f"{'category':<12} {'radius':>7} {'matches':>8} {'agree %':>8} {'chance %':>9}")
    for category in categories:
        shapes = list(split[category]["train"])
        if len(shapes) < 2:
            print(f"{category:<12} fewer than two training shapes: skipped")
            continue
        for row in measure_category(
            source, shapes, radii, args.pairs, config.pretrain.overlap_threshold, rng
        ):
            rows.append({"category": category, **row})
            print(
                f"{category:<12} {row['radius']:>7.3f} {row['matches_per_pair']:>8.0f} {row['agree']:>8.1f} "
                f"{row['chance']:>9.1f}"
            )
    for radius in radii:
        picked = [r for r in rows if r["radius"] == radius]
        if picked:
            print(
                f"{'mean':<12} {radius:>7.3f} {np.mean([r['matches_per_pair'] for r in picked]):>8.0f} "
                f"{np.mean([r['agree'] for r in picked]):>8.1f} {np.mean([r['chance'] for r in picked]):>9.1f}"
            )
    print(f"{time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            record = {"preset": args.preset, "seed": args.seed, "pairs": args.pairs, "rows": rows}
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
