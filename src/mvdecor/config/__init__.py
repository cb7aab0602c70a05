"""Typed configuration with documented defaults and YAML presets.

A :class:`Config` has one section per pipeline stage. Presets live in
``mvdecor/presets/<name>.yaml``: ``paper`` (the paper's settings, for a GPU)
and ``cpu`` (small and fast, for laptops and CI). A YAML file only needs the
keys it changes; unknown keys are an error, so a typo never passes silently.
The preset or file in use is written next to every result (``Config.to_yaml``).
The sections themselves are in :mod:`mvdecor.config.sections` (inference's, ``segment`` and
``transfer``, in :mod:`mvdecor.config.inference`, the 3D baselines' in
:mod:`mvdecor.config.points`), the checks they run on their values in :mod:`mvdecor.config.checks`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mvdecor.config.inference import (
    PRIOR_METHODS,
    PRIOR_WEIGHTINGS,
    TRANSFER_VOTES,
    SegmentConfig,
    TransferConfig,
)
from mvdecor.config.points import DeformConfig, PointsConfig
from mvdecor.config.sections import (
    BACKBONE_NAMES,
    FINETUNE_METHODS,
    LR_SCHEDULES,
    MAX_RESOLUTION,
    NEAREST_POOLINGS,
    NEAREST_POSITION_COMBINES,
    NEAREST_SHARED_SETTINGS,
    PACKAGED_IMAGENET,
    PRECISIONS,
    PRESETS,
    SPREAD_LABELS,
    DenseCLConfig,
    FinetuneConfig,
    ModelConfig,
    PretrainConfig,
    RenderConfig,
    finetune_settings_read,
)
from mvdecor.errors import ConfigError, RenamedKeyWarning

__all__ = [
    "BACKBONE_NAMES",
    "FINETUNE_METHODS",
    "LR_SCHEDULES",
    "MAX_RESOLUTION",
    "NEAREST_POOLINGS",
    "NEAREST_POSITION_COMBINES",
    "NEAREST_SHARED_SETTINGS",
    "PACKAGED_IMAGENET",
    "PRECISIONS",
    "PRESETS",
    "PRIOR_METHODS",
    "PRIOR_WEIGHTINGS",
    "SPREAD_LABELS",
    "TRANSFER_VOTES",
    "Config",
    "DeformConfig",
    "DenseCLConfig",
    "FinetuneConfig",
    "ModelConfig",
    "PointsConfig",
    "PretrainConfig",
    "RenderConfig",
    "SegmentConfig",
    "TransferConfig",
    "config_from_dict",
    "finetune_settings_read",
    "load_config",
    "merge_dicts",
    "render_config_from_dict",
    "render_config_to_dict",
    "upgrade_config_dict",
    "without_self_pairing",
]


@dataclass(frozen=True)
class Config:
    """The whole configuration: one section per stage.

    Attributes
    ----------
    preset : str
        Name of the preset (or file) this configuration came from.
    render : RenderConfig
    model : ModelConfig
    pretrain : PretrainConfig
    finetune : FinetuneConfig
    segment : SegmentConfig
    transfer : TransferConfig
    points : PointsConfig
        The 3D point-cloud baselines, (3D) Scratch and (3D) PointContrast
        (:mod:`mvdecor.points`).
    deform : DeformConfig
        The learned-deformation baseline (:mod:`mvdecor.points.deformation`).
    """

    preset: str = "paper"
    render: RenderConfig = field(default_factory=RenderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    deform: DeformConfig = field(default_factory=DeformConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists (tuples become lists, as YAML and JSON need)."""
        return _lists_for_tuples(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


def _lists_for_tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists_for_tuples(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists_for_tuples(item) for item in value]
    return value


def _build(cls: type, data: dict[str, Any], where: str, source: str | None) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, recursing into dataclass fields."""
    if not isinstance(data, dict):
        raise ConfigError(source, f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(source, f"unknown key(s) {unknown} in {where or 'config'}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if name in known else None
        key = f"{where}.{name}".lstrip(".")
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key, source)
        elif isinstance(default, tuple):
            kwargs[name] = _tuple_value(value, known[name].type, key, source)
        else:
            kwargs[name] = _scalar_value(value, default, key, source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if exc.path is not None or source is None:
            raise
        raise ConfigError(source, exc.reason) from None


def _scalar_value(value: Any, default: Any, key: str, source: str | None) -> Any:
    """``value`` as the type of ``default`` (bool, int, float or str), never silently rounded."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(source, f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        # 64.9 would become 64 and True 1: neither is what the user meant.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(source, f"{key} must be an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(source, f"{key} must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(source, f"{key} must be a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(source, f"{key} must be a finite number, got {value!r}")
        return number
    if isinstance(default, str):
        if value is False:  # YAML reads a bare `off` (`transfer_vote: off`) as false
            return "off"
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(source, f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def _tuple_value(value: Any, annotation: Any, key: str, source: str | None) -> tuple:
    """A list setting: ``tuple[str, ...]`` (any length) or ``tuple[float, float]`` (fixed)."""
    text = str(annotation).replace(" ", "")
    item_names = text[len("tuple[") : -1].split(",") if text.startswith("tuple[") else ["..."]
    variable = item_names[-1] == "..."
    item_type = {"str": str, "float": float, "int": int}.get(item_names[0], str)
    example = "[grey, normal]" if item_type is str else "[0.7, 1.0]"
    if not isinstance(value, (list, tuple)):
        raise ConfigError(source, f"{key} must be a list such as {example}, got {value!r}")
    if not variable and len(value) != len(item_names):
        raise ConfigError(source, f"{key} must be a list of {len(item_names)} values, got {list(value)!r}")
    items = []
    for item in value:
        if item_type is str:
            if not isinstance(item, str):
                raise ConfigError(source, f"{key} must be a list of names, got {list(value)!r}")
            items.append(item)
        else:
            items.append(_scalar_value(item, item_type(0), key, source))
    return tuple(items)


#: Keys renamed so that each says what it is: ``(section, old name) -> new name``. The old
#: names are still read: with a :class:`~mvdecor.errors.RenamedKeyWarning` from config files
#: and overrides, silently from what mvdecor stored itself (checkpoints, render stores).
RENAMED_KEYS: dict[tuple[str, str], str] = {
    ("render", "radius"): "camera_distance",
    ("pretrain", "radius"): "match_radius",
    ("pretrain", "radius_footprints"): "match_radius_footprints",
}


def upgrade_config_dict(
    data: Mapping[str, Any], source: str | None = None, warn: bool = False, section: str | None = None
) -> dict[str, Any]:
    """``data`` (a whole config, or one ``section`` of it) with old key names replaced.

    Raises
    ------
    ConfigError
        Both the old and the new name of a key are given.
    """
    data = dict(data)
    parts = {section: data} if section else {k: v for k, v in data.items() if isinstance(v, Mapping)}
    for name, values in parts.items():
        renames = {old: new for (sec, old), new in RENAMED_KEYS.items() if sec == name and old in values}
        if not renames:
            continue
        values = dict(values)
        for old, new in renames.items():
            if new in values:
                raise ConfigError(
                    source, f"{name}.{old} and {name}.{new} are one setting; give only {name}.{new}"
                )
            values[new] = values.pop(old)
            if warn:
                warnings.warn(
                    f"{source or 'config'}: {name}.{old} is now called {name}.{new} (the old name still works)",
                    RenamedKeyWarning,
                    stacklevel=3,
                )
        if section:
            data = values
        else:
            data[name] = values
    return data


def merge_dicts(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` applied, recursing into nested mappings (neither is modified)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    preset_or_path: str = "paper",
    overrides: dict[str, Any] | None = None,
    overrides_source: str = "overrides",
) -> Config:
    """A preset by name, or a YAML file (applied over the ``paper`` defaults).

    Every value is checked for its type and range here, once, so that every
    command and API call gets the same one-line :class:`ConfigError`.

    Parameters
    ----------
    preset_or_path : ``"paper"``, ``"cpu"`` or a path to a YAML file. A file may
        start from a preset with a top-level ``preset: cpu`` key.
    overrides : nested mapping applied last (e.g. from command-line flags).
    overrides_source : what errors in ``overrides`` are attributed to (the CLI
        says ``command line``); errors in the file name the file.
    """
    return _load_config(preset_or_path, overrides, overrides_source, ())


def _load_config(
    preset_or_path: str,
    overrides: dict[str, Any] | None,
    overrides_source: str,
    chain: tuple[Path, ...],
) -> Config:
    """:func:`load_config`; ``chain``: the files whose bases led here (a loop is an error)."""
    if preset_or_path in PRESETS:
        text = resources.files("mvdecor.presets").joinpath(f"{preset_or_path}.yaml").read_text()
        source, name = f"preset {preset_or_path}", preset_or_path
    else:
        path = Path(preset_or_path)
        if not path.is_file():
            raise ConfigError(path, f"no such config file (presets: {', '.join(PRESETS)})")
        text, source, name = path.read_text(), str(path), str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(source, "a config file must be a mapping")
    data = upgrade_config_dict(data, source, warn=True)
    base = data.pop("preset", None)
    if base is not None and preset_or_path not in PRESETS:
        parent_path = _base_config(str(base), Path(preset_or_path), data, source)
        if parent_path is not None:
            here = (*chain, Path(preset_or_path).resolve())
            if parent_path not in PRESETS and Path(parent_path).resolve() in here:
                loop = " -> ".join(p.name for p in (*here, Path(parent_path).resolve()))
                raise ConfigError(source, f"its base presets form a loop ({loop})")
            parent = _load_config(parent_path, None, "overrides", here).to_dict()
            parent.pop("preset")
            data = _merge_layers(parent, data)
    data.pop("preset", None)
    config = _build(Config, data, "", source)
    if overrides:
        overrides = upgrade_config_dict(overrides, overrides_source, warn=True)
        overrides.pop("preset", None)
        config = _build(Config, _merge_layers(data, overrides), "", overrides_source)
    return without_self_pairing(dataclasses.replace(config, preset=name))


def without_self_pairing(config: Config) -> Config:
    """``config``, with a lookup's pairing dropped where there is no network to pair it with.

    ``segment.prior_method: nearest`` averages a fine-tuned network's votes with the
    nearest labelled faces of the network it started from (the ``cpu`` preset's pair).
    A model that *is* those nearest labelled faces (``finetune.method: nearest``) would
    be averaged with itself, which changes no label and doubles the work, so there the
    setting reads as no prior (``prior_method: transfer``, ``transfer_prior: 0``, and no
    ``transfer_vote``, which joins a pair). A second model given explicitly
    (``segment --prior-model``) is still mixed in.
    """
    seg = config.segment
    if (
        config.finetune.method == "nearest"
        and seg.prior_method == "nearest"
        and (seg.transfer_prior > 0 or seg.transfer_vote != "off")
    ):
        plain = dataclasses.replace(seg, prior_method="transfer", transfer_prior=0.0, transfer_vote="off")
        return dataclasses.replace(config, segment=plain)
    return config


def _merge_layers(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """``upper`` over ``lower``; the packaged ImageNet weights stay with the backbone that asked for them.

    ``model.imagenet_checkpoint: packaged`` (the ``cpu`` preset's) names weights that exist only
    for ``efficientnet_lite0``. A layer that switches to a ResNet without naming a checkpoint of
    its own (``--backbone resnet18``) gets the ResNet from random weights, as it would from any
    preset without ImageNet weights, instead of an error about a setting it never wrote.
    """
    merged = merge_dicts(lower, upper)
    model = merged.get("model")
    upper_model = upper.get("model") if isinstance(upper.get("model"), dict) else {}
    if (
        isinstance(model, dict)
        and "backbone" in upper_model
        and "imagenet_checkpoint" not in upper_model
        and model.get("imagenet_checkpoint") == PACKAGED_IMAGENET
        and not str(model.get("backbone", "")).startswith("efficientnet")
    ):
        merged["model"] = {**model, "imagenet_checkpoint": ""}
    return merged


def _base_config(base: str, path: Path, data: dict[str, Any], source: str) -> str | None:
    """What a config file's ``preset: base`` key starts it from: a preset, a YAML file, or nothing.

    ``base`` is a preset name, or a YAML file (beside ``path``, or as given). A
    file that sets every key of every section (the ``config.yaml`` a run writes, whose
    ``preset`` records what the run was started from) needs no base: none is
    read, so a base file that has moved away is no error there.
    """
    reference = Config().to_dict()
    reference.pop("preset")
    if _sets_every_key(data, reference):
        return None  # a base could change nothing
    if base in PRESETS:
        return base
    for candidate in (path.parent / base, Path(base)):
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            if candidate.resolve() == path.resolve():
                raise ConfigError(source, f"names itself as its base preset ({base!r})")
            return str(candidate)
    raise ConfigError(
        source, f"unknown base preset {base!r}: not a preset ({', '.join(PRESETS)}) nor a YAML file"
    )


def _sets_every_key(data: Any, reference: dict[str, Any]) -> bool:
    """Whether ``data`` has every key of ``reference``, nested mappings included."""
    if not isinstance(data, dict):
        return False
    for key, value in reference.items():
        if key not in data:
            return False
        if isinstance(value, dict) and not _sets_every_key(data[key], value):
            return False
    return True


def render_config_to_dict(config: RenderConfig) -> dict[str, Any]:
    """Plain JSON/YAML-friendly form of a :class:`RenderConfig`."""
    data = dataclasses.asdict(config)
    data["distance_scale"] = list(config.distance_scale)
    return data


def render_config_from_dict(data: dict[str, Any], source: str | None = None) -> RenderConfig:
    """Inverse of :func:`render_config_to_dict`, with the same checks as YAML loading."""
    return _build(RenderConfig, upgrade_config_dict(data, source, section="render"), "render", source)


def config_from_dict(data: dict[str, Any], source: str | None = None) -> Config:
    """Inverse of :meth:`Config.to_dict` (e.g. the configuration saved in a checkpoint)."""
    data = upgrade_config_dict(data, source)
    preset = str(data.pop("preset", "paper"))
    return dataclasses.replace(_build(Config, data, "", source), preset=preset)
