"""The fill graph: the library's face adjacency and dihedral angles on welded faces, cached."""

from __future__ import annotations

import numpy as np
from app_helpers import two_boxes, write_off

from mvdecor.app.geometry import FillGraphCache, fill_graph, welded_faces
from mvdecor.inference.smoothing import dihedral_angles, face_adjacency


def _library(vertices, faces):
    pairs, _ = face_adjacency(welded_faces(vertices, faces))
    return pairs, np.degrees(dihedral_angles(vertices, faces, pairs))


def _sorted(pairs, angles):
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], angles[order]


def test_the_fill_graph_is_the_librarys_on_closed_and_unwelded_meshes():
    vertices, faces = two_boxes(0.3)
    # Unwelded: every face its own three vertices; merging by position joins them again.
    split_vertices, split_faces = vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3)
    for v, f in ((vertices, faces), (split_vertices, split_faces)):
        pairs, angles = _sorted(*fill_graph(v, f))
        expected_pairs, expected_angles = _library(v, f)
        np.testing.assert_array_equal(pairs, expected_pairs)
        np.testing.assert_allclose(angles, expected_angles, atol=1e-4)
        assert angles.dtype == np.float32 and len(pairs) == 36


def test_edges_of_three_faces_and_degenerate_faces():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [2, 0, 0]], float)
    faces = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [1, 5, 5]])  # edge 0-1 has three faces
    pairs, angles = _sorted(*fill_graph(vertices, faces))
    expected_pairs, expected_angles = _library(vertices, faces)
    np.testing.assert_array_equal(pairs, expected_pairs)
    np.testing.assert_allclose(angles, expected_angles, atol=1e-4)
    assert len(pairs) == 3
    empty_pairs, empty_angles = fill_graph(vertices[:3], faces[:1])
    assert empty_pairs.shape == (0, 2) and empty_angles.shape == (0,)


def test_the_cache_recomputes_only_when_the_file_changes(tmp_path, monkeypatch):
    import mvdecor.app.geometry as geometry

    vertices, faces = two_boxes()
    path = write_off(tmp_path / "a.off", vertices, faces)
    calls = []
    real = geometry.fill_graph
    monkeypatch.setattr(geometry, "fill_graph", lambda v, f: calls.append(1) or real(v, f))
    cache = FillGraphCache()
    first = cache.get("a", path, vertices, faces)
    assert cache.get("a", path, vertices, faces) is first and len(calls) == 1
    write_off(path, vertices * 2, faces)
    cache.get("a", path, vertices * 2, faces)
    assert len(calls) == 2
