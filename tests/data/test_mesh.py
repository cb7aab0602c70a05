"""The LabelledMesh contract: validation, normalisation, labels, concatenation."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.data.mesh import (
    DEFAULT_FACE_COLOR,
    LabelledMesh,
    concatenate_meshes,
    labels_from_nearest_faces,
    vertex_labels_to_face_labels,
)
from mvdecor.errors import InvalidMeshError, LabelError

V = np.array([[0, 0, 0], [2, 0, 0], [0, 4, 0], [2, 4, 6]], float)
F = np.array([[0, 1, 2], [1, 3, 2]])


def test_arrays_are_read_only_copies():
    vertices = V.copy()
    mesh = LabelledMesh(vertices, F)
    vertices[0, 0] = 99
    assert mesh.vertices[0, 0] == 0
    with pytest.raises(ValueError, match="read-only"):
        mesh.vertices[0, 0] = 1
    assert mesh.faces.dtype == np.int64 and mesh.face_part_ids.tolist() == [0, 0]
    np.testing.assert_allclose(mesh.face_colors, np.broadcast_to(DEFAULT_FACE_COLOR, (2, 3)))


def test_normalization_is_reversible_and_ignores_unused_vertices():
    stray = np.vstack([V, [[100.0, 100.0, 100.0]]])  # unused by any face
    mesh = LabelledMesh(stray, F, source="x.obj")
    norm = mesh.normalized()
    used = norm.vertices[:4]
    np.testing.assert_allclose((used.min(0) + used.max(0)) / 2, 0, atol=1e-12)
    assert np.linalg.norm(used, axis=1).max() == pytest.approx(1.0)
    np.testing.assert_allclose(norm.normalization.invert(norm.vertices), stray, atol=1e-9)
    twice = norm.normalized()  # composing normalisations still inverts to the source
    np.testing.assert_allclose(twice.normalization.invert(twice.vertices), stray, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"vertices": V, "faces": np.zeros((0, 3), int)}, InvalidMeshError, "no triangle faces"),
        ({"vertices": np.where(V == 6, np.nan, V), "faces": F}, InvalidMeshError, "NaN or infinite"),
        ({"vertices": V, "faces": F + 2}, InvalidMeshError, "faces index vertex 5"),
        ({"vertices": V, "faces": F, "face_labels": [0]}, LabelError, "1 labels given for 2 faces"),
        (
            {"vertices": V, "faces": F, "face_labels": [0, 3], "label_names": ("a", "b")},
            LabelError,
            "no name",
        ),
        ({"vertices": V, "faces": F, "face_labels": [0, -2]}, LabelError, "negative"),
        ({"vertices": V, "faces": F, "face_uvs": np.zeros((1, 3, 2))}, InvalidMeshError, "face_uvs"),
    ],
)
def test_invalid_meshes_name_the_source(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        LabelledMesh(**kwargs, source="bad.obj")
    assert str(info.value).startswith("bad.obj: ")


def test_degenerate_extent_is_an_error():
    with pytest.raises(InvalidMeshError, match="no extent"):
        LabelledMesh(np.zeros((3, 3)), [[0, 1, 2]]).normalized()


def test_vertex_labels_majority():
    faces = np.array([[0, 1, 2], [0, 1, 3], [2, 3, 4]])
    labels = np.array([5, 5, 7, 7, 9])
    # face 0: 5,5,7 -> 5; face 1: 5,5,7 -> 5; face 2: 7,7,9 -> 7
    assert vertex_labels_to_face_labels(faces, labels).tolist() == [5, 5, 7]
    # all different: the smallest label
    assert vertex_labels_to_face_labels(np.array([[0, 2, 4]]), labels).tolist() == [5]


@pytest.mark.parametrize("fast_build", [False, True])
def test_labels_from_nearest_faces_matches_brute_force(fast_build):
    rng = np.random.default_rng(3)
    centroids = rng.random((300, 3))
    labels = rng.integers(0, 5, 300)
    known = rng.random(300) < 0.4
    fill = ~known & (rng.random(300) < 0.7)
    out = labels_from_nearest_faces(labels, centroids, known, fill, fast_build=fast_build)
    # Naive reference: every pairwise distance, the nearest known face's label.
    known_idx = np.flatnonzero(known)
    distances = np.linalg.norm(centroids[fill][:, None] - centroids[known_idx][None], axis=2)
    expected = labels.copy()
    expected[fill] = labels[known_idx[distances.argmin(axis=1)]]
    assert out.dtype == np.int64
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, labels)  # the fill changed something: the check can fail


def test_labels_from_nearest_faces_leaves_input_and_handles_nothing_known():
    labels = np.array([2, -1, -1])
    centroids = np.array([[0.0, 0, 0], [1, 0, 0], [5, 0, 0]])
    nothing = np.zeros(3, bool)
    assert labels_from_nearest_faces(labels, centroids, nothing, labels < 0).tolist() == [2, -1, -1]
    out = labels_from_nearest_faces(labels, centroids, labels >= 0, labels < 0)
    assert out.tolist() == [2, 2, 2]
    assert labels.tolist() == [2, -1, -1]


def test_concatenate_keeps_parts_labels_and_textures():
    tex = np.zeros((2, 2, 3), np.uint8)
    a = LabelledMesh(
        V,
        F,
        face_labels=[0, 1],
        label_names=("x", "y"),
        part_names=("a",),
        face_uvs=np.zeros((2, 3, 2)),
        face_texture_ids=[0, -1],
        textures=(tex,),
    )
    b = LabelledMesh(V + 10, F, face_labels=[1, 1], label_names=("x", "y"), part_names=("b",),
                     vertex_colors=np.ones((4, 3)))  # fmt: skip
    merged = concatenate_meshes([a, b], name="ab")
    assert merged.num_faces == 4 and merged.part_names == ("a", "b")
    assert merged.face_part_ids.tolist() == [0, 0, 1, 1]
    assert merged.face_labels.tolist() == [0, 1, 1, 1] and merged.label_names == ("x", "y")
    assert merged.faces[2:].min() == 4
    assert merged.face_texture_ids.tolist() == [0, -1, -1, -1] and len(merged.textures) == 1
    np.testing.assert_allclose(merged.vertex_colors[4:], 1.0)
    # Labels over different vocabularies are dropped rather than mixed.
    c = b.replace(label_names=("p", "q"))
    assert concatenate_meshes([a, c]).face_labels is None
