"""Writing a segmented mesh: labels, coloured PLY and GLB, legend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from mvdecor.data.mesh import LabelledMesh
from mvdecor.inference import UNLABELLED_RGB, export_segmentation
from mvdecor.viz import label_palette

NAMES = ("seat", "leg", "back")  # "back" is not predicted anywhere
LABELS = np.array([0, 1, 1, -1, 0])


def original_mesh() -> LabelledMesh:
    """Five triangles far from the origin and larger than the unit sphere."""
    rng = np.random.default_rng(0)
    vertices = rng.random((7, 3)) * 50.0 + np.array([100.0, -20.0, 5.0])
    faces = np.array([[0, 1, 2], [2, 1, 3], [3, 4, 5], [4, 5, 6], [0, 2, 6]])
    return LabelledMesh(vertices=vertices, faces=faces, name="chair 12/a")


@pytest.fixture
def exported(tmp_path):
    mesh = original_mesh()
    normalized = mesh.normalized()
    assert not np.allclose(normalized.vertices, mesh.vertices)
    confidence = np.linspace(0.2, 1.0, 5)
    paths = export_segmentation(normalized, LABELS, NAMES, tmp_path / "out", confidence=confidence)
    return mesh, paths, confidence


def expected_colors() -> np.ndarray:
    palette = label_palette(len(NAMES))
    return np.array([palette[i] if i >= 0 else UNLABELLED_RGB for i in LABELS], np.uint8)


def test_all_files_written(exported):
    _, paths, _ = exported
    assert set(paths) == {
        "labels_txt",
        "labels_npy",
        "confidence_npy",
        "ply",
        "glb",
        "legend_json",
        "legend_png",
    }
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
        assert path.name.startswith("chair_12_a.")  # stem from the mesh name, made file-safe
    leftovers = [p for p in paths["ply"].parent.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_label_files(exported):
    _, paths, confidence = exported
    lines = paths["labels_txt"].read_text().splitlines()
    assert [int(x) for x in lines] == LABELS.tolist()
    np.testing.assert_array_equal(np.load(paths["labels_npy"]), LABELS)
    saved = np.load(paths["confidence_npy"])
    assert saved.dtype == np.float32
    np.testing.assert_allclose(saved, confidence, rtol=1e-6)


def test_ply_keeps_faces_and_colours_in_original_coordinates(exported):
    mesh, paths, _ = exported
    ply = trimesh.load(paths["ply"], process=False)
    np.testing.assert_array_equal(ply.faces, mesh.faces)
    # Normalisation inverted: the source's coordinates (float32 in the file).
    np.testing.assert_allclose(ply.vertices, mesh.vertices, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(ply.visual.face_colors[:, :3], expected_colors())


def test_glb_has_one_named_coloured_node_per_part(exported):
    mesh, paths, _ = exported
    scene = trimesh.load(paths["glb"])
    assert isinstance(scene, trimesh.Scene)
    assert set(scene.geometry) == {"seat", "leg", "unlabelled"}
    node_names = {scene.graph[node][1]: node for node in scene.graph.nodes_geometry}
    assert set(node_names) == {"seat", "leg", "unlabelled"}
    assert sum(len(g.faces) for g in scene.geometry.values()) == mesh.num_faces
    palette = label_palette(len(NAMES))
    expected = {"seat": (palette[0], 2), "leg": (palette[1], 2), "unlabelled": (UNLABELLED_RGB, 1)}
    for name, (rgb, count) in expected.items():
        part = scene.geometry[name]
        assert len(part.faces) == count
        np.testing.assert_array_equal(part.visual.material.baseColorFactor[:3], rgb)
    # The seat's triangles, in original coordinates.
    seat = scene.geometry["seat"]
    np.testing.assert_allclose(
        np.sort(seat.triangles.reshape(-1, 3), axis=0),
        np.sort(mesh.triangles[LABELS == 0].reshape(-1, 3), axis=0),
        rtol=1e-6,
        atol=1e-4,
    )


def test_legend(exported):
    _, paths, _ = exported
    legend = json.loads(paths["legend_json"].read_text())
    palette = label_palette(len(NAMES))
    assert legend == {
        "0": {"name": "seat", "rgb": palette[0].tolist(), "faces": 2},
        "1": {"name": "leg", "rgb": palette[1].tolist(), "faces": 2},
        "2": {"name": "back", "rgb": palette[2].tolist(), "faces": 0},
        "-1": {"name": "unlabelled", "rgb": list(UNLABELLED_RGB), "faces": 1},
    }
    image = np.asarray(Image.open(paths["legend_png"]).convert("RGB"))
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert tuple(palette[0]) in colours and tuple(palette[1]) in colours
    assert UNLABELLED_RGB in colours
    assert tuple(palette[2]) not in colours  # labels absent from the mesh are left out


def test_unnormalised_mesh_and_no_confidence(tmp_path):
    mesh = original_mesh()
    labels = np.array([0, 0, 1, 2, 2])
    paths = export_segmentation(mesh, labels, NAMES, tmp_path, stem="shape")
    assert "confidence_npy" not in paths
    assert paths["ply"] == tmp_path / "shape.ply"
    ply = trimesh.load(paths["ply"], process=False)
    np.testing.assert_allclose(ply.vertices, mesh.vertices, rtol=1e-6, atol=1e-4)
    legend = json.loads(paths["legend_json"].read_text())
    assert "-1" not in legend
    assert set(trimesh.load(paths["glb"]).geometry) == {"seat", "leg", "back"}


def test_bad_labels_raise(tmp_path):
    mesh = original_mesh()
    with pytest.raises(ValueError, match="no name"):
        export_segmentation(mesh, np.array([0, 1, 2, 3, 0]), NAMES, tmp_path)
    with pytest.raises(ValueError, match="expected"):
        export_segmentation(mesh, np.array([0, 1]), NAMES, tmp_path)
    with pytest.raises(ValueError, match="negative"):
        export_segmentation(mesh, np.array([0, 1, -2, 0, 0]), NAMES, tmp_path)
    with pytest.raises(ValueError, match="confidence"):
        export_segmentation(mesh, LABELS, NAMES, tmp_path, confidence=np.ones(3))
