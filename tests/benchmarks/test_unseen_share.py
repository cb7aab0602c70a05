"""benchmarks/unseen_share.py: the share of a surface no test view sees, on a cube inside a closed cube."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from mvdecor.config import load_config
from mvdecor.data.mesh import LabelledMesh


def _box(center, half: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed cube's 8 corners and 12 outward triangles."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))]
    return np.asarray(center) + half * corners, np.asarray(faces)


def test_the_inner_cube_is_the_unseen_and_far_share():
    script = load_benchmark("unseen_share")
    outer_vertices, outer_faces = _box((0.0, 0.0, 0.0), 0.5)
    inner_vertices, inner_faces = _box((0.05, 0.0, 0.0), 0.1)
    mesh = LabelledMesh(
        np.concatenate([outer_vertices, inner_vertices]),
        np.concatenate([outer_faces, inner_faces + 8]),
        name="nested",
    )
    config = load_config("cpu")
    config = replace(config, render=replace(config.render, resolution=64))
    inner_share = (0.1 / 0.5) ** 2 / (1 + (0.1 / 0.5) ** 2)  # six faces each, areas as the squares
    unseen, far, count = script.surface_shares(mesh, config, 0.01)
    assert unseen == pytest.approx(inner_share) and far == pytest.approx(inner_share) and count == 12
    # Farther than the gap between the cubes, nothing is far; with nothing inside, nothing is unseen.
    assert script.surface_shares(mesh, config, 2.0)[1:] == (0.0, 0)
    alone = LabelledMesh(outer_vertices, outer_faces, name="alone")
    assert script.surface_shares(alone, config, 0.01) == (0.0, 0.0, 0)
