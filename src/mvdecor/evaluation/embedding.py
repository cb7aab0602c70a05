"""Evaluate a pre-trained embedding on held-out shapes, against a random network and raw normals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mvdecor.correspond.source import ViewSource
from mvdecor.errors import ConfigError
from mvdecor.evaluation.correspondence import correspondence_accuracy, network_embed_fn, normals_embed_fn
from mvdecor.models.checkpoints import build_model, load_embedding


def sample_view_pairs(
    source: ViewSource, shape_ids: Sequence[str], pairs_per_shape: int, threshold: float, seed: int = 0
) -> list[tuple]:
    """Fixed, seeded pairs of overlapping views of each shape."""
    from mvdecor.correspond import PairSampler

    rng = np.random.default_rng(seed)
    pairs = []
    for shape_id in shape_ids:
        sampler = PairSampler(source.overlaps(shape_id), threshold)
        for _ in range(pairs_per_shape):
            i, j = sampler.sample(rng)
            pairs.append((source.view(shape_id, i), source.view(shape_id, j)))
    return pairs


def evaluate_embedding(
    checkpoint: str | Path,
    dataset: str,
    shapes: Sequence[str] | None = None,
    pairs_per_shape: int = 8,
    device: str = "cpu",
    seed: int = 0,
) -> dict:
    """Correspondence accuracy of a checkpoint, a random network of the same kind, and raw normals.

    Shapes default to the validation shapes recorded in the run's ``run.json``.
    """
    checkpoint = Path(checkpoint)
    model, stats, config = load_embedding(checkpoint, device)
    if not shapes:
        run_json = checkpoint.parent.parent / "run.json"
        if not run_json.is_file():
            raise ConfigError(checkpoint, "no shapes given and no run.json beside the checkpoint's folder")
        shapes = json.loads(run_json.read_text()).get("val_shapes") or []
        if not shapes:
            raise ConfigError(run_json, "the run has no validation shapes; pass --shapes")
    source = ViewSource.from_config(dataset, config)
    radius = source.radius
    pairs = sample_view_pairs(source, shapes, pairs_per_shape, config.pretrain.overlap_threshold, seed)
    torch.manual_seed(seed)
    random_model = build_model(config).to(device)
    modalities = config.model.modalities
    # The random network sees the same normalised inputs as the trained one.
    results = {
        "pretrained": correspondence_accuracy(
            network_embed_fn(model, modalities, stats, device), pairs, radius
        ),
        "random_network": correspondence_accuracy(
            network_embed_fn(random_model, modalities, stats, device), pairs, radius
        ),
        "normals": correspondence_accuracy(normals_embed_fn, pairs, radius),
    }
    return {
        "checkpoint": str(checkpoint),
        "dataset": dataset,
        "shapes": list(shapes),
        "match_radius": radius,
        "preset": config.preset,
        **results,
    }
