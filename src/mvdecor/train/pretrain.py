"""Self-supervised pre-training by dense multi-view correspondence (paper section 3.1).

:func:`pretrain` trains an :class:`~mvdecor.models.embedding.EmbeddingNet` so
that pixels of two views seeing the same 3D point get the same embedding
(dense InfoNCE), or, with ``config.pretrain.method = "densecl"``, by the 2D
baseline DenseCL (:mod:`mvdecor.train.densecl`). Methods are named in
:data:`~mvdecor.train.pretraining.PRETRAIN_METHODS` and share the machinery
of :mod:`mvdecor.train.pretraining` (the run, resuming, the loop).
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

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import mvdecor.train.densecl  # noqa: F401  (registers "densecl")
from mvdecor.config import Config
from mvdecor.errors import ConfigError

# Building and loading networks is the models layer's; re-exported for training callers.
from mvdecor.models.checkpoints import build_model as build_model
from mvdecor.models.checkpoints import check_head
from mvdecor.models.checkpoints import checkpoint_method as checkpoint_method
from mvdecor.models.checkpoints import load_embedding as load_embedding
from mvdecor.models.losses import dense_info_nce
from mvdecor.train.data import ViewPairBatch, ViewPairDataset, collate_pairs
from mvdecor.train.distributed import cleanup
from mvdecor.train.engine import StepBatchSampler as StepBatchSampler
from mvdecor.train.precision import autocast
from mvdecor.train.pretraining import PRETRAIN_METHODS as PRETRAIN_METHODS
from mvdecor.train.pretraining import (
    MethodSetup,
    PretrainMethod,
    PretrainRun,
    prepare_run,
    run_pretraining,
)
from mvdecor.train.pretraining import PretrainResult as PretrainResult


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
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> PretrainResult:
    """Pre-train an embedding network on the shapes of ``dataset`` (labels unused).

    The method is ``config.pretrain.method``: ``mvdecor`` (:func:`build_mvdecor`)
    or ``densecl`` (:func:`mvdecor.train.densecl.build_densecl_method`). Either
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
        call ends (rank 0; see :func:`mvdecor.viz.run_reports.write_training_report`)
    should_stop : asked after every step; True stops the run with a checkpoint, as
        Ctrl-C does, and raises :class:`~mvdecor.train.engine.TrainingCancelled`
        (e.g. a cancel button; single-process runs)
    on_step : called with ``(step, total)`` after every step (a caller's own progress)

    Raises
    ------
    UnknownNameError
        ``config.pretrain.method`` names no method.
    ConfigError
        ``config.model.head`` names no head, or the method's settings are out of
        range (checked before anything is written); several ``torchrun``
        processes for a method that trains in one.
    """
    method = PRETRAIN_METHODS.get(config.pretrain.method)
    check_head(config.model.head)
    method.check(config)
    run = prepare_run(
        config, dataset, run_dir, store=store, resume=resume, iterations=iterations, split=split
    )
    if run.info.enabled and not method.distributed:
        cleanup(run.info)
        raise ConfigError(
            None,
            f"{config.pretrain.method} pre-training runs in one process; run it without torchrun",
        )
    result = run_pretraining(
        run,
        method.build(run),
        stop_after=stop_after,
        progress=progress,
        should_stop=should_stop,
        on_step=on_step,
    )
    if report and int(os.environ.get("RANK", "0")) == 0:
        from mvdecor.viz.run_reports import write_training_report

        write_training_report(run_dir)
    return result


def pair_loss(model: torch.nn.Module, batch: ViewPairBatch, temperature: float) -> torch.Tensor:
    """Dense InfoNCE of a batch: both views of every pair go through the network together."""
    b = len(batch)
    embeddings = model(torch.cat([batch.inputs_a, batch.inputs_b]))
    emb_a, emb_b = embeddings[:b].float(), embeddings[b:].float()
    return dense_info_nce(emb_a, emb_b, batch.index_a, batch.index_b, batch.valid, temperature)


def build_mvdecor(run: PretrainRun) -> MethodSetup:
    """MvDeCor pre-training: dense InfoNCE over matched pixels of view pairs (see :func:`pretrain`)."""
    config, device, info = run.config, run.device, run.info
    cfg = config.pretrain
    model = build_model(config).to(device)
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
        cross_shape=cfg.cross_shape_pairs,
        cross_shape_radius=cfg.cross_shape_radius,
        groups={shape_id: run.source.dataset.category_of(shape_id) for shape_id in run.train_ids},
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

    return MethodSetup(
        model=model,
        network=model,
        parameters=model.parameters(),
        train_set=train_set,
        collate_fn=collate_pairs,
        loss=train_loss,
        validation_loss=val_loss if val_set is not None else None,
    )


PRETRAIN_METHODS.register("mvdecor")(PretrainMethod(build=build_mvdecor))


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
