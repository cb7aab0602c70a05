"""The rendered view: the data contract between rendering and everything after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mvdecor.render.cameras import Cameras

#: Value of ``face_ids`` on background pixels. Every other buffer is 0 there.
BACKGROUND_FACE_ID = -1


@dataclass(frozen=True, eq=False)
class RenderedView:
    """One view of one mesh, from one ray cast.

    ``H x W`` is the image size. On background pixels (rays that hit nothing)
    ``face_ids`` is ``-1`` and **every other buffer is 0**.

    Attributes
    ----------
    camera : Cameras
        The camera, a batch of one.
    face_ids : (H, W) int32
        Index of the mesh face seen by each pixel, ``-1`` on background.
    barycentrics : (H, W, 3) float32
        Weights of the seen face's three corners at the hit point (sum to 1).
    hit_points : (H, W, 3) float32
        World-space (normalised mesh) position of the surface point seen.
    depth : (H, W) float32
        Camera-space depth ``Z`` of the hit point (distance along the optical
        axis, unit-sphere units).
    depth_normalized : (H, W) float32
        ``depth`` min-max normalised over this view's foreground to ``[0, 1]``
        (0 = nearest), as MvDeCor feeds it to the network.
    normals : (H, W, 3) float32
        World-space unit normal of the seen face (flat), flipped to face the
        camera.
    shading : (H, W) float32
        Grey Lambert shading in ``[0, 1]`` under a head light (a light at the
        camera): ``ambient + (1 - ambient) * cos(angle to the ray)``.
    rgb : (H, W, 3) float32
        Surface colour (texture sampled bilinearly at the hit point's UV, else
        vertex colour, else material colour) times ``shading``, in ``[0, 1]``.
    """

    camera: Cameras
    face_ids: np.ndarray
    barycentrics: np.ndarray
    hit_points: np.ndarray
    depth: np.ndarray
    depth_normalized: np.ndarray
    normals: np.ndarray
    shading: np.ndarray
    rgb: np.ndarray

    @property
    def height(self) -> int:
        return self.face_ids.shape[0]

    @property
    def width(self) -> int:
        return self.face_ids.shape[1]

    @property
    def mask(self) -> np.ndarray:
        """Foreground mask ``(H, W)`` bool."""
        return self.face_ids != BACKGROUND_FACE_ID

    @property
    def coverage(self) -> float:
        """Fraction of pixels that see the mesh."""
        return float(self.mask.mean())

    def face_labels(self, mesh_face_labels: np.ndarray) -> np.ndarray:
        """Per-pixel labels ``(H, W)`` int64 from per-face labels; ``-1`` on background."""
        labels = np.full(self.face_ids.shape, -1, np.int64)
        mask = self.mask
        labels[mask] = np.asarray(mesh_face_labels)[self.face_ids[mask]]
        return labels


def seen_faces(views: Sequence[RenderedView], num_faces: int) -> np.ndarray:
    """``(F,)`` bool: the faces that at least one pixel of ``views`` sees.

    Parameters
    ----------
    views : rendered views of one mesh
    num_faces : ``F``, the mesh's face count
    """
    seen = np.zeros(num_faces, bool)
    for view in views:
        seen[view.face_ids[view.mask]] = True
    return seen
