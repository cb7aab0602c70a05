"""Self-supervised pre-training by dense multi-view correspondence (paper section 3.1).

:func:`pretrain` trains an :class:`~mvdecor.models.embedding.EmbeddingNet` so
that pixels of two views seeing the same 3D point get the same embedding
(dense InfoNCE), or, with ``config.pretrain.method = "densecl"``, by the 2D
baseline DenseCL (:mod:`mvdecor.train.densecl`). Methods are named in
:data:`PRETRAIN_METHODS` and share this module's machinery
(:func:`prepare_run`, :func:`restore_training_state`, :func:`run_pretraining`).
Either writes a run folder::

    RUN/
        config.yaml            the configuration in use (its preset named inside)
        run.json               dataset, store, split and device
        metrics.csv            training rows (loss, lr, throughput, data wait)
        val.csv                validation rows (loss, correspondence accuracy)
        tensorboard/           the same scalars for TensorBoard
        checkpoints/last.pt    the latest state (exact resume)
        checkpoints/best.pt    the lowest validation loss so far
        checkpoints/step_NNNNNNN.pt   periodic snapshots (the latest keep_snapshots)
        report.html            summary, curves and configuration (pictures/curves.png)

Re-running with the same folder resumes from ``last.pt``: model, optimiser,
scheduler, step and RNG state, and the batches that follow are the ones an
uninterrupted run would have drawn (see ``ViewPairDataset``). Ctrl-C writes
``last.pt`` before exiting. Every checkpoint records the method that wrote it
(``method``; :func:`checkpoint_method`), and its ``model`` is an
``EmbeddingNet`` state whatever the method, so :func:`load_embedding` and
fine-tuning read them alike.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from mvdecor.config import Config, upgrade_config_dict
from mvdecor.errors import ConfigError
from mvdecor.fileio import remove_stale_temporaries
from mvdecor.models.checkpoints import build_model as build_model

# Building and loading networks is the models layer's; re-exported for training callers.
from mvdecor.models.checkpoints import check_head
from mvdecor.models.checkpoints import checkpoint_method as checkpoint_method
from mvdecor.models.checkpoints import load_embedding as load_embedding
from mvdecor.models.inputs import ChannelStats
from mvdecor.models.losses import dense_info_nce
from mvdecor.registry import Registry
from mvdecor.train.checkpoint import (
    load_checkpoint,
    prune_snapshots,
    rng_state,
    save_checkpoint,
    set_rng_state,
    snapshot_path,
)
from mvdecor.train.data import (
    ViewPairBatch,
    ViewPairDataset,
    ViewSource,
    collate_pairs,
    compute_channel_stats,
    split_shapes,
)
from mvdecor.train.distributed import (
    DistInfo,
    barrier,
    broadcast_float,
    cleanup,
    init_distributed,
    resolve_device,
)
from mvdecor.train.logs import MetricLogger
from mvdecor.train.precision import autocast, resolve_precision


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for steps ``start..stop-1``, the item indices of this rank's share of each step.

    Step ``s`` of rank ``r`` among ``w`` gets items ``((s * w + r) * P + k)`` for
    ``k < P``: disjoint across ranks, and a function of the step alone.
    """

    def __init__(self, start: int, stop: int, pairs: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.stop, self.pairs, self.rank, self.world = start, stop, pairs, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            base = (step * self.world + self.rank) * self.pairs
            yield list(range(base, base + self.pairs))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def pair_loss(model: torch.nn.Module, batch: ViewPairBatch, temperature: float) -> torch.Tensor:
    """Dense InfoNCE of a batch: both views of every pair go through the network together."""
    b = len(batch)
    embeddings = model(torch.cat([batch.inputs_a, batch.inputs_b]))
    emb_a, emb_b = embeddings[:b].float(), embeddings[b:].float()
    return dense_info_nce(emb_a, emb_b, batch.index_a, batch.index_b, batch.valid, temperature)


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


def _check_resumable(saved: dict, config: Config, run_dir: Path) -> None:
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
    if method != "mvdecor" and saved_pretrain.get(method) != now["pretrain"].get(method):
        raise ConfigError(
            run_dir,
            f"holds a run with other pretrain.{method} settings; use a new run folder "
            "or the same configuration to resume",
        )


# ------------------------------------------------------------------ shared machinery
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
        _check_resumable(saved["config"], config, run_dir)
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


def restore_training_state(
    run: PretrainRun,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: object,
    scaler: torch.amp.GradScaler,
) -> tuple[int, float]:
    """Load the resumed checkpoint's model, optimiser, scheduler, scaler and RNG; ``(step, best_val_loss)``.

    Without a checkpoint to resume from, nothing changes and ``(0, inf)`` is returned.
    """
    saved = run.saved
    if saved is None:
        return 0, math.inf
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if "scaler" in saved:
        scaler.load_state_dict(saved["scaler"])
    set_rng_state(saved["rng"], run.device)
    return int(saved["step"]), float(saved["best_val_loss"])


@dataclass
class MethodSteps:
    """What a pre-training method plugs into :func:`run_pretraining`.

    Attributes
    ----------
    loss : a batch (already on the device) -> the loss to minimise and extra
        scalars to log (run under the run's autocast precision)
    validation_loss : the validation loss of the current weights (rank 0 only;
        sets the modules' modes itself), or None without validation shapes
    extra_state : entries added to every checkpoint (e.g. a momentum network)
    """

    loss: Callable[[Any], tuple[torch.Tensor, dict[str, float]]]
    validation_loss: Callable[[], float] | None = None
    extra_state: Callable[[], dict] = dict


def run_pretraining(
    run: PretrainRun,
    *,
    model: torch.nn.Module,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    scaler: torch.amp.GradScaler,
    train_set: torch.utils.data.Dataset,
    collate_fn: Callable[[list], Any],
    steps: MethodSteps,
    step: int = 0,
    best_val: float = math.inf,
    stop_after: int | None = None,
    progress: bool = True,
) -> PretrainResult:
    """The training loop every pre-training method shares.

    Draws step ``s``'s items ``s * P .. s * P + P - 1`` of ``train_set`` (``P =
    pairs_per_batch``, each item two images), minimises ``steps.loss``, logs
    ``RUN/metrics.csv`` (loss, the method's extra scalars, lr, throughput, data
    wait), validates every ``val_every`` steps into ``RUN/val.csv`` (the
    plateau scheduler follows the validation loss; ``best.pt`` keeps its
    lowest), and writes checkpoints (``last.pt``, ``step_NNNNNNN.pt``; also on
    Ctrl-C). ``model`` is the embedding network saved as the checkpoint's
    ``model``; ``network`` is the module put in training mode (``model`` itself,
    or a module holding it).
    """
    config, info, device = run.config, run.info, run.device
    cfg = config.pretrain
    stop = cfg.iterations if stop_after is None else min(cfg.iterations, step + stop_after)
    loader = DataLoader(
        train_set,
        batch_sampler=StepBatchSampler(step, stop, cfg.pairs_per_batch, info.rank, info.world_size),
        num_workers=cfg.num_workers,
        collate_fn=collate_fn,
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

    def checkpoint_payload() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "rng": rng_state(device),
            "config": config.to_dict(),
            "channel_stats": run.stats.to_dict(),
            "best_val_loss": best_val,
            "kind": "embedding",
            "method": cfg.method,
            **steps.extra_state(),
        }

    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.iterations,
        initial=step,
        desc="pretrain" if cfg.method == "mvdecor" else f"pretrain {cfg.method}",
        unit="it",
        disable=not (progress and info.is_main),
        dynamic_ncols=True,
    )
    last_loss = math.nan
    wait_s = compute_s = 0.0
    window_steps = 0
    window_start = time.perf_counter()
    network.train()
    try:
        fetch_start = time.perf_counter()
        for batch in loader:
            got = time.perf_counter()
            wait_s += got - fetch_start
            batch = batch.to(device)
            with autocast(device, cfg.precision):
                loss, scalars = steps.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            last_loss = float(loss.detach())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step += 1
            window_steps += 1
            compute_s += time.perf_counter() - got
            bar.update()
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"loss became {last_loss} at step {step}; lower the learning rate")

            if logger is not None and (step % cfg.log_every == 0 or step == stop):
                elapsed = time.perf_counter() - window_start
                rate = window_steps / max(elapsed, 1e-9)
                logger.log(
                    step,
                    loss=last_loss,
                    **scalars,
                    lr=optimizer.param_groups[0]["lr"],
                    it_per_s=rate,
                    images_per_s=rate * 2 * cfg.pairs_per_batch * info.world_size,
                    data_wait_share=wait_s / max(wait_s + compute_s, 1e-9),
                )
                wait_s = compute_s = 0.0
                window_steps = 0
                window_start = time.perf_counter()

            if steps.validation_loss is not None and (step % cfg.val_every == 0 or step == cfg.iterations):
                val_loss = math.nan
                if info.is_main:
                    val_loss = steps.validation_loss()
                val_loss = broadcast_float(val_loss, info, device)
                scheduler.step(val_loss)
                if val_loss < best_val:
                    best_val = val_loss
                    if info.is_main:
                        save_checkpoint(run.best_path, checkpoint_payload())
                if val_logger is not None:
                    val_logger.log(step, val_loss=val_loss, lr=optimizer.param_groups[0]["lr"])
                network.train()

            if info.is_main and step % cfg.checkpoint_every == 0:
                payload = checkpoint_payload()  # one state, written as the snapshot and as last.pt
                if cfg.keep_snapshots != 0:
                    save_checkpoint(snapshot_path(run.checkpoint_dir, step), payload)
                    prune_snapshots(run.checkpoint_dir, cfg.keep_snapshots)
                save_checkpoint(run.last_path, payload)
            fetch_start = time.perf_counter()
    except KeyboardInterrupt:
        if info.is_main:
            save_checkpoint(run.last_path, checkpoint_payload())
            bar.write(f"interrupted at step {step}; resume by running the same command again")
        raise
    finally:
        bar.close()
        if logger is not None:
            logger.close()
        if val_logger is not None:
            val_logger.close()
    if info.is_main:
        save_checkpoint(run.last_path, checkpoint_payload())
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


# -------------------------------------------------------------------------- methods
#: Pre-training methods by name (``config.pretrain.method``); each has :func:`pretrain`'s signature.
PRETRAIN_METHODS: Registry[Callable[..., PretrainResult]] = Registry("pre-training method")


def pretrain(
    config: Config,
    dataset: str,
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    resume: bool = True,
    iterations: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    split: dict[str, list[str]] | None = None,
    report: bool = True,
) -> PretrainResult:
    """Pre-train an embedding network on the shapes of ``dataset`` (labels unused).

    The method is ``config.pretrain.method``: ``mvdecor`` (:func:`pretrain_mvdecor`)
    or ``densecl`` (:func:`mvdecor.train.densecl.pretrain_densecl`). Either
    writes the run folder described in the module docstring, and checkpoints
    that :func:`load_embedding` and fine-tuning read alike.

    Parameters
    ----------
    config : the run's configuration (``config.render``, ``.model``, ``.pretrain``)
    dataset : a dataset spec or folder (see ``mvdecor datasets``)
    run_dir : the run folder (created; resumed from when it holds ``last.pt``)
    store : a render store of the dataset made with ``config.render``; None
        renders views on the fly in the data-loader workers
    resume : resume from ``RUN/checkpoints/last.pt`` when it exists
    iterations : override ``config.pretrain.iterations``
    progress : show a progress bar (rank 0)
    stop_after : stop (with a checkpoint) after this many steps of this call,
        as if interrupted; for tests and time-boxed jobs
    split : ``{"train": [...], "val": [...]}`` shape ids to use instead of a
        seeded random split (``val`` may be empty)
    report : write ``RUN/report.html`` and ``RUN/pictures/curves.png`` when the
        call ends (rank 0; see :func:`mvdecor.viz.report.write_training_report`)

    Raises
    ------
    UnknownNameError
        ``config.pretrain.method`` names no method.
    ConfigError
        ``config.model.head`` names no head (checked before anything is written).
    """
    import mvdecor.train.densecl  # noqa: F401  (registers "densecl")

    method = PRETRAIN_METHODS.get(config.pretrain.method)
    check_head(config.model.head)
    result = method(
        config,
        dataset,
        run_dir,
        store=store,
        resume=resume,
        iterations=iterations,
        progress=progress,
        stop_after=stop_after,
        split=split,
    )
    if report and int(os.environ.get("RANK", "0")) == 0:
        from mvdecor.viz.report import write_training_report

        write_training_report(run_dir)
    return result


@PRETRAIN_METHODS.register("mvdecor")
def pretrain_mvdecor(
    config: Config,
    dataset: str,
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    resume: bool = True,
    iterations: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    split: dict[str, list[str]] | None = None,
) -> PretrainResult:
    """MvDeCor pre-training: dense InfoNCE over matched pixels of view pairs (see :func:`pretrain`)."""
    run = prepare_run(
        config, dataset, run_dir, store=store, resume=resume, iterations=iterations, split=split
    )
    config, device, info = run.config, run.device, run.info
    cfg = config.pretrain
    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    step, best_val = restore_training_state(run, model, optimizer, scheduler, scaler)
    train_model: torch.nn.Module = model
    if info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    modalities = config.model.modalities
    train_set = ViewPairDataset(
        run.source,
        run.train_ids,
        modalities,
        run.stats,
        cfg.matches_per_pair,
        cfg.overlap_threshold,
        cfg.seed,
    )
    val_set = (
        ViewPairDataset(
            run.source,
            run.val_ids,
            modalities,
            run.stats,
            cfg.matches_per_pair,
            cfg.overlap_threshold,
            cfg.seed + 1_000_003,
        )
        if run.val_ids
        else None
    )

    def train_loss(batch: ViewPairBatch) -> tuple[torch.Tensor, dict[str, float]]:
        return pair_loss(train_model, batch, cfg.temperature), {}

    def val_loss() -> float:
        return validation_loss(
            model, val_set, cfg.val_pairs, cfg.pairs_per_batch, cfg.temperature, device, cfg.precision
        )

    return run_pretraining(
        run,
        model=model,
        network=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        train_set=train_set,
        collate_fn=collate_pairs,
        steps=MethodSteps(loss=train_loss, validation_loss=val_loss if val_set is not None else None),
        step=step,
        best_val=best_val,
        stop_after=stop_after,
        progress=progress,
    )


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    val_set: ViewPairDataset,
    num_pairs: int,
    batch_pairs: int,
    temperature: float,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """Mean InfoNCE over the fixed validation pairs ``0..num_pairs-1`` (model in eval mode)."""
    model.eval()
    losses, weights = [], []
    for start in range(0, num_pairs, batch_pairs):
        items = [val_set[k] for k in range(start, min(start + batch_pairs, num_pairs))]
        batch = collate_pairs(items).to(device)
        with autocast(device, precision):
            loss = pair_loss(model, batch, temperature)
        losses.append(float(loss))
        weights.append(len(items))
    return float(np.average(losses, weights=weights))
