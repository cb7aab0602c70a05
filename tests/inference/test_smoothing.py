"""CRF smoothing of per-face class probabilities on the face adjacency graph."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mvdecor.inference.smoothing import (
    DEGENERATE_ANGLE,
    _independent_sets,
    dihedral_angles,
    face_adjacency,
    pairwise_weights,
    smooth_face_probabilities,
)

LABEL0 = np.array([0.7, 0.3])
LABEL1 = np.array([0.3, 0.7])


def grid_mesh(num_x: int, num_y: int, fold_at: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A grid of unit quads in the z = 0 plane, each split into two triangles.

    With ``fold_at`` the part right of ``x = fold_at`` is bent up by 90 degrees
    (``(x, y, 0) -> (fold_at, y, x - fold_at)``), so the faces either side of
    that line meet at a right-angle crease. Face order and vertex indices are
    the same folded or not. Winding is consistent (normals +z when flat).

    Returns (V, 3) float64 vertices and (2 * num_x * num_y, 3) int64 faces:
    first the ``(v00, v10, v11)`` triangle of every quad, then the ``(v00, v11, v01)`` one.
    """
    xs, ys = np.meshgrid(np.arange(num_x + 1.0), np.arange(num_y + 1.0), indexing="ij")
    x, y = xs.ravel(), ys.ravel()
    z = np.zeros_like(x)
    if fold_at is not None:
        right = x > fold_at
        z[right] = x[right] - fold_at
        x = np.where(right, fold_at, x)
    vertices = np.stack([x, y, z], axis=1)

    def vertex_id(i, j):
        return i * (num_y + 1) + j

    quad_i, quad_j = (a.ravel() for a in np.meshgrid(np.arange(num_x), np.arange(num_y), indexing="ij"))
    v00, v10 = vertex_id(quad_i, quad_j), vertex_id(quad_i + 1, quad_j)
    v11, v01 = vertex_id(quad_i + 1, quad_j + 1), vertex_id(quad_i, quad_j + 1)
    faces = np.concatenate([np.stack([v00, v10, v11], axis=1), np.stack([v00, v11, v01], axis=1)])
    return vertices, faces.astype(np.int64)


def unfolded_centroids(num_x: int, num_y: int) -> np.ndarray:
    """(F, 3) centroids of the flat grid's faces: where each face sits before folding."""
    vertices, faces = grid_mesh(num_x, num_y)
    return vertices[faces].mean(axis=1)


def naive_adjacency(faces: np.ndarray) -> set[tuple[int, int, int, int]]:
    """Reference: (i, j, a, b) for every pair of faces i < j and every edge a < b they share."""
    found = set()
    for i, j in itertools.combinations(range(len(faces)), 2):
        edges_i = {tuple(sorted((faces[i][k], faces[i][(k + 1) % 3]))) for k in range(3)}
        edges_j = {tuple(sorted((faces[j][k], faces[j][(k + 1) % 3]))) for k in range(3)}
        for a, b in edges_i & edges_j:
            found.add((i, j, int(a), int(b)))
    return found


def hinge(angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Two triangles on the edge (0, 0, 0)-(0, 1, 0), the second rotated ``angle`` out of plane."""
    vertices = np.array(
        [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.5, 0.0], [math.cos(angle), 0.5, math.sin(angle)]]
    )
    # The shared edge runs 0 -> 1 in the first face and 1 -> 0 in the second: consistent winding.
    return vertices, np.array([[0, 1, 2], [1, 0, 3]])


# ------------------------------------------------------------- face_adjacency
def test_adjacency_of_two_triangles_sharing_an_edge():
    face_pairs, shared_edges = face_adjacency(np.array([[0, 1, 2], [2, 1, 3]]))
    np.testing.assert_array_equal(face_pairs, [[0, 1]])
    np.testing.assert_array_equal(shared_edges, [[1, 2]])
    assert face_pairs.dtype == shared_edges.dtype == np.int64


def test_adjacency_of_a_closed_tetrahedron_links_every_pair():
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    face_pairs, shared_edges = face_adjacency(faces)
    np.testing.assert_array_equal(face_pairs, list(itertools.combinations(range(4), 2)))
    for (i, j), edge in zip(face_pairs, shared_edges, strict=True):
        assert set(edge) <= set(faces[i]) & set(faces[j])


def test_adjacency_without_shared_edges_is_empty():
    for faces in (np.array([[0, 1, 2], [3, 4, 5]]), np.array([[0, 1, 2], [2, 3, 4]]), np.zeros((0, 3), int)):
        face_pairs, shared_edges = face_adjacency(faces)
        assert face_pairs.shape == shared_edges.shape == (0, 2)
        assert face_pairs.dtype == shared_edges.dtype == np.int64


def test_adjacency_links_every_pair_on_a_non_manifold_edge():
    # Three fins on the edge (0, 1), plus a face attached to the second fin only.
    faces = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [3, 0, 5]])
    face_pairs, shared_edges = face_adjacency(faces)
    np.testing.assert_array_equal(face_pairs, [[0, 1], [0, 2], [1, 2], [1, 3]])
    np.testing.assert_array_equal(shared_edges, [[0, 1], [0, 1], [0, 1], [0, 3]])


def test_adjacency_never_pairs_a_degenerate_face_with_itself():
    # (0, 0, 1) lists the edge (0, 1) twice; it is still adjacent to (1, 0, 2).
    face_pairs, shared_edges = face_adjacency(np.array([[0, 0, 1], [1, 0, 2]]))
    np.testing.assert_array_equal(face_pairs, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(shared_edges, [[0, 1], [0, 1]])


def test_adjacency_matches_a_double_loop_on_a_shuffled_grid():
    _, faces = grid_mesh(6, 6)
    rng = np.random.default_rng(3)
    # Renumber vertices, reorder faces and rotate each face's corners, so nothing is in grid order.
    faces = rng.permutation(faces.max() + 1)[faces][rng.permutation(len(faces))]
    faces = np.array(
        [np.roll(face, shift) for face, shift in zip(faces, rng.integers(0, 3, len(faces)), strict=True)]
    )
    face_pairs, shared_edges = face_adjacency(faces)
    found = {(*map(int, pair), *map(int, edge)) for pair, edge in zip(face_pairs, shared_edges, strict=True)}
    assert len(found) == len(face_pairs) == 3 * 36 - 2 * 6  # interior edges of a 6x6 split-quad grid
    assert found == naive_adjacency(faces)
    assert (face_pairs[:, 0] < face_pairs[:, 1]).all()
    assert (np.diff(face_pairs[:, 0]) >= 0).all()


def test_adjacency_rejects_bad_faces():
    with pytest.raises(ValueError, match="faces"):
        face_adjacency(np.array([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="faces"):
        face_adjacency(np.array([[0.0, 1.0, 2.0]]))


# ------------------------------------------------------------ dihedral_angles
def test_dihedral_angles_are_zero_on_a_flat_grid():
    vertices, faces = grid_mesh(4, 3)
    face_pairs, _ = face_adjacency(faces)
    np.testing.assert_allclose(dihedral_angles(vertices, faces, face_pairs), 0.0, atol=1e-12)


@pytest.mark.parametrize("degrees", [0, 30, 90, 150, 180])
def test_dihedral_angle_of_a_hinge_is_its_opening(degrees):
    vertices, faces = hinge(math.radians(degrees))
    angles = dihedral_angles(vertices, faces, face_adjacency(faces)[0])
    np.testing.assert_allclose(angles, [math.radians(degrees)], atol=1e-12)


def test_dihedral_angle_is_a_right_angle_across_a_fold():
    vertices, faces = grid_mesh(6, 3, fold_at=3)
    face_pairs, _ = face_adjacency(faces)
    centre_x = unfolded_centroids(6, 3)[:, 0]
    across = (centre_x[face_pairs[:, 0]] < 3) != (centre_x[face_pairs[:, 1]] < 3)
    angles = dihedral_angles(vertices, faces, face_pairs)
    assert across.sum() == 3
    np.testing.assert_allclose(angles[across], math.pi / 2, atol=1e-12)
    np.testing.assert_allclose(angles[~across], 0.0, atol=1e-12)


def test_dihedral_angle_with_a_zero_area_face_is_not_nan():
    # Face 1 has all three corners on a line.
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [1, -1, 0]])
    faces = np.array([[0, 1, 2], [1, 0, 3], [3, 1, 4]])
    face_pairs, _ = face_adjacency(faces)
    angles = dihedral_angles(vertices, faces, face_pairs)
    np.testing.assert_array_equal(face_pairs, [[0, 1], [1, 2]])
    np.testing.assert_array_equal(angles, [DEGENERATE_ANGLE, DEGENERATE_ANGLE])


# ----------------------------------------------------------- pairwise_weights
def test_coupling_across_a_crease_is_negligible_next_to_the_flat_parts():
    vertices, faces = grid_mesh(6, 4, fold_at=3)
    face_pairs, shared_edges = face_adjacency(faces)
    centre_x = unfolded_centroids(6, 4)[:, 0]
    across = (centre_x[face_pairs[:, 0]] < 3) != (centre_x[face_pairs[:, 1]] < 3)
    couplings = pairwise_weights(vertices, faces, face_pairs, shared_edges)
    lengths = np.linalg.norm(vertices[shared_edges[:, 0]] - vertices[shared_edges[:, 1]], axis=1)
    # Flat pairs: the edge length relative to the mean; the crease: further times exp(-(90/30)^2).
    np.testing.assert_allclose(couplings[~across], lengths[~across] / lengths.mean())
    np.testing.assert_allclose(couplings[across], math.exp(-9) * lengths[across] / lengths.mean())
    assert couplings[across].max() < 1e-3 * couplings[~across].min()
    doubled = pairwise_weights(vertices, faces, face_pairs, shared_edges, weight=2.0)
    np.testing.assert_allclose(doubled, 2 * couplings)


def test_pairwise_weights_reject_bad_arguments():
    vertices, faces = grid_mesh(2, 2)
    face_pairs, shared_edges = face_adjacency(faces)
    with pytest.raises(ValueError, match="weight"):
        pairwise_weights(vertices, faces, face_pairs, shared_edges, weight=-1.0)
    with pytest.raises(ValueError, match="angle_scale_degrees"):
        pairwise_weights(vertices, faces, face_pairs, shared_edges, angle_scale_degrees=0.0)
    with pytest.raises(ValueError, match="shared_edges"):
        pairwise_weights(vertices, faces, face_pairs, shared_edges[:-1])


# ------------------------------------------------------------------ smoothing
def test_a_lone_mislabelled_face_on_a_flat_grid_takes_its_neighbours_label():
    vertices, faces = grid_mesh(10, 10)
    face_probs = np.tile([0.9, 0.1], (len(faces), 1))
    middle = int(np.argmin(np.linalg.norm(unfolded_centroids(10, 10)[:, :2] - [5.3, 5.6], axis=1)))
    face_probs[middle] = [0.2, 0.8]
    smoothed = smooth_face_probabilities(face_probs, vertices, faces)
    assert smoothed.argmax(axis=1)[middle] == 0
    np.testing.assert_array_equal(np.delete(smoothed.argmax(axis=1), middle), 0)
    # Without coupling the face keeps its wrong label: the smoothing corrected it.
    assert smooth_face_probabilities(face_probs, vertices, faces, weight=0.0).argmax(axis=1)[middle] == 1


def test_a_label_boundary_on_a_crease_survives():
    vertices, faces = grid_mesh(10, 10, fold_at=5)
    right = unfolded_centroids(10, 10)[:, 0] > 5
    face_probs = np.where(right[:, None], LABEL1, LABEL0)
    smoothed = smooth_face_probabilities(face_probs, vertices, faces)
    np.testing.assert_array_equal(smoothed.argmax(axis=1), right)


def test_a_confident_side_spreads_over_a_flat_boundary_but_not_over_a_crease():
    # Left half weakly label 0, right half almost surely label 1. On the flat grid the
    # right side outweighs the left's weak unaries near the boundary; folded at the
    # boundary, the same faces with the same probabilities are hardly coupled across it.
    right = unfolded_centroids(10, 10)[:, 0] > 5
    face_probs = np.where(right[:, None], [0.01, 0.99], [0.55, 0.45])
    flat = smooth_face_probabilities(face_probs, *grid_mesh(10, 10), weight=2.0)
    creased = smooth_face_probabilities(face_probs, *grid_mesh(10, 10, fold_at=5), weight=2.0)
    assert (flat.argmax(axis=1) != right).sum() > 0
    np.testing.assert_array_equal(creased.argmax(axis=1), right)


def test_weight_or_iterations_zero_return_the_normalised_input():
    vertices, faces = grid_mesh(3, 3)
    face_probs = np.random.default_rng(0).random((len(faces), 4)) * 5
    expected = face_probs / face_probs.sum(axis=1, keepdims=True)
    for kwargs in ({"weight": 0.0}, {"iterations": 0}):
        smoothed = smooth_face_probabilities(face_probs, vertices, faces, **kwargs)
        assert smoothed.dtype == np.float32 and smoothed.shape == face_probs.shape
        np.testing.assert_allclose(smoothed, expected, rtol=1e-6)


def test_excluded_classes_stay_exactly_zero_and_rows_sum_to_one():
    vertices, faces = grid_mesh(4, 4)
    rng = np.random.default_rng(1)
    face_probs = rng.random((len(faces), 4))
    face_probs[:, [0, 2]] = 0.0  # e.g. PartNet's label 0 and a class absent from this shape
    face_probs[::5] = 0.0  # unseen faces
    smoothed = smooth_face_probabilities(face_probs, vertices, faces)
    assert (smoothed[:, [0, 2]] == 0.0).all()
    assert np.isfinite(smoothed).all()
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0, rtol=1e-6)


def test_an_unseen_face_takes_its_neighbours_label():
    vertices, faces = grid_mesh(5, 5)
    face_probs = np.tile(LABEL1, (len(faces), 1))
    face_probs[:, 0] = 0.2  # keep class 0 in play with a low score
    middle = int(np.argmin(np.linalg.norm(unfolded_centroids(5, 5)[:, :2] - [2.3, 2.6], axis=1)))
    face_probs[middle] = 0.0
    smoothed = smooth_face_probabilities(face_probs, vertices, faces)
    assert smoothed.argmax(axis=1)[middle] == 1
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0, rtol=1e-6)


def test_faces_marked_unseen_ignore_their_row_and_isolated_ones_stay_uniform():
    vertices, faces = grid_mesh(3, 3)
    # An extra triangle touching nothing, unseen: nothing decides it.
    vertices = np.concatenate([vertices, [[10.0, 0, 0], [11, 0, 0], [10, 1, 0]]])
    faces = np.concatenate([faces, [[16, 17, 18]]])
    face_probs = np.tile([0.1, 0.9, 0.0], (len(faces), 1))
    face_probs[4] = [1.0, 0.0, 0.0]  # voted label 0, but marked unseen below
    face_probs[-1] = 0.0
    seen = np.ones(len(faces), bool)
    seen[[4, -1]] = False
    smoothed = smooth_face_probabilities(face_probs, vertices, faces, seen=seen)
    assert smoothed.argmax(axis=1)[4] == 1
    np.testing.assert_allclose(smoothed[-1], [0.5, 0.5, 0.0])


def test_eps_decides_whether_neighbours_can_overrule_a_hard_vote():
    vertices, faces = grid_mesh(5, 5)
    face_probs = np.tile([0.9, 0.1], (len(faces), 1))
    middle = int(np.argmin(np.linalg.norm(unfolded_centroids(5, 5)[:, :2] - [2.3, 2.6], axis=1)))
    face_probs[middle] = [0.0, 1.0]
    assert smooth_face_probabilities(face_probs, vertices, faces).argmax(axis=1)[middle] == 1
    assert smooth_face_probabilities(face_probs, vertices, faces, eps=0.2).argmax(axis=1)[middle] == 0


def test_alternating_weak_beliefs_do_not_oscillate():
    # The face graph of the grid is bipartite: all first triangles of the quads lean to
    # class 0, all second ones to class 1. Updating every face at once would swap the two
    # groups' labels every round; sweeping independent sets converges instead.
    vertices, faces = grid_mesh(6, 6)
    half = len(faces) // 2
    face_probs = np.where((np.arange(len(faces)) < half)[:, None], [0.55, 0.45], [0.45, 0.55])
    after_60 = smooth_face_probabilities(face_probs, vertices, faces, iterations=60)
    after_61 = smooth_face_probabilities(face_probs, vertices, faces, iterations=61)
    # Converged: one more sweep changes nothing (all-at-once updates would flip every face).
    np.testing.assert_allclose(after_61, after_60, atol=1e-4)


def test_independent_sets_cover_every_face_once_without_adjacent_pairs():
    _, faces = grid_mesh(6, 5)
    face_pairs, _ = face_adjacency(faces)
    sets = _independent_sets(face_pairs, len(faces))
    np.testing.assert_array_equal(np.sort(np.concatenate(sets)), np.arange(len(faces)))
    set_of_face = np.empty(len(faces), int)
    for index, members in enumerate(sets):
        set_of_face[members] = index
    assert (set_of_face[face_pairs[:, 0]] != set_of_face[face_pairs[:, 1]]).all()


def test_smoothing_rejects_bad_arguments():
    vertices, faces = grid_mesh(2, 2)
    face_probs = np.full((len(faces), 2), 0.5)
    with pytest.raises(ValueError, match="face_probs"):
        smooth_face_probabilities(face_probs[:-1], vertices, faces)
    with pytest.raises(ValueError, match="face_probs"):
        smooth_face_probabilities(-face_probs, vertices, faces)
    with pytest.raises(ValueError, match="weight"):
        smooth_face_probabilities(face_probs, vertices, faces, weight=-0.5)
    with pytest.raises(ValueError, match="iterations"):
        smooth_face_probabilities(face_probs, vertices, faces, iterations=-1)
    with pytest.raises(ValueError, match="angle_scale_degrees"):
        smooth_face_probabilities(face_probs, vertices, faces, angle_scale_degrees=-30.0)
    with pytest.raises(ValueError, match="seen"):
        smooth_face_probabilities(face_probs, vertices, faces, seen=np.ones(3, bool))
    with pytest.raises(ValueError, match="vertices"):
        smooth_face_probabilities(face_probs, vertices[:, :2], faces)
    with pytest.raises(ValueError, match="faces"):
        smooth_face_probabilities(face_probs, vertices, faces + 100)
