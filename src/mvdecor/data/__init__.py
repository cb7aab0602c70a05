"""Meshes and labels: the :class:`LabelledMesh` contract, file loaders, datasets,
and the built-in synthetic shapes."""

from mvdecor.data.datasets import DATASETS, ShapeDataset, open_dataset
from mvdecor.data.io import SUPPORTED_EXTENSIONS, load_label_names, load_labels, load_mesh
from mvdecor.data.mesh import (
    LabelledMesh,
    Normalization,
    concatenate_meshes,
    labels_from_nearest_faces,
    vertex_labels_to_face_labels,
)
from mvdecor.data.synthetic import CATEGORIES, make_dataset, make_shape

# Adapters register themselves in DATASETS on import.
from mvdecor.data import coseg, partnet, shapenet_part  # noqa: F401  isort: skip

__all__ = [
    "CATEGORIES",
    "DATASETS",
    "SUPPORTED_EXTENSIONS",
    "LabelledMesh",
    "Normalization",
    "ShapeDataset",
    "concatenate_meshes",
    "labels_from_nearest_faces",
    "load_label_names",
    "load_labels",
    "load_mesh",
    "make_dataset",
    "make_shape",
    "open_dataset",
    "vertex_labels_to_face_labels",
]
