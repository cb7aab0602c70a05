"""The labelling app's view of one folder: meshes and their state, safe paths, versioned saves.

An :class:`AppFolder` wraps a folder that :class:`~mvdecor.data.datasets.FolderDataset`
reads (meshes, optional per-face label files, ``labels.json``) and is the only
place the app touches the disk. Every path it reads or writes is resolved and
checked to lie inside the folder (:meth:`AppFolder.safe_path`), so ``..``,
absolute paths and symbolic links that point outside are refused
(:class:`UnsafePathError`, a :class:`~mvdecor.errors.FileError`).

Files it writes, each atomically (:func:`mvdecor.fileio.atomic_path`: a
temporary beside the target, then ``os.replace``):

- user labels, in the file the folder adapter reads: the mesh's existing label
  file (``.txt``/``.seg`` one integer per line, ``.npy``), else
  ``<shape>.labels.txt`` beside a top-level mesh or ``face_labels.txt`` in a
  mesh's own sub-folder;
- ``labels.json``: ``{"labels": [names], "colors": ["#rrggbb", ...]}`` (the
  adapter reads the ``labels`` key); a malformed one does not stop the app: it
  is reported (:meth:`AppFolder.label_set_error`) and can be replaced by a
  fresh label set, the old file kept as ``labels.json.bak-<timestamp>``
  (:meth:`AppFolder.reset_label_set`, :mod:`mvdecor.app.labelset`);
- predictions, apart from the labels: ``predictions/<shape>.labels.npy``
  (``(F,)`` int64), ``predictions/<shape>.confidence.npy`` (``(F,)`` float32)
  and ``predictions/<shape>.json`` (method, time, label names);
  ``predictions/accepted.json`` lists the shapes whose labels came from an
  accepted prediction;
- exports, under ``exports/<shape>/`` (:mod:`mvdecor.app.exports`);
- meshes added from the page, through :mod:`mvdecor.app.uploads` (staged in a
  hidden folder inside this one, published only once they load).

Saves are versioned: the version of a shape's labels (or of the label set) is
a hash of its file's bytes. A client sends the version it loaded; when the
file changed since (another tab, another program), the save is refused with
:class:`VersionConflictError` and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvdecor.app.labelset import (
    LABEL_SET_FILE,
    LabelSetFileError,
    LenientFolderDataset,
    read_label_set_file,
    replace_label_set_file,
)
from mvdecor.data.datasets import FolderDataset
from mvdecor.data.io import (
    MAX_UNNAMED_LABELS,
    load_labels,
    load_mesh,
)
from mvdecor.data.mesh import LabelledMesh, vertex_labels_to_face_labels
from mvdecor.errors import FileError, LabelError, MvDecorError
from mvdecor.fileio import atomic_path
from mvdecor.palette import label_palette

__all__ = [
    "ABSENT_VERSION",
    "STATES",
    "AppFolder",
    "MeshEntry",
    "NotFoundError",
    "UnsafePathError",
    "VersionConflictError",
]

#: The version of a file that does not exist (no labels saved yet).
ABSENT_VERSION = "none"
#: What a mesh's list entry says about it.
STATES = ("unlabelled", "labelled", "predicted", "corrected", "error")
#: Sub-folders the app writes into (never read as shapes: they hold no mesh file).
PREDICTIONS_DIR = "predictions"
EXPORTS_DIR = "exports"
ACCEPTED_FILE = "accepted.json"
#: Names of label files beside a top-level mesh / in a mesh's sub-folder that the app creates.
_FLAT_LABEL_SUFFIX = ".labels.txt"
_FOLDER_LABEL_NAME = "face_labels.txt"
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
#: What the page is told to do about a malformed labels.json.
_LABEL_SET_ADVICE = "start a fresh label set (the old file is kept) or fix the file and reload"


class UnsafePathError(FileError):
    """A path that would leave the app's folder (``..``, an absolute path, a symbolic link out)."""


class VersionConflictError(MvDecorError):
    """A save based on an out-of-date version (the file changed since the client loaded it)."""

    def __init__(self, what: str, expected: str, current: str) -> None:
        self.expected, self.current = expected, current
        super().__init__(
            f"{what} changed since you loaded it (you had version {expected}, the folder now has "
            f"{current}): reload to see the other change, then save again"
        )


class NotFoundError(MvDecorError):
    """No such shape (or prediction) in the folder."""


def file_version(path: Path) -> str:
    """A short hash of the file's bytes, or :data:`ABSENT_VERSION` when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ABSENT_VERSION
    return hashlib.sha256(data).hexdigest()[:16]


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _label_set_error_dict(error: LabelSetFileError) -> dict[str, str]:
    """What the page shows of a malformed ``labels.json``: the file, the reason, what to do."""
    return {
        "file": error.path or LABEL_SET_FILE,
        "reason": error.reason,
        "message": str(error),
        "advice": _LABEL_SET_ADVICE,
    }


@dataclass(frozen=True)
class MeshEntry:
    """One mesh of the folder, as the list shows it.

    Attributes
    ----------
    id : the shape id (the folder adapter's)
    file : the mesh file, relative to the folder
    state : one of :data:`STATES`
    faces, vertices : counts (0 when the mesh cannot be read)
    labelled_faces : faces with a user label (``>= 0``)
    has_prediction : a prediction is saved for it
    error : why the mesh (or its label file) cannot be read; None when fine
    """

    id: str
    file: str
    state: str
    faces: int = 0
    vertices: int = 0
    labelled_faces: int = 0
    has_prediction: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class AppFolder:
    """A dataset folder opened for labelling.

    Parameters
    ----------
    root : the folder (any folder :class:`~mvdecor.data.datasets.FolderDataset` reads)

    Notes
    -----
    Meshes are read with the adapter's loader and cached by file size and
    modification time, label files by their content hash (their version); the
    folder is re-scanned on every listing, so files added or removed by hand
    show up. One lock serialises the check-and-write
    of every save, so two requests cannot both pass a version check.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileError(root, "not a folder")
        self.lock = threading.RLock()
        self._cache: dict[str, tuple[tuple, LabelledMesh | None, str | None]] = {}
        self._label_cache: dict[str, tuple[tuple, np.ndarray]] = {}
        self._dataset: FolderDataset = LenientFolderDataset(self.root)

    # ------------------------------------------------------------------ paths
    def safe_path(self, relative: str | Path, *, must_exist: bool = False) -> Path:
        """``root / relative`` resolved, refused when it leaves the folder.

        Raises
        ------
        UnsafePathError
            ``relative`` is absolute, climbs out with ``..``, or resolves
            (through a symbolic link) outside the folder.
        """
        text = str(relative)
        candidate = Path(text)
        if candidate.is_absolute() or text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text):
            raise UnsafePathError(text, "absolute paths are not allowed; give a path inside the folder")
        if ".." in candidate.parts or "\x00" in text:
            raise UnsafePathError(text, "'..' is not allowed in a path")
        return self.check_inside(self.root / candidate, must_exist=must_exist)

    def check_inside(self, path: Path, *, must_exist: bool = False) -> Path:
        """``path`` (absolute) resolved through links; refused unless it lies inside the folder."""
        resolved = Path(path).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UnsafePathError(path, "points outside the app's folder (a symbolic link?)")
        if must_exist and not resolved.exists():
            raise NotFoundError(f"{path}: no such file")
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` relative to the folder, with ``/`` separators."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).name

    # -------------------------------------------------------------- the list
    def refresh(self) -> FolderDataset:
        """Re-scan the folder (new or removed meshes and label files)."""
        self._dataset = LenientFolderDataset(self.root)
        return self._dataset

    @property
    def dataset(self) -> FolderDataset:
        return self._dataset

    def shape_ids(self) -> list[str]:
        return self._dataset.shape_ids()

    def _entry_paths(self, shape_id: str) -> tuple[Path, Path | None]:
        # The adapter's own table: the mesh file and the label file it reads for this id.
        if shape_id not in self._dataset.shape_ids():
            raise NotFoundError(f"no mesh {shape_id!r} in {self.root}")
        labels_path = self._dataset.label_path(shape_id)
        return Path(self._dataset.mesh_path(shape_id)), None if labels_path is None else Path(labels_path)

    def mesh_file(self, shape_id: str) -> Path:
        """The mesh file of ``shape_id`` (checked to lie inside the folder)."""
        return self.check_inside(self._entry_paths(shape_id)[0])

    def label_file(self, shape_id: str) -> Path:
        """The file ``shape_id``'s labels are read from and saved to (it may not exist yet)."""
        mesh_path, existing = self._entry_paths(shape_id)
        if existing is not None and existing.name != "vertex_labels.txt":
            # Keep the user's file and format; per-vertex labels get a per-face file beside them,
            # which the adapter prefers.
            return self.check_inside(existing)
        if mesh_path.parent != self.root:
            return self.check_inside(mesh_path.parent / _FOLDER_LABEL_NAME)
        return self.check_inside(mesh_path.with_name(mesh_path.stem + _FLAT_LABEL_SUFFIX))

    def load_mesh(self, shape_id: str) -> LabelledMesh:
        """The mesh of ``shape_id`` as read (not normalised), without labels; cached.

        Raises
        ------
        NotFoundError, UnsafePathError, MeshLoadError, InvalidMeshError
        """
        path = self.mesh_file(shape_id)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        cached = self._cache.get(shape_id)
        if cached is not None and cached[0] == key:
            if cached[1] is None:
                raise FileError(self.relative(path), cached[2] or "unreadable")
            return cached[1]
        try:
            mesh = load_mesh(path, name=shape_id)
        except FileError as exc:
            self._cache[shape_id] = (key, None, exc.reason)
            raise FileError(self.relative(path), exc.reason) from None
        self._cache[shape_id] = (key, mesh, None)
        return mesh

    def read_labels(self, shape_id: str, mesh: LabelledMesh | None = None) -> tuple[np.ndarray | None, str]:
        """``(face labels or None, version)`` of ``shape_id``'s saved user labels.

        Per-vertex label files are converted to per-face by majority, as the adapter does.

        Raises
        ------
        LabelError
            The label file is unreadable or does not fit the mesh.
        """
        path = self.label_file(shape_id)
        version = file_version(path)
        if version == ABSENT_VERSION:
            return None, version
        mesh = mesh if mesh is not None else self.load_mesh(shape_id)
        key = (str(path), version, mesh.num_faces, mesh.num_vertices)
        cached = self._label_cache.get(shape_id)
        if cached is not None and cached[0] == key:  # same bytes, same mesh: parsed before
            return cached[1].copy(), version
        labels = load_labels(path)
        if len(labels) != mesh.num_faces:
            if len(labels) == mesh.num_vertices:
                labels = vertex_labels_to_face_labels(mesh.faces, labels)
            else:
                raise LabelError(
                    self.relative(path), f"{len(labels)} labels for the mesh's {mesh.num_faces} faces"
                )
        labels = labels.astype(np.int64)
        self._label_cache[shape_id] = (key, labels.copy())
        return labels, version

    def accepted(self) -> dict[str, str]:
        """Shape id -> time its labels came from an accepted prediction."""
        path = self.root / PREDICTIONS_DIR / ACCEPTED_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def entries(self) -> list[MeshEntry]:
        """Every mesh of the folder with its state; a mesh that cannot be read is an ``error`` entry."""
        self.refresh()
        accepted = self.accepted()
        out = []
        for shape_id in self.shape_ids():
            out.append(self.entry(shape_id, accepted))
        return out

    def entry(self, shape_id: str, accepted: dict[str, str] | None = None) -> MeshEntry:
        """The list entry of one mesh (``accepted``: :meth:`accepted`, read when not given)."""
        accepted = self.accepted() if accepted is None else accepted
        mesh_path = self._entry_paths(shape_id)[0]
        file = self.relative(mesh_path) if self.root in mesh_path.parents else mesh_path.name
        try:
            mesh = self.load_mesh(shape_id)
        except MvDecorError as exc:
            return MeshEntry(shape_id, file, "error", error=str(exc))
        has_prediction = self.prediction_files(shape_id)["labels"].is_file()
        base = {"faces": mesh.num_faces, "vertices": mesh.num_vertices, "has_prediction": has_prediction}
        try:
            labels, _ = self.read_labels(shape_id, mesh)
        except MvDecorError as exc:
            return MeshEntry(shape_id, file, "error", **base, error=f"labels: {exc}")
        labelled = 0 if labels is None else int((labels >= 0).sum())
        if labelled:
            state = "corrected" if shape_id in accepted else "labelled"
        else:
            state = "predicted" if has_prediction else "unlabelled"
        return MeshEntry(shape_id, file, state, labelled_faces=labelled, **base)

    # ------------------------------------------------------------ label set
    def label_set_file(self) -> Path:
        return self.check_inside(self.root / LABEL_SET_FILE)

    def label_set_error(self) -> LabelSetFileError | None:
        """Why ``labels.json`` cannot be used (invalid JSON, wrong types, ...), or None when it can."""
        try:
            read_label_set_file(self.label_set_file())
        except LabelSetFileError as exc:
            return exc
        return None

    def label_set(self) -> dict[str, object]:
        """``{"names", "colors", "version", "named", "error"}``: the vocabulary and its colours.

        Without ``labels.json`` or ``label_names.txt``, names are the label values
        found in the label files (``"0"``, ``"1"``, ...) and ``named`` is False.
        With a malformed ``labels.json`` too, and ``error`` says what is wrong:
        ``{"file", "reason", "message", "advice"}`` (None when the file is fine).
        """
        path = self.label_set_file()
        names = list(self.refresh().label_names)
        colors: list[str] = []
        error = None
        try:
            doc = read_label_set_file(path)
        except LabelSetFileError as exc:
            names, error = [], exc
        else:
            colors = list(doc.colors) if doc is not None else []
        named = bool(names)
        if not names:
            names = self._numbered_names(refresh=False)
        palette = [_hex(c) for c in label_palette(max(len(names), 1))]
        colors = (colors + palette[len(colors) :])[: len(names)]
        return {
            "names": names,
            "colors": colors,
            "version": file_version(path),
            "named": named,
            "error": None if error is None else _label_set_error_dict(error),
        }

    def _numbered_names(self, refresh: bool = True) -> list[str]:
        """``"0"``, ``"1"``, ...: one name per label value the saved label files use."""
        return [str(i) for i in range(self._largest_saved_label(refresh=refresh) + 1)]

    def save_label_set(self, names: Sequence[str], colors: Sequence[str], version: str) -> dict[str, object]:
        """Write ``labels.json`` after checking ``version``; returns the new label set.

        Raises
        ------
        VersionConflictError
            ``labels.json`` changed since ``version`` was read.
        LabelSetFileError
            ``labels.json`` is malformed: it is replaced only by :meth:`reset_label_set`
            (which keeps a backup) or fixed by hand.
        LabelError
            Empty or duplicate names, bad colours, or fewer names than the
            labels saved in the folder use.
        """
        names = [str(n).strip() for n in names]
        if any(not n for n in names):
            raise LabelError(LABEL_SET_FILE, "label names must not be empty")
        if len(set(names)) != len(names):
            raise LabelError(LABEL_SET_FILE, "label names must be distinct")
        if len(colors) != len(names) or not all(isinstance(c, str) and _COLOR.match(c) for c in colors):
            raise LabelError(LABEL_SET_FILE, "one colour #rrggbb per label name is needed")
        path = self.label_set_file()
        with self.lock:
            current = file_version(path)
            if current != version:
                raise VersionConflictError(f"the label set ({LABEL_SET_FILE})", version, current)
            try:
                doc = read_label_set_file(path)
            except LabelSetFileError as exc:
                raise LabelSetFileError(exc.path, f"{exc.reason}; {_LABEL_SET_ADVICE}") from None
            top = self._largest_saved_label()
            if top >= len(names):
                raise LabelError(
                    LABEL_SET_FILE,
                    f"label {top} is used by saved labels; keep at least {top + 1} names",
                )
            out: dict[str, object] = dict(doc.extra) if doc is not None else {}
            out.update({"labels": names, "colors": list(colors)})
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        return self.label_set()

    def reset_label_set(self, version: str) -> tuple[dict[str, object], str | None]:
        """Replace a malformed ``labels.json`` by a fresh label set, keeping the old file aside.

        The fresh set names the label values the saved label files use
        (``"0"``, ``"1"``, ...; none when nothing is labelled yet), with the
        palette's colours. The old file is first written to
        ``labels.json.bak-<timestamp>``; both writes are atomic.

        Parameters
        ----------
        version : the version of the malformed file the user saw (``label_set()["version"]``)

        Returns
        -------
        tuple
            The new label set (:meth:`label_set`) and the backup's path relative
            to the folder (None when there was no file).

        Raises
        ------
        VersionConflictError
            The file changed since ``version`` (fixed by hand meanwhile?): nothing is written.
        LabelError
            The file is not malformed (edit the label set in the page instead).
        """
        path = self.label_set_file()
        with self.lock:
            current = file_version(path)
            if current != version:
                raise VersionConflictError(f"the label set ({LABEL_SET_FILE})", version, current)
            if self.label_set_error() is None:
                raise LabelError(
                    LABEL_SET_FILE, "is readable: nothing to replace (edit the label set in the page instead)"
                )
            names = self._numbered_names()
            colors = [_hex(c) for c in label_palette(max(len(names), 1))][: len(names)]
            backup = replace_label_set_file(path, names, colors)
        return self.label_set(), None if backup is None else self.relative(backup)

    def _largest_saved_label(self, refresh: bool = True) -> int:
        """The largest label value in the saved label files (-1 when none); unreadable files skipped."""
        top = -1
        for shape_id in (self.refresh() if refresh else self._dataset).shape_ids():
            try:
                labels, _ = self.read_labels(shape_id)
            except MvDecorError:
                continue
            if labels is not None and len(labels):
                top = max(top, int(labels.max()))
        return top

    def num_classes(self) -> int:
        return len(self.label_set()["names"])  # type: ignore[arg-type]

    # -------------------------------------------------------------- labels
    def check_labels(self, labels: Sequence[int] | np.ndarray, num_faces: int) -> np.ndarray:
        """``labels`` as ``(F,)`` int64, checked: one per face, ``-1`` or a known label."""
        try:
            array = np.asarray(labels, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise LabelError(None, "labels must be integers") from None
        if len(array) != num_faces:
            raise LabelError(None, f"{len(array)} labels for {num_faces} faces (one per face needed)")
        classes = self.num_classes() or MAX_UNNAMED_LABELS
        if len(array) and (array.min() < -1 or array.max() >= classes):
            raise LabelError(
                None,
                f"labels must be -1 (unlabelled) or 0 to {classes - 1}, got {int(array.min())}..{int(array.max())}",
            )
        return array

    def save_labels(self, shape_id: str, labels: Sequence[int] | np.ndarray, version: str) -> str:
        """Save ``shape_id``'s per-face labels atomically, if ``version`` is still current.

        Returns
        -------
        str
            The new version.

        Raises
        ------
        VersionConflictError
            The label file changed since ``version`` (nothing is written).
        """
        mesh = self.load_mesh(shape_id)
        array = self.check_labels(labels, mesh.num_faces)
        path = self.label_file(shape_id)
        with self.lock:
            current = file_version(path)
            if current != version:
                raise VersionConflictError(f"the labels of {shape_id}", version, current)
            return self._write_labels(path, array)

    def _write_labels(self, path: Path, labels: np.ndarray) -> str:
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".npy":
                with open(tmp, "wb") as handle:
                    np.save(handle, labels.astype(np.int64))
            else:
                tmp.write_text("\n".join(map(str, labels.tolist())) + "\n", encoding="utf-8")
        self.refresh()
        return file_version(path)

    # ---------------------------------------------------------- predictions
    def prediction_files(self, shape_id: str) -> dict[str, Path]:
        """Where the prediction of ``shape_id`` is kept (the files may not exist)."""
        folder = self.check_inside(self.root / PREDICTIONS_DIR)
        return {
            "labels": folder / f"{shape_id}.labels.npy",
            "confidence": folder / f"{shape_id}.confidence.npy",
            "info": folder / f"{shape_id}.json",
        }

    def save_prediction(
        self,
        shape_id: str,
        labels: np.ndarray,
        confidence: np.ndarray,
        info: dict[str, object],
    ) -> None:
        """Save a prediction (labels, per-face confidence in [0, 1], and what made it), atomically."""
        labels = np.asarray(labels, np.int64)
        confidence = np.asarray(confidence, np.float32)
        if labels.shape != confidence.shape:
            raise ValueError("labels and confidence must have the same shape")
        files = self.prediction_files(shape_id)
        for key, array in (("labels", labels), ("confidence", confidence)):
            with atomic_path(files[key]) as tmp, open(tmp, "wb") as handle:
                np.save(handle, array)
        record = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        with atomic_path(files["info"]) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def load_prediction(self, shape_id: str) -> dict[str, object] | None:
        """``{"labels", "confidence", "info"}`` of the saved prediction, or None."""
        files = self.prediction_files(shape_id)
        if not files["labels"].is_file():
            return None
        try:
            labels = np.load(files["labels"], allow_pickle=False).astype(np.int64)
            confidence = (
                np.load(files["confidence"], allow_pickle=False).astype(np.float32)
                if files["confidence"].is_file()
                else np.ones(len(labels), np.float32)
            )
            info = json.loads(files["info"].read_text(encoding="utf-8")) if files["info"].is_file() else {}
        except (OSError, ValueError) as exc:
            raise LabelError(self.relative(files["labels"]), f"unreadable prediction ({exc})") from None
        return {"labels": labels, "confidence": confidence, "info": info}

    def accept_prediction(self, shape_id: str, version: str) -> str:
        """Turn the saved prediction of ``shape_id`` into its labels (versioned, as :meth:`save_labels`).

        The shape's state becomes ``corrected``. Returns the labels' new version.
        """
        prediction = self.load_prediction(shape_id)
        if prediction is None:
            raise NotFoundError(f"no prediction for {shape_id!r}; run 'segment the rest' first")
        with self.lock:
            new_version = self.save_labels(shape_id, prediction["labels"], version)  # type: ignore[arg-type]
            accepted = self.accepted()
            accepted[shape_id] = time.strftime("%Y-%m-%dT%H:%M:%S")
            path = self.check_inside(self.root / PREDICTIONS_DIR / ACCEPTED_FILE)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(accepted, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return new_version
