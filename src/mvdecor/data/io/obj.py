"""Reading Wavefront OBJ files, with their MTL material libraries and textures.

:func:`_read_obj` parses the file itself (not through trimesh) so that faces and
vertices keep file order: polygons are fan-triangulated in place, every ``mtllib``
is read, ``Kd`` colours and ``map_Kd`` textures become face colours and UV
textures, and objects/groups (or materials, when the file has no ``o``/``g``
statements) become parts. A missing material library or texture image is reported
with :class:`~mvdecor.errors.MissingTextureWarning`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvdecor.data.io._common import (
    _color01,
    _is_number,
    _one_line,
    _Part,
    _read_text,
    _texture_candidates,
    _TextureCache,
    _triangulate,
)
from mvdecor.data.mesh import DEFAULT_FACE_COLOR
from mvdecor.errors import InvalidMeshError, MeshLoadError, MissingTextureWarning


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
