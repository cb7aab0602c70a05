"""The end-to-end demo on built-in shapes: MvDeCor against training from scratch and label transfer.

:func:`run_demo` runs the whole pipeline on the built-in synthetic labelled
shapes (:class:`~mvdecor.data.datasets.SyntheticDataset`) and writes a report
folder:

1. split each category into training and held-out test shapes
   (``split.json``), render every shape into a render store (``store/``) and
   picture its views and part labels (``pictures/<shape>.png``);
2. pre-train the embedding network on the training shapes of all categories
   together, without their labels, as the paper does (``pretrain/``; the
   held-out shapes, unlabelled, give its validation loss), and measure its
   cross-view correspondence accuracy on the held-out shapes against a random
   network;
3. per category, fine-tune on ``k`` labelled training shapes twice, from the
   pre-trained network ("mvdecor") and from scratch ("scratch"), with the
   same labelled draw and seed, segment the held-out shapes with both and
   score them: fused 3D part and shape mIoU, per-view 2D pixel mIoU
   (``fewshot/``; each run saves its fused face labels in ``predictions.npz``);
   beside them the learning-free label transfer ("transfer": nearest labelled
   surface point of the same ``k`` shapes, no network, no 2D score), the floor
   a learned method must clear;
4. export the saved predictions as coloured meshes
   (``segmentations/<method>/<shape>.ply`` and ``.glb``, ground truth in
   ``segmentations/ground_truth/``) and picture them next to the ground truth
   (``pictures/predictions/<shape>.png``), without segmenting again;
5. draw the paper's Fig. 3 with the pre-trained and a random network (colour
   transfer between two views of one held-out shape and between two shapes of
   a category, with the embeddings' PCA colours; ``pictures/embeddings/``),
   the per-view weights of the entropy-weighted vote for one held-out shape
   per method (``pictures/vote_weights/``) and the training curves of every
   run (``pictures/curves/``);
6. write ``report.md``, ``report.html`` (metrics, every picture with a
   caption, and a 3D view of each held-out shape with predicted and
   ground-truth colourings; scripts in ``report_assets/``), ``summary.json``
   (every number and the stage timings) and ``config.yaml`` (the
   configuration in use).

Re-running the same command resumes: renders, the pre-training run and the
fine-tuning runs (with their scores and saved predictions) are reused once
finished (or continued from their last checkpoint); a stage whose settings
changed is run again from the start. Exports, pictures and reports are cheap
and always redone. Once a training run has finished, only what the report and
a re-run need of its checkpoints is kept (``keep_checkpoints``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.config import Config, load_config, merge_dicts
from mvdecor.data.datasets import SyntheticDataset
from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.splits import Split, make_split, save_split
from mvdecor.errors import ConfigError
from mvdecor.render import Renderer
from mvdecor.render.cameras import Cameras
from mvdecor.render.store import RenderReport, RenderStore, render_dataset, shape_camera_seed
from mvdecor.render.views import RenderedView
from mvdecor.viz import (
    MetricsTable,
    Picture,
    ReportMesh,
    part_labels_sheet,
    save_image,
    view_sheet,
)

#: Categories of the default demo: both have large, well separated parts.
DEFAULT_CATEGORIES: tuple[str, ...] = ("chair", "table")

#: The learning-free method, :data:`mvdecor.evaluation.fewshot.TRANSFER` (not imported: it loads torch).
TRANSFER = "transfer"

#: How each method is named in the report, in the order of its columns.
METHOD_TITLES: dict[str, str] = {
    "mvdecor": "MvDeCor",
    "scratch": "scratch",
    TRANSFER: "transfer (no training)",
}

#: The scores compared (means over a category's test shapes), with their names in the report.
SCORES: dict[str, str] = {
    "part_miou": "part mIoU",
    "shape_miou": "shape mIoU",
    "pixel_miou_2d": "2D pixel mIoU",
}

#: The file in a stage's folder that records its settings and, once finished, its result.
STAGE_RECORD = "demo_stage.json"

#: Views per held-out shape in the prediction pictures.
PICTURE_VIEWS = 3

#: Gap between picture panels, in pixels.
PANEL_GAP = 2

#: Views shown in a vote-weight picture: the half with the highest weights and the half with the lowest.
VOTE_VIEWS = 6

#: Version of the few-shot stage's record: 2 added the saved predictions and per-shape scores, so a
#: record without them (an older demo folder) is run again rather than read.
FEWSHOT_STAGE_VERSION = 2


def run_demo(
    out: str | Path = "demo_output",
    shapes_per_category: int = 8,
    workers: int = 1,
    pretrain_iterations: int = 400,
    finetune_iterations: int = 150,
    labelled_shapes: int = 2,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    test_fraction: float = 0.4,
    precision: str = "auto",
    ssl_weight: float = 0.0,
    seed: int = 0,
    preset: str = "cpu",
    config_overrides: Mapping[str, Any] | None = None,
    keep_checkpoints: str = "last",
    progress: bool = True,
) -> Path:
    """Run the demo (see the module docstring) and return the path of its ``report.md``.

    ``report.html`` is written next to it.

    Parameters
    ----------
    out : str or Path
        The report folder (created if missing; re-running resumes in it).
    shapes_per_category : int
        Synthetic shapes generated per category, split into training and test.
    workers : int
        Rendering processes; more than 1 also gives pre-training one data-loader worker.
    pretrain_iterations : int
        Pre-training steps (2 view pairs each). ``0`` skips pre-training and the
        correspondence measurement; then only training from scratch runs.
    finetune_iterations : int
        Fine-tuning steps (``views_per_batch`` labelled views each) of every
        fine-tuning run.
    labelled_shapes : int
        ``k``, the labelled training shapes each fine-tuning run may use.
    categories : sequence of str
        Synthetic categories (chair, table, lamp, mug, bottle); one label
        vocabulary and one pair of fine-tuning runs each.
    test_fraction : float
        Share of each category's shapes held out for testing (at least one).
    precision : str
        ``"bf16"`` (autocast; about 1.8x faster than fp32 on CPUs with native
        bf16, slower on others), ``"fp32"``, or ``"auto"``: bf16 on a CUDA GPU
        that supports it or a CPU with native bf16 (``avx512_bf16`` or
        ``amx_bf16``), else fp32. For pre-training and fine-tuning.
    ssl_weight : float
        Weight of the InfoNCE regulariser during fine-tuning (0: labels only,
        which halves the cost of a fine-tuning step on the CPU).
    seed : int
        Seed of the split, of the labelled draw and of fine-tuning.
    preset : str
        The configuration preset (or YAML file) the demo starts from.
    config_overrides : mapping, optional
        Nested overrides applied last, over the preset and the demo's schedules
        (e.g. ``{"render": {"resolution": 64}}``).
    keep_checkpoints : {"last", "weights", "all"}
        What is kept of the checkpoints of each finished training run (the
        pre-training run and every fine-tuning run): ``"last"`` keeps only
        ``last.pt`` (the network the report, fine-tuning and ``mvdecor segment``
        use; it can also continue training), removing the periodic snapshots
        and ``best.pt``; ``"weights"`` also drops the optimizer and scheduler
        state from ``last.pt``, a third of its size (the networks still load
        everywhere, but the runs can no longer be continued with ``mvdecor
        pretrain`` / ``finetune``); ``"all"`` keeps every checkpoint. Runs are
        trimmed only once finished, so an interrupted run still resumes, and
        the choice does not invalidate finished stages.
    progress : bool
        Print stage messages and progress bars.

    Returns
    -------
    Path
        ``OUT/report.md``.

    Raises
    ------
    ConfigError
        Too few shapes per category for the split and ``k``, an unknown
        category, an unknown ``keep_checkpoints``, or an unusable configuration.
    """
    from mvdecor.train.checkpoint import check_keep_checkpoints, prune_checkpoints
    from mvdecor.train.precision import auto_precision

    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(None, f"demo precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    check_keep_checkpoints(keep_checkpoints)
    if precision == "auto":
        precision = auto_precision()
    if labelled_shapes < 1:
        raise ConfigError(None, f"the demo needs at least one labelled shape, got {labelled_shapes}")
    total_start = time.perf_counter()
    config = _demo_config(
        preset,
        config_overrides,
        pretrain_iterations,
        finetune_iterations,
        precision,
        ssl_weight,
        workers,
    )
    dataset = SyntheticDataset(categories=tuple(categories), n=shapes_per_category, seed=0, textured=0.3)
    split = make_split(dataset, test_fraction=test_fraction, seed=seed, categories=list(categories))
    for category, entry in split.items():
        if len(entry["train"]) < labelled_shapes:
            raise ConfigError(
                None,
                f"category {category!r} has {_n(len(entry['train']), 'training shape')} but k = "
                f"{labelled_shapes} labelled shapes are asked for; generate more shapes per category",
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config.to_yaml())
    save_split(split, out / "split.json", dataset.spec, seed, test_fraction)
    timings: dict[str, Any] = {}
    reused: list[str] = []

    def say(message: str) -> None:
        if progress:
            print(f"[demo] {message}", flush=True)

    say(f"rendering {len(dataset)} shapes into {out / 'store'}")
    start = time.perf_counter()
    render_report = _render_stage(dataset.spec, out / "store", config, workers, progress)
    timings["render_s"] = time.perf_counter() - start

    start = time.perf_counter()
    shape_rows = _picture_shapes(dataset, out / "store", out / "pictures")
    timings["view_pictures_s"] = time.perf_counter() - start

    embedding = None
    if pretrain_iterations > 0:
        say(
            f"pre-training for {config.pretrain.iterations} steps on {_count(split, 'train')} training shapes"
        )
        embedding = _pretrain_stage(config, dataset.spec, out, split, progress)
        prune_checkpoints(out / "pretrain" / "checkpoints", keep_checkpoints)
        timings["pretrain_s"] = embedding["seconds"]
        timings["correspondence_s"] = embedding["correspondence_seconds"]
        if embedding["reused"]:
            reused += ["pretrain", "correspondence"]

    # Learned methods first; the learning-free transfer (no network) is the floor they must clear.
    methods = ["mvdecor", "scratch", TRANSFER] if embedding is not None else ["scratch", TRANSFER]
    fewshot: dict[str, dict[str, dict]] = {}
    timings["finetune_and_evaluate_s"] = {}
    for category, entry in split.items():
        fewshot[category] = {}
        for method in methods:
            verb = (
                f"fine-tuning {METHOD_TITLES[method]} on"
                if method != TRANSFER
                else "transferring labels from"
            )
            say(f"{verb} {_n(labelled_shapes, f'labelled {category}')}")
            init: str | Path = method if method != "mvdecor" else out / "pretrain" / "checkpoints" / "last.pt"
            result = _fewshot_stage(
                config,
                dataset.spec,
                out,
                category,
                entry,
                method,
                init,
                labelled_shapes,
                seed,
                embedding["settings"] if embedding is not None else None,
                progress,
                keep_checkpoints,
            )
            if result["reused"] and result["checkpoint"]:  # trimmed as a later run asks, e.g. to weights
                prune_checkpoints((out / result["checkpoint"]).parent, keep_checkpoints)
            fewshot[category][method] = result
            timings["finetune_and_evaluate_s"][f"{category}/{method}"] = result["seconds"]
            if result["reused"]:
                reused.append(f"fine-tune {category}/{method}")

    say("exporting the held-out shapes' predictions as coloured meshes and pictures")
    start = time.perf_counter()
    predictions, report_meshes = _prediction_stage(dataset, config, out, split, fewshot)
    timings["export_predictions_s"] = time.perf_counter() - start

    from mvdecor.train.distributed import resolve_device

    device = resolve_device("auto")
    pictures: list[Picture] = []
    embedding_pictures: dict[str, dict[str, float]] = {}
    if embedding is not None:
        say("picturing the embeddings (Fig. 3: colour transfer and PCA colours)")
        start = time.perf_counter()
        figure3, embedding_pictures = _embedding_pictures(dataset, config, out, split, seed, device)
        pictures += figure3
        timings["embedding_pictures_s"] = time.perf_counter() - start
    say("picturing the vote weights and the training curves")
    start = time.perf_counter()
    vote_pictures, vote_weights = _vote_weight_pictures(dataset, out, split, fewshot, device)
    pictures += vote_pictures
    timings["vote_weight_pictures_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pictures += _curve_pictures(out, fewshot, pretrained=embedding is not None)
    timings["curve_pictures_s"] = time.perf_counter() - start
    pictures += _prediction_and_shape_pictures(predictions, shape_rows, split)

    mean = {
        method: {key: _mean_of([fewshot[c][method][key] for c in split]) for key in SCORES}
        for method in methods
    }
    vs_transfer = _vs_transfer(mean)
    summary = {
        "preset": config.preset,
        "dataset": dataset.spec,
        "categories": list(split),
        "shapes": len(shape_rows),
        "views_per_shape": config.render.num_views,
        "resolution": config.render.resolution,
        "settings": {
            "shapes_per_category": shapes_per_category,
            "test_fraction": test_fraction,
            "k": labelled_shapes,
            "runs": 1,
            "pretrain_iterations": config.pretrain.iterations if embedding is not None else 0,
            "pretrain_pairs_per_batch": config.pretrain.pairs_per_batch,
            "finetune_iterations": config.finetune.iterations,
            "finetune_views_per_batch": config.finetune.views_per_batch,
            "ssl_weight": config.finetune.ssl_weight,
            "precision": config.finetune.precision,
            "seed": seed,
            "convention": "shapenet",
            "weighting": "area",
        },
        "split": split,
        "render_seconds": round(timings["render_s"], 1),
        "rendered": len(render_report.rendered),
        "shapes_detail": shape_rows,
        "pretraining": _without(embedding, ("settings",)) if embedding is not None else None,
        "methods": methods,
        "fewshot": {
            c: {m: _without(r, ("settings",)) for m, r in runs.items()} for c, runs in fewshot.items()
        },
        "mean": mean,
        "verdict": {**_verdict(mean, fewshot), "vs_transfer": vs_transfer} if "mvdecor" in methods else None,
        "vs_transfer": vs_transfer,
        "predictions": predictions,
        "pictures": [{"path": str(picture.path), "caption": picture.caption} for picture in pictures],
        "embedding_pictures": embedding_pictures,
        "vote_weights": vote_weights,
        "keep_checkpoints": keep_checkpoints,
        "timings": timings,
        "reused_stages": reused,
    }
    summary = _json_safe(summary)
    say("writing report.html and report.md")
    start = time.perf_counter()
    html_path = _html_report(summary, out, pictures, report_meshes)
    timings["html_report_s"] = time.perf_counter() - start
    timings["total_s"] = time.perf_counter() - total_start
    summary["timings"] = _round_all(timings)
    # Measured last, after the checkpoints were trimmed and every picture and page written.
    summary["output_mb"] = round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    report_path = out / "report.md"
    report_path.write_text(_report(summary, config, html_path.relative_to(out).as_posix()))
    return report_path


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


# ---------------------------------------------------------------- stage records
def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: tuples become lists, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _open_stage(folder: Path, settings: Mapping[str, Any]) -> dict | None:
    """The result of a finished stage run with ``settings`` in ``folder``, else None.

    When ``folder`` holds a stage run with other settings (or anything without
    a record), it is removed first, so the stage starts afresh; when it holds
    an unfinished run with the same settings, it is kept, so the stage resumes
    from its checkpoints. Either way the settings are recorded before the
    stage runs.
    """
    record_path = folder / STAGE_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("settings") == settings:
            return record.get("result")
        shutil.rmtree(folder)
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps({"settings": settings}, indent=2) + "\n")
    return None


def _finish_stage(folder: Path, settings: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """Record that the stage in ``folder`` finished with ``result``."""
    record = {"settings": settings, "result": result}
    (folder / STAGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def _sections(config: Config, names: Sequence[str]) -> dict[str, dict]:
    """The named sections of ``config`` as dicts, without settings that do not change results."""
    full = config.to_dict()
    sections = {name: dict(full[name]) for name in names}
    for section in sections.values():
        section.pop("num_workers", None)
    return sections


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


def _picture_shapes(dataset: SyntheticDataset, store_root: Path, pictures: Path) -> list[dict]:
    """One contact sheet of views and labels per shape; one summary row per shape."""
    for stale in pictures.glob("*.png"):
        stale.unlink()
    store = RenderStore(store_root)
    rows = []
    for shape_id in store.shape_ids():
        with store.open(shape_id) as stored:
            picks = np.linspace(1, len(stored) - 2, 4).round().astype(int)
        mesh, views = _stored_views(dataset, store_root, shape_id, picks)
        sheet = view_sheet(
            views, mesh.face_labels, mesh.num_labels, buffers=("rgb", "normals", "depth", "labels")
        )
        save_image(sheet, pictures / f"{shape_id}.png")
        size_mb = store.shape_path(shape_id).stat().st_size / 1e6
        rows.append(
            {
                "shape": shape_id,
                "faces": mesh.num_faces,
                "parts": len(set(mesh.face_labels.tolist())),
                "textured": mesh.has_texture,
                "store_mb": round(size_mb, 3),
                "coverage": round(float(np.mean([v.coverage for v in views])), 3),
            }
        )
    return rows


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
    settings = _json_safe(
        {
            "dataset": dataset_spec,
            "split": pretrain_split,
            **_sections(config, ("render", "model", "pretrain")),
        }
    )
    finished = _open_stage(folder, settings)
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
    stage = _json_safe(
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
    _finish_stage(folder, settings, stage)
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
    pretrain_settings: Mapping[str, Any] | None,
    progress: bool,
    keep_checkpoints: str,
) -> dict:
    """One fine-tuning run of ``method`` on ``k`` labelled shapes of ``category``, scored on its test shapes.

    The learning-free ``transfer`` trains nothing: its record has no checkpoint and no 2D pixel mIoU (None).
    """
    from mvdecor.evaluation.fewshot import run_fewshot

    folder = out / "fewshot" / category / method
    learned = method != TRANSFER
    settings = _json_safe(
        {
            "dataset": dataset_spec,
            "category": category,
            "train": list(entry["train"]),
            "test": list(entry["test"]),
            "k": k,
            "seed": seed,
            "method": method,
            "init": {"pretraining": pretrain_settings} if method == "mvdecor" else method,
            **_sections(
                config, ("render", "model", "finetune", "segment") if learned else ("render", "transfer")
            ),
            "stage_version": FEWSHOT_STAGE_VERSION,
        }
    )
    finished = _open_stage(folder, settings)
    if finished is not None:
        return {**finished, "reused": True}
    summary = run_fewshot(
        config,
        dataset_spec,
        folder,
        train_shapes=list(entry["train"]),
        test_shapes=list(entry["test"]),
        k=k,
        views_per_shape=0,
        runs=1,
        init=init,
        method=method,
        convention="shapenet",
        seed=seed,
        progress=progress,
        keep_checkpoints=keep_checkpoints,
    )
    run = summary["per_run"][0]
    # The protocol records where its run left the network (none for transfer) and the labels it scored.
    checkpoint = folder / run["checkpoint"] if run["checkpoint"] else None
    predictions = folder / run["predictions"]
    for path in (checkpoint, predictions) if learned else (predictions,):
        if not path.is_file():
            raise RuntimeError(f"the few-shot run recorded {path}, which does not exist")
    result = _json_safe(
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
    _finish_stage(folder, settings, result)
    return {**result, "reused": False}


# --------------------------------------------------------------- predictions
def _stored_views(
    dataset: SyntheticDataset, store_root: Path, shape_id: str, indices: Sequence[int] | None = None
) -> tuple[LabelledMesh, list[RenderedView]]:
    """A shape's normalised mesh and its views ``indices`` (default all) rebuilt from the render store.

    The stored cameras are the ones training and segmentation use, so these
    are the very views the networks saw, without ray casting them again.
    """
    mesh = dataset.load(shape_id).normalized().replace(name=shape_id)
    with RenderStore(store_root).open(shape_id) as stored:
        stored.check_mesh(mesh)
        renderer = Renderer(mesh)
        picks = range(len(stored)) if indices is None else indices
        views = [stored.view(int(i), renderer) for i in picks]
    return mesh, views


def _prediction_stage(
    dataset: SyntheticDataset,
    config: Config,
    out: Path,
    split: Split,
    fewshot: Mapping[str, Mapping[str, dict]],
) -> tuple[dict, list[ReportMesh]]:
    """Export every method's saved predictions of every test shape; picture them; their 3D views.

    The labels are the ones each few-shot run scored and saved
    (``predictions.npz``), not a second segmentation.

    Returns
    -------
    dict
        ``{shape_id: {"category", "picture", "meshes": {method: {"ply", "glb"}},
        "shape_miou": {method: float}}}`` with paths relative to ``out``.
    list of ReportMesh
        One per test shape: each method's predicted colouring and the ground truth.
    """
    from mvdecor.evaluation.fewshot import load_predictions
    from mvdecor.inference.export import export_segmentation

    seg_root = out / "segmentations"
    pic_root = out / "pictures" / "predictions"
    for folder in (seg_root, pic_root):
        if folder.exists():
            shutil.rmtree(folder)
    render = config.render
    shapes: dict[str, dict] = {}
    report_meshes: list[ReportMesh] = []
    for category, entry in split.items():
        names = tuple(dataset.label_names_of(category))
        methods = list(fewshot[category])
        saved = {m: load_predictions(out / fewshot[category][m]["predictions"]) for m in methods}
        for shape_id in entry["test"]:
            mesh = dataset.load(shape_id).normalized().replace(name=shape_id)
            record: dict[str, Any] = {"category": category, "meshes": {}, "shape_miou": {}}
            predicted: dict[str, np.ndarray] = {}
            for method in methods:
                prediction = saved[method][shape_id]
                predicted[method] = prediction.face_labels
                record["shape_miou"][method] = fewshot[category][method]["per_shape_miou"].get(shape_id)
                files = export_segmentation(
                    mesh,
                    prediction.face_labels,
                    names,
                    seg_root / method,
                    confidence=prediction.face_confidence,
                )
                record["meshes"][method] = {
                    kind: files[kind].relative_to(out).as_posix() for kind in ("ply", "glb")
                }
            files = export_segmentation(mesh, mesh.face_labels, names, seg_root / "ground_truth")
            record["meshes"]["ground_truth"] = {
                kind: files[kind].relative_to(out).as_posix() for kind in ("ply", "glb")
            }
            # The cameras the network segmented with: the training scheme, seeded per shape.
            cameras = render.camera_scheme().cameras(seed=shape_camera_seed(shape_id, render.seed))
            picture = _prediction_picture(mesh, cameras, predicted, names)
            record["picture"] = save_image(picture, pic_root / f"{shape_id}.png").relative_to(out).as_posix()
            shapes[shape_id] = record
            labelings = {METHOD_TITLES[m]: predicted[m] for m in methods}
            labelings["ground truth"] = mesh.face_labels
            report_meshes.append(
                ReportMesh(shape_id, mesh.vertices, mesh.faces, names, labelings, caption=category)
            )
    return shapes, report_meshes


def _prediction_picture(
    mesh: LabelledMesh,
    cameras: Cameras,
    predictions: Mapping[str, np.ndarray],
    label_names: Sequence[str],
) -> np.ndarray:
    """A few views of ``mesh``: colour | ground truth | each method's fused face labels, and a legend."""
    renderer = Renderer(mesh)
    picks = np.linspace(1, len(cameras) - 2, PICTURE_VIEWS).round().astype(int)
    views = [renderer.render_view(cameras, int(index)) for index in picks]
    columns = {"ground truth": mesh.face_labels}
    # Long titles ("transfer (no training)") on two lines, to fit a panel.
    columns.update(
        {METHOD_TITLES.get(m, m).replace(" (", "\n("): labels for m, labels in predictions.items()}
    )
    return part_labels_sheet(views, columns, label_names, colour_buffer="rgb", gap=PANEL_GAP)


# ------------------------------------------------------------------ pictures
def _figure3_views(render: Any) -> tuple[int, int]:
    """Two views of the first camera ring about 60 degrees of azimuth apart: they overlap well.

    View 0 is the top pole, views ``1 .. segments`` the first ring (see
    :func:`mvdecor.render.cameras.sphere_directions`).
    """
    step = max(1, round(render.segments / 6))
    return 1, min(1 + step, render.num_views - 1)


def _embedding_pictures(
    dataset: SyntheticDataset, config: Config, out: Path, split: Split, seed: int, device: Any
) -> tuple[list[Picture], dict[str, dict[str, float]]]:
    """The paper's Fig. 3 per category, with the pre-trained network and with a random one.

    Two pairs per category, each drawn with both networks
    (``pictures/embeddings/<category>_<pair>_<network>.png``): two views of the
    first held-out shape (``same_shape``), and the same camera on two shapes
    (``two_shapes``: the first two held-out shapes, or the first held-out and
    the first training shape when only one is held out).

    Returns
    -------
    list of Picture
        The sheets, paths relative to ``out``, with captions.
    dict
        ``{"<category>/<pair>/<network>": {"miss_share", "mean_similarity"}}``.
    """
    from dataclasses import replace

    import torch

    from mvdecor.train.pretrain import build_model, load_embedding
    from mvdecor.viz import embed_views, embedding_sheet

    folder = out / "pictures" / "embeddings"
    if folder.exists():
        shutil.rmtree(folder)
    checkpoint = out / "pretrain" / "checkpoints" / "last.pt"
    pretrained, stats, net_config = load_embedding(checkpoint, device)
    # The same architecture at its initialisation, seeded as the correspondence measurement's.
    torch.manual_seed(seed)
    random_network = build_model(
        replace(net_config, model=replace(net_config.model, imagenet_checkpoint=""))
    ).to(device)
    networks = {"pretrained": pretrained, "random": random_network}
    network_words = {
        "pretrained": f"the pre-trained network ({checkpoint.relative_to(out).as_posix()})",
        "random": "a randomly initialised network of the same architecture, for contrast",
    }
    modalities = net_config.model.modalities
    first, second = _figure3_views(config.render)
    pictures: list[Picture] = []
    numbers: dict[str, dict[str, float]] = {}
    for category, entry in split.items():
        shape = entry["test"][0]
        if len(entry["test"]) > 1:
            other, other_words = entry["test"][1], f"the held-out {entry['test'][1]}"
        else:
            other = entry["train"][0]
            other_words = f"the training shape {other} (seen without labels in pre-training)"
        _, (view_a, view_b) = _stored_views(dataset, out / "store", shape, [first, second])
        _, (view_other,) = _stored_views(dataset, out / "store", other, [first])
        views = [view_a, view_b, view_other]
        # (source, target) indices into ``views``, view titles, and what the pair shows.
        pairs = {
            "same_shape": (
                (0, 1),
                (f"{shape} view {first}", f"{shape} view {second}"),
                f"two views of the held-out {category} {shape} (a perfect transfer reproduces the "
                "target's own position colours)",
            ),
            "two_shapes": (
                (2, 0),
                (f"{other} view {first}", f"{shape} view {first}"),
                f"two {category}s seen from the same camera, {other_words} as the source and the "
                f"held-out {shape} as the target",
            ),
        }
        for network, model in networks.items():
            # Each view is embedded once per network, whatever the pairs it is in.
            embedded = embed_views(model, views, modalities, stats, device=device)
            for pair, ((source, target), names, words) in pairs.items():
                sheet = embedding_sheet(
                    views[source],
                    views[target],
                    embedded[source],
                    embedded[target],
                    names=names,
                    note=f"Network: {network}.",
                    device=device,
                )
                path = save_image(sheet.image, folder / f"{category}_{pair}_{network}.png")
                transfer = sheet.transfer
                numbers[f"{category}/{pair}/{network}"] = {
                    "miss_share": transfer.miss_share,
                    "mean_similarity": transfer.mean_similarity,
                }
                caption = (
                    f"Fig. 3, {category}, {network_words[network]}: colour transfer between {words}; "
                    f"red: best cosine similarity below {transfer.threshold:g} "
                    f"({100 * transfer.miss_share:.1f}% of the target). Right: the embeddings' first three "
                    "principal components as RGB."
                )
                pictures.append(Picture(path.relative_to(out).as_posix(), caption))
    return pictures, numbers


def _vote_weight_pictures(
    dataset: SyntheticDataset,
    out: Path,
    split: Split,
    fewshot: Mapping[str, Mapping[str, dict]],
    device: Any,
) -> tuple[list[Picture], dict[str, Any]]:
    """How much each view counts in the vote, for the first held-out shape, with each network (not transfer).

    The views' class probabilities are predicted once more for this one shape
    (the few-shot runs keep only the fused labels). The picture shows the
    :data:`VOTE_VIEWS` views with the highest and the lowest weights
    (``pictures/vote_weights/<shape>_<method>.png``).

    Returns
    -------
    list of Picture
        One per method, paths relative to ``out``, with captions.
    dict
        ``{"shape", "category", "weights": {method: [weight of each view]}}``.
    """
    from mvdecor.inference.fusion import view_weight
    from mvdecor.inference.segment import Segmenter
    from mvdecor.viz import vote_weight_sheet

    folder = out / "pictures" / "vote_weights"
    if folder.exists():
        shutil.rmtree(folder)
    category, entry = next(iter(split.items()))
    shape = entry["test"][0]
    _, views = _stored_views(dataset, out / "store", shape)
    names = tuple(dataset.label_names_of(category))
    pictures: list[Picture] = []
    weights_of: dict[str, list[float]] = {}
    for method, run in fewshot[category].items():
        if not run["checkpoint"]:  # transfer: no network, no views, no vote
            continue
        segmenter = Segmenter.from_checkpoint(out / run["checkpoint"], device)
        probs = segmenter.predict(views)
        gamma = segmenter.config.segment.gamma
        weights = np.array([view_weight(p, view.mask, gamma) for p, view in zip(probs, views, strict=True)])
        by_weight = np.argsort(-weights, kind="stable")
        if len(views) > VOTE_VIEWS:
            by_weight = np.concatenate(
                [by_weight[: VOTE_VIEWS // 2], by_weight[-(VOTE_VIEWS - VOTE_VIEWS // 2) :]]
            )
        sheet = vote_weight_sheet(
            [probs[i] for i in by_weight],
            [views[i].mask for i in by_weight],
            names,
            gamma=gamma,
            exclude_classes=segmenter.exclude_classes,
            titles=[f"view {i}" for i in by_weight],
        )
        path = save_image(sheet.image, folder / f"{shape}_{method}.png")
        weights_of[method] = weights.tolist()
        shown = (
            f"all {len(views)} views"
            if len(views) <= VOTE_VIEWS
            else f"the {VOTE_VIEWS // 2} views with the highest and the {VOTE_VIEWS - VOTE_VIEWS // 2} with "
            f"the lowest weight of its {len(views)} views"
        )
        caption = (
            f"Entropy-weighted vote of {METHOD_TITLES[method]} on the held-out {category} {shape}: {shown}, "
            f"each with its predicted labels, its per-pixel normalised entropy and its vote weight W "
            f"(all {len(views)} weights from {weights.min():.3g} to {weights.max():.3g})."
        )
        pictures.append(Picture(path.relative_to(out).as_posix(), caption))
    return pictures, {"shape": shape, "category": category, "weights": weights_of}


def _curve_pictures(out: Path, fewshot: Mapping[str, Mapping[str, dict]], pretrained: bool) -> list[Picture]:
    """Training curves of the pre-training run and of every fine-tuning run (``pictures/curves/``)."""
    from mvdecor.viz import plot_training_curves

    folder = out / "pictures" / "curves"
    if folder.exists():
        shutil.rmtree(folder)
    runs: list[tuple[Path, str, str, str]] = []
    if pretrained:
        runs.append(
            (
                out / "pretrain",
                "pretrain",
                "pre-training (dense multi-view InfoNCE)",
                "Pre-training: training and validation InfoNCE loss and learning rate, against the step.",
            )
        )
    for category, methods in fewshot.items():
        for method, run in methods.items():
            if not run["checkpoint"]:  # transfer trains nothing
                continue
            title = f"fine-tuning {METHOD_TITLES[method]}, {category}"
            runs.append(
                (
                    (out / run["checkpoint"]).parent.parent,
                    f"finetune_{category}_{method}",
                    title,
                    f"Fine-tuning {METHOD_TITLES[method]} on the labelled {category}s: cross-entropy loss, "
                    "learning rate and pixel accuracy on the training views, against the step.",
                )
            )
    pictures = []
    for run_dir, stem, title, caption in runs:
        path = plot_training_curves(run_dir, folder / f"{stem}.png", title=title)
        pictures.append(Picture(path.relative_to(out).as_posix(), caption))
    return pictures


def _prediction_and_shape_pictures(
    predictions: Mapping[str, dict], shape_rows: Sequence[Mapping[str, Any]], split: Split
) -> list[Picture]:
    """The prediction picture of every test shape and the view sheet of every shape, with captions."""
    pictures = []
    for shape_id, record in predictions.items():
        scores = ", ".join(f"{METHOD_TITLES[m]} {_pct(v)}%" for m, v in record["shape_miou"].items())
        pictures.append(
            Picture(
                record["picture"],
                f"Held-out {record['category']} {shape_id}, {PICTURE_VIEWS} views: colour, ground truth, "
                f"each method's fused face labels; shape mIoU {scores}.",
            )
        )
    test_ids = {s for entry in split.values() for s in entry["test"]}
    for row in shape_rows:
        role = "held-out" if row["shape"] in test_ids else "training"
        pictures.append(
            Picture(
                f"pictures/{row['shape']}.png",
                f"{row['shape']} ({role}): four views (rows) of colour, world normals, normalised depth and "
                "ground-truth parts.",
            )
        )
    return pictures


def _html_report(summary: dict, out: Path, pictures: Sequence[Picture], meshes: Sequence[ReportMesh]) -> Path:
    """``report.html``: the score tables, every picture with its caption, a 3D view of each test shape."""
    from mvdecor.viz import write_report

    methods = summary["methods"]

    def percent(value: float | None) -> float | str:
        return "n/a" if value is None else 100 * value  # None: transfer's 2D score (no per-view prediction)

    records = {
        category: {
            f"{name} {METHOD_TITLES[m]}": percent(runs[m][key])
            for key, name in SCORES.items()
            for m in methods
        }
        for category, runs in summary["fewshot"].items()
    }
    records["mean"] = {
        f"{name} {METHOD_TITLES[m]}": percent(summary["mean"][m][key])
        for key, name in SCORES.items()
        for m in methods
    }
    tables = [
        MetricsTable.from_records(
            records,
            index="category",
            title="Scores in % (ShapeNet-Part rules, area-weighted)",
            float_format="{:.1f}",
        ),
        MetricsTable.from_records(
            {
                shape_id: {
                    "category": record["category"],
                    **{
                        f"shape mIoU {METHOD_TITLES[m]}": percent(record["shape_miou"].get(m))
                        for m in methods
                    },
                }
                for shape_id, record in summary["predictions"].items()
            },
            index="held-out shape",
            title="Shape mIoU of each held-out shape in %",
            float_format="{:.1f}",
        ),
    ]
    embedding = summary["pretraining"]
    if embedding is not None:
        tables.append(
            MetricsTable.from_records(
                {
                    name: {"within 2 px": percent(acc["acc@2px"]), "within 5 px": percent(acc["acc@5px"])}
                    for name, acc in embedding["correspondence"].items()
                },
                index="embedding",
                title="Cross-view correspondence accuracy on the held-out shapes in %",
                float_format="{:.1f}",
            )
        )
    settings = summary["settings"]
    description = (
        f"Built-in synthetic {' and '.join(summary['categories'])} shapes, "
        f"{settings['shapes_per_category']} per category, split into training and held-out shapes. "
    )
    if summary["verdict"] is not None:
        description += (
            f"{settings['pretrain_iterations']} pre-training steps without labels, then per category "
            f"{settings['finetune_iterations']} fine-tuning steps on k = {settings['k']} labelled shapes "
            "from the pre-trained network (MvDeCor) and from random weights (scratch). "
            + _verdict_text(summary).replace("**", "")
        )
    else:
        description += (
            f"Pre-training skipped: {settings['finetune_iterations']} fine-tuning steps from random weights "
            f"on k = {settings['k']} labelled shapes per category."
        )
    description += f" Beside the networks, {_TRANSFER_WORDS} {_vs_transfer_text(summary)}".replace("**", "")
    description += " Tiny CPU budgets: a smoke test of the pipeline, not the paper's results."
    return write_report(
        out,
        "mvdecor demo",
        tables,
        pictures,
        meshes,
        preset=summary["preset"],
        description=description,
    )


# -------------------------------------------------------------------- report
def _verdict(mean: Mapping[str, Mapping[str, float]], fewshot: Mapping[str, Mapping[str, dict]]) -> dict:
    """Which method is ahead on each mean score, by how much, and overall.

    ``winner`` is the method ahead on all three scores, ``"tie"`` when no score
    differs by 0.05 points or more, else ``"mixed"``.
    """
    per_score = {}
    for key in SCORES:
        gain = mean["mvdecor"][key] - mean["scratch"][key]
        ahead = "tie" if not abs(gain) >= 5e-4 else ("mvdecor" if gain > 0 else "scratch")
        per_score[key] = {"ahead": ahead, "mvdecor_minus_scratch_points": 100 * gain}
    leaders = {v["ahead"] for v in per_score.values()}
    if leaders == {"tie"}:
        winner = "tie"
    elif len(leaders) == 1:
        winner = leaders.pop()
    else:
        winner = "mixed"
    categories_ahead = sum(
        (runs["mvdecor"]["part_miou"] or 0.0) > (runs["scratch"]["part_miou"] or 0.0)
        for runs in fewshot.values()
    )
    return {
        "winner": winner,
        "scores": per_score,
        "categories_mvdecor_ahead_on_part_miou": int(categories_ahead),
        "categories": len(fewshot),
    }


def _vs_transfer(mean: Mapping[str, Mapping[str, float]]) -> dict:
    """The best learned method's mean part mIoU against the learning-free transfer's, in points."""
    learned = [m for m in mean if m != TRANSFER]
    best = max(learned, key=lambda m: mean[m]["part_miou"])
    points = {m: 100 * (mean[m]["part_miou"] - mean[TRANSFER]["part_miou"]) for m in learned}
    ahead = "tie" if not abs(points[best]) >= 0.05 else (best if points[best] > 0 else TRANSFER)
    return {
        "best_learned": best,
        "best_learned_part_miou": mean[best]["part_miou"],
        "transfer_part_miou": mean[TRANSFER]["part_miou"],
        "best_learned_minus_transfer_points": points[best],
        "ahead": ahead,
        "minus_transfer_points": points,
    }


#: What the transfer baseline is, in one sentence.
_TRANSFER_WORDS = (
    "the learning-free label transfer (**transfer**) gives each test face the label of the nearest labelled "
    "surface point of the same k shapes after a per-axis bounding-box alignment, with no network and so no "
    "per-view prediction (its 2D pixel mIoU is n/a)."
)


def _vs_transfer_text(summary: dict) -> str:
    """One sentence: the best learned method's part mIoU against the learning-free transfer's."""
    vs = summary["vs_transfer"]
    gain = vs["best_learned_minus_transfer_points"]
    learned = [m for m in summary["methods"] if m != TRANSFER]
    title = METHOD_TITLES[vs["best_learned"]]
    who = (
        f"The better learned method, {title},"
        if len(learned) > 1
        else f"{title[:1].upper()}{title[1:]}, the only network,"
    )
    where = (
        "level with" if vs["ahead"] == "tie" else f"{abs(gain):.1f} points {'above' if gain > 0 else 'below'}"
    )
    floor = "; no learned method clears the learning-free floor here" if vs["ahead"] == TRANSFER else ""
    return (
        f"{who} has a mean part mIoU {where} the learning-free transfer's "
        f"({_pct(vs['best_learned_part_miou'])}% against {_pct(vs['transfer_part_miou'])}%){floor}."
    )


def _verdict_text(summary: dict) -> str:
    """The verdict in one or two plain sentences."""
    verdict, mean = summary["verdict"], summary["mean"]

    def compare(key: str) -> str:
        gain = verdict["scores"][key]["mvdecor_minus_scratch_points"]
        return (
            f"{SCORES[key]} {_pct(mean['mvdecor'][key])}% against {_pct(mean['scratch'][key])}% "
            f"({gain:+.1f} points)"
        )

    categories = (
        f"MvDeCor has the higher part mIoU in {verdict['categories_mvdecor_ahead_on_part_miou']} of "
        f"{verdict['categories']} categories."
    )
    every = "; ".join(compare(key) for key in SCORES)
    if verdict["winner"] == "mvdecor":
        return f"**MvDeCor won** on all three mean scores (MvDeCor against scratch): {every}. {categories}"
    if verdict["winner"] == "scratch":
        return (
            f"**Training from scratch won** on all three mean scores (MvDeCor against scratch): {every}. "
            f"{categories}"
        )
    if verdict["winner"] == "tie":
        return f"**Neither method won**: the mean scores agree within 0.05 points ({every})."
    ahead = [SCORES[k] for k, v in verdict["scores"].items() if v["ahead"] == "mvdecor"]
    behind = [SCORES[k] for k, v in verdict["scores"].items() if v["ahead"] == "scratch"]
    return (
        f"**No clear winner**: MvDeCor is ahead on {' and '.join(ahead) or 'no score'} and behind on "
        f"{' and '.join(behind) or 'no score'} (MvDeCor against scratch: {every}). {categories}"
    )


def _n(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless ``count`` is 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _report(summary: dict, config: Config, html_name: str) -> str:
    """``report.md`` from the summary; ``html_name`` is the HTML report's path relative to it."""
    settings = summary["settings"]
    methods = summary["methods"]
    embedding = summary["pretraining"]
    split = summary["split"]
    lines = [
        "# mvdecor demo",
        "",
        f"Built-in synthetic shapes of {len(split)} categories ({', '.join(split)}), "
        f"{settings['shapes_per_category']} per category, split into training and held-out test shapes "
        f"(`split.json`); dataset `{summary['dataset']}`. Preset `{summary['preset']}` "
        f"({summary['views_per_shape']} views per shape at {summary['resolution']}x{summary['resolution']}, "
        f"{config.model.backbone}), with the demo's short schedules in {settings['precision']}; the "
        "configuration in use is in "
        "`config.yaml`, every number below in `summary.json`.",
        "",
        f"**[{html_name}]({html_name})** shows the same results in a browser, with every picture and an "
        "interactive 3D view of each held-out shape coloured by each method's prediction and by the "
        "ground truth (it works offline, opened straight from this folder).",
        "",
    ]
    lines += _results_section(summary)
    lines += _predictions_section(summary, split, methods)
    lines += _pictures_section(summary)
    if embedding is not None:
        lines += _pretraining_section(embedding)
    lines += _timing_section(summary)
    lines += [
        "## Shapes",
        "",
        f"Rendered {summary['rendered']} shapes in {summary['render_seconds']:.1f} s into `store/` "
        f"({summary['shapes'] - summary['rendered']} already stored). Each picture shows four views (rows) "
        "of one shape: colour, world normals, normalised depth, and the ground-truth part labels.",
        "",
        "| shape | role | faces | labelled parts | textured | store MB | coverage |",
        "| --- | --- | ---: | ---: | :---: | ---: | ---: |",
    ]
    test_ids = {s for entry in split.values() for s in entry["test"]}
    labelled_ids = {
        s for runs in summary["fewshot"].values() for run in runs.values() for s in run["labelled_shapes"]
    }
    for r in summary["shapes_detail"]:
        role = "test" if r["shape"] in test_ids else "train"
        if r["shape"] in labelled_ids:
            role = "train, labelled"
        lines.append(
            f"| [{r['shape']}](pictures/{r['shape']}.png) | {role} | {r['faces']} | {r['parts']} | "
            f"{'yes' if r['textured'] else 'no'} | {r['store_mb']} | {r['coverage']} |"
        )
    return "\n".join(lines) + "\n"


def _results_section(summary: dict) -> list[str]:
    settings = summary["settings"]
    methods = summary["methods"]
    fewshot = summary["fewshot"]
    k = settings["k"]
    if "mvdecor" in methods:
        intro = (
            f"Per category, two networks were fine-tuned on the same k = {_n(k, 'labelled training shape')} "
            f"(all {summary['views_per_shape']} views of each; same draw, same seed) for "
            f"{_n(settings['finetune_iterations'], 'step')} of {settings['finetune_views_per_batch']} views: "
            "one starting from the embedding network pre-trained without labels on the training shapes of "
            "all categories (**MvDeCor**), one from random weights (**scratch**). Both segmented the "
            "held-out test shapes (per-view predictions fused onto the faces by entropy-weighted voting) "
            "and were scored there."
        )
    else:
        intro = (
            "Pre-training was skipped (`pretrain_iterations=0`), so the only learned method is training from "
            "scratch: per "
            f"category one network was fine-tuned from random weights on k = {_n(k, 'labelled training shape')} "
            f"for {_n(settings['finetune_iterations'], 'step')} and scored on the held-out test shapes."
        )
    intro += " Beside the networks, " + _TRANSFER_WORDS
    header = "| category | test shapes |"
    rule = "| --- | ---: |"
    for metric in SCORES.values():
        for method in methods:
            header += f" {metric} {METHOD_TITLES[method]} |"
            rule += " ---: |"
    lines = [
        f"## {'MvDeCor against training' if 'mvdecor' in methods else 'Training'} from scratch and transfer",
        "",
        intro,
        "",
        "Scores in %, ShapeNet-Part rules, faces weighted by area: *part mIoU* is the mean over parts of "
        "each part's IoU accumulated over the test shapes, *shape mIoU* the mean over shapes of each "
        "shape's mean part IoU (fused 3D labels), *2D pixel mIoU* the same as part mIoU over the pixels "
        "of the individual views before fusion.",
        "",
        header,
        rule,
    ]
    for category, runs in fewshot.items():
        row = f"| {category} | {len(runs[methods[0]]['test_shapes'])} |"
        for key in SCORES:
            for method in methods:
                row += f" {_pct(runs[method][key])} |"
        lines.append(row)
    row = "| **mean** | |"
    for key in SCORES:
        for method in methods:
            row += f" **{_pct(summary['mean'][method][key])}** |"
    lines.append(row)
    lines.append("")
    budget = (
        "These are tiny CPU budgets, sized for a 2-core CPU: "
        f"{_n(settings['pretrain_iterations'], 'pre-training step')} of "
        f"{settings['pretrain_pairs_per_batch']} view pairs and "
        f"{_n(settings['finetune_iterations'], 'fine-tuning step')}, one run per category, "
        f"{_n(_count(summary['split'], 'test'), 'test shape')} in all. "
        "A difference of a few points can be noise of the labelled draw and of training; this is a smoke "
        "test of the pipeline, not a reproduction of the paper, whose schedules (`paper` preset) need a GPU."
    )
    if summary["verdict"] is not None:
        lines += [_verdict_text(summary), ""]
    lines += [_vs_transfer_text(summary), "", budget, ""]
    lines.append("Labelled shapes drawn (the same for every method):")
    lines.append("")
    for category, runs in fewshot.items():
        lines.append(f"- {category}: {', '.join(runs[methods[0]]['labelled_shapes'])}")
    lines += ["", "Fine-tuned networks (use them with `mvdecor segment MESH --model CKPT --out DIR`):", ""]
    for category, runs in fewshot.items():
        for method in methods:
            if runs[method]["checkpoint"]:  # not transfer, which has no network
                lines.append(f"- {category}, {METHOD_TITLES[method]}: `{runs[method]['checkpoint']}`")
    lines.append("")
    return lines


def _predictions_section(summary: dict, split: Mapping[str, Any], methods: Sequence[str]) -> list[str]:
    columns = " | ".join(f"shape mIoU {METHOD_TITLES[m]}" for m in methods)
    rule = " ---: |" * len(methods)
    lines = [
        "## Predictions on the held-out shapes",
        "",
        f"Each picture shows {PICTURE_VIEWS} views (rows) of a test shape: colour, ground-truth parts, "
        "then each method's fused face labels seen from the same camera, with a legend of the part names. "
        "Coloured meshes (one colour per part; the GLB has one named node per part) are in "
        "`segmentations/<method>/`, the ground truth in `segmentations/ground_truth/`. The labels are "
        "the ones scored above, saved by each few-shot run (`predictions.npz` in its run folder).",
        "",
        f"| shape | picture | {columns} | meshes |",
        f"| --- | --- |{rule} --- |",
    ]
    for shape_id, record in summary["predictions"].items():
        scores = " | ".join(_pct(record.get("shape_miou", {}).get(m)) for m in methods)
        meshes = ", ".join(
            f"[{METHOD_TITLES.get(m, 'ground truth')} PLY]({record['meshes'][m]['ply']}) / "
            f"[GLB]({record['meshes'][m]['glb']})"
            for m in [*methods, "ground_truth"]
        )
        lines.append(f"| {shape_id} | [picture]({record['picture']}) | {scores} | {meshes} |")
    lines.append("")
    return lines


def _pictures_section(summary: dict) -> list[str]:
    """Links to the embedding, vote-weight and training-curve pictures, each with its caption."""
    groups = (
        ("pictures/embeddings/", "Embeddings (the paper's Fig. 3)"),
        ("pictures/vote_weights/", "Weights of the views in the vote"),
        ("pictures/curves/", "Training curves"),
    )
    lines = ["## Pictures", ""]
    for prefix, title in groups:
        members = [p for p in summary["pictures"] if p["path"].startswith(prefix)]
        if not members:
            continue
        lines += [f"### {title}", ""]
        lines += [f"- [{Path(p['path']).name}]({p['path']}): {p['caption']}" for p in members]
        lines.append("")
    return lines


def _pretraining_section(embedding: dict) -> list[str]:
    lines = [
        "## Pre-training",
        "",
        f"{_n(embedding['iterations'], 'iteration')} of dense multi-view InfoNCE on the unlabelled renders of "
        f"the {embedding['train_shapes']} training shapes of all categories together "
        f"({embedding['seconds']:.0f} s; run folder `pretrain/`). Validation InfoNCE on the "
        f"{embedding['val_shapes']} held-out shapes {embedding['first_val_loss']:.3f} -> "
        f"{embedding['best_val_loss']:.3f} (chance {embedding['chance_loss']:.2f}). Fine-tuning starts "
        "from the last checkpoint.",
        "",
        "Cross-view correspondence on the held-out shapes: share of matched pixels whose nearest "
        "embedding in the other view lies within 2 / 5 pixels of the true match.",
        "",
        "| embedding | within 2 px | within 5 px |",
        "| --- | ---: | ---: |",
    ]
    for name, acc in embedding["correspondence"].items():
        lines.append(f"| {name} | {_pct(acc['acc@2px'])}% | {_pct(acc['acc@5px'])}% |")
    gain = (
        embedding["correspondence"]["pretrained"]["acc@5px"]
        - embedding["correspondence"]["random_network"]["acc@5px"]
    )
    verdict = (
        f"The pre-trained network finds {100 * gain:+.1f} points more matches within 5 px than a random one."
        if gain > 0
        else f"After only {embedding['iterations']} iterations the pre-trained network does not yet beat a "
        f"random one ({100 * gain:+.1f} points within 5 px), although its validation loss fell."
    )
    lines += [
        "",
        verdict + " Pre-training needs far longer: BENCHMARKS.md shows a 1,500-step `cpu` run on FAUST "
        "humans reaching 80% within 5 px on an unseen person, against 15% for a random network.",
        "",
    ]
    return lines


def _timing_section(summary: dict) -> list[str]:
    timings = summary["timings"]
    reused = set(summary["reused_stages"])
    lines = [
        "## Where the time went",
        "",
        f"Wall-clock seconds of this run: {timings['total_s']:.0f} s in all. A stage reused from an earlier "
        "run shows the seconds it took then.",
        "",
        "| stage | seconds | |",
        "| --- | ---: | --- |",
        f"| render into the store | {timings['render_s']:.1f} | |",
        f"| pictures of the views | {timings['view_pictures_s']:.1f} | |",
    ]
    if "pretrain_s" in timings:
        note = "reused" if "pretrain" in reused else ""
        lines.append(f"| pre-training | {timings['pretrain_s']:.1f} | {note} |")
        lines.append(f"| correspondence accuracy | {timings['correspondence_s']:.1f} | {note} |")
    for name, seconds in timings["finetune_and_evaluate_s"].items():
        category, method = name.split("/")
        note = "reused" if f"fine-tune {name}" in reused else ""
        title = f"fine-tune, segment and evaluate {METHOD_TITLES[method]}, {category}"
        if method == TRANSFER:
            title = f"transfer labels (no training) and evaluate, {category}"
        lines.append(f"| {title} | {seconds:.1f} | {note} |")
    lines.append(f"| export and picture the saved predictions | {timings['export_predictions_s']:.1f} | |")
    if "embedding_pictures_s" in timings:
        lines.append(f"| Fig. 3 pictures of the embeddings | {timings['embedding_pictures_s']:.1f} | |")
    lines += [
        f"| vote-weight pictures | {timings['vote_weight_pictures_s']:.1f} | |",
        f"| training-curve pictures | {timings['curve_pictures_s']:.1f} | |",
        f"| report.html | {timings['html_report_s']:.1f} | |",
        f"| **total** | **{timings['total_s']:.1f}** | |",
        "",
    ]
    kept = {
        "last": "only the last checkpoint of each finished run (what the report, fine-tuning and "
        "`mvdecor segment` use; it can continue training)",
        "weights": "only the network weights of each finished run's last checkpoint (they load everywhere, "
        "but the runs can no longer be continued)",
        "all": "every checkpoint of every run, with its optimizer state",
    }[summary["keep_checkpoints"]]
    lines += [
        f"The report folder takes {summary['output_mb']:.0f} MB, mostly network checkpoints "
        f"(`pretrain/checkpoints/`, `fewshot/<category>/<method>/*/checkpoints/`); it keeps {kept} "
        f"(`keep_checkpoints={summary['keep_checkpoints']}`, `--keep-checkpoints` of `mvdecor demo`).",
        "",
    ]
    return lines
