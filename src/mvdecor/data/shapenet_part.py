"""ShapeNet-Part (Yi et al. 2016): point-cloud part labels carried onto ShapeNetCore meshes.

ShapeNet-Part labels *points* sampled from ShapeNetCore models; this adapter
reads those labels and transfers them to the faces of the models' meshes, so
that every shape is a labelled mesh like any other dataset's.

Layouts (``PARTS_ROOT`` is the unzipped
``shapenetcore_partanno_segmentation_benchmark_v0`` or its ``_normal``
variant; ``SHAPENET_ROOT`` is ShapeNetCore v1 or v2)::

    PARTS_ROOT/synsetoffset2category.txt        "Airplane<TAB>02691156" per line
    PARTS_ROOT/<synset>/points/<model>.pts      x y z per line            (v0)
    PARTS_ROOT/<synset>/points_label/<model>.seg  1-based part per point  (v0)
    PARTS_ROOT/<synset>/<model>.txt             x y z nx ny nz label      (_normal;
                                                label global 0..49)
    PARTS_ROOT/train_test_split/shuffled_{train,val,test}_file_list.json
    SHAPENET_ROOT/<synset>/<model>/models/model_normalized.obj   (v2)
    SHAPENET_ROOT/<synset>/<model>/model.obj                     (v1)

Label transfer (:func:`transfer_point_labels`): the part points are in another
frame and scale than the mesh, so both are centred on their bounding-box centre
and scaled to a unit bounding-box diagonal; then each of the 48 axis
permutations with sign flips is tried on the points (the v0 points have
ShapeNet v1 axes), and the one with the smallest mean distance from the points
to the mesh surface is kept (the identity and the usual ShapeNet re-orientations
win near-ties). Each face then takes the majority label of the nearest labelled
point to its centroid and to the surface samples drawn on it (the centroid's
vote breaks ties). The *agreement* checks the transfer the other way round:
the share of points whose label equals the label of the face nearest to them
(nearest by the face's centroid or surface samples). A shape whose agreement is
below :attr:`ShapeNetPartDataset.min_agreement` (0.8) is reported with a
:class:`LabelTransferWarning`; :meth:`ShapeNetPartDataset.transfer_agreement`
gives it per shape.

Label vocabularies are ShapeNet-Part's 50 part names, per category
(:data:`PART_NAMES`), in the order of the benchmark's labels. Shape ids are
``<Category>_<model>``. Models that have part labels but no mesh are skipped,
with one :class:`MissingMeshWarning` listing them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from itertools import permutations, product
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mvdecor.data.datasets import DATASETS, ShapeDataset, parse_options, safe_shape_id
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import ConfigError, InvalidMeshError, LabelError, MeshLoadError

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

__all__ = [
    "PART_NAMES",
    "LabelTransfer",
    "LabelTransferWarning",
    "MissingMeshWarning",
    "ShapeNetPartDataset",
    "global_label_offsets",
    "transfer_point_labels",
]

#: ShapeNet-Part's part names per category, in label order: label ``k`` of a
#: category's v0 ``.seg`` files is ``names[k - 1]``; the ``_normal`` variant's
#: global labels 0..49 run through the categories in this (alphabetical) order.
PART_NAMES: dict[str, tuple[str, ...]] = {
    "Airplane": ("body", "wing", "tail", "engine"),
    "Bag": ("handle", "body"),
    "Cap": ("panels", "peak"),
    "Car": ("roof", "hood", "wheel", "body"),
    "Chair": ("back", "seat", "leg", "arm"),
    "Earphone": ("earcup", "headband", "cord"),
    "Guitar": ("head", "neck", "body"),
    "Knife": ("blade", "handle"),
    "Lamp": ("base", "shade", "canopy", "tube"),
    "Laptop": ("keyboard", "screen"),
    "Motorbike": ("gas_tank", "seat", "wheel", "handle", "light", "frame"),
    "Mug": ("handle", "body"),
    "Pistol": ("barrel", "handle", "trigger_and_guard"),
    "Rocket": ("body", "fin", "nose"),
    "Skateboard": ("wheel", "deck", "belt_for_foot"),
    "Table": ("top", "leg", "drawer"),
}

#: Mesh files of a model, relative to ``SHAPENET_ROOT/<synset>/<model>``, in lookup order.
_MESH_FILES = ("models/model_normalized.obj", "model.obj", "models/model_normalized.ply")
#: How many surface samples are drawn on a mesh (besides one centroid per face).
_SURFACE_SAMPLES = 20_000
#: How many points score each candidate alignment: roughly (all 48), then finely (the best few).
_COARSE_POINTS, _FINE_POINTS = 500, 2_000
#: Coarse scores clip each distance here (share of the diagonal): far queries are slow.
_COARSE_BOUND = 0.1
#: Candidates whose coarse score is within this factor of the best are scored finely.
_FINE_FACTOR = 1.5
#: A candidate whose score is within this factor of the best is as good as it.
_ALIGNMENT_TIE = 1.01


class LabelTransferWarning(UserWarning):
    """A shape's point labels agree poorly with the face labels transferred from them."""


class MissingMeshWarning(UserWarning):
    """Some ShapeNet-Part models have no mesh under the ShapeNetCore root; they are skipped."""


def global_label_offsets() -> dict[str, int]:
    """The first global (0..49) label of each category in the ``_normal`` release."""
    offsets, start = {}, 0
    for category in sorted(PART_NAMES):
        offsets[category] = start
        start += len(PART_NAMES[category])
    return offsets


# ------------------------------------------------------------------ transfer
@dataclass(frozen=True)
class LabelTransfer:
    """The result of :func:`transfer_point_labels`.

    Attributes
    ----------
    face_labels : (F,) int64
        The label of every face (``-1`` only if no point is labelled).
    agreement : float
        Share of labelled points whose label equals that of their nearest face.
    mean_distance : float
        Mean distance from the points to the mesh surface samples after
        alignment, in units of the mesh's bounding-box diagonal.
    rotation : (3, 3) float64
        The signed axis permutation applied to the (normalised) points.
    """

    face_labels: np.ndarray
    agreement: float
    mean_distance: float
    rotation: np.ndarray


def _candidate_rotations() -> list[np.ndarray]:
    """The 48 signed axis permutations, the usual ShapeNet re-orientations first."""
    preferred = [
        np.eye(3),
        np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),  # quarter turn about the up (y) axis
        np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]]),  # the other quarter turn about y
        np.diag([-1, 1, -1]),  # half turn about y
        np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]]),  # part points -> ShapeNetCore v2, as users report
    ]
    out = [m.astype(np.float64) for m in preferred]
    for perm in permutations(range(3)):
        for signs in product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[np.arange(3), perm] = signs
            if not any(np.array_equal(matrix, m) for m in out):
                out.append(matrix)
    return out


def _best_rotation(surface_tree: cKDTree, points: np.ndarray) -> np.ndarray:
    """The candidate rotation of the (normalised) points closest to the surface.

    All 48 candidates are scored on a few points with distances clipped at
    :data:`_COARSE_BOUND` (a far query costs a deep KD-tree search); those
    within :data:`_FINE_FACTOR` of the best are scored again on more points,
    unclipped. Among the final scores within :data:`_ALIGNMENT_TIE` of the best,
    the earliest candidate (the identity, then the usual ShapeNet turns) wins.
    """
    rotations = _candidate_rotations()
    coarse_probe = points[:: max(1, len(points) // _COARSE_POINTS)]
    coarse = np.array(
        [
            np.minimum(
                surface_tree.query(coarse_probe @ r.T, distance_upper_bound=_COARSE_BOUND)[0], _COARSE_BOUND
            ).mean()
            for r in rotations
        ]
    )
    finalists = np.flatnonzero(coarse <= coarse.min() * _FINE_FACTOR + 1e-12)
    fine_probe = points[:: max(1, len(points) // _FINE_POINTS)]
    fine = np.array([surface_tree.query(fine_probe @ rotations[i].T)[0].mean() for i in finalists])
    chosen = finalists[np.flatnonzero(fine <= fine.min() * _ALIGNMENT_TIE + 1e-12)[0]]
    return rotations[int(chosen)]


def _normalise(points: np.ndarray) -> np.ndarray:
    """``points`` centred on their bounding-box centre, scaled to a unit diagonal."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    return (points - (lo + hi) / 2.0) / (diagonal if diagonal > 0 else 1.0)


def _surface_samples(
    vertices: np.ndarray, faces: np.ndarray, n_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Face centroids plus ``n_samples`` area-weighted points; the face of each."""
    triangles = vertices[faces]
    centroids = triangles.mean(axis=1)
    areas = 0.5 * np.linalg.norm(
        np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1
    )
    total = float(areas.sum())
    if n_samples <= 0 or total <= 0:
        return centroids, np.arange(len(faces))
    rng = np.random.default_rng(seed)
    sample_faces = rng.choice(len(faces), size=n_samples, p=areas / total)
    u, v = rng.random(n_samples), rng.random(n_samples)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    tri = triangles[sample_faces]
    points = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    return np.concatenate([centroids, points]), np.concatenate([np.arange(len(faces)), sample_faces])


def transfer_point_labels(
    vertices: np.ndarray,
    faces: np.ndarray,
    points: np.ndarray,
    point_labels: np.ndarray,
    *,
    surface_samples: int = _SURFACE_SAMPLES,
    seed: int = 0,
) -> LabelTransfer:
    """Carry part labels from a point cloud to the faces of a mesh in another frame.

    Parameters
    ----------
    vertices : (V, 3) float
        The mesh's vertices (any frame and scale).
    faces : (F, 3) int
        The mesh's triangles.
    points : (N, 3) float
        The labelled points, in their own frame and scale; may be an axis
        permutation (with flips) of the mesh's frame.
    point_labels : (N,) int
        Each point's label; ``-1`` marks a point to ignore.
    surface_samples : int
        Area-weighted samples drawn on the mesh besides the face centroids.
    seed : int
        Seed of the surface sampling (the result is deterministic).

    Returns
    -------
    LabelTransfer
        Face labels, the agreement, the alignment's mean distance and rotation.
    """
    from scipy.spatial import cKDTree  # imported here: it is slow to import

    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    points = np.asarray(points, np.float64)
    point_labels = np.asarray(point_labels, np.int64)
    keep = point_labels >= 0
    points, point_labels = points[keep], point_labels[keep]
    if not len(points):
        return LabelTransfer(np.full(len(faces), -1, np.int64), 0.0, float("inf"), np.eye(3))
    used = vertices[np.unique(faces)]
    lo, hi = used.min(axis=0), used.max(axis=0)
    scale = float(np.linalg.norm(hi - lo)) or 1.0
    samples, sample_faces = _surface_samples(
        (vertices - (lo + hi) / 2.0) / scale, faces, surface_samples, seed
    )
    surface_tree = cKDTree(samples)
    normalised = _normalise(points)

    rotation = _best_rotation(surface_tree, normalised)
    aligned = normalised @ rotation.T

    # Faces: majority vote of the nearest point's label over the face's centroid
    # (weight 1.5, so it breaks ties) and its surface samples (weight 1).
    n_labels = int(point_labels.max()) + 1
    _, nearest_point = cKDTree(aligned).query(samples)
    sample_labels = point_labels[nearest_point]
    weights = np.ones(len(samples))
    weights[: len(faces)] = 1.5
    votes = np.bincount(
        sample_faces * n_labels + sample_labels, weights=weights, minlength=len(faces) * n_labels
    )
    face_labels = votes.reshape(len(faces), n_labels).argmax(axis=1).astype(np.int64)

    distances, nearest_sample = surface_tree.query(aligned)
    agreement = float(np.mean(face_labels[sample_faces[nearest_sample]] == point_labels))
    return LabelTransfer(face_labels, agreement, float(distances.mean()), rotation)


# ------------------------------------------------------------------- dataset
def _read_table(path: Path, columns: int) -> np.ndarray:
    """A text file of ``columns`` numbers per line as an ``(N, columns)`` array."""
    try:
        lines = [
            line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    except OSError as exc:
        raise LabelError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        values = np.array(" ".join(lines).split(), dtype=np.float64)
    except ValueError:
        raise LabelError(path, "holds something other than numbers") from None
    if not lines or values.size != len(lines) * columns:
        raise LabelError(path, f"expected {columns} numbers on each of its {len(lines)} lines")
    return values.reshape(-1, columns)


@dataclass(frozen=True)
class _Model:
    """One labelled ShapeNet-Part model: its point files and its mesh."""

    shape_id: str
    category: str
    synset: str
    model: str
    points_path: Path
    labels_path: Path | None  # None for the _normal variant (labels in the points file)
    mesh_path: Path


@DATASETS.register("shapenet_part")
class ShapeNetPartDataset(ShapeDataset):
    """ShapeNet-Part labels on ShapeNetCore meshes; see :mod:`mvdecor.data.shapenet_part`.

    Spec: ``shapenet_part:root=PARTS_ROOT,meshes=SHAPENET_ROOT`` and optionally
    ``categories=Airplane+Chair`` (names or synset ids, any case).

    Parameters
    ----------
    root : str or os.PathLike
        The ShapeNet-Part release (holding ``synsetoffset2category.txt``).
    meshes : str or os.PathLike
        The ShapeNetCore (v1 or v2) folder holding ``<synset>/<model>/``.
    categories : tuple of str, optional
        Keep only these categories (default: all that are present).

    Attributes
    ----------
    skipped : list of (str, str)
        ``(shape id, reason)`` of every model left out.
    min_agreement : float
        Transfers agreeing less than this are reported (0.8).
    """

    min_agreement: float = 0.8

    def __init__(
        self, root: str | Path, meshes: str | Path, categories: tuple[str, ...] | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.meshes_root = Path(meshes).resolve()
        if not self.root.is_dir():
            raise ConfigError(self.root, "ShapeNet-Part folder does not exist")
        if not self.meshes_root.is_dir():
            raise ConfigError(self.meshes_root, "ShapeNetCore folder does not exist")
        synsets = self._read_synsets()
        if categories:
            by_key = {c.lower(): c for c in synsets} | {s: c for c, s in synsets.items()}
            unknown = [c for c in categories if c.lower() not in by_key]
            if unknown:
                raise ConfigError(
                    self.root / "synsetoffset2category.txt",
                    f"unknown categories {unknown} (known: {', '.join(synsets)})",
                )
            selected = {by_key[c.lower()]: synsets[by_key[c.lower()]] for c in categories}
        else:
            selected = synsets
        self._models: dict[str, _Model] = {}
        self.skipped: list[tuple[str, str]] = []
        self._agreement: dict[str, float] = {}
        missing_meshes: list[str] = []
        for category, synset in sorted(selected.items()):
            if category not in PART_NAMES:
                warnings.warn(
                    f"{self.root}: category {category!r} has no ShapeNet-Part part names; skipped",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            folder = self.root / synset
            if not folder.is_dir():
                if categories:
                    raise ConfigError(folder, f"the folder of category {category!r} is missing")
                continue
            for model, points_path, labels_path in self._labelled_models(folder):
                shape_id = safe_shape_id(f"{category}_{model}")
                mesh_path = self._mesh_of(synset, model)
                if mesh_path is None:
                    missing_meshes.append(shape_id)
                    self.skipped.append((shape_id, "no mesh"))
                    continue
                self._models[shape_id] = _Model(
                    shape_id, category, synset, model, points_path, labels_path, mesh_path
                )
        if missing_meshes:
            shown = ", ".join(missing_meshes[:10]) + (" ..." if len(missing_meshes) > 10 else "")
            warnings.warn(
                f"{self.meshes_root}: {len(missing_meshes)} ShapeNet-Part models have no mesh "
                f"(looked for <synset>/<model>/{' or '.join(_MESH_FILES)}); skipped: {shown}",
                MissingMeshWarning,
                stacklevel=2,
            )
        if not self._models:
            raise ConfigError(self.root, "no ShapeNet-Part model with both part labels and a mesh")
        self._categories = sorted({m.category for m in self._models.values()})
        self.label_names = PART_NAMES[self._categories[0]]
        self.spec = f"shapenet_part:root={self.root},meshes={self.meshes_root}"
        if categories:
            self.spec += ",categories=" + "+".join(categories)

    # ------------------------------------------------------------- discovery
    def _read_synsets(self) -> dict[str, str]:
        path = self.root / "synsetoffset2category.txt"
        if not path.is_file():
            raise ConfigError(path, "missing: this is not a ShapeNet-Part folder")
        synsets: dict[str, str] = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 2:
                raise ConfigError(
                    path, f"line {lineno}: expected 'Category<TAB>synset', got {line.strip()!r}"
                )
            synsets[tokens[0]] = tokens[1]
        return synsets

    @staticmethod
    def _labelled_models(folder: Path) -> list[tuple[str, Path, Path | None]]:
        """(model, points file, label file or None) of every labelled model in a synset folder."""
        labels_dir, points_dir = folder / "points_label", folder / "points"
        if labels_dir.is_dir():
            return [
                (seg.stem, points_dir / f"{seg.stem}.pts", seg)
                for seg in sorted(labels_dir.glob("*.seg"))
                if (points_dir / f"{seg.stem}.pts").is_file()
            ]
        return [(txt.stem, txt, None) for txt in sorted(folder.glob("*.txt"))]

    def _mesh_of(self, synset: str, model: str) -> Path | None:
        folder = self.meshes_root / synset / model
        return next((folder / name for name in _MESH_FILES if (folder / name).is_file()), None)

    # ------------------------------------------------------------------ API
    @classmethod
    def from_options(cls, text: str) -> ShapeNetPartDataset:
        """Open from the options of a ``shapenet_part:`` spec."""
        opts = parse_options(text)
        unknown = set(opts) - {"root", "meshes", "categories"}
        if unknown:
            raise ConfigError(None, f"unknown shapenet_part dataset options {sorted(unknown)}")
        if not opts.get("root") or not opts.get("meshes"):
            raise ConfigError(None, "the shapenet_part dataset needs root=PARTS_ROOT,meshes=SHAPENET_ROOT")
        categories = tuple(filter(None, opts["categories"].split("+"))) if "categories" in opts else None
        return cls(opts["root"], opts["meshes"], categories=categories)

    def shape_ids(self) -> list[str]:
        return sorted(self._models)

    def _model(self, shape_id: str) -> _Model:
        try:
            return self._models[shape_id]
        except KeyError:
            raise MeshLoadError(self.root, f"no ShapeNet-Part model {shape_id!r} here") from None

    def category_of(self, shape_id: str) -> str:
        return self._model(shape_id).category

    def label_names_of(self, category: str) -> tuple[str, ...]:
        if category not in self._categories:
            known = ", ".join(self._categories)
            raise ConfigError(self.root, f"no category {category!r} (known: {known})")
        return PART_NAMES[category]

    def mesh_path(self, shape_id: str) -> Path:
        """The ShapeNetCore mesh file of ``shape_id``."""
        return self._model(shape_id).mesh_path

    def read_points(self, shape_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The labelled points of ``shape_id``: ``(N, 3)`` positions and ``(N,)`` 0-based labels.

        Labels index :meth:`label_names_of` the shape's category.

        Raises
        ------
        LabelError
            A points or label file that cannot be read, label and point counts
            that differ, or a label outside the category's parts; the error
            names the file.
        """
        model = self._model(shape_id)
        n_parts = len(PART_NAMES[model.category])
        if model.labels_path is None:  # _normal: x y z nx ny nz label, global labels
            table = _read_table(model.points_path, 7)
            points, raw = table[:, :3], table[:, 6]
            first = global_label_offsets()[model.category]
            where, valid = model.points_path, f"{first}..{first + n_parts - 1}"
        else:
            points = _read_table(model.points_path, 3)
            from mvdecor.data.io import load_labels

            raw = load_labels(model.labels_path)
            if len(raw) != len(points):
                raise LabelError(
                    model.labels_path,
                    f"{len(raw)} labels for {len(points)} points in {model.points_path.name}",
                )
            first, where, valid = 1, model.labels_path, f"1..{n_parts}"
        if not np.array_equal(raw, np.round(raw)):
            raise LabelError(where, "part labels must be integers")
        labels = np.asarray(raw, np.int64) - first
        bad = (labels < 0) | (labels >= n_parts)
        if bad.any():
            raise LabelError(
                where,
                f"part label {int(raw[bad][0])} is outside {valid} ({model.category} has {n_parts} parts)",
            )
        return points, labels

    def load(self, shape_id: str) -> LabelledMesh:
        """The ShapeNetCore mesh of ``shape_id`` with the transferred part labels.

        Warns
        -----
        LabelTransferWarning
            When the transfer's agreement is below :attr:`min_agreement`.
        """
        from mvdecor.data.io import load_mesh

        model = self._model(shape_id)
        mesh = load_mesh(model.mesh_path, name=shape_id)
        points, labels = self.read_points(shape_id)
        try:
            transfer = transfer_point_labels(mesh.vertices, mesh.faces, points, labels)
        except ValueError as exc:  # degenerate geometry the KD-tree cannot take
            raise InvalidMeshError(model.mesh_path, f"cannot transfer part labels ({exc})") from None
        self._agreement[shape_id] = transfer.agreement
        if transfer.agreement < self.min_agreement:
            warnings.warn(
                f"{shape_id}: only {transfer.agreement:.0%} of the part points agree with the face labels "
                f"transferred to {model.mesh_path} (mean point-surface distance "
                f"{transfer.mean_distance:.3f} of the bounding-box diagonal)",
                LabelTransferWarning,
                stacklevel=2,
            )
        return mesh.with_labels(transfer.face_labels, PART_NAMES[model.category])

    def transfer_agreement(self, shape_id: str) -> float:
        """Share of ``shape_id``'s part points whose label equals that of their nearest face.

        Computed when the shape is loaded (loading it if needed) and cached.
        """
        if shape_id not in self._agreement:
            self.load(shape_id)
        return self._agreement[shape_id]

    def official_split(self) -> dict[str, dict[str, list[str]]] | None:
        """ShapeNet-Part's own split (``val`` joins ``train``), when ``train_test_split/`` is present."""
        folder = self.root / "train_test_split"
        if not folder.is_dir():
            return None
        by_key = {(m.synset, m.model): m for m in self._models.values()}
        split: dict[str, dict[str, list[str]]] = {c: {"train": [], "test": []} for c in self._categories}
        found = False
        for part, key in (("train", "train"), ("val", "train"), ("test", "test")):
            path = folder / f"shuffled_{part}_file_list.json"
            if not path.is_file():
                continue
            found = True
            try:
                entries = [str(e) for e in json.loads(path.read_text())]
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigError(path, f"unreadable split file ({exc})") from None
            for entry in entries:  # "shape_data/<synset>/<model>"
                synset, _, model_id = entry.rstrip("/").rpartition("/")
                model = by_key.get((synset.rpartition("/")[2], model_id))
                if model is not None:
                    split[model.category][key].append(model.shape_id)
        if not found:
            return None
        return {c: {k: sorted(v) for k, v in parts.items()} for c, parts in split.items()}
