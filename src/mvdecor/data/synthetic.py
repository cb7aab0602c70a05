"""Procedural labelled shapes: the built-in data for tests and the demo.

Every shape is assembled from primitive parts (boxes, surfaces of revolution,
swept tubes), each face labelled with the semantic part it belongs to, and each
part instance (``leg_0``, ``leg_1``...) kept as its own entry of ``part_names``.
Dimensions, proportions, part counts and optional parts vary with the seed;
the same ``(category, seed, options)`` always gives bit-identical arrays.

Shapes are built about one unit tall, +Y up, standing on the XZ plane, front
toward +Z, faces wound outward, then normalised into the unit sphere. Their
appearance is either one material colour per part (``face_colors``) or, when
textured, per-corner UVs and small procedural 64x64 textures.
"""

from __future__ import annotations

import colorsys
import math
import zlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from mvdecor.data.mesh import LabelledMesh

#: Category name -> its label vocabulary (the index of a name is its label id).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "chair": ("seat", "back", "leg", "armrest", "stretcher"),
    "table": ("top", "leg", "apron", "shelf"),
    "lamp": ("base", "pole", "shade", "bulb", "arm"),
    "mug": ("body", "handle", "rim", "foot"),
    "bottle": ("body", "neck", "cap", "wrapper"),
}

#: Labels only some shapes of a category have; every other label is always present.
OPTIONAL_LABELS: dict[str, tuple[str, ...]] = {
    "chair": ("armrest", "stretcher"),
    "table": ("apron", "shelf"),
    "lamp": ("arm",),
    "mug": ("foot",),
    "bottle": ("wrapper",),
}

_CELL = 0.07  # target edge length at detail 1 (shapes are about one unit tall)
_TEX_SIZE = 64
_SEEDS_PER_DATASET = 10_000

Geom = tuple[np.ndarray, np.ndarray, np.ndarray]  # vertices (V,3), faces (F,3), corner uvs (F,3,2)


# --------------------------------------------------------------------- geometry
def _grid(points: np.ndarray, uv: np.ndarray, poles: np.ndarray, wrap: bool) -> Geom:
    """Triangulate a ``(R, C, 3)`` point grid; ``uv`` is ``(R, C + wrap, 2)``.

    Rows flagged in ``poles`` collapse to a single vertex; with ``wrap`` the
    last column joins the first. Triangle normals follow ``columns x rows``.
    """
    rows, cols = points.shape[:2]
    counts = np.where(poles, 1, cols)
    offsets = np.cumsum(counts) - counts
    col = np.arange(cols + int(wrap)) % cols
    idx = offsets[:, None] + np.where(poles[:, None], 0, col[None, :])
    keep = np.ones((rows, cols), bool)
    keep[poles, 1:] = False
    quad = (idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1])
    quv = (uv[:-1, :-1], uv[:-1, 1:], uv[1:, 1:], uv[1:, :-1])
    faces = np.concatenate(
        [np.stack([quad[a] for a in t], -1).reshape(-1, 3) for t in ((0, 1, 2), (0, 2, 3))]
    )
    uvs = np.concatenate(
        [np.stack([quv[a] for a in t], -2).reshape(-1, 3, 2) for t in ((0, 1, 2), (0, 2, 3))]
    )
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return points[keep], faces[ok], uvs[ok]


def _merge(geoms: Sequence[Geom]) -> Geom:
    offsets = np.cumsum([0] + [len(g[0]) for g in geoms[:-1]])
    return (
        np.concatenate([g[0] for g in geoms]),
        np.concatenate([g[1] + o for g, o in zip(geoms, offsets, strict=True)]),
        np.concatenate([g[2] for g in geoms]),
    )


def _orient(geom: Geom) -> Geom:
    """Flip a closed surface's winding if its signed volume is negative."""
    v, f, uv = geom
    tri = v[f] - v.mean(axis=0)
    if np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) < 0:
        return v, f[:, ::-1].copy(), uv[:, ::-1].copy()
    return geom


def _resample(points: Sequence | np.ndarray, h: float) -> np.ndarray:
    """Split every segment of a polyline into pieces no longer than ``h``."""
    p = np.asarray(points, np.float64)
    seg = p[1:] - p[:-1]
    length = np.linalg.norm(seg, axis=1)
    keep = length > 1e-12  # drop repeated points
    p, seg, length = np.concatenate([p[:-1][keep], p[-1:]]), seg[keep], length[keep]
    n = np.maximum(1, np.ceil(length / h)).astype(np.int64)
    which = np.repeat(np.arange(len(seg)), n)
    frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    return np.concatenate([p[which] + seg[which] * frac[:, None], p[-1:]])


def _arclength(p: np.ndarray) -> np.ndarray:
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    return s / max(s[-1], 1e-12)


def _box_geom(size: Sequence[float], h: float) -> Geom:
    half = np.asarray(size, np.float64) / 2
    geoms = []
    for a in range(3):
        for sign in (1.0, -1.0):
            ua, va = ((a + 1) % 3, (a + 2) % 3) if sign > 0 else ((a + 2) % 3, (a + 1) % 3)
            gu = np.linspace(-1.0, 1.0, max(1, math.ceil(2 * half[ua] / h)) + 1)
            gv = np.linspace(-1.0, 1.0, max(1, math.ceil(2 * half[va] / h)) + 1)
            pts = np.zeros((len(gv), len(gu), 3))
            pts[..., a] = sign * half[a]
            pts[..., ua] = gu[None, :] * half[ua]
            pts[..., va] = gv[:, None] * half[va]
            uv = np.stack(np.broadcast_arrays((gu[None, :] + 1) / 2, (gv[:, None] + 1) / 2), -1)
            geoms.append(_grid(pts, uv, np.zeros(len(gv), bool), wrap=False))
    return _merge(geoms)


def _lathe_geom(profile: np.ndarray, sections: int) -> Geom:
    """Revolve a ``(K, 2)`` profile of ``(radius, y)`` about +Y; radius 0 rows are poles."""
    r, y = profile[:, 0], profile[:, 1]
    poles = np.abs(r) < 1e-9
    theta = 2 * np.pi * np.arange(sections) / sections
    pts = np.stack(
        np.broadcast_arrays(r[:, None] * np.sin(theta), y[:, None], r[:, None] * np.cos(theta)), -1
    )
    uv = np.stack(
        np.broadcast_arrays(np.arange(sections + 1)[None, :] / sections, _arclength(profile)[:, None]), -1
    )
    return _orient(_grid(pts, uv, poles, wrap=True))


def _tube_geom(path: np.ndarray, radius: np.ndarray, sections: int) -> Geom:
    """Sweep a circle along a polyline (parallel-transport frames), capped at both ends."""
    tangent = np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.empty_like(path)
    e = np.eye(3)[np.argmin(np.abs(tangent[0]))]
    n = e - e @ tangent[0] * tangent[0]
    for i, t in enumerate(tangent):
        n = n - (n @ t) * t
        n = normal[i] = n / np.linalg.norm(n)
    binormal = np.cross(tangent, normal)
    phi = 2 * np.pi * np.arange(sections) / sections
    ring = path[:, None] + radius[:, None, None] * (
        np.cos(phi)[None, :, None] * normal[:, None] + np.sin(phi)[None, :, None] * binormal[:, None]
    )
    pts = np.concatenate(
        [np.repeat(path[:1, None], sections, 1), ring, np.repeat(path[-1:, None], sections, 1)]
    )
    v = np.concatenate([[0.0], _arclength(path), [1.0]])
    uv = np.stack(np.broadcast_arrays(np.arange(sections + 1)[None, :] / sections, v[:, None]), -1)
    poles = np.zeros(len(pts), bool)
    poles[[0, -1]] = True
    return _orient(_grid(pts, uv, poles, wrap=True))


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _disc(r: float, t: float, bevel: float = 0.0) -> list[tuple[float, float]]:
    """Profile of a closed cylinder (optionally bevelled) from ``y = 0`` to ``t``."""
    return [(0, 0), (r - bevel, 0), (r, bevel), (r, t - bevel), (r - bevel, t), (0, t)]


def _ring(r0: float, r1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    """Closed-loop profile of a solid ring (a thick open tube) of radii ``r0 < r1``."""
    return [(r1, y0), (r1, y1), (r0, y1), (r0, y0), (r1, y0)]


class _Builder:
    """Collects labelled parts at a resolution set by ``detail``."""

    def __init__(self, detail: int) -> None:
        self.detail = detail
        self.h = _CELL / detail
        self.parts: list[tuple[str, Geom]] = []

    def count(self, length: float, minimum: int) -> int:
        return max(minimum * self.detail, math.ceil(length / self.h))

    def arc(
        self,
        center: Sequence[float],
        e1: Sequence[float],
        e2: Sequence[float],
        r: float,
        a0: float,
        a1: float,
    ) -> np.ndarray:
        """Points ``center + r (cos a e1 + sin a e2)`` for ``a`` from ``a0`` to ``a1``."""
        a = np.linspace(a0, a1, self.count(r * abs(a1 - a0), 4) + 1)[:, None]
        return np.asarray(center, float) + r * (
            np.cos(a) * np.asarray(e1, float) + np.sin(a) * np.asarray(e2, float)
        )

    def add(
        self, label: str, geom: Geom, offset: Sequence[float] = (0, 0, 0), frame: tuple | None = None
    ) -> None:
        v = geom[0] + np.asarray(offset, float)
        if frame is not None:  # (rotation, origin): world = origin + rotation @ local
            v = v @ frame[0].T + frame[1]
        self.parts.append((label, (v, geom[1], geom[2])))

    def box(
        self, label: str, center: Sequence[float], size: Sequence[float], frame: tuple | None = None
    ) -> None:
        self.add(label, _box_geom(size, self.h), center, frame)

    def lathe(self, label: str, profile: Iterable, at: Sequence[float] = (0, 0, 0)) -> None:
        prof = _resample(list(profile), self.h)
        self.add(label, _lathe_geom(prof, self.count(2 * np.pi * np.abs(prof[:, 0]).max(), 12)), at)

    def sphere(self, label: str, center: Sequence[float], r: float) -> None:
        self.lathe(label, self.arc((0, 0), (0, -1), (1, 0), r, 0, np.pi), center)

    def tube(self, label: str, path: Iterable, radius: float | tuple[float, float]) -> None:
        p = _resample(np.asarray(list(path), float), self.h)
        r0, r1 = (radius, radius) if np.isscalar(radius) else radius
        r = r0 + (r1 - r0) * _arclength(p)
        self.add(label, _tube_geom(p, r, self.count(2 * np.pi * max(r0, r1), 8)))


# ------------------------------------------------------------------ categories
def _leg(
    b: _Builder, label: str, foot: np.ndarray, top: np.ndarray, r: float, square: bool, taper: float
) -> None:
    if square:
        b.box(label, (foot + top) / 2, (2 * r, top[1] - foot[1], 2 * r))
    else:
        b.tube(label, [foot, top], (r * taper, r))


def _star(b: _Builder, label: str, n: int, reach: float, r: float, y0: float, a0: float) -> None:
    for k in range(n):
        a = a0 + 2 * np.pi * k / n
        b.tube(label, [(0, y0, 0), (reach * math.sin(a), r, reach * math.cos(a))], r)


def _chair(b: _Builder, rng: np.random.Generator) -> None:
    u = rng.uniform
    w, d, sh, st = u(0.42, 0.6), u(0.4, 0.55), u(0.4, 0.5), u(0.03, 0.07)
    ys = sh - st  # underside of the seat
    round_seat = rng.random() < 0.2
    if round_seat:
        d = w
        b.lathe("seat", _disc(w / 2, st, st * 0.3), (0, ys, 0))
        hx = hz = w * 0.3
    else:
        b.box("seat", (0, sh - st / 2, 0), (w, st, d))
        inset = u(0.02, 0.06)
        hx, hz = w / 2 - inset, d / 2 - inset
    lr = u(0.014, 0.028)
    if rng.random() < 0.25:  # swivel chair: a column on a star of feet
        b.tube("leg", [(0, 0.05, 0), (0, ys, 0)], 1.8 * lr)
        _star(b, "leg", int(rng.integers(4, 6)), w * u(0.4, 0.55), lr, 0.07, u(0, np.pi))
    else:
        square = rng.random() < 0.4
        splay, taper = (0.0, 1.0) if square else (u(0.0, 0.05), u(0.55, 1.0))
        ends = []
        for sz in (1, -1):
            for sx in (-1, 1):
                foot = np.array([sx * (hx + splay), 0, sz * (hz + splay)])
                top = np.array([sx * hx, ys, sz * hz])
                ends.append((foot, top))
                _leg(b, "leg", foot, top, lr, square, taper)
        if rng.random() < 0.5:
            yb = u(0.08, 0.2)
            fl, fr, bl, br = (f + (t - f) * yb / ys for f, t in ends)
            if rng.random() < 0.5:  # H-shaped
                pairs = [(fl, bl), (fr, br), ((fl + bl) / 2, (fr + br) / 2)]
            else:  # a ring of four bars
                pairs = [(fl, fr), (fr, br), (br, bl), (bl, fl)]
            sr = lr * u(0.5, 0.8)
            for p, q in pairs:
                b.tube("stretcher", [p, q], sr)
    # the back, built upright from the seat's rear edge then tilted backwards
    bw = w * (u(0.6, 0.8) if round_seat else u(0.85, 1.0))
    bh, bt = u(0.3, 0.55), u(0.025, 0.05)
    frame = (_rot_x(-u(0.0, 0.25)), np.array([0, sh, (-0.42 * w if round_seat else -d / 2 + bt / 2)]))
    style = int(rng.integers(3))
    if style == 0:  # a solid panel
        b.box("back", (0, (bh - st) / 2, 0), (bw, bh + st, bt), frame)
    else:  # two posts, a top rail and slats
        pw, rail, n = bt * u(1.0, 1.6), u(0.05, 0.12), int(rng.integers(2, 6))
        for sx in (-1, 1):
            b.box("back", (sx * (bw - pw) / 2, (bh - st) / 2, 0), (pw, bh + st, bt), frame)
        b.box("back", (0, bh - rail / 2, 0), (bw - pw, rail, bt * 0.8), frame)
        inner, free = bw - 2 * pw, bh - rail
        for k in range(n):
            if style == 1:  # vertical slats
                b.box(
                    "back",
                    (-inner / 2 + (k + 0.5) * inner / n, free / 2, 0),
                    (inner / n * 0.45, free, bt * 0.6),
                    frame,
                )
            else:  # horizontal slats
                b.box(
                    "back",
                    (0, free * (k + 1) / (n + 1), 0),
                    (inner + pw, free / (n + 1) * 0.45, bt * 0.6),
                    frame,
                )
    if not round_seat and rng.random() < 0.35:
        ah, aw, at, length = u(0.18, 0.26), u(0.04, 0.07), u(0.025, 0.04), d * u(0.7, 0.95)
        for sx in (-1, 1):
            x, zc = sx * (w / 2 - aw / 2), -d / 2 + length / 2
            b.box("armrest", (x, sh + ah, zc), (aw, at, length))
            b.box(
                "armrest", (x, (ys + sh + ah) / 2, zc + length / 2 - aw), (aw * 0.7, sh + ah - ys, aw * 0.7)
            )


def _table(b: _Builder, rng: np.random.Generator) -> None:
    u = rng.uniform
    H, tt = u(0.55, 0.8), u(0.03, 0.07)
    yt = H - tt
    if rng.random() < 0.3:  # round top
        W = D = u(0.7, 1.2)
        b.lathe("top", _disc(W / 2, tt, tt * u(0.0, 0.4)), (0, yt, 0))
        hx = hz = W * 0.3
        pedestal = rng.random() < 0.6
    else:
        W, D = u(0.8, 1.6), u(0.5, 0.9)
        b.box("top", (0, H - tt / 2, 0), (W, tt, D))
        inset = u(0.03, 0.1)
        hx, hz = W / 2 - inset, D / 2 - inset
        pedestal = rng.random() < 0.1
    lr = u(0.02, 0.04)
    if pedestal:
        b.tube("leg", [(0, 0.02, 0), (0, yt, 0)], max(u(0.04, 0.08), 1.5 * lr))
        if rng.random() < 0.5:
            b.lathe("leg", _disc(min(W, D) * u(0.2, 0.35), u(0.02, 0.05), 0.01))
        else:
            _star(b, "leg", int(rng.integers(3, 5)), min(W, D) * u(0.3, 0.45), lr, 0.12, u(0, np.pi))
        return
    square, taper = rng.random() < 0.5, u(0.6, 1.0)
    xs = np.linspace(-hx, hx, 3 if W > 1.3 and rng.random() < 0.5 else 2)
    for z in (hz, -hz):
        for x in xs:
            _leg(b, "leg", np.array([x, 0, z]), np.array([x, yt, z]), lr, square, 1.0 if square else taper)
    if rng.random() < 0.6:
        ah, at = u(0.06, 0.14), u(0.015, 0.03)
        for z in (hz, -hz):
            b.box("apron", (0, yt - ah / 2, z), (2 * hx, ah, at))
        for x in (hx, -hx):
            b.box("apron", (x, yt - ah / 2, 0), (at, ah, 2 * hz))
    if rng.random() < 0.4:
        b.box("shelf", (0, H * u(0.1, 0.3), 0), (2 * hx + lr, u(0.015, 0.03), 2 * hz + lr))


def _lamp(b: _Builder, rng: np.random.Generator) -> None:
    u = rng.uniform
    br, bh = u(0.12, 0.25), u(0.03, 0.08)
    style = int(rng.integers(3))
    if style == 0:
        b.lathe("base", _disc(br, bh, bh * u(0.2, 0.6)))
    elif style == 1:  # a dome
        bh *= 2
        b.lathe("base", [(0, 0), *b.arc((0, 0), (br, 0), (0, bh), 1.0, 0, np.pi / 2)])
    else:
        b.box("base", (0, bh / 2, 0), (1.8 * br, bh, 1.8 * br))
    pr, arm = u(0.01, 0.022), rng.random() < 0.4
    H = u(0.35, 0.6) if arm else u(0.6, 1.3)
    b.tube("pole", [(0, bh / 2, 0), (0, H, 0)], pr)
    sh_h, r_bot, bulge = u(0.15, 0.35), u(0.12, 0.28), u(0.0, 0.04) * (rng.random() < 0.4)
    if arm:  # bend toward +Z, run, and bend down; the shade hangs from the end
        r1, run, r2 = u(0.04, 0.1), u(0.15, 0.4), u(0.04, 0.1)
        a1 = b.arc((0, H, r1), (0, 0, -1), (0, 1, 0), r1, 0, np.pi / 2)
        a2 = b.arc((0, H + r1 - r2, r1 + run), (0, 1, 0), (0, 0, 1), r2, 0, np.pi / 2)
        path = np.concatenate([a1, a2])
        b.tube("arm", path, pr * u(0.7, 1.0))
        r_top, y0, center = max(2.5 * pr, r_bot * u(0.15, 0.4)), path[-1, 1] - sh_h, path[-1]
        bulb_r = min(u(0.04, 0.08), 0.6 * r_bot)
        bulb = (0, y0 + 0.4 * bulb_r, center[2])
    else:
        r_top, y0, center = r_bot * u(0.4, 1.0), H - u(0.3, 0.7) * sh_h, np.zeros(3)
        bulb_r = min(u(0.04, 0.08), 0.6 * r_top, 0.6 * r_bot)
        bulb = (0, H + 0.7 * bulb_r, 0)
    s = np.linspace(0, 1, b.count(sh_h, 2) + 1)
    outer = np.stack([r_bot + (r_top - r_bot) * s + bulge * np.sin(np.pi * s), sh_h * s], 1)
    inner = (outer - (0.008, 0))[::-1]
    b.lathe("shade", np.concatenate([outer, inner, outer[:1]]), (0, y0, center[2]))
    b.sphere("bulb", bulb, bulb_r)


def _mug(b: _Builder, rng: np.random.Generator) -> None:
    u = rng.uniform
    H, R, t = u(0.8, 1.2), u(0.35, 0.55), u(0.03, 0.06)
    rb, bulge = R * u(0.75, 1.1), u(0.0, 0.08) * (rng.random() < 0.4)
    fh = u(0.04, 0.08) if rng.random() < 0.5 else 0.0
    s = np.linspace(0, 1, b.count(H, 3) + 1)

    def radius(x: np.ndarray | float) -> np.ndarray:
        return rb + (R - rb) * x + bulge * np.sin(np.pi * x)

    ys = fh + (H - fh) * s
    outer = np.stack([radius(s), ys], 1)
    inner = np.stack([radius(s) - t, fh + t + (H - fh - t) * s], 1)[::-1]
    b.lathe("body", np.concatenate([[(0, fh)], outer, inner, [(0, fh + t)]]))
    rr = t * u(0.55, 0.9)
    b.lathe("rim", b.arc((R - t / 2, H), (1, 0), (0, 1), rr, 0, 2 * np.pi))
    if fh:
        b.lathe("foot", _ring(rb * u(0.6, 0.8), rb * u(0.85, 0.98), 0, fh + 0.01))
    # handle: a superellipse arc on the +X side, its ends buried in the wall
    sc, ay, hr = u(0.45, 0.6), (H - fh) * u(0.22, 0.36), u(0.03, 0.06)
    ax, p, a0 = u(0.18, 0.32), (1.0, 0.5, 0.7)[int(rng.integers(3))], u(1.9, 2.3)
    cy = fh + (H - fh) * sc

    def spow(x: np.ndarray | float) -> np.ndarray:
        return np.sign(x) * np.abs(x) ** p

    cx = float(radius(sc)) - t / 2 - ax * spow(math.cos(a0))
    a = np.linspace(a0, -a0, b.count(ax * 3, 8) + 1)
    b.tube("handle", np.stack([cx + ax * spow(np.cos(a)), cy + ay * spow(np.sin(a)), 0 * a], 1), hr)


def _bottle(b: _Builder, rng: np.random.Generator) -> None:
    u = rng.uniform
    R, hb, hs = u(0.15, 0.3), u(0.4, 0.65), u(0.1, 0.3)
    rn, hn, waist, sp = R * u(0.25, 0.45), u(0.1, 0.25), u(-0.08, 0.12), u(0.5, 2.0)
    s = np.linspace(0, 1, b.count(hb, 3) + 1)
    side = np.stack([R * (1 - waist * np.sin(np.pi * s)), 0.02 + (hb - 0.02) * s], 1)
    q = np.linspace(0, 1, b.count(hs, 4) + 1)[1:]
    shoulder = np.stack([rn + (R - rn) * np.cos(np.pi / 2 * q) ** sp, hb + hs * q], 1)
    b.lathe("body", np.concatenate([[(0, 0), (R * 0.95, 0)], side, shoulder, [(0, hb + hs)]]))
    yn = hb + hs - 0.02
    b.lathe("neck", _disc(rn, hn + 0.02), (0, yn, 0))
    ch, cr = u(0.05, 0.12), rn * u(1.1, 1.3)
    b.lathe("cap", _disc(cr, ch, ch * u(0.0, 0.3)), (0, yn + hn + 0.02 - 0.6 * ch, 0))
    if rng.random() < 0.6:  # a band hugging the body's side
        w = np.linspace(0, 1, b.count(hb * 0.5, 3) + 1) * u(0.3, 0.5) + u(0.1, 0.3)
        band = np.stack([R * (1 - waist * np.sin(np.pi * w)) + 0.006, 0.02 + (hb - 0.02) * w], 1)
        b.lathe("wrapper", np.concatenate([band, (band - (0.016, 0))[::-1], band[:1]]))


_BUILDERS: dict[str, Callable[[_Builder, np.random.Generator], None]] = {
    "chair": _chair,
    "table": _table,
    "lamp": _lamp,
    "mug": _mug,
    "bottle": _bottle,
}


# ------------------------------------------------------------------ appearance
def _noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1] of shape (64, 64)."""
    g = rng.random((cells + 1, cells + 1))
    c = np.linspace(0, cells, _TEX_SIZE, endpoint=False)
    i, f = c.astype(np.int64), c - np.floor(c)
    f = f * f * (3 - 2 * f)
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _texture(rng: np.random.Generator, color: np.ndarray) -> np.ndarray:
    """A 64x64 checker, stripe, wood-grain or blotch pattern around ``color``."""
    y, x = np.mgrid[0:_TEX_SIZE, 0:_TEX_SIZE] / _TEX_SIZE
    kind = int(rng.integers(4))
    if kind == 0:
        n = int(rng.choice([2, 4, 8]))
        t = (np.floor(x * n) + np.floor(y * n)) % 2
    elif kind == 1:
        a, f = rng.uniform(0, np.pi), int(rng.integers(3, 9))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * (x * math.cos(a) + y * math.sin(a)))
    elif kind == 2:
        cx, cy, f = rng.uniform(-1, 2), rng.uniform(-1, 2), rng.uniform(4, 10)
        t = (np.hypot((x - cx) * 4, y - cy) * f + 2 * _noise(rng, 4)) % 1.0
    else:
        t = _noise(rng, int(rng.integers(3, 9)))
    dark, light = color * rng.uniform(0.35, 0.7), np.clip(color * 1.15 + 0.12, 0, 1)
    img = dark + t[..., None] * (light - dark)
    return np.round(img * 255).astype(np.uint8)


def _assemble(
    parts: list[tuple[str, Geom]], labels: tuple[str, ...], rng: np.random.Generator, textured: bool
) -> dict:
    counts: dict[str, int] = {}
    names = []
    for label, _ in parts:
        names.append(f"{label}_{counts.get(label, 0)}")
        counts[label] = counts.get(label, 0) + 1
    vertices, faces, uvs = _merge([g for _, g in parts])
    vertices[:, 1] -= vertices[:, 1].min()  # stand exactly on the XZ plane
    sizes = [len(g[1]) for _, g in parts]
    face_labels = np.repeat([labels.index(label) for label, _ in parts], sizes).astype(np.int64)
    # materials: a few per shape, shared by the instances of a label
    n_mat = int(rng.integers(1, len(labels) + 1))
    mat_of_label = rng.integers(0, n_mat, len(labels))
    hsv = np.stack([rng.random(n_mat), rng.uniform(0.2, 0.8, n_mat), rng.uniform(0.35, 0.95, n_mat)], 1)
    colors = np.array([colorsys.hsv_to_rgb(*c) for c in hsv], np.float32)
    face_mat = mat_of_label[face_labels]
    out = {
        "vertices": vertices,
        "faces": faces,
        "face_labels": face_labels,
        "label_names": labels,
        "face_part_ids": np.repeat(np.arange(len(parts), dtype=np.int32), sizes),
        "part_names": tuple(names),
        "face_colors": colors[face_mat],
    }
    if textured:
        used = np.unique(face_mat)
        chosen = [int(m) for m in used if rng.random() < 0.8] or [int(used[0])]
        tex_of_mat = np.full(n_mat, -1, np.int32)
        tex_of_mat[chosen] = np.arange(len(chosen))
        out["textures"] = tuple(_texture(rng, colors[m]) for m in chosen)
        out["face_texture_ids"] = tex_of_mat[face_mat]
        out["face_uvs"] = uvs
    return out


# ------------------------------------------------------------------------ API
def _check_category(category: str) -> tuple[str, ...]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown shape category {category!r}; known categories: {', '.join(CATEGORIES)}")
    return CATEGORIES[category]


def make_shape(category: str, seed: int, *, textured: bool = False, detail: int = 1) -> LabelledMesh:
    """Build one procedural labelled shape.

    Parameters
    ----------
    category : str
        One of :data:`CATEGORIES` (``chair``, ``table``, ``lamp``, ``mug``, ``bottle``).
    seed : int
        Non-negative seed; the same ``(category, seed, textured, detail)`` gives
        bit-identical arrays. Geometry and colours do not depend on ``textured``.
    textured : bool
        Give the shape per-corner UVs and procedural textures (most parts
        textured, some may keep a plain colour); otherwise one colour per part.
    detail : int
        Resolution factor >= 1: edge lengths shrink as ``1 / detail``, so the
        face count grows roughly as ``detail ** 2`` (about 1-5k faces at 1).

    Returns
    -------
    LabelledMesh
        Normalised into the unit sphere, with ``face_labels`` over the category's
        vocabulary, one part per part instance (``leg_0``, ``leg_1``...), named
        ``f"{category}_{seed:04d}"``.

    Raises
    ------
    ValueError
        For an unknown category (the message lists the known ones), a negative
        seed or ``detail < 1``.
    """
    labels = _check_category(category)
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if int(detail) < 1:
        raise ValueError(f"detail must be an integer >= 1, got {detail}")
    rng = np.random.default_rng([int(seed), zlib.crc32(category.encode())])
    builder = _Builder(int(detail))
    _BUILDERS[category](builder, rng)
    arrays = _assemble(builder.parts, labels, rng, textured)
    mesh = LabelledMesh(
        **arrays, name=f"{category}_{int(seed):04d}", source=f"synthetic:{category}/{int(seed)}"
    )
    return mesh.normalized()


def make_dataset(
    categories: Sequence[str] | str | None = None,
    shapes_per_category: int = 8,
    seed: int = 0,
    textured_fraction: float = 0.25,
    *,
    detail: int = 1,
) -> list[LabelledMesh]:
    """Build a deterministic set of shapes, grouped by category.

    Parameters
    ----------
    categories : sequence of str, str or None
        The categories to build (all of :data:`CATEGORIES` when None).
    shapes_per_category : int
        How many shapes of each category (at most 10000); shape ``i`` has seed
        ``seed * 10000 + i``.
    seed : int
        Non-negative dataset seed.
    textured_fraction : float
        Fraction in [0, 1] of each category's shapes that are textured (rounded
        to the nearest count; which ones is drawn from the seed).
    detail : int
        Passed to :func:`make_shape`.

    Returns
    -------
    list of LabelledMesh
        ``len(categories) * shapes_per_category`` shapes.
    """
    cats = (
        list(CATEGORIES)
        if categories is None
        else [categories]
        if isinstance(categories, str)
        else list(categories)
    )
    for cat in cats:
        _check_category(cat)
    if not 0 <= shapes_per_category <= _SEEDS_PER_DATASET:
        raise ValueError(
            f"shapes_per_category must be in [0, {_SEEDS_PER_DATASET}], got {shapes_per_category}"
        )
    if not 0.0 <= textured_fraction <= 1.0:
        raise ValueError(f"textured_fraction must be in [0, 1], got {textured_fraction}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    shapes = []
    for cat in cats:
        rng = np.random.default_rng([int(seed), zlib.crc32(cat.encode())])
        flags = np.zeros(shapes_per_category, bool)
        flags[
            rng.permutation(shapes_per_category)[: math.floor(textured_fraction * shapes_per_category + 0.5)]
        ] = True
        base = int(seed) * _SEEDS_PER_DATASET
        shapes += [make_shape(cat, base + i, textured=bool(f), detail=detail) for i, f in enumerate(flags)]
    return shapes
