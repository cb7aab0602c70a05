"""The paper's 3D baselines on point clouds: (3D) Scratch and (3D) PointContrast.

A point network (DGCNN, :mod:`mvdecor.points.network`) segments area-weighted
surface samples of a mesh (:mod:`mvdecor.points.sampling`); each face takes the
mean prediction of the samples on it. *Scratch* trains it with cross-entropy on
the few labelled shapes only; *PointContrast* first pre-trains it without
labels by PointInfoNCE (:mod:`mvdecor.points.losses`) between the hit points of
two overlapping rendered views (:mod:`mvdecor.points.pointcontrast`), then
fine-tunes it the same way (:mod:`mvdecor.points.segmenter`). Settings:
:class:`~mvdecor.config.PointsConfig` (``config.points``).

Examples
--------
>>> checkpoint = pretrain_pointcontrast(config, "synthetic:categories=chair", run / "pointcontrast")
>>> segmenter = train_point_segmenter(config, labelled, num_classes, init=checkpoint, out=run / "k2")
>>> face_labels, face_probabilities = segmenter.predict(mesh)
"""

from mvdecor.points.losses import point_info_nce
from mvdecor.points.network import PointEmbeddingNet, PointSegmentationNet, build_point_embedding
from mvdecor.points.pointcontrast import PartialViewPairs, pretrain_pointcontrast
from mvdecor.points.sampling import SurfaceSamples, sample_surface, shape_point_clouds
from mvdecor.points.segmenter import PointSegmenter, build_point_segmentation_net, train_point_segmenter

__all__ = [
    "PartialViewPairs",
    "PointEmbeddingNet",
    "PointSegmentationNet",
    "PointSegmenter",
    "SurfaceSamples",
    "build_point_embedding",
    "build_point_segmentation_net",
    "point_info_nce",
    "pretrain_pointcontrast",
    "sample_surface",
    "shape_point_clouds",
    "train_point_segmenter",
]
