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
3. per category, adapt two networks to ``k`` labelled training shapes, the
   pre-trained one ("mvdecor") and a randomly initialised one ("scratch"),
   and a third when the pre-training started from ImageNet weights
   (``model.imagenet_checkpoint``, as in the ``cpu`` preset): those weights
   without the pre-training ("imagenet"),
   with the same labelled draw and seed, as the preset's ``finetune.method``
   says (``network``: fine-tuning, as the paper does, and in the ``cpu``
   preset each fine-tuned network's labels averaged with those of the nearest
   labelled faces of the network it started from, ``segment.prior_method:
   nearest``; ``nearest``: that lookup alone, no training),
   segment the held-out shapes with both and
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
   run that trained (``pictures/curves/``);
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

:func:`run_demo` orchestrates; the resumable stages are in
:mod:`mvdecor.demo.stages`, the exports and pictures in
:mod:`mvdecor.demo.pictures`, the verdict and the reports in
:mod:`mvdecor.demo.report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mvdecor.data.datasets import SyntheticDataset
from mvdecor.data.splits import make_split, save_split
from mvdecor.demo.pictures import (
    PANEL_GAP,
    PICTURE_VIEWS,
    VOTE_VIEWS,
    _curve_pictures,
    _embedding_pictures,
    _picture_shapes,
    _prediction_and_shape_pictures,
    _prediction_stage,
    _vote_weight_pictures,
)
from mvdecor.demo.report import _html_report, _report, _verdict, _vs_transfer
from mvdecor.demo.stages import (
    DEFAULT_CATEGORIES,
    METHOD_TITLES,
    SCORES,
    TRANSFER,
    _count,
    _demo_config,
    _fewshot_stage,
    _mean_of,
    _n,
    _pretrain_stage,
    _render_stage,
    _round_all,
    _without,
)
from mvdecor.errors import ConfigError
from mvdecor.protocols.stages import STAGE_RECORD, json_safe
from mvdecor.viz import Picture

__all__ = [
    "DEFAULT_CATEGORIES",
    "METHOD_TITLES",
    "PANEL_GAP",
    "PICTURE_VIEWS",
    "SCORES",
    "STAGE_RECORD",
    "TRANSFER",
    "VOTE_VIEWS",
    "run_demo",
]


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
        fine-tuning run; unused when the preset's ``finetune.method`` is
        ``nearest``, which trains nothing.
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
    # When pre-training starts from ImageNet weights, those weights alone are a column: what the
    # pre-training adds to them.
    methods = ["scratch", TRANSFER]
    if embedding is not None:
        methods = ["mvdecor", *(["imagenet"] if config.model.imagenet_checkpoint else []), *methods]
    fewshot: dict[str, dict[str, dict]] = {}
    timings["finetune_and_evaluate_s"] = {}
    for category, entry in split.items():
        fewshot[category] = {}
        for method in methods:
            shapes = _n(labelled_shapes, f"labelled {category}")
            if method == TRANSFER:
                say(f"transferring labels from {shapes}")
            elif config.finetune.method == "nearest":
                say(f"{METHOD_TITLES[method]}: banking the pixels of {shapes} (nearest, no training)")
            else:
                say(f"fine-tuning {METHOD_TITLES[method]} on {shapes}")
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
            "finetune_method": config.finetune.method,
            "nearest_pooling": config.finetune.nearest_pooling,
            "prior_method": config.segment.prior_method,
            "transfer_prior": config.segment.transfer_prior,
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
    summary = json_safe(summary)
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
