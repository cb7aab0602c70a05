"""Checkpoints: ordinary ``torch.save`` files, written atomically.

A checkpoint is a dict that ``torch.load(path, weights_only=True)`` opens with
no mvdecor code: ``model`` (state dict), ``optimizer``, ``scheduler``,
``step``, ``rng`` (torch RNG states), ``config`` (the run's configuration as a
plain dict), ``channel_stats``, ``best_val_loss`` and ``format_version``.

A network with its optimizer state weighs about three times the network alone
(200 MB for the ``cpu`` preset's ResNet-18), so runs keep only the periodic
snapshots asked for (:func:`prune_snapshots`) and finished runs can be trimmed
to what loading the network needs (:func:`prune_checkpoints`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mvdecor.errors import ConfigError

# Reading and writing checkpoint files is the models layer's (inference loads networks too).
from mvdecor.models.checkpoints import CHECKPOINT_FORMAT_VERSION as CHECKPOINT_FORMAT_VERSION
from mvdecor.models.checkpoints import CheckpointError as CheckpointError
from mvdecor.models.checkpoints import load_checkpoint as load_checkpoint
from mvdecor.models.checkpoints import save_checkpoint as save_checkpoint

#: What :func:`prune_checkpoints` may keep of a finished training run's checkpoints.
KEEP_CHECKPOINTS: tuple[str, ...] = ("last", "weights", "all")

#: The checkpoint entries that loading a network needs (to segment, to fine-tune from, for
#: pictures); the others (optimizer, scheduler, RNG states) only serve to continue training.
NETWORK_ENTRIES: tuple[str, ...] = (
    "model",
    "config",
    "channel_stats",
    "label_names",
    "num_classes",
    "kind",
    "method",
    "step",
    "best_val_loss",
    "validation",
    "head",
    "nearest_position_weight",
)

#: File names of periodic snapshots: ``step_`` and the step, zero-padded to 7 digits.
SNAPSHOT_PATTERN = "step_*.pt"


def rng_state(device: torch.device) -> dict:
    """The torch RNG states a checkpoint keeps (CPU, and the device's on CUDA)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved, so a resumed run draws what an uninterrupted one would."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def snapshot_path(folder: str | Path, step: int) -> Path:
    """The periodic snapshot of ``step`` in the checkpoint ``folder``."""
    return Path(folder) / f"step_{step:07d}.pt"


def prune_snapshots(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` latest periodic snapshots (``step_*.pt``) in ``folder``.

    ``keep < 0`` keeps every snapshot; ``0`` keeps none. ``last.pt`` and
    ``best.pt`` are never touched. Returns the deleted paths.
    """
    if keep < 0:
        return []
    snapshots = sorted(Path(folder).glob(SNAPSHOT_PATTERN))  # zero-padded steps sort by name
    doomed = snapshots[: max(len(snapshots) - keep, 0)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def check_keep_checkpoints(keep: str) -> None:
    """Raise :class:`ConfigError` unless ``keep`` is one of :data:`KEEP_CHECKPOINTS`.

    For callers that take a ``keep_checkpoints`` argument and should refuse it
    before training anything, not when :func:`prune_checkpoints` meets it.
    """
    if keep not in KEEP_CHECKPOINTS:
        raise ConfigError(
            None, f"keep_checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, got {keep!r}"
        )


def prune_checkpoints(folder: str | Path, keep: str, *, keep_best: bool = False) -> None:
    """Trim the checkpoint folder of a *finished* training run to what ``keep`` asks for.

    Parameters
    ----------
    folder : Path
        The run's checkpoint folder.
    keep : {"last", "weights", "all"}
        ``"all"`` removes nothing; ``"last"`` removes every checkpoint but
        ``last.pt`` (periodic ``step_*.pt`` snapshots, ``best.pt``);
        ``"weights"`` also rewrites ``last.pt`` with only
        :data:`NETWORK_ENTRIES`, dropping the optimizer, scheduler and RNG
        state (about two thirds of the file), so the run can no longer be
        resumed but its network loads everywhere. Called again on a trimmed
        folder, it changes nothing.
    keep_best : bool
        Keep ``best.pt`` too (trimmed the same way): the run's model when
        held-out views chose it (a fine-tuning run with ``finetune.val_views``).

    Raises
    ------
    ValueError
        ``keep`` is not one of :data:`KEEP_CHECKPOINTS`.
    CheckpointError
        The folder has no ``last.pt``.
    """
    if keep not in KEEP_CHECKPOINTS:
        raise ValueError(f"keep must be one of {', '.join(KEEP_CHECKPOINTS)}, got {keep!r}")
    if keep == "all":
        return
    folder = Path(folder)
    last = folder / "last.pt"
    if not last.is_file():
        raise CheckpointError(last, "a finished training run has no last.pt")
    kept = [last] + ([folder / "best.pt"] if keep_best and (folder / "best.pt").is_file() else [])
    for path in folder.glob("*.pt"):
        if path not in kept:
            path.unlink()
    if keep == "weights":
        for path in kept:
            payload = load_checkpoint(path)
            network = {key: value for key, value in payload.items() if key in NETWORK_ENTRIES}
            if len(network) < len(payload) - ("format_version" in payload):
                save_checkpoint(path, network)
