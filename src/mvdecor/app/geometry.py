"""Face adjacency and dihedral angles for the page's fill tool, cached per mesh.

:func:`fill_graph` gives what the page's fill needs: pairs of faces sharing an
edge (vertices merged by position, so unwelded meshes still connect) and the
angle between their normals. On a 300k-face mesh that takes seconds on a busy
CPU (``benchmarks/app_interactivity.py``), so it is kept per shape and file
state (:class:`FillGraphCache`): reopening a mesh skips the work, and the page
fetches it apart from the geometry, after the first frame.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["FillGraphCache", "fill_graph", "welded_faces"]


def welded_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces over vertices merged by position (to 1e-9 of the mesh's extent)."""
    scale = float(np.abs(vertices).max()) if len(vertices) else 1.0
    keys = np.round(np.asarray(vertices, np.float64) / (scale or 1.0), 9)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    return inverse.reshape(-1)[faces]


def fill_graph(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs (E, 2) int64, angles (E,) float32 degrees)``: faces sharing an edge, and their fold.

    Vertices are merged by position first, then
    :func:`~mvdecor.inference.smoothing.face_adjacency` and
    :func:`~mvdecor.inference.smoothing.dihedral_angles` give the pairs and angles.
    """
    from mvdecor.inference.smoothing import dihedral_angles, face_adjacency

    pairs, _ = face_adjacency(welded_faces(vertices, faces))
    if not len(pairs):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    return pairs, np.degrees(dihedral_angles(vertices, faces, pairs)).astype(np.float32)


class FillGraphCache:
    """:func:`fill_graph` per shape, recomputed only when its mesh file changes.

    Parameters
    ----------
    max_shapes : graphs kept (a 300k-face mesh's takes about 6 MB)
    """

    def __init__(self, max_shapes: int = 8) -> None:
        self._max = max_shapes
        self._items: OrderedDict[str, tuple[tuple, tuple[np.ndarray, np.ndarray]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, shape_id: str, path: Path, vertices: np.ndarray, faces: np.ndarray):
        """The fill graph of ``shape_id`` whose mesh file is ``path`` (its size and time are the key)."""
        stat = Path(path).stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, len(vertices), len(faces))
        with self._lock:
            cached = self._items.pop(shape_id, None)
            if cached is not None and cached[0] == key:
                self._items[shape_id] = cached
                return cached[1]
        graph = fill_graph(vertices, faces)
        with self._lock:
            self._items[shape_id] = (key, graph)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return graph
