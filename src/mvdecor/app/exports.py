"""Exports of one labelled mesh: coloured GLB and PLY, label files, and one mesh per part.

:func:`export_shape` writes into ``FOLDER/exports/<shape>/`` what
:func:`mvdecor.inference.export.export_segmentation` writes (``<shape>.labels.txt``
and ``.npy``, a PLY coloured per face, a GLB with one node per part, the legend),
plus:

- ``<shape>.parts.json``: ``{"<label name>": [face indices]}`` for every label
  present (``"unlabelled"`` for ``-1``);
- ``parts/<label id>_<label name>.ply``: the faces of each part as a mesh of its
  own (only the vertices it uses), in the source's coordinates.

Colours are the palette's (:mod:`mvdecor.palette`), as everywhere in mvdecor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvdecor.data.mesh import LabelledMesh
from mvdecor.fileio import atomic_path
from mvdecor.inference.export import export_segmentation
from mvdecor.palette import UNLABELLED_NAME

__all__ = ["export_shape", "part_face_indices"]


def part_face_indices(labels: np.ndarray, names: Sequence[str]) -> dict[str, list[int]]:
    """``{label name: [face indices]}`` of the labels present (``"unlabelled"`` for ``-1``)."""
    out: dict[str, list[int]] = {}
    for label in np.unique(labels):
        name = UNLABELLED_NAME if label < 0 else str(names[int(label)])
        out[name] = np.flatnonzero(labels == label).tolist()
    return out


def _file_name(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", text).strip("._") or "part"


def export_shape(
    mesh: LabelledMesh,
    labels: np.ndarray,
    names: Sequence[str],
    out_dir: Path,
    *,
    confidence: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write every export of ``mesh`` labelled ``labels`` into ``out_dir``.

    Parameters
    ----------
    mesh : the mesh as read (source coordinates), ``name`` is the file stem
    labels : ``(F,)`` int, ``-1`` unlabelled, else an index into ``names``
    names : the label vocabulary
    out_dir : the folder to write (created)
    confidence : ``(F,)`` per-face confidence of a prediction, written as ``.confidence.npy``

    Returns
    -------
    dict of str to Path
        The files of :func:`~mvdecor.inference.export.export_segmentation`,
        ``parts_json`` and one ``part:<name>`` per part mesh.
    """
    import trimesh

    labels = np.asarray(labels, np.int64)
    paths = export_segmentation(mesh, labels, names, out_dir, confidence=confidence, stem=mesh.name)
    parts = part_face_indices(labels, names)
    paths["parts_json"] = out_dir / f"{_file_name(mesh.name)}.parts.json"
    with atomic_path(paths["parts_json"]) as tmp:
        tmp.write_text(json.dumps(parts) + "\n", encoding="utf-8")
    vertices = mesh.vertices if mesh.normalization is None else mesh.normalization.invert(mesh.vertices)
    for label in np.unique(labels):
        name = UNLABELLED_NAME if label < 0 else str(names[int(label)])
        part_faces = mesh.faces[labels == label]
        used, local = np.unique(part_faces, return_inverse=True)
        part = trimesh.Trimesh(vertices=vertices[used], faces=local.reshape(-1, 3), process=False)
        path = out_dir / "parts" / f"{int(label)}_{_file_name(name)}.ply"
        data = part.export(file_type="ply")
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        paths[f"part:{name}"] = path
    return paths
