"""Seconds per shape for ``segment`` (render + predict + vote), split by stage.

For a ~20k-face and a ~200k-face mesh, with the authors' 86 views at 256x256 and
the ``paper`` network (ResNet-50, output stride 8, a trained head), and with the
``cpu`` preset (24 views at 128x128, EfficientNet-Lite0, output stride 16) and what
it segments with: a fine-tuned network (a trained head) whose votes are averaged
with its lookup, the nearest labelled faces (every face's embedding pooled over the
views and looked up in a bank of ``finetune.nearest_references`` labelled faces,
once per position weight). The lookup segments the mesh once more, on its own views:
the ``prior`` column is all of it, which is also what the lookup alone costs
(``finetune --method nearest``, the labelling app's). The weights and the bank are
random: speed does not depend on them. Prints peak resident memory.

Run: ``python benchmarks/segment.py [--device cuda] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from dataclasses import replace
from pathlib import Path

import torch

from mvdecor.config import Config, load_config
from mvdecor.data.synthetic import make_shape
from mvdecor.inference.segment import Segmenter, SegmenterPrior
from mvdecor.models.checkpoints import build_model
from mvdecor.models.embedding import SegmentationNet
from mvdecor.models.inputs import ChannelStats, channel_count
from mvdecor.models.nearest import NearestLabelHead, position_combine
from mvdecor.train.finetune import nearest_prior_config, wants_nearest_prior


def nearest_head(config: Config, num_classes: int) -> NearestLabelHead:
    """A bank the size the preset's nearest head keeps, of random embeddings, labels and box positions."""
    ft = config.finetune
    size, dim = ft.nearest_references, config.model.embed_dim
    weights = sorted(set(ft.nearest_position_candidates)) or [ft.nearest_position_weight]
    weight = tuple(weights) if ft.nearest_position_combine != "choose" else weights[0]
    return NearestLabelHead(
        torch.randn(size, dim), torch.arange(size) % num_classes, num_classes, ft.nearest_neighbours,
        ft.nearest_temperature, ft.nearest_stride, torch.rand(size, 3) * 2 - 1, weight,
        ft.nearest_pooling == "faces", position_combine(ft.nearest_position_combine),
    )  # fmt: skip


def _segmenter(config: Config, num_classes: int, device: str) -> Segmenter:
    """A segmenter of ``config``'s network and head (random weights; a random bank for ``nearest``)."""
    head = nearest_head(config, num_classes) if config.finetune.method == "nearest" else None
    model = SegmentationNet(build_model(config), num_classes, head=head)
    c = channel_count(config.model.modalities)
    stats = ChannelStats(mean=[0.0] * c, std=[1.0] * c)
    return Segmenter(model, stats, config, [f"part{i}" for i in range(num_classes)], device)


def make_segmenter(preset: str, num_classes: int, device: str) -> tuple[Segmenter, SegmenterPrior | None]:
    """The segmenter a run of ``preset`` gives, and the lookup paired with it (None when unpaired)."""
    config = load_config(preset)
    torch.manual_seed(0)
    segmenter = _segmenter(config, num_classes, device)
    if not wants_nearest_prior(config):
        return segmenter, None
    return segmenter, SegmenterPrior(_segmenter(nearest_prior_config(config), num_classes, device))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    args = parser.parse_args()
    meshes = {
        "~20k faces": make_shape("table", 0, detail=4),
        "~200k faces": make_shape("table", 0, detail=12),
    }
    rows = []
    for preset in args.presets:
        segmenter, prior = make_segmenter(preset, 8, args.device)
        if preset == "paper" and args.device == "cpu":
            segmenter.config = replace(
                segmenter.config, segment=replace(segmenter.config.segment, batch_views=4)
            )
        for label, mesh in meshes.items():
            start = time.perf_counter()
            result = segmenter.segment(mesh, transfer=prior)
            total = time.perf_counter() - start
            t = result.timings
            rows.append(
                {
                    "preset": preset,
                    "mesh": label,
                    "faces": mesh.num_faces,
                    "views": segmenter.config.render.num_views,
                    "resolution": segmenter.config.render.resolution,
                    "backbone": segmenter.config.model.backbone,
                    "head": ("nearest faces" if segmenter.pools_faces else "trained")
                    + (" + lookup" if prior is not None else ""),
                    "total_s": round(total, 2),
                    "render_s": round(t["render_s"], 2),
                    "predict_s": round(t["predict_s"], 2),
                    "vote_s": round(t["vote_s"], 2),
                    "prior_s": round(t.get("refine_s", 0.0), 2),  # the lookup's segmentation, mixing
                    "seen_faces": round(float(result.fusion.seen.mean()), 3),
                }
            )
            print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nmachine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {args.device}; peak resident memory {peak:.0f} MiB"
    )
    print(
        f"{'preset':<8}{'head':<17}{'mesh':<14}{'faces':>8}{'views':>7}{'res':>5}{'total s':>9}{'render':>8}"
        f"{'predict':>9}{'vote':>7}{'prior':>7}{'seen':>7}"
    )
    for r in rows:
        print(
            f"{r['preset']:<8}{r['head']:<17}{r['mesh']:<14}{r['faces']:>8}{r['views']:>7}{r['resolution']:>5}"
            f"{r['total_s']:>9}{r['render_s']:>8}{r['predict_s']:>9}{r['vote_s']:>7}{r['prior_s']:>7}{r['seen_faces']:>7}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "peak_rss_mib": peak}, indent=2) + "\n")


if __name__ == "__main__":
    main()
