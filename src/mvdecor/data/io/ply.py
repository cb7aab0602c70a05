"""Reading PLY (Stanford polygon) files, ASCII and binary.

:func:`_read_ply` parses the header and the ``vertex`` and ``face`` elements of
ASCII, binary little-endian and binary big-endian files, including faces with
different vertex counts, which are fan-triangulated in place. Vertex and face
colours are kept, and a ``comment TextureFile`` image with per-face ``texcoord``
or per-vertex UVs becomes a texture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvdecor.data.io._common import (
    _color01,
    _one_line,
    _Part,
    _texture_candidates,
    _TextureCache,
    _triangulate,
)
from mvdecor.errors import InvalidMeshError, MeshLoadError

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


@dataclass
class _PlyProperty:
    name: str
    dtype: str
    count_dtype: str | None = None  # set for list properties


@dataclass
class _PlyElement:
    name: str
    count: int
    properties: list[_PlyProperty] = field(default_factory=list)
    #: scalar properties -> (N,) arrays; list properties -> (flat values, lengths)
    data: dict[str, object] = field(default_factory=dict)


def _ply_header(path: Path, raw: bytes) -> tuple[str, list[_PlyElement], list[str], int]:
    if not raw.startswith(b"ply"):
        raise MeshLoadError(path, "not a PLY file (it does not start with 'ply')")
    match = re.search(rb"end_header[ \t]*\r?\n", raw)
    if match is None:
        raise MeshLoadError(path, "the PLY header has no 'end_header' line")
    header = raw[: match.start()].decode("ascii", errors="replace").splitlines()
    fmt = ""
    elements: list[_PlyElement] = []
    comments: list[str] = []
    for line in header[1:]:
        tokens = line.split()
        if not tokens:
            continue
        try:
            if tokens[0] == "format":
                fmt = tokens[1]
            elif tokens[0] in ("comment", "obj_info"):
                comments.append(line.strip()[len(tokens[0]) :].strip())
            elif tokens[0] == "element":
                elements.append(_PlyElement(tokens[1], int(tokens[2])))
            elif tokens[0] == "property":
                if not elements:
                    raise ValueError("property before any element")
                if tokens[1] == "list":
                    prop = _PlyProperty(tokens[4], _PLY_TYPES[tokens[3]], _PLY_TYPES[tokens[2]])
                else:
                    prop = _PlyProperty(tokens[2], _PLY_TYPES[tokens[1]])
                elements[-1].properties.append(prop)
        except (IndexError, KeyError, ValueError) as exc:
            raise MeshLoadError(path, f"bad PLY header line {line.strip()!r} ({_one_line(exc)})") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshLoadError(path, f"unknown PLY format {fmt!r}")
    return fmt, elements, comments, match.end()


def _ply_store(element: _PlyElement, columns: list[object]) -> None:
    for prop, col in zip(element.properties, columns, strict=True):
        element.data[prop.name] = col


def _empty_list(prop: _PlyProperty) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, prop.dtype), np.zeros(0, np.int64)


def _ply_read_ascii(path: Path, elements: list[_PlyElement], body: bytes) -> None:
    tokens = body.split()
    pos = 0
    for el in elements:
        n, props = el.count, el.properties
        if n == 0:
            _ply_store(el, [np.zeros(0, p.dtype) if p.count_dtype is None else _empty_list(p) for p in props])
            continue
        try:
            # Fast path: every list of the element has the length of the first row's.
            starts, width = [], 0
            for prop in props:
                starts.append(width)
                width += 1 if prop.count_dtype is None else 1 + int(tokens[pos + width])
            if n and pos + n * width <= len(tokens):
                table = np.array(tokens[pos : pos + n * width], dtype=np.float64).reshape(n, width)
                stops = [*starts[1:], width]
                if all(
                    p.count_dtype is None or (table[:, a] == b - a - 1).all()
                    for p, a, b in zip(props, starts, stops, strict=True)
                ):
                    out: list[object] = []
                    for p, a, b in zip(props, starts, stops, strict=True):
                        if p.count_dtype is None:
                            out.append(table[:, a].astype(p.dtype))
                        else:
                            values = table[:, a + 1 : b].astype(p.dtype)
                            out.append((values.reshape(-1), np.full(n, b - a - 1, np.int64)))
                    _ply_store(el, out)
                    pos += n * width
                    continue
            # Slow path: lists of varying length (e.g. triangles mixed with quads).
            columns: list[list] = [[] for _ in props]
            for _ in range(n):
                for i, prop in enumerate(props):
                    if prop.count_dtype is None:
                        columns[i].append(tokens[pos])
                        pos += 1
                    else:
                        count = int(tokens[pos])
                        if pos + 1 + count > len(tokens):
                            raise EOFError
                        columns[i].append(tokens[pos + 1 : pos + 1 + count])
                        pos += 1 + count
            out = []
            for prop, col in zip(props, columns, strict=True):
                if prop.count_dtype is None:
                    out.append(np.array(col, dtype=np.float64).astype(prop.dtype))
                else:
                    lengths = np.fromiter((len(c) for c in col), np.int64, count=len(col))
                    flat = np.array([t for c in col for t in c], dtype=np.float64).astype(prop.dtype)
                    out.append((flat, lengths))
            _ply_store(el, out)
        except (EOFError, IndexError):
            raise MeshLoadError(path, f"truncated: the PLY data ends inside element '{el.name}'") from None
        except ValueError as exc:
            raise MeshLoadError(path, f"cannot parse PLY element '{el.name}' ({_one_line(exc)})") from None


def _ply_read_binary(path: Path, elements: list[_PlyElement], body: bytes, endian: str) -> None:
    pos = 0
    for el in elements:
        n, props = el.count, el.properties
        # Fast path: every list of the element has the length of the first row's.
        fields: list[tuple] = []
        offset = pos
        try:
            for prop in props:
                if prop.count_dtype is None:
                    fields.append((prop.name, endian + prop.dtype))
                    offset += np.dtype(prop.dtype).itemsize
                else:
                    cdt = np.dtype(endian + prop.count_dtype)
                    count = int(np.frombuffer(body, cdt, count=1, offset=offset)[0]) if n else 0
                    fields.append((prop.name + "\x01len", cdt))
                    fields.append((prop.name, endian + prop.dtype, (count,)))
                    offset += cdt.itemsize + count * np.dtype(prop.dtype).itemsize
        except ValueError:
            raise MeshLoadError(path, f"truncated: the PLY data ends inside element '{el.name}'") from None
        dtype = np.dtype(fields)
        uniform = pos + n * dtype.itemsize <= len(body)
        if uniform:
            table = np.frombuffer(body, dtype, count=n, offset=pos)
            for prop in props:
                if prop.count_dtype is not None and n:
                    uniform &= bool((table[prop.name + "\x01len"] == table[prop.name].shape[1]).all())
        if uniform:
            out: list[object] = []
            for prop in props:
                col = table[prop.name]
                if prop.count_dtype is None:
                    out.append(col.astype(prop.dtype))
                else:
                    out.append((col.reshape(-1).astype(prop.dtype), np.full(n, col.shape[1], np.int64)))
            _ply_store(el, out)
            pos += n * dtype.itemsize
            continue
        # Slow path: lists of varying length (e.g. triangles mixed with quads).
        scalars: list[list] = [[] for _ in props]
        try:
            for _ in range(n):
                for i, prop in enumerate(props):
                    if prop.count_dtype is None:
                        dt = np.dtype(endian + prop.dtype)
                        scalars[i].append(np.frombuffer(body, dt, count=1, offset=pos)[0])
                        pos += dt.itemsize
                    else:
                        cdt = np.dtype(endian + prop.count_dtype)
                        count = int(np.frombuffer(body, cdt, count=1, offset=pos)[0])
                        pos += cdt.itemsize
                        dt = np.dtype(endian + prop.dtype)
                        scalars[i].append(np.frombuffer(body, dt, count=count, offset=pos))
                        pos += count * dt.itemsize
        except ValueError:
            raise MeshLoadError(path, f"truncated: the PLY data ends inside element '{el.name}'") from None
        out = []
        for prop, col in zip(props, scalars, strict=True):
            if prop.count_dtype is None:
                out.append(np.asarray(col).astype(prop.dtype))
            else:
                lengths = np.fromiter((len(c) for c in col), np.int64, count=len(col))
                flat = np.concatenate(col).astype(prop.dtype) if col else np.zeros(0, prop.dtype)
                out.append((flat, lengths))
        _ply_store(el, out)


def _first_key(data: dict[str, object], *names: str) -> str | None:
    return next((n for n in names if n in data), None)


def _read_ply(path: Path, name: str) -> _Part:
    """Parse an ASCII or binary PLY file."""
    raw = path.read_bytes()
    fmt, elements, comments, start = _ply_header(path, raw)
    body = raw[start:]
    if fmt == "ascii":
        _ply_read_ascii(path, elements, body)
    else:
        _ply_read_binary(path, elements, body, "<" if fmt == "binary_little_endian" else ">")
    by_name = {el.name: el for el in elements}
    vert = by_name.get("vertex")
    if vert is None or not all(k in vert.data for k in "xyz"):
        raise MeshLoadError(path, "the PLY file has no vertex element with x, y, z properties")
    vdata = vert.data
    vertices = np.column_stack([np.asarray(vdata[k], np.float64) for k in "xyz"]).reshape(-1, 3)
    face = by_name.get("face")
    index_key = None
    if face is not None:
        index_key = _first_key(face.data, "vertex_indices", "vertex_index") or next(
            (p.name for p in face.properties if p.count_dtype is not None and p.name != "texcoord"), None
        )
    if face is None or index_key is None or face.count == 0:
        raise InvalidMeshError(
            path, f"no triangle faces (the file holds a point cloud of {len(vertices)} points)"
        )
    corners, lengths = face.data[index_key]  # type: ignore[misc]
    corners = np.asarray(corners, np.int64)
    tri_corners, tri_poly = _triangulate(lengths)
    if not len(tri_corners):
        raise InvalidMeshError(path, "no triangle faces")
    bad = (corners < 0) | (corners >= len(vertices))
    if bad.any():
        starts = np.concatenate([[0], np.cumsum(lengths)])
        poly = int(np.searchsorted(starts, int(np.flatnonzero(bad)[0]), side="right") - 1)
        raise InvalidMeshError(
            path,
            f"face {poly} references missing vertex {int(corners[bad][0])} "
            f"(the file has {len(vertices)} vertices)",
        )
    faces = corners[tri_corners]

    def colors_of(data: dict[str, object]) -> np.ndarray | None:
        for keys in (
            ("red", "green", "blue"),
            ("r", "g", "b"),
            ("diffuse_red", "diffuse_green", "diffuse_blue"),
        ):
            if all(k in data for k in keys):
                return _color01(np.column_stack([np.asarray(data[k]) for k in keys]))
        return None

    vertex_colors = colors_of(vdata)
    poly_colors = colors_of(face.data)
    face_colors = poly_colors[tri_poly] if poly_colors is not None else None

    # Texture: `comment TextureFile name`, with per-face `texcoord` or per-vertex UVs.
    face_uvs = face_tex = None
    textures: list[np.ndarray] = []
    texture_file = next(
        (c.split(None, 1)[1] for c in comments if c.lower().startswith("texturefile") and " " in c), None
    )
    if texture_file is not None:
        corner_uv = None
        if "texcoord" in face.data:
            flat, tlen = face.data["texcoord"]  # type: ignore[misc]
            if np.array_equal(np.asarray(tlen), 2 * np.asarray(lengths)):
                corner_uv = np.asarray(flat, np.float64).reshape(-1, 2)
        if corner_uv is None:
            keys = next(
                (
                    k
                    for k in (("texture_u", "texture_v"), ("u", "v"), ("s", "t"), ("texture_s", "texture_t"))
                    if all(x in vdata for x in k)
                ),
                None,
            )
            if keys is not None:
                uv = np.column_stack([np.asarray(vdata[k], np.float64) for k in keys])
                corner_uv = uv[corners]
        if corner_uv is not None:
            cache = _TextureCache()
            tex = cache.load(_texture_candidates(texture_file, path, path.parent), texture_file, str(path))
            if tex >= 0:
                textures = cache.images
                face_uvs = corner_uv[tri_corners].astype(np.float32)
                face_tex = np.zeros(len(faces), np.int64)
    return _Part(
        name=name,
        vertices=vertices,
        faces=faces,
        face_colors=face_colors,
        vertex_colors=vertex_colors,
        face_uvs=face_uvs,
        face_texture_ids=face_tex,
        part_names=(name,),
        textures=textures,
    )
