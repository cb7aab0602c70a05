"""Atomic file writes: a file is either absent, its old version, or complete.

Every output mvdecor writes (stored renders, checkpoints, overlaps, logs,
pictures, exported meshes) goes through :func:`atomic_path`, so an interrupted
run never leaves a half-written file under a final name. Temporaries are named
``.<name>.tmp-<pid>`` beside the target, so stale ones are easy to find.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """The temporary sibling ``.<name>.tmp-<pid>`` used while ``path`` is written."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success flush it to disk and rename it to ``path``.

    The parent folder is created. If the block raises, the temporary is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
