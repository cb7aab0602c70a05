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

import numpy as np


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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries in ``folder`` left by killed writers (their process is gone).

    A kill during :func:`atomic_path` cannot run its cleanup, so a 200 MB
    ``.last.pt.tmp-<pid>`` would stay forever; those of live processes (another
    rank still writing) are kept. Returns the removed paths.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(".*.tmp-*"):
        pid_text = tmp.name.rsplit("-", 1)[-1]
        if not pid_text.isdigit() or (int(pid_text) != os.getpid() and _alive(int(pid_text))):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 image ``(H, W, 3)`` or ``(H, W)`` as PNG atomically (temporary file, then rename)."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return path
