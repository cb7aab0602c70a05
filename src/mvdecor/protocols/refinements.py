"""Refinement variants: one few-shot run's networks scored with other segment settings.

A variant (``{name: {segment key: value}}``) changes only how a fine-tuned
network's votes become face labels, or which test-time views it votes from, so
an ablation of the inference options costs no extra fine-tuning
(:func:`mvdecor.protocols.fewshot.run_fewshot`, ``refinements``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from mvdecor.config import PRIOR_METHODS, PRIOR_WEIGHTINGS, TRANSFER_VOTES, SegmentConfig
from mvdecor.errors import ConfigError
from mvdecor.inference.fusion import FusionResult
from mvdecor.inference.refine import FacePrior, TransferVoter, refine_with, transfer_vote_of

if TYPE_CHECKING:  # the segmenter loads torch
    from mvdecor.inference.segment import SegmentationResult, Segmenter

__all__ = ["REFINEMENT_KEYS", "check_refinements", "prior_key", "score_variants", "views_key"]


#: The segment settings a refinement variant may change. The first nine act on the fused votes
#: only, so one segmentation of each test shape serves every variant; the others (the test-time
#: cameras and images, and the prototypes of a face-pooling head, which change the votes
#: themselves) segment the shape once more per distinct set, with the same network.
REFINEMENT_KEYS = (
    "transfer_prior",
    "prior_method",
    "transfer_vote",
    "transfer_vote_radius",
    "unseen_transfer_distance",
    "prior_weighting",
    "smoothing",
    "smoothing_angle_degrees",
    "smoothing_iterations",
    "rings",
    "segments",
    "resolution",
    "flip",
    "shape_prototypes",
)
_INTEGER_REFINEMENT_KEYS = ("smoothing_iterations", "rings", "segments", "resolution")
_BOOLEAN_REFINEMENT_KEYS = ("flip",)
_STRING_REFINEMENT_KEYS = {
    "prior_method": PRIOR_METHODS,
    "transfer_vote": TRANSFER_VOTES,
    "prior_weighting": PRIOR_WEIGHTINGS,
}


def prior_key(segment: SegmentConfig) -> tuple[str, str] | None:
    """``(prior_method, transfer_vote)`` of the label prior ``segment`` mixes in, or None (none).

    Transfer votes beside a pair only: with a weight of 0 there is no prior and no vote, and
    beside another prior than ``nearest`` the vote reads ``off``.
    """
    if segment.transfer_prior <= 0:
        return None
    return segment.prior_method, segment.transfer_vote if segment.prior_method == "nearest" else "off"


def score_variants(
    segmenter: Segmenter,
    result: SegmentationResult,
    variants: Mapping[str, SegmentConfig],
    priors: Mapping[tuple[str, str], FacePrior],
    exclude_classes: Sequence[int] = (),
) -> dict[str, FusionResult]:
    """Each variant's refined vote on the mesh ``segmenter`` segmented into ``result``.

    ``result`` must keep the unrefined vote of ``segmenter``'s own test-time views
    (:attr:`~mvdecor.inference.segment.SegmentationResult.vote`); a variant with
    other views segments the mesh once more per distinct set (:func:`views_key`).
    ``priors``: the run's label priors by :func:`prior_key`. Each prior's face
    distributions are computed once per prior object (the run's one lookup
    segments the mesh once, whichever transfer votes wrap it), and transfer's
    with its shares once per vote, its settings and the view set.
    """
    mesh = result.mesh
    prior_of: dict[int, np.ndarray] = {}
    third_of: dict[tuple, tuple | None] = {}
    votes = {views_key(segmenter.config.segment): result.vote}
    out = {}
    for name, segment in variants.items():
        key = prior_key(segment)
        view_set = views_key(segment)
        if view_set not in votes:
            variant = segmenter.with_segment(replace(segment, smoothing=0.0))
            votes[view_set] = variant.segment(mesh, normalize=False).vote
        prior_probabilities, third = None, None
        if key is not None:
            label_source = priors[key]
            # A transfer vote's face distributions are those of the lookup it wraps.
            base = label_source.prior if isinstance(label_source, TransferVoter) else label_source
            if segment.transfer_prior > 0:  # the lookup segments the mesh only for a variant that mixes it in
                if id(base) not in prior_of:
                    prior_of[id(base)] = base.face_probabilities(mesh)
                prior_probabilities = prior_of[id(base)]
            # unseen: the shares follow the faces this view set's vote saw.
            mix = (*key, segment.transfer_vote_radius, segment.unseen_transfer_distance, view_set)
            if mix not in third_of:
                third_of[mix] = transfer_vote_of(label_source, mesh, segment, votes[view_set].seen)
            third = third_of[mix]
        transfer_vote, share = third if third is not None else (None, 0.0)
        out[name] = refine_with(
            votes[view_set],
            mesh,
            segment,
            prior=prior_probabilities,
            transfer_vote=transfer_vote,
            transfer_vote_share=share,
            exclude_classes=exclude_classes,
        )
    return out


def views_key(segment: SegmentConfig) -> tuple:
    """What decides a test shape's views and per-view predictions (the vote before refinement)."""
    return (segment.rings, segment.segments, segment.resolution, segment.flip, segment.shape_prototypes)


def check_refinements(
    refinements: Mapping[str, Mapping[str, float | str]],
) -> dict[str, dict[str, float | int | bool | str]]:
    """Validate ``{variant name: {segment key: value}}`` refinement variants (see :func:`run_fewshot`)."""
    out = {}
    for name, changes in refinements.items():
        if not name or "+" in name or "/" in name or name != name.strip():
            raise ConfigError(None, f"refinement variant name {name!r} must be a plain word (no '+' or '/')")
        unknown = sorted(set(changes) - set(REFINEMENT_KEYS))
        if unknown:
            raise ConfigError(
                None, f"refinement {name!r}: unknown key(s) {unknown}; allowed: {', '.join(REFINEMENT_KEYS)}"
            )
        out[name] = {key: _refinement_value(name, key, value) for key, value in changes.items()}
    return out


def _refinement_value(name: str, key: str, value: float | str) -> float | int | bool | str:
    if key in _STRING_REFINEMENT_KEYS:
        if value not in _STRING_REFINEMENT_KEYS[key]:
            choices = ", ".join(_STRING_REFINEMENT_KEYS[key])
            raise ConfigError(None, f"refinement {name!r}: {key} must be one of {choices}, got {value!r}")
        return str(value)
    if isinstance(value, str):
        raise ConfigError(None, f"refinement {name!r}: {key} must be a number, got {value!r}")
    if key in _BOOLEAN_REFINEMENT_KEYS:
        if value not in (0, 1):  # True and False are 1 and 0
            raise ConfigError(None, f"refinement {name!r}: {key} must be 0 or 1, got {value!r}")
        return bool(value)
    return int(value) if key in _INTEGER_REFINEMENT_KEYS else float(value)
