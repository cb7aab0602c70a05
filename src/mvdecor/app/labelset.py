"""``labels.json``, the folder's label set: read strictly, and replaced (with a backup) when malformed.

The folder adapter reads the label names from ``labels.json`` (a list, or
``{"labels": [...]}``); the app adds ``"colors"`` (one ``#rrggbb`` per name).
A file written by hand can be broken in many ways; the app must still start
and say what is wrong, so this module reads the file strictly and reports
every problem as a :class:`LabelSetFileError` naming the file and the reason:

- not JSON (with the line and column of the first error), or not UTF-8 text;
- wrong types: not a list or an object, no ``"labels"`` list, a name that is
  not a string, ``"colors"`` not a list;
- empty or duplicate names;
- bad colours (anything but ``#rrggbb``).

Fewer colours than names are allowed (the rest come from the palette), as are
other keys (kept when the app saves). :func:`replace_label_set_file` writes a
fresh file over a malformed one, keeping the old bytes as
``labels.json.bak-<timestamp>`` first; both writes are atomic.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvdecor.data.datasets import FolderDataset
from mvdecor.errors import LabelError
from mvdecor.fileio import atomic_path

__all__ = [
    "LABEL_SET_FILE",
    "LabelSetDocument",
    "LabelSetFileError",
    "LenientFolderDataset",
    "backup_path",
    "parse_label_set",
    "read_label_set_file",
    "replace_label_set_file",
]

#: The label set's file, at the top of the folder.
LABEL_SET_FILE = "labels.json"
#: What a backup of a replaced label set is called: ``labels.json.bak-20240131-142501``.
BACKUP_INFIX = ".bak-"
COLOR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")


class LabelSetFileError(LabelError):
    """``labels.json`` cannot be used (invalid JSON, wrong types, duplicate names, bad colours).

    ``path`` is the file as shown to the user (relative to the folder) and
    ``reason`` what is wrong with it.
    """


@dataclass(frozen=True)
class LabelSetDocument:
    """A well-formed ``labels.json``.

    Attributes
    ----------
    names : the label names, in label order
    colors : their colours (``#rrggbb``); may be shorter than ``names``
    extra : the file's other keys (kept when the app writes the file)
    """

    names: tuple[str, ...]
    colors: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def parse_label_set(text: str | bytes, shown: str = LABEL_SET_FILE) -> LabelSetDocument:
    """Read the text of a ``labels.json`` strictly.

    Parameters
    ----------
    text : the file's contents
    shown : the file's name in error messages

    Returns
    -------
    LabelSetDocument

    Raises
    ------
    LabelSetFileError
        Invalid JSON, wrong types, empty or duplicate names, or bad colours.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LabelSetFileError(shown, f"not UTF-8 text (byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelSetFileError(
            shown, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    extra: dict[str, Any] = {}
    raw_colors: object = None
    if isinstance(doc, list):
        raw_names: object = doc
    elif isinstance(doc, dict):
        if "labels" not in doc:
            raise LabelSetFileError(shown, 'no "labels" key (expected {"labels": [names], "colors": [...]})')
        raw_names, raw_colors = doc["labels"], doc.get("colors")
        extra = {k: v for k, v in doc.items() if k not in ("labels", "colors")}
    else:
        raise LabelSetFileError(
            shown, f'expected a list of names or {{"labels": [...]}}, found {_type_name(doc)}'
        )
    if not isinstance(raw_names, list):
        raise LabelSetFileError(shown, f'"labels" must be a list of names, found {_type_name(raw_names)}')
    names: list[str] = []
    first_seen: dict[str, int] = {}
    for index, name in enumerate(raw_names):
        if not isinstance(name, str):
            raise LabelSetFileError(
                shown, f"label {index} is {_type_name(name)} ({json.dumps(name)[:40]}), not a name in quotes"
            )
        if not name.strip():
            raise LabelSetFileError(shown, f"label {index} has an empty name")
        if name.strip() in first_seen:
            raise LabelSetFileError(
                shown,
                f"duplicate label name {name.strip()!r} (labels {first_seen[name.strip()]} and {index})",
            )
        first_seen[name.strip()] = index
        names.append(name.strip())
    colors: list[str] = []
    if raw_colors is not None:
        if not isinstance(raw_colors, list):
            raise LabelSetFileError(
                shown, f'"colors" must be a list of "#rrggbb", found {_type_name(raw_colors)}'
            )
        for index, color in enumerate(raw_colors):
            if not isinstance(color, str) or not COLOR_PATTERN.match(color):
                raise LabelSetFileError(
                    shown, f'bad colour {json.dumps(color)[:40]} for label {index} (expected "#rrggbb")'
                )
            colors.append(color)
    return LabelSetDocument(tuple(names), tuple(colors[: len(names)]), extra)


def read_label_set_file(path: Path, shown: str = LABEL_SET_FILE) -> LabelSetDocument | None:
    """The label set in ``path``, or None when there is no such file.

    Raises
    ------
    LabelSetFileError
        The file is unreadable or malformed (:func:`parse_label_set`).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LabelSetFileError(shown, f"unreadable ({exc.strerror or exc})") from None
    return parse_label_set(data, shown)


def backup_path(path: Path, when: float | None = None) -> Path:
    """A free name for the backup of ``path``: ``<name>.bak-<YYYYmmdd-HHMMSS>`` (``-2``, ... when taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    candidate = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}")
    number = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}-{number}")
        number += 1
    return candidate


def replace_label_set_file(path: Path, names: list[str], colors: list[str]) -> Path | None:
    """Write a fresh label set to ``path``, keeping its previous bytes aside first.

    Parameters
    ----------
    path : the ``labels.json`` to replace
    names, colors : the new label set (one ``#rrggbb`` per name)

    Returns
    -------
    Path or None
        The backup (``labels.json.bak-<timestamp>``), or None when ``path`` did not exist.

    Notes
    -----
    The backup is written (atomically) before the new file replaces the old
    one (atomically too), so at every moment ``path`` holds either the old
    bytes or the new ones, and the old bytes are on disk before they leave ``path``.
    """
    backup = None
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    if old is not None:
        backup = backup_path(path)
        with atomic_path(backup) as tmp:
            tmp.write_bytes(old)
    text = json.dumps({"labels": list(names), "colors": list(colors)}, indent=2) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return backup


class LenientFolderDataset(FolderDataset):
    """The folder adapter, minus its refusal of a malformed ``labels.json``.

    :class:`~mvdecor.data.datasets.FolderDataset` raises on a ``labels.json``
    it cannot read, which would stop the app before it can tell the user why;
    this one reads the names strictly (:func:`parse_label_set`) and has none
    when the file is malformed (the app reports the error and offers a fix).
    """

    def _read_label_names(self) -> tuple[str, ...]:
        path = self.root / LABEL_SET_FILE
        if not path.is_file():
            return super()._read_label_names()  # label_names.txt, or none
        try:
            doc = read_label_set_file(path)
        except LabelSetFileError:
            return ()
        return () if doc is None else doc.names
