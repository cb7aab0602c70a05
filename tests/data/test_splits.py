"""Seeded per-category splits, written to a file and read back."""

from __future__ import annotations

import json

import pytest

from mvdecor.data.datasets import open_dataset
from mvdecor.data.splits import load_split, make_split, save_split
from mvdecor.errors import ConfigError


def test_split_is_seeded_disjoint_and_per_category():
    ds = open_dataset("synthetic:categories=chair+mug,n=10")
    split = make_split(ds, test_fraction=0.3, seed=4)
    assert split == make_split(ds, test_fraction=0.3, seed=4)
    assert split != make_split(ds, test_fraction=0.3, seed=5)
    for category, entry in split.items():
        assert len(entry["test"]) == 3 and len(entry["train"]) == 7
        assert not set(entry["train"]) & set(entry["test"])
        assert sorted(entry["train"] + entry["test"]) == ds.categories()[category]
    # A category's split does not depend on which other categories are present.
    alone = make_split(open_dataset("synthetic:categories=mug,n=10"), test_fraction=0.3, seed=4)
    assert alone["mug"] == split["mug"]


def test_split_keeps_one_of_each_and_rejects_tiny_categories():
    ds = open_dataset("synthetic:categories=lamp,n=2")
    assert {len(v) for v in make_split(ds, test_fraction=0.9)["lamp"].values()} == {1}
    with pytest.raises(ConfigError, match="at least 2"):
        make_split(open_dataset("synthetic:categories=lamp,n=1"))
    with pytest.raises(ConfigError, match="sofa"):
        make_split(ds, categories=["sofa"])


def test_split_file_roundtrip_and_checks(tmp_path):
    ds = open_dataset("synthetic:categories=chair+mug,n=4")
    split = make_split(ds, seed=1)
    path = save_split(split, tmp_path / "split.json", ds.spec, 1, 0.3)
    assert json.loads(path.read_text())["dataset"] == ds.spec
    assert load_split(path, ds) == split
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"train": ["mug_0000", "mug_0001"], "test": ["mug_0002"]}))
    assert load_split(flat, ds) == {"mug": {"train": ["mug_0000", "mug_0001"], "test": ["mug_0002"]}}
    flat.write_text(json.dumps({"train": ["mug_0000", "sofa_0001"], "test": []}))
    with pytest.raises(ConfigError, match="sofa_0001"):
        load_split(flat, ds)
    flat.write_text(json.dumps({"train": ["mug_0000"], "test": ["mug_0000"]}))
    with pytest.raises(ConfigError, match="both train and test"):
        load_split(flat, ds)
    flat.write_text("[1, 2")
    with pytest.raises(ConfigError, match=r"flat\.json"):
        load_split(flat, ds)
