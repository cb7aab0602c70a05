"""The ray-cast renderer against a naive reference, and each buffer's meaning."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from mvdecor.data.mesh import LabelledMesh
from mvdecor.render import CameraScheme, Renderer
from mvdecor.render.cameras import Cameras, look_at_rotation
from mvdecor.render.raycast import intersect_known_faces
from mvdecor.render.renderer import sample_texture_bilinear


def naive_first_hits(triangles: np.ndarray, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Closest face hit by each ray, by testing every ray against every triangle (float64)."""
    best_t = np.full(len(dirs), np.inf)
    best_f = np.full(len(dirs), -1, np.int64)
    v0 = triangles[:, 0]
    e1 = triangles[:, 1] - v0
    e2 = triangles[:, 2] - v0
    s = origin[None] - v0  # (F, 3)
    for start in range(0, len(dirs), 256):
        d = dirs[start : start + 256]  # (R, 3)
        p = np.cross(d[:, None], e2[None])  # (R, F, 3)
        det = (e1[None] * p).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            u = (s[None] * p).sum(-1) * inv
            q = np.cross(s, e1)  # (F, 3)
            v = (d[:, None] * q[None]).sum(-1) * inv
            t = (e2 * q).sum(-1)[None] * inv
        ok = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
        t = np.where(ok, t, np.inf)
        face = t.argmin(axis=1)
        tmin = t[np.arange(len(d)), face]
        best_t[start : start + 256] = tmin
        best_f[start : start + 256] = np.where(np.isfinite(tmin), face, -1)
    return best_f


def _meshes() -> dict[str, LabelledMesh]:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    box = trimesh.creation.box(extents=(1.0, 0.4, 0.7))
    torus = trimesh.creation.torus(major_radius=0.7, minor_radius=0.25, major_sections=32, minor_sections=12)
    cyl = trimesh.creation.cylinder(radius=0.3, height=1.2, sections=24)
    # Two overlapping parts: occlusion between separate components.
    two = trimesh.util.concatenate([box, cyl.copy().apply_translation((0.3, 0.2, 0.3))])
    return {
        name: LabelledMesh(m.vertices, m.faces, name=name).normalized()
        for name, m in {"sphere": sphere, "box": box, "torus": torus, "two_parts": two}.items()
    }


@pytest.mark.parametrize("name", ["sphere", "box", "torus", "two_parts"])
def test_face_ids_agree_with_naive_reference(name):
    mesh = _meshes()[name]
    cams = CameraScheme(rings=2, segments=3, resolution=48).cameras(seed=11)
    renderer = Renderer(mesh)
    agree = total = 0
    for i in range(len(cams)):
        view = renderer.render_view(cams, i)
        origin, dirs = cams.pixel_rays(i)
        ref = naive_first_hits(mesh.triangles, origin, dirs.reshape(-1, 3))
        agree += int((view.face_ids.reshape(-1) == ref).sum())
        total += ref.size
        assert (view.face_ids >= 0).any()
    assert agree / total >= 0.999, f"{name}: {agree / total:.5f} of face ids agree"


def test_buffers_are_consistent_with_geometry():
    mesh = _meshes()["torus"]
    cams = CameraScheme(resolution=64).cameras(seed=3)
    view = Renderer(mesh).render_view(cams, 10)
    mask = view.mask
    fids = view.face_ids[mask]
    tri = mesh.triangles[fids]
    # Hit points are the barycentric combination of the seen face's corners.
    bary = view.barycentrics[mask].astype(np.float64)
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-5)
    assert bary.min() >= 0
    np.testing.assert_allclose(np.einsum("nk,nkc->nc", bary, tri), view.hit_points[mask], atol=1e-5)
    # Hit points project back into their own pixels; depth is camera-space Z.
    px, z = cams.project(view.hit_points[mask], 10)
    rows, cols = np.nonzero(mask)
    np.testing.assert_allclose(px[:, 0], cols + 0.5, atol=2e-3)
    np.testing.assert_allclose(px[:, 1], rows + 0.5, atol=2e-3)
    np.testing.assert_allclose(z, view.depth[mask], rtol=1e-5)
    # Normals: unit, the face's normal up to sign, facing the camera.
    n = view.normals[mask]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.abs((n * mesh.face_normals()[fids]).sum(1)), 1.0, atol=1e-5)
    to_cam = cams.centers[10] - view.hit_points[mask]
    assert ((n * to_cam).sum(1) >= -1e-6).all()
    # Normalised depth spans [0, 1] on the foreground; background is 0 everywhere.
    d = view.depth_normalized[mask]
    assert d.min() == pytest.approx(0.0) and d.max() == pytest.approx(1.0)
    for buf in (view.depth, view.shading, view.rgb, view.normals, view.hit_points, view.barycentrics):
        assert not buf[~mask].any()
    assert (view.face_ids[~mask] == -1).all()
    assert view.shading[mask].min() > 0 and view.shading[mask].max() <= 1.0


def test_view_from_face_ids_equals_cast_view():
    mesh = _meshes()["two_parts"]
    cams = CameraScheme(resolution=64).cameras(seed=4)
    renderer = Renderer(mesh)
    for i in (0, 17, 85):
        cast = renderer.render_view(cams, i)
        rebuilt = renderer.view_from_face_ids(cams, i, cast.face_ids)
        np.testing.assert_array_equal(rebuilt.face_ids, cast.face_ids)
        np.testing.assert_allclose(rebuilt.hit_points, cast.hit_points, atol=1e-5)
        np.testing.assert_allclose(rebuilt.depth, cast.depth, atol=1e-5)
        np.testing.assert_allclose(rebuilt.normals, cast.normals, atol=1e-6)
        np.testing.assert_allclose(rebuilt.barycentrics, cast.barycentrics, atol=2e-3)
        np.testing.assert_allclose(rebuilt.shading, cast.shading, atol=1e-5)


def test_intersect_known_faces_matches_parametric_point():
    rng = np.random.default_rng(0)
    tri = rng.normal(size=(50, 3, 3))
    w = rng.dirichlet([1, 1, 1], size=50)
    target = np.einsum("nk,nkc->nc", w, tri)
    origin = np.array([0.1, 5.0, -0.3])
    d = target - origin
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    bary, t = intersect_known_faces(tri, origin, d)
    np.testing.assert_allclose(bary, w, atol=1e-9)
    np.testing.assert_allclose(origin + t[:, None] * d, target, atol=1e-9)


def _front_camera(resolution: int, distance: float = 2.0, fov: float = 40.0) -> Cameras:
    eye = np.array([[0.0, 0.0, distance]])
    rot = look_at_rotation(eye, np.zeros(3))
    focal = 0.5 * resolution / np.tan(np.radians(fov) / 2)
    return Cameras(
        rot, -(rot[0] @ eye[0])[None], [[focal, focal]], [[resolution / 2] * 2], resolution, resolution
    )


def _textured_quad() -> LabelledMesh:
    # A unit quad facing +Z with a 2x2 texture: red top-left, green top-right,
    # blue bottom-left, white bottom-right (image row 0 is the top).
    vertices = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv_of_vertex = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    texture = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    texture = texture.repeat(8, axis=0).repeat(8, axis=1)  # 16x16, sharp quadrants
    return LabelledMesh(
        vertices,
        faces,
        face_uvs=uv_of_vertex[faces],
        face_texture_ids=np.zeros(2, np.int32),
        textures=(texture,),
    )


def test_known_texture_appears_at_expected_pixels():
    mesh = _textured_quad()
    cams = _front_camera(64)
    view = Renderer(mesh).render_view(cams, 0)
    albedo = view.rgb / view.shading[..., None].clip(1e-6)
    # Quadrant centres of the quad in the image (the quad spans the middle of the view).
    px, _ = cams.project(
        np.array([[-0.25, 0.25, 0], [0.25, 0.25, 0], [-0.25, -0.25, 0], [0.25, -0.25, 0]]), 0
    )
    expected = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]
    for (u, v), colour in zip(px, expected, strict=True):
        np.testing.assert_allclose(albedo[int(v), int(u)], colour, atol=1e-3)
    # Head light: shading falls with the angle between the pixel's ray and the normal.
    _origin, dirs = cams.pixel_rays(0)
    cos = np.abs(dirs[..., 2])[view.mask]
    np.testing.assert_allclose(view.shading[view.mask], 0.25 + 0.75 * cos, atol=1e-5)


def test_material_and_vertex_colours():
    quad = _textured_quad()
    red = quad.replace(
        face_uvs=None, face_texture_ids=None, textures=(), face_colors=np.array([[1, 0, 0]] * 2)
    )
    view = Renderer(red).render_view(_front_camera(32), 0)
    albedo = view.rgb[view.mask] / view.shading[view.mask][:, None]
    np.testing.assert_allclose(albedo, np.broadcast_to([1, 0, 0], albedo.shape), atol=1e-5)
    vcol = red.replace(vertex_colors=np.array([[0, 0, 1]] * 4, float))
    view = Renderer(vcol).render_view(_front_camera(32), 0)
    albedo = view.rgb[view.mask] / view.shading[view.mask][:, None]
    np.testing.assert_allclose(albedo, np.broadcast_to([0, 0, 1], albedo.shape), atol=1e-5)


def test_bilinear_texture_sampling_wraps():
    tex = np.zeros((2, 2, 3), np.uint8)
    tex[0, 0] = 255  # top-left texel white
    # The centre of the top-left texel is (u, v) = (0.25, 0.75); wrapping by +1 is the same.
    np.testing.assert_allclose(sample_texture_bilinear(tex, np.array([[0.25, 0.75], [1.25, -0.25]])), 1.0)
    # Halfway between the top-left and top-right texel centres.
    np.testing.assert_allclose(sample_texture_bilinear(tex, np.array([[0.5, 0.75]])), 0.5)
    # u = 0 lies halfway between texel columns 1 and 0 when wrapping.
    np.testing.assert_allclose(sample_texture_bilinear(tex, np.array([[0.0, 0.75]])), 0.5)


def test_face_labels_per_pixel():
    mesh = _meshes()["box"]
    labels = np.arange(mesh.num_faces) % 3
    view = Renderer(mesh).render_view(CameraScheme(resolution=32).cameras(0), 1)
    pix = view.face_labels(labels)
    assert (pix[~view.mask] == -1).all()
    np.testing.assert_array_equal(pix[view.mask], labels[view.face_ids[view.mask]])


def test_missing_embree_raises_clear_error(monkeypatch):
    import importlib.util

    from mvdecor.errors import BackendUnavailableError
    from mvdecor.render import raycast

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "embreex" else real(n, *a))
    assert not raycast.embree_available()
    with pytest.raises(BackendUnavailableError, match="pip install embreex"):
        Renderer(_meshes()["box"])
