"""Closed cubes, and a small cube inside a closed one: a part no camera outside can see."""

from __future__ import annotations

import numpy as np

from mvdecor.data.mesh import LabelledMesh


def closed_box(center, half: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed cube's 8 corners ``(8, 3)`` and 12 outward triangles ``(12, 3)``."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))]
    return np.asarray(center) + half * corners, np.asarray(faces)


def box_in_box(outer_half: float, inner_center, inner_half: float, **mesh_fields) -> LabelledMesh:
    """A closed cube of half-size ``outer_half`` at the origin (faces 0-11) with a closed cube
    inside it (faces 12-23); ``mesh_fields`` go to :class:`LabelledMesh` (e.g. ``name``)."""
    outer_vertices, outer_faces = closed_box((0.0, 0.0, 0.0), outer_half)
    inner_vertices, inner_faces = closed_box(inner_center, inner_half)
    return LabelledMesh(
        np.concatenate([outer_vertices, inner_vertices]),
        np.concatenate([outer_faces, inner_faces + 8]),
        **mesh_fields,
    )
