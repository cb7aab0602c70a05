"""COSEG and Princeton Segmentation Benchmark (PSB) style folders.

Both are folders of meshes (usually ``.off``) with per-face part labels, in one
of two label formats:

- **integer** ``<stem>.seg`` files (COSEG's ``gt/`` files, PSB ``.seg`` files):
  one integer per line, the label of face ``i`` of the mesh file on line ``i``;
- **named** ``<stem>_labels.txt`` or ``<stem>.labels`` files (the labelled PSB of
  Kalogerakis et al. 2010): alternating lines, a label name, then the 1-based
  indices of the faces carrying it (whitespace separated). A line made only of
  integers continues the current label's index list, so a label whose list is
  empty or wrapped over several lines is read correctly; a label *name* made
  only of digits is therefore not supported.

Layouts (any mesh extension :func:`~mvdecor.data.io.load_mesh` reads)::

    ROOT/123.off + ROOT/123.seg                  labels beside the meshes
    ROOT/shapes/123.off + ROOT/gt/123.seg        COSEG's download layout
    ROOT/<Category>/shapes/*.off + gt/*.seg      one sub-folder per category
    ROOT/<Category>/*.off + *_labels.txt         (PSB: one folder per class)

For a mesh ``<stem>``, labels are looked for in the category's ``gt/`` folder,
then beside the mesh, then in the category folder, as ``<stem>.seg``,
``<stem>_labels.txt`` or ``<stem>.labels``. Meshes without a label file are
kept, unlabelled (``face_labels`` is None; one warning lists them): they are
still useful for self-supervised pre-training.

Categories: meshes directly in ``ROOT`` (or ``ROOT/shapes``) form one category
named after ``ROOT`` and keep their file stem as shape id; each sub-folder
holding meshes (or a ``shapes/`` folder of meshes) is a category named after
the sub-folder, with shape ids ``<Category>_<stem>``.

Label vocabularies, per category:

- named files: the sorted union of the label names in the category's files;
- integer files: the names in ``labels.json`` or ``label_names.txt`` of the
  category folder (else of ``ROOT``; see
  :func:`~mvdecor.data.io.load_label_names`), else ``part_0 ... part_<max>``.
  Integers are kept as they are, except that COSEG's 1-based labels are shifted
  to 0-based: when the smallest label over the whole category is 1 and either
  no names file exists or it holds exactly ``max`` names (one per label
  ``1..max``). A names file with ``max + 1`` or more names says the labels are
  0-based already, and they are kept. ``-1`` always means unlabelled.

Faces that a named label file does not list get ``-1`` (unlabelled), with an
:class:`FaceLabelWarning`. Labels must be per *triangle* in file order:
COSEG and PSB meshes are triangle meshes; a polygon mesh would be
fan-triangulated by the loader and its face count would no longer match.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvdecor.data.datasets import DATASETS, ShapeDataset, parse_options, safe_shape_id
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import ConfigError, LabelError, MeshLoadError

__all__ = [
    "CosegDataset",
    "FaceLabelWarning",
    "MissingLabelsWarning",
    "read_named_face_labels",
]

#: Folder names that hold a category's meshes and labels, never a category.
_LAYOUT_DIRS = frozenset({"shapes", "gt"})
#: Label-file suffixes (after the mesh stem), in lookup order; the kind each holds.
_LABEL_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".seg", "integer"),
    ("_labels.txt", "named"),
    (".labels", "named"),
)
#: Label-name files looked for in a category folder, then in the root.
_NAME_FILES = ("labels.json", "label_names.txt")
_INTEGER_LINE = re.compile(r"^[+-]?\d+$")


class FaceLabelWarning(UserWarning):
    """A named label file leaves faces out (they get -1) or lists a face under two labels."""


class MissingLabelsWarning(UserWarning):
    """Some meshes have no label file; they are kept unlabelled."""


@dataclass(frozen=True)
class _Shape:
    """One mesh of the dataset and its label file (if any)."""

    shape_id: str
    category: str
    mesh_path: Path
    label_path: Path | None
    label_kind: str | None  # "integer", "named" or None


@dataclass(frozen=True)
class _Vocabulary:
    """A category's label names, and what to subtract from its integer labels."""

    names: tuple[str, ...]
    offset: int = 0


def read_named_face_labels(path: str | Path) -> list[tuple[str, list[int]]]:
    """Read a PSB-style named label file: label names, each with its face indices.

    Parameters
    ----------
    path : str or os.PathLike
        A ``<stem>_labels.txt`` or ``<stem>.labels`` file: a label name on one
        line, the 1-based indices of its faces on the next (lines made only of
        integers extend the current label's list).

    Returns
    -------
    list of (str, list of int)
        Each label name with its 1-based face indices, in file order (a name
        that occurs twice appears twice).

    Raises
    ------
    LabelError
        The file cannot be read, or lists indices before any label name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LabelError(path, f"cannot read the file ({exc.strerror or exc})") from None
    entries: list[tuple[str, list[int]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if all(_INTEGER_LINE.match(t) for t in tokens):
            if not entries:
                raise LabelError(path, f"line {lineno}: face indices before any label name")
            entries[-1][1].extend(int(t) for t in tokens)
        else:
            entries.append((line.strip(), []))
    return entries


@DATASETS.register("coseg")
class CosegDataset(ShapeDataset):
    """COSEG / PSB folders of meshes with per-face labels; see :mod:`mvdecor.data.coseg`.

    Spec: ``coseg:root=PATH`` (or ``coseg:PATH``), optionally
    ``categories=Vases+Chairs`` (sub-folder names) to keep only some categories.

    Parameters
    ----------
    root : str or os.PathLike
        The dataset folder.
    categories : tuple of str, optional
        Keep only these categories (default: all).

    Attributes
    ----------
    label_names : tuple of str
        The vocabulary of the first category (see :meth:`label_names_of`).
    unlabelled : list of str
        Ids of the shapes that have no label file.
    """

    def __init__(self, root: str | Path, categories: tuple[str, ...] | None = None) -> None:
        from mvdecor.data.io import SUPPORTED_EXTENSIONS

        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ConfigError(self.root, "COSEG dataset folder does not exist")
        self._mesh_exts = tuple(SUPPORTED_EXTENSIONS)
        self._shapes: dict[str, _Shape] = {}
        self._category_dirs: dict[str, Path] = {}
        wanted = set(categories) if categories else None
        found = self._category_folders()
        for category, folder, prefixed in found:
            if wanted is not None and category not in wanted:
                continue
            self._category_dirs[category] = folder
            self._add_category(category, folder, prefixed)
        if wanted is not None:
            absent = sorted(wanted - set(self._category_dirs))
            if absent:
                raise ConfigError(
                    self.root, f"no categories {absent} (known: {', '.join(c for c, _, _ in found)})"
                )
        if not self._shapes:
            raise ConfigError(
                self.root,
                "no meshes found (expected ROOT/*.off, ROOT/shapes/*.off, "
                "ROOT/<Category>/shapes/*.off or ROOT/<Category>/*.off)",
            )
        self.unlabelled = sorted(s.shape_id for s in self._shapes.values() if s.label_path is None)
        if self.unlabelled:
            shown = ", ".join(self.unlabelled[:5]) + (" ..." if len(self.unlabelled) > 5 else "")
            warnings.warn(
                f"{self.root}: {len(self.unlabelled)} meshes have no label file and are kept "
                f"unlabelled ({shown})",
                MissingLabelsWarning,
                stacklevel=2,
            )
        self._vocab = {c: self._vocabulary(c) for c in sorted(self._category_dirs)}
        self.label_names = next(iter(self._vocab.values()), _Vocabulary(())).names
        self.spec = f"coseg:root={self.root}"
        if categories:
            self.spec += ",categories=" + "+".join(categories)

    # ------------------------------------------------------------- discovery
    def _has_meshes(self, folder: Path) -> bool:
        return folder.is_dir() and any(
            p.is_file() and p.name.lower().endswith(self._mesh_exts) for p in folder.iterdir()
        )

    def _category_folders(self) -> list[tuple[str, Path, bool]]:
        """(category, folder, whether ids get the category as prefix) of each category."""
        found: list[tuple[str, Path, bool]] = []
        if self._has_meshes(self.root) or self._has_meshes(self.root / "shapes"):
            found.append((safe_shape_id(self.root.name), self.root, False))
        for sub in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in _LAYOUT_DIRS):
            if self._has_meshes(sub) or self._has_meshes(sub / "shapes"):
                found.append((sub.name, sub, True))
        return found

    def _add_category(self, category: str, folder: Path, prefixed: bool) -> None:
        mesh_dir = folder / "shapes" if self._has_meshes(folder / "shapes") else folder
        label_dirs = list(dict.fromkeys([folder / "gt", mesh_dir, folder]))
        seen: set[str] = set()
        for mesh_path in sorted(mesh_dir.iterdir()):
            if not (mesh_path.is_file() and mesh_path.name.lower().endswith(self._mesh_exts)):
                continue
            stem = mesh_path.stem
            if stem in seen:  # 12.off and 12.ply: the first (sorted) wins
                continue
            seen.add(stem)
            label_path, kind = self._label_file(stem, label_dirs)
            base = safe_shape_id(f"{category}_{stem}" if prefixed else stem)
            shape_id, k = base, 1
            while shape_id in self._shapes:
                shape_id, k = f"{base}_{k}", k + 1
            self._shapes[shape_id] = _Shape(shape_id, category, mesh_path, label_path, kind)

    @staticmethod
    def _label_file(stem: str, label_dirs: list[Path]) -> tuple[Path | None, str | None]:
        for folder in label_dirs:
            for suffix, kind in _LABEL_SUFFIXES:
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate, kind
        return None, None

    def _names_file(self, category: str) -> Path | None:
        for folder in dict.fromkeys([self._category_dirs[category], self.root]):
            for name in _NAME_FILES:
                if (folder / name).is_file():
                    return folder / name
        return None

    def _vocabulary(self, category: str) -> _Vocabulary:
        """The category's label names (reads its label files: they are small)."""
        from mvdecor.data.io import check_unnamed_label_range, load_label_names, load_labels

        shapes = [s for s in self._shapes.values() if s.category == category and s.label_path]
        kinds = {s.label_kind for s in shapes}
        if len(kinds) > 1:
            raise ConfigError(
                self._category_dirs[category],
                f"category {category!r} mixes integer .seg label files and named label files",
            )
        if not shapes:
            return _Vocabulary(())
        if kinds == {"named"}:
            names: set[str] = set()
            for shape in shapes:
                names.update(name for name, _ in read_named_face_labels(shape.label_path))
            return _Vocabulary(tuple(sorted(names)))
        low, high = None, -1
        names_path = self._names_file(category)
        for shape in shapes:
            values = load_labels(shape.label_path)
            check_unnamed_label_range(values, shape.label_path, named=names_path is not None)
            values = values[values >= 0]
            if len(values):
                low = int(values.min()) if low is None else min(low, int(values.min()))
                high = max(high, int(values.max()))
        if names_path is None:
            offset = 1 if low == 1 else 0
            return _Vocabulary(tuple(f"part_{i}" for i in range(high + 1 - offset)), offset)
        names_read = load_label_names(names_path)
        offset = 1 if low == 1 and len(names_read) == high else 0
        if high - offset >= len(names_read):
            raise LabelError(
                names_path,
                f"{len(names_read)} label names, but category {category!r} has label {high}",
            )
        return _Vocabulary(names_read, offset)

    # ------------------------------------------------------------------ API
    @classmethod
    def from_options(cls, text: str) -> CosegDataset:
        """Open from the options of a ``coseg:`` spec (``root=PATH`` or just ``PATH``)."""
        opts = {"root": text} if text and "=" not in text else parse_options(text)
        unknown = set(opts) - {"root", "categories"}
        if unknown:
            raise ConfigError(None, f"unknown coseg dataset options {sorted(unknown)}")
        if not opts.get("root"):
            raise ConfigError(None, "the coseg dataset needs root=PATH")
        categories = tuple(filter(None, opts["categories"].split("+"))) if "categories" in opts else None
        return cls(opts["root"], categories=categories)

    def shape_ids(self) -> list[str]:
        return sorted(self._shapes)

    def _shape(self, shape_id: str) -> _Shape:
        try:
            return self._shapes[shape_id]
        except KeyError:
            raise MeshLoadError(self.root, f"no shape {shape_id!r} in this COSEG folder") from None

    def category_of(self, shape_id: str) -> str:
        return self._shape(shape_id).category

    def label_names_of(self, category: str) -> tuple[str, ...]:
        try:
            return self._vocab[category].names
        except KeyError:
            known = ", ".join(self._vocab)
            raise ConfigError(self.root, f"no category {category!r} (known: {known})") from None

    def mesh_path(self, shape_id: str) -> Path:
        """The mesh file of ``shape_id``."""
        return self._shape(shape_id).mesh_path

    def label_path(self, shape_id: str) -> Path | None:
        """The label file of ``shape_id`` (None if it has none)."""
        return self._shape(shape_id).label_path

    def load(self, shape_id: str) -> LabelledMesh:
        """The shape with its per-face labels (``-1`` where unlabelled).

        Raises
        ------
        LabelError
            The label file does not fit the mesh: a ``.seg`` file with a label
            count other than the face count, a face index out of range, or a
            label without a name; the error names the label file.
        """
        from mvdecor.data.io import load_mesh

        shape = self._shape(shape_id)
        vocab = self._vocab[shape.category]
        mesh = load_mesh(shape.mesh_path, name=shape_id)
        if shape.label_path is None:
            return mesh.replace(label_names=vocab.names) if vocab.names else mesh
        if shape.label_kind == "named":
            labels = self._named_labels(shape.label_path, mesh.num_faces, vocab.names)
        else:
            labels = self._integer_labels(shape.label_path, mesh.num_faces, vocab)
        return mesh.with_labels(labels, vocab.names)

    @staticmethod
    def _integer_labels(path: Path, n_faces: int, vocab: _Vocabulary) -> np.ndarray:
        from mvdecor.data.io import load_labels

        values = load_labels(path)
        if len(values) != n_faces:
            raise LabelError(path, f"{len(values)} labels for {n_faces} faces (one label per face needed)")
        if len(values) and values.min() < -1:
            raise LabelError(path, f"label {int(values.min())} is negative (only -1 = unlabelled)")
        labels = np.where(values >= 0, values - vocab.offset, -1)
        if len(labels) and labels.max() >= len(vocab.names):
            raise LabelError(path, f"label {int(values.max())} has no name ({len(vocab.names)} label names)")
        return labels

    @staticmethod
    def _named_labels(path: Path, n_faces: int, names: tuple[str, ...]) -> np.ndarray:
        index = {name: i for i, name in enumerate(names)}
        labels = np.full(n_faces, -1, np.int64)
        listed = np.zeros(n_faces, bool)
        overlaps = 0
        for name, faces in read_named_face_labels(path):
            if name not in index:
                raise LabelError(path, f"label {name!r} is not in the category's vocabulary (file changed?)")
            faces_1based = np.asarray(faces, np.int64)
            bad = (faces_1based < 1) | (faces_1based > n_faces)
            if bad.any():
                raise LabelError(
                    path,
                    f"label {name!r}: face index {int(faces_1based[bad][0])} out of range "
                    f"1..{n_faces} (indices are 1-based; the mesh has {n_faces} faces)",
                )
            rows = faces_1based - 1
            overlaps += int(np.count_nonzero(listed[rows] & (labels[rows] != index[name])))
            labels[rows] = index[name]
            listed[rows] = True
        if overlaps:
            warnings.warn(
                f"{path}: {overlaps} faces are listed under two labels; the later label is kept",
                FaceLabelWarning,
                stacklevel=3,
            )
        missing = n_faces - int(listed.sum())
        if missing:
            warnings.warn(
                f"{path}: {missing} of {n_faces} faces are not listed under any label; they are labelled -1",
                FaceLabelWarning,
                stacklevel=3,
            )
        return labels
