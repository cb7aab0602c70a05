"""Part-segmentation scores on meshes: the PartNet and ShapeNet-Part rules.

:class:`SegmentationEvaluator` follows detectron2's evaluator pattern: call
:meth:`~SegmentationEvaluator.reset`, then :meth:`~SegmentationEvaluator.process`
once per test shape with its ground-truth and predicted per-face labels, then
:meth:`~SegmentationEvaluator.evaluate` for the scores.

Every score is built from a weighted confusion matrix (rows = ground truth,
columns = prediction). What a face weighs is set by ``weighting``:

``"area"``
    The face's share of its shape's surface area (the face areas of a shape are
    divided by the shape's total area, unlabelled faces included). This is the
    exact limit of ``"points"`` as the number of points grows: every shape then
    weighs the same in the accumulated sums, whatever its scale.
``"faces"``
    Every face counts 1 (meshes with more faces weigh more).
``"points"``
    ``num_points`` points are drawn on the surface, area-weighted over the faces;
    each point takes its face's labels, so a face weighs the number of points
    that fell on it. The draw for a shape is seeded from ``seed`` and a stable
    hash (CRC-32) of its ``shape_id``, so the result does not depend on the
    order in which shapes are processed. This is how the authors measure (30,000
    points).

Faces whose ground truth is ``-1`` (unlabelled) are ignored: they weigh nothing.

The PartNet convention (``convention="partnet"``)
    Label 0 is "other". Where the ground truth is 0, the prediction is set to 0,
    so those faces count for no part. A prediction of 0 where the ground truth
    is a part ``j >= 1`` is a wrong prediction: it adds to the union of part
    ``j`` only (a predictor should never predict 0; the evaluator does not
    re-predict for it). Per-part IoU is ``ΣI / ΣU`` accumulated over the whole
    test set, for parts ``1..C-1``; a part whose accumulated union is 0 (in
    neither ground truth nor prediction anywhere) scores NaN
    (``absent_part="nan"``, PartNet's official script; the part mIoU is then the
    NaN-ignoring mean) or 0 (``absent_part="zero"``, MvDeCor's code; it then
    pulls the mean down). Part mIoU is the mean over parts ``1..C-1``. Shape
    mIoU: for each shape, the mean IoU over the parts ``1..C-1`` present (with
    non-zero weight) in its ground truth or prediction; then the mean over
    shapes. A shape with no such part (all "other" or unlabelled) has a NaN
    shape mIoU and is left out of the mean, as in PartNet's script.
The ShapeNet-Part convention (``convention="shapenet"``)
    Labels are global part ids ``0..C-1`` (no "other", no masking). A shape's
    mIoU is the mean over the parts of its category (``category_parts[category]``,
    by default all labels) of the part's IoU in that shape, a part absent from
    both its ground truth and its prediction counting as 1.0. A prediction of a
    label outside the category is simply wrong. The instance mIoU is the mean
    over shapes, the class mIoU the mean over categories of each category's mean.
    The accumulated per-part IoU (``ΣI / ΣU`` over all shapes) is reported too.

:func:`pixel_miou` scores one or more rendered views' pixel labels with the same
rules, each pixel counting 1.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import InvalidMeshError, LabelError

CONVENTIONS = ("partnet", "shapenet")
WEIGHTINGS = ("area", "faces", "points")
ABSENT_PART_RULES = ("nan", "zero")

#: Category name used for shapes processed without one.
DEFAULT_CATEGORY = "all"


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


def _iou_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and union of every class from a confusion matrix.

    Parameters
    ----------
    confusion : (C, C) float64
        Rows = ground truth, columns = prediction.

    Returns
    -------
    intersection, union : (C,) float64
    """
    intersection = np.diag(confusion).copy()
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - intersection
    return intersection, union


def _divide(intersection: np.ndarray, union: np.ndarray, absent: float) -> np.ndarray:
    """``intersection / union`` with ``absent`` where ``union == 0``; (C,) float64."""
    out = np.full(intersection.shape, absent, dtype=np.float64)
    present = union > 0
    out[present] = intersection[present] / union[present]
    return out


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a warning) when nothing is left."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _confusion(gt: np.ndarray, pred: np.ndarray, weights: np.ndarray | None, num_classes: int) -> np.ndarray:
    """Weighted confusion matrix ``(C, C)`` float64 of labels already in ``[0, C)``."""
    flat = np.bincount(gt * num_classes + pred, weights=weights, minlength=num_classes * num_classes)
    return flat.astype(np.float64).reshape(num_classes, num_classes)


def shape_seed(seed: int, shape_id: str) -> np.random.SeedSequence:
    """The seed of a shape's point draw: ``seed`` and the CRC-32 of ``shape_id``.

    Stable across processes and Python versions (unlike ``hash``), and
    independent of the order in which shapes are evaluated.
    """
    return np.random.SeedSequence([int(seed), zlib.crc32(shape_id.encode("utf-8"))])


def sample_face_counts(face_areas: np.ndarray, num_points: int, seed: int, shape_id: str) -> np.ndarray:
    """How many of ``num_points`` area-weighted surface samples fall on each face.

    Parameters
    ----------
    face_areas : (F,) float64
        Non-negative face areas with a positive sum.
    num_points : int
        Number of points drawn on the surface.
    seed : int
        Base seed; the draw is seeded by :func:`shape_seed`.
    shape_id : str
        The shape's identifier.

    Returns
    -------
    (F,) float64
        Number of points on each face; sums to ``num_points``.
    """
    areas = np.asarray(face_areas, dtype=np.float64)
    rng = np.random.default_rng(shape_seed(seed, shape_id))
    cdf = np.cumsum(areas)
    # side="right" never picks a zero-area face.
    idx = np.searchsorted(cdf, rng.random(num_points) * cdf[-1], side="right")
    idx = np.minimum(idx, len(areas) - 1)
    return np.bincount(idx, minlength=len(areas)).astype(np.float64)


class SegmentationEvaluator:
    """Accumulates per-face predictions of test shapes and scores them.

    Parameters
    ----------
    label_names : sequence of str
        The label vocabulary, ``C`` names. For ``"partnet"`` label 0 is "other".
    convention : {"partnet", "shapenet"}
        Which benchmark's rules to apply (see the module docstring).
    weighting : {"area", "faces", "points"}
        What a face weighs (see the module docstring).
    num_points : int
        Points drawn per shape when ``weighting="points"``.
    seed : int
        Base seed of the point draws (non-negative).
    absent_part : {"nan", "zero"}
        Score of a part whose accumulated union is 0: NaN (PartNet's official
        script; means ignore it) or 0 (MvDeCor's code).
    category_parts : mapping of str to sequence of int, optional
        ShapeNet-Part: the label ids of each category. When given, every shape
        must be processed with a ``category`` among its keys. When omitted, a
        shape's parts are all ``C`` labels.

    Raises
    ------
    ValueError
        An unknown convention, weighting or absent-part rule; fewer than two
        labels for PartNet; ``num_points < 1``; a negative seed; category part
        ids out of range.
    """

    def __init__(
        self,
        label_names: Sequence[str],
        convention: str = "partnet",
        weighting: str = "area",
        num_points: int = 30000,
        seed: int = 0,
        absent_part: str = "nan",
        category_parts: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.convention = _check_choice("convention", convention, CONVENTIONS)
        self.weighting = _check_choice("weighting", weighting, WEIGHTINGS)
        self.absent_part = _check_choice("absent_part", absent_part, ABSENT_PART_RULES)
        self.label_names = tuple(str(n) for n in label_names)
        self.num_classes = len(self.label_names)
        min_classes = 2 if convention == "partnet" else 1
        if self.num_classes < min_classes:
            raise ValueError(
                f"the {convention} convention needs at least {min_classes} label names, got {self.num_classes}"
            )
        if int(num_points) < 1:
            raise ValueError(f"num_points must be at least 1, got {num_points}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_points = int(num_points)
        self.seed = int(seed)
        self.category_parts: dict[str, tuple[int, ...]] | None = None
        if category_parts is not None:
            parts_of: dict[str, tuple[int, ...]] = {}
            for cat, ids in category_parts.items():
                ids_t = tuple(int(i) for i in ids)
                if not ids_t:
                    raise ValueError(f"category {cat!r} has no parts")
                bad = [i for i in ids_t if not 0 <= i < self.num_classes]
                if bad:
                    raise ValueError(f"category {cat!r} has part ids {bad} outside [0, {self.num_classes})")
                parts_of[str(cat)] = ids_t
            self.category_parts = parts_of
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every processed shape."""
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.float64)
        self._per_shape: dict[str, float] = {}
        self._shape_category: dict[str, str] = {}

    # --------------------------------------------------------------- process
    def _face_weights(self, mesh_or_faces: Any, num_faces: int, shape_id: str) -> np.ndarray:
        """Weight ``(F,)`` float64 of every face of one shape, before ignoring unlabelled faces."""
        if isinstance(mesh_or_faces, LabelledMesh):
            areas = None if self.weighting == "faces" else mesh_or_faces.face_areas()
            n = len(mesh_or_faces.faces)
        elif isinstance(mesh_or_faces, (int, np.integer)):
            if self.weighting != "faces":
                raise ValueError(
                    f"{shape_id}: a face count is enough only for weighting='faces'; "
                    f"weighting={self.weighting!r} needs the mesh or its face areas"
                )
            areas, n = None, int(mesh_or_faces)
        else:
            areas = np.asarray(mesh_or_faces, dtype=np.float64)
            if areas.ndim != 1:
                raise ValueError(
                    f"{shape_id}: expected a LabelledMesh or face areas of shape (F,), got shape {areas.shape}"
                )
            n = len(areas)
        if n != num_faces:
            raise LabelError(shape_id, f"{num_faces} labels given for {n} faces (one label per face needed)")
        if self.weighting == "faces":
            return np.ones(n, dtype=np.float64)
        assert areas is not None
        if not np.isfinite(areas).all() or (areas < 0).any():
            raise InvalidMeshError(shape_id, "face areas must be finite and non-negative")
        total = float(areas.sum())
        if total <= 0:
            raise InvalidMeshError(shape_id, "the mesh has zero surface area")
        if self.weighting == "area":
            return areas / total
        return sample_face_counts(areas, self.num_points, self.seed, shape_id)

    def _check_labels(self, labels: Any, shape_id: str, what: str) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.ndim != 1:
            raise LabelError(shape_id, f"{what} face labels must have shape (F,), got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise LabelError(shape_id, f"{what} face labels must be integers, got {arr.dtype}")
        return arr.astype(np.int64)

    def process(
        self,
        mesh_or_faces: LabelledMesh | np.ndarray | int,
        gt_face_labels: np.ndarray | None,
        pred_face_labels: np.ndarray,
        *,
        shape_id: str,
        category: str | None = None,
    ) -> None:
        """Add one test shape.

        Parameters
        ----------
        mesh_or_faces : LabelledMesh, (F,) float array, or int
            The mesh (its face areas are used), or its face areas directly; for
            ``weighting="faces"`` the number of faces ``F`` is enough.
        gt_face_labels : (F,) int or None
            Ground-truth label of each face, ``-1`` = unlabelled (ignored). None
            takes the mesh's own ``face_labels``.
        pred_face_labels : (F,) int
            Predicted label of each face, in ``[0, C)`` wherever the ground truth
            is labelled (anything ``>= -1`` on unlabelled faces).
        shape_id : str
            Unique identifier of the shape (also seeds its point draw).
        category : str, optional
            ShapeNet-Part: the shape's category (a key of ``category_parts``).

        Raises
        ------
        LabelError
            Label counts that do not match the face count, labels out of range
            (``str(err)`` starts with the shape id).
        InvalidMeshError
            Negative, non-finite, or all-zero face areas (area/points weighting).
        ValueError
            A shape id processed twice since the last reset; an unknown category.
        """
        shape_id = str(shape_id)
        if shape_id in self._per_shape:
            raise ValueError(f"shape {shape_id!r} was already processed (call reset() to start over)")
        if gt_face_labels is None:
            if not isinstance(mesh_or_faces, LabelledMesh) or mesh_or_faces.face_labels is None:
                raise LabelError(shape_id, "no ground-truth labels given and the mesh carries none")
            gt_face_labels = mesh_or_faces.face_labels
        gt = self._check_labels(gt_face_labels, shape_id, "ground-truth")
        pred = self._check_labels(pred_face_labels, shape_id, "predicted")
        if len(pred) != len(gt):
            raise LabelError(shape_id, f"{len(pred)} predicted labels for {len(gt)} ground-truth labels")
        c = self.num_classes
        if gt.size and (gt.min() < -1 or gt.max() >= c):
            bad = int(gt.min()) if gt.min() < -1 else int(gt.max())
            raise LabelError(shape_id, f"ground-truth label {bad} is outside [-1, {c})")
        labelled = gt >= 0
        if pred.size and pred.min() < -1:
            raise LabelError(shape_id, f"predicted label {int(pred.min())} is outside [0, {c})")
        if labelled.any():
            lp = pred[labelled]
            if lp.min() < 0 or lp.max() >= c:
                bad = int(lp.min()) if lp.min() < 0 else int(lp.max())
                raise LabelError(shape_id, f"predicted label {bad} on a labelled face is outside [0, {c})")
        if self.convention == "shapenet":
            category = DEFAULT_CATEGORY if category is None else str(category)
            if self.category_parts is not None and category not in self.category_parts:
                raise ValueError(
                    f"{shape_id}: category {category!r} is not in category_parts "
                    f"({', '.join(sorted(self.category_parts))})"
                )
        weights = self._face_weights(mesh_or_faces, len(gt), shape_id)

        gt_l, pred_l, w_l = gt[labelled], pred[labelled].copy(), weights[labelled]
        if self.convention == "partnet":
            pred_l[gt_l == 0] = 0  # "other" in the ground truth counts for no part
        conf = _confusion(gt_l, pred_l, w_l, c)
        self._confusion += conf

        inter, union = _iou_from_confusion(conf)
        if self.convention == "partnet":
            present = union[1:] > 0
            shape_miou = (
                float((inter[1:][present] / union[1:][present]).mean()) if present.any() else math.nan
            )
        else:
            assert category is not None
            parts = np.arange(c) if self.category_parts is None else np.asarray(self.category_parts[category])
            shape_miou = float(_divide(inter[parts], union[parts], 1.0).mean())
            self._shape_category[shape_id] = category
        self._per_shape[shape_id] = shape_miou

    # -------------------------------------------------------------- evaluate
    def evaluate(self) -> dict[str, Any]:
        """The scores of every shape processed since the last reset.

        Returns
        -------
        dict
            ``convention``, ``weighting``, ``absent_part`` : str
            ``label_names`` : list of str, the ``C`` labels.
            ``part_iou`` : {name: float}, accumulated ``ΣI / ΣU`` (fraction in
            ``[0, 1]``, NaN where the union is 0 and ``absent_part="nan"``);
            parts ``1..C-1`` for PartNet, all labels for ShapeNet-Part.
            ``part_miou`` : float, mean of ``part_iou`` (NaN-ignoring).
            ``shape_miou`` : float, mean of the per-shape mIoUs (NaN-ignoring).
            ``per_shape`` : {shape_id: float}, each shape's mIoU.
            ``confusion`` : (C, C) list of lists of float, accumulated weights,
            rows = ground truth, columns = prediction (after the PartNet
            masking).
            ``num_shapes`` : int.
            ShapeNet-Part only: ``instance_miou`` (= ``shape_miou``),
            ``class_miou``, ``per_category`` {category: mean shape mIoU}.
        """
        inter, union = _iou_from_confusion(self._confusion)
        absent = math.nan if self.absent_part == "nan" else 0.0
        iou = _divide(inter, union, absent)
        first = 1 if self.convention == "partnet" else 0
        part_iou = {self.label_names[i]: float(iou[i]) for i in range(first, self.num_classes)}
        result: dict[str, Any] = {
            "convention": self.convention,
            "weighting": self.weighting,
            "absent_part": self.absent_part,
            "label_names": list(self.label_names),
            "part_iou": part_iou,
            "part_miou": _nanmean(iou[first:]),
            "shape_miou": _nanmean(list(self._per_shape.values())),
            "per_shape": dict(self._per_shape),
            "confusion": self._confusion.tolist(),
            "num_shapes": len(self._per_shape),
        }
        if self.convention == "shapenet":
            by_cat: dict[str, list[float]] = {}
            for sid, value in self._per_shape.items():
                by_cat.setdefault(self._shape_category[sid], []).append(value)
            per_category = {cat: float(np.mean(v)) for cat, v in sorted(by_cat.items())}
            result["instance_miou"] = result["shape_miou"]
            result["per_category"] = per_category
            result["class_miou"] = _nanmean(list(per_category.values()))
        return result


# ------------------------------------------------------------------ reports
def _pct(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100.0 * value:.{digits}f}"


def format_iou_table(result: Mapping[str, Any], digits: int = 1) -> str:
    """A markdown table of per-part IoU (in %) followed by the mIoU lines.

    Parameters
    ----------
    result : mapping
        What :meth:`SegmentationEvaluator.evaluate` returned.
    digits : int
        Decimals of the percentages. NaN shows as ``n/a``.
    """
    lines = ["| part | IoU (%) |", "|---|---:|"]
    for name, value in result["part_iou"].items():
        lines.append(f"| {name} | {_pct(value, digits)} |")
    lines.append(f"| **part mIoU** | **{_pct(result['part_miou'], digits)}** |")
    if result.get("convention") == "shapenet":
        lines.append(f"| **instance mIoU** | **{_pct(result['instance_miou'], digits)}** |")
        lines.append(f"| **class mIoU** | **{_pct(result['class_miou'], digits)}** |")
        for cat, value in result.get("per_category", {}).items():
            lines.append(f"| {cat} (category mIoU) | {_pct(value, digits)} |")
    else:
        lines.append(f"| **shape mIoU** | **{_pct(result['shape_miou'], digits)}** |")
    lines.append(f"\n{result.get('num_shapes', 0)} shapes, weighting: {result.get('weighting', '?')}")
    return "\n".join(lines)


def confusion_to_markdown(
    confusion: Mapping[str, Any] | Sequence[Sequence[float]] | np.ndarray,
    label_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    digits: int = 1,
) -> str:
    """A markdown table of a confusion matrix (rows = ground truth, columns = prediction).

    Parameters
    ----------
    confusion : (C, C) array-like, or an ``evaluate()`` result
        The accumulated weights; a result dict supplies its own label names.
    label_names : sequence of str, optional
        Row and column names; ``0..C-1`` by default.
    normalize : bool
        Show each row as percentages of its ground-truth total (rows with no
        weight show ``-``); otherwise the raw weights.
    digits : int
        Decimals shown.
    """
    if isinstance(confusion, Mapping):
        if label_names is None:
            label_names = confusion.get("label_names")
        confusion = confusion["confusion"]
    mat = np.asarray(confusion, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {mat.shape}")
    names = [str(i) for i in range(len(mat))] if label_names is None else [str(n) for n in label_names]
    if len(names) != len(mat):
        raise ValueError(f"{len(names)} label names for a {len(mat)}x{len(mat)} confusion matrix")
    header = "| GT \\ pred | " + " | ".join(names) + " |"
    lines = [header, "|---|" + "---:|" * len(names)]
    for name, row in zip(names, mat, strict=True):
        total = row.sum()
        if normalize:
            cells = ["-" if total <= 0 else f"{100.0 * v / total:.{digits}f}" for v in row]
        else:
            cells = [f"{v:.{digits}f}" for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------- pixels
def pixel_miou(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    ignore_label: int = -1,
    partnet: bool = True,
    absent_part: str = "nan",
) -> float:
    """Pixel mIoU of rendered views, each pixel counting 1.

    Parameters
    ----------
    gt : (N,) or any shape, int
        Ground-truth label of each pixel; ``ignore_label`` (background,
        unlabelled) is ignored. Several views can be concatenated.
    pred : same shape as ``gt``, int
        Predicted labels, in ``[0, num_classes)`` wherever ``gt`` is not ignored.
    num_classes : int
        ``C``.
    ignore_label : int
        Ground-truth value to ignore.
    partnet : bool
        PartNet rules: where ``gt`` is 0 the prediction is set to 0 and the mean
        runs over classes ``1..C-1``; otherwise over all ``C`` classes.
    absent_part : {"nan", "zero"}
        Score of a class absent from both ``gt`` and ``pred``: NaN (left out of
        the mean) or 0.

    Returns
    -------
    float
        The mIoU (fraction); NaN when no class is present and
        ``absent_part="nan"``.

    Raises
    ------
    LabelError
        Shapes that differ, or labels out of range.
    ValueError
        An unknown ``absent_part``.
    """
    _check_choice("absent_part", absent_part, ABSENT_PART_RULES)
    g = np.asarray(gt).astype(np.int64).ravel()
    p = np.asarray(pred).astype(np.int64).ravel()
    if np.shape(gt) != np.shape(pred):
        raise LabelError(None, f"ground truth {np.shape(gt)} and prediction {np.shape(pred)} differ in shape")
    keep = g != ignore_label
    g, p = g[keep], p[keep].copy()
    if g.size:
        if g.min() < 0 or g.max() >= num_classes:
            raise LabelError(None, f"ground-truth pixel labels must lie in [0, {num_classes}) or be ignored")
        if p.min() < 0 or p.max() >= num_classes:
            raise LabelError(None, f"predicted pixel labels must lie in [0, {num_classes})")
    if partnet:
        p[g == 0] = 0
    inter, union = _iou_from_confusion(_confusion(g, p, None, num_classes))
    iou = _divide(inter, union, math.nan if absent_part == "nan" else 0.0)
    return _nanmean(iou[1:] if partnet else iou)
