"""PartNet and PartNet-Mobility folders: hierarchy labels, missing pieces, splits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mvdecor.data.datasets import DATASETS, open_dataset
from mvdecor.data.partnet import MissingPiecesWarning, PartNetDataset, PartNetMobilityDataset
from mvdecor.data.splits import make_split
from mvdecor.errors import ConfigError


def _quad_obj(x: float, triangles: int = 2) -> str:
    """A unit square at height ``x`` as 2 triangles (or one quad when ``triangles == 1``)."""
    verts = f"v 0 0 {x}\nv 1 0 {x}\nv 1 1 {x}\nv 0 1 {x}\n"
    return verts + ("f 1 2 3 4\n" if triangles == 1 else "f 1 2 3\nf 1 3 4\n")


# The hierarchy of a small "laptop": an "other" branch whose leaf has another name,
# a two-level base, and a screen leaf made of two pieces.
HIERARCHY = [
    {
        "id": 0,
        "name": "laptop",
        "children": [
            {
                "id": 1,
                "name": "screen_side",
                "children": [{"id": 2, "name": "screen", "objs": ["new-0", "new-1"]}],
            },
            {
                "id": 3,
                "name": "base_side",
                "children": [
                    {"id": 4, "name": "keyboard", "objs": ["new-2"]},
                    {
                        "id": 5,
                        "name": "other",
                        "children": [{"id": 6, "name": "other_leaf", "objs": ["original-1"]}],
                    },
                ],
            },
        ],
    }
]


def _write_object(
    folder: Path, pieces_folder: str, hierarchy: list, pieces: list[str], category: str
) -> None:
    (folder / pieces_folder).mkdir(parents=True)
    for i, piece in enumerate(pieces):
        (folder / pieces_folder / f"{piece}.obj").write_text(_quad_obj(float(i)))
    (folder / "result.json").write_text(json.dumps(hierarchy))
    (folder / "meta.json").write_text(json.dumps({"model_cat": category, "anno_id": folder.name}))


@pytest.fixture()
def mobility_root(tmp_path: Path) -> Path:
    root = tmp_path / "pm"
    all_pieces = ["new-0", "new-1", "new-2", "original-1", "original-9"]  # original-9: superseded
    _write_object(root / "Laptop" / "100", "textured_objs", HIERARCHY, all_pieces, "Laptop")
    _write_object(root / "Laptop" / "101", "textured_objs", HIERARCHY, all_pieces[:4], "Laptop")
    _write_object(
        root / "Laptop" / "102", "textured_objs", HIERARCHY, ["new-0", "new-2"], "Laptop"
    )  # 2 missing
    bucket = [{"id": 0, "name": "bucket", "children": [{"id": 1, "name": "handle", "objs": ["a"]}]}]
    _write_object(root / "Bucket" / "7", "textured_objs", bucket, ["a"], "Bucket")
    return root


def test_registered_and_opened_by_spec(mobility_root):
    assert {"partnet", "partnet_mobility"} <= set(DATASETS)
    with pytest.warns(MissingPiecesWarning, match="102"):
        ds = open_dataset(f"partnet_mobility:root={mobility_root}")
    assert isinstance(ds, PartNetMobilityDataset)
    assert ds.shape_ids() == ["Bucket_7", "Laptop_100", "Laptop_101"]
    assert ds.categories() == {"Bucket": ["Bucket_7"], "Laptop": ["Laptop_100", "Laptop_101"]}
    assert [s for s, _ in ds.skipped] == ["Laptop_102"] and "new-1.obj" in ds.skipped[0][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingPiecesWarning)
        assert open_dataset(ds.spec).spec == ds.spec


def test_leaf_labels_follow_the_hierarchy(mobility_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingPiecesWarning)
        ds = PartNetMobilityDataset(mobility_root)
    assert ds.label_names_of("Laptop") == ("other", "keyboard", "screen")
    assert ds.label_names_of("Bucket") == ("other", "handle")
    mesh = ds.load("Laptop_100")
    # Pieces in hierarchy order, 2 triangles each; the superseded piece is left out.
    assert mesh.num_faces == 8 and mesh.label_names == ("other", "keyboard", "screen")
    np.testing.assert_array_equal(mesh.face_labels, [2, 2, 2, 2, 1, 1, 0, 0])
    assert mesh.part_names == ("new-0", "new-1", "new-2", "original-1")
    assert ds.category_of("Laptop_100") == "Laptop" and mesh.name == "Laptop_100"


def test_level_one_uses_the_parents(mobility_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingPiecesWarning)
        ds = open_dataset(f"partnet_mobility:root={mobility_root},level=1,categories=Laptop")
    assert ds.shape_ids() == ["Laptop_100", "Laptop_101"]
    # "other" stays other at every depth.
    assert ds.label_names_of("Laptop") == ("other", "base_side", "screen_side")
    np.testing.assert_array_equal(ds.load("Laptop_101").face_labels, [2, 2, 2, 2, 1, 1, 0, 0])


def test_missing_pieces_can_be_dropped(mobility_root):
    with pytest.warns(MissingPiecesWarning, match="kept without them"):
        ds = open_dataset(f"partnet_mobility:root={mobility_root},missing=drop")
    assert "Laptop_102" in ds.shape_ids() and not ds.skipped
    mesh = ds.load("Laptop_102")
    np.testing.assert_array_equal(mesh.face_labels, [2, 2, 1, 1])


def test_bad_options_and_folders(tmp_path, mobility_root):
    with pytest.raises(ConfigError, match="does not exist"):
        PartNetMobilityDataset(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="root=PATH"):
        open_dataset("partnet_mobility:categories=Laptop")
    with pytest.raises(ConfigError, match="missing="):
        PartNetMobilityDataset(mobility_root, missing="ignore")
    with pytest.raises(ConfigError, match="Chair"), warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingPiecesWarning)
        PartNetMobilityDataset(mobility_root, categories=("Chair",))
    broken = tmp_path / "broken" / "Laptop" / "1"
    broken.mkdir(parents=True)
    (broken / "result.json").write_text("{not json")
    with pytest.raises(Exception, match=r"result\.json"):
        PartNetMobilityDataset(tmp_path / "broken")


def test_partnet_layout_and_official_split(tmp_path):
    root = tmp_path / "data_v0"
    for anno, category in (("11", "Chair"), ("12", "Chair"), ("13", "Chair"), ("20", "Lamp"), ("21", "Lamp")):
        _write_object(root / anno, "objs", HIERARCHY, ["new-0", "new-1", "new-2", "original-1"], category)
    splits = tmp_path / "stats" / "train_val_test_split"
    splits.mkdir(parents=True)
    (splits / "Chair.train.json").write_text(json.dumps([{"anno_id": "11"}]))
    (splits / "Chair.val.json").write_text(json.dumps([{"anno_id": "12"}]))
    (splits / "Chair.test.json").write_text(json.dumps([{"anno_id": "13"}, {"anno_id": "99"}]))
    ds = open_dataset(f"partnet:root={root}")
    assert isinstance(ds, PartNetDataset) and ds.categories()["Lamp"] == ["Lamp_20", "Lamp_21"]
    assert ds.official_split() == {"Chair": {"train": ["Chair_11", "Chair_12"], "test": ["Chair_13"]}}
    split = make_split(ds, test_fraction=0.5, seed=0)
    assert split["Chair"] == {"train": ["Chair_11", "Chair_12"], "test": ["Chair_13"]}
    assert sorted(split["Lamp"]["train"] + split["Lamp"]["test"]) == ["Lamp_20", "Lamp_21"]
    assert ds.load("Chair_11").num_faces == 8


def test_partnet_mobility_in_place(shared_data_dir):
    root = shared_data_dir / "partnet_mobility"
    with pytest.warns(MissingPiecesWarning) as caught:
        ds = open_dataset(f"partnet_mobility:root={root}")
    expected_skips = {"Microwave_7221", "Microwave_7320", "Oven_7138", "Faucet_1011", "Laptop_10289"}
    assert {s for s, _ in ds.skipped} == expected_skips
    assert len(caught) == 5 and all("skipped" in str(w.message) for w in caught)
    assert len(ds) == 137 - 5
    laptop = ds.label_names_of("Laptop")
    assert {"screen", "keyboard", "touchpad_surface"} <= set(laptop) and laptop[0] == "other"
    # Every face of an object of each category is labelled, from the category's vocabulary.
    for category, ids in ds.categories().items():
        mesh = ds.load(ids[0])
        assert mesh.face_labels.min() >= 0 and mesh.label_names == ds.label_names_of(category)
        assert len(np.unique(mesh.face_labels)) >= 2
