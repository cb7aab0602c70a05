"""Reading STL, GLB and glTF files through trimesh.

:func:`_read_with_trimesh` loads the file as a trimesh scene (``process=False``,
``maintain_order=True``) and turns each scene node holding a triangle mesh into a
part, with the node's transform applied and its material colour, vertex colours
and base-colour texture kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvdecor.data.io._common import _check_vertex_refs, _color01, _image_to_rgb, _one_line, _Part
from mvdecor.data.io.gltf import _warn_missing_gltf_images
from mvdecor.errors import InvalidMeshError, MeshLoadError


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
