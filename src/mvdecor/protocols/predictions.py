"""What a few-shot run predicted: each test shape's fused face labels and confidences.

Each run folder of the protocol keeps its predictions (:data:`PREDICTIONS_FILE`,
and ``predictions_<variant>.npz`` for each refinement variant), so reports show
and export them without segmenting again.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvdecor.errors import FileError
from mvdecor.fileio import atomic_path

__all__ = ["PREDICTIONS_FILE", "ShapePrediction", "load_predictions", "predictions_file", "save_predictions"]

#: The file in each run folder with the run's fused predictions on the test shapes.
PREDICTIONS_FILE = "predictions.npz"


def predictions_file(variant: str | None = None) -> str:
    """The name of a run folder's predictions file: the run's own, or a refinement variant's."""
    return PREDICTIONS_FILE if not variant else f"predictions_{variant}.npz"


@dataclass(frozen=True, eq=False)
class ShapePrediction:
    """The fused prediction of one shape, as the evaluator scored it.

    Attributes
    ----------
    face_labels : (F,) int64
        The predicted label of each face (``-1`` for a face no view saw).
    face_confidence : (F,) float32
        The vote's confidence in each face's label
        (:attr:`~mvdecor.inference.fusion.FusionResult.face_confidence`).
    """

    face_labels: np.ndarray
    face_confidence: np.ndarray


def save_predictions(path: str | Path, predictions: Mapping[str, ShapePrediction]) -> Path:
    """Write predictions keyed by shape id to a compressed ``.npz``, atomically.

    Each shape ``s`` becomes two arrays, ``s/face_labels`` (int64) and
    ``s/face_confidence`` (float32); :func:`load_predictions` reads them back.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    arrays = {}
    for shape_id, prediction in predictions.items():
        arrays[f"{shape_id}/face_labels"] = np.asarray(prediction.face_labels, np.int64)
        arrays[f"{shape_id}/face_confidence"] = np.asarray(prediction.face_confidence, np.float32)
    # An open handle, not a name: np.savez would add ".npz" to the temporary's name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def load_predictions(path: str | Path) -> dict[str, ShapePrediction]:
    """The predictions :func:`save_predictions` wrote, keyed by shape id, in the order written.

    Raises
    ------
    FileError
        The file is missing, unreadable, or not a predictions file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(path, "no such predictions file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FileError(path, f"unreadable predictions file ({type(exc).__name__}: {exc})") from None
    shape_ids = [name[: -len("/face_labels")] for name in arrays if name.endswith("/face_labels")]
    if len(arrays) != 2 * len(shape_ids) or any(f"{s}/face_confidence" not in arrays for s in shape_ids):
        raise FileError(path, "not a predictions file (expected <shape>/face_labels and /face_confidence)")
    return {s: ShapePrediction(arrays[f"{s}/face_labels"], arrays[f"{s}/face_confidence"]) for s in shape_ids}
