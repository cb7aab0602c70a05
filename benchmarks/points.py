"""PointContrast pre-training speed: the data side of a step, and the point network's step.

Prints, for the ``cpu`` preset's ``points`` settings (or ``--config``):

- CPU and wall seconds per step to build a batch of partial-cloud pairs
  (:class:`~mvdecor.points.pointcontrast.PartialViewPairs`: draw a shape and two
  overlapping views, render them, match pixels, cut the clouds), with the view
  source keeping 8 meshes loaded (its default, what pre-training used before
  session 11) and ``pretrain.cached_shapes`` of them (what it uses now), after
  a warm-up of ``--warmup`` steps;
- seconds per step of the point network alone (forward, PointInfoNCE,
  backward, Adam) on such a batch.

Run: ``python benchmarks/points.py partnet_mobility:root=PATH --shapes 24``
(about 5 minutes on 2 cores). View overlaps are computed once per shape and
cached in ``--work`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings

import torch

from mvdecor.config import load_config
from mvdecor.correspond import ViewSource
from mvdecor.points import build_point_embedding
from mvdecor.points.pointcontrast import PartialViewPairs, pointcontrast_loss


def time_batches(pairs: PartialViewPairs, first: int, steps: int) -> tuple[float, float]:
    """CPU and wall seconds per batch over steps ``first .. first + steps - 1``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for step in range(first, first + steps):
        pairs.batch(step)
    return (time.process_time() - cpu) / steps, (time.perf_counter() - wall) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset spec, e.g. partnet_mobility:root=PATH")
    parser.add_argument("--config", default="cpu", help="preset or YAML file (default cpu)")
    parser.add_argument("--shapes", type=int, default=24, help="shapes to draw pairs from (default 24)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (default 30)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps (default 15)")
    parser.add_argument("--work", help="folder for the view overlaps (default: a temporary one)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # the datasets' own warnings (missing pieces) are not the point
    config = load_config(args.config)
    work = args.work or tempfile.mkdtemp(prefix="mvdecor-points-")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.shapes} shapes, {args.steps} timed steps")  # fmt: skip
    for cached in (8, config.pretrain.cached_shapes):
        source = ViewSource.from_config(args.dataset, config, cache_dir=work, max_cached_shapes=cached)
        shape_ids = sorted(source.shape_ids())[: args.shapes]
        pairs = PartialViewPairs(source, shape_ids, config.points, config.pretrain.overlap_threshold)
        time_batches(pairs, 0, args.warmup)
        cpu_s, wall_s = time_batches(pairs, args.warmup, args.steps)
        print(f"data, {cached} meshes kept: {cpu_s:.3f} CPU s/step, {wall_s:.3f} wall s/step")
    torch.manual_seed(0)
    network = build_point_embedding(config.points)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.points.pretrain_lr)
    batch = pairs.batch(0)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss, _ = pointcontrast_loss(network, batch, config.points.pretrain_temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / args.steps
    print(f"network step (clouds {tuple(batch['inputs'].shape)}): {seconds:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
