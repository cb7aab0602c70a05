"""Point clouds of meshes: area-weighted surface samples with their faces, normals and labels.

The 3D baselines see a shape as a fixed-size cloud of points drawn uniformly
on its surface (a face is picked with probability proportional to its area,
then a uniform point inside it). Each sample keeps the face it lies on, so
labels come from the face labels and predictions go back to the faces.

Also here: the augmentations of training clouds (random rotation, scale and
jitter) and the input array the network reads.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import InvalidMeshError

__all__ = [
    "UP_AXIS",
    "SurfaceSamples",
    "augment_points",
    "network_input",
    "random_rotation",
    "sample_surface",
    "shape_point_clouds",
]

#: Index of the up axis (+Y) of normalised shapes: synthetic shapes and the datasets' meshes stand on XZ.
UP_AXIS = 1


@dataclass(frozen=True, eq=False)
class SurfaceSamples:
    """Points on a mesh's surface, one row per sample. ``N`` is the number of samples.

    Attributes
    ----------
    points : (N, 3) float32
        Positions, in the mesh's frame.
    normals : (N, 3) float32
        Unit normal of the face each point lies on (right-hand rule; zero on a
        degenerate face, which is never sampled).
    face_ids : (N,) int64
        The face each point lies on, in ``[0, F)``.
    labels : (N,) int64
        The label of that face; ``-1`` where the face is unlabelled or the mesh
        has no labels.
    """

    points: np.ndarray
    normals: np.ndarray
    face_ids: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            "points": np.asarray(self.points, np.float32).reshape(-1, 3),
            "normals": np.asarray(self.normals, np.float32).reshape(-1, 3),
            "face_ids": np.asarray(self.face_ids, np.int64).reshape(-1),
            "labels": np.asarray(self.labels, np.int64).reshape(-1),
        }
        if len({len(value) for value in arrays.values()}) != 1:
            sizes = {name: len(value) for name, value in arrays.items()}
            raise ValueError(f"surface samples need one row per point in every array, got {sizes}")
        for name, value in arrays.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.points)


def sample_surface(mesh: LabelledMesh, num_points: int, rng: np.random.Generator | int = 0) -> SurfaceSamples:
    """``num_points`` points drawn uniformly on the surface of ``mesh``.

    Faces are drawn with probability proportional to their area (with
    replacement), then a uniform point inside each by the square-root trick.

    Parameters
    ----------
    mesh : LabelledMesh
        Any mesh; the points are in its own frame.
    num_points : int
        ``N``, the number of samples (at least 1).
    rng : numpy.random.Generator or int
        The generator to draw from, or a seed for one.

    Returns
    -------
    SurfaceSamples
        ``N`` samples, with labels from ``mesh.face_labels`` (``-1`` when it has none).

    Raises
    ------
    InvalidMeshError
        Every face of the mesh has zero area.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be at least 1, got {num_points}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    areas = mesh.face_areas()
    total = float(areas.sum())
    if not total > 0:
        raise InvalidMeshError(mesh.source or mesh.name, "every face has zero area: no surface to sample")
    # Inverse-CDF draw: as np.random.choice with p, without its checks on every call.
    cumulative = np.cumsum(areas)
    faces = np.searchsorted(cumulative, rng.random(num_points) * cumulative[-1], side="right")
    faces = np.minimum(faces, len(areas) - 1)
    r1, r2 = np.sqrt(rng.random(num_points)), rng.random(num_points)
    weights = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    points = np.einsum("nk,nkd->nd", weights, mesh.vertices[mesh.faces[faces]])
    labels = np.full(num_points, -1, np.int64) if mesh.face_labels is None else mesh.face_labels[faces]
    return SurfaceSamples(points, mesh.face_normals()[faces], faces, labels)


def shape_point_clouds(
    meshes: Sequence[LabelledMesh], num_points: int, seed: int = 0
) -> list[SurfaceSamples]:
    """One fixed cloud of ``num_points`` samples per mesh, seeded by ``seed`` and the mesh's name.

    A shape's cloud does not depend on which other meshes are in the list.

    Returns
    -------
    list of SurfaceSamples
        ``len(meshes)`` clouds of ``num_points`` samples each.
    """
    return [
        sample_surface(mesh, num_points, np.random.default_rng([seed, zlib.crc32(mesh.name.encode())]))
        for mesh in meshes
    ]


def random_rotation(rng: np.random.Generator, max_degrees: float, axis: int | None = None) -> np.ndarray:
    """A rotation by an angle drawn from ``+-max_degrees / 2`` about ``axis`` (None: a random axis).

    Returns
    -------
    (3, 3) float64
        A rotation matrix (Rodrigues' formula), applied as ``points @ R.T``.
    """
    if axis is None:
        direction = rng.normal(size=3)
        direction /= max(np.linalg.norm(direction), 1e-12)
    else:
        direction = np.eye(3)[axis]
    angle = np.deg2rad(rng.uniform(-max_degrees / 2, max_degrees / 2))
    cross = np.array(
        [
            [0.0, -direction[2], direction[1]],
            [direction[2], 0.0, -direction[0]],
            [-direction[1], direction[0], 0.0],
        ]
    )
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def augment_points(
    points: np.ndarray,
    normals: np.ndarray,
    rng: np.random.Generator,
    *,
    rotation_degrees: float = 0.0,
    rotation_axis: int | None = None,
    scale_range: tuple[float, float] = (1.0, 1.0),
    jitter_std: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A training copy of a cloud: rotated, scaled and jittered.

    Parameters
    ----------
    points, normals : (N, 3) float
    rng : numpy.random.Generator
    rotation_degrees : the rotation angle is drawn from ``+-rotation_degrees / 2`` (0: none)
    rotation_axis : the axis index (``UP_AXIS``), or None for a random axis
    scale_range : one isotropic factor drawn from this range (isotropic, so normals stay exact)
    jitter_std : Gaussian noise added to each position

    Returns
    -------
    points, normals : (N, 3) float32
        The normals are rotated with the points (and not jittered).
    """
    points = np.asarray(points, np.float64)
    normals = np.asarray(normals, np.float64)
    if rotation_degrees > 0:
        rotation = random_rotation(rng, rotation_degrees, rotation_axis)
        points, normals = points @ rotation.T, normals @ rotation.T
    low, high = scale_range
    points = points * rng.uniform(low, high)
    if jitter_std > 0:
        points = points + rng.normal(scale=jitter_std, size=points.shape)
    return points.astype(np.float32), normals.astype(np.float32)


def network_input(points: np.ndarray, normals: np.ndarray | None, use_normals: bool) -> np.ndarray:
    """What the point network reads for one cloud: positions, and normals when ``use_normals``.

    Parameters
    ----------
    points : (N, 3) float
    normals : (N, 3) float, or None when ``use_normals`` is false

    Returns
    -------
    (C, N) float32
        Channels first (``C = 3``, or 6 with normals), as ``Conv1d`` reads them.
    """
    channels = [np.asarray(points, np.float32)]
    if use_normals:
        if normals is None:
            raise ValueError("use_normals needs the normals")
        channels.append(np.asarray(normals, np.float32))
    return np.ascontiguousarray(np.concatenate(channels, axis=1).T)
