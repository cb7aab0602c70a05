"""Ray casting backends.

The only production backend is Intel Embree through ``embreex``'s own API
(docs/design.md section 8: about 10 million rays per second per core;
trimesh's generic intersector over the same library is 2-4x slower, and
trimesh without Embree takes minutes per view). There is deliberately no silent fallback: without
embreex, :func:`require_embree` raises :class:`BackendUnavailableError` with
the install command.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from mvdecor.errors import BackendUnavailableError


def embree_available() -> bool:
    """Whether the ``embreex`` ray caster can be imported."""
    return importlib.util.find_spec("embreex") is not None


def require_embree() -> None:
    """Raise :class:`BackendUnavailableError` unless ``embreex`` is importable."""
    if not embree_available():
        raise BackendUnavailableError(
            "the embreex ray caster is not installed; install it with "
            "`pip install embreex` (mvdecor does not fall back to a slow ray caster)"
        )


class EmbreeRayCaster:
    """Closest-hit ray casting against one triangle mesh with Embree.

    Parameters
    ----------
    vertices : (V, 3) float
    faces : (F, 3) int

    Notes
    -----
    The scene is built once (tens of milliseconds for 20k faces, about 0.5 s
    for 300k) and reused for every view.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        require_embree()
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        self._scene = rtcore_scene.EmbreeScene()
        # Keep references: Embree reads these buffers for the scene's lifetime.
        self._vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        self._faces = np.ascontiguousarray(faces, dtype=np.int32)
        self._mesh = TriangleMesh(self._scene, self._vertices, self._faces)

    def intersect(
        self, origins: np.ndarray, directions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closest hits of ``N`` rays.

        Parameters
        ----------
        origins, directions : (N, 3) float
            Ray origins and (not necessarily unit) directions.

        Returns
        -------
        face_ids : (N,) int32
            Face hit, ``-1`` for a miss.
        barycentrics : (N, 2) float32
            Embree's ``(u, v)``: the hit is ``(1-u-v) * v0 + u * v1 + v * v2``.
            Undefined for misses.
        distances : (N,) float32
            Ray parameter of the hit (distance for unit directions); ``inf`` for
            misses.
        """
        origins = np.ascontiguousarray(origins, dtype=np.float32)
        directions = np.ascontiguousarray(directions, dtype=np.float32)
        result = self._scene.run(origins, directions, output=1)
        face_ids = np.asarray(result["primID"], dtype=np.int32)
        uv = np.stack([result["u"], result["v"]], axis=1).astype(np.float32, copy=False)
        distances = np.asarray(result["tfar"], dtype=np.float32)
        miss = face_ids < 0
        face_ids[miss] = -1
        distances = np.where(miss, np.float32(np.inf), distances)
        return face_ids, uv, distances


def intersect_known_faces(
    triangles: np.ndarray, origins: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Intersect each ray with the plane of a given triangle (Moeller-Trumbore, float64).

    Used to rebuild a view exactly from stored face ids: knowing which face a
    pixel's ray hit, its barycentrics and distance follow without casting.

    Parameters
    ----------
    triangles : (N, 3, 3) float
        The triangle each ray is known to hit.
    origins : (N, 3) or (3,) float
    directions : (N, 3) float

    Returns
    -------
    barycentrics : (N, 3) float64
        Corner weights ``(1-u-v, u, v)``.
    distances : (N,) float64
        Ray parameter of the hit.
    """
    tri = np.asarray(triangles, np.float64)
    d = np.asarray(directions, np.float64)
    v0 = tri[:, 0]
    e1 = tri[:, 1] - v0
    e2 = tri[:, 2] - v0
    p = np.cross(d, e2)
    det = (e1 * p).sum(axis=1)
    # A ray grazing a face's plane was still reported as hitting it by the
    # caster; guard the division and let the weights come out clipped below.
    det = np.where(np.abs(det) < 1e-300, 1e-300, det)
    s = np.asarray(origins, np.float64) - v0
    u = (s * p).sum(axis=1) / det
    q = np.cross(s, e1)
    v = (d * q).sum(axis=1) / det
    t = (e2 * q).sum(axis=1) / det
    bary = np.stack([1.0 - u - v, u, v], axis=1)
    return bary, t
