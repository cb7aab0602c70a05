"""Checkpoint files and the networks they hold: format, atomic save, validated load.

A checkpoint is a dict that ``torch.load(path, weights_only=True)`` opens with
no mvdecor code: ``model`` (state dict), ``config`` (the run's configuration as
a plain dict), ``channel_stats``, ``format_version``; training adds
``optimizer``, ``scheduler``, ``step``, ``rng`` and ``best_val_loss``, and
fine-tuning ``kind: segmentation`` and ``label_names``.

Building a network from a configuration and loading one from a file live here,
below training, so that inference, evaluation and the command line load
networks without importing training code.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mvdecor.config import Config, config_from_dict
from mvdecor.errors import ConfigError, FileError
from mvdecor.fileio import atomic_path
from mvdecor.models.embedding import EMBEDDING_HEADS, EmbeddingNet, SegmentationNet
from mvdecor.models.inputs import ChannelStats, channel_count, rgb_channel_indices

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "CheckpointError",
    "build_model",
    "check_embedding_checkpoint",
    "checkpoint_method",
    "load_checkpoint",
    "load_embedding",
    "load_segmentation_model",
    "save_checkpoint",
    "summarize_state_dict_error",
]

CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(FileError):
    """A checkpoint file is missing, unreadable or incompatible."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**payload, "format_version": CHECKPOINT_FORMAT_VERSION}, tmp)
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``mmap``: tensors are memory-mapped,
    read only when touched; for looking at the small entries of a large file).

    Raises
    ------
    CheckpointError
        Missing, truncated or foreign file, or another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(path, f"unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(path, "not an mvdecor checkpoint (no 'model' entry)")
    if payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            path, f"checkpoint format {payload.get('format_version')}, expected {CHECKPOINT_FORMAT_VERSION}"
        )
    return payload


def check_head(head: str) -> None:
    if head not in EMBEDDING_HEADS:
        raise ConfigError(
            None, f"model.head must be one of {', '.join(sorted(EMBEDDING_HEADS))}, got {head!r}"
        )


def build_model(config: Config) -> EmbeddingNet:
    """The embedding network described by ``config.model`` (random or ImageNet-initialised).

    Raises
    ------
    ConfigError
        ``config.model.head`` names no head in
        :data:`~mvdecor.models.embedding.EMBEDDING_HEADS`.
    """
    m = config.model
    check_head(m.head)
    return EmbeddingNet(
        backbone=m.backbone,
        in_channels=channel_count(m.modalities),
        embed_dim=m.embed_dim,
        output_stride=m.output_stride,
        pretrained_path=m.imagenet_checkpoint or None,
        # ImageNet RGB filters go to the RGB channels only; others get their mean.
        rgb_channels=rgb_channel_indices(m.modalities),
        head=m.head,
    )


def checkpoint_method(path: str | Path) -> str:
    """The pre-training method that wrote an embedding checkpoint (``mvdecor``, ``densecl``...).

    Checkpoints written before methods were recorded are MvDeCor's. The file is
    memory-mapped, so only the small entries are read.

    Raises
    ------
    CheckpointError
        Missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(path, f"unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(path, "not an mvdecor checkpoint")
    # Point-network checkpoints (mvdecor.points) name what they hold as their ``kind``.
    method = (
        payload.get("method")
        or payload.get("kind")
        or payload.get("config", {}).get("pretrain", {}).get("method")
    )
    return str(method or "mvdecor")


def load_embedding(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[EmbeddingNet, ChannelStats, Config]:
    """A pre-trained embedding network, its channel statistics and its configuration.

    Any pre-training method's checkpoint loads here; ``config.pretrain.method``
    names the method that wrote it.
    """
    payload = load_checkpoint(path, map_location=device)
    config = config_from_dict(payload["config"], source=str(path))
    model = build_model(replace(config, model=replace(config.model, imagenet_checkpoint="")))
    _load_weights(model, payload, path, device)
    return model, ChannelStats.from_dict(payload["channel_stats"]), config


def _load_weights(model: torch.nn.Module, payload: dict[str, Any], path: str | Path, device) -> None:
    """The checkpoint's weights into ``model`` (a mismatch is one summarised line), on ``device``, in eval mode."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise ConfigError(
            path, f"checkpoint does not fit its configuration ({summarize_state_dict_error(exc)})"
        ) from None
    model.to(device).eval()


def check_embedding_checkpoint(path: str | Path, option: str = "--init") -> None:
    """Raise a one-line :class:`ConfigError` if ``path`` is a fine-tuned (segmentation) checkpoint.

    ``option`` is where the user passed it (named in the message; empty: not named).
    """
    # Memory-mapped: only the small entries are read, so checking before loading costs no second read.
    if load_checkpoint(path, mmap=True).get("kind") == "segmentation":
        raise ConfigError(
            path,
            "is a fine-tuned segmentation checkpoint (written by `mvdecor finetune`), not a pre-trained "
            f"embedding; pass a checkpoint of `mvdecor pretrain`{f' to {option}' if option else ''}, "
            "or segment with this one (`mvdecor segment --model`)",
        )


#: Keys named in a summary of a state-dict mismatch (the rest are counted).
_KEYS_SHOWN = 3


def summarize_state_dict_error(error: BaseException | str) -> str:
    """One short line for a ``load_state_dict`` error, which lists every missing and unexpected key.

    E.g. ``183 missing keys (encoder.conv1.weight, ...); 190 unexpected keys (...)``.
    """
    text = str(error)
    parts = []
    for label, heading in (("missing", "Missing key(s)"), ("unexpected", "Unexpected key(s)")):
        match = re.search(re.escape(heading) + r" in state_dict: ([^\n]*)", text)
        if match:
            keys = re.findall(r'"([^"]+)"', match.group(1))
            shown = ", ".join(keys[:_KEYS_SHOWN]) + (", ..." if len(keys) > _KEYS_SHOWN else "")
            parts.append(f"{len(keys)} {label} key{'s' if len(keys) != 1 else ''} ({shown})")
    sizes = re.findall(r"size mismatch for ([^:\s]+):", text)
    if sizes:
        shown = ", ".join(sizes[:_KEYS_SHOWN]) + (", ..." if len(sizes) > _KEYS_SHOWN else "")
        parts.append(f"{len(sizes)} tensor{'s' if len(sizes) != 1 else ''} of another shape ({shown})")
    if parts:
        return "; ".join(parts)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def load_segmentation_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SegmentationNet, ChannelStats, Config, tuple[str, ...]]:
    """A fine-tuned network with its channel statistics, configuration and label names.

    Raises
    ------
    ConfigError
        The file is a pre-training checkpoint, or does not fit its own configuration.
    """
    payload = load_checkpoint(path, map_location=device)
    if payload.get("kind") != "segmentation":
        raise ConfigError(path, "is not a fine-tuned segmentation checkpoint (run `mvdecor finetune` first)")
    config = config_from_dict(payload["config"], source=str(path))
    names = tuple(payload["label_names"])
    embedding = build_model(replace(config, model=replace(config.model, imagenet_checkpoint="")))
    head = None
    if payload.get("head") == "nearest":  # a bank of labelled pixels (finetune.method nearest)
        from mvdecor.models.nearest import NearestLabelHead, position_combine

        state, ft = payload["model"], config.finetune
        head = NearestLabelHead(
            state["head.bank_features"],
            state["head.bank_labels"],
            len(names),
            ft.nearest_neighbours,
            ft.nearest_temperature,
            ft.nearest_stride,
            state.get("head.bank_positions"),
            payload.get("nearest_position_weight", ft.nearest_position_weight),  # as chosen by the run
            ft.nearest_pooling == "faces",
            position_combine(ft.nearest_position_combine),
        )
    model = SegmentationNet(embedding, len(names), head=head)
    _load_weights(model, payload, path, device)
    return model, ChannelStats.from_dict(payload["channel_stats"]), config, names
