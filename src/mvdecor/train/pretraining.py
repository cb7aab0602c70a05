"""What every pre-training method shares: the run, the method registry and the loop.

A method (MvDeCor in :mod:`mvdecor.train.pretrain`, DenseCL in
:mod:`mvdecor.train.densecl`) registers a :class:`PretrainMethod` in
:data:`PRETRAIN_METHODS`: a function that, given the prepared
:class:`PretrainRun` (device, view source, shape split, channel statistics,
the checkpoint to resume from), builds its networks, data and losses as a
:class:`MethodSetup`. :func:`run_pretraining` then does the rest alike for
every method: the Adam optimiser with the plateau schedule, the gradient
scaler, resuming, the step loop of :mod:`mvdecor.train.engine`, validation,
``best.pt``, snapshots and ``last.pt``. :func:`mvdecor.train.pretrain.pretrain`
is the entry point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mvdecor.config import Config, PretrainConfig, upgrade_config_dict
from mvdecor.errors import ConfigError
from mvdecor.fileio import remove_stale_temporaries
from mvdecor.models.embedding import EmbeddingNet
from mvdecor.models.inputs import ChannelStats
from mvdecor.registry import Registry
from mvdecor.train.checkpoint import (
    load_checkpoint,
    prune_snapshots,
    save_checkpoint,
    snapshot_path,
)
from mvdecor.train.data import ViewSource, compute_channel_stats, split_shapes
from mvdecor.train.distributed import (
    DistInfo,
    barrier,
    broadcast_float,
    cleanup,
    init_distributed,
    resolve_device,
)
from mvdecor.train.engine import (
    StepBatchSampler,
    cosine_factor,
    make_grad_scaler,
    optimizer_step,
    restore_training_state,
    train_steps,
    training_state,
)
from mvdecor.train.logs import MetricLogger
from mvdecor.train.precision import autocast, resolve_precision

__all__ = [
    "PRETRAIN_METHODS",
    "MethodSetup",
    "PretrainMethod",
    "PretrainResult",
    "PretrainRun",
    "check_resumable",
    "check_split",
    "prepare_run",
    "run_pretraining",
]


def check_split(split: dict[str, list[str]], known: list[str], dataset: str) -> tuple[list[str], list[str]]:
    """Validate a user's ``{"train": [...], "val": [...]}`` split against the dataset's shape ids."""
    if not isinstance(split, dict) or "train" not in split:
        raise ConfigError(None, 'a split must be a mapping with a "train" list (and optionally "val")')
    train, val = list(split["train"]), list(split.get("val", split.get("test", [])))
    unknown = sorted(set(train + val) - set(known))
    if unknown:
        raise ConfigError(None, f"split names shapes not in {dataset}: {unknown[:5]}")
    if not train:
        raise ConfigError(None, "the split's train list is empty")
    if set(train) & set(val):
        raise ConfigError(None, f"shapes in both train and val: {sorted(set(train) & set(val))[:5]}")
    return sorted(train), sorted(val)


@dataclass
class PretrainResult:
    """Where a run ended."""

    run_dir: Path
    step: int
    best_val_loss: float
    last_checkpoint: Path
    best_checkpoint: Path | None
    train_loss: float


def check_resumable(saved: dict, config: Config, run_dir: Path) -> None:
    """Refuse to resume a run with another method, model or data configuration."""
    now = config.to_dict()
    # Runs written before heads were named all used the paper's head; old key names are read.
    saved = upgrade_config_dict(saved)
    saved = {**saved, "model": {"head": "paper", **saved.get("model", {})}}
    for section in ("model", "render"):
        if saved.get(section) != now[section]:
            raise ConfigError(
                run_dir,
                f"holds a run with another {section} configuration; use a new run folder "
                "or the same configuration to resume",
            )
    saved_pretrain = saved.get("pretrain", {})
    method = config.pretrain.method
    # Runs written before methods were named were all MvDeCor runs.
    saved_method = saved_pretrain.get("method", "mvdecor")
    if saved_method != method:
        raise ConfigError(
            run_dir, f"holds a {saved_method} pre-training run, not {method}; use a new run folder"
        )
    # The schedules keep different states; runs written before the option used the plateau rule.
    saved_schedule = saved_pretrain.get("lr_schedule", "plateau")
    if saved_schedule != config.pretrain.lr_schedule:
        raise ConfigError(
            run_dir,
            f"holds a run with the {saved_schedule} learning-rate schedule, not "
            f"{config.pretrain.lr_schedule}; use a new run folder or the same schedule to resume",
        )
    # One optimiser group or two: the saved optimiser state fits only the same split.
    saved_scale = float(saved_pretrain.get("backbone_lr_scale", 1.0))
    if (saved_scale == 1.0) != (config.pretrain.backbone_lr_scale == 1.0):
        raise ConfigError(
            run_dir,
            f"holds a run with pretrain.backbone_lr_scale {saved_scale:g}, not "
            f"{config.pretrain.backbone_lr_scale:g}; use a new run folder or the same scale to resume",
        )
    if method != "mvdecor" and saved_pretrain.get(method) != now["pretrain"].get(method):
        raise ConfigError(
            run_dir,
            f"holds a run with other pretrain.{method} settings; use a new run folder "
            "or the same configuration to resume",
        )


@dataclass
class PretrainRun:
    """A prepared pre-training run: what every method shares before its own model and data.

    Attributes
    ----------
    config : the run's configuration (with any ``iterations`` override applied)
    run_dir : the run folder
    device, info : where this process trains, and its rank among the processes
    source : the views of the dataset (render store or on the fly)
    train_ids, val_ids : the shapes trained on and held out
    stats : input channel statistics (from the checkpoint when resuming)
    saved : the checkpoint resumed from, or None
    """

    config: Config
    run_dir: Path
    device: torch.device
    info: DistInfo
    source: ViewSource
    train_ids: list[str]
    val_ids: list[str]
    stats: ChannelStats
    saved: dict | None

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def last_path(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / "best.pt"


def prepare_run(
    config: Config,
    dataset: str,
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    resume: bool = True,
    iterations: int | None = None,
    split: dict[str, list[str]] | None = None,
) -> PretrainRun:
    """Device, view source, shape split, channel statistics and the checkpoint to resume from.

    Seeds the global RNG with ``config.pretrain.seed`` (before any model is
    built) and, on rank 0, writes ``RUN/config.yaml`` and ``RUN/run.json``.
    Parameters as for :func:`pretrain`.
    """
    cfg = config.pretrain
    if iterations is not None:
        cfg = replace(cfg, iterations=int(iterations))
        config = replace(config, pretrain=cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if info.enabled and device.type == "cuda":
        device = resolve_device(cfg.device, info.local_rank)
        torch.cuda.set_device(device)
    # "auto" becomes what this device runs, so config.yaml and checkpoints say which.
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, device))
    config = replace(config, pretrain=cfg)
    last_path = run_dir / "checkpoints" / "last.pt"

    torch.manual_seed(cfg.seed)
    source = ViewSource.from_config(
        dataset,
        config,
        store=store,
        cache_dir=None if store else run_dir / "overlaps",
        max_cached_shapes=cfg.cached_shapes,
    )
    radius = source.radius
    if split is not None:
        train_ids, val_ids = check_split(split, source.shape_ids(), dataset)
    else:
        train_ids, val_ids = split_shapes(source.shape_ids(), cfg.val_fraction, cfg.seed)
    if not train_ids:
        raise ConfigError(None, f"dataset {dataset!r} has no shapes")

    saved = None
    if info.is_main:
        remove_stale_temporaries(last_path.parent)
    if resume and last_path.is_file():
        saved = load_checkpoint(last_path)
        check_resumable(saved["config"], config, run_dir)
    if saved is not None:
        stats = ChannelStats.from_dict(saved["channel_stats"])
    else:
        stats = compute_channel_stats(source, train_ids, config.model.modalities, seed=cfg.seed)

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.to_yaml())
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "command": "pretrain",
                    "method": cfg.method,
                    "dataset": source.dataset.spec,
                    "store": str(store) if store else None,
                    "preset": config.preset,
                    "train_shapes": train_ids,
                    "val_shapes": val_ids,
                    "match_radius": radius,
                    "device": str(device),
                    "world_size": info.world_size,
                },
                indent=2,
            )
            + "\n"
        )
    return PretrainRun(config, run_dir, device, info, source, train_ids, val_ids, stats, saved)


@dataclass
class MethodSetup:
    """What a pre-training method builds for :func:`run_pretraining`.

    Attributes
    ----------
    model : the embedding network, saved as every checkpoint's ``model``
    network : the module put in training mode (``model`` itself, or a module holding it)
    parameters : what the optimiser trains
    train_set, collate_fn : the training items (step ``s`` reads items
        ``s * P .. s * P + P - 1``, ``P = pairs_per_batch``) and how a step's items
        become one batch (with a ``.to(device)`` method)
    loss : a batch on the device -> the loss to minimise and extra scalars to
        log (run under the run's autocast precision); the network is the one to
        train, wrapped for several processes where the method allows them
    validation_loss : the validation loss of the current weights (rank 0 only;
        sets the modules' modes itself), or None without validation shapes
    extra_state : entries added to every checkpoint (e.g. a momentum network)
    load_extra_state : reads them back from the checkpoint resumed from
    """

    model: EmbeddingNet
    network: torch.nn.Module
    parameters: Any
    train_set: torch.utils.data.Dataset
    collate_fn: Callable[[list], Any]
    loss: Callable[[Any], tuple[torch.Tensor, dict[str, float]]]
    validation_loss: Callable[[], float] | None = None
    extra_state: Callable[[], dict] = dict
    load_extra_state: Callable[[dict], None] | None = None


@dataclass(frozen=True)
class PretrainMethod:
    """A registered pre-training method.

    Attributes
    ----------
    build : the prepared run -> the method's :class:`MethodSetup`
    check : validates the configuration before anything is written (raises
        :class:`~mvdecor.errors.ConfigError`)
    distributed : whether the method can train in several ``torchrun`` processes
    """

    build: Callable[[PretrainRun], MethodSetup]
    check: Callable[[Config], None] = field(default=lambda config: None)
    distributed: bool = True


def make_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: PretrainConfig) -> Any:
    """The learning-rate schedule ``cfg.lr_schedule`` names, for ``optimizer``.

    ``plateau`` is stepped with each validation loss; ``cosine`` once per
    optimiser step, reaching 0 at ``cfg.iterations``.
    """
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_factor(cfg.iterations))
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )


#: Pre-training methods by name (``config.pretrain.method``).
PRETRAIN_METHODS: Registry[PretrainMethod] = Registry("pre-training method")


def parameter_groups(setup: MethodSetup, cfg: PretrainConfig) -> list[dict]:
    """The optimiser's parameter groups: one at ``lr``, or with ``backbone_lr_scale`` != 1 two.

    The first group (whose rate the logs show) holds everything but the backbone of
    ``setup.model``; the second the backbone, at ``lr * backbone_lr_scale``.
    """
    parameters = list(setup.parameters)
    if cfg.backbone_lr_scale == 1.0:
        return [{"params": parameters}]
    in_backbone = {id(p) for p in setup.model.backbone.parameters()}
    return [
        {"params": [p for p in parameters if id(p) not in in_backbone]},
        {
            "params": [p for p in parameters if id(p) in in_backbone],
            "lr": cfg.lr * cfg.backbone_lr_scale,
        },
    ]


def run_pretraining(
    run: PretrainRun,
    setup: MethodSetup,
    *,
    stop_after: int | None = None,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> PretrainResult:
    """Train a method's setup: the loop every pre-training method shares.

    Builds Adam (``pretrain.lr``) with its schedule (``pretrain.lr_schedule``) and the gradient
    scaler, resumes from ``run.saved``, then draws step ``s``'s items ``s * P
    .. s * P + P - 1`` of ``setup.train_set`` (``P = pairs_per_batch``, each
    item two images), minimises ``setup.loss``, logs ``RUN/metrics.csv`` (loss,
    the method's extra scalars, lr, throughput, data wait), validates every
    ``val_every`` steps into ``RUN/val.csv`` (the plateau scheduler follows the
    validation loss if that is the schedule; ``best.pt`` keeps its lowest), and writes checkpoints
    (``last.pt``, ``step_NNNNNNN.pt``; also on Ctrl-C and when ``should_stop`` says so,
    which raises :class:`~mvdecor.train.engine.TrainingCancelled`; see
    :func:`~mvdecor.train.engine.train_steps` for it and ``on_step``).
    """
    config, info, device = run.config, run.info, run.device
    cfg = config.pretrain
    model = setup.model
    optimizer = torch.optim.Adam(parameter_groups(setup, cfg), lr=cfg.lr, foreach=True)
    scheduler = make_lr_scheduler(optimizer, cfg)
    cosine = cfg.lr_schedule == "cosine"
    scaler = make_grad_scaler(cfg.precision)
    step, best_val = 0, math.inf
    if run.saved is not None:
        step = restore_training_state(run.saved, device, model, optimizer, scheduler, scaler)
        best_val = float(run.saved["best_val_loss"])
        if setup.load_extra_state is not None:
            setup.load_extra_state(run.saved)

    stop = cfg.iterations if stop_after is None else min(cfg.iterations, step + stop_after)
    loader = DataLoader(
        setup.train_set,
        batch_sampler=StepBatchSampler(step, stop, cfg.pairs_per_batch, info.rank, info.world_size),
        num_workers=cfg.num_workers,
        collate_fn=setup.collate_fn,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers > 0 else None,
        # Its own generator: creating the iterator must not consume the global RNG
        # (dropout), or a resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    logger = MetricLogger(run.run_dir, "metrics", resume_step=step) if info.is_main else None
    val_logger = (
        MetricLogger(run.run_dir, "val", tensorboard=False, resume_step=step) if info.is_main else None
    )

    def payload(at_step: int) -> dict:
        return {
            **training_state(at_step, device, model, optimizer, scheduler, scaler),
            "config": config.to_dict(),
            "channel_stats": run.stats.to_dict(),
            "best_val_loss": best_val,
            "kind": "embedding",
            "method": cfg.method,
            **setup.extra_state(),
        }

    def train_step(batch: Any, log: bool) -> tuple[float, dict[str, float]]:
        batch = batch.to(device)
        with autocast(device, cfg.precision):
            loss, scalars = setup.loss(batch)
        optimizer_step(loss, optimizer, scaler)
        return float(loss.detach()), scalars

    def after_step(at_step: int) -> None:
        nonlocal best_val
        if cosine:
            scheduler.step()
        if setup.validation_loss is not None and (at_step % cfg.val_every == 0 or at_step == cfg.iterations):
            val_loss = setup.validation_loss() if info.is_main else math.nan
            val_loss = broadcast_float(val_loss, info, device)
            if not cosine:
                scheduler.step(val_loss)
            if val_loss < best_val:
                best_val = val_loss
                if info.is_main:
                    save_checkpoint(run.best_path, payload(at_step))
            if val_logger is not None:
                val_logger.log(at_step, val_loss=val_loss, lr=optimizer.param_groups[0]["lr"])
            setup.network.train()
        if info.is_main and at_step % cfg.checkpoint_every == 0:
            state = payload(at_step)  # one state, written as the snapshot and as last.pt
            if cfg.keep_snapshots != 0:
                save_checkpoint(snapshot_path(run.checkpoint_dir, at_step), state)
                prune_snapshots(run.checkpoint_dir, cfg.keep_snapshots)
            save_checkpoint(run.last_path, state)

    def on_interrupt(at_step: int) -> None:
        if info.is_main:
            save_checkpoint(run.last_path, payload(at_step))

    setup.network.train()
    try:
        step, last_loss = train_steps(
            loader,
            train_step,
            step=step,
            total=cfg.iterations,
            stop=stop,
            device=device,
            lr=lambda: optimizer.param_groups[0]["lr"],
            logger=logger,
            log_every=cfg.log_every,
            images_per_step=2 * cfg.pairs_per_batch * info.world_size,
            after_step=after_step,
            on_interrupt=on_interrupt,
            desc="pretrain" if cfg.method == "mvdecor" else f"pretrain {cfg.method}",
            progress=progress and info.is_main,
            should_stop=should_stop,
            on_step=on_step,
        )
    finally:
        if logger is not None:
            logger.close()
        if val_logger is not None:
            val_logger.close()
    if info.is_main:
        save_checkpoint(run.last_path, payload(step))
    barrier(info)
    cleanup(info)
    return PretrainResult(
        run_dir=run.run_dir,
        step=step,
        best_val_loss=best_val,
        last_checkpoint=run.last_path,
        best_checkpoint=run.best_path if run.best_path.is_file() else None,
        train_loss=last_loss,
    )
