"""Fuse per-view class probabilities onto mesh faces by (entropy-weighted) voting.

MvDeCor's network predicts, in each rendered view ``i``, a distribution
``P(i, p)`` over ``C`` classes at every foreground pixel ``p``. The pixel sees
one mesh face (the view's ``face_ids``), so each face collects the
distributions of the pixels that see it, over all views, and takes the class
with the largest total (paper §3.2, docs/design.md section 5):

``l_t = argmax_c  Σ_i W(i) Σ_{p ∈ t} P(i, p)_c``

with the view weight ``W(i) = (1 − mean_{p ∈ F(i)} H(i, p) / log C)^γ``, where
``F(i)`` is the view's foreground and ``H`` the pixel entropy. Dividing by
``log C`` keeps the normalised entropy in ``[0, 1]`` so the weight falls
monotonically from 1 (every pixel certain) to 0 (every pixel uniform). The
authors' code weights raw logits with un-normalised entropy, where a very
uncertain view can get a large weight again; that is deliberately not copied.

:class:`FaceVoter` accumulates the votes one view at a time, so the
probability maps of all views never need to be in memory together; only the
``(F, C)`` float64 vote table is kept. Faces that no view sees take the label of
the nearest seen face (by face centroid distance).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mvdecor.data.mesh import labels_from_nearest_faces

#: The voting methods :class:`FaceVoter` knows.
METHODS = ("entropy", "average", "majority")


# --------------------------------------------------------------------- entropy
def _normalized_entropy_last(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy along the last axis of a float array ``(..., C)``."""
    num_classes = probs.shape[-1]
    out_dtype = np.result_type(probs.dtype, np.float32)
    if num_classes <= 1:
        return np.zeros(probs.shape[:-1], out_dtype)
    p = np.clip(probs, 0.0, None).astype(out_dtype, copy=False)
    tiny = np.finfo(out_dtype).tiny
    # -p log p with 0 log 0 = 0: log(max(p, tiny)) is finite and multiplied by p = 0.
    h = -(p * np.log(np.maximum(p, tiny))).sum(axis=-1)
    h /= np.log(num_classes)
    return np.clip(h, 0.0, 1.0, out=h)


def normalized_entropy(probs: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Entropy of class distributions divided by ``log C``, in ``[0, 1]``.

    Parameters
    ----------
    probs : (C, H, W) or (N, C) float
        Class distributions (non-negative, summing to 1 over the class axis).
        The class axis is axis 0 for a 3-D array (a probability map), the last
        axis for a 2-D array (a list of distributions), unless ``axis`` says
        otherwise. Negative values are treated as 0; ``0 log 0 = 0``.
    axis : int, optional
        The class axis, overriding the default above.

    Returns
    -------
    (H, W) or (N,) float32 (float64 for float64 input)
        0 for a one-hot distribution, 1 for the uniform one. All zeros when
        ``C == 1`` (a single class carries no uncertainty).
    """
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float64)
    if axis is None:
        if probs.ndim == 3:
            axis = 0
        elif probs.ndim == 2:
            axis = -1
        else:
            raise ValueError(f"probs must be (C, H, W) or (N, C) (or pass axis), got shape {probs.shape}")
    return _normalized_entropy_last(np.moveaxis(probs, axis, -1))


#: The smallest weight a view with foreground gets in :class:`FaceVoter`.
MIN_VIEW_WEIGHT = 1e-300


def _weight_from_mean_entropy(mean_entropy: float, gamma: float) -> float:
    return float(max(1.0 - mean_entropy, 0.0) ** gamma)


def view_weight(probs: np.ndarray, mask: np.ndarray, gamma: float = 20.0) -> float:
    """MvDeCor's view weight ``W = (1 − mean normalised entropy over the foreground)^γ``.

    Parameters
    ----------
    probs : (C, H, W) float
        The view's per-pixel class distributions.
    mask : (H, W) bool
        Foreground pixels (``face_ids >= 0``).
    gamma : float
        The exponent γ (paper: 20).

    Returns
    -------
    float in [0, 1]
        1 when every foreground pixel is one-hot, 0 when every one is uniform,
        and 0 for a view with no foreground at all.
    """
    probs = np.asarray(probs)
    mask = np.asarray(mask, dtype=bool)
    if probs.ndim != 3 or probs.shape[1:] != mask.shape:
        raise ValueError(f"probs (C, H, W) {probs.shape} does not match mask (H, W) {mask.shape}")
    if not mask.any():
        return 0.0
    fg = probs.reshape(probs.shape[0], -1)[:, mask.ravel()].T  # (K, C)
    return _weight_from_mean_entropy(float(_normalized_entropy_last(fg).mean(dtype=np.float64)), gamma)


# ---------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class FusionResult:
    """Per-face labels voted from many views.

    ``F`` is the number of faces, ``C`` of classes, ``V`` of views added.
    Arrays are read-only.

    Attributes
    ----------
    face_scores : (F, C) float32
        Each face's accumulated (weighted) votes, normalised to sum to 1 over
        the predictable classes. Excluded classes' columns are 0. Rows of faces
        that received no vote (``~seen``) are all 0, also after filling.
    face_labels : (F,) int64
        The voted class of each face. Unseen faces carry the label of the
        nearest seen face when centroids were given to
        :meth:`FaceVoter.result`, else ``-1``.
    face_confidence : (F,) float32
        The winning normalised score (``face_scores[f, face_labels[f]]``), in
        ``(0, 1]`` for seen faces; 0.0 for unseen faces, filled or not (their
        label is borrowed, not voted).
    seen : (F,) bool
        Faces that received a positive vote: visible in at least one view
        whose weight was positive.
    view_weights : (V,) float32
        The weight each view's votes were multiplied by, in the order added:
        ``W(i)`` for ``"entropy"`` (may underflow to 0 in float32 for very
        uncertain views while still counting in the float64 vote table), 1.0
        for ``"average"`` and ``"majority"``; 0.0 for views with no foreground.
    method : str
        ``"entropy"``, ``"average"`` or ``"majority"``.
    """

    face_scores: np.ndarray
    face_labels: np.ndarray
    face_confidence: np.ndarray
    seen: np.ndarray
    view_weights: np.ndarray
    method: str

    def __post_init__(self) -> None:
        for name in ("face_scores", "face_labels", "face_confidence", "seen", "view_weights"):
            getattr(self, name).setflags(write=False)

    @property
    def num_faces(self) -> int:
        return len(self.face_labels)

    @property
    def num_classes(self) -> int:
        return self.face_scores.shape[1]

    @property
    def filled(self) -> np.ndarray:
        """(F,) bool: faces labelled by the nearest seen face rather than by votes."""
        return ~self.seen & (self.face_labels >= 0)


# ----------------------------------------------------------------------- voter
#: Default size of the pending-vote buffer, in pixel x class values (32 MiB of float32;
#: about six 256 x 256 views of 20 classes).
DEFAULT_BUFFER_ELEMENTS = 1 << 23


class FaceVoter:
    """Accumulate per-pixel class probabilities of many views onto mesh faces.

    Add views one at a time with :meth:`add_view`; call :meth:`result` (any
    number of times, adding more views in between if wanted) for the labels.

    Memory: one ``(F, C)`` float64 vote table plus a buffer of pending
    foreground pixels (``buffer_elements`` pixel x class values). Views are
    buffered and folded into the table a few at a time, each batch by one
    sparse matrix product (a vectorised scatter-add of the pixels' weighted
    distributions onto their faces), so the cost of touching the whole table
    is paid once per batch rather than once per view.

    Parameters
    ----------
    num_faces : int
        ``F``, the number of mesh faces.
    num_classes : int
        ``C``, the number of classes the network predicts.
    method : {"entropy", "average", "majority"}
        ``"entropy"``: ``Σ_i W(i) Σ_{p∈t} P(i, p)`` (the paper's weighted vote);
        ``"average"``: the unweighted ``Σ_i Σ_{p∈t} P(i, p)``;
        ``"majority"``: each pixel casts one vote for its most likely class.
    gamma : float
        γ of the view weight (entropy method only).
    exclude_classes : sequence of int
        Classes never predicted (e.g. PartNet's label 0, "other"): labels are
        the argmax over the remaining classes, and a majority pixel votes for
        its most likely remaining class. The view weight still uses the entropy
        of the full distribution the network gave.
    buffer_elements : int
        Fold pending views into the vote table once they hold this many
        pixel x class values (0: after every view). Affects speed and memory
        only; results agree to float rounding.
    """

    def __init__(
        self,
        num_faces: int,
        num_classes: int,
        method: str = "entropy",
        gamma: float = 20.0,
        exclude_classes: Sequence[int] = (),
        *,
        buffer_elements: int = DEFAULT_BUFFER_ELEMENTS,
    ) -> None:
        if int(num_faces) < 1:
            raise ValueError(f"num_faces must be at least 1, got {num_faces}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if method not in METHODS:
            raise ValueError(f"unknown voting method {method!r}; expected one of {', '.join(METHODS)}")
        if not np.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
        self.num_faces = int(num_faces)
        self.num_classes = int(num_classes)
        self.method = method
        self.gamma = float(gamma)
        excluded = sorted({int(c) for c in exclude_classes})
        bad = [c for c in excluded if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"exclude_classes {bad} out of range for {self.num_classes} classes")
        if len(excluded) == self.num_classes:
            raise ValueError("exclude_classes excludes every class; nothing could be predicted")
        self.exclude_classes = tuple(excluded)
        allowed = np.ones(self.num_classes, bool)
        allowed[excluded] = False
        self._allowed = np.flatnonzero(allowed)
        self._buffer_elements = max(int(buffer_elements), 0)
        self._votes = np.zeros((self.num_faces, self.num_classes), np.float64)
        self._weights: list[float] = []
        # Pending views: face ids (K,), payload ((K, C) probabilities, or (K,)
        # chosen classes for majority), weight.
        self._pending: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._pending_elements = 0

    @property
    def num_views(self) -> int:
        """Number of views added so far."""
        return len(self._weights)

    def add_view(self, face_ids: np.ndarray, probs: np.ndarray) -> float:
        """Add one view's votes.

        The inputs are copied (only their foreground pixels), so the caller may
        reuse its buffers.

        Parameters
        ----------
        face_ids : (H, W) int
            Face seen by each pixel; negative (``-1``) on background.
        probs : (C, H, W) float
            The network's class distribution at each pixel (softmax output:
            non-negative, finite). Only foreground pixels are read.

        Returns
        -------
        float
            The weight the view's votes are multiplied by (see
            :attr:`FusionResult.view_weights`).
        """
        face_ids = np.asarray(face_ids)
        probs = np.asarray(probs)
        if face_ids.ndim != 2 or not np.issubdtype(face_ids.dtype, np.integer):
            raise ValueError(
                f"face_ids must be an (H, W) integer array, got {face_ids.dtype} {face_ids.shape}"
            )
        if probs.shape != (self.num_classes, *face_ids.shape):
            raise ValueError(
                f"probs has shape {probs.shape}, expected (C, H, W) = "
                f"({self.num_classes}, {face_ids.shape[0]}, {face_ids.shape[1]})"
            )
        if probs.dtype not in (np.float32, np.float64):
            probs = probs.astype(np.float32)

        flat_ids = face_ids.ravel()
        pixels = np.flatnonzero(flat_ids >= 0)
        if len(pixels) == 0:
            self._weights.append(0.0)
            return 0.0
        ids = flat_ids[pixels].astype(np.int64)
        if ids.max() >= self.num_faces:
            raise ValueError(f"face_ids reach {int(ids.max())} but the mesh has {self.num_faces} faces")
        fg = np.take(probs.reshape(self.num_classes, -1), pixels, axis=1)  # (C, K), a copy
        if not np.isfinite(fg).all():
            raise ValueError("probs contain NaN or infinite values on foreground pixels")
        if fg.min() < 0:
            raise ValueError("probs contain negative values on foreground pixels")

        if self.method == "majority":
            allowed = self._allowed
            if len(allowed) == self.num_classes:
                payload = fg.argmax(axis=0)
            else:
                payload = allowed[fg[allowed].argmax(axis=0)]
            weight = 1.0
        else:
            weight = self._entropy_weight(fg) if self.method == "entropy" else 1.0
            payload = np.ascontiguousarray(fg.T)  # (K, C), the layout the scatter reads
        self._weights.append(weight)
        if weight > 0.0:
            self._pending.append((ids, payload, weight))
            self._pending_elements += fg.size
            if self._pending_elements >= self._buffer_elements:
                self._flush()
        return weight

    def _entropy_weight(self, fg: np.ndarray) -> float:
        """``W`` of a view from its foreground distributions ``(C, K)`` (non-negative)."""
        if self.num_classes == 1:
            return 1.0
        x = np.maximum(fg, np.finfo(fg.dtype).tiny)
        np.log(x, out=x)
        x *= fg
        entropy = x.sum(axis=0)  # (K,) minus the entropy in nats
        entropy *= -1.0 / np.log(self.num_classes)
        mean = float(np.clip(entropy, 0.0, 1.0, out=entropy).mean(dtype=np.float64))
        # Floor: a maximally uncertain view (W = 0, e.g. an untrained network) still
        # votes, below every other view, so a mesh whose views are all like that gets
        # an unweighted vote rather than no labels at all.
        return max(_weight_from_mean_entropy(mean, self.gamma), MIN_VIEW_WEIGHT)

    def _flush(self) -> None:
        """Fold the pending views into the vote table."""
        if not self._pending:
            return
        pending, self._pending, self._pending_elements = self._pending, [], 0
        ids = np.concatenate([p[0] for p in pending])
        n_faces, n_classes = self.num_faces, self.num_classes

        if self.method == "majority":
            choice = np.concatenate([p[1] for p in pending])
            counts = np.bincount(ids * n_classes + choice, minlength=n_faces * n_classes)
            self._votes += counts.reshape(n_faces, n_classes)
            return

        import scipy.sparse as sp

        probs = np.concatenate([p[1] for p in pending])  # (K, C), C-contiguous
        weights = np.array([p[2] for p in pending])
        scale = float(weights.max())
        relative = weights / scale
        # float32 products are exact enough unless the weights span float32's range.
        dtype = np.float32 if probs.dtype == np.float32 and relative.min() > 1e-30 else np.float64
        data = np.repeat(relative, [len(p[0]) for p in pending]).astype(dtype)
        # An (F x K) matrix with one entry per column: pixel k's view weight, in
        # the row of the face it sees. Its product with the (K, C) pixel
        # distributions sums each face's weighted votes (a scatter-add).
        scatter = sp.csc_matrix((data, ids, np.arange(len(ids) + 1)), shape=(n_faces, len(ids)))
        sums = scatter @ probs.astype(dtype, copy=False)  # (F, C)
        # Rescale in float64: the floor weight (1e-300) underflows in float32.
        self._votes += sums.astype(np.float64, copy=False) * scale

    def result(self, face_centroids: np.ndarray | None = None) -> FusionResult:
        """The fused labels of the views added so far.

        Parameters
        ----------
        face_centroids : (F, 3) float, optional
            Face centres (e.g. ``mesh.triangles.mean(axis=1)``). When given,
            each face that received no vote takes the label of the nearest face
            that did (``scipy.spatial.cKDTree``). When None, such faces keep
            label ``-1``.

        Returns
        -------
        FusionResult

        Raises
        ------
        ValueError
            If no face received a vote (no view saw the mesh, or every view's
            weight was 0).
        """
        centroids = None
        if face_centroids is not None:
            centroids = np.asarray(face_centroids, np.float64)
            if centroids.shape != (self.num_faces, 3):
                raise ValueError(
                    f"face_centroids has shape {centroids.shape}, expected ({self.num_faces}, 3)"
                )
        self._flush()
        if len(self._allowed) == self.num_classes:
            votes = self._votes.copy()
        else:
            votes = np.zeros_like(self._votes)
            votes[:, self._allowed] = self._votes[:, self._allowed]
        total = votes.sum(axis=1)
        seen = total > 0
        if not seen.any():
            raise ValueError(
                f"no face received a vote from the {self.num_views} views added "
                "(no view saw the mesh, or every view had weight 0)"
            )
        np.divide(votes, total[:, None], out=votes, where=seen[:, None])
        allowed_votes = votes if len(self._allowed) == self.num_classes else votes[:, self._allowed]
        labels = self._allowed[allowed_votes.argmax(axis=1)].astype(np.int64)  # ties: lowest class
        scores = votes.astype(np.float32)
        confidence = np.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
        labels[~seen] = -1
        confidence[~seen] = 0.0
        if centroids is not None:
            labels = labels_from_nearest_faces(labels, centroids, seen, ~seen, fast_build=True)
        return FusionResult(
            face_scores=scores,
            face_labels=labels,
            face_confidence=confidence,
            seen=seen,
            view_weights=np.asarray(self._weights, np.float32),
            method=self.method,
        )


def fuse_views(
    num_faces: int,
    face_ids_list: Iterable[np.ndarray],
    probs_list: Iterable[np.ndarray],
    *,
    method: str = "entropy",
    gamma: float = 20.0,
    exclude_classes: Sequence[int] = (),
    face_centroids: np.ndarray | None = None,
) -> FusionResult:
    """Vote per-face labels from views in one call.

    The iterables are consumed in step, one view at a time, so generators keep
    memory to one view. See :class:`FaceVoter` for the methods.

    Parameters
    ----------
    num_faces : int
        ``F``.
    face_ids_list : iterable of (H, W) int
        Each view's face ids (``-1`` background).
    probs_list : iterable of (C, H, W) float
        Each view's class distributions; ``C`` is read from the first.
    method, gamma, exclude_classes
        As for :class:`FaceVoter`.
    face_centroids : (F, 3) float, optional
        As for :meth:`FaceVoter.result`.

    Returns
    -------
    FusionResult
    """
    voter: FaceVoter | None = None
    ids_iter, probs_iter = iter(face_ids_list), iter(probs_list)
    done = object()
    while True:
        face_ids, probs = next(ids_iter, done), next(probs_iter, done)
        if face_ids is done and probs is done:
            break
        if face_ids is done or probs is done:
            raise ValueError("face_ids_list and probs_list have different lengths")
        probs = np.asarray(probs)
        if voter is None:
            if probs.ndim != 3:
                raise ValueError(f"probs must be (C, H, W), got shape {probs.shape}")
            voter = FaceVoter(num_faces, probs.shape[0], method, gamma, exclude_classes)
        voter.add_view(face_ids, probs)
    if voter is None:
        raise ValueError("no views to fuse")
    return voter.result(face_centroids)
