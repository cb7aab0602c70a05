"""A tiny configuration that trains in seconds on 2 CPU cores."""

from __future__ import annotations

from dataclasses import replace

from mvdecor.config import Config, load_config

TINY_DATASET = "synthetic:categories=mug+bottle,n=3,textured=0"


def tiny_config(**pretrain_changes) -> Config:
    config = load_config("cpu")
    render = replace(config.render, rings=2, segments=5, resolution=64)  # 12 views at 64x64
    # The paper head and fp32, pinned: the tests' expectations must not follow the preset.
    model = replace(config.model, backbone="resnet18", output_stride=16, head="paper", imagenet_checkpoint="")
    pretrain = replace(
        config.pretrain,
        iterations=8,
        pairs_per_batch=2,
        matches_per_pair=256,
        val_pairs=4,
        val_every=4,
        checkpoint_every=4,
        log_every=1,
        num_workers=0,
        val_fraction=0.34,
        device="cpu",
        precision="fp32",
        lr_schedule="plateau",
    )
    # Fine-tuning as the paper does and the nearest head's plain settings, pinned likewise.
    finetune = replace(
        config.finetune,
        method="network",
        nearest_class_balance=0.0,
        nearest_position_weight=0.0,
        nearest_position_candidates=(),
        nearest_pooling="none",
    )
    return replace(
        config, render=render, model=model, pretrain=replace(pretrain, **pretrain_changes), finetune=finetune
    )
