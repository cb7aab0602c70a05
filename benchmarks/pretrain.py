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

``--heads paper,light`` instead compares embedding heads
(:data:`~mvdecor.models.embedding.EMBEDDING_HEADS`) in one process, one after
the other: the ``cpu`` preset's pre-training (views rendered on the fly, its
one loader worker) with each head, in fp32 (``--precisions fp32,bf16`` adds
bf16 autocast, very slow on CPUs without native bf16), and the bare network
step (forward, dense InfoNCE, backward, Adam on random tensors of the preset's
batch shape) for the same settings, so that the training loop's overhead
shows. It prints head, precision, it/s, s/step, and the speed-up over the
paper head in fp32 (19 minutes for two heads in fp32 on 2 cores that another
job kept busy; ``--quick`` runs 12 training and 5 bare steps instead of 40 and 10).

``--backbones efficientnet_lite0,resnet18`` compares backbones the same way (the
``cpu`` preset's head; a ResNet from random weights, since the installed ImageNet
weights are EfficientNet-Lite0's; speed-ups relative to the first backbone).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mvdecor.config import Config, load_config
from mvdecor.correspond import match_views, match_views_kdtree
from mvdecor.data.synthetic import make_shape
from mvdecor.models import BACKBONES
from mvdecor.models.embedding import EMBEDDING_HEADS
from mvdecor.models.losses import dense_info_nce
from mvdecor.render import CameraScheme, Renderer
from mvdecor.render.store import render_dataset
from mvdecor.train.pretrain import build_model, pretrain

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


def bench_network(config: Config, steps: int, warmup: int, device: str) -> dict:
    """Median seconds of a bare pre-training step on random tensors of ``config``'s batch shape.

    One step: forward of ``2 * pairs_per_batch`` views (under bf16 autocast when
    ``config.pretrain.precision`` is ``bf16``), dense InfoNCE over
    ``matches_per_pair`` random matches per pair, backward, Adam. No data
    loading, logging or validation: the difference to :func:`bench_training`'s
    step time is the training loop's overhead.
    """
    cfg, res = config.pretrain, config.render.resolution
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(config).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    pairs = cfg.pairs_per_batch
    x = torch.randn(2 * pairs, model.in_channels, res, res, device=dev)
    gen = torch.Generator().manual_seed(0)

    def indices() -> torch.Tensor:
        rows = [torch.randperm(res * res, generator=gen)[: cfg.matches_per_pair] for _ in range(pairs)]
        return torch.stack(rows).to(dev)

    index_a, index_b = indices(), indices()
    autocast = (
        torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
        if cfg.precision == "bf16"
        else contextlib.nullcontext()
    )
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with autocast:
            emb = model(x)
            loss = dense_info_nce(
                emb[:pairs].float(), emb[pairs:].float(), index_a, index_b, temperature=cfg.temperature
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"steps": steps, "s_per_step": round(float(np.median(times)), 3)}


def cpu_variants(heads: list[str] | None, backbones: list[str] | None) -> list[tuple[str, Config]]:
    """The ``cpu`` preset with each embedding head, or with each backbone, as (name, config) pairs.

    A ResNet takes no ``packaged`` ImageNet weights (they exist for EfficientNet-Lite0 only), so
    it starts from random weights; the weights do not change the step's cost.
    """
    cpu = load_config("cpu")
    if heads:
        return [(head, replace(cpu, model=replace(cpu.model, head=head))) for head in heads]
    variants = []
    for backbone in backbones or []:
        checkpoint = cpu.model.imagenet_checkpoint if backbone.startswith("efficientnet") else ""
        model = replace(cpu.model, backbone=backbone, imagenet_checkpoint=checkpoint)
        variants.append((backbone, replace(cpu, model=model)))
    return variants


def bench_variants(
    variants: list[tuple[str, Config]],
    iterations: int,
    bare_steps: int,
    device: str,
    precisions: tuple[str, ...] = ("fp32",),
    reference: str | None = None,
) -> list[dict]:
    """Each variant's pre-training and bare step, in each precision, one after the other.

    Speed-ups are relative to ``reference`` in fp32 (the first variant's first row when
    ``reference`` is not among them). bf16 is opt-in: on CPUs without native bf16 (AVX2
    only) autocast takes PyTorch's reference convolutions, tens of seconds per step.
    """
    rows = []
    for name, base in variants:
        for precision in precisions:
            config = replace(base, pretrain=replace(base.pretrain, precision=precision))
            loop = bench_training(f"cpu preset, {name}", config, iterations, None, device)
            bare = bench_network(config, bare_steps, warmup=2, device=device)
            rows.append(
                {
                    "variant": name,
                    "backbone": config.model.backbone,
                    "head": config.model.head,
                    "precision": precision,
                    "it_per_s": loop["it_per_s"],
                    "s_per_step": round(1 / loop["it_per_s"], 3),
                    "data_wait_share": loop["data_wait_share"],
                    "iterations": iterations,
                    "bare_s_per_step": bare["s_per_step"],
                    "bare_steps": bare_steps,
                }
            )
            # One line per row as it completes, so an interrupted run still reports.
            r = rows[-1]
            print(
                f"  done: {name} {precision}: {r['it_per_s']} it/s, {r['s_per_step']} s/step, "
                f"bare {r['bare_s_per_step']} s/step, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    ref = next((r for r in rows if r["variant"] == reference and r["precision"] == "fp32"), rows[0])
    base_step, base_bare = ref["s_per_step"], ref["bare_s_per_step"]
    for row in rows:
        row["reference"] = f"{ref['variant']} {ref['precision']}"
        row["speedup"] = round(base_step / row["s_per_step"], 2)
        row["bare_speedup"] = round(base_bare / row["bare_s_per_step"], 2)
    return rows


def print_variants(rows: list[dict], kind: str) -> None:
    first = rows[0]["reference"]
    width = max(len(kind), *(len(r["variant"]) for r in rows)) + 2
    print(
        f"\n{kind}s, cpu preset ({rows[0]['iterations']} training steps per row, mean of the "
        f"logged windows after the first; bare: median of {rows[0]['bare_steps']} steps)"
    )
    print(
        f"  {kind:<{width}}{'precision':>10}{'it/s':>8}{'s/step':>8}{'vs ' + first:>{len(first) + 6}}"
        f"{'data wait':>11}{'bare s/step':>13}{'bare vs ' + first:>{len(first) + 11}}{'loop overhead':>15}"
    )
    for r in rows:
        overhead = r["s_per_step"] - r["bare_s_per_step"]
        print(
            f"  {r['variant']:<{width}}{r['precision']:>10}{r['it_per_s']:>8.3f}{r['s_per_step']:>8.3f}"
            f"{r['speedup']:>{len(first) + 5}.2f}x{100 * r['data_wait_share']:>10.1f}%"
            f"{r['bare_s_per_step']:>13.3f}{r['bare_speedup']:>{len(first) + 10}.2f}x{overhead:>14.3f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--paper", action="store_true", help="also time the paper preset's 8-pair batch")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--heads",
        type=lambda text: [h.strip() for h in text.split(",") if h.strip()],
        help="only compare these embedding heads (e.g. paper,light) at the cpu preset",
    )
    parser.add_argument(
        "--precisions",
        default="fp32",
        type=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
        help="with --heads or --backbones: precisions to time (default fp32; bf16 is very slow on AVX2-only CPUs)",
    )
    parser.add_argument(
        "--backbones",
        type=lambda text: [b.strip() for b in text.split(",") if b.strip()],
        help="only compare these backbones (e.g. efficientnet_lite0,resnet18) at the cpu preset",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    if args.heads is not None or args.backbones is not None:
        if args.heads is not None and args.backbones is not None:
            parser.error("--heads and --backbones: give one of them")
        if args.heads is not None:
            kind, names, valid, reference = "head", args.heads, EMBEDDING_HEADS, "paper"
        else:
            kind, names, valid, reference = "backbone", args.backbones, BACKBONES, None
        unknown = [n for n in names if n not in valid]
        if unknown or not names:
            parser.error(f"--{kind}s: unknown {unknown}; valid: {', '.join(sorted(valid))}")
        variants = cpu_variants(args.heads, args.backbones)
        load_before = os.getloadavg()
        start = time.perf_counter()
        rows = bench_variants(
            variants,
            12 if args.quick else 40,
            5 if args.quick else 10,
            args.device,
            args.precisions,
            reference=reference,
        )
        load_after = os.getloadavg()
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, device {args.device}; {time.perf_counter() - start:.0f} s; "
            f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
            f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
        )
        print_variants(rows, kind)
        if args.json:
            Path(args.json).write_text(json.dumps({f"{kind}s": rows}, indent=2) + "\n")
        return

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
