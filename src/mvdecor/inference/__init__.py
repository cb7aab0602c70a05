"""Inference: fuse per-view predictions onto mesh faces and export the segmentation.

``mvdecor.inference.segment`` (the network-driven :class:`Segmenter`) imports
torch and is not imported here, so that voting and export stay light.
"""

from mvdecor.inference.export import UNLABELLED_RGB, export_segmentation
from mvdecor.inference.fusion import (
    METHODS,
    FaceVoter,
    FusionResult,
    fuse_views,
    normalized_entropy,
    view_weight,
)

__all__ = [
    "METHODS",
    "UNLABELLED_RGB",
    "FaceVoter",
    "FusionResult",
    "export_segmentation",
    "fuse_views",
    "normalized_entropy",
    "view_weight",
]
