"""benchmarks/points.py: it times the data side with both caches and the network step."""

from __future__ import annotations

import re

from benchmark_scripts import load_benchmark

TINY = """preset: cpu
render: {rings: 1, segments: 6, resolution: 48}
pretrain: {cached_shapes: 3}
points: {num_points: 256, neighbours: 8, widths: [16, 16], global_dim: 32, head_width: 32,
         embed_dim: 16, pretrain_points: 128, pretrain_matches_per_pair: 32,
         pretrain_pairs_per_batch: 2, device: cpu}
"""


def test_points_benchmark_prints_both_caches_and_the_network_step(tmp_path, capsys):
    module = load_benchmark("points")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    argv = ["synthetic:categories=mug,n=2,textured=0", "--config", str(config), "--shapes", "2",
            "--warmup", "1", "--steps", "2", "--work", str(tmp_path / "overlaps")]  # fmt: skip
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"data, 8 meshes kept: \d+\.\d+ CPU s/step", out)
    assert re.search(r"data, 3 meshes kept: \d+\.\d+ CPU s/step", out)
    assert re.search(r"network step \(clouds \(4, 3, 128\)\): \d+\.\d+ s", out)
    assert any((tmp_path / "overlaps").glob("*.overlaps.npz"))
