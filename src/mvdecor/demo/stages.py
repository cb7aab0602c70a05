"""The demo's configuration and its resumable stages: render, pre-train, fine-tune and score.

Each stage is cached by :mod:`mvdecor.protocols.stages`: a re-run with the same
settings reuses a finished stage, or continues an unfinished one from its
checkpoints, and starts afresh when the settings changed. The few-shot stage
is the few-shot protocol's own cache (:func:`~mvdecor.protocols.fewshot.run_fewshot_cached`).
Also the method and score names and the small helpers the pictures and the
report share.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.config import Config, load_config, merge_dicts
from mvdecor.data.splits import Split
from mvdecor.protocols.stages import config_sections, finish_stage, json_safe, open_stage
from mvdecor.render.store import RenderReport, RenderStore, render_dataset

#: Categories of the default demo: both have large, well separated parts.
DEFAULT_CATEGORIES: tuple[str, ...] = ("chair", "table")

#: The learning-free method, :data:`mvdecor.protocols.fewshot.TRANSFER` (not imported: it loads torch).
TRANSFER = "transfer"

#: How each method is named in the report, in the order of its columns.
METHOD_TITLES: dict[str, str] = {
    "mvdecor": "MvDeCor",
    "imagenet": "ImageNet",
    "scratch": "scratch",
    TRANSFER: "transfer (no training)",
}

#: The scores compared (means over a category's test shapes), with their names in the report.
SCORES: dict[str, str] = {
    "part_miou": "part mIoU",
    "shape_miou": "shape mIoU",
    "pixel_miou_2d": "2D pixel mIoU",
}


# --------------------------------------------------------------- configuration
def _demo_config(
    preset: str,
    config_overrides: Mapping[str, Any] | None,
    pretrain_iterations: int,
    finetune_iterations: int,
    precision: str,
    ssl_weight: float,
    workers: int,
) -> Config:
    """The preset with the demo's short schedules, then ``config_overrides`` on top."""
    iterations = max(int(pretrain_iterations), 1)
    loader_workers = 1 if workers > 1 else 0
    schedules: dict[str, Any] = {
        "pretrain": {
            "iterations": iterations,
            "pairs_per_batch": 2,
            "matches_per_pair": 512,
            "val_every": max(iterations // 4, 1),
            "checkpoint_every": max(iterations // 2, 50),
            "val_pairs": 8,
            "precision": precision,
            "num_workers": loader_workers,
        },
        "finetune": {
            "iterations": max(int(finetune_iterations), 1),
            "ssl_weight": float(ssl_weight),
            "precision": precision,
            "num_workers": loader_workers,
        },
    }
    return load_config(preset, merge_dicts(schedules, dict(config_overrides or {})))


# ---------------------------------------------------------------- helpers
def _without(record: Mapping[str, Any], keys: Sequence[str]) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def _round_all(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _round_all(v) for k, v in value.items()}
    return round(float(value), 1)


def _mean_of(values: Sequence[float | None]) -> float:
    """The mean of the values that are numbers (NaN when none is)."""
    numbers = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(numbers)) if numbers else math.nan


def _count(split: Split, part: str) -> int:
    return sum(len(entry[part]) for entry in split.values())


# ------------------------------------------------------------ numbers in words
def _n(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless ``count`` is 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


# ----------------------------------------------------------------- rendering
def _render_stage(
    dataset_spec: str, store_root: Path, config: Config, workers: int, progress: bool
) -> RenderReport:
    """Render the dataset into the store, replacing a store of another dataset or settings."""
    from mvdecor.render.store import STORE_MANIFEST

    manifest = store_root / STORE_MANIFEST
    if manifest.is_file():
        existing = RenderStore(store_root)
        if existing.dataset != dataset_spec or existing.settings != config.render:
            shutil.rmtree(store_root)  # rendering is cheap: seconds per shape
    report = render_dataset(dataset_spec, store_root, config.render, workers=workers, progress=progress)
    if report.failed:
        raise RuntimeError(f"demo shapes failed to render: {report.failed}")
    return report


# -------------------------------------------------------------- pre-training
def _pretrain_stage(config: Config, dataset_spec: str, out: Path, split: Split, progress: bool) -> dict:
    """Pre-train on all categories' training shapes; correspondence accuracy on the test shapes."""
    import csv

    from mvdecor.evaluation.embedding import evaluate_embedding
    from mvdecor.train.pretrain import pretrain

    folder = out / "pretrain"
    pretrain_split = {
        "train": sorted(s for entry in split.values() for s in entry["train"]),
        "val": sorted(s for entry in split.values() for s in entry["test"]),
    }
    settings = json_safe(
        {
            "dataset": dataset_spec,
            "split": pretrain_split,
            **config_sections(config, ("render", "model", "pretrain")),
        }
    )
    finished = open_stage(folder, settings)
    if finished is not None:
        return {**finished, "settings": settings, "reused": True}

    start = time.perf_counter()
    result = pretrain(
        config, dataset_spec, folder, store=out / "store", split=pretrain_split, progress=progress
    )
    seconds = time.perf_counter() - start
    with open(folder / "val.csv", newline="") as handle:
        val = [float(r["val_loss"]) for r in csv.DictReader(handle)]
    start = time.perf_counter()
    report = evaluate_embedding(
        folder / "checkpoints" / "last.pt", dataset_spec, shapes=pretrain_split["val"], pairs_per_shape=4
    )
    correspondence_seconds = time.perf_counter() - start
    stage = json_safe(
        {
            "iterations": result.step,
            "seconds": round(seconds, 1),
            "correspondence_seconds": round(correspondence_seconds, 1),
            "train_shapes": len(pretrain_split["train"]),
            "val_shapes": len(pretrain_split["val"]),
            "first_val_loss": val[0] if val else math.nan,
            "best_val_loss": result.best_val_loss,
            "chance_loss": math.log(config.pretrain.matches_per_pair),
            "correspondence": {k: report[k] for k in ("pretrained", "random_network", "normals")},
        }
    )
    finish_stage(folder, settings, stage)
    return {**stage, "settings": settings, "reused": False}


# ------------------------------------------------------------------ few-shot
def _fewshot_stage(
    config: Config,
    dataset_spec: str,
    out: Path,
    category: str,
    entry: Mapping[str, Sequence[str]],
    method: str,
    init: str | Path,
    k: int,
    seed: int,
    progress: bool,
    keep_checkpoints: str,
) -> dict:
    """One fine-tuning run of ``method`` on ``k`` labelled shapes of ``category``, scored on its test shapes.

    The few-shot protocol's cache decides whether it runs: its results are
    reused when they were written with the same settings (the pre-trained
    ``init`` identified by what its checkpoint holds). The learning-free
    ``transfer`` trains nothing: its record has no checkpoint and no 2D pixel
    mIoU (None).
    """
    from mvdecor.protocols.fewshot import cached_fewshot, run_fewshot

    folder = out / "fewshot" / category / method
    learned = method != TRANSFER
    protocol = {
        "train_shapes": list(entry["train"]),
        "test_shapes": list(entry["test"]),
        "k": k,
        "views_per_shape": 0,
        "runs": 1,
        "init": init,
        "method": method,
        "convention": "shapenet",
        "seed": seed,
    }
    summary = cached_fewshot(config, folder, **protocol)
    reused = summary is not None
    if summary is None:
        summary = run_fewshot(
            config,
            dataset_spec,
            folder,
            category=category,
            progress=progress,
            keep_checkpoints=keep_checkpoints,
            **protocol,
        )
    run = summary["per_run"][0]
    # The protocol records where its run left the network (none for transfer) and the labels it scored.
    checkpoint = folder / run["checkpoint"] if run.get("checkpoint") else None
    predictions = folder / run["predictions"] if run.get("predictions") else None
    for path in (checkpoint, predictions) if learned else (predictions,):
        if path is None or not path.is_file():
            raise RuntimeError(f"the few-shot run in {folder} recorded no {path or 'file'} that exists")
    result = json_safe(
        {
            "method": method,
            "labelled_shapes": run["labelled_shapes"],
            "test_shapes": list(entry["test"]),
            "label_names": summary["label_names"],
            "part_miou": summary["part_miou"]["mean"],
            "shape_miou": summary["shape_miou"]["mean"],
            "pixel_miou_2d": summary["pixel_miou_2d"]["mean"],
            "part_iou": run["part_iou"],
            "per_shape_miou": run["per_shape"],
            "seconds": summary["wall_s"],
            "checkpoint": checkpoint.relative_to(out).as_posix() if checkpoint else None,
            "predictions": predictions.relative_to(out).as_posix(),
        }
    )
    return {**result, "reused": reused}
