"""Which pairs of views of one shape overlap enough to train on.

MvDeCor trains on a pair of views only when more than 15% of the smaller
view's foreground is matched (:func:`~mvdecor.correspond.matching.overlap_ratio`).
:func:`overlap_matrix` computes that ratio for every pair of a shape's views,
:class:`PairSampler` draws among the pairs above the threshold, and
:func:`load_or_compute_overlaps` keeps the matrix on disk so that it is
computed once per shape.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.correspond.matching import DEFAULT_RADIUS, PreparedView, reproject
from mvdecor.fileio import atomic_path
from mvdecor.render.views import RenderedView

#: The authors' overlap threshold: a pair is used when more than this share of
#: the smaller view's foreground is matched.
DEFAULT_THRESHOLD = 0.15


def overlap_matrix(
    views: Sequence[RenderedView], radius: float = DEFAULT_RADIUS, subsample: int = 1
) -> np.ndarray:
    """Overlap ratio of every pair of views.

    Exact (``subsample=1``): each unordered pair ``i < j`` is matched once, as
    ``match_views(views[i], views[j], radius)`` would, and the ratio ``matches
    / min(foreground_i, foreground_j)`` fills both ``[i, j]`` and ``[j, i]``
    (the one-to-one count is the number of distinct pixels of ``j`` hit from
    ``i``). Matching the other way gives a slightly different count, as the
    one-to-one step then resolves collisions on the other side: on synthetic
    shapes at 256 x 256 and radius ``5e-3``, 0.005 of the ratio on average,
    0.05 at most. About 0.5-1 ms a pair at 256 x 256 on one core: 2-3.5 s for
    the authors' 86 views (3,655 pairs); compute it once per shape
    (:func:`load_or_compute_overlaps`).

    Estimated (``subsample=s > 1``): the matrix of the views *decimated* by
    ``s``, i.e. as if rendered at ``1/s`` of their resolution, keeping one pixel
    in ``s x s`` (``(s r + s // 2, s c + s // 2)``) with the radius scaled by
    ``s`` so that it spans as many (coarse) pixels. Cost about ``1 / s**2`` of
    the exact matrix (plus a fixed per-pair overhead): 0.6 s (s = 2), 0.35 s
    (3), 0.3 s (4) for 86 views at 256 x 256. Its error is how much the overlap
    depends on the resolution. Measured against the exact matrix on the five
    synthetic categories, 86 views at 256 x 256, radius ``5e-3`` or 1.5 pixels:
    mean absolute error 0.001-0.003 (s = 2), 0.002-0.006 (s = 3), 0.003-0.009
    (s = 4), at most 0.06-0.08 for a single pair; 0.3% (s = 2) to 1.4% (s = 4)
    of the pairs change side of the 0.15 threshold (those close to it). At 96
    x 96 (coarse grids of 48 or 32 pixels) the error is about twice as large
    (``tests/correspond/test_pairs.py``).

    Parameters
    ----------
    views : sequence of RenderedView
        ``N`` views of one shape.
    radius : float
        Matching radius at the views' resolution (see
        :func:`~mvdecor.correspond.matching.auto_radius`).
    subsample : int
        1 for the exact matrix; ``s > 1`` to estimate it from every ``s``-th
        row and column (one pixel in ``s**2``).

    Returns
    -------
    (N, N) float32
        Symmetric, in ``[0, 1]``, with a zero diagonal.
    """
    if subsample < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    prepared = [PreparedView(view, subsample) for view in views]
    radius = radius * subsample
    n = len(prepared)
    counts = np.array([len(p.data[0]) for p in prepared], np.int64)  # computes every view's data
    result = np.zeros((n, n), np.float32)
    for j in range(1, n):
        b = prepared[j]
        if counts[j] == 0:
            continue
        hit = np.zeros(b.shape[0] * b.shape[1], bool)
        b.flat_data  # noqa: B018 - cache the gather source while j is view B
        for i in range(j):
            smaller = min(counts[i], counts[j])
            if smaller == 0:
                continue
            _, index_b, _ = reproject(prepared[i].data, b, radius)
            hit[:] = False
            hit[index_b] = True
            result[i, j] = result[j, i] = np.count_nonzero(hit) / smaller
        b.release_flat_data()
    return result


class PairSampler:
    """Uniform draws among the ordered pairs of views that overlap enough.

    Parameters
    ----------
    overlap : (N, N) float array
        Overlap ratios, e.g. from :func:`overlap_matrix`; ``overlap[i, j]``
        decides the ordered pair ``(i, j)``. The diagonal is ignored.
    threshold : float
        A pair is valid when its overlap is strictly above this (MvDeCor: 0.15).

    Raises
    ------
    ValueError
        If the matrix is not square, or no pair passes the threshold.

    Attributes
    ----------
    overlap : (N, N) float32
    threshold : float
    valid_pairs : (K, 2) int64
        The valid ordered pairs ``(i, j)``, ``i != j``, in row-major order.
    """

    def __init__(self, overlap: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> None:
        overlap = np.array(overlap, np.float32, copy=True)
        if overlap.ndim != 2 or overlap.shape[0] != overlap.shape[1]:
            raise ValueError(f"the overlap matrix must be square, got shape {overlap.shape}")
        overlap.setflags(write=False)
        self.overlap = overlap
        self.threshold = float(threshold)
        valid = overlap > self.threshold
        np.fill_diagonal(valid, False)
        pairs = np.argwhere(valid).astype(np.int64)
        if len(pairs) == 0:
            off = overlap[~np.eye(len(overlap), dtype=bool)]
            best = float(off.max()) if off.size else float("nan")
            raise ValueError(
                f"no pair of the {len(overlap)} views has an overlap above the threshold "
                f"{self.threshold:g} (the largest is {best:.4f})"
            )
        pairs.setflags(write=False)
        self.valid_pairs = pairs

    def __len__(self) -> int:
        return len(self.valid_pairs)

    def __repr__(self) -> str:
        return (
            f"PairSampler({len(self)} valid pairs of {len(self.overlap)} views, threshold={self.threshold:g})"
        )

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        """One valid ordered pair ``(i, j)``, uniformly."""
        i, j = self.valid_pairs[rng.integers(len(self.valid_pairs))]
        return int(i), int(j)

    def sample_many(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 2)`` int64: ``n`` valid ordered pairs drawn uniformly with replacement."""
        return self.valid_pairs[rng.integers(len(self.valid_pairs), size=n)]

    @classmethod
    def from_views(
        cls,
        views: Sequence[RenderedView],
        radius: float = DEFAULT_RADIUS,
        threshold: float = DEFAULT_THRESHOLD,
        subsample: int = 1,
    ) -> PairSampler:
        """Compute :func:`overlap_matrix` of ``views`` and build a sampler on it."""
        return cls(overlap_matrix(views, radius, subsample), threshold)


# --------------------------------------------------------------------- cache
def save_overlaps(path: str | Path, matrix: np.ndarray, meta: Mapping[str, Any] | None = None) -> None:
    """Write an overlap matrix and its metadata to an ``.npz`` file, atomically.

    The file is written under a temporary name and renamed into place, so a
    reader never sees a partial file.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file (folders are created).
    matrix : (N, N) float array
    meta : mapping, optional
        JSON-serialisable facts about how the matrix was computed (radius,
        subsample, shape id, mesh fingerprint...).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            overlap=np.asarray(matrix, np.float32),
            meta=np.array(json.dumps(dict(meta or {}), sort_keys=True)),
        )


def load_overlaps(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read what :func:`save_overlaps` wrote.

    Returns
    -------
    matrix : (N, N) float32
    meta : dict
    """
    with np.load(Path(path), allow_pickle=False) as data:
        return data["overlap"], json.loads(str(data["meta"]))


def load_or_compute_overlaps(
    path: str | Path,
    views: Sequence[RenderedView] | Callable[[], Sequence[RenderedView]],
    radius: float = DEFAULT_RADIUS,
    subsample: int = 1,
    meta: Mapping[str, Any] | None = None,
    *,
    num_views: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The overlap matrix of ``views``, from ``path`` if it holds one computed the same way.

    The cached matrix is reused when its metadata matches ``radius``,
    ``subsample``, the number of views, their image size and every entry of
    ``meta`` (pass e.g. the shape id and mesh fingerprint there); otherwise the
    matrix is computed and ``path`` (re)written.

    ``views`` may be a function that renders them: it is then called only when
    the cache misses, and ``num_views`` and ``image_size`` (H, W) must be given.

    Returns
    -------
    (N, N) float32
    """
    if callable(views):
        if num_views is None or image_size is None:
            raise ValueError("lazily rendered views need num_views and image_size")
        size: list[int] | None = [int(image_size[0]), int(image_size[1])]
    else:
        num_views = len(views)
        size = [views[0].height, views[0].width] if len(views) else None
    expected = {
        **dict(meta or {}),
        "radius": float(radius),
        "subsample": int(subsample),
        "num_views": num_views,
        "image_size": size,
    }
    # Compare through JSON, as stored (tuples become lists).
    expected = json.loads(json.dumps(expected, sort_keys=True))
    path = Path(path)
    if path.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            matrix, stored = load_overlaps(path)
            if stored == expected and matrix.shape == (num_views, num_views):
                return matrix
    matrix = overlap_matrix(views() if callable(views) else views, radius, subsample)
    save_overlaps(path, matrix, expected)
    return matrix
