"""Multi-view pixel correspondences: which pixels of two views see the same 3D point."""

from mvdecor.correspond.matching import (
    DEFAULT_RADIUS,
    Matches,
    auto_radius,
    footprint_radius,
    match_views,
    match_views_aligned,
    match_views_kdtree,
    overlap_ratio,
    pixel_footprint,
    resolve_match_radius,
    sample_matches,
)
from mvdecor.correspond.pairs import (
    DEFAULT_THRESHOLD,
    PairSampler,
    load_or_compute_overlaps,
    load_overlaps,
    overlap_matrix,
    save_overlaps,
)
from mvdecor.correspond.source import ViewSource

__all__ = [
    "DEFAULT_RADIUS",
    "DEFAULT_THRESHOLD",
    "Matches",
    "PairSampler",
    "ViewSource",
    "auto_radius",
    "footprint_radius",
    "load_or_compute_overlaps",
    "load_overlaps",
    "match_views",
    "match_views_aligned",
    "match_views_kdtree",
    "overlap_matrix",
    "overlap_ratio",
    "pixel_footprint",
    "resolve_match_radius",
    "sample_matches",
    "save_overlaps",
]
