"""Config overrides from the command line: ``--set SECTION.KEY=VALUE`` and its shortcut options.

Every command that takes ``--config`` builds its configuration with
:func:`config_from_args`: the preset or file, then the shortcut options
(``--resolution``, ``--lr``...; :data:`SHORTCUTS` says which key each sets),
then each ``--set`` in order, all through
:func:`~mvdecor.config.load_config`, so a value from the command line is
checked exactly as the same value in a YAML file is.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mvdecor.errors import ConfigError

#: What errors in command-line values are attributed to.
COMMAND_LINE = "command line"

#: Shortcut options: argparse dest -> the config key it sets. ``{train}`` is the
#: command's training section: ``pretrain``, or ``finetune`` for finetune and
#: fewshot (those commands do not offer the pre-training-only ``--pairs-per-batch`` and
#: ``--matches-per-pair``). ``--set`` reaches every other key.
SHORTCUTS: dict[str, str] = {
    # rendering
    "rings": "render.rings",
    "segments": "render.segments",
    "resolution": "render.resolution",
    "seed": "render.seed",
    "camera_distance": "render.camera_distance",
    "fov_degrees": "render.fov_degrees",
    # the network
    "backbone": "model.backbone",
    "output_stride": "model.output_stride",
    "modalities": "model.modalities",
    "imagenet_checkpoint": "model.imagenet_checkpoint",
    "head": "model.head",
    # training
    "iterations": "{train}.iterations",
    "pairs_per_batch": "{train}.pairs_per_batch",
    "matches_per_pair": "{train}.matches_per_pair",
    "lr": "{train}.lr",
    "precision": "{train}.precision",
    "device": "{train}.device",
    "num_workers": "{train}.num_workers",
    "pretrain_method": "pretrain.method",
    "finetune_method": "finetune.method",
    "views_per_shape": "finetune.views_per_shape",
    "spread_labels": "finetune.spread_labels",
    "ssl_weight": "finetune.ssl_weight",
    "encoder_lr_scale": "finetune.encoder_lr_scale",
    "head_warmup": "finetune.head_warmup",
    "flip_prob": "finetune.flip_prob",
    "stretch": "finetune.stretch",
    "class_balance": "finetune.class_balance",
    "add_modalities": "finetune.add_modalities",
    # inference on the mesh
    "method": "segment.method",
    "transfer_prior": "segment.transfer_prior",
    "prior_method": "segment.prior_method",
    "transfer_vote": "segment.transfer_vote",
    "transfer_vote_radius": "segment.transfer_vote_radius",
    "unseen_transfer_distance": "segment.unseen_transfer_distance",
    "prior_weighting": "segment.prior_weighting",
    "smoothing": "segment.smoothing",
    "shape_prototypes": "segment.shape_prototypes",
    "test_rings": "segment.rings",
    "test_segments": "segment.segments",
    "test_resolution": "segment.resolution",
    "test_flip": "segment.flip",
    "transfer_align": "transfer.align",
    "transfer_neighbours": "transfer.neighbours",
}

SET_EXAMPLE = "--set finetune.lr=0.0005"


def add_set_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable): any config key, applied after the other options."""
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="set any config key, e.g. --set finetune.lr=0.0005 or --set finetune.add_modalities=[position] "
        "(repeatable; YAML values, checked as in a config file; applied after the other options)",
    )


def _fields(node: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(node) if f.name != "preset"]


def check_key(key: str, option: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``key`` names one setting of :class:`Config`."""
    from mvdecor.config import Config

    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(COMMAND_LINE, f"--set {option}: expected SECTION.KEY=VALUE, e.g. {SET_EXAMPLE}")
    node: Any = Config()
    for depth, part in enumerate(parts):
        name = ".".join(parts[: depth + 1])
        if not dataclasses.is_dataclass(node):
            raise ConfigError(
                COMMAND_LINE, f"--set {option}: unknown key {name}; {parts[depth - 1]} is a value"
            )
        known = _fields(node)
        if part not in known:
            what = "section" if depth == 0 else "key"
            raise ConfigError(
                COMMAND_LINE, f"--set {option}: unknown {what} {name}; known: {', '.join(known)}"
            )
        node = getattr(node, part)
    if dataclasses.is_dataclass(node):
        raise ConfigError(
            COMMAND_LINE,
            f"--set {option}: {key} is a section; set one of its keys, e.g. {key}.{_fields(node)[0]}",
        )


def parse_setting(text: str) -> tuple[str, Any]:
    """``SECTION.KEY=VALUE`` as the key and the value read as YAML (``[a, b]`` is a list)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(COMMAND_LINE, f"--set {text}: expected SECTION.KEY=VALUE, e.g. {SET_EXAMPLE}")
    check_key(key, text)
    if not raw.strip():
        return key, ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(COMMAND_LINE, f"--set {text}: {key}: value is not valid YAML ({problem})") from None
    return key, value


def shortcut_values(args: argparse.Namespace, train_section: str = "pretrain") -> dict[str, Any]:
    """``{config key: value}`` of the shortcut options given on the command line."""
    from mvdecor.config import Config

    values: dict[str, Any] = {}
    for dest, template in SHORTCUTS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        key = template.format(train=train_section)
        section, _, name = key.partition(".")
        if "{train}" in template and name not in _fields(getattr(Config(), section)):
            continue
        values[key] = value
    return values


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{"render.rings": 2}`` as ``{"render": {"rings": 2}}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *sections, name = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return out


def config_from_args(args: argparse.Namespace, train_section: str = "pretrain"):
    """The preset or config file with the command line's overrides applied.

    Training shortcuts (``--iterations``, ``--lr``...) go to ``train_section``;
    each ``--set`` comes last, in order, so it wins over a shortcut.
    """
    from mvdecor.config import load_config

    values = shortcut_values(args, train_section)
    settings: dict[str, str] = {}
    for text in getattr(args, "settings", None) or ():
        key, value = parse_setting(text)
        values[key] = value
        settings[key] = text
    try:
        return load_config(args.config or args.preset, nested(values), overrides_source=COMMAND_LINE)
    except ConfigError as exc:
        # A bad value given by --set: say so (the shortcut options are named by their key).
        for key, text in settings.items():
            if exc.path == COMMAND_LINE and exc.reason.startswith(f"{key} "):
                raise ConfigError(COMMAND_LINE, f"--set {text}: {exc.reason}") from None
        raise


def inference_overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The ``segment`` and ``transfer`` settings the command line gives (options left out are absent)."""
    values = nested(shortcut_values(args))
    return {section: values.get(section, {}) for section in ("segment", "transfer")}
