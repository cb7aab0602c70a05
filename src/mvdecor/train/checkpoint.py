"""Checkpoints: ordinary ``torch.save`` files, written atomically.

A checkpoint is a dict that ``torch.load(path, weights_only=True)`` opens with
no mvdecor code: ``model`` (state dict), ``optimizer``, ``scheduler``,
``step``, ``rng`` (torch RNG states), ``config`` (the run's configuration as a
plain dict), ``channel_stats``, ``best_val_loss`` and ``format_version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mvdecor.errors import FileError
from mvdecor.fileio import atomic_path

CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(FileError):
    """A checkpoint file is missing, unreadable or incompatible."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**payload, "format_version": CHECKPOINT_FORMAT_VERSION}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Missing, truncated or foreign file, or another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(path, f"unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(path, "not an mvdecor checkpoint (no 'model' entry)")
    if payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            path, f"checkpoint format {payload.get('format_version')}, expected {CHECKPOINT_FORMAT_VERSION}"
        )
    return payload
