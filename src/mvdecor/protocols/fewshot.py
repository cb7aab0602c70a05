"""The few-shot protocol: R runs of (draw k labelled shapes, fine-tune, segment, evaluate).

:func:`run_fewshot` implements docs/design.md section 6 for one category (one label
vocabulary); :func:`run_fewshot_split` runs it for every category of a split
(:mod:`mvdecor.data.splits`) and reports each category and the mean over
categories, as the paper does. In each category, each run draws its own k labelled training shapes (seeded; the set
covering the most labels among many random draws, as the authors do), fine-tunes
from the given initialisation (``scratch``, ``imagenet`` or a pre-training
checkpoint of any method) with its own seed, segments every test shape, and scores the fused
face labels (part mIoU and shape mIoU, area-weighted or on sampled points) and
the per-view 2D pixel mIoU, so the gain from fusion is visible. It writes
``OUT/results.json`` and ``OUT/results.md`` (mean ± std over runs) and keeps each
run's fine-tuning folder, so an interrupted protocol resumes run by run.

Each run's folder also keeps what the run predicted: ``predictions.npz``, the
fused face labels and face confidences of every test shape
(:func:`save_predictions`, :func:`load_predictions`), so a report can show and
export them without segmenting again. Each ``per_run`` entry of the results
records where the run's files are, relative to ``OUT``: ``checkpoint`` (the
fine-tuned network) and ``predictions``, and ``per_shape`` (each test shape's
mIoU). Results written before these keys existed lack them and are still read.

Results are filed under a *method* name (``OUT/results_<method>_k<k>[_v<v>]``):
pass ``method=`` explicitly, or let :func:`method_of_init` name it from the
initialisation (``scratch``, ``imagenet``, or the method recorded in a
pre-training checkpoint: ``mvdecor``, ``densecl``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mvdecor.config import Config, finetune_settings_read
from mvdecor.correspond.source import ViewSource
from mvdecor.errors import ConfigError
from mvdecor.evaluation.segmentation import SegmentationEvaluator, pixel_miou
from mvdecor.fileio import atomic_write_text
from mvdecor.inference.segment import Segmenter, shape_labeller
from mvdecor.models.checkpoints import CheckpointError, checkpoint_method
from mvdecor.protocols.methods import FACE_METHODS, NEAREST_PRIOR, FaceRun, label_prior
from mvdecor.protocols.predictions import ShapePrediction, predictions_file, save_predictions
from mvdecor.protocols.refinements import check_refinements, prior_key, score_variants
from mvdecor.protocols.stages import (
    RUN_PLACE_KEYS,
    SETTINGS_DEFAULTS,
    config_sections,
    finish_stage,
    init_identity,
    json_safe,
    network_settings,
    open_stage,
    restate_record,
    same_settings,
    without_new_defaults,
)
from mvdecor.train.checkpoint import check_keep_checkpoints, prune_checkpoints
from mvdecor.train.finetune import finetune, nearest_prior_config
from mvdecor.train.labelled import label_vocabulary


def method_of_init(init: str | Path) -> str:
    """The method name results of ``init`` are filed under.

    ``scratch``, ``imagenet`` and the face methods (:data:`~mvdecor.protocols.methods.FACE_METHODS`:
    ``transfer``...) name themselves; a pre-training checkpoint is named by the method that
    wrote it (``mvdecor``, ``densecl``; see :func:`~mvdecor.train.pretrain.checkpoint_method`).
    """
    if str(init) in ("scratch", "imagenet") or str(init) in FACE_METHODS:
        return str(init)
    return checkpoint_method(init)


def draw_labelled_sets(
    label_sets: dict[str, set[int]], k: int, runs: int, seed: int, tries: int = 200
) -> list[list[str]]:
    """One set of ``k`` shape ids per run, each covering as many labels as possible.

    Parameters
    ----------
    label_sets : the labels present in each candidate shape
    k, runs : set size and number of runs
    seed : run ``r`` draws ``tries`` candidate sets with ``default_rng([seed, r])``
        and keeps the best by (labels covered, not drawn by an earlier run): the
        first candidate that covers every label and is new wins. So the runs use
        different sets wherever the category has enough label-covering ones, and
        a set repeats only when no new candidate covers as many labels (see
        :func:`repeated_draws`); the spread over runs is then partly training
        noise, not only the spread over draws.
    """
    ids = sorted(label_sets)
    if k < 1:
        raise ConfigError(None, f"k must be at least 1 labelled shape, got {k}")
    if k > len(ids):
        raise ConfigError(
            None, f"k = {k} labelled shapes requested but only {len(ids)} training shapes exist"
        )
    everything = set().union(*label_sets.values()) if label_sets else set()
    sets: list[list[str]] = []
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        best, best_key = None, (-1, False)
        for _ in range(tries):
            chosen = sorted(rng.choice(ids, size=k, replace=False).tolist())
            key = (len(set().union(*(label_sets[s] for s in chosen))), chosen not in sets)
            if key > best_key:
                best, best_key = chosen, key
            if best_key == (len(everything), True):
                break
        sets.append(best)
    return sets


def repeated_draws(sets: Sequence[Sequence[str]]) -> list[int]:
    """The runs whose labelled set an earlier run already drew."""
    return [run for run, chosen in enumerate(sets) if list(chosen) in [list(s) for s in sets[:run]]]


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and std over runs; ``None`` values (not measured) are skipped, all ``None`` gives ``None``."""
    measured = np.asarray([v for v in values if v is not None], np.float64)
    if len(measured) == 0:
        return {"mean": None, "std": None, "runs": [None for _ in values]}
    return {
        "mean": float(np.nanmean(measured)),
        "std": float(np.nanstd(measured)),
        "runs": [None if v is None else float(v) for v in values],
    }


def run_fewshot(
    config: Config,
    dataset: str,
    out: str | Path,
    *,
    train_shapes: Sequence[str],
    test_shapes: Sequence[str],
    k: int,
    views_per_shape: int = 0,
    runs: int = 5,
    init: str | Path = "scratch",
    method: str | None = None,
    convention: str = "shapenet",
    weighting: str = "area",
    seed: int = 0,
    progress: bool = True,
    category: str | None = None,
    keep_checkpoints: str = "last",
    refinements: Mapping[str, Mapping[str, float]] | None = None,
) -> dict:
    """Run the protocol; returns (and writes) the results. See the module docstring.

    Parameters
    ----------
    train_shapes : the pool labelled shapes are drawn from (also the unlabelled
        shapes of the InfoNCE regulariser)
    test_shapes : the shapes segmented and scored
    views_per_shape : 0 for all views, ``v`` for the sparse labelled-view setting
    method : the name the results are filed and reported under (``mvdecor``,
        ``densecl``, ``scratch``, ``imagenet``...); default :func:`method_of_init`
    convention : ``partnet`` (label 0 "other" never predicted, masked where the
        ground truth is 0) or ``shapenet``
    category : the category's name, recorded in the results
    keep_checkpoints : what each run keeps of its checkpoints once the results
        are written (see :func:`~mvdecor.train.checkpoint.prune_checkpoints`):
        ``last`` (default), ``weights`` (network only, a third of the size) or
        ``all``. Runs of an unfinished setting keep everything so it can resume.
    refinements : ``{name: {segment key: value}}``, variants of the segment
        settings (:data:`~mvdecor.protocols.refinements.REFINEMENT_KEYS`: the transfer prior and its method, the mesh
        smoothing, the test-time cameras, image size and flips), e.g. ``{"smooth": {"smoothing":
        1.0}}``. Each variant is scored with the same fine-tuned networks and
        filed as its own method, ``<method>+<name>``
        (``results_mvdecor+smooth_k2.json``); variants of the votes reuse one
        segmentation of each test shape, and a variant's views
        (``rings``, ``segments``, ``resolution``, ``flip``) segment it once more, so an ablation costs
        no extra fine-tuning.
        Ignored by the face methods (:mod:`mvdecor.protocols.methods`:
        ``transfer``...), which label faces directly and have no votes to refine.
    """
    check_keep_checkpoints(keep_checkpoints)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if method is None:
        method = method_of_init(init)
    if not test_shapes:
        raise ConfigError(None, "the few-shot protocol needs test shapes")
    source = ViewSource.from_config(dataset, config)
    names = label_vocabulary(source, list(train_shapes) + list(test_shapes))
    label_sets = {}
    for shape_id in train_shapes:
        labels = source.mesh(shape_id).face_labels
        label_sets[shape_id] = set(np.unique(labels[labels >= 0]).tolist())
    labelled_sets = draw_labelled_sets(label_sets, k, runs, seed)
    exclude = (0,) if convention == "partnet" else ()
    face_method = _face_method(init)
    # Face methods label faces directly: no per-view prediction, no fused votes to refine.
    variants = {} if face_method is not None else check_refinements(refinements or {})
    # Each variant of this protocol's networks is scored and filed under its own method name.
    segment_of = {method: config.segment} | {
        f"{method}+{name}": replace(config.segment, **changes) for name, changes in variants.items()
    }
    # The label priors the variants mix in, by how they carry labels (built once per run).
    prior_keys = (
        set()
        if face_method is not None
        else {key for seg in segment_of.values() if (key := prior_key(seg)) is not None}
    )
    if face_method is None and config.finetune.pseudo_shapes:
        prior_keys.add((NEAREST_PRIOR, "off"))  # self-training's labeller: the pair's lookup
    start = time.perf_counter()
    per_run: dict[str, list[dict]] = {name: [] for name in segment_of}
    for run, labelled in enumerate(labelled_sets):
        run_seed = seed + run
        tag = f"{_setting_tag(method, k, views_per_shape)}_run{run}"
        face_run = FaceRun(
            config=config,
            source=source,
            labelled_shapes=list(labelled),
            unlabelled_shapes=list(train_shapes),
            num_classes=len(names),
            views_per_shape=views_per_shape,
            seed=run_seed,
            exclude_classes=exclude,
            init=str(init),
            folder=out / tag,
            progress=progress,
        )
        priors = _run_priors(prior_keys, face_run)
        evaluators = {
            name: SegmentationEvaluator(names, convention=convention, weighting=weighting, seed=seed)
            for name in segment_of
        }
        pixel_gt, pixel_pred = [], []
        predictions: dict[str, dict[str, ShapePrediction]] = {name: {} for name in segment_of}
        checkpoint = None
        chosen_step = None  # the step held-out views chose, when they did
        if face_method is not None:
            spec = FACE_METHODS.get(face_method)
            run_settings = {
                "dataset": source.dataset.spec,
                "labelled_shapes": labelled,
                "unlabelled_shapes": list(train_shapes),
                "seed": run_seed,
                "training": training_settings(config, init, views_per_shape),
            }
            # A trained face method's run folder is a stage, as a fine-tuning run's is.
            if spec.learned:
                open_stage(out / tag, run_settings)
            predictor = spec.build(face_run)
            if spec.learned:
                finish_stage(out / tag, run_settings, {})
            for shape_id in test_shapes:
                mesh = source.mesh(shape_id)
                face_labels, probs = predictor.predict(mesh)
                evaluators[method].process(mesh, mesh.face_labels, face_labels, shape_id=shape_id)
                predictions[method][shape_id] = ShapePrediction(face_labels, probs.max(axis=1))
        else:
            run_config = replace(
                config, finetune=replace(config.finetune, seed=run_seed, views_per_shape=views_per_shape)
            )
            # Each run's folder is a stage: a folder left by other settings is emptied rather than
            # resumed; one written before runs were recorded is resumed as before.
            run_settings = {
                "dataset": source.dataset.spec,
                "labelled_shapes": labelled,
                "unlabelled_shapes": list(train_shapes),
                "training": training_settings(run_config, init),
            }
            restate_record(out / tag, run_settings, _run_settings_read)
            open_stage(out / tag, run_settings, adopt_unrecorded=True)
            result = finetune(
                run_config,
                dataset,
                out / tag,
                labelled_shapes=labelled,
                init=init,
                unlabelled_shapes=list(train_shapes),
                progress=progress,
                pseudo_labeller=(
                    shape_labeller(priors[NEAREST_PRIOR, "off"].segmenter, source.mesh)
                    if config.finetune.pseudo_shapes
                    else None
                ),
            )
            # The network held-out views chose (best.pt), else the last one.
            checkpoint = Path(result.model_checkpoint).relative_to(out).as_posix()
            chosen_step = result.best_step
            finish_stage(
                out / tag,
                run_settings,
                {"checkpoint": checkpoint, "step": result.step, "chosen_step": chosen_step},
            )
            segmenter = Segmenter.from_checkpoint(result.model_checkpoint, exclude_classes=exclude)
            # The segment settings of this protocol (test-time views, prior, smoothing), not the
            # fine-tuning run's saved ones, so that one network can be scored several ways.
            segmenter.config = replace(segmenter.config, segment=config.segment, transfer=config.transfer)
            for shape_id in test_shapes:
                mesh = source.mesh(shape_id)
                seg = segmenter.segment(
                    mesh, keep_views=True, normalize=False, transfer=priors.get(prior_key(config.segment))
                )
                others = {name: segment for name, segment in segment_of.items() if name != method}
                fusions = {method: seg.fusion, **score_variants(segmenter, seg, others, priors, exclude)}
                for name in segment_of:
                    fusion = fusions[name]
                    evaluators[name].process(mesh, mesh.face_labels, fusion.face_labels, shape_id=shape_id)
                    predictions[name][shape_id] = ShapePrediction(fusion.face_labels, fusion.face_confidence)
                for view, pred in zip(seg.views, seg.view_predictions, strict=True):
                    gt = view.face_labels(mesh.face_labels)
                    keep = view.mask & (gt >= 0)
                    pixel_gt.append(gt[keep])
                    pixel_pred.append(pred[keep])
        # No per-view prediction without a network; the refinements act on the mesh, not the views.
        pixel_score = (
            None
            if face_method is not None
            else float(
                pixel_miou(
                    np.concatenate(pixel_gt),
                    np.concatenate(pixel_pred),
                    len(names),
                    partnet=convention == "partnet",
                )
            )
        )
        for name in segment_of:
            scores = evaluators[name].evaluate()
            fused = scores["instance_miou"] if convention == "shapenet" else scores["part_miou"]
            # Saved so that reports reuse the labels scored here instead of segmenting again.
            filename = predictions_file(None if name == method else name.split("+", 1)[1])
            predictions_path = save_predictions(out / tag / filename, predictions[name])
            per_run[name].append(
                {
                    "run": run,
                    "labelled_shapes": labelled,
                    "checkpoint": checkpoint,
                    **({"chosen_step": chosen_step} if chosen_step is not None else {}),
                    "predictions": predictions_path.relative_to(out).as_posix(),
                    "part_miou": float(scores["part_miou"]),
                    "shape_miou": float(scores["shape_miou"]),
                    "fused_miou": float(fused),
                    "pixel_miou_2d": pixel_score,
                    "part_iou": scores["part_iou"],
                    "per_shape": {shape_id: float(v) for shape_id, v in scores["per_shape"].items()},
                }
            )
    wall_s = round(time.perf_counter() - start, 1)
    summaries = {}
    # What decided the networks and their lookup: the same for every variant's file.
    training = training_settings(config, init, views_per_shape)
    lookup = lookup_settings(config, init, variants)
    # The variants first: the plain method's results file marks the setting finished.
    for name in [*list(segment_of)[1:], method]:
        runs_of = per_run[name]
        summary = {
            "dataset": source.dataset.spec,
            "category": category,
            "preset": config.preset,
            "method": name,
            "init": str(init),
            "k": k,
            "v": views_per_shape or None,
            "runs": runs,
            "seed": seed,
            "repeated_draws": repeated_draws(labelled_sets),
            "segment": dataclasses.asdict(segment_of[name]),
            "training": training,
            "lookup": lookup,
            "refinements": {f"{method}+{n}": dict(c) for n, c in variants.items()} if name == method else {},
            "convention": convention,
            "weighting": weighting,
            "label_names": list(names),
            "train_shapes": list(train_shapes),
            "test_shapes": list(test_shapes),
            "wall_s": wall_s,
            "part_miou": _mean_std([r["part_miou"] for r in runs_of]),
            "shape_miou": _mean_std([r["shape_miou"] for r in runs_of]),
            "fused_miou": _mean_std([r["fused_miou"] for r in runs_of]),
            "pixel_miou_2d": _mean_std([r["pixel_miou_2d"] for r in runs_of]),
            "per_run": runs_of,
        }
        _write_results(
            out / f"results_{_setting_tag(name, k, views_per_shape)}", summary, format_fewshot(summary)
        )
        summaries[name] = summary
    # Only now: a setting interrupted before its results are written resumes from full checkpoints.
    for record in per_run[method]:
        if record["checkpoint"] is not None:
            path = out / record["checkpoint"]
            prune_checkpoints(path.parent, keep_checkpoints, keep_best=path.name == "best.pt")
    return summaries[method]


def _write_results(stem: Path, record: dict, table: str) -> None:
    """``stem.json`` (the record) and ``stem.md`` (its table), each written atomically."""
    atomic_write_text(stem.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), table)


def _pm(stats: dict) -> str:
    """``mean ± std`` of a fraction, in percent (``n/a`` where not measured)."""
    if stats.get("mean") is None:
        return "n/a"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def _title(record: dict) -> str:
    v = record["v"]
    return f"# Few-shot: {record['method']}, k = {record['k']}" + (
        f", {v} labelled views per shape" if v else ""
    )


def format_fewshot(summary: dict) -> str:
    """A markdown table of a protocol's results (mean ± std over runs, in %)."""

    def pm(key: str) -> str:
        return _pm(summary[key])

    lines = [
        _title(summary),
        "",
        f"Dataset `{summary['dataset']}`, preset `{summary['preset']}`, {summary['runs']} runs, "
        f"{summary['convention']} rules, {summary['weighting']} weighting, "
        f"{len(summary['test_shapes'])} test shapes; {summary['wall_s']:.0f} s.",
        _draws_line(summary),
        "",
        "| fused 3D part mIoU | fused 3D shape mIoU | per-view 2D pixel mIoU |",
        "| ---: | ---: | ---: |",
        f"| {pm('part_miou')} | {pm('shape_miou')} | {pm('pixel_miou_2d')} |",
        "",
        "| part | " + " | ".join(f"run {r['run']}" for r in summary["per_run"]) + " |",
        "| --- |" + " ---: |" * len(summary["per_run"]),
    ]
    for name in summary["label_names"]:
        cells = []
        for r in summary["per_run"]:
            value = r["part_iou"].get(name)
            cells.append("n/a" if value is None or value != value else f"{100 * value:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _draws_line(summary: dict) -> str:
    """Which runs had to repeat an earlier run's labelled set (their spread is training noise)."""
    repeated = summary.get("repeated_draws") or []
    if not repeated:
        return f"Every run drew its own labelled set ({summary['runs']} different sets)."
    runs = ", ".join(str(r) for r in repeated)
    return f"Runs {runs} repeat an earlier run's labelled set (no other set covers as many labels)."


def _setting_tag(method: str, k: int, views_per_shape: int) -> str:
    return f"{method}_k{k}" + (f"_v{views_per_shape}" if views_per_shape else "")


def finished_fewshot(
    out: str | Path,
    *,
    method: str,
    k: int,
    views_per_shape: int,
    runs: int,
    train_shapes: Sequence[str],
    test_shapes: Sequence[str],
    segment: Mapping[str, object] | None = None,
    training: Mapping[str, object] | None = None,
    seed: int | None = None,
    convention: str | None = None,
    weighting: str | None = None,
    lookup: Mapping[str, object] | None = None,
) -> dict | None:
    """The summary :func:`run_fewshot` wrote in ``out`` for this setting, if it matches; else None.

    A results file is the finished record of its setting (see
    :mod:`mvdecor.protocols.stages`). ``segment`` (the segment settings as a
    dict), ``training`` (:func:`training_settings`), ``seed``, ``convention``,
    ``weighting`` and ``lookup`` (:func:`lookup_settings`), when given, must
    match too; a results file written before one of them was recorded matches
    any value of it.
    """
    done = Path(out) / f"results_{_setting_tag(method, k, views_per_shape)}.json"
    if not done.is_file():
        return None
    previous = json.loads(done.read_text())

    def agrees(key: str, wanted: object) -> bool:
        if wanted is None or key not in previous:
            return True
        return same_settings({key: previous[key]}, {key: wanted})

    same = (
        previous.get("runs") == runs
        and previous.get("train_shapes") == list(train_shapes)
        and previous.get("test_shapes") == list(test_shapes)
        and agrees("segment", None if segment is None else dict(segment))
        and agrees("seed", seed)
        and agrees("convention", convention)
        and agrees("weighting", weighting)
        and agrees("lookup", None if lookup is None else dict(lookup))
        and (
            training is None
            or previous.get("training") is None
            or _same_training(previous["training"], training)
        )
    )
    return previous if same else None


def _same_training(recorded: Mapping[str, object], training: Mapping[str, object]) -> bool:
    """Whether recorded training settings are ``training``'s, read the way older records wrote them."""
    # Records written before runs recorded only what their method reads hold every entry.
    recorded, training = _settings_read(json_safe(recorded)), _settings_read(json_safe(training))
    # Records written before a checkpoint was identified by what it holds name its path alone.
    if isinstance(recorded.get("init"), str) and isinstance(training.get("init"), dict):
        training = {**training, "init": training["init"]["checkpoint"]}

    def without_run_place(settings: dict) -> dict:
        return {
            key: {k: v for k, v in value.items() if k not in RUN_PLACE_KEYS}
            if isinstance(value, dict)
            else value
            for key, value in settings.items()
        }

    training = without_new_defaults(recorded, training, SETTINGS_DEFAULTS["training"])
    if isinstance(recorded.get("init"), dict):  # the checkpoint's own sections hold no run-place keys
        return recorded == training
    return without_run_place(recorded) == without_run_place(training)


def training_settings(config: Config, init: str | Path, views_per_shape: int = 0) -> dict:
    """What decides a few-shot run's networks: the initialisation (a checkpoint by what it holds,
    :func:`~mvdecor.protocols.stages.init_identity`) and the model, render and fine-tuning
    settings (not where or how fast they run: device and data-loader workers); for a face
    method, the sections it names (:attr:`~mvdecor.protocols.methods.FaceMethod.sections`),
    and with labelled views (``views_per_shape > 0``) the render settings, whose cameras
    decide what those views label."""
    face_method = _face_method(init)
    if face_method is None:
        return network_settings(config, init)
    sections = FACE_METHODS.get(face_method).sections
    if views_per_shape > 0 and "render" not in sections:
        sections = (*sections, "render")
    return _settings_read({"init": init_identity(init), **config_sections(config, sections)})


def lookup_settings(
    config: Config, init: str | Path, refinements: Mapping[str, Mapping[str, object]] | None = None
) -> dict | None:
    """The settings of the lookup a 2D network's results depend on besides the network's own, or None.

    The pair's vote (``segment.prior_method: nearest``, in ``config`` or in a refinement
    variant) and self-training (``finetune.pseudo_shapes``) read the lookup of the run's
    initial network, made with the ``nearest_*`` settings that :func:`training_settings`
    leaves out of a trained run's; a finished setting must match them too.
    """
    if _face_method(init) is not None:
        return None
    segments = [config.segment, *(replace(config.segment, **c) for c in (refinements or {}).values())]
    uses_lookup = config.finetune.pseudo_shapes > 0 or any(
        (key := prior_key(segment)) is not None and key[0] == NEAREST_PRIOR for segment in segments
    )
    if not uses_lookup:
        return None
    return finetune_settings_read(config_sections(nearest_prior_config(config), ("finetune",))["finetune"])


def _settings_read(training: dict) -> dict:
    """Training settings without the ``finetune`` entries the run's method never reads."""
    if isinstance(training.get("finetune"), dict):
        return {**training, "finetune": finetune_settings_read(training["finetune"])}
    return training


def _run_settings_read(settings: dict) -> dict:
    """A run's stage settings, their ``training`` as :func:`_settings_read` gives them."""
    if isinstance(settings.get("training"), dict):
        return {**settings, "training": _settings_read(settings["training"])}
    return settings


def _run_priors(keys: set[tuple[str, str]], run: FaceRun) -> dict[tuple[str, str], object]:
    """The label prior of each ``(prior_method, transfer_vote)`` key for one run, each built once.
    The run's ``nearest`` lookup is loaded once and shared: the pair, every transfer vote beside
    it and self-training's pseudo-labeller (``finetune.pseudo_shapes``) use the same one."""
    lookup = label_prior(NEAREST_PRIOR, run) if any(method == NEAREST_PRIOR for method, _ in keys) else None
    return {(method, vote): label_prior(method, run, vote, lookup=lookup) for method, vote in sorted(keys)}


def _face_method(init: str | Path) -> str | None:
    """The registered face method ``init`` starts, or None for a 2D network (or no checkpoint yet)."""
    if str(init) in FACE_METHODS:
        return str(init)
    if str(init) in ("scratch", "imagenet") or not Path(init).is_file():
        return None
    try:
        kind = checkpoint_method(init)
    except CheckpointError:  # the stage that reads it fails with the reason
        return None
    return kind if kind in FACE_METHODS else None


def cached_fewshot(config: Config, out: str | Path, **kwargs: object) -> dict | None:
    """The results :func:`run_fewshot` would return for these arguments, if ``out`` holds them; else None.

    Keyword arguments are those of :func:`run_fewshot` (``method`` must be
    given); only those that decide the results are compared. Finished only if
    every refinement variant asked for was scored too.
    """
    previous = finished_fewshot(
        out,
        method=kwargs["method"],
        k=kwargs["k"],
        views_per_shape=kwargs.get("views_per_shape", 0),
        runs=kwargs.get("runs", 5),
        train_shapes=kwargs["train_shapes"],
        test_shapes=kwargs["test_shapes"],
        segment=dataclasses.asdict(config.segment),
        training=training_settings(
            config, kwargs.get("init", "scratch"), int(kwargs.get("views_per_shape", 0))
        ),
        seed=kwargs.get("seed", 0),
        convention=kwargs.get("convention", "shapenet"),
        weighting=kwargs.get("weighting", "area"),
        lookup=lookup_settings(config, kwargs.get("init", "scratch"), kwargs.get("refinements")),
    )
    wanted = {
        f"{kwargs['method']}+{n}": dict(c)
        for n, c in check_refinements(kwargs.get("refinements") or {}).items()
    }
    if previous is not None and all(previous.get("refinements", {}).get(n) == c for n, c in wanted.items()):
        return previous
    return None


def run_fewshot_cached(
    config: Config, dataset: str, out: str | Path, *, category: str | None = None, **kwargs: object
) -> dict:
    """:func:`run_fewshot`, unless :func:`cached_fewshot` finds its results in ``out`` already.

    ``category`` is recorded in the summary. Keyword arguments are those of
    :func:`run_fewshot`; ``method`` must be given.
    """
    previous = cached_fewshot(config, out, **kwargs)
    if previous is not None:
        return previous
    return run_fewshot(config, dataset, out, category=category, **kwargs)


def run_fewshot_split(
    config: Config,
    dataset: str,
    out: str | Path,
    split: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    k: int,
    views_per_shape: int = 0,
    runs: int = 5,
    init: str | Path | Mapping[str, str | Path] = "scratch",
    method: str | None = None,
    categories: Sequence[str] | None = None,
    convention: str = "shapenet",
    weighting: str = "area",
    seed: int = 0,
    progress: bool = True,
    keep_checkpoints: str = "last",
) -> dict:
    """:func:`run_fewshot` for every category of ``split``; per-category and mean results.

    Parameters
    ----------
    split : ``{category: {"train": ids, "test": ids}}`` (see :mod:`mvdecor.data.splits`)
    init : one initialisation for all categories, or ``{category: init}``
    categories : run only these categories of the split (default all)
    Other parameters as for :func:`run_fewshot`.

    Returns
    -------
    dict
        ``{"dataset", "preset", "method", "k", "v", "runs", "convention",
        "weighting", "wall_s", "per_category": {category: run_fewshot's summary},
        "mean": {"part_miou", "shape_miou", "fused_miou", "pixel_miou_2d"}}``:
        each ``mean`` value is the mean over categories of the per-category
        means. Written to ``OUT/results_<tag>.json`` and ``.md``; each category's
        runs live in ``OUT/<category>/`` and a category whose results file
        already exists with the same shapes and runs is read back, not re-run.
    """
    out = Path(out)
    names = list(categories) if categories else list(split)
    missing = [c for c in names if c not in split]
    if missing:
        raise ConfigError(None, f"categories {missing} are not in the split (it has {', '.join(split)})")
    if method is None:
        method = method_of_init(
            init if not isinstance(init, Mapping) else next(iter(init.values()), "scratch")
        )
    tag = _setting_tag(method, k, views_per_shape)
    start = time.perf_counter()
    per_category = {}
    for category in names:
        entry = split[category]
        cat_init = init[category] if isinstance(init, Mapping) else init
        per_category[category] = run_fewshot_cached(
            config,
            dataset,
            out / category,
            train_shapes=list(entry["train"]),
            test_shapes=list(entry["test"]),
            k=k,
            views_per_shape=views_per_shape,
            runs=runs,
            init=cat_init,
            method=method,
            convention=convention,
            weighting=weighting,
            seed=seed,
            progress=progress,
            category=category,
            keep_checkpoints=keep_checkpoints,
        )
    keys = ("part_miou", "shape_miou", "fused_miou", "pixel_miou_2d")
    combined = {
        "dataset": next(iter(per_category.values()))["dataset"] if per_category else dataset,
        "preset": config.preset,
        "method": method,
        "k": k,
        "v": views_per_shape or None,
        "runs": runs,
        "convention": convention,
        "weighting": weighting,
        "wall_s": round(time.perf_counter() - start, 1),
        "per_category": per_category,
        "mean": {key: _mean_over([s[key]["mean"] for s in per_category.values()]) for key in keys},
    }
    _write_results(out / f"results_{tag}", combined, format_fewshot_split(combined))
    return combined


def _mean_over(values: Sequence[float | None]) -> float | None:
    """Mean over categories; ``None`` when any category has no value (not measured)."""
    return None if any(v is None for v in values) else float(np.mean(values))


def format_fewshot_split(combined: dict) -> str:
    """A markdown table: one row per category and the mean (mean ± std over runs, in %)."""

    pm = _pm
    lines = [
        _title(combined),
        "",
        f"Dataset `{combined['dataset']}`, preset `{combined['preset']}`, {combined['runs']} runs per category, "
        f"{combined['convention']} rules, {combined['weighting']} weighting; {combined['wall_s']:.0f} s.",
        "",
        "| category | test shapes | fused 3D part mIoU | fused 3D shape mIoU | per-view 2D pixel mIoU |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for category, s in combined["per_category"].items():
        lines.append(
            f"| {category} | {len(s['test_shapes'])} | {pm(s['part_miou'])} | {pm(s['shape_miou'])} "
            f"| {pm(s['pixel_miou_2d'])} |"
        )
    mean = combined["mean"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"

    lines.append(
        f"| **mean** | | {pct(mean['part_miou'])} | {pct(mean['shape_miou'])} "
        f"| {pct(mean['pixel_miou_2d'])} |"
    )
    return "\n".join(lines) + "\n"
