"""Pixel correspondences: reprojection against the k-d tree reference, and their invariants."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.spatial

from mvdecor.correspond import (
    DEFAULT_RADIUS,
    Matches,
    auto_radius,
    footprint_radius,
    match_views,
    match_views_aligned,
    match_views_kdtree,
    overlap_ratio,
    sample_matches,
)
from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.synthetic import make_shape
from mvdecor.render import CameraScheme, Renderer
from mvdecor.render.cameras import Cameras, look_at_rotation
from mvdecor.render.views import RenderedView

RES = 96


def cameras_at(eyes, targets, resolution: int = RES, half_fov_tan: float = np.tan(np.radians(30))) -> Cameras:
    """Square pinhole cameras at ``eyes`` (N, 3) looking at ``targets`` (N, 3)."""
    eyes = np.asarray(eyes, np.float64)
    rotation = look_at_rotation(eyes, np.asarray(targets, np.float64))
    n = len(eyes)
    return Cameras(
        rotation=rotation,
        translation=-np.einsum("nij,nj->ni", rotation, eyes),
        focal=np.full((n, 2), 0.5 * resolution / half_fov_tan),
        principal=np.full((n, 2), resolution / 2.0),
        width=resolution,
        height=resolution,
    )


def quad(half: float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """A square ``[-half, half]^2`` in the plane ``z``, facing +Z: vertices (4, 3), faces (2, 3)."""
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def quad_mesh(half: float = 0.5) -> LabelledMesh:
    v, f = quad(half, 0.0)
    return LabelledMesh(v, f)


@pytest.fixture(scope="module")
def chair_views() -> list[RenderedView]:
    cams = CameraScheme(resolution=RES).cameras(seed=0)
    renderer = Renderer(make_shape("chair", 0))
    # Neighbouring views on two rings and a pole: plenty of overlapping pairs.
    return [renderer.render_view(cams, i) for i in (0, 1, 2, 3, 13, 14, 15, 25, 26)]


@pytest.fixture(scope="module")
def overlapping_pairs(chair_views) -> list[tuple[int, int]]:
    """Ordered pairs of ``chair_views`` with more than 15% overlap (i < j: both directions are tested)."""
    views = chair_views
    pairs = []
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            m = match_views(views[i], views[j], auto_radius(views[i], views[j]))
            if overlap_ratio(m, views[i], views[j]) > 0.15:
                pairs.append((i, j) if (i + j) % 2 else (j, i))
    return pairs


# --------------------------------------------------------------- agreement
@pytest.mark.parametrize("radius_kind", ["auto", "default"])
def test_reprojection_agrees_with_kdtree_reference(chair_views, overlapping_pairs, radius_kind):
    views = chair_views
    pairs = overlapping_pairs
    assert len(pairs) >= 10
    total = same_pair = same_a = 0
    for i, j in pairs:
        a, b = views[i], views[j]
        radius = auto_radius(a, b) if radius_kind == "auto" else DEFAULT_RADIUS
        m = match_views(a, b, radius)
        ref = match_views_kdtree(a, b, radius)
        # Never farther than the radius, and the distances are the hit points' distances.
        assert (m.distance <= radius).all() and (ref.distance <= radius).all()
        found = dict(zip(m.index_a.tolist(), m.index_b.tolist(), strict=True))
        total += len(ref)
        same_a += sum(ia in found for ia in ref.index_a.tolist())
        same_pair += sum(
            found.get(ia) == ib for ia, ib in zip(ref.index_a.tolist(), ref.index_b.tolist(), strict=True)
        )
    assert total > 1000
    # Measured at 96 px: auto radius 0.967 / 0.945 (A pixel matched / same pair); 5e-3: 0.9998 / 0.9996.
    assert same_a / total >= 0.90, f"{same_a / total:.3f} of the reference's A pixels matched"
    assert same_pair / total >= 0.85, f"{same_pair / total:.3f} of the reference's pairs found"


def test_matches_are_one_to_one_and_within_radius(chair_views):
    for i, j in [(0, 1), (3, 4), (4, 5), (7, 8), (1, 0)]:
        a, b = chair_views[i], chair_views[j]
        radius = auto_radius(a, b)
        for matcher in (match_views, match_views_kdtree):
            m = matcher(a, b, radius)
            assert len(m) > 0
            assert m.index_a.dtype == np.int64 and m.index_b.dtype == np.int64
            assert m.distance.dtype == np.float32
            assert len(np.unique(m.index_a)) == len(m) and len(np.unique(m.index_b)) == len(m)
            assert (np.diff(m.index_a) > 0).all()  # sorted by A pixel
            # Both pixels are foreground and their hit points within the radius.
            (ra, ca), (rb, cb) = m.pixels_a.T, m.pixels_b.T
            assert a.mask[ra, ca].all() and b.mask[rb, cb].all()
            gap = np.linalg.norm(a.hit_points[ra, ca] - b.hit_points[rb, cb], axis=1)
            assert (gap <= radius * (1 + 1e-5)).all()
            np.testing.assert_allclose(m.distance, gap, atol=1e-6)
            # Same side of the surface.
            assert ((a.normals[ra, ca] * b.normals[rb, cb]).sum(1) > 0).all()


def test_reprojected_points_fall_in_their_b_pixel(chair_views):
    a, b = chair_views[0], chair_views[1]
    m = match_views(a, b, auto_radius(a, b))
    pix, _ = b.camera.project(a.hit_points.reshape(-1, 3)[m.index_a], 0)
    np.testing.assert_array_equal(np.floor(pix[:, ::-1]).astype(np.int64), m.pixels_b)


def test_kdtree_scipy_fallback_gives_the_same_matches(chair_views, monkeypatch):
    a, b = chair_views[0], chair_views[1]
    radius = auto_radius(a, b)
    fast = match_views_kdtree(a, b, radius)
    monkeypatch.setitem(sys.modules, "pykdtree.kdtree", None)  # import now raises ImportError
    calls = []

    class CountingTree(scipy.spatial.cKDTree):
        def query(self, *args, **kwargs):
            calls.append(1)
            return super().query(*args, **kwargs)

    monkeypatch.setattr(scipy.spatial, "cKDTree", CountingTree)
    slow = match_views_kdtree(a, b, radius)
    assert calls == [1]
    np.testing.assert_array_equal(fast.index_a, slow.index_a)
    np.testing.assert_array_equal(fast.index_b, slow.index_b)


def test_views_of_different_sizes(chair_views):
    cams = CameraScheme(resolution=64).cameras(seed=0)
    small = Renderer(make_shape("chair", 0)).render_view(cams, 1)
    big = chair_views[0]  # camera 0 of the same scheme at 96 px
    radius = auto_radius(big, small)
    for a, b in ((big, small), (small, big)):
        m = match_views(a, b, radius)
        ref = match_views_kdtree(a, b, radius)
        assert len(m) > 100 and m.shape_a == a.face_ids.shape and m.shape_b == b.face_ids.shape
        (ra, ca), (rb, cb) = m.pixels_a.T, m.pixels_b.T
        gap = np.linalg.norm(a.hit_points[ra, ca] - b.hit_points[rb, cb], axis=1)
        assert (gap <= radius * (1 + 1e-5)).all()
        assert len(np.intersect1d(m.index_a, ref.index_a)) >= 0.9 * len(ref)


# ---------------------------------------------------------- known geometry
def test_view_matched_with_itself_overlaps_fully(chair_views):
    view = chair_views[4]
    m = match_views(view, view, DEFAULT_RADIUS)
    assert overlap_ratio(m, view, view) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(m.index_a, m.index_b)
    assert m.distance.max() < 1e-5


def test_opposite_sides_of_a_sheet_do_not_match():
    renderer = Renderer(quad_mesh())
    cams = cameras_at([[0.1, 0.05, 2.0], [-0.1, 0.0, -2.0]], [[0, 0, 0], [0, 0, 0]])
    front, back = renderer.render_view(cams, 0), renderer.render_view(cams, 1)
    assert front.coverage > 0.1 and back.coverage > 0.1
    # The same 3D points are seen, but from opposite sides of the surface.
    radius = auto_radius(front, back)
    assert overlap_ratio(match_views(front, back, radius), front, back) == 0.0
    assert overlap_ratio(match_views_kdtree(front, back, radius), front, back) == 0.0


def test_occluded_points_are_not_matched():
    # A small front quad (label 0) hides part of a large back quad (label 1) from B,
    # which looks straight on; A looks from the side and sees part of that hidden region.
    vf, ff = quad(0.3, 0.2)
    vb, fb = quad(0.8, -0.2)
    mesh = LabelledMesh(np.concatenate([vf, vb]), np.concatenate([ff, fb + 4]))
    part = np.array([0, 0, 1, 1])  # per face
    renderer = Renderer(mesh)
    cams = cameras_at([[1.6, 0.0, 1.6], [0.0, 0.0, 2.2]], [[0, 0, 0], [0, 0, 0]])
    a, b = renderer.render_view(cams, 0), renderer.render_view(cams, 1)
    radius = auto_radius(a, b)
    m = match_views(a, b, radius)

    # Precondition: many back-quad pixels of A project onto B pixels that see the front quad.
    la, lb = a.face_labels(part).reshape(-1), b.face_labels(part).reshape(-1)
    back_a = np.flatnonzero(la == 1)
    pix, _ = b.camera.project(a.hit_points.reshape(-1, 3)[back_a], 0)
    col, row = np.floor(pix[:, 0]).astype(int), np.floor(pix[:, 1]).astype(int)
    inside = (col >= 0) & (col < RES) & (row >= 0) & (row < RES)
    hidden = back_a[inside][lb[row[inside] * RES + col[inside]] == 0]
    assert len(hidden) > 100
    # None of them is matched; matches only join pixels that see the same quad.
    assert not np.isin(hidden, m.index_a).any()
    np.testing.assert_array_equal(la[m.index_a], lb[m.index_b])
    # Positive control: the parts visible to both (front quad, uncovered back quad) do match.
    assert (la[m.index_a] == 0).sum() > 200 and (la[m.index_a] == 1).sum() > 200


@pytest.mark.parametrize("height_b", [2.0, 1.6])
def test_overlap_of_a_quad_matches_the_analytic_value(height_b):
    # Two downward cameras over a 1 x 1 quad (normal +Z), shifted in x by +-0.3. With
    # tan(half fov) = 0.25, camera at height h sees x in [cx - h/4, cx + h/4].
    renderer = Renderer(quad_mesh(0.5))
    heights = np.array([2.0, height_b])
    centres = np.array([-0.3, 0.3])
    eyes = np.stack([centres, [0.0, 0.0], heights], axis=1)
    cams = cameras_at(eyes, eyes * [1, 1, 0], half_fov_tan=0.25)
    a, b = renderer.render_view(cams, 0), renderer.render_view(cams, 1)

    def seen(k):  # the quad's visible x- and y-intervals in camera k
        half = heights[k] / 4
        return (max(-0.5, centres[k] - half), min(0.5, centres[k] + half)), (max(-0.5, -half), min(0.5, half))

    (xa, ya), (xb, yb) = seen(0), seen(1)
    pixel_area = (heights / (0.5 * RES / 0.25)) ** 2  # footprint of one pixel, squared
    fg = np.array([(xa[1] - xa[0]) * (ya[1] - ya[0]), (xb[1] - xb[0]) * (yb[1] - yb[0])]) / pixel_area
    shared = (min(xa[1], xb[1]) - max(xa[0], xb[0])) * (min(ya[1], yb[1]) - max(ya[0], yb[0]))
    # One-to-one: the shared region counted in the coarser view's pixels.
    expected = min(shared / pixel_area) / min(fg)
    np.testing.assert_allclose([a.mask.sum(), b.mask.sum()], fg, rtol=0.03)

    radius = auto_radius(a, b)
    m = match_views(a, b, radius)
    assert overlap_ratio(m, a, b) == pytest.approx(expected, rel=0.03)
    ref = match_views_kdtree(a, b, radius)
    assert overlap_ratio(ref, a, b) == pytest.approx(expected, rel=0.03)


def test_empty_views_give_no_matches():
    renderer = Renderer(quad_mesh())
    cams = cameras_at([[0, 0, 2.0], [0, 0, 2.0]], [[0, 0, 0], [0, 3.0, 2.0]])  # the second looks away
    a, b = renderer.render_view(cams, 0), renderer.render_view(cams, 1)
    assert b.coverage == 0
    box = (np.full(3, -1.0), np.full(3, 1.0))

    def aligned(view_a, view_b, radius):
        return match_views_aligned(view_a, view_b, box, box, radius)

    for matcher in (match_views, match_views_kdtree, aligned):
        m = matcher(a, b, 0.01)
        assert len(m) == 0 and overlap_ratio(m, a, b) == 0.0
        assert len(matcher(b, a, 0.01)) == 0
    assert auto_radius(a, b) == DEFAULT_RADIUS


# -------------------------------------------------------------------- radius
def test_footprint_and_auto_radius_scale_with_resolution():
    mesh = make_shape("mug", 1)
    radii = []
    for res in (64, 128):
        cams = CameraScheme(resolution=res).cameras(seed=2)
        renderer = Renderer(mesh)
        a, b = renderer.render_view(cams, 20), renderer.render_view(cams, 21)
        radii.append(auto_radius(a, b))
        depth = float(np.median(a.depth[a.mask]))
        assert footprint_radius(cams, 20, depth, scale=1.0) == pytest.approx(depth / cams.focal[20, 0])
        assert radii[-1] >= footprint_radius(cams, 20, depth)
    assert radii[0] == pytest.approx(2 * radii[1], rel=0.01)  # the median depth varies a little
    assert radii[1] > DEFAULT_RADIUS  # at 128 px the authors' radius is below a pixel


# ---------------------------------------------------------- Matches, sampling
def test_matches_container():
    m = Matches([5, 7, 20], [1, 2, 3], [0.1, 0.2, 0.3], shape_a=(4, 6), shape_b=(2, 2))
    assert len(m) == 3
    np.testing.assert_array_equal(m.pixels_a, [[0, 5], [1, 1], [3, 2]])
    np.testing.assert_array_equal(m.pixels_b, [[0, 1], [1, 0], [1, 1]])
    sub = m.subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.index_a, [20, 5])
    np.testing.assert_array_equal(m.subset(m.distance > 0.15).index_b, [2, 3])
    back = m.swapped()
    np.testing.assert_array_equal(back.index_a, [1, 2, 3])
    assert back.shape_a == (2, 2) and back.shape_b == (4, 6)
    with pytest.raises(ValueError, match="same length"):
        Matches([1, 2], [1], [0.0, 0.0], (2, 2), (2, 2))
    with pytest.raises(ValueError):
        m.index_a[0] = 3  # read-only
    assert len(Matches.empty((2, 2), (2, 2))) == 0


def test_sample_matches_without_replacement(chair_views):
    a, b = chair_views[0], chair_views[1]
    m = match_views(a, b, auto_radius(a, b))
    assert len(m) > 300
    rng = np.random.default_rng(0)
    s = sample_matches(m, 200, rng)
    assert len(s) == 200
    assert len(np.unique(s.index_a)) == 200 and len(np.unique(s.index_b)) == 200
    pairs = set(zip(m.index_a.tolist(), m.index_b.tolist(), strict=True))
    assert set(zip(s.index_a.tolist(), s.index_b.tolist(), strict=True)) <= pairs
    # Fewer matches than asked: all of them.
    assert len(sample_matches(m, len(m) + 10, rng)) == len(m)
    assert len(sample_matches(m, 0, rng)) == 0
    # Reproducible from the generator's seed, different across draws.
    one = sample_matches(m, 50, np.random.default_rng(7)).index_a
    np.testing.assert_array_equal(one, sample_matches(m, 50, np.random.default_rng(7)).index_a)
    assert not np.array_equal(one, sample_matches(m, 50, np.random.default_rng(8)).index_a)


# ---------------------------------------------------------- across shapes
def test_aligned_matching_of_a_shape_with_itself_is_plain_matching(chair_views, overlapping_pairs):
    box = (np.array([-0.5, -0.7, -0.4]), np.array([0.6, 0.8, 0.5]))
    for i, j in overlapping_pairs[:4]:
        a, b = chair_views[i], chair_views[j]
        radius = auto_radius(a, b)
        plain, aligned = match_views(a, b, radius), match_views_aligned(a, b, box, box, radius)
        assert len(plain) > 0
        np.testing.assert_array_equal(aligned.index_a, plain.index_a)
        np.testing.assert_array_equal(aligned.index_b, plain.index_b)


def test_aligned_matching_joins_the_same_faces_of_a_stretched_copy():
    """A copy stretched axis by axis is its box alignment exactly: matches join the same parts."""
    chair = make_shape("chair", 0)
    stretched = chair.replace(vertices=chair.vertices * np.array([1.5, 1.0, 0.6]))
    cams = CameraScheme(resolution=RES).cameras(seed=0)
    view_a = Renderer(chair).render_view(cams, 1)
    view_b = Renderer(stretched).render_view(cams, 1)
    radius = 0.02
    aligned = match_views_aligned(view_a, view_b, chair.bounds(), stretched.bounds(), radius)
    plain = match_views(view_a, view_b, radius)
    labels_a = chair.face_labels[view_a.face_ids.reshape(-1)[aligned.index_a]]
    labels_b = stretched.face_labels[view_b.face_ids.reshape(-1)[aligned.index_b]]
    # Two triangles of one flat side can share a pixel's footprint, so faces differ at
    # their seams; the parts do not.
    assert np.mean(labels_a == labels_b) > 0.98
    assert len(aligned) > 0.5 * min(view_a.mask.sum(), view_b.mask.sum())
    # Without the alignment only the points the stretch leaves in place match.
    assert len(plain) < 0.6 * len(aligned)
    assert (aligned.distance <= radius).all()
    # One match per pixel on both sides.
    assert len(np.unique(aligned.index_a)) == len(np.unique(aligned.index_b)) == len(aligned)
