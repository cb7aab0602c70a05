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
from typing import Protocol

import numpy as np

from mvdecor.data.mesh import LabelledMesh
from mvdecor.inference.fusion import FusionResult
from mvdecor.inference.smoothing import smooth_face_probabilities

__all__ = ["FacePrior", "refine_fusion", "welded"]


class FacePrior(Protocol):
    """A label transfer a segmenter's votes can be mixed with (``segment.transfer_prior``)."""

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F, C)`` float: each face's label distribution (rows sum to 1)."""
        ...


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

    Returns
    -------
    FusionResult
        ``face_scores`` are the refined distributions (rows sum to 1 wherever
        the votes, the prior or the smoothing gave evidence, also for faces no
        view saw); ``face_labels`` their argmax over the allowed classes, faces
        with no evidence at all filled from the nearest face with some;
        ``face_confidence`` the winning score for seen faces and 0 for unseen
        ones, as in the vote; ``seen``, ``view_weights`` and ``method`` are the
        vote's. Returned unchanged when both weights are 0.
    """
    if not 0.0 <= prior_weight <= 1.0:
        raise ValueError(f"prior_weight must be in [0, 1], got {prior_weight}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be non-negative, got {smoothing}")
    use_prior = prior is not None and prior_weight > 0
    if not use_prior and smoothing == 0:
        return fusion
    num_faces, num_classes = fusion.face_scores.shape
    allowed = np.ones(num_classes, bool)
    allowed[list(exclude_classes)] = False
    scores = fusion.face_scores.astype(np.float64)
    scores[:, ~allowed] = 0.0
    if use_prior:
        prior = np.asarray(prior, np.float64)
        if prior.shape != (num_faces, num_classes):
            raise ValueError(f"prior has shape {prior.shape}, expected ({num_faces}, {num_classes})")
        prior = np.where(allowed, prior, 0.0)
        total = prior.sum(axis=1, keepdims=True)
        prior = np.divide(prior, total, out=np.zeros_like(prior), where=total > 0)
        scores = (1.0 - prior_weight) * scores + prior_weight * prior
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
        from scipy.spatial import cKDTree

        centroids = mesh.triangles.mean(axis=1)
        have = np.flatnonzero(evidence)
        _, nearest = cKDTree(centroids[have]).query(centroids[~evidence], k=1)
        labels[~evidence] = labels[have[nearest]]
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
