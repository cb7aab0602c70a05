"""Reading part-label files and label-name files, and checking labels against a mesh.

:func:`load_labels` reads per-face (or per-vertex) integer labels from ``.txt``,
``.seg`` or ``.npy`` files; :func:`load_label_names` reads a label vocabulary from
``.json`` or ``.txt`` files; :func:`check_unnamed_label_range` bounds label values
by :data:`MAX_UNNAMED_LABELS` when no names are given. Problems raise
:class:`~mvdecor.errors.LabelError` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvdecor.data.io._common import PathLike, _is_number, _one_line
from mvdecor.data.mesh import LabelledMesh, vertex_labels_to_face_labels
from mvdecor.errors import LabelError

#: Label file extensions :func:`load_labels` reads.
LABEL_EXTENSIONS: tuple[str, ...] = (".txt", ".seg", ".npy")
#: Label-name file extensions :func:`load_label_names` reads.
LABEL_NAME_EXTENSIONS: tuple[str, ...] = (".json", ".txt")
#: Without a label-name file the vocabulary is labels ``0 .. max``: a stray huge value
#: (``1e9``) would mean a billion classes, so label values must stay below this.
MAX_UNNAMED_LABELS = 1024


def _as_int_labels(values: np.ndarray, where: PathLike | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise LabelError(where, f"labels must be a 1-D sequence, got shape {array.shape}")
    if array.dtype == bool:
        raise LabelError(where, "labels must be integers, got booleans")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    try:
        floats = array.astype(np.float64)
    except (TypeError, ValueError):
        raise LabelError(where, f"labels must be integers, got {array.dtype}") from None
    if not np.isfinite(floats).all() or (floats != np.round(floats)).any():
        raise LabelError(where, "labels must be integers (found non-integer values)")
    return floats.astype(np.int64)


def _check_label_file(path: Path, allowed: tuple[str, ...], what: str) -> str:
    if not path.exists():
        raise LabelError(path, "no such file")
    if path.is_dir():
        raise LabelError(path, f"is a directory, not a {what} file")
    ext = path.suffix.lower()
    if ext not in allowed:
        raise LabelError(
            path, f"unsupported {what} file extension {ext or '(none)'!r} (supported: {', '.join(allowed)})"
        )
    return ext


def load_labels(path: PathLike) -> np.ndarray:
    """Read per-face (or per-vertex) integer labels from a file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.txt`` or ``.seg`` file holding whitespace-separated integers (one
        per line is usual), or a ``.npy`` file holding a 1-D integer array.
        Integer-valued floats (``3.0``) are accepted.

    Returns
    -------
    (N,) int64
        The labels, in file order.

    Raises
    ------
    LabelError
        The file is missing, has an unsupported extension, or holds
        something other than integers.
    """
    path = Path(path)
    ext = _check_label_file(path, LABEL_EXTENSIONS, "label")
    try:
        if ext == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, EOFError) as exc:
                raise LabelError(path, f"cannot read the .npy file ({_one_line(exc)})") from None
            return _as_int_labels(array, path)
        tokens = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError as exc:
        raise LabelError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    try:
        return np.array(tokens, dtype=np.int64)
    except ValueError:
        pass
    try:
        floats = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise LabelError(path, f"not an integer label: {bad[:30]!r}") from None
    return _as_int_labels(floats, path)


def load_label_names(path: PathLike) -> tuple[str, ...]:
    """Read a label vocabulary (the name of label 0, 1, ...).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.json`` file holding a list of names or an object whose
        ``"labels"`` key holds that list, or a ``.txt`` file with one name per
        line (blank lines are skipped).

    Returns
    -------
    tuple of str

    Raises
    ------
    LabelError
        The file is missing, unreadable, or not in one of these forms.
    """
    path = Path(path)
    ext = _check_label_file(path, LABEL_NAME_EXTENSIONS, "label-name")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LabelError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    if ext == ".txt":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LabelError(path, f"invalid JSON ({_one_line(exc)})") from None
    names = doc.get("labels") if isinstance(doc, dict) else doc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LabelError(path, 'expected a JSON list of names or an object with a "labels" list of names')
    return tuple(names)


def _resolve_labels(
    labels: np.ndarray | Sequence[int] | PathLike,
    mesh: LabelledMesh,
    mesh_path: Path,
    names: tuple[str, ...],
    names_where: PathLike | None,
) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        where: PathLike = Path(labels)
        array = load_labels(where)
    else:
        where = mesh_path
        array = _as_int_labels(np.asarray(labels), where)
    n, n_faces, n_vertices = len(array), mesh.num_faces, mesh.num_vertices
    if n != n_faces:
        if n != n_vertices:
            raise LabelError(
                where,
                f"{n} labels for {n_faces} faces (and {n_vertices} vertices) of {mesh_path.name}; "
                "labels must be one per (triangulated) face or one per vertex",
            )
        array = vertex_labels_to_face_labels(mesh.faces, array)
    if len(array) and array.min() < -1:
        raise LabelError(where, f"label {int(array.min())} is negative (only -1 = unlabelled is allowed)")
    if names and len(array) and array.max() >= len(names):
        raise LabelError(
            names_where or where,
            f"label {int(array.max())} has no name ({len(names)} label names given)",
        )
    check_unnamed_label_range(array, where, named=bool(names))
    return array


def check_unnamed_label_range(labels: np.ndarray, where: PathLike | None, named: bool = False) -> None:
    """Reject label values of :data:`MAX_UNNAMED_LABELS` or more when no names bound the vocabulary.

    Raises
    ------
    LabelError
        Naming ``where`` and the offending value.
    """
    if not named and len(labels) and int(labels.max()) >= MAX_UNNAMED_LABELS:
        raise LabelError(
            where,
            f"label {int(labels.max())} is too large: without a label-name file, labels must be "
            f"0 to {MAX_UNNAMED_LABELS - 1} (one class per value up to the largest)",
        )
