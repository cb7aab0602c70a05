"""Cameras: conventions, the authors' scheme, reproducibility, projection."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.render.cameras import (
    Cameras,
    CameraScheme,
    closeup_cameras,
    look_at_rotation,
    sphere_cameras,
    sphere_directions,
)


def test_authors_scheme_has_86_views_within_distance_range():
    cams = CameraScheme().cameras(seed=0)
    assert len(cams) == 86
    dist = np.linalg.norm(cams.centers, axis=1)
    assert dist.min() >= 1.4 - 1e-9 and dist.max() <= 2.0 + 1e-9
    assert cams.width == cams.height == 256
    # 60 degree vertical field of view: focal = 128 / tan(30 deg).
    np.testing.assert_allclose(cams.focal, 128 / np.tan(np.radians(30)))


def test_sphere_directions_cover_both_poles_and_rings():
    dirs = sphere_directions(7, 12)
    assert dirs.shape == (86, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    np.testing.assert_allclose(dirs[0], [0, 1, 0])
    np.testing.assert_allclose(dirs[-1], [0, -1, 0])
    assert len(np.unique(dirs[1:-1, 1].round(9))) == 7  # seven ring heights


def test_cameras_reproducible_by_seed_and_differ_across_seeds():
    a, b, c = (CameraScheme().cameras(seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.rotation, b.rotation)
    np.testing.assert_array_equal(a.translation, b.translation)
    assert not np.allclose(a.translation, c.translation)


def test_rotations_are_proper_and_jitter_is_bounded():
    cams = CameraScheme().cameras(seed=1)
    r = cams.rotation
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)
    # The optical axis deviates from the direction to the origin by at most the clipped jitter.
    forward = r[:, 2]
    to_origin = -cams.centers / np.linalg.norm(cams.centers, axis=1, keepdims=True)
    angle = np.arccos(np.clip((forward * to_origin).sum(1), -1, 1))
    assert angle.max() <= np.sqrt(3) * 0.25 + 1e-9
    assert angle.max() > 0.01  # jitter is applied


def test_no_jitter_looks_exactly_at_origin_with_upright_image():
    cams = sphere_cameras(rings=3, segments=4, jitter_std=0.0, seed=0)
    px, depth = cams.project(np.zeros(3), 5)
    np.testing.assert_allclose(px, [cams.width / 2, cams.height / 2], atol=1e-9)
    assert depth > 0
    # A point above the origin (+Y world) appears above the image centre (smaller row).
    px_up, _ = cams.project(np.array([0.0, 0.3, 0.0]), 5)
    assert px_up[1] < cams.height / 2


def test_look_at_handles_poles():
    rot = look_at_rotation(np.array([[0.0, 2.0, 0.0], [0.0, -2.0, 0.0]]), np.zeros(3))
    assert np.isfinite(rot).all()
    np.testing.assert_allclose(rot[:, 2], [[0, -1, 0], [0, 1, 0]], atol=1e-12)


def test_pixel_rays_project_back_to_their_pixels():
    cams = CameraScheme(resolution=32).cameras(seed=2)
    origin, dirs = cams.pixel_rays(7)
    points = origin + 1.3 * dirs
    px, depth = cams.project(points, 7)
    rows, cols = np.mgrid[0:32, 0:32]
    np.testing.assert_allclose(px[..., 0], cols + 0.5, atol=1e-9)
    np.testing.assert_allclose(px[..., 1], rows + 0.5, atol=1e-9)
    assert (depth > 0).all()


def test_project_behind_camera_is_nan():
    cams = CameraScheme(resolution=16).cameras(seed=0)
    behind = cams.centers[0] - 1.0 * cams.rotation[0, 2]
    px, depth = cams.project(behind, 0)
    assert depth < 0 and np.isnan(px).all()


def test_closeup_cameras_look_at_target_from_given_distance():
    target = np.array([0.2, 0.5, 0.1])
    cams = closeup_cameras(target, num_views=6, distance=0.5, cone_degrees=25, resolution=64)
    assert len(cams) == 6
    np.testing.assert_allclose(np.linalg.norm(cams.centers - target, axis=1), 0.5)
    for i in range(6):
        px, _ = cams.project(target, i)
        np.testing.assert_allclose(px, [32, 32], atol=1e-9)
    axis = target / np.linalg.norm(target)
    offsets = (cams.centers - target) / 0.5
    assert np.degrees(np.arccos(np.clip(offsets @ axis, -1, 1))).max() <= 25 + 1e-6


def test_camera_batch_roundtrip_and_indexing():
    cams = CameraScheme(resolution=64).cameras(seed=5)
    again = Cameras.from_dict(cams.to_dict())
    np.testing.assert_array_equal(again.rotation, cams.rotation)
    one = cams[3]
    assert len(one) == 1
    np.testing.assert_array_equal(one.rotation[0], cams.rotation[3])
    assert len(Cameras.concatenate([cams, one])) == len(cams) + 1
    np.testing.assert_allclose(cams.extrinsics[:, :3, :3], cams.rotation)
    np.testing.assert_allclose(cams.intrinsics[:, 0, 0], cams.focal[:, 0])


def test_bad_camera_arguments_raise():
    with pytest.raises(ValueError, match="distance_scale"):
        sphere_cameras(distance_scale=(1.0, 0.5))
    with pytest.raises(ValueError, match="shape"):
        Cameras(np.eye(3)[None], np.zeros((2, 3)), np.ones((1, 2)), np.ones((1, 2)), 8, 8)
