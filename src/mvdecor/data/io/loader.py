"""Reading any supported mesh file into one :class:`~mvdecor.data.mesh.LabelledMesh`.

:func:`load_mesh` checks the file, dispatches on its extension
(:data:`SUPPORTED_EXTENSIONS`) to the OBJ, PLY, OFF or trimesh (STL, GLB, glTF)
reader, concatenates the parts read into one mesh, and attaches labels and label
names when given.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvdecor.data.io._common import PathLike, _one_line, _Part
from mvdecor.data.io.labels import _resolve_labels, load_label_names
from mvdecor.data.io.obj import _read_obj
from mvdecor.data.io.off import _read_off
from mvdecor.data.io.ply import _read_ply
from mvdecor.data.io.scene import _read_with_trimesh
from mvdecor.data.mesh import DEFAULT_FACE_COLOR, LabelledMesh
from mvdecor.errors import InvalidMeshError, MeshLoadError, UnsupportedFormatError

#: Mesh file extensions :func:`load_mesh` reads (lower case, with the dot).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
#: File stems that say nothing about the shape: the folder name is used instead.
_GENERIC_STEMS = frozenset(
    {"mesh", "model", "model_normalized", "normalized_model", "model_watertight", "scene", "untitled"}
)
#: Folder names skipped when looking for a name for a generically named file.
_GENERIC_DIRS = frozenset({"models", "model", "meshes", "mesh", "textured_objs", "objs"})


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
