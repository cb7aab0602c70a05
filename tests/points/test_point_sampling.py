"""Surface samples: sizes, dtypes, labels from faces, area weighting, seeding, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.synthetic import make_shape
from mvdecor.errors import InvalidMeshError
from mvdecor.points.sampling import (
    UP_AXIS,
    augment_points,
    network_input,
    random_rotation,
    sample_surface,
    shape_point_clouds,
)


@pytest.fixture(scope="module")
def chair() -> LabelledMesh:
    return make_shape("chair", 0)


def test_samples_have_the_documented_shapes_and_lie_on_their_faces(chair):
    samples = sample_surface(chair, 500, seed := 3)
    assert len(samples) == 500
    assert samples.points.shape == (500, 3) and samples.points.dtype == np.float32
    assert samples.normals.shape == (500, 3) and samples.normals.dtype == np.float32
    assert samples.face_ids.shape == (500,) and samples.face_ids.dtype == np.int64
    assert samples.labels.shape == (500,) and samples.labels.dtype == np.int64
    np.testing.assert_array_equal(samples.labels, chair.face_labels[samples.face_ids])
    np.testing.assert_allclose(samples.normals, chair.face_normals()[samples.face_ids], atol=1e-6)
    # Each point is in its face's plane, inside the triangle (non-negative barycentrics).
    tri = chair.triangles[samples.face_ids]
    offset = np.einsum("nd,nd->n", samples.points - tri[:, 0], chair.face_normals()[samples.face_ids])
    assert np.abs(offset).max() < 1e-5
    e1, e2, v = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], samples.points - tri[:, 0]
    d00, d01, d11 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    d20, d21 = (v * e1).sum(1), (v * e2).sum(1)
    denominator = d00 * d11 - d01**2
    b1, b2 = (d11 * d20 - d01 * d21) / denominator, (d00 * d21 - d01 * d20) / denominator
    assert min(b1.min(), b2.min(), (1 - b1 - b2).min()) > -1e-4
    # Seeded: the same seed, the same samples; another seed, others.
    again = sample_surface(chair, 500, seed)
    np.testing.assert_array_equal(again.points, samples.points)
    assert not np.array_equal(sample_surface(chair, 500, seed + 1).points, samples.points)


def test_faces_are_drawn_in_proportion_to_their_area():
    # Two triangles, the second three times the area of the first.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [2, 1, 0]], float)
    mesh = LabelledMesh(vertices, np.array([[0, 1, 2], [3, 4, 5]]), face_labels=np.array([4, -1]))
    samples = sample_surface(mesh, 20_000, 0)
    share = np.mean(samples.face_ids == 1)
    assert abs(share - 0.75 / (0.75 + 0.25)) < 0.02
    assert set(np.unique(samples.labels)) == {4, -1}  # labels from faces, -1 kept


def test_unlabelled_meshes_give_minus_one_and_flat_meshes_are_refused(chair):
    assert (sample_surface(chair.replace(face_labels=None), 10).labels == -1).all()
    flat = LabelledMesh(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(InvalidMeshError, match="zero area"):
        sample_surface(flat, 10)


def test_one_fixed_cloud_per_shape_independent_of_the_others(chair):
    other = make_shape("chair", 1)
    clouds = shape_point_clouds([chair, other], 64, seed=5)
    assert [len(c) for c in clouds] == [64, 64]
    alone = shape_point_clouds([other], 64, seed=5)[0]
    np.testing.assert_array_equal(alone.points, clouds[1].points)


def test_rotations_and_augmentation():
    rng = np.random.default_rng(0)
    rotation = random_rotation(rng, 360.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    up = random_rotation(rng, 360.0, axis=UP_AXIS)
    np.testing.assert_allclose(up[UP_AXIS], np.eye(3)[UP_AXIS], atol=1e-12)  # the up axis stays
    points = rng.normal(size=(50, 3))
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    moved, turned = augment_points(
        points, normals, rng, rotation_degrees=360.0, scale_range=(2.0, 2.0), jitter_std=0.0
    )
    assert moved.dtype == turned.dtype == np.float32
    # Rotation and scale keep the distances (times the scale) and the normals unit length.
    np.testing.assert_allclose(
        np.linalg.norm(moved[1:] - moved[0], axis=1), 2 * np.linalg.norm(points[1:] - points[0], axis=1), 1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(turned, axis=1), 1.0, atol=1e-6)
    cloud = network_input(moved, turned, use_normals=True)
    assert cloud.shape == (6, 50) and cloud.dtype == np.float32
    assert network_input(moved, None, use_normals=False).shape == (3, 50)
