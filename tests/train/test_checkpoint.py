"""Checkpoint files: atomic writes, snapshot retention, trimming finished runs."""

from __future__ import annotations

import pytest
import torch

from mvdecor.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    prune_checkpoints,
    prune_snapshots,
    save_checkpoint,
    snapshot_path,
)


def test_finished_runs_keep_the_checkpoints_asked_for(tmp_path):
    full = {"model": {"w": torch.zeros(2)}, "optimizer": {"state": {}}, "scheduler": {}, "rng": [1],
            "step": 5, "config": {}, "channel_stats": {}, "kind": "segmentation",
            "label_names": ["a"]}  # fmt: skip
    for keep in ("all", "last", "weights"):
        folder = tmp_path / keep / "checkpoints"
        for name in ("last.pt", "best.pt", "step_0000005.pt"):
            save_checkpoint(folder / name, full)
        prune_checkpoints(folder, keep)
        kept = sorted(p.name for p in folder.iterdir())
        assert kept == (["best.pt", "last.pt", "step_0000005.pt"] if keep == "all" else ["last.pt"])
        entries = set(load_checkpoint(folder / "last.pt"))
        dropped = {"optimizer", "scheduler", "rng"}
        assert entries.isdisjoint(dropped) if keep == "weights" else dropped <= entries
        # Trimming a trimmed folder again (a re-run reusing the stage) leaves it as it is.
        before = (folder / "last.pt").stat().st_mtime_ns
        prune_checkpoints(folder, keep)
        assert (folder / "last.pt").stat().st_mtime_ns == before


def test_prune_checkpoints_refuses_unknown_modes_and_unfinished_runs(tmp_path):
    with pytest.raises(ValueError, match="keep must be one of"):
        prune_checkpoints(tmp_path, "some")
    save_checkpoint(tmp_path / "step_0000005.pt", {"model": {}})
    with pytest.raises(CheckpointError, match=r"no last\.pt"):
        prune_checkpoints(tmp_path, "last")
    assert (tmp_path / "step_0000005.pt").is_file()  # nothing removed from an unfinished run


@pytest.mark.parametrize(
    ("keep", "left"), [(-1, [5, 10, 95, 100]), (0, []), (2, [95, 100]), (9, [5, 10, 95, 100])]
)
def test_prune_snapshots_keeps_the_latest_steps(tmp_path, keep, left):
    for step in (100, 5, 95, 10):  # written out of order; the step, not the mtime, decides
        save_checkpoint(snapshot_path(tmp_path, step), {"model": {"w": torch.zeros(1)}})
    for name in ("last.pt", "best.pt"):
        save_checkpoint(tmp_path / name, {"model": {}})
    deleted = prune_snapshots(tmp_path, keep)
    remaining = sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("step_*.pt"))
    assert remaining == left
    assert len(deleted) == 4 - len(left) and not any(p.exists() for p in deleted)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert load_checkpoint(tmp_path / "last.pt")["model"] == {}
