"""Atomic writes and the clean-up of temporaries left by killed writers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mvdecor.fileio import atomic_path, remove_stale_temporaries, temporary_name


def test_atomic_path_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "last.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and not temporary_name(target).exists()
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # that process has exited
    stale = tmp_path / f".last.pt.tmp-{dead_pid}"
    stale.write_bytes(b"x" * 10)
    live = tmp_path / f".best.pt.tmp-{os.getppid()}"  # our parent is alive
    live.write_bytes(b"y")
    ours = temporary_name(tmp_path / "step.pt")  # this process: not writing it now
    ours.write_bytes(b"z")
    kept = tmp_path / "last.pt"
    kept.write_bytes(b"final")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale, ours])
    assert live.exists() and kept.exists() and not stale.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []
