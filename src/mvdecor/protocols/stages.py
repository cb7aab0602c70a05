"""One cache of finished stages, shared by the demo and the few-shot protocol.

A *stage* is work whose result depends only on its *settings*: a plain JSON
dict of what decides the result (the dataset, the shapes, the config sections
that matter, the initialisation), never of where or how fast it runs (device,
data-loader workers). Its folder records the settings in :data:`STAGE_RECORD`
before the work starts and the result once it ends, so that a re-run

- with the same settings reuses the finished result, or continues an
  unfinished stage from its checkpoints;
- with other settings starts afresh (the folder is emptied first), so a stale
  checkpoint is never resumed under new settings.

The few-shot protocol's results files (``results_<setting>.json``) are the
finished records of its settings (:func:`mvdecor.protocols.fewshot.finished_fewshot`
compares them with :func:`same_settings`), and each of its fine-tuning runs is
a stage; the demo's pre-training is a stage, and its few-shot stage is the
protocol's.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.config import Config, finetune_settings_read
from mvdecor.fileio import atomic_write_text

#: The file in a stage's folder that records its settings and, once finished, its result.
STAGE_RECORD = "stage.json"

#: Settings that change where or how fast a stage runs, never its result.
RUN_PLACE_KEYS = ("device", "num_workers")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: tuples become lists, paths strings, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def config_sections(config: Config, names: Sequence[str]) -> dict[str, dict]:
    """The named sections of ``config`` as JSON data, without :data:`RUN_PLACE_KEYS`."""
    full = config.to_dict()
    sections = {name: {k: v for k, v in full[name].items() if k not in RUN_PLACE_KEYS} for name in names}
    return json_safe(sections)


def init_identity(init: str | Path) -> str | dict:
    """What a network initialisation is, for a stage's settings.

    A named initialisation (``scratch``, ``imagenet``, ``transfer``) is its
    name. A checkpoint is its path *and* what it holds (its step and the
    sections that decided it), so that a checkpoint written again by other
    settings at the same path does not pass for the old one. A checkpoint that
    cannot be read is its path alone (the stage itself then fails clearly).
    """
    path = Path(init)
    if path.suffix != ".pt" or not path.is_file():
        return str(init)
    from mvdecor.models.checkpoints import CheckpointError, load_checkpoint  # loads torch: only here

    try:
        saved = load_checkpoint(path, mmap=True)
    except CheckpointError:
        return str(init)
    config = saved.get("config", {})
    return json_safe(
        {
            "checkpoint": str(init),
            "step": saved.get("step"),
            "method": saved.get("method") or saved.get("kind"),
            **{
                name: {k: v for k, v in config.get(name, {}).items() if k not in RUN_PLACE_KEYS}
                for name in ("model", "render", "pretrain")
            },
            # A point-network checkpoint keeps its one section, ``points``, flat.
            **({"points": config} if "kind" in saved else {}),
        }
    )


def network_settings(config: Config, init: str | Path) -> dict:
    """What decides a 2D network made from ``init`` by ``config.finetune.method`` (fine-tuned, or
    a bank of labelled faces): the initialisation (:func:`init_identity`) and the model, render
    and fine-tuning settings, the latter without the entries the method never reads
    (:func:`~mvdecor.config.finetune_settings_read`)."""
    sections = config_sections(config, ("model", "render", "finetune"))
    sections["finetune"] = finetune_settings_read(sections["finetune"])
    return {"init": init_identity(init), **sections}


#: The default of every config key where settings hold config sections: at the top
#: (``segment``, ``model``...) and under ``training``. See :func:`without_new_defaults`.
_CONFIG_DEFAULTS = json_safe(Config().to_dict())
SETTINGS_DEFAULTS: dict[str, Any] = {**_CONFIG_DEFAULTS, "training": _CONFIG_DEFAULTS}


def without_new_defaults(recorded: Any, wanted: Any, defaults: Any) -> Any:
    """``wanted`` without the keys that ``recorded`` lacks and that hold their ``defaults`` value.

    Options are added off by default, so settings recorded before an option
    existed were made with it at its default: with this, such a record still
    matches, and finished work is not redone (or a folder emptied) only
    because the code gained an option. Nested mappings are compared key by key;
    all three arguments are plain JSON data.
    """
    if not isinstance(recorded, dict) or not isinstance(wanted, dict):
        return wanted
    defaults = defaults if isinstance(defaults, dict) else {}
    out = {}
    for key, value in wanted.items():
        if key not in recorded:
            if key in defaults and value == defaults[key]:
                continue
            out[key] = value
        else:
            out[key] = without_new_defaults(recorded[key], value, defaults.get(key))
    return out


def same_settings(recorded: Any, settings: Any) -> bool:
    """Whether recorded settings equal ``settings`` once both are plain JSON data.

    A config key that ``recorded`` lacks matches when ``settings`` has it at its
    default (:func:`without_new_defaults`, :data:`SETTINGS_DEFAULTS`).
    """
    recorded, settings = json_safe(recorded), json_safe(settings)
    return recorded == without_new_defaults(recorded, settings, SETTINGS_DEFAULTS)


def _read_record(folder: str | Path) -> dict | None:
    """The stage record in ``folder``; None when there is none, or it is unreadable or not a JSON object."""
    try:
        record = json.loads((Path(folder) / STAGE_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def finished_stage(folder: str | Path, settings: Mapping[str, Any]) -> dict | None:
    """The result recorded in ``folder`` for ``settings`` if that stage finished; else None. Reads only."""
    record = _read_record(folder)
    if record is None or not same_settings(record.get("settings"), settings):
        return None
    return record.get("result")


def restate_record(folder: str | Path, settings: Mapping[str, Any], normalise: Callable[[Any], Any]) -> None:
    """Record ``settings`` in ``folder``'s stage when its recorded ones differ only in what ``normalise`` drops.

    For a change in what a stage's settings hold: a stage recorded before it
    (finished or not) is kept, as :func:`open_stage` would then keep it, rather
    than emptied because its record holds entries its work never read.
    ``normalise`` maps plain JSON settings to the entries that decide the result.
    """
    record = _read_record(folder)
    recorded = None if record is None else record.get("settings")
    if not isinstance(recorded, dict) or same_settings(recorded, settings):
        return
    if same_settings(normalise(json_safe(recorded)), normalise(json_safe(settings))):
        record["settings"] = json_safe(settings)
        atomic_write_text(Path(folder) / STAGE_RECORD, json.dumps(record, indent=2) + "\n")


def open_stage(
    folder: str | Path, settings: Mapping[str, Any], *, adopt_unrecorded: bool = False
) -> dict | None:
    """The result of a finished stage with ``settings`` in ``folder``, else None, with the folder ready.

    When ``folder`` holds a stage with other settings (or, unless
    ``adopt_unrecorded``, anything without a record) it is emptied first, so
    the stage starts afresh; when it holds an unfinished stage with the same
    settings it is kept, so the stage resumes from its checkpoints. Either way
    the settings are recorded before the stage runs. ``adopt_unrecorded``
    keeps a folder written before stages were recorded, as if its settings
    were these.
    """
    folder = Path(folder)
    record_path = folder / STAGE_RECORD
    if record_path.is_file():
        finished = finished_stage(folder, settings)
        if finished is not None:
            return finished
        record = _read_record(folder)
        if not same_settings(None if record is None else record.get("settings"), settings):
            shutil.rmtree(folder)
    elif folder.exists() and not adopt_unrecorded:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_path, json.dumps({"settings": json_safe(settings)}, indent=2) + "\n")
    return None


def finish_stage(folder: str | Path, settings: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """Record that the stage in ``folder`` finished with ``result``."""
    record = {"settings": json_safe(settings), "result": json_safe(result)}
    atomic_write_text(Path(folder) / STAGE_RECORD, json.dumps(record, indent=2) + "\n")
