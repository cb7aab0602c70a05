"""Learning-free label transfer: each face takes the label of the nearest labelled surface point.

The simplest thing that could segment a category from a few labelled shapes,
and the floor every learned method must clear. Each *reference* is a set of
labelled surface points of one labelled shape (:class:`TransferReference`):

- from a labelled mesh (:func:`reference_from_mesh`): every face centroid plus
  area-weighted samples of the surface, each carrying its face's label;
- from a few labelled views of a mesh (:func:`reference_from_views`): the hit
  points of the labelled pixels, for the sparse labelled-view setting.

To label a target mesh, its face centroids are mapped into each reference's
frame and matched to the nearest reference point (a k-d tree per reference);
the face takes the label of the nearest match over all references.

Alignment (``align``):

- ``box`` (default): the target's bounding box is mapped onto the reference's
  box **axis by axis** (translate and scale each axis separately). It absorbs
  proportions that differ between shapes of a category (a wider laptop, a
  taller bucket), which a global similarity cannot; both meshes are assumed in
  the same canonical orientation, as category datasets are.
- ``none``: the shapes' own (normalised) frames are compared as they are.

Faces are matched by centroid; a reference built from a mesh contains its own
centroids, so transferring a mesh onto itself reproduces its labels exactly.
Reference points whose label is excluded (PartNet's label 0, "other", is never
predicted) or unknown (``-1``) are dropped, so the transfer never predicts them.

:meth:`LabelTransfer.face_probabilities` gives soft class distributions (the
label histogram of the ``neighbours`` nearest matches), which the segmenter can
mix into a network's fused votes as a prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mvdecor.config import TransferConfig
from mvdecor.data.mesh import LabelledMesh, align_points
from mvdecor.errors import ConfigError, FileError, LabelError
from mvdecor.fileio import atomic_path
from mvdecor.render.views import RenderedView

__all__ = [
    "ALIGNMENTS",
    "LabelTransfer",
    "TransferReference",
    "align_points",
    "load_references",
    "neighbour_vote",
    "reference_from_mesh",
    "reference_from_views",
    "save_references",
]

#: The alignments :class:`LabelTransfer` knows.
ALIGNMENTS = ("box", "none")


@dataclass(frozen=True, eq=False)
class TransferReference:
    """Labelled surface points of one reference shape.

    Attributes
    ----------
    points : (N, 3) float64
        Surface points in the reference mesh's frame.
    labels : (N,) int64
        The label of each point (never negative).
    box_min, box_max : (3,) float64
        The reference mesh's bounding box (over all its faces, labelled or not),
        the target of the ``box`` alignment.
    name : str
        The reference shape's name.
    """

    points: np.ndarray
    labels: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray
    name: str = "reference"

    def __post_init__(self) -> None:
        points = np.asarray(self.points, np.float64).reshape(-1, 3)
        labels = np.asarray(self.labels, np.int64).reshape(-1)
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} points but {len(labels)} labels")
        if len(points) == 0:
            raise LabelError(self.name, "the reference has no labelled surface point")
        if labels.min() < 0:
            raise ValueError("reference labels must be non-negative")
        for name, value in (("points", points), ("labels", labels)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        for name in ("box_min", "box_max"):
            value = np.asarray(getattr(self, name), np.float64).reshape(3)
            value.setflags(write=False)
            object.__setattr__(self, name, value)


def _keep(labels: np.ndarray, exclude_classes: Sequence[int]) -> np.ndarray:
    keep = labels >= 0
    for label in exclude_classes:
        keep &= labels != label
    return keep


def reference_from_mesh(
    mesh: LabelledMesh,
    *,
    samples: int = 20_000,
    seed: int = 0,
    exclude_classes: Sequence[int] = (),
) -> TransferReference:
    """A reference from a labelled mesh: its face centroids and ``samples`` area-weighted points.

    Parameters
    ----------
    mesh : a mesh with ``face_labels``, in the frame targets will be compared in
        (normally unit-sphere normalised, as the renderer's views are)
    samples : extra points drawn uniformly on the surface (by face area), so
        that large faces are represented by more than their centroid
    seed : seeds the samples
    exclude_classes : labels never transferred (their points are dropped)

    Raises
    ------
    LabelError
        The mesh has no labels, or none left after ``exclude_classes``.
    """
    if mesh.face_labels is None:
        raise LabelError(mesh.source or mesh.name, "a transfer reference needs a labelled mesh")
    triangles = mesh.triangles
    labels = np.asarray(mesh.face_labels, np.int64)
    points = [triangles.mean(axis=1)]
    point_labels = [labels]
    areas = mesh.face_areas()
    if samples > 0 and areas.sum() > 0:
        rng = np.random.default_rng(seed)
        faces = rng.choice(len(areas), size=samples, p=areas / areas.sum())
        # Uniform barycentrics by the square-root trick.
        r1, r2 = np.sqrt(rng.random(samples)), rng.random(samples)
        weights = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
        points.append(np.einsum("nk,nkd->nd", weights, triangles[faces]))
        point_labels.append(labels[faces])
    points_all, labels_all = np.concatenate(points), np.concatenate(point_labels)
    keep = _keep(labels_all, exclude_classes)
    lo, hi = mesh.bounds()
    return TransferReference(points_all[keep], labels_all[keep], lo, hi, mesh.name)


def reference_from_views(
    mesh: LabelledMesh,
    views: Sequence[RenderedView],
    *,
    pixel_labels: Sequence[np.ndarray] | None = None,
    exclude_classes: Sequence[int] = (),
) -> TransferReference:
    """A reference from a few labelled views of a mesh: the labelled pixels' hit points.

    Parameters
    ----------
    mesh : the mesh the views show (its geometry gives the bounding box)
    views : rendered views of ``mesh``
    pixel_labels : per view, ``(H, W)`` int labels (``-1``: unlabelled), e.g. a
        user's label images; default: each pixel's face label from ``mesh.face_labels``
    exclude_classes : labels never transferred
    """
    points, labels = [], []
    for index, view in enumerate(views):
        if pixel_labels is not None:
            view_labels = np.asarray(pixel_labels[index], np.int64)
        elif mesh.face_labels is not None:
            view_labels = view.face_labels(mesh.face_labels)
        else:
            raise LabelError(mesh.source or mesh.name, "views of an unlabelled mesh need pixel_labels")
        keep = view.mask & _keep(view_labels, exclude_classes)
        points.append(view.hit_points[keep].astype(np.float64))
        labels.append(view_labels[keep])
    lo, hi = mesh.bounds()
    return TransferReference(
        np.concatenate(points) if points else np.zeros((0, 3)),
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        lo,
        hi,
        mesh.name,
    )


def save_references(path: str | Path, references: Sequence[TransferReference]) -> Path:
    """Write ``references`` to ``path`` (an ``.npz``: ``points_<i>``, ``labels_<i>``,
    ``box_<i>`` (2, 3) and ``names``), atomically; returns ``path``.

    A fine-tuned model's run keeps its labelled shapes this way, so that label
    transfer from them needs no dataset at segmentation time.
    """
    arrays: dict[str, np.ndarray] = {"names": np.asarray([r.name for r in references], dtype=str)}
    for index, reference in enumerate(references):
        arrays[f"points_{index}"] = reference.points
        arrays[f"labels_{index}"] = reference.labels
        arrays[f"box_{index}"] = np.stack([reference.box_min, reference.box_max])
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


def load_references(path: str | Path, exclude_classes: Sequence[int] = ()) -> list[TransferReference]:
    """The references :func:`save_references` wrote, without the points of ``exclude_classes``.

    Raises
    ------
    FileError
        ``path`` cannot be read as such a file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [str(name) for name in data["names"]]
            references = []
            for index, name in enumerate(names):
                labels = data[f"labels_{index}"].astype(np.int64)
                keep = _keep(labels, exclude_classes)
                box = data[f"box_{index}"].astype(np.float64)
                points = data[f"points_{index}"].astype(np.float64)[keep]
                references.append(TransferReference(points, labels[keep], box[0], box[1], name))
    except (OSError, KeyError, ValueError) as error:
        raise FileError(path, f"not a file of transfer references ({error})") from None
    if not references:
        raise FileError(path, "holds no transfer reference")
    return references


def neighbour_vote(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's majority label and label histogram over its nearest matches.

    Parameters
    ----------
    labels : (N, k) int64
        The labels of each item's ``k`` nearest matches, nearest first (all in ``[0, num_classes)``).
    num_classes : int

    Returns
    -------
    (N,) int64, (N, num_classes) float32
        The majority label, ties going to the nearest match among the tied labels,
        and the label histogram (rows sum to 1).
    """
    rows = np.arange(len(labels))
    k = labels.shape[1]
    probs = np.zeros((len(labels), num_classes), np.float32)
    np.add.at(probs, (np.repeat(rows, k), labels.ravel()), 1.0)
    probs /= k
    if k == 1:
        return labels[:, 0].copy(), probs
    # Among the tied majority labels, the one of the nearest match wins.
    tied = probs[rows[:, None], labels] == probs.max(axis=1, keepdims=True)
    return labels[rows, tied.argmax(axis=1)], probs


class LabelTransfer:
    """Label meshes from labelled references by nearest neighbour, with no training.

    Parameters
    ----------
    references : one or more :class:`TransferReference`
    num_classes : ``C``, the size of the label vocabulary
    align : ``box`` (per-axis bounding-box alignment to each reference) or ``none``
    neighbours : matches per face; 1 (default) gives each face the label of the
        single nearest reference point, more give a label histogram (soft
        probabilities, and a majority label)

    Examples
    --------
    >>> transfer = LabelTransfer([reference_from_mesh(a), reference_from_mesh(b)], num_classes=4)
    >>> labels = transfer.face_labels(target)
    """

    def __init__(
        self,
        references: Sequence[TransferReference],
        num_classes: int,
        *,
        align: str = "box",
        neighbours: int = 1,
    ) -> None:
        if not references:
            raise ConfigError(None, "label transfer needs at least one labelled reference")
        if align not in ALIGNMENTS:
            raise ConfigError(
                None, f"unknown transfer alignment {align!r}; choose from {', '.join(ALIGNMENTS)}"
            )
        if neighbours < 1:
            raise ConfigError(None, f"transfer neighbours must be at least 1, got {neighbours}")
        self.references = tuple(references)
        self.num_classes = int(num_classes)
        for reference in self.references:
            if reference.labels.max() >= self.num_classes:
                raise LabelError(
                    reference.name,
                    f"label {int(reference.labels.max())} out of range for {self.num_classes} classes",
                )
        self.align = align
        self.neighbours = int(neighbours)
        self._trees = [cKDTree(r.points) for r in self.references]

    @classmethod
    def from_settings(
        cls, references: Sequence[TransferReference], num_classes: int, settings: TransferConfig
    ) -> LabelTransfer:
        """A transfer with a configuration's ``transfer`` section's alignment and neighbours."""
        return cls(references, num_classes, align=settings.align, neighbours=settings.neighbours)

    def _matches(self, mesh: LabelledMesh) -> tuple[np.ndarray, np.ndarray]:
        """The ``neighbours`` nearest reference points of each face centroid, over all references.

        Returns ``(distances, labels)``, each ``(F, neighbours)``, nearest first.
        """
        centroids = mesh.triangles.mean(axis=1)
        box = mesh.bounds()
        k = self.neighbours
        distances, labels = [], []
        for reference, tree in zip(self.references, self._trees, strict=True):
            query = (
                centroids
                if self.align == "none"
                else align_points(centroids, box, (reference.box_min, reference.box_max))
            )
            kk = min(k, len(reference.points))
            dist, index = tree.query(query, k=kk)
            dist, index = dist.reshape(len(query), kk), index.reshape(len(query), kk)
            distances.append(dist)
            labels.append(reference.labels[index])
        distances_all, labels_all = np.concatenate(distances, axis=1), np.concatenate(labels, axis=1)
        order = np.argsort(distances_all, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(centroids))[:, None]
        return distances_all[rows, order], labels_all[rows, order]

    def predict(self, mesh: LabelledMesh) -> tuple[np.ndarray, np.ndarray]:
        """``(face_labels (F,) int64, face_probabilities (F, C) float32)`` from one nearest-neighbour search.

        The probabilities are the label histogram of each face's nearest matches
        (rows sum to 1); the label is its majority, ties going to the nearest match.
        """
        return neighbour_vote(self._matches(mesh)[1], self.num_classes)

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F, C)`` float32: the label histogram of each face's nearest matches (see :meth:`predict`)."""
        return self.predict(mesh)[1]

    def face_labels(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F,)`` int64: each face's transferred label (see :meth:`predict`)."""
        return self.predict(mesh)[0]

    def nearest_distances(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F,)`` float64: from each face centroid, aligned as :meth:`predict` aligns it, to the
        nearest reference point (in the reference's units; over every reference)."""
        return self._matches(mesh)[0][:, 0]
