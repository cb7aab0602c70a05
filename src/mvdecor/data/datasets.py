"""Datasets: named collections of labelled meshes, addressed by a spec string.

A dataset is opened from a *spec*: ``NAME`` or ``NAME:OPTIONS``, or simply a
folder path (read by the ``folder`` adapter). ``mvdecor datasets`` lists the
registered names. Every dataset lists its shape ids and loads one shape by id
as a :class:`~mvdecor.data.mesh.LabelledMesh` (not normalised).

Specs are plain strings so that worker processes can reopen a dataset cheaply
and a render store can record which dataset it holds.
"""

from __future__ import annotations

import json
import re
import zlib
from abc import ABC, abstractmethod
from pathlib import Path

from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import ConfigError, MeshLoadError
from mvdecor.registry import Registry

DATASETS: Registry[type[ShapeDataset]] = Registry("dataset")


class ShapeDataset(ABC):
    """A collection of shapes with a shared label vocabulary.

    Attributes
    ----------
    spec : str
        The canonical spec string that reopens this dataset.
    label_names : tuple of str
        The vocabulary of ``face_labels`` (empty if unlabelled).
    """

    spec: str
    label_names: tuple[str, ...] = ()

    #: The category of every shape of a dataset that has no categories.
    default_category: str = "all"

    @abstractmethod
    def shape_ids(self) -> list[str]:
        """Shape ids, sorted; safe to use as file names."""

    @abstractmethod
    def load(self, shape_id: str) -> LabelledMesh:
        """The shape ``shape_id`` as read (not normalised), ``name`` set to the id."""

    def category_of(self, shape_id: str) -> str:
        """The category of ``shape_id`` (one label vocabulary per category)."""
        return self.default_category

    def categories(self) -> dict[str, list[str]]:
        """Category name -> its shape ids (sorted), in sorted category order."""
        groups: dict[str, list[str]] = {}
        for shape_id in self.shape_ids():
            groups.setdefault(self.category_of(shape_id), []).append(shape_id)
        return dict(sorted(groups.items()))

    def label_names_of(self, category: str) -> tuple[str, ...]:
        """The label vocabulary of ``category``."""
        return self.label_names

    def official_split(self) -> dict[str, dict[str, list[str]]] | None:
        """The dataset's own ``{category: {"train": ids, "test": ids}}`` split, if it ships one."""
        return None

    def __len__(self) -> int:
        return len(self.shape_ids())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def parse_options(text: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}``: the options part of a dataset spec."""
    options = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(None, f"dataset option {item!r} must look like key=value")
        options[key.strip()] = value.strip()
    return options


def open_dataset(spec: str) -> ShapeDataset:
    """Open a dataset from a spec.

    Parameters
    ----------
    spec : str
        ``synthetic``, ``synthetic:categories=chair+mug,n=4``, ``folder:PATH``,
        or a folder path (same as ``folder:PATH``).
    """
    name, sep, rest = spec.partition(":")
    if sep and name in DATASETS:
        return DATASETS.get(name).from_options(rest)
    if spec in DATASETS:
        return DATASETS.get(spec).from_options("")
    path = Path(spec)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(path, "a dataset must be a folder of meshes or a registered name")
        return FolderDataset(path)
    known = ", ".join(DATASETS)
    raise ConfigError(None, f"{spec!r} is neither an existing folder nor a known dataset ({known})")


def safe_shape_id(text: str) -> str:
    """``text`` reduced to a file-name-safe shape id (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "shape"


# ------------------------------------------------------------------ synthetic
@DATASETS.register("synthetic")
class SyntheticDataset(ShapeDataset):
    """The built-in procedural shapes (:mod:`mvdecor.data.synthetic`); needs no files.

    Options: ``categories=chair+table`` (default all), ``n=8`` shapes per
    category, ``seed=0``, ``textured=0.25`` (share of textured shapes),
    ``detail=1`` (mesh resolution).

    Labels are per category; :attr:`label_names` is the vocabulary of the first
    category, and ``load`` returns each shape with its own category's names.
    """

    def __init__(
        self,
        categories: tuple[str, ...] | None = None,
        n: int = 8,
        seed: int = 0,
        textured: float = 0.25,
        detail: int = 1,
    ) -> None:
        from mvdecor.data import synthetic

        known = tuple(synthetic.CATEGORIES)
        self.category_names = tuple(categories) if categories else known
        unknown = [c for c in self.category_names if c not in synthetic.CATEGORIES]
        if unknown:
            raise ConfigError(None, f"unknown synthetic categories {unknown}; known: {', '.join(known)}")
        self.n, self.seed, self.textured, self.detail = int(n), int(seed), float(textured), int(detail)
        self.label_names = synthetic.CATEGORIES[self.category_names[0]]
        self.spec = (
            f"synthetic:categories={'+'.join(self.category_names)},n={self.n},seed={self.seed},"
            f"textured={self.textured:g},detail={self.detail}"
        )

    @classmethod
    def from_options(cls, text: str) -> SyntheticDataset:
        opts = parse_options(text)
        unknown = set(opts) - {"categories", "n", "seed", "textured", "detail"}
        if unknown:
            raise ConfigError(None, f"unknown synthetic dataset options {sorted(unknown)}")
        try:
            return cls(
                categories=tuple(opts["categories"].split("+")) if "categories" in opts else None,
                n=int(opts.get("n", 8)),
                seed=int(opts.get("seed", 0)),
                textured=float(opts.get("textured", 0.25)),
                detail=int(opts.get("detail", 1)),
            )
        except ValueError as exc:
            raise ConfigError(None, f"bad synthetic dataset option: {exc}") from None

    def shape_ids(self) -> list[str]:
        return sorted(f"{c}_{i:04d}" for c in self.category_names for i in range(self.n))

    def _parse(self, shape_id: str) -> tuple[str, int]:
        category, _, index = shape_id.rpartition("_")
        if category not in self.category_names or not index.isdigit() or int(index) >= self.n:
            raise MeshLoadError(None, f"no synthetic shape {shape_id!r} in {self.spec}")
        return category, int(index)

    def load(self, shape_id: str) -> LabelledMesh:
        from mvdecor.data import synthetic

        category, index = self._parse(shape_id)
        shape_seed = self.seed * 100_003 + index
        # Texture choice is a deterministic function of the shape, not of the run.
        textured = (zlib.crc32(f"{shape_id}/{self.seed}".encode()) % 10_000) / 10_000 < self.textured
        mesh = synthetic.make_shape(category, shape_seed, textured=textured, detail=self.detail)
        return mesh.replace(name=shape_id, source=f"{self.spec}/{shape_id}")

    def category_of(self, shape_id: str) -> str:
        return self._parse(shape_id)[0]

    def label_names_of(self, category: str) -> tuple[str, ...]:
        from mvdecor.data import synthetic

        return tuple(synthetic.CATEGORIES[category])


# --------------------------------------------------------------------- folder
_LABEL_SUFFIXES = (".seg", ".labels.txt", ".labels.npy", "_labels.txt", "_labels.npy", ".txt", ".npy")
_FOLDER_LABEL_FILES = ("face_labels.txt", "face_labels.npy", "labels.txt", "labels.npy", "vertex_labels.txt")


@DATASETS.register("folder")
class FolderDataset(ShapeDataset):
    """A user's folder of meshes, with optional labels.

    Two layouts are read, and may be mixed:

    - ``ROOT/<shape>.<ext>``, labels (optional) in ``ROOT/<shape>.seg``,
      ``<shape>.labels.txt``/``.npy``, ``<shape>_labels.txt``/``.npy``, or
      ``<shape>.txt``/``.npy``;
    - ``ROOT/<shape>/<mesh>.<ext>`` (one mesh per sub-folder), labels in that
      sub-folder's ``face_labels.txt``/``.npy`` or ``labels.txt``/``.npy`` or
      ``vertex_labels.txt`` (per-vertex labels become per-face by majority).

    Label names come from ``ROOT/labels.json`` (a list, or ``{"labels": [...]}``)
    or ``ROOT/label_names.txt`` (one per line). This reads e.g. the FAUST/SMPL
    layout ``faust_<id>/mesh.ply`` + ``face_labels.txt`` + ``labels.json``.
    """

    def __init__(self, root: str | Path) -> None:
        from mvdecor.data.io import SUPPORTED_EXTENSIONS

        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ConfigError(self.root, "dataset folder does not exist")
        self.spec = f"folder:{self.root}"
        self._entries: dict[str, tuple[Path, Path | None]] = {}
        exts = tuple(SUPPORTED_EXTENSIONS)
        for path in sorted(self.root.iterdir()):
            if path.is_file() and path.name.lower().endswith(exts):
                self._add(safe_shape_id(path.stem), path, self._labels_beside(path))
            elif path.is_dir():
                meshes = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(exts))
                if len(meshes) == 1:
                    labels = next((path / n for n in _FOLDER_LABEL_FILES if (path / n).is_file()), None)
                    self._add(safe_shape_id(path.name), meshes[0], labels)
        self.label_names = self._read_label_names()
        self.default_category = safe_shape_id(self.root.name)

    def _add(self, shape_id: str, mesh_path: Path, labels: Path | None) -> None:
        unique, k = shape_id, 1
        while unique in self._entries:
            unique, k = f"{shape_id}_{k}", k + 1
        self._entries[unique] = (mesh_path, labels)

    @staticmethod
    def _labels_beside(mesh_path: Path) -> Path | None:
        stem = mesh_path.with_suffix("")
        for suffix in _LABEL_SUFFIXES:
            candidate = Path(f"{stem}{suffix}")
            if candidate.is_file() and candidate != mesh_path:
                return candidate
        return None

    def _read_label_names(self) -> tuple[str, ...]:
        json_path, txt_path = self.root / "labels.json", self.root / "label_names.txt"
        try:
            if json_path.is_file():
                data = json.loads(json_path.read_text())
                names = data["labels"] if isinstance(data, dict) else data
                return tuple(str(n) for n in names)
            if txt_path.is_file():
                return tuple(line.strip() for line in txt_path.read_text().splitlines() if line.strip())
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(json_path, f"unreadable label names ({exc})") from None
        return ()

    @classmethod
    def from_options(cls, text: str) -> FolderDataset:
        return cls(text)

    def shape_ids(self) -> list[str]:
        return sorted(self._entries)

    def mesh_path(self, shape_id: str) -> Path:
        try:
            return self._entries[shape_id][0]
        except KeyError:
            raise MeshLoadError(self.root, f"no shape {shape_id!r} in this folder") from None

    def label_path(self, shape_id: str) -> Path | None:
        """The label file read for ``shape_id`` (per face or per vertex), or None when it has none."""
        self.mesh_path(shape_id)  # a clear error for an unknown id
        return self._entries[shape_id][1]

    def load(self, shape_id: str) -> LabelledMesh:
        from mvdecor.data.io import load_mesh

        mesh_path = self.mesh_path(shape_id)
        labels = self.label_path(shape_id)
        return load_mesh(mesh_path, labels=labels, label_names=self.label_names or None, name=shape_id)
