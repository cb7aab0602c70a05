"""Self-supervised pre-training by dense multi-view correspondence (paper section 3.1).

:func:`pretrain` trains an :class:`~mvdecor.models.embedding.EmbeddingNet` so
that pixels of two views seeing the same 3D point get the same embedding
(dense InfoNCE), and writes a run folder::

    RUN/
        config.yaml            the configuration in use (its preset named inside)
        run.json               dataset, store, split and device
        metrics.csv            training rows (loss, lr, throughput, data wait)
        val.csv                validation rows (loss, correspondence accuracy)
        tensorboard/           the same scalars for TensorBoard
        checkpoints/last.pt    the latest state (exact resume)
        checkpoints/best.pt    the lowest validation loss so far
        checkpoints/step_NNNNNNN.pt   periodic snapshots

Re-running with the same folder resumes from ``last.pt``: model, optimiser,
scheduler, step and RNG state, and the batches that follow are the ones an
uninterrupted run would have drawn (see ``ViewPairDataset``). Ctrl-C writes
``last.pt`` before exiting.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from mvdecor.config import Config
from mvdecor.errors import ConfigError
from mvdecor.models.embedding import EmbeddingNet
from mvdecor.models.inputs import ChannelStats, channel_count, rgb_channel_indices
from mvdecor.models.losses import dense_info_nce
from mvdecor.train.checkpoint import load_checkpoint, save_checkpoint
from mvdecor.train.data import (
    ViewPairBatch,
    ViewPairDataset,
    ViewSource,
    collate_pairs,
    compute_channel_stats,
    split_shapes,
)
from mvdecor.train.distributed import (
    barrier,
    broadcast_float,
    cleanup,
    init_distributed,
    resolve_device,
)
from mvdecor.train.logs import MetricLogger


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


def build_model(config: Config) -> EmbeddingNet:
    """The embedding network described by ``config.model`` (random or ImageNet-initialised)."""
    m = config.model
    return EmbeddingNet(
        backbone=m.backbone,
        in_channels=channel_count(m.modalities),
        embed_dim=m.embed_dim,
        output_stride=m.output_stride,
        pretrained_path=m.imagenet_checkpoint or None,
        # ImageNet RGB filters go to the RGB channels only; others get their mean.
        rgb_channels=rgb_channel_indices(m.modalities),
    )


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError(None, "precision fp16 needs a CUDA device; use bf16 on the CPU")
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    raise ConfigError(None, f"unknown precision {precision!r} (fp32, bf16 or fp16)")


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


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_resumable(saved: dict, config: Config, run_dir: Path) -> None:
    """Refuse to resume a run with another model or data configuration."""
    now = config.to_dict()
    for section in ("model", "render"):
        if saved.get(section) != now[section]:
            raise ConfigError(
                run_dir,
                f"holds a run with another {section} configuration; use a new run folder "
                "or the same configuration to resume",
            )


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
) -> PretrainResult:
    """Pre-train an embedding network on the shapes of ``dataset`` (labels unused).

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
    ckpt_dir = run_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"

    torch.manual_seed(cfg.seed)
    radius = cfg.resolve_radius(config.render)
    source = ViewSource(
        dataset, config.render, store=store, cache_dir=None if store else run_dir / "overlaps", radius=radius
    )
    if split is not None:
        train_ids, val_ids = check_split(split, source.shape_ids(), dataset)
    else:
        train_ids, val_ids = split_shapes(source.shape_ids(), cfg.val_fraction, cfg.seed)
    if not train_ids:
        raise ConfigError(None, f"dataset {dataset!r} has no shapes")

    saved = None
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
                    "dataset": source.dataset.spec,
                    "store": str(store) if store else None,
                    "preset": config.preset,
                    "train_shapes": train_ids,
                    "val_shapes": val_ids,
                    "radius": radius,
                    "device": str(device),
                    "world_size": info.world_size,
                },
                indent=2,
            )
            + "\n"
        )

    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    step, best_val = 0, math.inf
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        step, best_val = int(saved["step"]), float(saved["best_val_loss"])
        _set_rng_state(saved["rng"], device)
    train_model: torch.nn.Module = model
    if info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    train_set = ViewPairDataset(
        source,
        train_ids,
        config.model.modalities,
        stats,
        cfg.matches_per_pair,
        cfg.overlap_threshold,
        cfg.seed,
    )
    val_set = (
        ViewPairDataset(
            source,
            val_ids,
            config.model.modalities,
            stats,
            cfg.matches_per_pair,
            cfg.overlap_threshold,
            cfg.seed + 1_000_003,
        )
        if val_ids
        else None
    )
    stop = cfg.iterations if stop_after is None else min(cfg.iterations, step + stop_after)
    loader = DataLoader(
        train_set,
        batch_sampler=StepBatchSampler(step, stop, cfg.pairs_per_batch, info.rank, info.world_size),
        num_workers=cfg.num_workers,
        collate_fn=collate_pairs,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers > 0 else None,
        # Its own generator: creating the iterator must not consume the global RNG
        # (dropout), or a resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.seed),
    )

    logger = MetricLogger(run_dir, "metrics", resume_step=step) if info.is_main else None
    val_logger = MetricLogger(run_dir, "val", tensorboard=False, resume_step=step) if info.is_main else None

    def checkpoint_payload() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "rng": _rng_state(device),
            "config": config.to_dict(),
            "channel_stats": stats.to_dict(),
            "best_val_loss": best_val,
            "kind": "embedding",
        }

    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.iterations,
        initial=step,
        desc="pretrain",
        unit="it",
        disable=not (progress and info.is_main),
        dynamic_ncols=True,
    )
    last_loss = math.nan
    wait_s = compute_s = 0.0
    window_steps = 0
    window_start = time.perf_counter()
    model.train()
    try:
        fetch_start = time.perf_counter()
        for batch in loader:
            got = time.perf_counter()
            wait_s += got - fetch_start
            batch = batch.to(device)
            with _autocast(device, cfg.precision):
                loss = pair_loss(train_model, batch, cfg.temperature)
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
                    lr=optimizer.param_groups[0]["lr"],
                    it_per_s=rate,
                    images_per_s=rate * 2 * cfg.pairs_per_batch * info.world_size,
                    data_wait_share=wait_s / max(wait_s + compute_s, 1e-9),
                )
                wait_s = compute_s = 0.0
                window_steps = 0
                window_start = time.perf_counter()

            if val_set is not None and (step % cfg.val_every == 0 or step == cfg.iterations):
                val_loss = math.nan
                if info.is_main:
                    val_loss = validation_loss(
                        model,
                        val_set,
                        cfg.val_pairs,
                        cfg.pairs_per_batch,
                        cfg.temperature,
                        device,
                        cfg.precision,
                    )
                val_loss = broadcast_float(val_loss, info, device)
                scheduler.step(val_loss)
                if val_loss < best_val:
                    best_val = val_loss
                    if info.is_main:
                        save_checkpoint(best_path, checkpoint_payload())
                if val_logger is not None:
                    val_logger.log(step, val_loss=val_loss, lr=optimizer.param_groups[0]["lr"])
                model.train()

            if info.is_main and step % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt_dir / f"step_{step:07d}.pt", checkpoint_payload())
                save_checkpoint(last_path, checkpoint_payload())
            fetch_start = time.perf_counter()
    except KeyboardInterrupt:
        if info.is_main:
            save_checkpoint(last_path, checkpoint_payload())
            bar.write(f"interrupted at step {step}; resume by running the same command again")
        raise
    finally:
        bar.close()
        if logger is not None:
            logger.close()
        if val_logger is not None:
            val_logger.close()
    if info.is_main:
        save_checkpoint(last_path, checkpoint_payload())
    barrier(info)
    cleanup(info)
    return PretrainResult(
        run_dir=run_dir,
        step=step,
        best_val_loss=best_val,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_path.is_file() else None,
        train_loss=last_loss,
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
        with _autocast(device, precision):
            loss = pair_loss(model, batch, temperature)
        losses.append(float(loss))
        weights.append(len(items))
    return float(np.average(losses, weights=weights))


def load_embedding(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[EmbeddingNet, ChannelStats, Config]:
    """A pre-trained embedding network, its channel statistics and its configuration."""
    from mvdecor.config import config_from_dict

    payload = load_checkpoint(path, map_location=device)
    config = config_from_dict(payload["config"], source=str(path))
    model = build_model(replace(config, model=replace(config.model, imagenet_checkpoint="")))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise ConfigError(path, f"checkpoint does not fit its own configuration ({exc})") from None
    model.to(device).eval()
    return model, ChannelStats.from_dict(payload["channel_stats"]), config
