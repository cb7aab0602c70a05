"""Reading mesh files (and their part labels) into a :class:`LabelledMesh`.

:func:`load_mesh` reads OBJ (with MTL materials and textures), PLY, OFF, STL,
GLB and glTF files. Whatever the format, the result is one triangle mesh:

- **Faces keep file order.** Face ``i`` of the result is face ``i`` of the file
  when the file holds only triangles. Polygons (quads, n-gons) are split into a
  fan of ``n - 2`` triangles that take the polygon's place in the order, so
  per-face labels always refer to the *triangulated* faces.
- **Vertices keep file order** for OBJ, PLY and OFF (nothing is merged, split or
  dropped), so per-vertex labels line up with the file's vertices.
- **Parts**: OBJ objects/groups (or materials, when a file has no ``o``/``g``
  statements) and glTF scene nodes become parts (``face_part_ids`` and
  ``part_names``); each scene node's transform is applied to its geometry.
- **Appearance**: UV textures (``face_uvs``, ``face_texture_ids``,
  ``textures``), material colours (``face_colors``) and vertex colours
  (``vertex_colors``) are kept. A referenced texture or material file that is
  missing is reported with :class:`~mvdecor.errors.MissingTextureWarning` and
  the material colour is used instead.

OBJ, PLY and OFF are parsed here rather than by trimesh, because trimesh's
readers reorder faces (mixed triangles and quads come back triangles first; OBJ
chunks are grouped by material and come back in reverse), split vertices along
UV seams, read only the first ``mtllib``, cannot read binary PLY files whose
faces have different vertex counts, and silently drop missing textures. STL,
GLB and glTF are read with trimesh (``process=False``).

Every problem a user can cause raises a :class:`~mvdecor.errors.FileError`
subclass naming the file with a one-line reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from mvdecor.data.mesh import DEFAULT_FACE_COLOR, LabelledMesh, vertex_labels_to_face_labels
from mvdecor.errors import (
    InvalidMeshError,
    LabelError,
    MeshLoadError,
    MissingTextureWarning,
    UnsupportedFormatError,
)

__all__ = [
    "LABEL_EXTENSIONS",
    "LABEL_NAME_EXTENSIONS",
    "MAX_UNNAMED_LABELS",
    "SUPPORTED_EXTENSIONS",
    "load_label_names",
    "load_labels",
    "load_mesh",
]

#: Mesh file extensions :func:`load_mesh` reads (lower case, with the dot).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
#: Label file extensions :func:`load_labels` reads.
LABEL_EXTENSIONS: tuple[str, ...] = (".txt", ".seg", ".npy")
#: Label-name file extensions :func:`load_label_names` reads.
LABEL_NAME_EXTENSIONS: tuple[str, ...] = (".json", ".txt")
#: Without a label-name file the vocabulary is labels ``0 .. max``: a stray huge value
#: (``1e9``) would mean a billion classes, so label values must stay below this.
MAX_UNNAMED_LABELS = 1024

#: File stems that say nothing about the shape: the folder name is used instead.
_GENERIC_STEMS = frozenset(
    {"mesh", "model", "model_normalized", "normalized_model", "model_watertight", "scene", "untitled"}
)
#: Folder names skipped when looking for a name for a generically named file.
_GENERIC_DIRS = frozenset({"models", "model", "meshes", "mesh", "textured_objs", "objs"})

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- helpers
def _one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), shortened."""
    text = str(exc).strip().splitlines()
    line = text[0].strip() if text else ""
    if not line:
        line = type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _color01(values: np.ndarray) -> np.ndarray:
    """Colours as float32 in [0, 1], from 0-255 (or 0-65535) integers or 0-1 floats."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        top = 65535.0 if values.size and values.max() > 255 else 255.0
        return (values / top).astype(np.float32)
    values = values.astype(np.float32)
    if values.size and np.nanmax(values) > 1.0:
        values = values / 255.0
    return np.clip(np.nan_to_num(values), 0.0, 1.0)


def _image_to_rgb(image: object) -> np.ndarray:
    """A PIL image (or array) as an ``(H, W, 3)`` uint8 array, row 0 at the top."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            top = 65535.0 if array.max() > 255 else 255.0
            gray = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        return np.array(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype != np.uint8:
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


class _TextureCache:
    """Loads each texture image once; reports missing or unreadable ones."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self._index: dict[Path, int] = {}

    def load(self, candidates: Sequence[Path], written: str, context: str) -> int:
        """The index of the first existing candidate image, or -1 after a warning."""
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            warnings.warn(
                f"{context}: texture image '{written}' not found (looked for "
                f"{', '.join(str(p) for p in candidates)}); using the material colour",
                MissingTextureWarning,
                stacklevel=4,
            )
            return -1
        key = found.resolve()
        if key in self._index:
            return self._index[key]
        try:
            from PIL import Image

            with Image.open(found) as image:
                image.load()
                array = _image_to_rgb(image)
        except Exception as exc:
            warnings.warn(
                f"{context}: texture image '{found}' cannot be read ({_one_line(exc)}); "
                "using the material colour",
                MissingTextureWarning,
                stacklevel=4,
            )
            return -1
        self._index[key] = len(self.images)
        self.images.append(array)
        return self._index[key]


def _triangulate(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons given their corner counts, keeping their order.

    Parameters
    ----------
    lengths : (P,) int
        Number of corners of each polygon; corners are stored flat, polygon
        after polygon. Polygons with fewer than 3 corners yield no triangle.

    Returns
    -------
    corners : (T, 3) int64
        Indices into the flat corner arrays of each triangle's corners.
    polygon : (T,) int64
        The polygon each triangle came from (non-decreasing).
    """
    lengths = np.asarray(lengths, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
    counts = np.maximum(lengths - 2, 0)
    polygon = np.repeat(np.arange(len(lengths)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
    j = np.arange(len(polygon)) - np.repeat(first, counts)
    base = starts[polygon]
    corners = np.stack([base, base + j + 1, base + j + 2], axis=1)
    return corners, polygon


@dataclass
class _Part:
    """One mesh piece read from a file, before assembly into a LabelledMesh."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    face_uvs: np.ndarray | None = None
    face_texture_ids: np.ndarray | None = None
    face_part_ids: np.ndarray | None = None
    part_names: tuple[str, ...] = ()
    textures: list[np.ndarray] = field(default_factory=list)


def _check_vertex_refs(path: Path, faces: np.ndarray, n_vertices: int, what: str = "face") -> None:
    """Raise InvalidMeshError if a face indexes a vertex the file lacks."""
    if not len(faces):
        return
    bad = (faces < 0) | (faces >= n_vertices)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        index = int(faces[row][bad[row]][0])
        raise InvalidMeshError(
            path,
            f"{what} {row} references missing vertex {index} (the file has {n_vertices} vertices)",
        )


# ------------------------------------------------------------------------------- OBJ
@dataclass
class _Material:
    color: tuple[float, float, float] | None = None
    texture: str | None = None
    library: Path | None = None


_MAP_OPTION_ARGS = {
    "-blendu": 1,
    "-blendv": 1,
    "-bm": 1,
    "-boost": 1,
    "-cc": 1,
    "-clamp": 1,
    "-imfchan": 1,
    "-mm": 2,
    "-texres": 1,
    "-type": 1,
    "-o": 3,
    "-s": 3,
    "-t": 3,
}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _map_filename(tokens: list[str]) -> str:
    """The file name of an MTL ``map_*`` statement, after its options."""
    i = 0
    while i < len(tokens) and tokens[i].lower() in _MAP_OPTION_ARGS:
        most = _MAP_OPTION_ARGS[tokens[i].lower()]
        i += 1
        if most == 3:  # -o/-s/-t take one to three numbers
            taken = 0
            while taken < 3 and i < len(tokens) - 1 and _is_number(tokens[i]):
                i, taken = i + 1, taken + 1
        else:
            i += most
    return " ".join(tokens[i:])


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise MeshLoadError(path, f"not a text {path.suffix.upper()[1:]} file (it holds binary data)")
    return data.decode("utf-8", errors="replace")


def _parse_mtl(mtl_path: Path) -> dict[str, _Material]:
    materials: dict[str, _Material] = {}
    current: _Material | None = None
    for line in _read_text(mtl_path).splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        key = tokens[0].lower()
        if key == "newmtl":
            current = materials.setdefault(" ".join(tokens[1:]), _Material(library=mtl_path))
        elif current is None:
            continue
        elif key == "kd" and len(tokens) >= 4:
            with contextlib.suppress(ValueError):
                current.color = (float(tokens[1]), float(tokens[2]), float(tokens[3]))
        elif key == "map_kd" and len(tokens) >= 2:
            current.texture = _map_filename(tokens[1:]) or None
    return materials


def _mtllib_files(obj_dir: Path, rest: str) -> list[str]:
    rest = rest.strip()
    if (obj_dir / rest).is_file() or " " not in rest:
        return [rest]
    return rest.split()


def _texture_candidates(written: str, mtl_path: Path, obj_dir: Path) -> list[Path]:
    clean = unquote(written.strip().strip('"')).replace("\\", "/")
    raw = Path(clean)
    if raw.is_absolute():
        return [raw]
    out: list[Path] = []
    for base in (mtl_path.parent, obj_dir):
        for cand in (base / raw, base / raw.name):
            if cand not in out:
                out.append(cand)
    return out


def _obj_bad_number(text: str, exc: ValueError) -> str:
    """Say which ``v``/``vt`` line holds a value that is not a number."""
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if tokens and tokens[0] in ("v", "vt") and not all(_is_number(t) for t in tokens[1:7]):
            return f"line {lineno}: cannot parse {line.strip()[:60]!r} (not a number)"
    return f"cannot parse vertex data ({_one_line(exc)})"


def _read_obj(path: Path, name: str) -> _Part:
    """Parse a Wavefront OBJ file (and its MTL libraries and textures)."""
    text = _read_text(path).replace("\\\r\n", " ").replace("\\\n", " ")
    positions: list[list[str]] = []
    uvs: list[list[str]] = []
    corner_v: list[int] = []
    corner_t: list[int] = []
    lengths: list[int] = []
    poly_line: list[int] = []
    poly_mat: list[int] = []
    poly_group: list[int] = []
    mtllibs: list[str] = []
    mat_index: dict[str, int] = {}
    group_index: dict[tuple[str | None, str | None], int] = {}
    material = -1
    obj_name: str | None = None
    group_name: str | None = None
    group = -1
    has_og = False

    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        key = tokens[0]
        try:
            if key == "v":
                if len(tokens) < 4:
                    raise ValueError("a vertex needs 3 coordinates")
                positions.append(tokens[1:7])
            elif key == "vt":
                uvs.append([*tokens[1:3], "0"][:2])
            elif key == "f":
                n_v, n_t = len(positions), len(uvs)
                for token in tokens[1:]:
                    fields = token.split("/")
                    vi = int(fields[0])
                    corner_v.append(vi - 1 if vi > 0 else (n_v + vi if vi < 0 else -(10**12)))
                    if len(fields) > 1 and fields[1]:
                        ti = int(fields[1])
                        corner_t.append(ti - 1 if ti > 0 else n_t + ti)
                    else:
                        corner_t.append(-1)
                if group < 0:
                    group = group_index.setdefault((obj_name, group_name), len(group_index))
                lengths.append(len(tokens) - 1)
                poly_line.append(lineno)
                poly_mat.append(material)
                poly_group.append(group)
            elif key in ("o", "g"):
                has_og = True
                label = " ".join(tokens[1:]) or None
                if key == "o":
                    obj_name, group_name = label, None
                else:
                    group_name = label
                group = -1
            elif key == "usemtl":
                material = mat_index.setdefault(" ".join(tokens[1:]), len(mat_index))
            elif key == "mtllib":
                mtllibs.extend(_mtllib_files(path.parent, line.strip()[len("mtllib") :]))
        except ValueError as exc:
            raise MeshLoadError(
                path, f"line {lineno}: cannot parse {line.strip()[:60]!r} ({_one_line(exc)})"
            ) from None

    if not positions:
        raise InvalidMeshError(path, "no triangle faces (the file has no vertices)")
    try:
        width = min(len(p) for p in positions)
        vertices = np.array([p[:3] for p in positions], dtype=np.float64)
        vertex_colors = (
            _color01(np.array([p[3:6] for p in positions], dtype=np.float64)) if width >= 6 else None
        )
        uv_array = np.array(uvs, dtype=np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise MeshLoadError(path, _obj_bad_number(text, exc)) from None

    lengths_a = np.asarray(lengths, np.int64)
    tri_corners, tri_poly = _triangulate(lengths_a)
    if not len(tri_corners):
        raise InvalidMeshError(path, "no triangle faces (the file has no faces with 3 or more vertices)")
    cv = np.asarray(corner_v, np.int64)
    bad = (cv < 0) | (cv >= len(vertices))
    if bad.any():
        corner = int(np.flatnonzero(bad)[0])
        poly = int(np.searchsorted(np.cumsum(lengths_a), corner, side="right"))
        raise InvalidMeshError(
            path,
            f"the face on line {poly_line[poly]} references a missing vertex "
            f"(the file has {len(vertices)} vertices)",
        )
    faces = cv[tri_corners]

    # Materials and textures.
    materials: dict[str, _Material] = {}
    for lib in mtllibs:
        lib_path = path.parent / lib.replace("\\", "/")
        if not lib_path.is_file():
            warnings.warn(
                f"{path}: material library '{lib}' not found; using default colours",
                MissingTextureWarning,
                stacklevel=3,
            )
            continue
        for mat_name, mat in _parse_mtl(lib_path).items():
            materials.setdefault(mat_name, mat)
    cache = _TextureCache()
    n_mats = len(mat_index)
    mat_colors = np.tile(np.asarray(DEFAULT_FACE_COLOR, np.float32), (n_mats + 1, 1))
    mat_tex = np.full(n_mats + 1, -1, np.int64)  # last row: no material
    for mat_name, idx in mat_index.items():
        mat = materials.get(mat_name)
        if mat is None:
            continue
        if mat.color is not None:
            mat_colors[idx] = np.clip(mat.color, 0.0, 1.0)
        if mat.texture is not None and mat.library is not None:
            mat_tex[idx] = cache.load(
                _texture_candidates(mat.texture, mat.library, path.parent),
                mat.texture,
                f"{mat.library} (material '{mat_name}')",
            )
    poly_mat_a = np.asarray(poly_mat, np.int64)
    face_mat = poly_mat_a[tri_poly]
    face_colors = mat_colors[face_mat]

    face_uvs = face_tex = None
    if cache.images:
        ct = np.asarray(corner_t, np.int64)
        bad_t = (ct >= len(uv_array)) | (ct < -1)
        if bad_t.any():
            corner = int(np.flatnonzero(bad_t)[0])
            poly = int(np.searchsorted(np.cumsum(lengths_a), corner, side="right"))
            raise InvalidMeshError(
                path,
                f"the face on line {poly_line[poly]} references a missing texture coordinate "
                f"(the file has {len(uv_array)})",
            )
        tri_t = ct[tri_corners]
        face_tex = np.where((tri_t >= 0).all(axis=1), mat_tex[face_mat], -1)
        if (face_tex >= 0).any():
            padded = np.vstack([uv_array, np.zeros((1, 2))])  # index -1 -> zeros
            face_uvs = padded[tri_t].astype(np.float32)
        else:
            face_tex = None

    # Parts: objects/groups, else materials, else one part.
    poly_group_a = np.asarray(poly_group, np.int64)
    if has_og and group_index:
        names = [(f"{o}/{g}" if o and g and o != g else (g or o or "default")) for (o, g) in group_index]
        part_ids = poly_group_a[tri_poly]
    elif len(mat_index) > 1:
        used = np.unique(face_mat)
        by_index = {i: n for n, i in mat_index.items()}
        by_index[-1] = "default"
        names = [by_index[int(i)] for i in used]
        part_ids = np.searchsorted(used, face_mat)
    else:
        names, part_ids = [name], np.zeros(len(faces), np.int64)
    # Keep only parts that own faces (a group may hold only lines or points).
    used_parts, part_ids = np.unique(part_ids, return_inverse=True)
    names = [names[int(i)] for i in used_parts]

    return _Part(
        name=name,
        vertices=vertices,
        faces=faces,
        face_colors=face_colors,
        vertex_colors=vertex_colors,
        face_uvs=face_uvs,
        face_texture_ids=face_tex,
        face_part_ids=part_ids.reshape(-1),
        part_names=tuple(names),
        textures=cache.images,
    )


# ------------------------------------------------------------------------------- OFF
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


# ------------------------------------------------------------------------------- PLY
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


# ------------------------------------------------------------------ trimesh formats
def _gltf_json(path: Path) -> dict | None:
    """The JSON document of a .gltf or .glb file (None if it cannot be read)."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".glb":
            if raw[:4] != b"glTF" or len(raw) < 20:
                return None
            length, kind = struct.unpack("<II", raw[12:20])
            if kind != 0x4E4F534A:  # "JSON"
                return None
            raw = raw[20 : 20 + length]
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, struct.error):
        return None
    return doc if isinstance(doc, dict) else None


def _warn_missing_gltf_images(path: Path) -> None:
    doc = _gltf_json(path)
    for image in (doc or {}).get("images", []) or []:
        uri = image.get("uri") if isinstance(image, dict) else None
        if not isinstance(uri, str) or uri.startswith("data:"):
            continue
        if not (path.parent / unquote(uri)).is_file():
            warnings.warn(
                f"{path}: texture image '{uri}' not found; using the material colour",
                MissingTextureWarning,
                stacklevel=4,
            )


def _trimesh_part(geometry: object, transform: np.ndarray | None, name: str) -> _Part:
    """Convert one trimesh.Trimesh (placed by ``transform``) into a part."""
    vertices = np.asarray(geometry.vertices, np.float64)  # type: ignore[attr-defined]
    faces = np.asarray(geometry.faces, np.int64)  # type: ignore[attr-defined]
    visual = getattr(geometry, "visual", None)
    face_colors = vertex_colors = face_uvs = face_tex = None
    textures: list[np.ndarray] = []
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        material = getattr(visual, "material", None)
        image = getattr(material, "image", None)  # SimpleMaterial
        if image is None:
            image = getattr(material, "baseColorTexture", None)  # PBRMaterial
        color = getattr(material, "diffuse", None)
        if color is None and material is not None and hasattr(material, "baseColorFactor"):
            color = material.baseColorFactor
            if color is None:  # glTF's default base colour is white
                color = np.array([255, 255, 255, 255], np.uint8)
        if color is not None:
            rgb = _color01(np.asarray(color).reshape(-1)[:3][None, :])
            face_colors = np.repeat(rgb, len(faces), axis=0)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(vertices):
            textures = [_image_to_rgb(image)]
            face_uvs = np.asarray(uv, np.float32)[faces]
            face_tex = np.zeros(len(faces), np.int64)
        attrs = getattr(visual, "vertex_attributes", None) or {}
        vcol = attrs.get("color") if hasattr(attrs, "get") else None
        if vcol is not None and len(vcol) == len(vertices):
            vertex_colors = _color01(np.asarray(vcol)[:, :3])
    elif kind == "vertex":
        vertex_colors = _color01(np.asarray(visual.vertex_colors)[:, :3])  # type: ignore[union-attr]
    elif kind == "face":
        face_colors = _color01(np.asarray(visual.face_colors)[:, :3])  # type: ignore[union-attr]
    if transform is not None and not np.allclose(transform, np.eye(4)):
        transform = np.asarray(transform, np.float64)
        vertices = vertices @ transform[:3, :3].T + transform[:3, 3]
        if np.linalg.det(transform[:3, :3]) < 0:  # a mirror: keep faces outward
            faces = faces[:, ::-1]
            if face_uvs is not None:
                face_uvs = face_uvs[:, ::-1]
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


def _read_with_trimesh(path: Path, name: str) -> list[_Part]:
    """Read STL, GLB or glTF through trimesh; one part per scene node."""
    import trimesh

    ext = path.suffix.lower()
    if ext in (".gltf", ".glb"):
        _warn_missing_gltf_images(path)
    try:
        loader = getattr(trimesh, "load_scene", None)
        if loader is not None:
            scene = loader(str(path), process=False, maintain_order=True)
        else:  # pragma: no cover - trimesh < 4.5
            scene = trimesh.load(str(path), force="scene", process=False, maintain_order=True)
    except FileNotFoundError as exc:
        missing = exc.filename or _one_line(exc)
        raise MeshLoadError(
            path, f"cannot read {ext[1:].upper()} file: referenced file '{missing}' not found"
        ) from None
    except Exception as exc:
        raise MeshLoadError(path, f"cannot read {ext[1:].upper()} file: {_one_line(exc)}") from None

    geometry = scene.geometry
    order = {g: i for i, g in enumerate(geometry)}
    nodes = list(scene.graph.nodes_geometry)
    instances = []
    for rank, node in enumerate(nodes):
        transform, geom_name = scene.graph[node]
        instances.append((order.get(geom_name, len(order)), rank, node, geom_name, transform))
    instances.sort(key=lambda t: (t[0], t[1]))
    parts: list[_Part] = []
    for _, _, node, geom_name, transform in instances:
        geom = geometry.get(geom_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        part_name = name if len(instances) == 1 and ext == ".stl" else str(node)
        parts.append(_trimesh_part(geom, transform, part_name))
    if not parts:
        if ext == ".stl":
            raise MeshLoadError(path, "cannot read STL file: no triangles found (not a valid STL file?)")
        raise InvalidMeshError(path, "no triangle faces (the file holds no triangle mesh)")
    for part in parts:
        _check_vertex_refs(path, part.faces, len(part.vertices))
    return parts


# ---------------------------------------------------------------------------- labels
def _as_int_labels(values: np.ndarray, where: PathLike | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise LabelError(where, f"labels must be a 1-D sequence, got shape {array.shape}")
    if array.dtype == bool:
        raise LabelError(where, "labels must be integers, got booleans")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    try:
        floats = array.astype(np.float64)
    except (TypeError, ValueError):
        raise LabelError(where, f"labels must be integers, got {array.dtype}") from None
    if not np.isfinite(floats).all() or (floats != np.round(floats)).any():
        raise LabelError(where, "labels must be integers (found non-integer values)")
    return floats.astype(np.int64)


def _check_label_file(path: Path, allowed: tuple[str, ...], what: str) -> str:
    if not path.exists():
        raise LabelError(path, "no such file")
    if path.is_dir():
        raise LabelError(path, f"is a directory, not a {what} file")
    ext = path.suffix.lower()
    if ext not in allowed:
        raise LabelError(
            path, f"unsupported {what} file extension {ext or '(none)'!r} (supported: {', '.join(allowed)})"
        )
    return ext


def load_labels(path: PathLike) -> np.ndarray:
    """Read per-face (or per-vertex) integer labels from a file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.txt`` or ``.seg`` file holding whitespace-separated integers (one
        per line is usual), or a ``.npy`` file holding a 1-D integer array.
        Integer-valued floats (``3.0``) are accepted.

    Returns
    -------
    (N,) int64
        The labels, in file order.

    Raises
    ------
    LabelError
        The file is missing, has an unsupported extension, or holds
        something other than integers.
    """
    path = Path(path)
    ext = _check_label_file(path, LABEL_EXTENSIONS, "label")
    try:
        if ext == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, EOFError) as exc:
                raise LabelError(path, f"cannot read the .npy file ({_one_line(exc)})") from None
            return _as_int_labels(array, path)
        tokens = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError as exc:
        raise LabelError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    try:
        return np.array(tokens, dtype=np.int64)
    except ValueError:
        pass
    try:
        floats = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise LabelError(path, f"not an integer label: {bad[:30]!r}") from None
    return _as_int_labels(floats, path)


def load_label_names(path: PathLike) -> tuple[str, ...]:
    """Read a label vocabulary (the name of label 0, 1, ...).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.json`` file holding a list of names or an object whose
        ``"labels"`` key holds that list, or a ``.txt`` file with one name per
        line (blank lines are skipped).

    Returns
    -------
    tuple of str

    Raises
    ------
    LabelError
        The file is missing, unreadable, or not in one of these forms.
    """
    path = Path(path)
    ext = _check_label_file(path, LABEL_NAME_EXTENSIONS, "label-name")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LabelError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    if ext == ".txt":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LabelError(path, f"invalid JSON ({_one_line(exc)})") from None
    names = doc.get("labels") if isinstance(doc, dict) else doc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LabelError(path, 'expected a JSON list of names or an object with a "labels" list of names')
    return tuple(names)


def _resolve_labels(
    labels: np.ndarray | Sequence[int] | PathLike,
    mesh: LabelledMesh,
    mesh_path: Path,
    names: tuple[str, ...],
    names_where: PathLike | None,
) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        where: PathLike = Path(labels)
        array = load_labels(where)
    else:
        where = mesh_path
        array = _as_int_labels(np.asarray(labels), where)
    n, n_faces, n_vertices = len(array), mesh.num_faces, mesh.num_vertices
    if n != n_faces:
        if n != n_vertices:
            raise LabelError(
                where,
                f"{n} labels for {n_faces} faces (and {n_vertices} vertices) of {mesh_path.name}; "
                "labels must be one per (triangulated) face or one per vertex",
            )
        array = vertex_labels_to_face_labels(mesh.faces, array)
    if len(array) and array.min() < -1:
        raise LabelError(where, f"label {int(array.min())} is negative (only -1 = unlabelled is allowed)")
    if names and len(array) and array.max() >= len(names):
        raise LabelError(
            names_where or where,
            f"label {int(array.max())} has no name ({len(names)} label names given)",
        )
    check_unnamed_label_range(array, where, named=bool(names))
    return array


def check_unnamed_label_range(labels: np.ndarray, where: PathLike | None, named: bool = False) -> None:
    """Reject label values of :data:`MAX_UNNAMED_LABELS` or more when no names bound the vocabulary.

    Raises
    ------
    LabelError
        Naming ``where`` and the offending value.
    """
    if not named and len(labels) and int(labels.max()) >= MAX_UNNAMED_LABELS:
        raise LabelError(
            where,
            f"label {int(labels.max())} is too large: without a label-name file, labels must be "
            f"0 to {MAX_UNNAMED_LABELS - 1} (one class per value up to the largest)",
        )


# ------------------------------------------------------------------------- the loader
def _default_name(path: Path) -> str:
    stem = path.stem
    if stem.lower() not in _GENERIC_STEMS:
        return stem
    for parent in path.absolute().parents:
        if parent.name and parent.name.lower() not in _GENERIC_DIRS:
            return parent.name
    return stem


def _check_mesh_file(path: Path) -> str:
    if not path.exists():
        raise MeshLoadError(path, "no such file")
    if path.is_dir():
        raise MeshLoadError(path, "is a directory, not a mesh file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFormatError(
            path,
            f"unsupported mesh format {ext or '(no extension)'!r} "
            f"(supported: {', '.join(SUPPORTED_EXTENSIONS)})",
        )
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise MeshLoadError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    if size == 0:
        raise MeshLoadError(path, "the file is empty")
    return ext


def _assemble(parts: list[_Part], path: Path, name: str) -> LabelledMesh:
    """Concatenate parts (keeping their order) into one LabelledMesh."""
    vertices, faces, part_ids, part_names = [], [], [], []
    colors, vcols, uvs, tex_ids, textures = [], [], [], [], []
    any_vcol = any(p.vertex_colors is not None for p in parts)
    any_tex = any(p.face_texture_ids is not None for p in parts)
    default = np.asarray(DEFAULT_FACE_COLOR, np.float32)
    offset = 0
    for part in parts:
        n_faces = len(part.faces)
        vertices.append(part.vertices)
        faces.append(part.faces + offset)
        ids = part.face_part_ids if part.face_part_ids is not None else np.zeros(n_faces, np.int64)
        part_ids.append(np.asarray(ids, np.int64) + len(part_names))
        part_names.extend(part.part_names or (part.name,))
        fc = part.face_colors if part.face_colors is not None else np.tile(default, (n_faces, 1))
        colors.append(np.asarray(fc, np.float32))
        if any_vcol:
            if part.vertex_colors is not None:
                vcols.append(part.vertex_colors)
            else:  # spread the face colours onto the part's vertices
                vc = np.tile(default, (len(part.vertices), 1))
                vc[part.faces.reshape(-1)] = np.repeat(fc, 3, axis=0)
                vcols.append(vc)
        if any_tex:
            if part.face_texture_ids is not None:
                t = np.asarray(part.face_texture_ids, np.int64)
                tex_ids.append(np.where(t >= 0, t + len(textures), -1))
                uvs.append(part.face_uvs)
                textures.extend(part.textures)
            else:
                tex_ids.append(np.full(n_faces, -1, np.int64))
                uvs.append(np.zeros((n_faces, 3, 2), np.float32))
        offset += len(part.vertices)
    all_vertices = np.concatenate(vertices)
    finite = np.isfinite(all_vertices).all(axis=1)
    if not finite.all():
        raise InvalidMeshError(
            path,
            f"{int((~finite).sum())} vertices have NaN or infinite coordinates "
            f"(first: vertex {int(np.flatnonzero(~finite)[0])})",
        )
    return LabelledMesh(
        vertices=all_vertices,
        faces=np.concatenate(faces),
        face_part_ids=np.concatenate(part_ids).astype(np.int32),
        part_names=tuple(part_names),
        face_colors=np.concatenate(colors),
        vertex_colors=np.concatenate(vcols) if any_vcol else None,
        face_uvs=np.concatenate(uvs) if any_tex else None,
        face_texture_ids=np.concatenate(tex_ids).astype(np.int32) if any_tex else None,
        textures=tuple(textures),
        name=name,
        source=str(path),
    )


def load_mesh(
    path: PathLike,
    labels: np.ndarray | Sequence[int] | PathLike | None = None,
    label_names: Sequence[str] | PathLike | None = None,
    *,
    name: str | None = None,
) -> LabelledMesh:
    """Read a mesh file into one :class:`LabelledMesh` (not normalised).

    Parameters
    ----------
    path : str or os.PathLike
        An ``.obj``, ``.ply``, ``.off``, ``.stl``, ``.glb`` or ``.gltf`` file.
        Polygons are fan-triangulated in place; every part of a multi-part file
        (OBJ objects/groups, glTF nodes with their transforms) becomes a part
        of the one mesh.
    labels : array-like of int, or str or os.PathLike, optional
        Per-face labels, or the path of a label file (see :func:`load_labels`).
        Labels refer to the *triangulated* faces in file order. If their count
        equals the number of vertices instead, they are taken as per-vertex
        labels and converted by majority vote
        (:func:`~mvdecor.data.mesh.vertex_labels_to_face_labels`). ``-1``
        marks an unlabelled face.
    label_names : sequence of str, or str or os.PathLike, optional
        The label vocabulary, or the path of a ``.json``/``.txt`` file holding
        it (see :func:`load_label_names`).
    name : str, optional
        The mesh's name. Defaults to the file stem, or the parent folder's name
        when the stem is generic (``mesh``, ``model``, ``model_normalized``...).

    Returns
    -------
    LabelledMesh
        With ``source=str(path)``; call :meth:`LabelledMesh.normalized` to
        centre and scale it.

    Raises
    ------
    MeshLoadError
        The file is missing, a directory, unreadable or corrupt.
    UnsupportedFormatError
        The extension is not one of :data:`SUPPORTED_EXTENSIONS`.
    InvalidMeshError
        The file holds no triangle faces, non-finite vertices, or faces that
        index vertices it does not have.
    LabelError
        The labels or label names do not fit the mesh, or cannot be read.

    Warns
    -----
    MissingTextureWarning
        A referenced material library or texture image is missing or unreadable;
        the material colour is used instead.
    """
    path = Path(path)
    ext = _check_mesh_file(path)
    mesh_name = name if name is not None else _default_name(path)
    try:
        if ext == ".obj":
            parts = [_read_obj(path, mesh_name)]
        elif ext == ".ply":
            parts = [_read_ply(path, mesh_name)]
        elif ext == ".off":
            parts = [_read_off(path, mesh_name)]
        else:
            parts = _read_with_trimesh(path, mesh_name)
    except (MeshLoadError, InvalidMeshError):
        raise
    except OSError as exc:
        raise MeshLoadError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    except (ValueError, IndexError, KeyError, TypeError, struct.error, MemoryError) as exc:
        raise MeshLoadError(path, f"cannot parse {ext[1:].upper()} file ({_one_line(exc)})") from None
    mesh = _assemble(parts, path, mesh_name)
    if not (mesh.face_areas() > 0).any():
        raise InvalidMeshError(path, f"all {mesh.num_faces} faces have zero area: there is no surface to see")

    names: tuple[str, ...] = ()
    names_where: PathLike | None = None
    if label_names is not None:
        if isinstance(label_names, (str, os.PathLike)):
            names_where = Path(label_names)
            names = load_label_names(names_where)
        else:
            names = tuple(str(n) for n in label_names)
    if labels is None:
        return mesh.replace(label_names=names) if names else mesh
    face_labels = _resolve_labels(labels, mesh, path, names, names_where)
    return mesh.with_labels(face_labels, names)
