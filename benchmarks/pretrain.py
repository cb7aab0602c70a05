"""Pre-training speed: correspondences, training throughput, data wait, memory.

Prints:

- milliseconds per view pair to find correspondences, by reprojection and by
  the k-d tree reference, at 128x128 and 256x256;
- training iterations/s and images/s of the ``cpu`` preset and of the paper's
  network (ResNet-50, output stride 8, 256x256), with views rendered on the fly
  and read from a render store, and the share of step time spent waiting for
  data;
- peak resident memory of this process (and of data-loader workers, reported by
  the OS as the largest child).

Run: ``python benchmarks/pretrain.py`` (about 10 minutes on 2 cores; ``--quick``
for a smaller run). Use ``--device cuda`` on a GPU; ``--paper`` also times the
``paper`` preset's full batch (8 pairs) there.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mvdecor.config import load_config
from mvdecor.correspond import match_views, match_views_kdtree
from mvdecor.data.synthetic import make_shape
from mvdecor.render import CameraScheme, Renderer
from mvdecor.render.store import render_dataset
from mvdecor.train.pretrain import pretrain

DATASET = "synthetic:categories=chair+table+lamp+mug,n=4,textured=0.25"


def bench_correspondences(repeats: int = 20) -> list[dict]:
    rows = []
    mesh = make_shape("chair", 3, detail=3)
    renderer = Renderer(mesh)
    for res in (128, 256):
        cams = CameraScheme(resolution=res).cameras(seed=0)
        views = [renderer.render_view(cams, i) for i in range(12)]
        pairs = [(views[i], views[i + 1]) for i in range(0, 11)]
        radius = 5e-3 * 256 / res
        for name, fn in (("reprojection", match_views), ("kdtree", match_views_kdtree)):
            times = []
            for _ in range(max(repeats // len(pairs), 1)):
                for a, b in pairs:
                    start = time.perf_counter()
                    fn(a, b, radius)
                    times.append(time.perf_counter() - start)
            rows.append(
                {"matcher": name, "resolution": res, "ms_per_pair": round(1e3 * float(np.median(times)), 2)}
            )
    return rows


def _last_metrics(run: Path) -> dict:
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Skip the first logged window (start-up: workers spawning, overlaps computed).
    tail = rows[1:] if len(rows) > 1 else rows
    keys = ("it_per_s", "images_per_s", "data_wait_share")
    return {k: round(float(np.mean([float(r[k]) for r in tail])), 3) for k in keys}


def bench_training(label: str, config, iterations: int, store: Path | None, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = replace(
            config.pretrain,
            iterations=iterations,
            log_every=max(iterations // 4, 1),
            val_every=10**9,
            checkpoint_every=10**9,
            device=device,
        )
        config = replace(config, pretrain=cfg)
        start = time.perf_counter()
        pretrain(config, DATASET, run, store=store, progress=False, resume=False)
        wall = time.perf_counter() - start
        metrics = _last_metrics(run)
    return {
        "setting": label,
        "backbone": config.model.backbone,
        "output_stride": config.model.output_stride,
        "resolution": config.render.resolution,
        "pairs_per_batch": cfg.pairs_per_batch,
        "matches_per_pair": cfg.matches_per_pair,
        "num_workers": cfg.num_workers,
        "precision": cfg.precision,
        "data": "store" if store else "on the fly",
        "iterations": iterations,
        "wall_s": round(wall, 1),
        **metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--paper", action="store_true", help="also time the paper preset's 8-pair batch")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    corr = bench_correspondences()
    cpu = load_config("cpu")
    paper = load_config("paper")
    n_cpu = 12 if args.quick else 40
    n_paper = 3 if args.quick else 8
    train_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store_cpu = Path(tmp) / "store_cpu"
        render_dataset(DATASET, store_cpu, cpu.render, workers=2, progress=False)
        for workers in (1, 2):
            c = replace(cpu, pretrain=replace(cpu.pretrain, num_workers=workers))
            train_rows.append(bench_training("cpu preset", c, n_cpu, None, args.device))
            train_rows.append(bench_training("cpu preset", c, n_cpu, store_cpu, args.device))
        c = replace(cpu, pretrain=replace(cpu.pretrain, precision="bf16", num_workers=1))
        train_rows.append(bench_training("cpu preset, bf16", c, n_cpu, None, args.device))
        # The paper's network at 256x256 with one pair per step (a CPU can't hold 8 in time).
        p1 = replace(paper, pretrain=replace(paper.pretrain, pairs_per_batch=1, num_workers=1))
        train_rows.append(bench_training("ResNet-50 OS8 256px, 1 pair", p1, n_paper, None, args.device))
        p1 = replace(p1, pretrain=replace(p1.pretrain, precision="bf16"))
        train_rows.append(bench_training("ResNet-50 OS8 256px, 1 pair, bf16", p1, n_paper, None, args.device))
        if args.paper:
            train_rows.append(bench_training("paper preset (8 pairs)", paper, n_paper, None, args.device))

    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None

    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"device {args.device}"
    )
    print("\ncorrespondences (ms per view pair, median)")
    for r in corr:
        print(f"  {r['matcher']:<13} {r['resolution']:>4}px  {r['ms_per_pair']:>7} ms")
    print("\ntraining")
    print(f"  {'setting':<36}{'data':>11}{'workers':>8}{'it/s':>8}{'img/s':>8}{'data wait':>11}")
    for r in train_rows:
        print(
            f"  {r['setting']:<36}{r['data']:>11}{r['num_workers']:>8}{r['it_per_s']:>8}"
            f"{r['images_per_s']:>8}{100 * r['data_wait_share']:>10.1f}%"
        )
    print(
        f"\npeak memory: main process {peak_self:.0f} MiB, largest child {peak_child:.0f} MiB"
        + (f", GPU {gpu_peak:.0f} MiB" if gpu_peak is not None else "")
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "correspondences": corr,
                    "training": train_rows,
                    "peak_rss_mib": peak_self,
                    "peak_child_rss_mib": peak_child,
                    "gpu_peak_mib": gpu_peak,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
