"""Tests of mvdecor.data.io: reading mesh files and labels into a LabelledMesh."""

from __future__ import annotations

import json
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from mvdecor.data.io import SUPPORTED_EXTENSIONS, load_label_names, load_labels, load_mesh
from mvdecor.data.mesh import DEFAULT_FACE_COLOR, LabelledMesh
from mvdecor.errors import (
    InvalidMeshError,
    LabelError,
    MeshLoadError,
    MissingTextureWarning,
    UnsupportedFormatError,
)

# A 2 x 3 texture: row 0 (the top of the image) red, green, blue; row 1 white, black, grey.
TEXTURE = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [128, 128, 128]]],
    dtype=np.uint8,
)
SQUARE_V = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def random_mesh(n_faces: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces in a scrambled (non-sorted) order."""
    rng = np.random.default_rng(seed)
    vertices = rng.normal(size=(20, 3))
    faces = np.array([rng.choice(20, 3, replace=False) for _ in range(n_faces)])
    return vertices, faces


def binary_ply(path: Path, vertices: np.ndarray, polygons: list[list[int]]) -> Path:
    """A binary little-endian PLY whose faces may have different vertex counts."""
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {len(polygons)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = np.asarray(vertices, "<f4").tobytes()
    for poly in polygons:
        body += struct.pack("<B", len(poly)) + np.asarray(poly, "<i4").tobytes()
    path.write_bytes(header.encode() + body)
    return path


# ------------------------------------------------------------------------- OBJ
@pytest.fixture
def textured_obj(tmp_path: Path) -> Path:
    Image.fromarray(TEXTURE).save(tmp_path / "tex.png")
    write(
        tmp_path / "shape.mtl",
        "newmtl red\nKd 1 0 0\n\nnewmtl textured\nKd 0.5 0.5 0.5\nmap_Kd -s 1 1 1 tex.png\n",
    )
    return write(
        tmp_path / "shape.obj",
        "mtllib shape.mtl\n" + SQUARE_V + "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "o plain\nusemtl red\nf 1 2 5\n"
        "o pic\nusemtl textured\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n",
    )


def test_obj_texture_roundtrip(textured_obj: Path) -> None:
    mesh = load_mesh(textured_obj)
    assert isinstance(mesh, LabelledMesh)
    assert mesh.num_faces == 3 and mesh.num_vertices == 5
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [0, 1, 2], [0, 2, 3]])
    assert mesh.has_texture
    assert len(mesh.textures) == 1
    np.testing.assert_array_equal(mesh.textures[0], TEXTURE)  # row 0 = top of the image
    np.testing.assert_array_equal(mesh.face_texture_ids, [-1, 0, 0])
    np.testing.assert_allclose(mesh.face_uvs[1], [[0, 0], [1, 0], [1, 1]])
    np.testing.assert_allclose(mesh.face_uvs[2], [[0, 0], [1, 1], [0, 1]])
    np.testing.assert_allclose(mesh.face_colors[0], [1, 0, 0])
    np.testing.assert_allclose(mesh.face_colors[1], [0.5, 0.5, 0.5])
    assert mesh.part_names == ("plain", "pic")
    np.testing.assert_array_equal(mesh.face_part_ids, [0, 1, 1])
    assert mesh.source == str(textured_obj)
    assert mesh.name == "shape"
    assert mesh.normalization is None  # not normalised


def test_obj_multiple_objects_and_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path / "multi.obj",
        SQUARE_V + "o first\nf 1 2 3\nf 1 3 4\no second\nf 1 2 5\nf 2 3 5\nf 3 4 5\ng extra\nf 4 1 5\n",
    )
    mesh = load_mesh(path)
    assert mesh.part_names == ("first", "second", "second/extra")
    counts = np.bincount(mesh.face_part_ids, minlength=3)
    np.testing.assert_array_equal(counts, [2, 3, 1])
    np.testing.assert_array_equal(mesh.faces[2], [0, 1, 4])


def test_obj_interleaved_groups_keep_file_order(tmp_path: Path) -> None:
    path = write(tmp_path / "inter.obj", SQUARE_V + "g a\nf 1 2 3\ng b\nf 1 2 5\ng a\nf 1 3 4\n")
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 1, 4], [0, 2, 3]])
    assert mesh.part_names == ("a", "b")
    np.testing.assert_array_equal(mesh.face_part_ids, [0, 1, 0])


def test_obj_materials_become_parts_without_groups(tmp_path: Path) -> None:
    write(tmp_path / "m.mtl", "newmtl a\nKd 0 0 1\nnewmtl b\nKd 0 1 0\n")
    path = write(tmp_path / "m.obj", "mtllib m.mtl\n" + SQUARE_V + "usemtl a\nf 1 2 3\nusemtl b\nf 1 2 5\n")
    mesh = load_mesh(path)
    assert mesh.part_names == ("a", "b")
    np.testing.assert_allclose(mesh.face_colors, [[0, 0, 1], [0, 1, 0]])


def test_obj_quads_and_negative_indices(tmp_path: Path) -> None:
    path = write(tmp_path / "quad.obj", SQUARE_V + "f 1 2 5\nf -5 -4 -3 -2\nf 3 4 5\n")
    mesh = load_mesh(path)
    # The quad becomes two triangles in its own place; labels refer to triangles.
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [0, 1, 2], [0, 2, 3], [2, 3, 4]])


def test_obj_vertex_colors(tmp_path: Path) -> None:
    path = write(tmp_path / "vc.obj", "v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nf 1 2 3\n")
    mesh = load_mesh(path)
    np.testing.assert_allclose(mesh.vertex_colors, np.eye(3))


def test_obj_missing_texture_warns_and_uses_material_color(tmp_path: Path) -> None:
    write(tmp_path / "m.mtl", "newmtl skin\nKd 0.2 0.4 0.6\nmap_Kd gone.png\n")
    path = write(
        tmp_path / "m.obj",
        "mtllib m.mtl\n" + SQUARE_V + "vt 0 0\nvt 1 0\nvt 1 1\nusemtl skin\nf 1/1 2/2 3/3\n",
    )
    with pytest.warns(MissingTextureWarning, match=r"gone\.png"):
        mesh = load_mesh(path)
    assert not mesh.has_texture and mesh.textures == ()
    np.testing.assert_allclose(mesh.face_colors[0], [0.2, 0.4, 0.6], rtol=1e-6)


def test_obj_missing_mtl_warns(tmp_path: Path) -> None:
    path = write(tmp_path / "m.obj", "mtllib nothere.mtl\n" + SQUARE_V + "usemtl x\nf 1 2 3\n")
    with pytest.warns(MissingTextureWarning, match=r"nothere\.mtl"):
        mesh = load_mesh(path)
    np.testing.assert_allclose(mesh.face_colors[0], DEFAULT_FACE_COLOR, rtol=1e-6)


def test_obj_texture_shared_between_materials_loaded_once(tmp_path: Path) -> None:
    Image.fromarray(TEXTURE).save(tmp_path / "t.png")
    write(tmp_path / "m.mtl", "newmtl a\nmap_Kd t.png\nnewmtl b\nmap_Kd ./t.png\n")
    path = write(
        tmp_path / "m.obj",
        "mtllib m.mtl\n" + SQUARE_V + "vt 0 0\nvt 1 0\nvt 1 1\n"
        "usemtl a\nf 1/1 2/2 3/3\nusemtl b\nf 1/1 2/2 5/3\n",
    )
    mesh = load_mesh(path)
    assert len(mesh.textures) == 1
    np.testing.assert_array_equal(mesh.face_texture_ids, [0, 0])


# ------------------------------------------------------------------ other formats
def test_ply_vertex_colors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.ply",
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0 255 0 0\n1 0 0 0 255 0\n0 1 0 0 0 255\n3 0 1 2\n",
    )
    mesh = load_mesh(path)
    np.testing.assert_allclose(mesh.vertex_colors, np.eye(3))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2]])


def test_ply_binary_face_colors_roundtrip(tmp_path: Path) -> None:
    vertices, faces = random_mesh()
    tm = trimesh.Trimesh(vertices, faces, process=False)
    colors = np.random.default_rng(1).integers(0, 256, (len(faces), 4)).astype(np.uint8)
    tm.visual.face_colors = colors
    path = tmp_path / "f.ply"
    path.write_bytes(trimesh.exchange.ply.export_ply(tm, encoding="binary"))
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-6)
    np.testing.assert_allclose(mesh.face_colors, colors[:, :3] / 255.0, atol=1e-6)


def test_ply_binary_mixed_polygons_keep_order(tmp_path: Path) -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], float)
    path = binary_ply(tmp_path / "mixed.ply", vertices, [[0, 1, 4], [0, 1, 2, 3], [2, 3, 4]])
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [0, 1, 2], [0, 2, 3], [2, 3, 4]])


def test_ply_ascii_mixed_polygons_with_face_colors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.ply",
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nelement face 3\nproperty list uchar int vertex_indices\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        + SQUARE_V.replace("v ", "")
        + "3 0 1 4 255 0 0\n4 0 1 2 3 0 255 0\n3 2 3 4 0 0 255\n",
    )
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [0, 1, 2], [0, 2, 3], [2, 3, 4]])
    np.testing.assert_allclose(mesh.face_colors, [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_ply_texture(tmp_path: Path) -> None:
    Image.fromarray(TEXTURE).save(tmp_path / "skin.png")
    path = write(
        tmp_path / "t.ply",
        "ply\nformat ascii 1.0\ncomment TextureFile skin.png\nelement vertex 3\n"
        "property float x\nproperty float y\nproperty float z\nelement face 1\n"
        "property list uchar int vertex_indices\nproperty list uchar float texcoord\nend_header\n"
        "0 0 0\n1 0 0\n0 1 0\n3 0 1 2 6 0 0 1 0 0.5 1\n",
    )
    mesh = load_mesh(path)
    assert mesh.has_texture
    np.testing.assert_array_equal(mesh.textures[0], TEXTURE)
    np.testing.assert_allclose(mesh.face_uvs[0], [[0, 0], [1, 0], [0.5, 1]])


def test_off_roundtrip_and_quads(tmp_path: Path) -> None:
    vertices, faces = random_mesh()
    path = tmp_path / "r.off"
    path.write_text(trimesh.exchange.off.export_off(trimesh.Trimesh(vertices, faces, process=False)))
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-6)

    quad = write(
        tmp_path / "q.off",
        "OFF\n# comment\n5 3 0\n" + SQUARE_V.replace("v ", "") + "3 0 1 4\n4 0 1 2 3 255 0 0\n3 2 3 4\n",
    )
    mesh = load_mesh(quad)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [0, 1, 2], [0, 2, 3], [2, 3, 4]])


def test_stl_roundtrip(tmp_path: Path) -> None:
    box = trimesh.creation.box()
    path = tmp_path / "box.stl"
    box.export(path)
    mesh = load_mesh(path)
    assert mesh.num_faces == 12
    np.testing.assert_allclose(mesh.triangles, box.triangles, atol=1e-6)
    assert mesh.part_names == ("box",)


def _two_node_scene() -> tuple[trimesh.Scene, np.ndarray]:
    box = trimesh.creation.box()
    uv = np.random.default_rng(2).random((len(box.vertices), 2))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(TEXTURE))
    ico = trimesh.creation.icosahedron()
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="box_node", geom_name="box_geom")
    transform = np.eye(4)
    transform[:3, 3] = [10.0, 0.0, 0.0]
    scene.add_geometry(ico, node_name="ico_node", geom_name="ico_geom", transform=transform)
    return scene, uv


def test_glb_two_nodes_with_transform(tmp_path: Path) -> None:
    scene, uv = _two_node_scene()
    path = tmp_path / "scene.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert mesh.part_names == ("box_node", "ico_node")
    np.testing.assert_array_equal(np.bincount(mesh.face_part_ids), [12, 20])
    ico_vertices = np.unique(mesh.faces[mesh.face_part_ids == 1])
    centre = mesh.vertices[ico_vertices].mean(axis=0)
    np.testing.assert_allclose(centre, [10, 0, 0], atol=1e-6)  # the node transform is applied
    assert np.abs(mesh.vertices[np.unique(mesh.faces[:12])]).max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(mesh.face_texture_ids, [0] * 12 + [-1] * 20)
    np.testing.assert_array_equal(mesh.textures[0], TEXTURE)
    box_faces = mesh.faces[:12]
    np.testing.assert_allclose(mesh.face_uvs[:12], uv[box_faces], atol=1e-5)


def test_gltf_with_external_files(tmp_path: Path) -> None:
    scene, _ = _two_node_scene()
    for name, data in scene.export(file_type="gltf").items():
        (tmp_path / name).write_bytes(data)
    mesh = load_mesh(tmp_path / "model.gltf")
    assert mesh.num_faces == 32 and len(mesh.part_names) == 2
    assert mesh.name == tmp_path.name  # "model" is a generic stem: the folder names it


def test_gltf_external_files_lists_what_a_gltf_needs_beside_it(tmp_path: Path) -> None:
    from mvdecor.data.io import gltf_external_files

    scene, _ = _two_node_scene()
    files = scene.export(file_type="gltf")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    external = gltf_external_files(tmp_path / "model.gltf")
    assert external and all(kind in ("buffer", "image") for kind, _ in external)
    assert {uri for _, uri in external} <= set(files) - {"model.gltf"}
    scene.export(tmp_path / "scene.glb")  # its binary chunk holds everything
    assert gltf_external_files(tmp_path / "scene.glb") == []
    assert gltf_external_files(write(tmp_path / "bad.gltf", "not json")) == []


def test_gltf_missing_image_warns(tmp_path: Path) -> None:
    scene, _ = _two_node_scene()
    files = scene.export(file_type="gltf")
    doc = json.loads(files.pop("model.gltf"))
    doc["images"] = [{"uri": "lost.png"}]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    path = write(tmp_path / "m.gltf", json.dumps(doc))
    with pytest.warns(MissingTextureWarning, match=r"lost\.png"):
        mesh = load_mesh(path)
    assert mesh.num_faces == 32


@pytest.mark.parametrize(
    ("ext", "options"), [(".obj", {}), (".ply", {}), (".ply", {"encoding": "ascii"}), (".off", {})]
)
def test_face_order_preserved(tmp_path: Path, ext: str, options: dict) -> None:
    vertices, faces = random_mesh(n_faces=50, seed=3)
    tm = trimesh.Trimesh(vertices, faces, process=False)
    path = tmp_path / f"order{ext}"
    tm.export(path, **options)
    labels = np.arange(len(faces)) % 7
    mesh = load_mesh(path, labels=labels)
    np.testing.assert_array_equal(mesh.faces, faces)  # face i of the file is face i
    np.testing.assert_array_equal(mesh.face_labels, labels)
    np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-6)


def test_supported_extensions() -> None:
    assert set(SUPPORTED_EXTENSIONS) == {".obj", ".ply", ".off", ".stl", ".glb", ".gltf"}


def test_uppercase_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "UP.OBJ", SQUARE_V + "f 1 2 3\n")
    assert load_mesh(path).num_faces == 1


def test_default_names(tmp_path: Path) -> None:
    folder = tmp_path / "chair_42" / "models"
    folder.mkdir(parents=True)
    path = write(folder / "model_normalized.obj", SQUARE_V + "f 1 2 3\n")
    assert load_mesh(path).name == "chair_42"
    assert load_mesh(path, name="custom").name == "custom"
    path = write(tmp_path / "chair_42" / "mesh.obj", SQUARE_V + "f 1 2 3\n")
    assert load_mesh(path).name == "chair_42"


# ----------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MeshLoadError, match=r"nope\.obj: no such file"):
        load_mesh(tmp_path / "nope.obj")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir.obj"
    folder.mkdir()
    with pytest.raises(MeshLoadError, match=r"dir\.obj: is a directory"):
        load_mesh(folder)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "shape.xyz", "1 2 3\n")
    with pytest.raises(UnsupportedFormatError, match=r"shape\.xyz: unsupported mesh format.*\.obj"):
        load_mesh(path)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.ply", "")
    with pytest.raises(MeshLoadError, match=r"empty\.ply: the file is empty"):
        load_mesh(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("bad.ply", b"garbage\x00\x01 not a mesh", "not a PLY file"),
        ("bad.glb", b"garbage\x00\x01 not a mesh", "cannot read GLB file"),
        ("bad.gltf", b"{ this is not json", "cannot read GLTF file"),
        ("bad.stl", b"garbage\x00\x01 not a mesh", "cannot read STL file"),
        ("bad.obj", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a text OBJ file"),
        ("bad2.obj", b"v 0 0 zero\nf 1 2 3\n", "line 1: cannot parse"),
        ("bad.off", b"NOTOFF\n3 1 0\n", "not an OFF file"),
        ("short.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated"),
    ],
)
def test_corrupt_files(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MeshLoadError, match=rf"{re.escape(name)}: {reason}"):
        load_mesh(path)


def test_truncated_binary_ply(tmp_path: Path) -> None:
    vertices, faces = random_mesh()
    data = trimesh.exchange.ply.export_ply(trimesh.Trimesh(vertices, faces, process=False))
    path = tmp_path / "cut.ply"
    path.write_bytes(data[:-20])
    with pytest.raises(MeshLoadError, match=r"cut\.ply: truncated"):
        load_mesh(path)


def test_point_cloud_has_no_faces(tmp_path: Path) -> None:
    path = tmp_path / "cloud.ply"
    path.write_bytes(trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(file_type="ply"))
    with pytest.raises(InvalidMeshError, match=r"cloud\.ply: no triangle faces"):
        load_mesh(path)


def test_ply_with_zero_faces(tmp_path: Path) -> None:
    path = write(
        tmp_path / "nofaces.ply",
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n0 1 0\n",
    )
    with pytest.raises(InvalidMeshError, match=r"nofaces\.ply: no triangle faces"):
        load_mesh(path)


def test_obj_without_faces(tmp_path: Path) -> None:
    path = write(tmp_path / "points.obj", SQUARE_V)
    with pytest.raises(InvalidMeshError, match=r"points\.obj: no triangle faces"):
        load_mesh(path)


@pytest.mark.parametrize("ext", [".obj", ".ply", ".off"])
def test_nan_vertices(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"nan{ext}"
    if ext == ".obj":
        write(path, "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    elif ext == ".off":
        write(path, "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n")
    else:
        write(
            path,
            "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
            "0 0 0\ninf 0 0\n0 1 0\n3 0 1 2\n",
        )
    with pytest.raises(InvalidMeshError, match=rf"nan\{ext}: 1 vertices have NaN or infinite"):
        load_mesh(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("hole.obj", SQUARE_V + "f 1 2 3\nf 1 2 9\n"),
        ("zero.obj", SQUARE_V + "f 0 1 2\n"),
        ("hole.off", "OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 7\n"),
        (
            "hole.ply",
            "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
            "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 7\n",
        ),
    ],
)
def test_faces_index_missing_vertices(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(InvalidMeshError, match=rf"{re.escape(name)}: .*missing vertex"):
        load_mesh(path)


def test_label_count_mismatch(tmp_path: Path) -> None:
    path = write(tmp_path / "m.obj", SQUARE_V + "f 1 2 3\nf 1 3 4\n")
    with pytest.raises(LabelError, match=r"m\.obj: 3 labels for 2 faces"):
        load_mesh(path, labels=[0, 1, 2])
    label_file = write(tmp_path / "labels.txt", "0\n1\n2\n")
    with pytest.raises(LabelError, match=r"labels\.txt: 3 labels for 2 faces"):
        load_mesh(path, labels=label_file)


def test_label_without_name(tmp_path: Path) -> None:
    path = write(tmp_path / "m.obj", SQUARE_V + "f 1 2 3\nf 1 3 4\n")
    with pytest.raises(LabelError, match=r"label 2 has no name"):
        load_mesh(path, labels=[0, 2], label_names=["a", "b"])


# --------------------------------------------------------------------------- labels
def test_per_vertex_labels_become_per_face(tmp_path: Path) -> None:
    path = write(tmp_path / "m.obj", SQUARE_V + "f 1 2 3\nf 3 4 5\n")
    mesh = load_mesh(path, labels=[0, 0, 1, 1, 1])  # 5 vertices, 2 faces
    np.testing.assert_array_equal(mesh.face_labels, [0, 1])


@pytest.mark.parametrize("ext", [".txt", ".seg", ".npy"])
def test_label_files(tmp_path: Path, ext: str) -> None:
    path = write(tmp_path / "m.obj", SQUARE_V + "f 1 2 3\nf 1 3 4\nf 1 2 5\n")
    label_path = tmp_path / f"labels{ext}"
    if ext == ".npy":
        np.save(label_path, np.array([2, 0, 1]))
    else:
        write(label_path, "2\n0\n1\n")
    np.testing.assert_array_equal(load_labels(label_path), [2, 0, 1])
    mesh = load_mesh(path, labels=label_path, label_names=["a", "b", "c"])
    np.testing.assert_array_equal(mesh.face_labels, [2, 0, 1])
    assert mesh.label_names == ("a", "b", "c")


def test_bad_label_files(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match=r"gone\.txt: no such file"):
        load_labels(tmp_path / "gone.txt")
    with pytest.raises(LabelError, match=r"words\.txt: not an integer label: 'abc'"):
        load_labels(write(tmp_path / "words.txt", "1\nabc\n"))
    with pytest.raises(LabelError, match=r"x\.csv: unsupported label file extension"):
        load_labels(write(tmp_path / "x.csv", "1,2"))
    np.testing.assert_array_equal(load_labels(write(tmp_path / "f.txt", "1.0 2.0\n-1\n")), [1, 2, -1])


def test_label_names_files(tmp_path: Path) -> None:
    listed = write(tmp_path / "names.json", json.dumps(["head", "arm"]))
    keyed = write(tmp_path / "labels.json", json.dumps({"labels": ["head", "arm"], "coarse": {}}))
    lines = write(tmp_path / "names.txt", "head\narm\n\n")
    for path in (listed, keyed, lines):
        assert load_label_names(path) == ("head", "arm")
    with pytest.raises(LabelError, match=r"bad\.json: expected a JSON list"):
        load_label_names(write(tmp_path / "bad.json", json.dumps({"names": 3})))
    mesh_path = write(tmp_path / "m.obj", SQUARE_V + "f 1 2 3\n")
    mesh = load_mesh(mesh_path, label_names=keyed)
    assert mesh.label_names == ("head", "arm") and mesh.face_labels is None


def test_no_warnings_for_plain_files(tmp_path: Path) -> None:
    path = write(tmp_path / "m.obj", SQUARE_V + "f 1 2 3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mesh(path)


# --------------------------------------------------------------------- shared data
@pytest.mark.shared_data
def test_faust_meshes(shared_data_dir: Path) -> None:
    faust = shared_data_dir / "faust_smpl"
    if not faust.is_dir():
        pytest.skip(f"{faust} is absent")
    folders = sorted(p for p in faust.glob("faust_*") if (p / "mesh.ply").is_file())[:3]
    if not folders:
        pytest.skip(f"no FAUST meshes in {faust}")
    for folder in folders:
        mesh = load_mesh(
            folder / "mesh.ply", labels=folder / "face_labels.txt", label_names=faust / "labels.json"
        )
        assert mesh.name == folder.name
        assert len(mesh.face_labels) == mesh.num_faces
        assert len(mesh.label_names) == 24
        assert (mesh.face_labels >= 0).all()
        assert mesh.face_labels.max() < 24
