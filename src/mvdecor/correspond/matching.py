"""Pixel correspondences between two rendered views of one shape (or of two, aligned).

Two pixels of two views correspond when the 3D points they see (their
``hit_points``) lie within a small ``radius`` of each other (the MvDeCor
authors use ``5e-3`` in unit-sphere units). Three matchers are provided:

- :func:`match_views`, the one to use: a **reprojection**. Each foreground hit
  point of view A is projected into view B's camera; the B pixel containing it
  is kept when it is foreground and sees a point within ``radius``. A point of
  A hidden from B lands on a B pixel that sees the occluder, farther than the
  radius, so occlusion needs no separate test. ``O(N)`` in the pixel count,
  1-2 ms per 256 x 256 pair on one core.
- :func:`match_views_kdtree`, the exact-nearest reference: for each foreground
  A pixel, the nearest B hit point in 3D. Slower, and meant for tests.
- :func:`match_views_aligned`, across two *different* shapes: A's hit points
  are first mapped onto B's shape by the per-axis bounding-box alignment, then
  reprojected as :func:`match_views` does, with a radius that tolerates the
  two instances' difference (``pretrain.cross_shape_pairs``).

All three also require the two pixels to see the **same side** of the surface
(their camera-facing normals have a positive dot product): otherwise the two
sides of a zero-thickness sheet, or of a wall thinner than the radius, would
match although no camera sees both.

All keep **one match per pixel on both sides**: each A pixel has at most one B
pixel, and where several A pixels claim one B pixel only the closest (in 3D)
keeps it. The InfoNCE loss treats the other sampled pixels of view B as
negatives, so many-to-one matches would make false negatives.

Choosing the radius
-------------------
The radius must be compared with the size of a pixel on the surface (its
*footprint*, ``depth / focal``): a reprojected point can be up to half a pixel
diagonal (``0.71`` footprint, more on slanted surfaces) from the point B's
pixel centre sees. With the authors' cameras (60 degree field of view, about
1.2-1.9 units from the surface) a pixel spans about ``7e-3`` at 256 x 256 and
``1.4e-2`` at 128 x 128, so the ``5e-3`` default keeps only points that fall
near B's pixel centres, and fewer and fewer of them as the resolution drops.
:func:`auto_radius` picks a radius matched to the views' resolution instead
(``1.5`` footprints by default); use it whenever the views are rendered below
about 256 x 256, or when you want (nearly) every co-visible pixel matched
rather than the authors' sparser set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mvdecor.config import PretrainConfig, RenderConfig
from mvdecor.data.mesh import align_points
from mvdecor.render.cameras import Cameras, focal_from_fov
from mvdecor.render.views import RenderedView

#: The authors' correspondence radius, in unit-sphere units.
DEFAULT_RADIUS = 5e-3


def _readonly(array: np.ndarray, dtype: type) -> np.ndarray:
    array = np.array(array, dtype=dtype, copy=True).reshape(-1)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Matches:
    """One-to-one pixel correspondences from view A to view B.

    ``M`` is the number of matches. Indices are flat: ``row * W + col``.
    Matches produced by this module are sorted by ``index_a``, and neither
    ``index_a`` nor ``index_b`` holds a value twice.

    Attributes
    ----------
    index_a : (M,) int64
        Flat pixel indices into view A.
    index_b : (M,) int64
        Flat pixel indices into view B.
    distance : (M,) float32
        3D distance between the hit points of the two pixels (unit-sphere units).
    shape_a, shape_b : (int, int)
        ``(H, W)`` of view A and view B, to turn flat indices into pixels.
    """

    index_a: np.ndarray
    index_b: np.ndarray
    distance: np.ndarray
    shape_a: tuple[int, int]
    shape_b: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_a", _readonly(self.index_a, np.int64))
        object.__setattr__(self, "index_b", _readonly(self.index_b, np.int64))
        object.__setattr__(self, "distance", _readonly(self.distance, np.float32))
        object.__setattr__(self, "shape_a", (int(self.shape_a[0]), int(self.shape_a[1])))
        object.__setattr__(self, "shape_b", (int(self.shape_b[0]), int(self.shape_b[1])))
        if not len(self.index_a) == len(self.index_b) == len(self.distance):
            raise ValueError(
                "index_a, index_b and distance must have the same length, got "
                f"{len(self.index_a)}, {len(self.index_b)}, {len(self.distance)}"
            )

    def __len__(self) -> int:
        return len(self.index_a)

    @property
    def pixels_a(self) -> np.ndarray:
        """``(M, 2)`` int64 ``(row, col)`` of the matched pixels of view A."""
        return np.stack(np.divmod(self.index_a, self.shape_a[1]), axis=1)

    @property
    def pixels_b(self) -> np.ndarray:
        """``(M, 2)`` int64 ``(row, col)`` of the matched pixels of view B."""
        return np.stack(np.divmod(self.index_b, self.shape_b[1]), axis=1)

    def subset(self, idx: np.ndarray | slice) -> Matches:
        """The matches selected by ``idx`` (integer indices ``(K,)``, a boolean mask ``(M,)`` or a slice)."""
        return Matches(self.index_a[idx], self.index_b[idx], self.distance[idx], self.shape_a, self.shape_b)

    def swapped(self) -> Matches:
        """The same correspondences seen from B to A (sorted by the new ``index_a``)."""
        order = np.argsort(self.index_b, kind="stable")
        return Matches(
            self.index_b[order], self.index_a[order], self.distance[order], self.shape_b, self.shape_a
        )

    @staticmethod
    def empty(shape_a: tuple[int, int], shape_b: tuple[int, int]) -> Matches:
        """No matches."""
        none = np.zeros(0, np.int64)
        return Matches(none, none, np.zeros(0, np.float32), shape_a, shape_b)


# ----------------------------------------------------------------- internals
class PreparedView:
    """Per-view arrays, reused across the many pairs a view takes part in.

    With ``stride = s > 1`` the view is *decimated*: it stands for the view
    rendered at ``1/s`` of its resolution, keeping the pixels ``(s r + s // 2,
    s c + s // 2)`` and a camera whose pixel ``(r, c)`` is centred on each
    (focal length over ``s``; for even ``s`` the coarse grid is shifted by half
    a fine pixel so that the kept pixels sit at its cells' centres).

    Attributes
    ----------
    shape : (int, int)
        ``(H, W)`` (of the decimated grid when ``stride > 1``).
    flat_face_ids : (H * W,) int32
        ``face_ids`` flattened.
    flat_data : (6, H * W) float32
        Every pixel's hit point (rows 0-2) and camera-facing normal (rows 3-5),
        0 on background, one coordinate per row (contiguous rows gather faster
        than ``(H * W, 6)`` rows); computed on first use, worth it for a view
        used as B for many pairs.
    projection : (3, 4) float32
        ``K [R | t]``: homogeneous world point to ``(u Z, v Z, Z)``.
    fg_index : (F,) int64
        Flat indices of the ``F`` foreground pixels, ascending (computed on
        first use: only the A side of a pair needs it).
    data : (6, F) float32
        Their hit points and normals (computed on first use).
    """

    def __init__(self, view: RenderedView, stride: int = 1) -> None:
        h, w = view.height, view.width
        camera = view.camera
        if len(camera) != 1:
            raise ValueError(f"a view's camera must be a batch of one, got {len(camera)}")
        if (camera.height, camera.width) != (h, w):
            raise ValueError(f"camera size {camera.width}x{camera.height} differs from the view's {w}x{h}")
        extrinsic = np.concatenate([camera.rotation[0], camera.translation[0][:, None]], axis=1)
        projection = camera.intrinsics[0] @ extrinsic
        face_ids, hit_points, normals = view.face_ids, view.hit_points, view.normals
        if stride > 1:
            first = stride // 2
            face_ids = face_ids[first::stride, first::stride]
            hit_points = hit_points[first::stride, first::stride]
            normals = normals[first::stride, first::stride]
            # Coarse u = (fine u - shift) / stride puts fine pixel centre s c + first + 0.5 at c + 0.5.
            shift = first + 0.5 - stride / 2
            projection[:2] = (projection[:2] - shift * projection[2]) / stride
        self.shape = (face_ids.shape[0], face_ids.shape[1])
        self.flat_face_ids = face_ids.reshape(-1)
        self._buffers = (hit_points, normals)
        self.projection = projection.astype(np.float32)

    @cached_property
    def flat_data(self) -> np.ndarray:
        rows = [buffer[..., k].reshape(-1) for buffer in self._buffers for k in range(3)]
        return np.stack(rows).astype(np.float32, copy=False)

    @cached_property
    def fg_index(self) -> np.ndarray:
        return np.flatnonzero(self.flat_face_ids >= 0).astype(np.int64)

    @cached_property
    def data(self) -> np.ndarray:
        return self.gather(self.fg_index)

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Hit points and normals ``(6, K)`` float32 of the pixels at flat indices ``index`` ``(K,)``.

        From ``flat_data`` when it is cached (a view used as B for many pairs),
        else straight from the view's buffers (cheaper for a single pair).
        """
        if "flat_data" in self.__dict__:
            return np.take(self.flat_data, index, axis=1)
        rows = [np.take(buffer[..., k].reshape(-1), index) for buffer in self._buffers for k in range(3)]
        return np.stack(rows).astype(np.float32, copy=False)

    def release_flat_data(self) -> None:
        """Drop the cached ``flat_data`` (``24 H W`` bytes) once this view is done with as view B."""
        self.__dict__.pop("flat_data", None)


def reproject(data: np.ndarray, b: PreparedView, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reproject other views' pixels into view B and keep those B sees within ``radius``.

    A pixel is kept when its hit point projects into B's image in front of the
    camera, onto a foreground pixel of B whose hit point is within ``radius``
    and whose normal faces the same way (the two pixels see the same side of
    the surface: a zero-thickness sheet seen from both sides, or the two faces
    of a wall thinner than the radius, do not match).

    Parameters
    ----------
    data : (6, S) float32
        Hit points (rows 0-2) and camera-facing normals (rows 3-5) of some
        pixels of another view.
    b : PreparedView
        View B.
    radius : float

    Returns
    -------
    keep : (K,) int64
        Positions (columns) in ``data`` of the pixels that found a B pixel, ascending.
    index_b : (K,) int64
        The flat index of the B pixel containing each one's projection.
    distance : (K,) float32
        3D distance between the two hit points, ``<= radius``.
    """
    proj = b.projection
    # Homogeneous projection in float32: ~1e-5 px error at 256 px, far below a pixel.
    uvz = proj[:, :3] @ data[:3]
    uvz += proj[:, 3:]
    h, w = b.shape
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_z = np.float32(1.0) / uvz[2]
        u = uvz[0] * inv_z
        v = uvz[1] * inv_z
        # Behind (or at) the camera plane, or outside the image: no pixel (NaN compares False).
        inside = (uvz[2] > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    keep = np.flatnonzero(inside)
    col = np.take(u, keep).astype(np.int64)  # truncation is floor: both are >= 0 here
    row = np.take(v, keep).astype(np.int64)
    np.minimum(col, w - 1, out=col)  # guard float rounding at the far edge
    np.minimum(row, h - 1, out=row)
    index_b = row * w + col
    foreground = np.flatnonzero(np.take(b.flat_face_ids, index_b) >= 0)
    keep, index_b = np.take(keep, foreground), np.take(index_b, foreground)
    seen = b.gather(index_b)  # (6, K): B's points and normals
    mine = np.take(data, keep, axis=1)
    diff = seen[:3] - mine[:3]
    diff *= diff
    sq = diff[0] + diff[1] + diff[2]
    product = seen[3:] * mine[3:]
    facing = product[0] + product[1] + product[2]
    close = np.flatnonzero((sq <= np.float32(radius) ** 2) & (facing > 0))
    distance = np.sqrt(np.take(sq, close))
    return np.take(keep, close), np.take(index_b, close), distance


def _one_per_target(
    index_a: np.ndarray, index_b: np.ndarray, distance: np.ndarray, size_b: int
) -> np.ndarray:
    """Which of the candidate matches keep their B pixel: the closest one per B pixel.

    ``O(K)``: one ``np.minimum.at`` over a key that orders by distance, then by
    ``index_a`` (ties broken toward the smaller A index, so the result is
    deterministic). Non-negative float32 values order like their bit patterns.

    Parameters
    ----------
    index_a : (K,) int64, all distinct, each below ``2**32``
    index_b : (K,) int64 in ``[0, size_b)``
    distance : (K,) float32, non-negative
    size_b : int
        Number of pixels of view B.

    Returns
    -------
    (J,) int64
        Positions of the winners, ascending; no two winners share an ``index_b``.
    """
    key = (distance.astype(np.float32).view(np.uint32).astype(np.uint64) << np.uint64(32)) | index_a.astype(
        np.uint64
    )
    best = np.full(size_b, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(best, index_b, key)
    return np.flatnonzero(np.take(best, index_b) == key)


def _match_prepared(
    a: PreparedView, b: PreparedView, radius: float, data: np.ndarray | None = None
) -> Matches:
    """Matches of A's foreground pixels in B; ``data`` replaces A's hit points and normals (``a.data``)."""
    rows, index_b, distance = reproject(a.data if data is None else data, b, radius)
    index_a = a.fg_index.take(rows)
    win = _one_per_target(index_a, index_b, distance, b.shape[0] * b.shape[1])
    return Matches(index_a.take(win), index_b.take(win), distance.take(win), a.shape, b.shape)


# -------------------------------------------------------------------- public
def match_views(view_a: RenderedView, view_b: RenderedView, radius: float = DEFAULT_RADIUS) -> Matches:
    """One-to-one correspondences from view A to view B by reprojection.

    Each foreground hit point of A is projected with B's camera; the B pixel
    containing it (``(floor(v), floor(u))``) is its candidate. Points behind
    B's camera or outside B's image are dropped, and so are candidates whose B
    pixel is background or sees a point farther than ``radius`` (which also
    drops points of A that B cannot see: B's pixel sees the occluder), or sees
    the other side of the surface (camera-facing normals with a non-positive
    dot product: a sheet seen from both sides, the two faces of a wall thinner
    than the radius). Where several A pixels land on one B pixel, the closest
    in 3D keeps it.

    Parameters
    ----------
    view_a, view_b : RenderedView
        Two views of the same (normalised) mesh; each ``camera`` is a batch of
        one. Their image sizes may differ.
    radius : float
        Largest 3D distance between matched hit points (unit-sphere units). See
        the module notes and :func:`auto_radius` for the resolution dependence.

    Returns
    -------
    Matches
        Sorted by ``index_a``; ``index_a`` and ``index_b`` each without repeats.
    """
    return _match_prepared(PreparedView(view_a), PreparedView(view_b), radius)


def match_views_aligned(
    view_a: RenderedView,
    view_b: RenderedView,
    box_a: tuple[np.ndarray, np.ndarray],
    box_b: tuple[np.ndarray, np.ndarray],
    radius: float,
) -> Matches:
    """Correspondences between views of two *different* shapes, after aligning their boxes.

    A's hit points are mapped onto B's shape by the per-axis bounding-box
    alignment label transfer uses (:func:`~mvdecor.data.mesh.align_points`,
    ``box_a`` onto ``box_b``; normals by the inverse scale, so that the
    same-side test still holds), then matched by reprojection exactly as
    :func:`match_views` does: the B pixel each aligned point projects to, when
    it sees a point within ``radius`` on the same side of the surface, one
    match per pixel on both sides. Two instances of a category never coincide,
    so ``radius`` is a tolerance on their shape difference (a few hundredths
    of the unit sphere), not on the pixel footprint.

    Parameters
    ----------
    view_a, view_b : RenderedView
        A view of shape A and a view of shape B, each with hit points in its own
        shape's normalised frame.
    box_a, box_b : ((3,), (3,)) float arrays
        ``(min, max)`` of each shape's bounding box, in the same frames.
    radius : float
        Largest distance between B's point and A's aligned point.

    Returns
    -------
    Matches
        Sorted by ``index_a``; ``index_a`` and ``index_b`` each without repeats;
        ``distance`` is measured after the alignment.
    """
    a, b = PreparedView(view_a), PreparedView(view_b)
    if len(a.fg_index) == 0 or len(b.fg_index) == 0:
        return Matches.empty(a.shape, b.shape)
    data = np.empty_like(a.data)
    data[:3] = align_points(a.data[:3].T, box_a, box_b).T
    extent_a = np.asarray(box_a[1], np.float64) - np.asarray(box_a[0], np.float64)
    extent_b = np.asarray(box_b[1], np.float64) - np.asarray(box_b[0], np.float64)
    # Normals transform by the inverse transpose of the (diagonal) scale; a flat axis keeps its own.
    ratio = np.where((extent_a > 1e-12) & (extent_b > 1e-12), extent_a / np.maximum(extent_b, 1e-12), 1.0)
    data[3:] = a.data[3:] * ratio.astype(np.float32)[:, None]
    return _match_prepared(a, b, radius, data)


def _kdtree_query(data: np.ndarray, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ``data`` point ``(Q,)`` index (``-1`` if none within ``radius``) and distance ``(Q,)``.

    ``data`` is ``(D, 3)`` float32, ``queries`` ``(Q, 3)`` float32. pykdtree is
    about twice as fast as scipy's cKDTree here (one thread, 256 x 256 views);
    as this is only a test reference, falling back to scipy when pykdtree is
    missing is fine.
    """
    try:
        from pykdtree.kdtree import KDTree

        dist, idx = KDTree(data).query(queries, k=1, distance_upper_bound=radius)
        idx = idx.astype(np.int64)
        idx[~np.isfinite(dist) | (idx >= len(data))] = -1
        return idx, dist.astype(np.float32)
    except ImportError:
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(data).query(queries, k=1, distance_upper_bound=radius)
        idx = np.where(np.isfinite(dist), idx, -1).astype(np.int64)
        return idx, dist.astype(np.float32)


def match_views_kdtree(view_a: RenderedView, view_b: RenderedView, radius: float = DEFAULT_RADIUS) -> Matches:
    """One-to-one correspondences by exact nearest neighbour in 3D (the reference).

    For each foreground pixel of A, the foreground pixel of B whose hit point is
    nearest to A's, if within ``radius`` and if the two see the same side of the
    surface (camera-facing normals with a positive dot product, as in
    :func:`match_views`); then, where several A pixels chose one B pixel, the
    closest keeps it. Visibility is only what the hit points imply: a point of
    A hidden from B still matches if some visible B point lies within the
    radius (the reprojection would drop it).

    Parameters
    ----------
    view_a, view_b : RenderedView
    radius : float

    Returns
    -------
    Matches
        Sorted by ``index_a``; ``index_a`` and ``index_b`` each without repeats.
    """
    a, b = PreparedView(view_a), PreparedView(view_b)
    if len(a.fg_index) == 0 or len(b.fg_index) == 0:
        return Matches.empty(a.shape, b.shape)
    a_points = np.ascontiguousarray(a.data[:3].T)
    nearest, distance = _kdtree_query(np.ascontiguousarray(b.data[:3].T), a_points, radius)
    found = np.flatnonzero((nearest >= 0) & (distance <= radius))
    nearest = nearest.take(found)
    facing = np.einsum("ij,ij->j", a.data[3:].take(found, axis=1), b.data[3:].take(nearest, axis=1))
    same_side = np.flatnonzero(facing > 0)
    found, nearest = found.take(same_side), nearest.take(same_side)
    index_a = a.fg_index.take(found)
    index_b = b.fg_index.take(nearest)
    distance = distance.take(found)
    win = _one_per_target(index_a, index_b, distance, b.shape[0] * b.shape[1])
    return Matches(index_a.take(win), index_b.take(win), distance.take(win), a.shape, b.shape)


def overlap_ratio(matches: Matches, view_a: RenderedView, view_b: RenderedView) -> float:
    """Matched pixels over the foreground of the smaller view.

    MvDeCor uses a pair of views only when this exceeds 0.15.

    Parameters
    ----------
    matches : Matches
        One-to-one matches between the two views.
    view_a, view_b : RenderedView

    Returns
    -------
    float
        ``len(matches) / min(foreground(A), foreground(B))``, in ``[0, 1]``;
        0 when either view is empty.
    """
    smaller = min(int(view_a.mask.sum()), int(view_b.mask.sum()))
    return len(matches) / smaller if smaller > 0 else 0.0


def footprint_radius(cameras: Cameras, index: int, distance: float, scale: float = 1.5) -> float:
    """``scale`` times the size of one pixel of camera ``index`` at depth ``distance``.

    A pixel of focal length ``f`` (pixels) spans ``distance / f`` on a surface
    facing the camera at depth ``distance``. The nearest pixel centre of another
    view is up to ``0.71`` of that away, more on slanted surfaces; ``scale =
    1.5`` keeps nearly every co-visible pixel.

    Parameters
    ----------
    cameras : Cameras
    index : int
    distance : float
        Camera-space depth ``Z`` of the surface (unit-sphere units).
    scale : float

    Returns
    -------
    float
        A radius in unit-sphere units.
    """
    return scale * pixel_footprint(distance, float(np.mean(cameras.focal[index])))


def pixel_footprint(distance: float, focal: float) -> float:
    """The size of one pixel of focal length ``focal`` (pixels) on a surface facing the camera
    at depth ``distance``: ``distance / focal`` (unit-sphere units). The one formula behind
    :func:`footprint_radius` and :func:`resolve_match_radius`."""
    return float(distance) / float(focal)


def resolve_match_radius(pretrain: PretrainConfig, render: RenderConfig) -> float:
    """The correspondence radius used with renders made by ``render``.

    ``pretrain.match_radius`` itself, or, when ``pretrain.match_radius_footprints`` is positive,
    that many :func:`pixel_footprint` at a typical camera-to-surface depth (the mean
    camera distance minus half the unit sphere's radius), so matching keeps working
    at resolutions where the authors' ``5e-3`` is below one pixel.
    """
    if pretrain.match_radius_footprints <= 0:
        return pretrain.match_radius
    depth = render.camera_distance * sum(render.distance_scale) / 2 - 0.5
    focal = focal_from_fov(render.fov_degrees, render.resolution)
    return pretrain.match_radius_footprints * pixel_footprint(depth, focal)


def auto_radius(view_a: RenderedView, view_b: RenderedView, scale: float = 1.5) -> float:
    """A matching radius fitted to the two views' resolution.

    The larger of the two views' :func:`footprint_radius` at the median depth of
    their foreground (the coarser view sets how far apart corresponding pixel
    centres can be). Use it instead of the authors' ``5e-3`` when the views are
    rendered below about 256 x 256, where ``5e-3`` is smaller than a pixel and
    keeps only a fraction of the co-visible pixels; it is also what to use to
    match nearly every co-visible pixel at any resolution.

    Parameters
    ----------
    view_a, view_b : RenderedView
    scale : float
        In pixel footprints.

    Returns
    -------
    float
        A radius in unit-sphere units; :data:`DEFAULT_RADIUS` if a view is empty.
    """
    radii = []
    for view in (view_a, view_b):
        depth = view.depth[view.mask]
        if depth.size == 0:
            return DEFAULT_RADIUS
        radii.append(footprint_radius(view.camera, 0, float(np.median(depth)), scale))
    return max(radii)


def sample_matches(matches: Matches, n: int, rng: np.random.Generator) -> Matches:
    """``n`` matches drawn uniformly without replacement (all of them, if fewer).

    Parameters
    ----------
    matches : Matches
    n : int
        How many to draw (MvDeCor: 4,000 per view pair).
    rng : numpy.random.Generator

    Returns
    -------
    Matches
        ``min(n, len(matches))`` distinct matches, in random order (``matches``
        itself, unshuffled, when it has ``n`` or fewer).
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if len(matches) <= n:
        return matches
    return matches.subset(rng.choice(len(matches), size=n, replace=False))
