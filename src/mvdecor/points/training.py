"""The training run both point baselines share: Adam, a cosine schedule, checkpoints and resuming.

PointContrast pre-training (:mod:`mvdecor.points.pointcontrast`) and the
cross-entropy training of the segmentation network
(:mod:`mvdecor.points.segmenter`) differ only in their batches and their loss;
:func:`run_point_training` does the rest for both, on the step loop of
:mod:`mvdecor.train.engine` (progress bar, ``metrics.csv`` rows, a checkpoint
on Ctrl-C):

- the run folder holds ``config.yaml``, ``metrics.csv`` and
  ``checkpoints/last.pt``, an ordinary ``torch.save`` dict (``model``,
  ``optimizer``, ``scheduler``, ``scaler``, ``step``, ``rng``, ``config``: the
  ``points`` section as a plain dict, ``kind``, ``run``), written every
  ``checkpoint_every`` steps and at the end;
- running again in the same folder resumes from ``last.pt`` (every batch is a
  function of its step alone, so the resumed run draws what an unbroken one
  would); more iterations continue a finished run, and a finished run is not
  trained again;
- the learning rate falls from its start to 0 at the last step along half a
  cosine (resuming with more iterations stretches the curve to the new end).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mvdecor.config import Config, PointsConfig, config_from_dict
from mvdecor.errors import ConfigError
from mvdecor.fileio import remove_stale_temporaries
from mvdecor.models.checkpoints import load_checkpoint, save_checkpoint
from mvdecor.train.distributed import resolve_device
from mvdecor.train.engine import (
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
    "NETWORK_KEYS",
    "check_same_network",
    "last_checkpoint",
    "points_config_from_dict",
    "points_config_to_dict",
    "resolve_points_device",
    "run_point_training",
]

#: The ``points`` settings that make the network: a checkpoint loads only into the same ones.
NETWORK_KEYS = ("neighbours", "widths", "global_dim", "head_width", "embed_dim", "use_normals")

#: One step's loss: ``(batch on the device, log)`` -> ``(loss, scalars to log when log is true)``.
LossFunction = Callable[[Any, bool], tuple[Tensor, dict[str, float]]]


def points_config_to_dict(settings: PointsConfig) -> dict[str, Any]:
    """The section as plain JSON types (tuples become lists), as checkpoints keep it."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def points_config_from_dict(data: Mapping[str, Any], source: str | Path | None = None) -> PointsConfig:
    """Inverse of :func:`points_config_to_dict`, with the checks of a YAML file."""
    return config_from_dict({"points": dict(data)}, None if source is None else str(source)).points


def check_same_network(saved: Mapping[str, Any], settings: PointsConfig, path: str | Path) -> None:
    """Raise :class:`ConfigError` naming the first of :data:`NETWORK_KEYS` where ``saved`` differs.

    ``saved`` is a checkpoint's ``config`` entry (the ``points`` section as a dict).
    """
    now = points_config_to_dict(settings)
    for key in NETWORK_KEYS:
        if saved.get(key) != now[key]:
            raise ConfigError(
                path,
                f"holds a network with points.{key} = {saved.get(key)!r}, but this configuration "
                f"has {now[key]!r}; use the same network settings",
            )


def last_checkpoint(run_dir: str | Path) -> Path:
    """``RUN/checkpoints/last.pt``: where a run's checkpoint is and where it resumes from."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def run_point_training(
    model: nn.Module,
    *,
    config: Config,
    iterations: int,
    lr: float,
    make_batch: Callable[[int], Any],
    compute_loss: LossFunction,
    run_dir: Path,
    kind: str,
    run: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> tuple[Path, int]:
    """Train ``model`` for ``iterations`` steps in ``run_dir``, resuming from its checkpoint.

    Parameters
    ----------
    model : the network, on its device, initialised (and loaded from an init, if any)
    config : the whole configuration; ``config.points`` gives the precision,
        the checkpoint and log intervals, and is saved in the checkpoint
    iterations, lr : the run's length and Adam learning rate at step 0
    make_batch : step -> that step's batch (tensors on the CPU, or a mapping of them)
    compute_loss : see :data:`LossFunction`; runs under the precision's autocast
    run_dir : the run folder
    kind : what the checkpoint holds (``pointcontrast``, ``point_segmentation``)
    run : what identifies the run (data, classes, init...); a folder holding a
        checkpoint with another ``kind`` or ``run`` is refused, not resumed
    extra : more checkpoint entries (e.g. label names)
    desc, progress : the progress bar's label, and whether to show it

    Returns
    -------
    (Path, int)
        The checkpoint ``RUN/checkpoints/last.pt`` and the step it holds.

    Raises
    ------
    ConfigError
        ``run_dir`` holds another run, or a network of other settings.
    """
    settings = config.points
    device = next(model.parameters()).device
    path = last_checkpoint(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    run = json.loads(json.dumps(dict(run)))  # as a checkpoint gives it back: lists, not tuples
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_factor(iterations))
    precision = resolve_precision(settings.precision, device)
    scaler = make_grad_scaler(precision)
    step = 0
    if path.is_file():
        saved = load_checkpoint(path, map_location=device)
        if saved.get("kind") != kind or saved.get("run") != run:
            raise ConfigError(
                run_dir, f"holds another {saved.get('kind', 'training')} run; use a new run folder"
            )
        check_same_network(saved.get("config", {}), settings, path)
        step = restore_training_state(saved, device, model, optimizer, scheduler, scaler)
        if step >= iterations:
            return path, step
    config.save(Path(run_dir) / "config.yaml")

    def save(at_step: int) -> None:
        save_checkpoint(
            path,
            {
                **training_state(at_step, device, model, optimizer, scheduler, scaler),
                "config": points_config_to_dict(settings),
                "kind": kind,
                "run": run,
                **dict(extra or {}),
            },
        )

    def step_fn(batch: Any, log: bool) -> tuple[float, dict[str, float]]:
        batch = _to_device(batch, device)
        with autocast(device, precision):
            loss, scalars = compute_loss(batch, log)
        optimizer_step(loss, optimizer, scaler)
        scheduler.step()
        return float(loss.detach()), scalars

    def after_step(at_step: int) -> None:
        if at_step % settings.checkpoint_every == 0 and at_step < iterations:
            save(at_step)

    logger = MetricLogger(run_dir, tensorboard=False, resume_step=step)
    model.train()
    try:
        step, _ = train_steps(
            (make_batch(s) for s in range(step, iterations)),
            step_fn,
            step=step,
            total=iterations,
            stop=iterations,
            device=device,
            lr=lambda: optimizer.param_groups[0]["lr"],
            logger=logger,
            log_every=settings.log_every,
            after_step=after_step,
            on_interrupt=save,
            desc=desc,
            progress=progress,
        )
    finally:
        logger.close()
    save(step)
    return path, step


def resolve_points_device(settings: PointsConfig) -> torch.device:
    """``settings.device`` as a torch device (``auto``: CUDA when available, else the CPU)."""
    return resolve_device(settings.device)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch
