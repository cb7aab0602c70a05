"""Pinhole cameras and the camera placements MvDeCor renders from.

Conventions (those of OpenCV):

- World space is the normalised mesh's space: +Y up, the mesh inside the unit
  sphere.
- Camera space: +X right, +Y down, +Z forward (the viewing direction).
  ``x_cam = R @ x_world + t``.
- Pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)`` in continuous
  image coordinates ``(u, v) = (x, y)``; its centre is ``(col + 0.5, row + 0.5)``.
  ``u = fx * X / Z + cx``, ``v = fy * Y / Z + cy``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields, replace

import numpy as np

from mvdecor.config import RenderConfig

# The camera defaults are defined once, by RenderConfig (the authors' scheme).
_AUTHORS = RenderConfig()

#: The authors' camera sphere: 7 rings x 12 segments + 2 poles = 86 views.
AUTHORS_RINGS = _AUTHORS.rings
AUTHORS_SEGMENTS = _AUTHORS.segments


@dataclass(frozen=True, eq=False)
class Cameras:
    """A batch of ``N`` pinhole cameras sharing one image size.

    Attributes
    ----------
    rotation : (N, 3, 3) float64
        World-to-camera rotations ``R`` (rows are the camera axes in world space).
    translation : (N, 3) float64
        World-to-camera translations ``t``: ``x_cam = R @ x_world + t``.
    focal : (N, 2) float64
        ``(fx, fy)`` in pixels.
    principal : (N, 2) float64
        ``(cx, cy)`` in pixels (``(W/2, H/2)`` for a centred camera).
    width, height : int
        Image size in pixels, the same for every camera.
    """

    rotation: np.ndarray
    translation: np.ndarray
    focal: np.ndarray
    principal: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        n = len(self.rotation)
        for name, shape in (
            ("rotation", (n, 3, 3)),
            ("translation", (n, 3)),
            ("focal", (n, 2)),
            ("principal", (n, 2)),
        ):
            array = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if array.shape != shape:
                raise ValueError(f"Cameras.{name} must have shape {shape}, got {array.shape}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __len__(self) -> int:
        return len(self.rotation)

    def __getitem__(self, index: int | slice | np.ndarray) -> Cameras:
        """A sub-batch; an integer index gives a batch of one."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return Cameras(
            self.rotation[index],
            self.translation[index],
            self.focal[index],
            self.principal[index],
            self.width,
            self.height,
        )

    @property
    def centers(self) -> np.ndarray:
        """Camera centres in world space, ``(N, 3)``: ``-R^T t``."""
        return -np.einsum("nji,nj->ni", self.rotation, self.translation)

    @property
    def intrinsics(self) -> np.ndarray:
        """The ``(N, 3, 3)`` matrices ``K``."""
        k = np.zeros((len(self), 3, 3))
        k[:, 0, 0], k[:, 1, 1] = self.focal[:, 0], self.focal[:, 1]
        k[:, 0, 2], k[:, 1, 2] = self.principal[:, 0], self.principal[:, 1]
        k[:, 2, 2] = 1.0
        return k

    @property
    def extrinsics(self) -> np.ndarray:
        """The ``(N, 4, 4)`` world-to-camera matrices ``[R | t]``."""
        e = np.zeros((len(self), 4, 4))
        e[:, :3, :3], e[:, :3, 3], e[:, 3, 3] = self.rotation, self.translation, 1.0
        return e

    def to_camera(self, points: np.ndarray, index: int) -> np.ndarray:
        """World points ``(..., 3)`` in camera ``index``'s frame ``(..., 3)``."""
        return np.asarray(points, np.float64) @ self.rotation[index].T + self.translation[index]

    def project(self, points: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Project world points into camera ``index``.

        Parameters
        ----------
        points : (..., 3) float
            World-space points.
        index : int
            Which camera.

        Returns
        -------
        pixels : (..., 2) float64
            Continuous image coordinates ``(u, v)`` = (column, row); the pixel
            containing a point is ``(floor(v), floor(u))``. NaN for points at or
            behind the camera plane.
        depth : (..., ) float64
            Camera-space ``Z`` (distance along the optical axis).
        """
        cam = self.to_camera(points, index)
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            safe_z = np.where(z > 1e-12, z, np.nan)
            u = self.focal[index, 0] * cam[..., 0] / safe_z + self.principal[index, 0]
            v = self.focal[index, 1] * cam[..., 1] / safe_z + self.principal[index, 1]
        return np.stack([u, v], axis=-1), z

    def pixel_rays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Rays through every pixel centre of camera ``index``.

        Returns
        -------
        origin : (3,) float64
            The camera centre in world space.
        directions : (H, W, 3) float64
            Unit ray directions in world space, row-major over pixels.
        """
        cols = np.arange(self.width) + 0.5
        rows = np.arange(self.height) + 0.5
        x = (cols - self.principal[index, 0]) / self.focal[index, 0]
        y = (rows - self.principal[index, 1]) / self.focal[index, 1]
        cam_dirs = np.empty((self.height, self.width, 3))
        cam_dirs[..., 0] = x[None, :]
        cam_dirs[..., 1] = y[:, None]
        cam_dirs[..., 2] = 1.0
        world_dirs = cam_dirs @ self.rotation[index]  # R^T d for row vectors
        world_dirs /= np.linalg.norm(world_dirs, axis=-1, keepdims=True)
        return self.centers[index], world_dirs

    def to_dict(self) -> dict[str, np.ndarray | int]:
        """Plain arrays, for saving with ``np.savez``; inverse of :meth:`from_dict`."""
        return {
            "rotation": np.asarray(self.rotation),
            "translation": np.asarray(self.translation),
            "focal": np.asarray(self.focal),
            "principal": np.asarray(self.principal),
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Cameras:
        return cls(
            np.asarray(data["rotation"]),
            np.asarray(data["translation"]),
            np.asarray(data["focal"]),
            np.asarray(data["principal"]),
            int(data["width"]),
            int(data["height"]),
        )

    @staticmethod
    def concatenate(batches: list[Cameras]) -> Cameras:
        """Join batches that share an image size."""
        sizes = {(c.width, c.height) for c in batches}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate cameras of different image sizes {sizes}")
        return Cameras(
            np.concatenate([c.rotation for c in batches]),
            np.concatenate([c.translation for c in batches]),
            np.concatenate([c.focal for c in batches]),
            np.concatenate([c.principal for c in batches]),
            batches[0].width,
            batches[0].height,
        )


def look_at_rotation(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """World-to-camera rotations ``(N, 3, 3)`` for cameras at ``eye`` looking at ``target``.

    The camera's +Y (image down) is aligned with world ``-up`` as far as
    possible, so images are upright. Where the viewing direction is parallel
    to ``up`` (a camera at a pole), world +Z is used as the up hint instead.

    Parameters
    ----------
    eye, target : (N, 3) or (3,) float
    up : (3,) float, default +Y
    """
    eye = np.atleast_2d(np.asarray(eye, np.float64))
    target = np.broadcast_to(np.asarray(target, np.float64), eye.shape)
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, np.float64)
    forward = target - eye
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    up_hint = np.broadcast_to(up, forward.shape).copy()
    parallel = np.abs(forward @ up) > 0.999 * np.linalg.norm(up)
    up_hint[parallel] = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up_hint)  # camera +X; forward x up points right
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)  # camera +Y completes a right-handed frame
    return np.stack([right, down, forward], axis=1)


def focal_from_fov(fov_degrees: float, size: int) -> float:
    """Focal length in pixels for a field of view spanning ``size`` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_degrees) / 2.0)


def sphere_directions(rings: int = AUTHORS_RINGS, segments: int = AUTHORS_SEGMENTS) -> np.ndarray:
    """Unit vertices of a UV sphere: two poles plus ``rings * segments`` points.

    Rings are evenly spaced in polar angle from +Y (exclusive of the poles),
    segments evenly in azimuth. With the defaults, 86 directions.

    Returns
    -------
    (2 + rings * segments, 3) float64
    """
    polar = np.pi * np.arange(1, rings + 1) / (rings + 1)
    azimuth = 2 * np.pi * np.arange(segments) / segments
    p, a = np.meshgrid(polar, azimuth, indexing="ij")
    ring_dirs = np.stack([np.sin(p) * np.sin(a), np.cos(p), np.sin(p) * np.cos(a)], axis=-1).reshape(-1, 3)
    return np.concatenate([[[0.0, 1.0, 0.0]], ring_dirs, [[0.0, -1.0, 0.0]]])


def _axis_angle_matrices(rotvecs: np.ndarray) -> np.ndarray:
    """Rodrigues: ``(N, 3)`` rotation vectors to ``(N, 3, 3)`` matrices."""
    angle = np.linalg.norm(rotvecs, axis=1)
    axis = np.divide(rotvecs, angle[:, None], out=np.zeros_like(rotvecs), where=angle[:, None] > 0)
    x, y, z = axis.T
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=1).reshape(-1, 3, 3)
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)


def _square_cameras(rotation: np.ndarray, eyes: np.ndarray, fov_degrees: float, resolution: int) -> Cameras:
    """Centred square-image cameras from world-to-camera rotations ``(N, 3, 3)`` and centres ``(N, 3)``."""
    n = len(eyes)
    return Cameras(
        rotation=rotation,
        translation=-np.einsum("nij,nj->ni", rotation, eyes),
        focal=np.full((n, 2), focal_from_fov(fov_degrees, resolution)),
        principal=np.full((n, 2), resolution / 2.0),
        width=resolution,
        height=resolution,
    )


@dataclass(frozen=True)
class CameraScheme:
    """Where to put the cameras around a normalised mesh.

    The defaults are the MvDeCor authors' scheme (86 views on a UV sphere of
    radius 2 with 7 rings, distance scaled by U(0.7, 1.0), orientation jittered
    by N(0, 0.06) rad per axis clipped at 0.25 rad, 60 degree vertical field of
    view, looking at the origin). Close cameras crop the object: those are the
    paper's close-up views.

    Attributes
    ----------
    rings, segments : int
        The UV sphere of camera directions: ``2 + rings * segments`` views.
    camera_distance : float
        Radius of the camera sphere around the origin (unit-sphere units).
    distance_scale : (float, float)
        Each camera's distance is ``camera_distance * U(low, high)``.
    jitter_std, jitter_clip : float
        Standard deviation and clip (radians) of the random rotation applied to
        each camera's orientation, per axis.
    fov_degrees : float
        Vertical field of view.
    resolution : int
        Square image size in pixels.
    """

    rings: int = _AUTHORS.rings
    segments: int = _AUTHORS.segments
    camera_distance: float = _AUTHORS.camera_distance
    distance_scale: tuple[float, float] = _AUTHORS.distance_scale
    jitter_std: float = _AUTHORS.jitter_std
    jitter_clip: float = _AUTHORS.jitter_clip
    fov_degrees: float = _AUTHORS.fov_degrees
    resolution: int = _AUTHORS.resolution

    @classmethod
    def from_config(cls, render: RenderConfig, rings: int = 0, segments: int = 0) -> CameraScheme:
        """The scheme of ``render``; positive ``rings`` / ``segments`` replace its own
        (more views at test time, everything else as in training)."""
        scheme = cls(**{f.name: getattr(render, f.name) for f in fields(cls)})
        if rings > 0 or segments > 0:
            scheme = replace(scheme, rings=rings or scheme.rings, segments=segments or scheme.segments)
        return scheme

    @property
    def num_views(self) -> int:
        return 2 + self.rings * self.segments

    def cameras(self, seed: int = 0) -> Cameras:
        """The cameras for one shape, reproducible by ``seed``."""
        return sphere_cameras(
            rings=self.rings,
            segments=self.segments,
            camera_distance=self.camera_distance,
            distance_scale=self.distance_scale,
            jitter_std=self.jitter_std,
            jitter_clip=self.jitter_clip,
            fov_degrees=self.fov_degrees,
            resolution=self.resolution,
            seed=seed,
        )


def shape_camera_seed(shape_id: str, seed: int) -> int:
    """The camera seed of one shape: stable across runs, shards and worker counts."""
    return (zlib.crc32(shape_id.encode("utf-8")) ^ (seed * 2654435761)) & 0x7FFFFFFF


def shape_cameras(render: RenderConfig, shape_id: str, rings: int = 0, segments: int = 0) -> Cameras:
    """The cameras of one shape under ``render``, the same in every process, shard and run.

    Rendering, training, the render store and ``segment`` all place a shape's
    cameras through this function, so a mesh segmented by name sees the views
    it was trained on. Positive ``rings`` / ``segments`` replace the scheme's own.
    """
    scheme = CameraScheme.from_config(render, rings, segments)
    return scheme.cameras(seed=shape_camera_seed(shape_id, render.seed))


def sphere_cameras(
    rings: int = _AUTHORS.rings,
    segments: int = _AUTHORS.segments,
    camera_distance: float = _AUTHORS.camera_distance,
    distance_scale: tuple[float, float] = _AUTHORS.distance_scale,
    jitter_std: float = _AUTHORS.jitter_std,
    jitter_clip: float = _AUTHORS.jitter_clip,
    fov_degrees: float = _AUTHORS.fov_degrees,
    resolution: int = _AUTHORS.resolution,
    seed: int = 0,
) -> Cameras:
    """Cameras on a jittered UV sphere looking at the origin (see :class:`CameraScheme`).

    Returns
    -------
    Cameras
        ``2 + rings * segments`` cameras, identical for identical arguments.
    """
    low, high = distance_scale
    if not 0 < low <= high:
        raise ValueError(f"distance_scale must satisfy 0 < low <= high, got {distance_scale}")
    rng = np.random.default_rng(seed)
    directions = sphere_directions(rings, segments)
    n = len(directions)
    distances = camera_distance * rng.uniform(low, high, size=n)
    eyes = directions * distances[:, None]
    rotation = look_at_rotation(eyes, np.zeros(3))
    if jitter_std > 0:
        rotvecs = np.clip(rng.normal(0.0, jitter_std, size=(n, 3)), -jitter_clip, jitter_clip)
        # Perturb the orientation in the camera's own frame, keeping its centre.
        rotation = _axis_angle_matrices(rotvecs) @ rotation
    return _square_cameras(rotation, eyes, fov_degrees, resolution)


def closeup_cameras(
    target: np.ndarray,
    direction: np.ndarray | None = None,
    num_views: int = 10,
    distance: float = 0.6,
    cone_degrees: float = 30.0,
    fov_degrees: float = 60.0,
    resolution: int = 256,
    seed: int = 0,
) -> Cameras:
    """Close-up cameras aimed at a region of interest (the paper adds such views for faces).

    Cameras sit at ``distance`` from ``target``, their directions spread over a
    cone of half-angle ``cone_degrees`` around ``direction`` (by default the
    direction from the origin to the target), each looking at the target.

    Parameters
    ----------
    target : (3,) float
        The point to look at, in normalised mesh coordinates.
    direction : (3,) float, optional
        The cone's axis, pointing from the target toward the cameras.
    num_views : int
        How many cameras; the first sits on the axis, the rest on a golden-angle
        spiral over the cone.
    """
    target = np.asarray(target, np.float64)
    if direction is None:
        direction = target if np.linalg.norm(target) > 1e-9 else np.array([0.0, 0.0, 1.0])
    axis = np.asarray(direction, np.float64)
    axis = axis / np.linalg.norm(axis)
    # An orthonormal frame (axis, e1, e2).
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    k = np.arange(num_views)
    rng = np.random.default_rng(seed)
    theta = np.radians(cone_degrees) * np.sqrt(k / max(num_views - 1, 1))
    phi = k * np.pi * (3.0 - np.sqrt(5.0)) + rng.uniform(0, 2 * np.pi)
    dirs = np.cos(theta)[:, None] * axis + np.sin(theta)[:, None] * (
        np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2
    )
    eyes = target + distance * dirs
    return _square_cameras(look_at_rotation(eyes, target), eyes, fov_degrees, resolution)
