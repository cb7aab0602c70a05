"""Refine fused face distributions on the mesh: a label-transfer prior and CRF smoothing.

Both are options beyond the paper (``segment.transfer_prior`` and
``segment.smoothing``, off by default) and apply to any network's votes alike,
so that comparing pre-trained and scratch networks still isolates what
pre-training adds:

1. **Prior**: ``(1 - w) * votes + w * prior`` where ``prior`` is a label
   transfer's face distributions (a :class:`FacePrior`): the label histogram
   of the nearest labelled reference points
   (:class:`~mvdecor.inference.transfer.LabelTransfer`, ``segment.prior_method:
   transfer``) or of the nearest points of the best-fitting labelled shape
   deformed onto the mesh (:class:`~mvdecor.points.deformation.DeformationTransfer`,
   ``deform``). Faces no view saw take the prior's distribution instead of the
   nearest seen face's label.
2. **Smoothing**: mean-field inference of a Potts CRF on the face adjacency
   graph with dihedral-angle weights
   (:func:`~mvdecor.inference.smoothing.smooth_face_probabilities`): isolated
   faces that disagree with all their neighbours inside a smooth part are
   relabelled; boundaries along sharp creases stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mvdecor.config import PRIOR_WEIGHTINGS, SegmentConfig
from mvdecor.data.mesh import LabelledMesh, labels_from_nearest_faces
from mvdecor.errors import ConfigError
from mvdecor.inference.fusion import FusionResult, normalized_entropy
from mvdecor.inference.smoothing import smooth_face_probabilities

__all__ = [
    "PRIOR_WEIGHTINGS",
    "TRANSFER_VOTE_SHARE",
    "FacePrior",
    "TransferVoter",
    "check_vote_outside_protocol",
    "far_unseen_faces",
    "refine_fusion",
    "refine_with",
    "transfer_vote_of",
    "welded",
]

#: The share of label transfer when it joins a pair as a third voter (``segment.transfer_vote``).
TRANSFER_VOTE_SHARE = 1.0 / 3.0


class FacePrior(Protocol):
    """A label transfer a segmenter's votes can be mixed with (``segment.transfer_prior``)."""

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F, C)`` float: each face's label distribution (rows sum to 1)."""
        ...


class TransferVoter:
    """A prior with label transfer as a third voter beside it (``segment.transfer_vote``).

    The prior (a fine-tuned network's lookup, :class:`~mvdecor.inference.segment.SegmenterPrior`)
    is mixed into the votes with weight ``w`` as any prior is; when transfer
    joins, the result is then mixed with transfer's face distributions at
    :data:`TRANSFER_VOTE_SHARE`, or face by face at a share that falls with the
    face's distance to the labelled surface (``near``, :meth:`vote_shares`;
    :func:`refine_fusion`'s ``transfer_vote`` and ``transfer_vote_share``).

    Parameters
    ----------
    prior : the prior transfer joins
    transfer : the label transfer from the same labelled shapes, or None when it
        does not join (``auto`` decided against it)
    decision : why it joins or not (``auto``'s leave-one-out scores), for the record
    """

    def __init__(self, prior: FacePrior, transfer: FacePrior | None, decision: dict | None = None) -> None:
        self.prior = prior
        self.transfer = transfer
        self.decision = dict(decision or {})

    @classmethod
    def joining(cls, prior: FacePrior, transfer: FacePrior, vote: str) -> TransferVoter:
        """``prior`` with ``transfer`` joined because the configuration's ``segment.transfer_vote``
        is ``vote`` (segmenting outside the few-shot protocol, which decides ``auto`` itself)."""
        return cls(prior, transfer, {"joined": True, "reason": f"segment.transfer_vote: {vote}"})

    @property
    def joined(self) -> bool:
        return self.transfer is not None

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """The prior's ``(F, C)`` face distributions."""
        return self.prior.face_probabilities(mesh)

    def vote_probabilities(self, mesh: LabelledMesh) -> np.ndarray | None:
        """Transfer's ``(F, C)`` face distributions when it joins, else None."""
        return None if self.transfer is None else self.transfer.face_probabilities(mesh)

    def vote_shares(self, mesh: LabelledMesh, radius: float = 0.0) -> float | np.ndarray:
        """Transfer's share of each face's vote when it joins (0 when it does not).

        ``radius`` 0: :data:`TRANSFER_VOTE_SHARE` everywhere (``equal``, ``auto``);
        ``r > 0`` (``near``): ``(F,)`` float64, ``TRANSFER_VOTE_SHARE * exp(-(d / r)^2)``
        with ``d`` the distance from the face's box-aligned centroid to the
        nearest labelled point (:meth:`~mvdecor.inference.transfer.LabelTransfer.nearest_distances`).
        """
        if self.transfer is None:
            return 0.0
        if radius <= 0:
            return TRANSFER_VOTE_SHARE
        distances = self.transfer.nearest_distances(mesh)  # type: ignore[attr-defined]
        return TRANSFER_VOTE_SHARE * np.exp(-((np.asarray(distances, np.float64) / radius) ** 2))


def check_vote_outside_protocol(vote: str, source: str | Path | None = None) -> None:
    """Refuse ``segment.transfer_vote: auto`` where a model segments outside the few-shot protocol.

    ``auto`` lets transfer vote when it beats the lookup at labelling each labelled shape
    from the others, a choice the protocol makes from a run's labelled shapes; a saved
    model, the labelling app and ``pictures`` have no such choice to read.

    Raises
    ------
    ConfigError
        ``vote`` is ``auto`` (``source``: the model or configuration asking for it).
    """
    if vote == "auto":
        raise ConfigError(
            source,
            "segment.transfer_vote auto is decided by the few-shot protocol from its labelled shapes; "
            "use off, equal, near or unseen (--transfer-vote)",
        )


def far_unseen_faces(mesh: LabelledMesh, seen: np.ndarray, distance: float) -> np.ndarray:
    """``(F,)`` bool: the faces no view saw whose centroid lies farther than ``distance`` times
    the mesh's bounding-box diagonal from the centroid of every seen face.

    The fusion labels an unseen face from the nearest seen one, which is right for the
    back of a thin panel (a hair's breadth behind a seen face) and wrong for a part
    inside a closed object (an oven's tray), which lies far from every seen face.
    With no seen face or no unseen face, none is far.
    """
    seen = np.asarray(seen, bool)
    if seen.shape != (mesh.num_faces,):
        raise ValueError(f"seen has shape {seen.shape}, expected ({mesh.num_faces},)")
    far = np.zeros(mesh.num_faces, bool)
    if seen.all() or not seen.any():
        return far
    from scipy.spatial import cKDTree

    centroids = mesh.triangles.mean(axis=1)
    lower, upper = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    diagonal = float(np.linalg.norm(upper - lower))
    gaps, _ = cKDTree(centroids[seen]).query(centroids[~seen], k=1)
    far[~seen] = gaps > distance * diagonal
    return far


def transfer_vote_of(
    prior: FacePrior | None,
    mesh: LabelledMesh,
    segment: SegmentConfig | None = None,
    seen: np.ndarray | None = None,
) -> tuple[np.ndarray, float | np.ndarray] | None:
    """``(transfer's (F, C) face distributions, its share: a float or (F,))`` on ``mesh`` when
    ``prior`` brings transfer as a third voter, else None. The share is ``segment``'s:
    face by face with ``transfer_vote: near``; with ``unseen``, 1 on the faces
    :func:`far_unseen_faces` finds (``seen``: the vote's ``(F,)`` bool, required then) and
    0 elsewhere; :data:`TRANSFER_VOTE_SHARE` otherwise."""
    if not isinstance(prior, TransferVoter) or not prior.joined:
        return None
    mode = "equal" if segment is None else segment.transfer_vote
    if mode == "unseen":
        if seen is None:
            raise ValueError("transfer_vote unseen needs the vote's seen faces")
        far = far_unseen_faces(mesh, seen, segment.unseen_transfer_distance)  # type: ignore[union-attr]
        return prior.vote_probabilities(mesh), far.astype(np.float64)
    radius = segment.transfer_vote_radius if mode == "near" else 0.0  # type: ignore[union-attr]
    return prior.vote_probabilities(mesh), prior.vote_shares(mesh, radius)


def welded(mesh: LabelledMesh, decimals: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (V', 3) float64, faces (F, 3) int64)`` with coincident vertices merged.

    Mesh files often repeat a vertex per UV seam, material or part (a PartNet
    object is many OBJ pieces); the face adjacency the smoothing needs follows
    shared vertex indices, so positions equal to ``decimals`` places are merged
    first. Faces keep their order.
    """
    rounded = np.round(np.asarray(mesh.vertices, np.float64), decimals)
    unique, inverse = np.unique(rounded, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)[mesh.faces].astype(np.int64)


def refine_fusion(
    fusion: FusionResult,
    mesh: LabelledMesh,
    *,
    prior: np.ndarray | None = None,
    prior_weight: float = 0.0,
    smoothing: float = 0.0,
    smoothing_angle_degrees: float = 30.0,
    smoothing_iterations: int = 10,
    exclude_classes: Sequence[int] = (),
    transfer_vote: np.ndarray | None = None,
    prior_weighting: str = "fixed",
    transfer_vote_share: float | np.ndarray = TRANSFER_VOTE_SHARE,
) -> FusionResult:
    """``fusion`` with a transfer prior mixed in and/or CRF smoothing applied.

    Parameters
    ----------
    fusion : the vote of the views (:meth:`~mvdecor.inference.fusion.FaceVoter.result`)
    mesh : the mesh the votes are on (its geometry drives the smoothing)
    prior : (F, C) float, optional
        Prior class distributions per face (rows need not be normalised).
    prior_weight : ``w`` in ``[0, 1]``; 0 ignores ``prior``
    smoothing : the CRF's pairwise weight; 0 skips smoothing
    smoothing_angle_degrees, smoothing_iterations : see
        :func:`~mvdecor.inference.smoothing.smooth_face_probabilities`
    exclude_classes : classes never predicted (their columns stay 0)
    transfer_vote : (F, C) float, optional
        A third voter's distributions (label transfer, ``segment.transfer_vote``),
        mixed in at ``s`` (``transfer_vote_share``) after the prior:
        ``(1 - s) * ((1 - w) * votes + w * prior) + s * transfer_vote``, before smoothing.
    transfer_vote_share : ``s`` in ``[0, 1]``, one for every face or ``(F,)``, one per
        face (:data:`TRANSFER_VOTE_SHARE` by default; see :func:`transfer_vote_of`)

    prior_weighting : ``fixed`` (default): every face mixes at ``w``; ``certainty``:
        each face's two weights ``(1 - w)`` and ``w`` are scaled by the certainty of
        the votes' and the prior's distributions on it, ``1 - H / log C`` over the
        allowed classes, so the more decided of the two counts more (a face where
        neither is decided mixes at ``w``)

    Returns
    -------
    FusionResult
        ``face_scores`` are the refined distributions (rows sum to 1 wherever
        the votes, the prior or the smoothing gave evidence, also for faces no
        view saw); ``face_labels`` their argmax over the allowed classes, faces
        with no evidence at all filled from the nearest seen face with some
        (the nearest face with some when no seen face has any);
        ``face_confidence`` the winning score for seen faces and 0 for unseen
        ones, as in the vote; ``seen``, ``view_weights`` and ``method`` are the
        vote's. Returned unchanged when both weights are 0 and no transfer vote is given.
    """
    if not 0.0 <= prior_weight <= 1.0:
        raise ValueError(f"prior_weight must be in [0, 1], got {prior_weight}")
    if prior_weighting not in PRIOR_WEIGHTINGS:
        raise ValueError(
            f"prior_weighting must be one of {', '.join(PRIOR_WEIGHTINGS)}, got {prior_weighting!r}"
        )
    if smoothing < 0:
        raise ValueError(f"smoothing must be non-negative, got {smoothing}")
    use_prior = prior is not None and prior_weight > 0
    if not use_prior and smoothing == 0 and transfer_vote is None:
        return fusion
    num_faces, num_classes = fusion.face_scores.shape
    allowed = np.ones(num_classes, bool)
    allowed[list(exclude_classes)] = False
    scores = fusion.face_scores.astype(np.float64)
    scores[:, ~allowed] = 0.0
    if use_prior:
        prior = _distributions(prior, allowed, num_faces, "prior")
        if prior_weighting == "certainty":
            votes = _distributions(scores, allowed, num_faces, "votes")
            vote_share = (1.0 - prior_weight) * _certainty(votes, allowed)
            prior_share = prior_weight * _certainty(prior, allowed)
            total = vote_share + prior_share
            undecided = total <= 0
            vote_share[undecided], prior_share[undecided] = 1.0 - prior_weight, prior_weight
            total[undecided] = 1.0
            scores = (vote_share[:, None] * votes + prior_share[:, None] * prior) / total[:, None]
        else:
            scores = (1.0 - prior_weight) * scores + prior_weight * prior
    if transfer_vote is not None:
        share = np.asarray(transfer_vote_share, np.float64)
        if share.ndim > 1 or (share.ndim == 1 and share.shape != (num_faces,)):
            raise ValueError(f"transfer_vote_share must be a number or ({num_faces},), got {share.shape}")
        if share.size and not (share.min() >= 0.0 and share.max() <= 1.0):
            raise ValueError("transfer_vote_share must lie in [0, 1]")
        share = share.reshape(-1, 1) if share.ndim else share
        scores = (1.0 - share) * scores + share * _distributions(
            transfer_vote, allowed, num_faces, "transfer_vote"
        )
    if smoothing > 0:
        vertices, faces = welded(mesh)
        scores = smooth_face_probabilities(
            scores,
            vertices,
            faces,
            weight=smoothing,
            angle_scale_degrees=smoothing_angle_degrees,
            iterations=smoothing_iterations,
        ).astype(np.float64)
        scores[:, ~allowed] = 0.0
    total = scores.sum(axis=1)
    evidence = total > 0
    np.divide(scores, total[:, None], out=scores, where=evidence[:, None])
    allowed_idx = np.flatnonzero(allowed)
    labels = allowed_idx[scores[:, allowed_idx].argmax(axis=1)].astype(np.int64)
    labels[~evidence] = -1
    if not evidence.all() and evidence.any():
        # From the nearest seen face where one has evidence: an unseen face near a seen one (the
        # back of a panel) follows it, not an unseen face transfer labelled (``transfer_vote: unseen``).
        seen_with_evidence = evidence & fusion.seen
        have = seen_with_evidence if seen_with_evidence.any() else evidence
        labels = labels_from_nearest_faces(labels, mesh.triangles.mean(axis=1), have, ~evidence)
    scores32 = scores.astype(np.float32)
    confidence = np.where(
        fusion.seen & (labels >= 0),
        np.take_along_axis(scores32, np.maximum(labels, 0)[:, None], axis=1)[:, 0],
        np.float32(0.0),
    ).astype(np.float32)
    return FusionResult(
        face_scores=scores32,
        face_labels=labels,
        face_confidence=confidence,
        seen=fusion.seen.copy(),
        view_weights=fusion.view_weights.copy(),
        method=fusion.method,
    )


def refine_with(
    fusion: FusionResult,
    mesh: LabelledMesh,
    segment: SegmentConfig,
    *,
    prior: np.ndarray | None = None,
    transfer_vote: np.ndarray | None = None,
    transfer_vote_share: float | np.ndarray = TRANSFER_VOTE_SHARE,
    exclude_classes: Sequence[int] = (),
) -> FusionResult:
    """:func:`refine_fusion` with ``segment``'s prior weight (when ``prior`` is given),
    prior weighting and smoothing: the refinement a segmenter with those settings applies."""
    return refine_fusion(
        fusion,
        mesh,
        prior=prior,
        prior_weight=segment.transfer_prior if prior is not None else 0.0,
        prior_weighting=segment.prior_weighting,
        transfer_vote=transfer_vote,
        transfer_vote_share=transfer_vote_share,
        smoothing=segment.smoothing,
        smoothing_angle_degrees=segment.smoothing_angle_degrees,
        smoothing_iterations=segment.smoothing_iterations,
        exclude_classes=exclude_classes,
    )


def _distributions(values: np.ndarray, allowed: np.ndarray, num_faces: int, name: str) -> np.ndarray:
    """``values`` as (F, C) float64 rows summing to 1 over the allowed classes (all-zero rows stay 0)."""
    values = np.asarray(values, np.float64)
    if values.shape != (num_faces, len(allowed)):
        raise ValueError(f"{name} has shape {values.shape}, expected ({num_faces}, {len(allowed)})")
    values = np.where(allowed, values, 0.0)
    total = values.sum(axis=1, keepdims=True)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)


def _certainty(distributions: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``(F,)``: ``1 - H / log C`` of each row over the allowed classes (1: one-hot, 0: uniform or empty)."""
    rows = distributions[:, allowed]
    # One allowed class carries no uncertainty: normalized_entropy gives 0, a certainty of 1.
    certainty = 1.0 - normalized_entropy(rows, axis=-1)
    certainty[rows.sum(axis=1) <= 0] = 0.0
    return certainty
