"""Dataset specs and adapters: synthetic, a user's folder, FAUST in place."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvdecor.data.datasets import DATASETS, FolderDataset, SyntheticDataset, open_dataset
from mvdecor.errors import ConfigError, MeshLoadError
from mvdecor.render import CameraScheme, Renderer

TRIANGLES_OFF = "OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0.2\n3 0 1 2\n3 1 3 2\n"


def test_registry_lists_adapters():
    assert {"synthetic", "folder"} <= set(DATASETS)


def test_synthetic_spec_roundtrip_and_determinism():
    ds = open_dataset("synthetic:categories=chair+mug,n=3,seed=2")
    assert isinstance(ds, SyntheticDataset)
    assert ds.shape_ids() == [f"{c}_{i:04d}" for c in ("chair", "mug") for i in range(3)]
    again = open_dataset(ds.spec)
    assert again.spec == ds.spec
    a, b = ds.load("mug_0001"), again.load("mug_0001")
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert a.name == "mug_0001" and a.label_names == ("body", "handle", "rim", "foot")
    assert ds.category_of("chair_0002") == "chair"


def test_synthetic_textured_share():
    ds = open_dataset("synthetic:categories=lamp,n=20,textured=0.5")
    textured = sum(ds.load(s).has_texture for s in ds.shape_ids())
    assert 4 <= textured <= 16
    assert not any(
        open_dataset("synthetic:categories=lamp,n=5,textured=0").load(s).has_texture
        for s in ds.shape_ids()[:5]
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:categories=sofa", "unknown synthetic categories"),
        ("synthetic:n=two", "bad synthetic dataset option"),
        ("synthetic:colour=red", "unknown synthetic dataset options"),
        ("synthetic:n", "key=value"),
        ("/no/such/folder/anywhere", "neither an existing folder"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        open_dataset(spec)


def test_unknown_shape_id():
    with pytest.raises(MeshLoadError, match="no synthetic shape"):
        open_dataset("synthetic:n=2").load("chair_0005")


def test_folder_flat_and_nested_layouts(tmp_path):
    (tmp_path / "a.off").write_text(TRIANGLES_OFF)
    (tmp_path / "a.seg").write_text("0\n1\n")
    (tmp_path / "b.off").write_text(TRIANGLES_OFF)  # unlabelled
    (tmp_path / "person_1").mkdir()
    (tmp_path / "person_1" / "mesh.off").write_text(TRIANGLES_OFF)
    (tmp_path / "person_1" / "face_labels.txt").write_text("1 1\n")
    (tmp_path / "labels.json").write_text(json.dumps({"labels": ["left", "right"]}))
    (tmp_path / "notes.md").write_text("not a mesh")
    ds = open_dataset(str(tmp_path))
    assert isinstance(ds, FolderDataset)
    assert ds.shape_ids() == ["a", "b", "person_1"]
    assert ds.label_names == ("left", "right")
    a = ds.load("a")
    assert a.name == "a" and a.face_labels.tolist() == [0, 1] and a.label_names == ("left", "right")
    assert not ds.load("b").has_labels
    assert ds.load("person_1").face_labels.tolist() == [1, 1]
    assert open_dataset(ds.spec).shape_ids() == ds.shape_ids()
    with pytest.raises(MeshLoadError, match="no shape"):
        ds.load("zzz")


def test_folder_spec_rejects_a_file(tmp_path):
    (tmp_path / "a.off").write_text(TRIANGLES_OFF)
    with pytest.raises(ConfigError, match="folder of meshes"):
        open_dataset(str(tmp_path / "a.off"))


@pytest.mark.shared_data
def test_faust_folder_loads_and_renders_with_labels(shared_data_dir):
    ds = open_dataset(str(shared_data_dir / "faust_smpl"))
    ids = ds.shape_ids()
    assert len(ids) == 20 and ids[0] == "faust_080"
    assert len(ds.label_names) == 24
    cams = CameraScheme(rings=1, segments=4, resolution=96).cameras(seed=0)
    for shape_id in ids[:2]:
        mesh = ds.load(shape_id).normalized()
        assert mesh.has_labels and (mesh.face_labels >= 0).all()
        assert len(mesh.face_labels) == mesh.num_faces
        renderer = Renderer(mesh)
        seen = set()
        for i in range(len(cams)):
            view = renderer.render_view(cams, i)
            assert view.coverage > 0.02
            seen |= set(np.unique(view.face_labels(mesh.face_labels)[view.mask]).tolist())
        assert len(seen) >= 15  # most of the 24 body parts are visible from 6 views
