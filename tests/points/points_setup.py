"""Tiny point-baseline settings that train in seconds on one CPU core."""

from __future__ import annotations

from dataclasses import replace

from mvdecor.config import Config, load_config

#: Two untextured mugs: rendered at 48x48, their overlaps take a fraction of a second.
TINY_DATASET = "synthetic:categories=mug,n=2,textured=0"


def tiny_config(**point_changes: object) -> Config:
    """The cpu preset with a tiny network, tiny clouds and short runs (CPU, fp32, pinned)."""
    config = load_config("cpu")
    render = replace(config.render, rings=1, segments=6, resolution=48)  # 8 views at 48x48
    points = replace(
        config.points,
        num_points=256,
        neighbours=8,
        widths=(16, 16),
        global_dim=32,
        head_width=32,
        embed_dim=16,
        use_normals=False,
        pretrain_points=128,
        pretrain_iterations=4,
        pretrain_pairs_per_batch=2,
        pretrain_matches_per_pair=32,
        finetune_iterations=40,
        finetune_lr=3e-3,
        finetune_shapes_per_batch=2,
        predict_clouds=4,
        checkpoint_every=2,
        log_every=1,
        precision="fp32",
        device="cpu",
        seed=0,
    )
    return replace(config, render=render, points=replace(points, **point_changes))
