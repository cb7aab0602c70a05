"""Tests of the PartNet / ShapeNet-Part segmentation scores (hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import InvalidMeshError, LabelError
from mvdecor.evaluation.segmentation import (
    SegmentationEvaluator,
    confusion_to_markdown,
    format_iou_table,
    pixel_miou,
)

PARTNET_NAMES = ["other", "a", "b", "c"]


def _mesh(areas: list[float], name: str = "m") -> LabelledMesh:
    """Disjoint right triangles, the i-th scaled to area ``areas[i]`` (legs sqrt(2 a))."""
    vertices, faces = [], []
    for i, area in enumerate(areas):
        s = math.sqrt(2.0 * area)
        base = np.array([10.0 * i, 0.0, 0.0])
        vertices += [base, base + np.array([s, 0.0, 0.0]), base + np.array([0.0, s, 0.0])]
        faces.append([3 * i, 3 * i + 1, 3 * i + 2])
    return LabelledMesh(np.array(vertices), np.array(faces), name=name)


# Shape 1: four faces of area 1 (total 4, each face 1/4 of the surface).
MESH1 = _mesh([1.0, 1.0, 1.0, 1.0], "s1")
GT1 = np.array([1, 1, 2, 0])
PRED1 = np.array([1, 2, 2, 3])  # face 3: GT "other" but predicted c -> masked to 0
# Shape 2: faces of area 2, 2, 4 (total 8; surface shares 1/4, 1/4, 1/2).
MESH2 = _mesh([2.0, 2.0, 4.0], "s2")
GT2 = np.array([1, 1, 1])
PRED2 = np.array([1, 2, 2])


def _partnet(**kwargs) -> SegmentationEvaluator:
    ev = SegmentationEvaluator(PARTNET_NAMES, convention="partnet", **kwargs)
    ev.process(MESH1, GT1, PRED1, shape_id="s1")
    ev.process(MESH2, GT2, PRED2, shape_id="s2")
    return ev


def test_mesh_helper_areas():
    np.testing.assert_allclose(MESH2.face_areas(), [2.0, 2.0, 4.0])


def test_partnet_area_accumulated_iou():
    res = _partnet().evaluate()
    # Surface shares. Shape 1: a: I = 1/4 (f0), U = 1/2 (f0, f1); b: I = 1/4 (f2), U = 1/2 (f1, f2).
    # Shape 2: a: I = 1/4 (f0), U = 1 (all); b: I = 0, U = 3/4 (f1, f2).
    # Accumulated: a = (1/4 + 1/4) / (1/2 + 1) = 1/3 ; b = (1/4 + 0) / (1/2 + 3/4) = 1/5.
    # (Averaging per-shape IoUs would give a = (1/2 + 1/4) / 2 = 0.375, b = (1/2 + 0) / 2 = 0.25.)
    # (Raw areas instead of surface shares would give a = (1 + 2) / (2 + 8) = 0.3.)
    assert res["part_iou"]["a"] == pytest.approx(1 / 3)
    assert res["part_iou"]["b"] == pytest.approx(1 / 5)
    assert res["part_iou"]["a"] != pytest.approx(0.375)
    assert res["convention"] == "partnet" and res["weighting"] == "area"
    assert res["num_shapes"] == 2
    assert list(res["part_iou"]) == ["a", "b", "c"]


def test_partnet_label_zero_rule():
    res = _partnet().evaluate()
    # Face 3 of shape 1 is GT 0 and predicted 3: the prediction is masked to 0,
    # so part c appears nowhere (union 0) -> NaN, and the weight sits in confusion[0][0].
    assert math.isnan(res["part_iou"]["c"])
    conf = np.array(res["confusion"])
    assert conf[0, 0] == pytest.approx(0.25)
    assert conf[0, 3] == 0.0
    assert conf[:, 3].sum() == 0.0


def test_partnet_absent_part_nan_vs_zero():
    # nan: mIoU = nanmean(1/3, 1/5) = 4/15 ; zero: (1/3 + 1/5 + 0) / 3 = 8/45.
    res_nan = _partnet(absent_part="nan").evaluate()
    res_zero = _partnet(absent_part="zero").evaluate()
    assert res_nan["part_miou"] == pytest.approx(4 / 15)
    assert res_zero["part_iou"]["c"] == 0.0
    assert res_zero["part_miou"] == pytest.approx(8 / 45)


def test_partnet_shape_miou_over_present_parts():
    res = _partnet().evaluate()
    # Shape 1: parts present a (1/2), b (1/2); c is absent (masked) -> 0.5.
    # Shape 2: a (1/4), b (0) -> 0.125. Shape mIoU = (0.5 + 0.125) / 2 = 0.3125.
    assert res["per_shape"]["s1"] == pytest.approx(0.5)
    assert res["per_shape"]["s2"] == pytest.approx(0.125)
    assert res["shape_miou"] == pytest.approx(0.3125)
    # absent_part does not touch the shape mIoU (only present parts enter it).
    assert _partnet(absent_part="zero").evaluate()["shape_miou"] == pytest.approx(0.3125)


def test_partnet_shape_without_parts_is_left_out():
    ev = _partnet()
    # All "other": no part present -> NaN, left out of the shape mean.
    ev.process(_mesh([1.0, 1.0]), [0, 0], [1, 2], shape_id="s3")
    res = ev.evaluate()
    assert math.isnan(res["per_shape"]["s3"])
    assert res["shape_miou"] == pytest.approx(0.3125)
    assert res["num_shapes"] == 3


def test_partnet_predicted_zero_counts_as_wrong():
    ev = SegmentationEvaluator(PARTNET_NAMES)
    # Two equal faces, both GT a; one predicted 0 -> a: I = 1/2, U = 1 -> 0.5.
    ev.process(_mesh([1.0, 1.0]), [1, 1], [0, 1], shape_id="x")
    res = ev.evaluate()
    assert res["part_iou"]["a"] == pytest.approx(0.5)
    assert np.array(res["confusion"])[1, 0] == pytest.approx(0.5)


def test_faces_weighting_differs_from_area():
    res = _partnet(weighting="faces").evaluate()
    # Face counts. Shape 1: a: I 1, U 2; b: I 1, U 2. Shape 2: a: I 1, U 3; b: I 0, U 2.
    # a = 2 / 5 = 0.4 ; b = 1 / 4 = 0.25 (area gave 1/3 and 1/5).
    assert res["part_iou"]["a"] == pytest.approx(0.4)
    assert res["part_iou"]["b"] == pytest.approx(0.25)
    # A face count alone is enough for this weighting.
    ev = SegmentationEvaluator(PARTNET_NAMES, weighting="faces")
    ev.process(3, GT2, PRED2, shape_id="s2")
    assert ev.evaluate()["part_iou"]["a"] == pytest.approx(1 / 3)


def test_face_areas_instead_of_mesh():
    ev = SegmentationEvaluator(PARTNET_NAMES)
    ev.process(MESH1.face_areas(), GT1, PRED1, shape_id="s1")
    ev.process(np.array([2.0, 2.0, 4.0]), GT2, PRED2, shape_id="s2")
    assert ev.evaluate()["part_iou"] == pytest.approx(_partnet().evaluate()["part_iou"], nan_ok=True)


def test_points_converge_to_area_and_are_order_independent():
    area = _partnet().evaluate()
    pts = _partnet(weighting="points", num_points=200_000).evaluate()
    for name in ("a", "b"):
        assert abs(pts["part_iou"][name] - area["part_iou"][name]) < 0.02
    ev = SegmentationEvaluator(PARTNET_NAMES, weighting="points", num_points=200_000)
    ev.process(MESH2, GT2, PRED2, shape_id="s2")
    ev.process(MESH1, GT1, PRED1, shape_id="s1")
    swapped = ev.evaluate()
    assert swapped["confusion"] == pts["confusion"]
    assert swapped["part_iou"] == pytest.approx(pts["part_iou"], nan_ok=True)
    assert swapped["per_shape"] == pts["per_shape"]
    # Each shape contributes its num_points (no unlabelled faces here).
    assert np.sum(pts["confusion"]) == 400_000


def test_points_seed_changes_draw():
    a = _partnet(weighting="points", num_points=1000, seed=0).evaluate()
    b = _partnet(weighting="points", num_points=1000, seed=1).evaluate()
    assert a["confusion"] != b["confusion"]


def test_confusion_sums_and_unlabelled_faces():
    ev = SegmentationEvaluator(PARTNET_NAMES)
    ev.process(MESH1, GT1, PRED1, shape_id="s1")
    # Shape 2 with its big face unlabelled: only 1/2 of its surface counts.
    ev.process(MESH2, [1, 1, -1], [1, 2, -1], shape_id="s2")
    res = ev.evaluate()
    conf = np.array(res["confusion"])
    assert conf.shape == (4, 4)
    assert conf.sum() == pytest.approx(1.0 + 0.5)
    # Row sums = GT weight: other 1/4, a 1/2 + 1/2, b 1/4.
    np.testing.assert_allclose(conf.sum(axis=1), [0.25, 1.0, 0.25, 0.0])
    # Shape 2 then: a: I 1/4, U 1/2; b: I 0, U 1/4. Total a = 1/2 / 1 = 0.5, b = 1/4 / 3/4 = 1/3.
    assert res["part_iou"]["a"] == pytest.approx(0.5)
    assert res["part_iou"]["b"] == pytest.approx(1 / 3)


def test_gt_from_mesh_labels():
    mesh = MESH1.replace(face_labels=GT1, label_names=tuple(PARTNET_NAMES))
    ev = SegmentationEvaluator(PARTNET_NAMES)
    ev.process(mesh, None, PRED1, shape_id="s1")
    assert ev.evaluate()["per_shape"]["s1"] == pytest.approx(0.5)


def test_reset_clears():
    ev = _partnet()
    ev.reset()
    res = ev.evaluate()
    assert res["num_shapes"] == 0
    assert res["per_shape"] == {}
    assert np.sum(res["confusion"]) == 0.0
    assert math.isnan(res["part_miou"]) and math.isnan(res["shape_miou"])
    ev.process(MESH1, GT1, PRED1, shape_id="s1")  # the same id is accepted again
    assert ev.evaluate()["num_shapes"] == 1


SHAPENET_NAMES = ["wing", "body", "tail", "seat", "leg", "back"]
CATEGORY_PARTS = {"airplane": [0, 1, 2], "chair": [3, 4, 5]}


def _shapenet() -> SegmentationEvaluator:
    ev = SegmentationEvaluator(
        SHAPENET_NAMES, convention="shapenet", weighting="faces", category_parts=CATEGORY_PARTS
    )
    # p1: wing I 1 U 2 -> 1/2; body I 2 U 3 -> 2/3; tail absent in both -> 1. mIoU 13/18.
    ev.process(4, [0, 0, 1, 1], [0, 1, 1, 1], shape_id="p1", category="airplane")
    # p2: perfect -> 1.
    ev.process(4, [0, 1, 2, 2], [0, 1, 2, 2], shape_id="p2", category="airplane")
    # c1: seat 1/2, leg 1/2, back 1 -> 2/3.
    ev.process(4, [3, 3, 4, 5], [3, 4, 4, 5], shape_id="c1", category="chair")
    return ev


def test_shapenet_absent_in_both_counts_one():
    res = _shapenet().evaluate()
    assert res["per_shape"]["p1"] == pytest.approx(13 / 18)
    assert res["per_shape"]["p2"] == pytest.approx(1.0)
    assert res["per_shape"]["c1"] == pytest.approx(2 / 3)


def test_shapenet_instance_vs_class_average():
    res = _shapenet().evaluate()
    # Instance: (13/18 + 1 + 2/3) / 3 = 43/54. Airplane (13/18 + 1) / 2 = 31/36; chair 2/3.
    # Class: (31/36 + 2/3) / 2 = 55/72.
    assert res["instance_miou"] == pytest.approx(43 / 54)
    assert res["shape_miou"] == pytest.approx(43 / 54)
    assert res["per_category"] == pytest.approx({"airplane": 31 / 36, "chair": 2 / 3})
    assert res["class_miou"] == pytest.approx(55 / 72)
    # Accumulated part IoU over all labels: wing (1 + 1) / (2 + 1) = 2/3.
    assert res["part_iou"]["wing"] == pytest.approx(2 / 3)
    assert len(res["part_iou"]) == 6


def test_shapenet_without_categories_uses_all_labels():
    ev = SegmentationEvaluator(["x", "y", "z"], convention="shapenet", weighting="faces")
    # Face 1 is GT y, predicted z. x: I 1, U 1 -> 1; y: I 0, U 1 -> 0; z: I 0, U 1 -> 0.
    # mIoU = (1 + 0 + 0) / 3 = 1/3; no "other" masking for label 0.
    ev.process(2, [0, 1], [0, 2], shape_id="q")
    res = ev.evaluate()
    assert res["per_shape"]["q"] == pytest.approx(1 / 3)
    assert res["per_category"] == pytest.approx({"all": 1 / 3})


def test_pixel_miou_hand_case():
    gt = np.array([0, 0, 1, 1, 2, -1])
    pred = np.array([1, 0, 1, 2, 2, 1])
    # PartNet: pixel 0 masked (GT 0), pixel 5 ignored. 1: I 1 (px2), U 2 (px2, px3) -> 1/2;
    # 2: I 1 (px4), U 2 (px3, px4) -> 1/2. mIoU 0.5.
    assert pixel_miou(gt, pred, 3) == pytest.approx(0.5)
    # No masking, all classes: 0: I 1, U 2 -> 1/2; 1: I 1, U 3 (px0, px2, px3) -> 1/3; 2: 1/2.
    assert pixel_miou(gt, pred, 3, partnet=False) == pytest.approx(4 / 9)
    # Works on (H, W) views too.
    assert pixel_miou(gt.reshape(2, 3), pred.reshape(2, 3), 3) == pytest.approx(0.5)
    # Class 3 absent: NaN is left out, zero pulls the mean down: (1/2 + 1/2 + 0) / 3.
    assert pixel_miou(gt, pred, 4) == pytest.approx(0.5)
    assert pixel_miou(gt, pred, 4, absent_part="zero") == pytest.approx(1 / 3)


def test_reports():
    res = _partnet().evaluate()
    table = format_iou_table(res)
    assert "| a | 33.3 |" in table
    assert "| c | n/a |" in table
    assert "part mIoU" in table and "shape mIoU" in table
    md = confusion_to_markdown(res)
    assert md.splitlines()[0] == "| GT \\ pred | other | a | b | c |"
    # Row a: 1/4 + 1/4 on a (s1 f0, s2 f0), 1/4 + 1/4 + 1/2 on b (s1 f1, s2 f1, f2) -> 1/3, 2/3.
    assert "| a | 0.0 | 33.3 | 66.7 | 0.0 |" in md
    assert "| c | - | - | - | - |" in md
    raw = confusion_to_markdown(res["confusion"], normalize=False, digits=2)
    assert "| 1 | 0.00 | 0.50 | 1.00 | 0.00 |" in raw
    sn = format_iou_table(_shapenet().evaluate())
    assert "instance mIoU" in sn and "class mIoU" in sn


def test_invalid_options():
    with pytest.raises(ValueError, match="convention"):
        SegmentationEvaluator(PARTNET_NAMES, convention="scannet")
    with pytest.raises(ValueError, match="weighting"):
        SegmentationEvaluator(PARTNET_NAMES, weighting="volume")
    with pytest.raises(ValueError, match="absent_part"):
        SegmentationEvaluator(PARTNET_NAMES, absent_part="one")
    with pytest.raises(ValueError, match="part ids"):
        SegmentationEvaluator(SHAPENET_NAMES, convention="shapenet", category_parts={"x": [9]})


def test_label_errors():
    ev = SegmentationEvaluator(PARTNET_NAMES)
    with pytest.raises(LabelError) as err:
        ev.process(MESH1, [1, 1, 2], [1, 1, 2], shape_id="s1")  # 3 labels, 4 faces
    assert err.value.path == "s1"
    with pytest.raises(LabelError):
        ev.process(MESH1, GT1, [1, 1, 2], shape_id="s1")  # pred count mismatch
    with pytest.raises(LabelError, match="4"):
        ev.process(MESH1, [1, 1, 4, 0], PRED1, shape_id="s1")  # GT out of range
    with pytest.raises(LabelError):
        ev.process(MESH1, [1, 1, -2, 0], PRED1, shape_id="s1")
    with pytest.raises(LabelError):
        ev.process(MESH1, GT1, [1, -1, 2, 3], shape_id="s1")  # no prediction on a labelled face
    with pytest.raises(LabelError):
        ev.process(MESH1, None, PRED1, shape_id="s1")  # the mesh has no labels
    ev.process(MESH1, [1, 1, 2, -1], [1, 1, 2, -1], shape_id="ok")  # -1 where unlabelled is fine
    with pytest.raises(ValueError, match="already"):
        ev.process(MESH1, GT1, PRED1, shape_id="ok")
    with pytest.raises(InvalidMeshError):
        ev.process(np.zeros(4), GT1, PRED1, shape_id="flat")
    with pytest.raises(ValueError, match="face count"):
        ev.process(4, GT1, PRED1, shape_id="n")
    sn = SegmentationEvaluator(SHAPENET_NAMES, convention="shapenet", category_parts=CATEGORY_PARTS)
    with pytest.raises(ValueError, match="category"):
        sn.process(4, [0, 0, 1, 1], [0, 0, 1, 1], shape_id="p", category="lamp")
    with pytest.raises(LabelError):
        pixel_miou(np.array([1, 2]), np.array([1, 3]), 3)
    with pytest.raises(LabelError):
        pixel_miou(np.array([1, 2]), np.array([1]), 3)
