"""Reading ASCII Object File Format (OFF) files.

:func:`_read_off` reads the ``[ST][C][N]OFF`` header variants
(vertex colours, per-face colours, ``#`` comments), fan-triangulating polygons in
place. Binary, 4-D and n-D OFF files are rejected with a
:class:`~mvdecor.errors.MeshLoadError`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mvdecor.data.io._common import _color01, _one_line, _Part, _read_text, _triangulate
from mvdecor.errors import InvalidMeshError, MeshLoadError

_OFF_HEADER = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF(.*)$")


def _read_off(path: Path, name: str) -> _Part:
    """Parse an (ASCII) Object File Format file."""
    text = _read_text(path)
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split("#", 1)[0].split()
        if tokens:
            rows.append((lineno, tokens))
    if not rows:
        raise MeshLoadError(path, "the file is empty")
    match = _OFF_HEADER.match(rows[0][1][0])
    if match is None:
        raise MeshLoadError(path, f"not an OFF file (first line starts with {rows[0][1][0][:20]!r})")
    has_color, has_normal = bool(match.group(2)), bool(match.group(3))
    if match.group(4) or match.group(5):
        raise MeshLoadError(path, "OFF files with 4-D or n-D vertices are not supported")
    rest = ([match.group(6)] if match.group(6) else []) + rows[0][1][1:]
    if any(t.upper() == "BINARY" for t in rest):
        raise MeshLoadError(path, "binary OFF files are not supported")
    start = 1
    if not rest:  # the counts are on the next line
        if len(rows) < 2:
            raise MeshLoadError(path, "truncated: no vertex and face counts after the OFF header")
        rest, start = rows[1][1], 2
    try:
        n_vertices, n_faces = int(rest[0]), int(rest[1])
    except (ValueError, IndexError):
        raise MeshLoadError(path, f"bad OFF counts line {' '.join(rest)[:60]!r}") from None
    body = rows[start:]
    if len(body) < n_vertices + n_faces:
        raise MeshLoadError(
            path,
            f"truncated: the header announces {n_vertices} vertices and {n_faces} faces "
            f"but the file has only {len(body)} data lines",
        )
    try:
        vrows = [t for _, t in body[:n_vertices]]
        vertices = np.array([t[:3] for t in vrows], dtype=np.float64).reshape(-1, 3)
        vertex_colors = None
        if has_color and vrows:
            c0 = 6 if has_normal else 3
            if all(len(t) >= c0 + 3 for t in vrows):
                vertex_colors = _color01(np.array([t[c0 : c0 + 3] for t in vrows], dtype=np.float64))
        corners: list[int] = []
        lengths = np.zeros(n_faces, np.int64)
        colors: list[list[str] | None] = []
        for i, (lineno, tokens) in enumerate(body[n_vertices : n_vertices + n_faces]):
            count = int(tokens[0])
            if len(tokens) < count + 1:
                raise ValueError(f"line {lineno}: face lists {len(tokens) - 1} of {count} vertices")
            corners.extend(int(t) for t in tokens[1 : count + 1])
            lengths[i] = count
            extra = tokens[count + 1 : count + 4]
            colors.append(extra if len(extra) == 3 else None)
    except ValueError as exc:
        raise MeshLoadError(path, f"cannot parse OFF data ({_one_line(exc)})") from None
    tri_corners, tri_poly = _triangulate(lengths)
    if not len(tri_corners):
        raise InvalidMeshError(path, "no triangle faces")
    cv = np.asarray(corners, np.int64)
    polys_first = np.concatenate([[0], np.cumsum(lengths)])
    bad = (cv < 0) | (cv >= n_vertices)
    if bad.any():
        poly = int(np.searchsorted(polys_first, int(np.flatnonzero(bad)[0]), side="right") - 1)
        raise InvalidMeshError(
            path,
            f"face {poly} references missing vertex {int(cv[bad][0])} (the file has {n_vertices} vertices)",
        )
    face_colors = None
    if colors and all(c is not None for c in colors):
        try:
            face_colors = _color01(np.array(colors, dtype=np.float64))[tri_poly]
        except ValueError:
            face_colors = None
    return _Part(
        name=name,
        vertices=vertices,
        faces=cv[tri_corners],
        face_colors=face_colors,
        vertex_colors=vertex_colors,
        part_names=(name,),
    )
