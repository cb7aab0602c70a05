"""The learned-deformation baseline: Chamfer distance, identity, training, label transfer, resume, config."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from mvdecor.config import DeformConfig, load_config
from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.synthetic import make_shape
from mvdecor.errors import ConfigError, LabelError
from mvdecor.inference.transfer import LabelTransfer, align_points, reference_from_mesh
from mvdecor.models.checkpoints import CheckpointError, save_checkpoint
from mvdecor.points import deformation
from mvdecor.points.deformation import (
    DeformationNet,
    DeformationTransfer,
    chamfer_distance,
    load_deformation,
    train_deformation,
)

#: Tiny settings: a run of 60 steps takes about two seconds of one core.
TINY = DeformConfig(
    num_points=256,
    width=16,
    iterations=60,
    lr=1e-2,
    pairs_per_batch=2,
    checkpoint_every=20,
    log_every=10,
    transfer_samples=2000,
    device="cpu",
)


@pytest.fixture(scope="module")
def chair() -> LabelledMesh:
    return make_shape("chair", 0)


@pytest.fixture(scope="module")
def warped(chair) -> LabelledMesh:
    """The chair tapered: wide at the feet, narrow at the top, which no per-axis box alignment undoes."""
    v = chair.vertices
    height = (v[:, 1] - v[:, 1].min()) / np.ptp(v[:, 1])
    taper = 1.6 - 0.8 * height
    return chair.replace(vertices=np.c_[v[:, 0] * taper, v[:, 1], v[:, 2] * taper], name="warped")


@pytest.fixture(scope="module")
def trained(chair, warped, tmp_path_factory) -> DeformationNet:
    path = train_deformation(TINY, [chair, warped], out=tmp_path_factory.mktemp("run"), progress=False)
    return load_deformation(path)[0]


def _transfer(network: DeformationNet, labelled: list[LabelledMesh], **kwargs) -> DeformationTransfer:
    return DeformationTransfer(
        network,
        labelled,
        labelled[0].num_labels,
        num_points=TINY.num_points,
        samples=TINY.transfer_samples,
        **kwargs,
    )


def test_chamfer_distance_matches_a_double_loop():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 7, 3, generator=gen, dtype=torch.float64), torch.rand(2, 5, 3, generator=gen)
    b = b.double()
    expected = []
    for pair in range(2):
        ab = [min(float(((p - q) ** 2).sum()) for q in b[pair]) for p in a[pair]]
        ba = [min(float(((p - q) ** 2).sum()) for p in a[pair]) for q in b[pair]]
        expected.append(sum(ab) / len(ab) + sum(ba) / len(ba))
    np.testing.assert_allclose(chamfer_distance(a, b).numpy(), expected, rtol=1e-12)
    # The k-d tree (CPU) and the distance matrix (GPU) find the same neighbours.
    for k in (1, 3):
        kd, dense = deformation._nearest(a, b, k, dense=False), deformation._nearest(a, b, k, dense=True)
        np.testing.assert_array_equal(kd.numpy(), dense.numpy())


def test_chamfer_distance_has_gradients_that_pull_the_clouds_together():
    a = torch.tensor([[[0.0, 0.0, 0.0]]], requires_grad=True)
    b = torch.tensor([[[1.0, 0.0, 0.0]]])
    chamfer_distance(a, b).sum().backward()
    assert a.grad[0, 0, 0] < 0 and float(chamfer_distance(a.detach(), b)[0]) == pytest.approx(2.0)


def test_a_shape_deformed_onto_itself_does_not_move_and_keeps_its_labels(chair, warped):
    # h(x, s, t) - h(x, s, s) vanishes for equal codes whatever the weights: randomise them all.
    torch.manual_seed(0)
    network = DeformationNet(16)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0, 0.3)
    transfer = _transfer(network, [chair])
    np.testing.assert_allclose(transfer.deform(0, chair), transfer.references[0].points, atol=1e-9)
    labels, probs = transfer.predict(chair)
    np.testing.assert_array_equal(labels, chair.face_labels)
    assert (
        labels.dtype == np.int64
        and probs.dtype == np.float32
        and probs.shape == (chair.num_faces, chair.num_labels)
    )
    np.testing.assert_array_equal(probs.argmax(axis=1), labels)
    # Not a vacuous check: the same network moves points towards another shape.
    aligned = align_points(
        transfer.references[0].points, deformation._mesh_box(chair), deformation._mesh_box(warped)
    )
    assert np.abs(transfer.deform(0, warped) - aligned).max() > 1e-3
    assert transfer.fit(chair)[0] < 1e-6 < transfer.fit(warped)[0]


def test_training_lowers_the_chamfer_distance_of_a_pair(chair, warped, trained):
    # Before training the decoder's last layer is zero: the deformation is the box alignment alone.
    before = _transfer(DeformationNet(TINY.width), [chair]).fit(warped)[0]
    after = _transfer(trained, [chair]).fit(warped)[0]
    assert after < 0.8 * before  # 0.58-0.69 over seeds 0-2


def test_a_warped_copy_gets_its_labels_back(chair, warped, trained):
    labels = _transfer(trained, [chair]).face_labels(warped)
    accuracy = (labels == chair.face_labels).mean()
    reference = reference_from_mesh(chair, samples=TINY.transfer_samples)
    box_only = LabelTransfer([reference], chair.num_labels).face_labels(warped)
    # 0.974-0.993 over seeds 0-2; the box alignment alone: 0.953.
    assert accuracy >= 0.96 and accuracy > (box_only == chair.face_labels).mean()


def test_the_best_fitting_labelled_shape_is_used(chair, warped, trained):
    other = make_shape("chair", 7)
    transfer = _transfer(trained, [other, chair])
    assert transfer.fit(chair).argmin() == 1
    np.testing.assert_array_equal(transfer.face_labels(chair), chair.face_labels)


def test_all_labelled_shapes_pool_their_deformed_points(chair, warped, trained):
    # Two copies of the chair labelled differently fit equally well: "best" keeps the first,
    # "all" pools both, so each face's two nearest deformed points carry one label of each.
    relabelled = chair.replace(face_labels=(chair.face_labels + 1) % chair.num_labels, name="relabelled")
    best = _transfer(trained, [chair, relabelled])
    pooled = _transfer(trained, [chair, relabelled], neighbours=2, combine="all")
    _, best_probs = best.predict(chair)
    labels, probs = pooled.predict(chair)
    np.testing.assert_array_equal(best_probs.argmax(axis=1), chair.face_labels)
    assert (best_probs.max(axis=1) == 1).all()
    expected = np.zeros_like(probs)
    rows = np.arange(chair.num_faces)
    expected[rows, chair.face_labels] += 0.5
    expected[rows, relabelled.face_labels] += 0.5
    np.testing.assert_allclose(probs, expected)
    # Both copies' centroids lie at distance 0: the tie goes to one of the two labels.
    assert ((labels == chair.face_labels) | (labels == relabelled.face_labels)).all()
    # One labelled shape: the two choices agree exactly, on a shape the deformation must move.
    one_best, one_all = _transfer(trained, [chair]), _transfer(trained, [chair], combine="all")
    np.testing.assert_array_equal(one_best.face_labels(warped), one_all.face_labels(warped))
    # Pooling a poorly fitting shape still predicts only valid labels.
    other = make_shape("chair", 7)
    mixed = _transfer(trained, [other, chair], combine="all").face_labels(warped)
    assert mixed.min() >= 0 and mixed.max() < chair.num_labels
    with pytest.raises(ConfigError, match=r"deform\.combine"):
        _transfer(trained, [chair], combine="vote")


def test_excluded_classes_and_unknown_labels_are_never_predicted(chair, warped, trained):
    labels = chair.face_labels.copy()
    labels[: len(labels) // 3] = -1
    labelled = chair.replace(face_labels=labels)
    for neighbours in (1, 5):
        transfer = _transfer(trained, [labelled], exclude_classes=(0,), neighbours=neighbours)
        predicted, probs = transfer.predict(warped)
        assert predicted.min() >= 1 and (probs[:, 0] == 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(LabelError, match="no labelled surface point"):
        _transfer(trained, [chair], exclude_classes=range(chair.num_labels))
    with pytest.raises(LabelError, match="out of range"):
        DeformationTransfer(trained, [chair], num_classes=2)


def test_resume_continues_from_the_saved_step(chair, warped, tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, iterations=10, checkpoint_every=4)
    unbroken = load_deformation(
        train_deformation(config, [chair, warped], out=tmp_path / "a", progress=False)
    )

    # A run that crashes while drawing the batch of step 7 (after its step-4 checkpoint) ...
    real, calls = deformation._pair_batch, itertools.count()

    def crash_at_step_seven(*args, **kwargs):
        if next(calls) == 6:
            raise RuntimeError("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(deformation, "_pair_batch", crash_at_step_seven)
    with pytest.raises(RuntimeError, match="crash"):
        train_deformation(config, [chair, warped], out=tmp_path / "b", progress=False)
    assert load_deformation(tmp_path / "b" / "last.pt")[2] == 4
    # ... and is run again: it resumes at step 4 and ends where the unbroken run did.
    drawn = itertools.count()

    def counted(*args, **kwargs):
        next(drawn)
        return real(*args, **kwargs)

    monkeypatch.setattr(deformation, "_pair_batch", counted)
    resumed = load_deformation(train_deformation(config, [chair, warped], out=tmp_path / "b", progress=False))
    assert next(drawn) == 6 and resumed[2] == unbroken[2] == 10
    for name, value in unbroken[0].state_dict().items():
        torch.testing.assert_close(resumed[0].state_dict()[name], value, rtol=1e-6, atol=1e-7)
    # A finished run returns at once, and another width is refused, not silently mixed.
    assert (
        train_deformation(config, [chair], out=tmp_path / "b", progress=False) == tmp_path / "b" / "last.pt"
    )
    with pytest.raises(CheckpointError, match=r"deform\.width 16"):
        train_deformation(dataclasses.replace(config, width=8), [chair], out=tmp_path / "b", progress=False)


def test_other_checkpoints_are_refused(chair, tmp_path):
    path = save_checkpoint(tmp_path / "seg.pt", {"model": {}, "kind": "segmentation"})
    with pytest.raises(CheckpointError, match="not a deformation checkpoint"):
        DeformationTransfer.from_checkpoint(path, [chair], 4, device="cpu")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_points": 0}, "deform.num_points must be >= 1, got 0"),
        ({"lr": 0}, "deform.lr must be > 0"),
        ({"chamfer_weight": 0}, "deform.chamfer_weight must be > 0"),
        ({"smoothness_weight": -1}, "deform.smoothness_weight must be >= 0"),
        ({"num_points": 8, "neighbours": 8}, "deform.neighbours must be < deform.num_points (8), got 8"),
        ({"device": "gpu"}, "deform.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ({"width": 1.5}, "deform.width must be an integer, got 1.5"),
        ({"combine": "vote"}, "deform.combine must be one of best, all, got 'vote'"),
    ],
)
def test_bad_config_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config("cpu", {"deform": overrides}, overrides_source="command line")
    assert str(info.value).startswith(f"command line: {message}")


def test_presets_have_a_deform_section():
    cpu, paper = load_config("cpu").deform, load_config("paper").deform
    assert paper == DeformConfig() and cpu.iterations < paper.iterations and cpu.width <= paper.width
    with pytest.raises(ConfigError, match=r"deform\.pairs_per_batch"):
        DeformConfig(pairs_per_batch=0)
