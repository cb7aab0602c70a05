"""PartNet and PartNet-Mobility folders, read as their users have them.

Both datasets store an object as a folder of OBJ *pieces* plus ``result.json``,
the part hierarchy: a tree of nodes, each leaf listing the pieces (``objs``) that
make it up. A face's label is the name of the node its piece belongs to, at the
leaf level (PartNet's finest labels) or at a chosen depth of the hierarchy.

Layouts::

    PartNet-Mobility                      PartNet (v0)
    ROOT/<Category>/<id>/                 ROOT/<anno id>/
        textured_objs/*.obj, *.mtl            objs/*.obj
        images/*                              meta.json   ("model_cat": category)
        result.json                           result.json
        meta.json ("model_cat")           SPLITS/<Category>.{train,val,test}.json

Pieces that no leaf references are superseded and ignored. Objects whose
``result.json`` names pieces that are not on disk are reported with a
:class:`MissingPiecesWarning` and, by default, skipped (``missing=skip``); with
``missing=drop`` the object is kept without those pieces.

Labels, per category: index 0 is ``other`` (PartNet's "other" nodes, whatever
their depth, and leaves named ``other_leaf``), then the category's other names
in sorted order. The benchmark rules of PartNet (label 0 never predicted,
masked where the ground truth is 0) then apply unchanged.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvdecor.data.datasets import DATASETS, ShapeDataset, parse_options, safe_shape_id
from mvdecor.data.mesh import LabelledMesh, concatenate_meshes
from mvdecor.errors import ConfigError, LabelError, MeshLoadError

OTHER = "other"


class MissingPiecesWarning(UserWarning):
    """An object's ``result.json`` names OBJ pieces that are not on disk."""


@dataclass(frozen=True)
class _Object:
    """One PartNet object: where it is and which pieces carry which label name.

    ``pieces`` maps a piece's file stem to its label name, in the order the
    hierarchy lists them (the order faces are concatenated in).
    """

    shape_id: str
    category: str
    folder: Path
    pieces: tuple[tuple[str, str], ...]
    missing: tuple[str, ...]


def _is_other(node: dict) -> bool:
    name = str(node.get("name", ""))
    return name == OTHER or name.startswith("other_")


def _leaf_pieces(nodes: list[dict], level: int | None, path: tuple[dict, ...] = ()) -> list[tuple[str, str]]:
    """(piece stem, label name) of every leaf under ``nodes``, depth-first."""
    out = []
    for node in nodes:
        here = (*path, node)
        children = node.get("children") or []
        if children:
            out.extend(_leaf_pieces(children, level, here))
            continue
        if any(_is_other(n) for n in here[1:]):
            name = OTHER
        elif level is None:
            name = str(node["name"])
        else:
            name = str(here[min(level, len(here) - 1)]["name"])
        out.extend((str(piece), name) for piece in node.get("objs") or [])
    return out


@DATASETS.register("partnet")
class PartNetDataset(ShapeDataset):
    """PartNet (``objs/`` pieces); see :mod:`mvdecor.data.partnet`.

    Options: ``root=PATH`` (required), ``categories=Chair+Lamp`` (default all),
    ``level=leaf`` (default) or an integer depth of the hierarchy (1 = the
    children of the root), ``missing=skip`` (default: skip objects with missing
    pieces, with a warning) or ``drop`` (keep them without those pieces),
    ``splits=PATH`` (a folder of PartNet's ``<Category>.{train,val,test}.json``;
    default ``ROOT/train_val_test_split`` or ``ROOT/../stats/train_val_test_split``
    when present). Shape ids are ``<Category>_<id>``.
    """

    pieces_folder = "objs"
    layout = "partnet"

    def __init__(
        self,
        root: str | Path,
        categories: tuple[str, ...] | None = None,
        level: int | None = None,
        missing: str = "skip",
        splits: str | Path | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ConfigError(self.root, f"{self.layout} folder does not exist")
        if missing not in ("skip", "drop"):
            raise ConfigError(None, f"missing={missing!r}: choose skip or drop")
        self.level, self.missing_policy = level, missing
        self.splits_dir = Path(splits).resolve() if splits else self._default_splits_dir()
        wanted = set(categories) if categories else None
        self._objects: dict[str, _Object] = {}
        #: ``(shape id, reason)`` of every object left out.
        self.skipped: list[tuple[str, str]] = []
        for category, folder in self._object_folders():
            if wanted is not None and category not in wanted:
                continue
            self._add(category, folder)
        if wanted is not None:
            absent = sorted(wanted - {o.category for o in self._objects.values()})
            if absent:
                raise ConfigError(self.root, f"no objects of categories {absent}")
        self._vocab = self._vocabularies()
        first = next(iter(self._vocab.values()), ())
        self.label_names = first
        options = [f"root={self.root}"]
        if categories:
            options.append("categories=" + "+".join(categories))
        if level is not None:
            options.append(f"level={level}")
        if missing != "skip":
            options.append(f"missing={missing}")
        if splits:
            options.append(f"splits={self.splits_dir}")
        self.spec = f"{self._registered_name()}:" + ",".join(options)

    # ------------------------------------------------------------- discovery
    def _registered_name(self) -> str:
        return "partnet"

    def _default_splits_dir(self) -> Path | None:
        for candidate in (
            self.root / "train_val_test_split",
            self.root.parent / "stats" / "train_val_test_split",
        ):
            if candidate.is_dir():
                return candidate
        return None

    def _object_folders(self) -> list[tuple[str, Path]]:
        found = []
        for folder in sorted(p for p in self.root.iterdir() if (p / "result.json").is_file()):
            category = "unknown"
            meta = folder / "meta.json"
            if meta.is_file():
                try:
                    category = str(json.loads(meta.read_text()).get("model_cat", category))
                except ValueError as exc:
                    raise ConfigError(meta, f"unreadable meta.json ({exc})") from None
            found.append((category, folder))
        return found

    def _add(self, category: str, folder: Path) -> None:
        shape_id = safe_shape_id(f"{category}_{folder.name}")
        result = folder / "result.json"
        try:
            tree = json.loads(result.read_text())
        except (OSError, ValueError) as exc:
            raise LabelError(result, f"unreadable part hierarchy ({exc})") from None
        pieces = _leaf_pieces(tree if isinstance(tree, list) else [tree], self.level)
        if not pieces:
            self.skipped.append((shape_id, "result.json lists no pieces"))
            warnings.warn(
                f"{result}: lists no OBJ pieces; object skipped", MissingPiecesWarning, stacklevel=3
            )
            return
        piece_dir = folder / self.pieces_folder
        missing = tuple(p for p, _ in pieces if not (piece_dir / f"{p}.obj").is_file())
        if missing:
            shown = ", ".join(f"{m}.obj" for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            if self.missing_policy == "skip" or len(missing) == len(pieces):
                self.skipped.append((shape_id, f"missing pieces {shown}"))
                warnings.warn(
                    f"{result}: names {len(missing)} OBJ pieces not in {piece_dir} ({shown}); object skipped",
                    MissingPiecesWarning,
                    stacklevel=3,
                )
                return
            warnings.warn(
                f"{result}: names {len(missing)} OBJ pieces not in {piece_dir} ({shown}); "
                "object kept without them (missing=drop)",
                MissingPiecesWarning,
                stacklevel=3,
            )
            pieces = [(p, n) for p, n in pieces if p not in missing]
        self._objects[shape_id] = _Object(shape_id, category, folder, tuple(pieces), missing)

    def _vocabularies(self) -> dict[str, tuple[str, ...]]:
        names: dict[str, set[str]] = {}
        for obj in self._objects.values():
            names.setdefault(obj.category, set()).update(n for _, n in obj.pieces)
        return {cat: (OTHER, *sorted(found - {OTHER})) for cat, found in sorted(names.items())}

    # ------------------------------------------------------------------ API
    @classmethod
    def from_options(cls, text: str) -> PartNetDataset:
        opts = parse_options(text)
        if "root" not in opts and len(opts) == 0 and text:
            opts = {"root": text}
        unknown = set(opts) - {"root", "categories", "level", "missing", "splits"}
        if unknown:
            raise ConfigError(None, f"unknown {cls.layout} dataset options {sorted(unknown)}")
        if "root" not in opts:
            raise ConfigError(None, f"the {cls.layout} dataset needs root=PATH")
        level_text = opts.get("level", "leaf")
        if level_text != "leaf" and not level_text.isdigit():
            raise ConfigError(None, f"level={level_text!r}: use leaf or a depth such as 1, 2, 3")
        return cls(
            opts["root"],
            categories=tuple(opts["categories"].split("+")) if "categories" in opts else None,
            level=None if level_text == "leaf" else int(level_text),
            missing=opts.get("missing", "skip"),
            splits=opts.get("splits"),
        )

    def shape_ids(self) -> list[str]:
        return sorted(self._objects)

    def _object(self, shape_id: str) -> _Object:
        try:
            return self._objects[shape_id]
        except KeyError:
            raise MeshLoadError(self.root, f"no object {shape_id!r} in this {self.layout} folder") from None

    def category_of(self, shape_id: str) -> str:
        return self._object(shape_id).category

    def label_names_of(self, category: str) -> tuple[str, ...]:
        try:
            return self._vocab[category]
        except KeyError:
            raise ConfigError(
                self.root, f"no category {category!r} (known: {', '.join(self._vocab)})"
            ) from None

    def folder_of(self, shape_id: str) -> Path:
        """The object's folder."""
        return self._object(shape_id).folder

    def load(self, shape_id: str) -> LabelledMesh:
        from mvdecor.data.io import load_mesh

        obj = self._object(shape_id)
        names = self._vocab[obj.category]
        index = {n: i for i, n in enumerate(names)}
        parts = []
        piece_dir = obj.folder / self.pieces_folder
        for piece, label_name in obj.pieces:
            mesh = load_mesh(piece_dir / f"{piece}.obj", name=piece)
            labels = np.full(mesh.num_faces, index[label_name], np.int64)
            one_part = np.zeros(mesh.num_faces, np.int32)
            parts.append(mesh.replace(face_part_ids=one_part, part_names=(piece,)).with_labels(labels, names))
        mesh = concatenate_meshes(parts, name=shape_id, source=str(obj.folder))
        return mesh

    def official_split(self) -> dict[str, dict[str, list[str]]] | None:
        """PartNet's own split (``val`` joins ``train``), when its files are present."""
        if self.splits_dir is None:
            return None
        by_id = {(o.category, o.folder.name): o.shape_id for o in self._objects.values()}
        split: dict[str, dict[str, list[str]]] = {}
        for category in self._vocab:
            entry: dict[str, list[str]] = {"train": [], "test": []}
            found = False
            for part, key in (("train", "train"), ("val", "train"), ("test", "test")):
                path = self.splits_dir / f"{category}.{part}.json"
                if not path.is_file():
                    continue
                found = True
                try:
                    rows = json.loads(path.read_text())
                    ids = [str(r["anno_id"]) if isinstance(r, dict) else str(r) for r in rows]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(path, f"unreadable split file ({exc})") from None
                entry[key].extend(by_id[(category, i)] for i in ids if (category, i) in by_id)
            if found:
                split[category] = {k: sorted(v) for k, v in entry.items()}
        return split or None


@DATASETS.register("partnet_mobility")
class PartNetMobilityDataset(PartNetDataset):
    """PartNet-Mobility (``<Category>/<id>/textured_objs/``); see :mod:`mvdecor.data.partnet`.

    Options as for ``partnet``: ``root=PATH`` (required; the folder holding the
    category folders), ``categories=Laptop+Bucket``, ``level=leaf`` or a depth,
    ``missing=skip`` or ``drop``. Textured pieces keep their textures (OBJ +
    MTL + ``images/``). Shape ids are ``<Category>_<id>``. PartNet-Mobility ships
    no split: use :func:`mvdecor.data.splits.make_split`.
    """

    pieces_folder = "textured_objs"
    layout = "partnet_mobility"

    def _registered_name(self) -> str:
        return "partnet_mobility"

    def _default_splits_dir(self) -> Path | None:
        return None

    def _object_folders(self) -> list[tuple[str, Path]]:
        found = []
        for category_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for folder in sorted(p for p in category_dir.iterdir() if (p / "result.json").is_file()):
                found.append((category_dir.name, folder))
        return found
