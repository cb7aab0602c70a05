"""The coseg dataset adapter: COSEG and PSB folders, integer and named label files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mvdecor.data.coseg import CosegDataset, FaceLabelWarning, MissingLabelsWarning, read_named_face_labels
from mvdecor.data.datasets import DATASETS, open_dataset
from mvdecor.errors import ConfigError, LabelError

# A unit box: 8 vertices, 12 triangles (two per side).
BOX_VERTICES = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float
)
BOX_FACES = np.array(
    [
        [0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
        [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],
    ]
)  # fmt: skip


def boxes_off(n_boxes: int) -> str:
    """An OFF file of ``n_boxes`` unit boxes side by side (12 faces each)."""
    vertices = np.concatenate([BOX_VERTICES + np.array([2.0 * i, 0.0, 0.0]) for i in range(n_boxes)])
    faces = np.concatenate([BOX_FACES + 8 * i for i in range(n_boxes)])
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(f"{c:g}" for c in v) for v in vertices]
    lines += ["3 " + " ".join(str(i) for i in f) for f in faces]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def seg_text(labels: list[int]) -> str:
    return "\n".join(str(v) for v in labels) + "\n"


def named_text(groups: dict[str, list[int]]) -> str:
    """A PSB ``_labels.txt`` file: a name line, then its 1-based face indices."""
    return "".join(f"{name}\n{' '.join(str(i) for i in faces)}\n" for name, faces in groups.items())


@pytest.fixture
def coseg_tree(tmp_path: Path) -> Path:
    """Two COSEG categories (``shapes/`` + ``gt/``) and one PSB category (named labels)."""
    root = tmp_path / "coseg"
    # Vases: 1-based labels (COSEG), no names file -> part_0, part_1.
    write(root / "Vases" / "shapes" / "1.off", boxes_off(2))
    write(root / "Vases" / "gt" / "1.seg", seg_text([1] * 12 + [2] * 12))
    write(root / "Vases" / "shapes" / "2.off", boxes_off(2))
    write(root / "Vases" / "gt" / "2.seg", seg_text([2] * 12 + [1] * 12))
    # Chairs: 1-based labels, a names file with one name per label 1..3.
    write(root / "Chairs" / "shapes" / "7.off", boxes_off(3))
    write(root / "Chairs" / "gt" / "7.seg", seg_text([3] * 12 + [1] * 12 + [2] * 12))
    write(root / "Chairs" / "label_names.txt", "back\nseat\nleg\n")
    # Teddy (PSB): meshes and named label files side by side.
    write(root / "Teddy" / "1.off", boxes_off(2))
    write(
        root / "Teddy" / "1_labels.txt",
        named_text({"head": list(range(1, 13)), "torso": list(range(13, 25))}),
    )
    write(root / "Teddy" / "2.off", boxes_off(3))
    write(
        root / "Teddy" / "2.labels",
        named_text({"ear": list(range(25, 37)), "head": list(range(1, 13)), "torso": list(range(13, 25))}),
    )
    return root


def test_registered():
    assert "coseg" in DATASETS


def test_categories_ids_labels_and_vocabularies(coseg_tree):
    ds = open_dataset(f"coseg:root={coseg_tree}")
    assert isinstance(ds, CosegDataset)
    assert ds.shape_ids() == ["Chairs_7", "Teddy_1", "Teddy_2", "Vases_1", "Vases_2"]
    assert ds.categories() == {
        "Chairs": ["Chairs_7"],
        "Teddy": ["Teddy_1", "Teddy_2"],
        "Vases": ["Vases_1", "Vases_2"],
    }
    assert ds.category_of("Teddy_2") == "Teddy"
    assert ds.label_names_of("Vases") == ("part_0", "part_1")  # 1-based shifted to 0-based
    assert ds.label_names_of("Chairs") == ("back", "seat", "leg")
    assert ds.label_names_of("Teddy") == ("ear", "head", "torso")  # sorted union
    assert ds.label_names == ("back", "seat", "leg")  # the first category's

    expected = {
        "Vases_1": [0] * 12 + [1] * 12,
        "Vases_2": [1] * 12 + [0] * 12,
        "Chairs_7": [2] * 12 + [0] * 12 + [1] * 12,
        "Teddy_1": [1] * 12 + [2] * 12,
        "Teddy_2": [1] * 12 + [2] * 12 + [0] * 12,
    }
    for shape_id, labels in expected.items():
        mesh = ds.load(shape_id)
        assert mesh.name == shape_id
        assert mesh.face_labels.tolist() == labels
        assert mesh.label_names == ds.label_names_of(ds.category_of(shape_id))
    assert open_dataset(ds.spec).shape_ids() == ds.shape_ids()


def test_flat_layouts_and_bare_path_spec(tmp_path):
    beside = tmp_path / "psb"
    write(beside / "123.off", boxes_off(1))
    write(beside / "123.seg", seg_text([0] * 6 + [1] * 6))  # already 0-based: kept
    ds = open_dataset(f"coseg:{beside}")
    assert ds.shape_ids() == ["123"]
    assert ds.categories() == {"psb": ["123"]}
    assert ds.label_names_of("psb") == ("part_0", "part_1")
    assert ds.load("123").face_labels.tolist() == [0] * 6 + [1] * 6

    coseg = tmp_path / "Tele-aliens"
    write(coseg / "shapes" / "5.off", boxes_off(1))
    write(coseg / "gt" / "5.seg", seg_text([1] * 4 + [3] * 8))
    ds = CosegDataset(coseg)
    assert ds.shape_ids() == ["5"] and ds.category_of("5") == "Tele-aliens"
    assert ds.label_names == ("part_0", "part_1", "part_2")
    assert ds.load("5").face_labels.tolist() == [0] * 4 + [2] * 8


def test_names_file_decides_the_shift(tmp_path):
    root = tmp_path / "set"
    write(root / "shapes" / "a.off", boxes_off(1))
    write(root / "gt" / "a.seg", seg_text([1] * 6 + [2] * 6))
    write(root / "labels.json", json.dumps(["unused", "top", "bottom"]))  # max + 1 names: 0-based
    ds = CosegDataset(root)
    assert ds.label_names == ("unused", "top", "bottom")
    assert ds.load("a").face_labels.tolist() == [1] * 6 + [2] * 6
    write(root / "labels.json", json.dumps(["one"]))
    with pytest.raises(LabelError, match=r"labels\.json"):
        CosegDataset(root)


def test_unlisted_faces_get_minus_one_with_a_warning(tmp_path):
    root = tmp_path / "psb"
    write(root / "1.off", boxes_off(1))
    write(root / "1_labels.txt", named_text({"top": [1, 2, 3], "bottom": [], "side": [4, 5, 6, 7, 8, 9, 10]}))
    ds = CosegDataset(root)
    assert ds.label_names == ("bottom", "side", "top")
    with pytest.warns(FaceLabelWarning, match=r"1_labels.txt: 2 of 12 faces"):
        labels = ds.load("1").face_labels.tolist()
    assert labels == [2] * 3 + [1] * 7 + [-1] * 2


def test_unlabelled_meshes_are_kept_with_one_warning(tmp_path):
    root = tmp_path / "set"
    write(root / "a.off", boxes_off(1))
    write(root / "a.seg", seg_text([0] * 12))
    write(root / "b.off", boxes_off(1))
    with pytest.warns(MissingLabelsWarning, match=r"1 meshes have no label file.*\(b\)"):
        ds = CosegDataset(root)
    assert ds.unlabelled == ["b"]
    assert not ds.load("b").has_labels


def test_bad_seg_count_names_the_file(tmp_path):
    root = tmp_path / "set"
    write(root / "shapes" / "a.off", boxes_off(1))
    bad = write(root / "gt" / "a.seg", seg_text([1] * 11))
    ds = CosegDataset(root)
    with pytest.raises(LabelError, match="11 labels for 12 faces") as info:
        ds.load("a")
    assert info.value.path == str(bad)


@pytest.mark.parametrize("index", [0, 13])
def test_named_index_out_of_range_names_the_file(tmp_path, index):
    root = tmp_path / "psb"
    write(root / "1.off", boxes_off(1))
    bad = write(root / "1_labels.txt", named_text({"a": list(range(1, 12)), "b": [index]}))
    ds = CosegDataset(root)
    with pytest.raises(LabelError, match=rf"face index {index} out of range 1\.\.12") as info:
        ds.load("1")
    assert info.value.path == str(bad)


def test_bad_files_and_specs(tmp_path):
    root = tmp_path / "psb"
    bad = write(root / "1_labels.txt", "1 2 3\nname\n")
    with pytest.raises(LabelError, match="before any label name"):
        read_named_face_labels(bad)
    write(root / "1.off", boxes_off(1))
    write(root / "2.off", boxes_off(1))
    write(root / "2.seg", seg_text([0] * 12))
    write(root / "1_labels.txt", named_text({"a": list(range(1, 13))}))
    with pytest.raises(ConfigError, match="mixes integer"):
        CosegDataset(root)
    with pytest.raises(ConfigError, match="no meshes"):
        CosegDataset(write(tmp_path / "empty" / "notes.md", "x").parent)
    with pytest.raises(ConfigError, match="unknown coseg dataset options"):
        open_dataset(f"coseg:root={root},colour=red")
    with pytest.raises(ConfigError, match="does not exist"):
        open_dataset(f"coseg:root={tmp_path / 'nowhere'}")


def test_category_filter(coseg_tree):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_dataset(f"coseg:root={coseg_tree},categories=Teddy")
    assert ds.shape_ids() == ["Teddy_1", "Teddy_2"]
    assert ds.label_names == ("ear", "head", "torso")
    with pytest.raises(ConfigError, match="no categories"):
        open_dataset(f"coseg:root={coseg_tree},categories=Sofa")
