"""Few-shot fine-tuning: a segmentation head on the embedding network (paper section 3.2).

:func:`finetune` trains a :class:`~mvdecor.models.embedding.SegmentationNet`
with cross-entropy over the foreground pixels of labelled views (a pixel's
label is the label of the face it sees, or a user's label image), plus
``lambda * InfoNCE`` on view pairs of unlabelled shapes as a regulariser
(``finetune.class_balance`` weighs the classes by their pixel frequency). It
starts from a pre-trained embedding checkpoint, from scratch, or from a
torchvision-layout ImageNet ResNet file. The run folder mirrors pre-training's
(``config.yaml``, ``run.json``, ``metrics.csv``, ``tensorboard/``,
``checkpoints/last.pt``, ``report.html``), resumes the same way, and its checkpoints carry the
label names, so ``mvdecor segment --model RUN/checkpoints/last.pt`` needs
nothing else.

Supervision settings:

- k labelled shapes with all their views (``views_per_shape = 0``);
- k shapes with only ``v`` labelled views each (``views_per_shape = v``);
- a user's own label images for some views of a mesh (PNG, one class index per
  pixel, 255 = unlabelled), for views rendered with the run's cameras (the
  views ``mvdecor views`` writes).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mvdecor.config import PACKAGED_IMAGENET, Config, FinetuneConfig, without_self_pairing
from mvdecor.errors import ConfigError
from mvdecor.fileio import remove_stale_temporaries
from mvdecor.models.checkpoints import build_model, load_embedding
from mvdecor.models.checkpoints import check_embedding_checkpoint as check_embedding_checkpoint
from mvdecor.models.checkpoints import load_segmentation_model as load_segmentation_model
from mvdecor.models.checkpoints import summarize_state_dict_error as summarize_state_dict_error
from mvdecor.models.embedding import EmbeddingNet, SegmentationNet
from mvdecor.models.inputs import (
    ChannelStats,
    channel_count,
    input_channel_positions,
    parse_modalities,
)
from mvdecor.models.losses import class_balance_weights, dense_info_nce
from mvdecor.models.nearest import (
    NearestLabelHead,
    bank_index,
    labelled_pixel_embeddings,
    leave_one_shape_out_scores,
    pool_by_group,
    position_combine,
)
from mvdecor.train.checkpoint import NETWORK_ENTRIES, load_checkpoint, save_checkpoint
from mvdecor.train.data import ViewPairDataset, ViewSource, collate_pairs, compute_channel_stats
from mvdecor.train.distributed import resolve_device
from mvdecor.train.engine import (
    StepBatchSampler,
    make_grad_scaler,
    optimizer_step,
    restore_training_state,
    train_steps,
    training_state,
)
from mvdecor.train.heldout import held_out_miou, hold_out_views
from mvdecor.train.labelled import (
    LabelledView,
    LabelledViewDataset,
    collate_views,
    label_vocabulary,
    select_labelled_views,
    spread_view_labels,
)
from mvdecor.train.logs import MetricLogger
from mvdecor.train.precision import autocast, resolve_precision


@dataclass
class FinetuneResult:
    """What a fine-tuning run left.

    Attributes
    ----------
    run_dir : the run folder
    step : the step training ended at (before ``iterations`` when held-out
        validation stopped it)
    last_checkpoint : ``checkpoints/last.pt``, the state to resume from
    label_names : the classes, in the network's output order
    train_loss : the last step's cross-entropy (NaN when no step ran in this call)
    model_checkpoint : the network to segment with: ``checkpoints/best.pt`` when
        held-out views chose it (``finetune.val_views > 0``), else ``last_checkpoint``
    best_step, best_val_miou : the chosen network's step and held-out pixel mIoU
        (None without held-out views)
    """

    run_dir: Path
    step: int
    last_checkpoint: Path
    label_names: tuple[str, ...]
    train_loss: float
    model_checkpoint: Path | None = None
    best_step: int | None = None
    best_val_miou: float | None = None

    def __post_init__(self) -> None:
        if self.model_checkpoint is None:
            self.model_checkpoint = self.last_checkpoint


def _initial_embedding(
    config: Config, init: str | Path, device: torch.device
) -> tuple[EmbeddingNet, ChannelStats | None, Config]:
    """``scratch``, ``imagenet`` (``config.model.imagenet_checkpoint``) or a pre-training checkpoint.

    ``config.finetune.add_modalities`` are added to the inputs: from the start for
    ``scratch`` and ``imagenet``, by :meth:`EmbeddingNet.widen_inputs` for a
    pre-trained network (whose checkpoint otherwise decides the architecture and
    inputs). The returned statistics cover the checkpoint's inputs only (None
    for the others); :func:`finetune` completes them.
    """
    added = tuple(config.finetune.add_modalities)
    if str(init) in ("scratch", "imagenet") and added:
        modalities = parse_modalities((*config.model.modalities, *added))
        config = replace(config, model=replace(config.model, modalities=modalities))
    if str(init) == "scratch":
        torch.manual_seed(config.finetune.seed)
        return build_model(replace(config, model=replace(config.model, imagenet_checkpoint=""))), None, config
    if str(init) == "imagenet":
        if not config.model.imagenet_checkpoint and config.model.backbone.startswith("efficientnet"):
            # Its weights come with a package installed with mvdecor, not a file the user supplies.
            config = replace(config, model=replace(config.model, imagenet_checkpoint=PACKAGED_IMAGENET))
        if not config.model.imagenet_checkpoint:
            raise ConfigError(
                None,
                "init 'imagenet' needs model.imagenet_checkpoint (a torchvision ResNet .pth), or the "
                "efficientnet_lite0 backbone with the packaged weights",
            )
        torch.manual_seed(config.finetune.seed)
        return build_model(config), None, config
    check_embedding_checkpoint(init)
    embedding, stats, saved = load_embedding(init, device)  # a key mismatch is summarised there
    # The checkpoint decides the architecture and inputs.
    model_config = saved.model
    if added:
        modalities = parse_modalities((*model_config.modalities, *added))
        embedding.widen_inputs(
            input_channel_positions(model_config.modalities, modalities), channel_count(modalities)
        )
        model_config = replace(model_config, modalities=modalities)
    return embedding, stats, replace(config, model=model_config)


def _complete_stats(
    stats: ChannelStats, source: ViewSource, shape_ids: Sequence[str], modalities: tuple[str, ...], seed: int
) -> ChannelStats:
    """``stats`` (of a pre-trained network's inputs) extended to ``modalities``.

    The pre-trained channels keep their own statistics, so the network sees its
    inputs as in pre-training; the added channels' are measured on ``shape_ids``.
    """
    if tuple(stats.modalities) == tuple(modalities):
        return stats
    fresh = compute_channel_stats(source, shape_ids, modalities, seed=seed)
    mean, std = fresh.mean.copy(), fresh.std.copy()
    positions = input_channel_positions(stats.modalities, modalities)
    mean[positions], std[positions] = stats.mean, stats.std
    return ChannelStats(mean, std, modalities)


def finetune(
    config: Config,
    dataset: str,
    run_dir: str | Path,
    *,
    labelled_shapes: Sequence[str],
    init: str | Path = "scratch",
    unlabelled_shapes: Sequence[str] | None = None,
    label_images: dict[tuple[str, int], Path] | None = None,
    store: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    report: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    pseudo_labeller: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = None,
) -> FinetuneResult:
    """Fine-tune on a few labelled shapes (or labelled views) of ``dataset``.

    Parameters
    ----------
    config : ``config.finetune`` drives training; ``config.render`` the views
    dataset : dataset spec or folder
    run_dir : the run folder (resumed from ``checkpoints/last.pt`` when present)
    labelled_shapes : shape ids whose face labels supervise (all their views, or
        ``config.finetune.views_per_shape`` of them)
    init : ``"scratch"``, ``"imagenet"``, or a pre-training checkpoint path
    unlabelled_shapes : shapes for the InfoNCE regulariser (default: all shapes)
    label_images : ``{(shape_id, view_index): png}``: supervise these views with
        the user's label images instead of face labels
    store : a render store of ``dataset`` made with ``config.render``
    stop_after : stop (with a checkpoint) after this many steps of this call
    report : write ``RUN/report.html`` and ``RUN/pictures/curves.png`` when the
        call ends (see :func:`mvdecor.viz.run_reports.write_training_report`)
    should_stop : asked after every step; True stops the run with a checkpoint, as
        Ctrl-C does, and raises :class:`~mvdecor.train.engine.TrainingCancelled`
    on_step : called with ``(step, total)`` after every step (a caller's own progress)
    pseudo_labeller : with ``finetune.pseudo_shapes > 0``: ``shape_id -> (face_labels (F,)
        int64, face_confidence (F,) float)`` for an unlabelled shape of ``dataset``
        (:func:`pseudo_face_labels` keeps its most confident faces); required then
    """
    device = resolve_device(config.finetune.device)
    # "auto" becomes what this device runs, so config.yaml and the checkpoint say which.
    cfg = replace(config.finetune, precision=resolve_precision(config.finetune.precision, device))
    # A nearest-faces run saves no pairing with itself (see without_self_pairing).
    config = without_self_pairing(replace(config, finetune=cfg))
    run_dir = Path(run_dir)
    last_path = run_dir / "checkpoints" / "last.pt"
    remove_stale_temporaries(last_path.parent)
    saved = load_checkpoint(last_path) if resume and last_path.is_file() else None

    embedding, stats, config = _initial_embedding(config, init, device)
    source = ViewSource.from_config(dataset, config, store=store)
    known = set(source.shape_ids())
    missing = sorted(set(labelled_shapes) - known)
    if missing:
        raise ConfigError(None, f"labelled shapes not in {dataset}: {missing[:5]}")
    if label_images:
        items = [LabelledView(s, v, Path(p)) for (s, v), p in sorted(label_images.items())]
        label_shapes: Sequence[str] = []
        names = tuple(source.dataset.label_names)
        if not names:
            raise ConfigError(None, "label images need label names (labels.json beside the meshes)")
    else:
        items = select_labelled_views(labelled_shapes, config.render.num_views, cfg.views_per_shape, cfg.seed)
        label_shapes = labelled_shapes
        names = label_vocabulary(source, label_shapes)
    num_classes = len(names)
    items, val_items = hold_out_views(items, cfg.val_views, cfg.seed, lambda item: item.shape_id)
    if saved is not None:
        if list(saved.get("label_names", [])) != list(names):
            raise ConfigError(run_dir, "holds a fine-tuning run with other labels; use a new run folder")
        stats = ChannelStats.from_dict(saved["channel_stats"])
    if stats is None:
        stats = compute_channel_stats(
            source, sorted({i.shape_id for i in items}), config.model.modalities, seed=cfg.seed
        )
    elif stats.modalities:  # old statistics without modalities are taken as they are
        stats = _complete_stats(
            stats,
            source,
            sorted({i.shape_id for i in items}),
            parse_modalities(config.model.modalities),
            cfg.seed,
        )

    spreads = cfg.spread_labels != "off" and (cfg.views_per_shape > 0 or bool(label_images))
    if cfg.method == "nearest":
        # Nothing to choose a network by: the held-out views join the bank.
        bank_items, spread = [*items, *val_items], {}
        if spreads:
            bank_items, spread = _spread_labels(cfg, source, config, stats, names, bank_items, ())
        return _finetune_nearest(
            config,
            run_dir,
            source,
            embedding,
            stats,
            bank_items,
            names,
            saved,
            device,
            init,
            labelled_shapes,
            report,
            face_labels=spread,
        )
    if saved is not None and saved.get("head") == "nearest":
        raise ConfigError(
            last_path, "holds a labelled-pixel bank (finetune.method nearest); use a new run folder"
        )

    model = SegmentationNet(embedding, num_classes).to(device)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
    optimizer = torch.optim.Adam(
        [
            {"params": list(model.embedding.parameters()), "lr": cfg.lr * cfg.encoder_lr_scale},
            {"params": head_params, "lr": cfg.lr},
        ],
        foreach=True,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    scaler = make_grad_scaler(cfg.precision)
    step = 0
    # Held-out validation: the best mIoU so far, its step, scorings since, and whether it stopped the run.
    validation = {"best_miou": -1.0, "best_step": -1, "since_best": 0, "stopped": False}
    if saved is not None:
        if saved.get("kind") != "segmentation":
            raise ConfigError(last_path, "is not a fine-tuning checkpoint")
        try:
            model.load_state_dict(saved["model"])
        except RuntimeError as exc:
            raise ConfigError(
                last_path,
                f"does not fit this run's network ({summarize_state_dict_error(exc)}); use a new run folder",
            ) from None
        step = int(saved["step"])
        if val_items and isinstance(saved.get("validation"), dict):
            validation.update(saved["validation"])
        if "optimizer" in saved:
            restore_training_state(saved, device, None, optimizer, scheduler, scaler)  # model loaded above
        elif step < cfg.iterations and not validation["stopped"]:
            # Trimmed to the network (keep_checkpoints="weights"): it segments, it cannot train on.
            raise ConfigError(
                last_path,
                f"holds only the network at step {step} (its optimizer state was dropped), so it "
                f"cannot continue to {cfg.iterations} steps; use a new run folder",
            )

    # A finished run, opened again to be scored, trains no more: its shapes are not pseudo-labelled again.
    trains = step < cfg.iterations and not validation["stopped"]
    pseudo_shapes, pseudo_items, pseudo_labels = _pseudo_labelled_views(
        cfg, source, labelled_shapes, unlabelled_shapes, config.render.num_views, pseudo_labeller, trains
    )
    spread: dict[str, np.ndarray] = {}
    labelled_views = len(items)
    if spreads:  # the held-out views stay as labelled, and out of training
        items, spread = _spread_labels(cfg, source, config, stats, names, items, val_items)
    views = LabelledViewDataset(
        source,
        items,
        config.model.modalities,
        stats,
        num_classes,
        cfg.seed,
        cfg.flip_prob,
        pseudo_items=pseudo_items,
        face_labels={**pseudo_labels, **spread},
        pseudo_share=cfg.pseudo_share,
        stretch=cfg.stretch,
        stretch_prob=cfg.stretch_prob,
    )
    class_weights = None
    if cfg.class_balance > 0:
        class_weights = class_balance_weights(torch.from_numpy(views.pixel_counts()), cfg.class_balance)

    unlabelled = list(unlabelled_shapes) if unlabelled_shapes is not None else source.shape_ids()
    _write_run_files(
        run_dir,
        config,
        source,
        init,
        labelled_shapes,
        items,
        names,
        device,
        held_out_views=len(val_items),
        unlabelled_shapes=unlabelled if cfg.ssl_weight > 0 else [],
        **({"pseudo_labelled_shapes": pseudo_shapes} if pseudo_shapes else {}),
        **({"spread_labels": {"from_views": labelled_views}} if spread else {}),
        **({"class_weights": class_weights.tolist()} if class_weights is not None else {}),
    )

    generator = torch.Generator().manual_seed(cfg.seed)
    stop = cfg.iterations if stop_after is None else min(cfg.iterations, step + stop_after)
    if validation["stopped"]:  # held-out validation ended this run: it is finished
        stop = step
    view_loader = DataLoader(
        views,
        batch_sampler=StepBatchSampler(step, stop, cfg.views_per_batch),
        num_workers=cfg.num_workers,
        collate_fn=collate_views,
        generator=generator,
    )
    ssl_iter = None
    if cfg.ssl_weight > 0 and cfg.ssl_pairs_per_batch > 0 and unlabelled:
        pairs = ViewPairDataset(
            source,
            unlabelled,
            config.model.modalities,
            stats,
            config.pretrain.matches_per_pair,
            config.pretrain.overlap_threshold,
            cfg.seed + 7,
        )
        ssl_iter = iter(
            DataLoader(
                pairs,
                batch_sampler=StepBatchSampler(step, stop, cfg.ssl_pairs_per_batch),
                num_workers=cfg.num_workers,
                collate_fn=collate_pairs,
                generator=torch.Generator().manual_seed(cfg.seed + 1),
            )
        )
    if cfg.ssl_mode not in ("sum", "alternate"):
        raise ConfigError(None, f"finetune.ssl_mode must be 'sum' or 'alternate', got {cfg.ssl_mode!r}")

    def payload(at_step: int) -> dict:
        return {
            **training_state(at_step, device, model, optimizer, scheduler, scaler),
            **_network_entries(config, stats, names),
            **({"validation": dict(validation)} if val_items else {}),
        }

    best_path = last_path.parent / "best.pt"
    val_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    if val_items:
        val_batches = list(views.batches(val_items, cfg.views_per_batch))
        val_logger = MetricLogger(run_dir, "val", tensorboard=False, resume_step=step)

    def validate(at_step: int) -> None:
        miou = held_out_miou(model, val_batches, num_classes, device, lambda: autocast(device, cfg.precision))
        if miou > validation["best_miou"]:  # ties keep the earlier, shorter-trained network
            validation.update(best_miou=miou, best_step=at_step, since_best=0)
            network = {key: value for key, value in payload(at_step).items() if key in NETWORK_ENTRIES}
            save_checkpoint(best_path, network)
        else:
            validation["since_best"] += 1
        if cfg.patience and validation["since_best"] >= cfg.patience:
            validation["stopped"] = True
        val_logger.log(at_step, val_miou=miou, best_val_miou=validation["best_miou"])

    ce_loss = torch.nn.CrossEntropyLoss(
        weight=None if class_weights is None else class_weights.to(device), ignore_index=-1
    )

    frozen: bool | None = None  # whether the embedding's parameters are frozen now

    def set_train_mode(warming_up: bool) -> None:
        nonlocal frozen
        model.train()
        if frozen is not warming_up:  # switched once, at the warm-up's end (or a resume past it)
            for param in model.embedding.parameters():
                param.requires_grad_(not warming_up)
            frozen = warming_up
        if warming_up:
            model.embedding.eval()
        elif cfg.freeze_backbone_bn:
            for module in model.embedding.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(batch: tuple[torch.Tensor, torch.Tensor], log: bool) -> tuple[float, dict[str, float]]:
        # The step index decides, so a resumed run warms up exactly as an unbroken one.
        warming_up = step_now < cfg.head_warmup
        set_train_mode(warming_up)
        inputs, labels = batch[0].to(device), batch[1].to(device)
        with autocast(device, cfg.precision):
            logits = model(inputs)
        loss_ce = ce_loss(logits.float(), labels)
        loss_ssl = torch.zeros((), device=device)
        pairs = next(ssl_iter).to(device) if ssl_iter is not None else None
        if warming_up:
            pairs = None  # the regulariser trains the frozen embedding only: nothing to do yet
        if pairs is not None and cfg.ssl_mode == "sum":
            loss_ssl = _ssl_loss(model.embedding, pairs, config, device, cfg.precision)
            optimizer_step(loss_ce + cfg.ssl_weight * loss_ssl, optimizer, scaler)
        else:
            optimizer_step(loss_ce, optimizer, scaler)
            if pairs is not None:  # the authors' alternating second step
                loss_ssl = _ssl_loss(model.embedding, pairs, config, device, cfg.precision)
                optimizer_step(cfg.ssl_weight * loss_ssl, optimizer, scaler)
        scheduler.step()
        if not log:
            return float(loss_ce.detach()), {}
        with torch.no_grad():
            fg = labels >= 0
            acc = float((logits.argmax(1)[fg] == labels[fg]).float().mean()) if fg.any() else math.nan
        return float(loss_ce.detach()), {"loss_ssl": float(loss_ssl.detach()), "pixel_accuracy": acc}

    step_now = step

    def after_step(at_step: int) -> None:
        nonlocal step_now
        step_now = at_step
        if val_items and (at_step % cfg.val_every == 0 or at_step == cfg.iterations):
            validate(at_step)
        if at_step % cfg.checkpoint_every == 0 or validation["stopped"]:
            save_checkpoint(last_path, payload(at_step))

    logger = MetricLogger(run_dir, "metrics", resume_step=step)
    try:
        step, last = train_steps(
            view_loader,
            train_step,
            step=step,
            total=cfg.iterations,
            stop=stop,
            device=device,
            lr=lambda: optimizer.param_groups[1]["lr"],
            logger=logger,
            log_every=cfg.log_every,
            loss_name="loss_ce",
            images_per_step=cfg.views_per_batch,
            after_step=after_step,
            on_interrupt=lambda at_step: save_checkpoint(last_path, payload(at_step)),
            desc="finetune",
            progress=progress,
            should_stop=should_stop,
            on_step=on_step,
            finished=lambda: bool(validation["stopped"]),
        )
    finally:
        logger.close()
        if val_items:
            val_logger.close()
    # A finished run trimmed to its network stays trimmed: rewriting it would store a fresh,
    # never-stepped optimizer state that a later, longer run would take for the real one.
    if saved is None or "optimizer" in saved or step > int(saved["step"]):
        save_checkpoint(last_path, payload(step))
    if report:
        from mvdecor.viz.run_reports import write_training_report

        write_training_report(run_dir)
    if not val_items:
        return FinetuneResult(run_dir, step, last_path, names, last)
    if not best_path.is_file():  # stopped (stop_after, Ctrl-C) before the first scoring
        return FinetuneResult(run_dir, step, last_path, names, last)
    return FinetuneResult(
        run_dir,
        step,
        last_path,
        names,
        last,
        model_checkpoint=best_path,
        best_step=int(validation["best_step"]),
        best_val_miou=float(validation["best_miou"]),
    )


#: Where the nearest labelled faces paired with a fine-tuned network live, inside its run folder.
def pseudo_face_labels(face_labels: np.ndarray, face_confidence: np.ndarray, keep: float) -> np.ndarray:
    """``(F,)`` int64: ``face_labels`` with all but the ``keep`` most confident fraction of the
    labelled faces set to ``-1`` (unlabelled). Ties at the threshold are kept."""
    labels = np.asarray(face_labels, np.int64).copy()
    labelled = labels >= 0
    if keep <= 0 or not labelled.any():
        labels[:] = -1
        return labels
    threshold = np.quantile(np.asarray(face_confidence, np.float64)[labelled], 1.0 - keep)
    labels[np.asarray(face_confidence) < threshold] = -1
    return labels


def _pseudo_labelled_views(
    cfg: FinetuneConfig,
    source: ViewSource,
    labelled_shapes: Sequence[str],
    unlabelled_shapes: Sequence[str] | None,
    num_views: int,
    labeller: Callable[[str], tuple[np.ndarray, np.ndarray]] | None,
    label: bool = True,
) -> tuple[list[str], list[LabelledView], dict[str, np.ndarray]]:
    """Self-training (``finetune.pseudo_shapes``): ``pseudo_shapes`` unlabelled shapes drawn with
    the run's seed, and, when ``label``, every view of them and their faces' pseudo-labels."""
    if cfg.pseudo_shapes <= 0:
        return [], [], {}
    if labeller is None:
        raise ConfigError(
            None,
            "finetune.pseudo_shapes needs a pseudo-labeller (the few-shot protocol gives the nearest "
            "labelled faces of the initial network); set it to 0 here",
        )
    pool = sorted(
        set(unlabelled_shapes if unlabelled_shapes is not None else source.shape_ids()) - set(labelled_shapes)
    )
    rng = np.random.default_rng([cfg.seed, 11])
    chosen = (
        sorted(rng.choice(pool, size=min(cfg.pseudo_shapes, len(pool)), replace=False).tolist())
        if pool
        else []
    )
    if not label:
        return chosen, [], {}
    labels = {}
    for shape_id in chosen:
        face_labels, confidence = labeller(shape_id)
        labels[shape_id] = pseudo_face_labels(face_labels, confidence, cfg.pseudo_keep)
    items = [LabelledView(shape_id, view, None) for shape_id in chosen for view in range(num_views)]
    return chosen, items, labels


def _spread_labels(
    cfg: FinetuneConfig,
    source: ViewSource,
    config: Config,
    stats: ChannelStats,
    names: Sequence[str],
    items: Sequence[LabelledView],
    exclude: Sequence[LabelledView],
) -> tuple[list[LabelledView], dict[str, np.ndarray]]:
    """``finetune.spread_labels``: every view of the labelled shapes but ``exclude``, labelled by
    the faces ``items`` label (:func:`~mvdecor.train.labelled.spread_view_labels`)."""
    reader = LabelledViewDataset(source, items, config.model.modalities, stats, len(names), cfg.seed)
    return spread_view_labels(reader, items, config.render.num_views, cfg.spread_labels == "fill", exclude)


NEAREST_PRIOR_FOLDER = "nearest-prior"


def nearest_prior_run(run_dir: str | Path) -> Path:
    """The run folder of the nearest-faces model paired with the network of ``run_dir``."""
    return Path(run_dir) / NEAREST_PRIOR_FOLDER


def nearest_prior_beside(model: str | Path) -> Path:
    """The nearest-faces model paired with the network ``RUN/checkpoints/*.pt`` (may not exist)."""
    return nearest_prior_run(Path(model).parent.parent) / "checkpoints" / "last.pt"


def wants_nearest_prior(config: Config) -> bool:
    """Whether a run of ``config`` pairs a fine-tuned network with the nearest labelled faces
    (``finetune.method: network``, ``segment.prior_method: nearest``, a prior weight > 0)."""
    seg = config.segment
    return config.finetune.method == "network" and seg.prior_method == "nearest" and seg.transfer_prior > 0


def nearest_prior_config(config: Config) -> Config:
    """The configuration of the nearest labelled faces paired with a network run of ``config``:
    ``finetune.method: nearest`` with the same ``nearest_*`` settings, and without the prior (it
    is the prior): ``segment.prior_method`` reads ``transfer`` and ``transfer_prior`` 0."""
    plain = replace(config.segment, prior_method="transfer", transfer_prior=0.0, transfer_vote="off")
    return replace(
        config, finetune=replace(config.finetune, method="nearest", pseudo_shapes=0), segment=plain
    )


def finetune_nearest_prior(config: Config, dataset: str, run_dir: str | Path, **kwargs) -> FinetuneResult:
    """The nearest labelled faces of the same initial network, labelled shapes and views as the
    network fine-tuned in ``run_dir``, banked in :func:`nearest_prior_run` (seconds).

    ``kwargs`` are :func:`finetune`'s (the network run's own); the bank's configuration is
    :func:`nearest_prior_config`.
    """
    return finetune(nearest_prior_config(config), dataset, nearest_prior_run(run_dir), **kwargs)


def _network_entries(config: Config, stats: ChannelStats, names: Sequence[str]) -> dict:
    """A fine-tuned network's checkpoint entries besides its weights (see ``NETWORK_ENTRIES``)."""
    return {
        "config": config.to_dict(),
        "channel_stats": stats.to_dict(),
        "label_names": list(names),
        "num_classes": len(names),
        "kind": "segmentation",
    }


def _write_run_files(
    run_dir: Path,
    config: Config,
    source: ViewSource,
    init: str | Path,
    labelled_shapes: Sequence[str],
    items: Sequence[LabelledView],
    names: Sequence[str],
    device: torch.device,
    **extra: object,
) -> None:
    """``RUN/config.yaml`` and ``RUN/run.json`` (what was fine-tuned on what; ``extra`` added)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    record = {
        "command": "finetune",
        "dataset": source.dataset.spec,
        "init": str(init),
        "preset": config.preset,
        "labelled_shapes": list(labelled_shapes),
        "labelled_views": len(items),
        **extra,
        "label_names": list(names),
        "device": str(device),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def _finetune_nearest(
    config: Config,
    run_dir: Path,
    source: ViewSource,
    embedding: EmbeddingNet,
    stats: ChannelStats,
    items: Sequence[LabelledView],
    names: tuple[str, ...],
    saved: dict | None,
    device: torch.device,
    init: str | Path,
    labelled_shapes: Sequence[str],
    report: bool,
    face_labels: dict[str, np.ndarray] | None = None,
) -> FinetuneResult:
    """``finetune.method: nearest``: the network and a bank of its labelled pixels, nothing trained.
    ``face_labels``: spread labels of the labelled shapes (:func:`_spread_labels`)."""
    cfg = config.finetune
    last_path = run_dir / "checkpoints" / "last.pt"
    if saved is not None:
        if saved.get("head") != "nearest":
            raise ConfigError(
                last_path, "holds a trained fine-tuning run (finetune.method network); use a new run folder"
            )
        return FinetuneResult(run_dir, 0, last_path, names, math.nan)
    views = LabelledViewDataset(
        source, items, config.model.modalities, stats, len(names), cfg.seed, face_labels=face_labels
    )
    batches = views.batches(items, cfg.views_per_batch)
    features, labels = labelled_pixel_embeddings(embedding.to(device), batches, device)
    pool_faces = cfg.nearest_pooling == "faces"
    if pool_faces:  # each labelled face's pixels share their mean embedding, as a test face's will
        features = pool_by_group(features, views.pixel_faces(items))
    weight: float | tuple[float, ...] = cfg.nearest_position_weight
    choice: dict = {}
    positions = shapes = None
    candidates = sorted(set(cfg.nearest_position_candidates))
    if weight > 0 or candidates:
        positions, shapes = views.pixel_positions(items)
    if candidates and cfg.nearest_position_combine != "choose":  # every candidate's distribution, joined
        weight = tuple(candidates)
    elif candidates and len(set(item.shape_id for item in items)) >= 2:
        scores = leave_one_shape_out_scores(
            features, labels, positions, shapes, candidates, len(names),
            cfg.nearest_neighbours, cfg.nearest_temperature, cfg.nearest_references, seed=cfg.seed,
            class_balance=cfg.nearest_class_balance,
        )  # fmt: skip
        weight = candidates[int(np.argmax(scores))]  # ties: the smallest weight
        choice = {
            "position_weight_scores": {str(w): round(v, 6) for w, v in zip(candidates, scores, strict=True)}
        }
    index = bank_index(len(labels), cfg.nearest_references, cfg.seed, labels, cfg.nearest_class_balance)
    if index is not None:
        features, labels = features[index], labels[index]
        positions = None if positions is None else positions[index]
    head = NearestLabelHead(
        features, labels, len(names), cfg.nearest_neighbours, cfg.nearest_temperature, cfg.nearest_stride,
        positions, weight, pool_faces, position_combine(cfg.nearest_position_combine),
    )  # fmt: skip
    model = SegmentationNet(embedding, len(names), head=head)
    _write_run_files(
        run_dir, config, source, init, labelled_shapes, items, names, device,
        method="nearest", bank_pixels=len(labels), position_weight=weight, **choice,
    )  # fmt: skip
    payload = {
        "model": model.state_dict(),
        "step": 0,
        **_network_entries(config, stats, names),
        "head": "nearest",
        "nearest_position_weight": list(weight) if isinstance(weight, tuple) else weight,
    }
    save_checkpoint(last_path, payload)
    if report:
        from mvdecor.viz.run_reports import write_training_report

        write_training_report(run_dir)
    return FinetuneResult(run_dir, 0, last_path, names, math.nan)


def _ssl_loss(
    embedding: EmbeddingNet, batch, config: Config, device: torch.device, precision: str
) -> torch.Tensor:
    b = len(batch)
    with autocast(device, precision) if device.type == "cuda" else contextlib.nullcontext():
        out = embedding(torch.cat([batch.inputs_a, batch.inputs_b]))
    return dense_info_nce(
        out[:b].float(),
        out[b:].float(),
        batch.index_a,
        batch.index_b,
        batch.valid,
        config.pretrain.temperature,
    )
