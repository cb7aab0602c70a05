"""Train/test splits per category, written to a file so runs are comparable.

A split file is JSON::

    {"dataset": SPEC, "seed": 0, "test_fraction": 0.3, "source": "seeded" | "official",
     "categories": {CATEGORY: {"train": [ids], "test": [ids]}}}

A plain ``{"train": [...], "test": [...]}`` (one category) is read too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mvdecor.data.datasets import ShapeDataset
from mvdecor.errors import ConfigError
from mvdecor.fileio import atomic_path

Split = dict[str, dict[str, list[str]]]


def make_split(
    dataset: ShapeDataset,
    test_fraction: float = 0.3,
    seed: int = 0,
    categories: list[str] | tuple[str, ...] | None = None,
    use_official: bool = True,
) -> Split:
    """A ``{category: {"train": ids, "test": ids}}`` split of ``dataset``.

    Parameters
    ----------
    dataset : the dataset; its :meth:`~ShapeDataset.official_split` is used when
        it has one and ``use_official`` is true
    test_fraction : share of each category's shapes held out for testing
        (at least one test shape and one training shape per category)
    seed : category ``c`` is shuffled with ``default_rng([seed, crc32(c)])``, so
        adding a category does not change the others' splits
    categories : restrict to these categories (default: all)
    """
    import zlib

    groups = dataset.categories()
    if categories:
        unknown = [c for c in categories if c not in groups]
        if unknown:
            raise ConfigError(
                None, f"categories {unknown} not in {dataset.spec} (known: {', '.join(groups)})"
            )
        groups = {c: groups[c] for c in categories}
    official = dataset.official_split() if use_official else None
    split: Split = {}
    for category, ids in groups.items():
        if official and category in official:
            split[category] = {
                "train": list(official[category]["train"]),
                "test": list(official[category]["test"]),
            }
            continue
        if len(ids) < 2:
            raise ConfigError(
                None, f"category {category!r} has {len(ids)} shape(s); a split needs at least 2"
            )
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        order = rng.permutation(len(ids))
        n_test = min(max(1, round(test_fraction * len(ids))), len(ids) - 1)
        split[category] = {
            "train": sorted(ids[i] for i in order[n_test:]),
            "test": sorted(ids[i] for i in order[:n_test]),
        }
    return split


def save_split(
    split: Split,
    path: str | Path,
    dataset: str = "",
    seed: int | None = None,
    test_fraction: float | None = None,
) -> Path:
    """Write ``split`` as JSON (atomically)."""
    path = Path(path)
    record = {"dataset": dataset, "seed": seed, "test_fraction": test_fraction, "categories": split}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_split(path: str | Path, dataset: ShapeDataset | None = None) -> Split:
    """Read a split file; with ``dataset``, check every id exists and categories match.

    A flat ``{"train": [...], "test": [...]}`` becomes one category, named after
    the dataset's category of its first shape (or ``all``).
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(path, f"unreadable split file ({exc})") from None
    if not isinstance(record, dict):
        raise ConfigError(path, "a split file must hold a JSON object")
    if "categories" in record:
        raw = record["categories"]
    elif "train" in record:
        first = (record.get("train") or record.get("test") or [None])[0]
        name = dataset.category_of(first) if dataset is not None and first is not None else "all"
        raw = {name: {"train": record.get("train", []), "test": record.get("test", [])}}
    else:
        raise ConfigError(path, 'a split file needs "categories" or "train"/"test" lists')
    split: Split = {}
    try:
        for category, entry in raw.items():
            split[str(category)] = {
                "train": [str(s) for s in entry["train"]],
                "test": [str(s) for s in entry["test"]],
            }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(path, f"each category needs train and test lists ({exc})") from None
    if dataset is not None:
        known = set(dataset.shape_ids())
        for category, entry in split.items():
            unknown = [s for s in entry["train"] + entry["test"] if s not in known]
            if unknown:
                raise ConfigError(
                    path, f"category {category!r} names shapes not in {dataset.spec}: {unknown[:5]}"
                )
            both = set(entry["train"]) & set(entry["test"])
            if both:
                raise ConfigError(
                    path, f"category {category!r} has shapes in both train and test: {sorted(both)[:5]}"
                )
    return split
