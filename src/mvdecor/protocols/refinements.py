"""Refinement variants: one few-shot run's networks scored with other segment settings.

A variant (``{name: {segment key: value}}``) changes only how a fine-tuned
network's votes become face labels, or which test-time views it votes from, so
an ablation of the inference options costs no extra fine-tuning
(:func:`mvdecor.protocols.fewshot.run_fewshot`, ``refinements``).
"""

from __future__ import annotations

from collections.abc import Mapping

from mvdecor.config import PRIOR_METHODS, PRIOR_WEIGHTINGS, TRANSFER_VOTES, SegmentConfig
from mvdecor.errors import ConfigError

__all__ = ["REFINEMENT_KEYS", "check_refinements", "views_key"]


#: The segment settings a refinement variant may change. The first eight act on the fused votes
#: only, so one segmentation of each test shape serves every variant; the others (the test-time
#: cameras and images, and the prototypes of a face-pooling head, which change the votes
#: themselves) segment the shape once more per distinct set, with the same network.
REFINEMENT_KEYS = (
    "transfer_prior",
    "prior_method",
    "transfer_vote",
    "transfer_vote_radius",
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
