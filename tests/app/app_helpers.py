"""Tiny meshes and helpers for the labelling app's tests (built in tmp_path, no network)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def box(size=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """A closed box: 8 vertices, 12 triangles (two per side, outward winding)."""
    sx, sy, sz = size
    v = np.array(
        [[x * sx, y * sy, z * sz] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64
    ) + np.asarray(offset)
    f = np.array(
        [
            [0, 1, 3], [0, 3, 2],  # x = 0
            [4, 6, 7], [4, 7, 5],  # x = 1
            [0, 4, 5], [0, 5, 1],  # y = 0
            [2, 3, 7], [2, 7, 6],  # y = 1
            [0, 2, 6], [0, 6, 4],  # z = 0
            [1, 5, 7], [1, 7, 3],  # z = 1
        ],
        dtype=np.int64,
    )  # fmt: skip
    return v, f


def two_boxes(offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two boxes stacked along y (24 faces): a natural two-part shape."""
    v1, f1 = box((1.0, 1.0, 1.0))
    v2, f2 = box((1.0, 1.0 + offset, 1.0), (0.0, 1.5, 0.0))
    return np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)])


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(f"{c:.6f}" for c in row) for row in vertices]
    lines += ["3 " + " ".join(str(i) for i in row) for row in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


#: Labels of :func:`two_boxes`: the lower box "seat" (0), the upper "back" (1).
TWO_BOX_LABELS = np.array([0] * 12 + [1] * 12)


def wait_for_job(client, timeout: float = 30.0) -> dict:
    """Poll the job until it is no longer running; its last status."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get("/api/jobs/current").json()["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish in time")
