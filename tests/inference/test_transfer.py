"""Learning-free label transfer: nearest labelled point, per-axis box alignment, view references."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.synthetic import make_shape
from mvdecor.errors import ConfigError, LabelError
from mvdecor.inference.transfer import (
    LabelTransfer,
    align_points,
    neighbour_vote,
    reference_from_mesh,
    reference_from_views,
)
from mvdecor.render import CameraScheme, Renderer


@pytest.fixture(scope="module")
def chair() -> LabelledMesh:
    return make_shape("chair", 0).normalized()


def test_transfer_onto_an_identical_mesh_reproduces_the_labels(chair):
    for align in ("box", "none"):
        transfer = LabelTransfer([reference_from_mesh(chair, samples=500)], chair.num_labels, align=align)
        np.testing.assert_array_equal(transfer.face_labels(chair), chair.face_labels)


def test_box_alignment_absorbs_per_axis_stretch(chair):
    # The same shape stretched along x and shifted: only the per-axis box alignment
    # maps its face centroids back onto the reference's own centroids.
    stretched = chair.replace(vertices=chair.vertices * np.array([1.7, 1.0, 0.6]) + 0.2, name="stretched")
    reference = reference_from_mesh(chair, samples=0)
    box = LabelTransfer([reference], chair.num_labels, align="box").face_labels(stretched)
    plain = LabelTransfer([reference], chair.num_labels, align="none").face_labels(stretched)
    np.testing.assert_array_equal(box, chair.face_labels)
    assert (plain != chair.face_labels).any()


def test_nearest_reference_wins_over_several_references(chair):
    other = make_shape("chair", 5).normalized()
    transfer = LabelTransfer(
        [reference_from_mesh(other, samples=500), reference_from_mesh(chair, samples=500)], chair.num_labels
    )
    # Every face of `chair` is at distance 0 from its own centroid in the second reference.
    np.testing.assert_array_equal(transfer.face_labels(chair), chair.face_labels)


def test_excluded_and_unknown_labels_are_never_transferred(chair):
    labels = chair.face_labels.copy()
    labels[:5] = -1
    mesh = chair.replace(face_labels=labels)
    reference = reference_from_mesh(mesh, samples=300, exclude_classes=(0,))
    assert reference.labels.min() >= 1
    predicted = LabelTransfer([reference], chair.num_labels).face_labels(chair)
    assert (
        predicted.min() >= 1
        and (predicted[chair.face_labels >= 1] == chair.face_labels[chair.face_labels >= 1]).all()
    )


def test_probabilities_with_several_neighbours(chair):
    transfer = LabelTransfer([reference_from_mesh(chair, samples=2000)], chair.num_labels, neighbours=5)
    probs = transfer.face_probabilities(chair)
    assert probs.shape == (chair.num_faces, chair.num_labels) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    labels = transfer.face_labels(chair)
    assert (probs[np.arange(len(labels)), labels] == probs.max(axis=1)).all()
    # Majority of 5 matches: most faces keep their own label, but not necessarily all.
    assert (labels == chair.face_labels).mean() > 0.9


def test_reference_from_views_uses_the_labelled_pixels_hit_points(chair):
    cameras = CameraScheme(rings=1, segments=4, resolution=48).cameras(seed=0)
    views = Renderer(chair).render(cameras)[:2]
    reference = reference_from_views(chair, views)
    expected = np.concatenate([v.hit_points[v.mask] for v in views])
    np.testing.assert_allclose(reference.points, expected, rtol=1e-6)
    np.testing.assert_array_equal(
        reference.labels, np.concatenate([chair.face_labels[v.face_ids[v.mask]] for v in views])
    )
    # Transferred back onto the mesh, the faces those views saw keep their labels.
    seen = np.unique(np.concatenate([v.face_ids[v.mask] for v in views]))
    labels = LabelTransfer([reference], chair.num_labels).face_labels(chair)
    assert (labels[seen] == chair.face_labels[seen]).mean() > 0.9


def test_user_label_images_as_view_references(chair):
    view = Renderer(chair).render(CameraScheme(rings=1, segments=4, resolution=32).cameras(seed=0))[0]
    pixel_labels = np.full(view.face_ids.shape, -1)
    pixel_labels[view.mask] = 2
    pixel_labels[:, :10] = -1  # unlabelled pixels are not references
    reference = reference_from_views(chair, [view], pixel_labels=[pixel_labels])
    assert set(reference.labels.tolist()) == {2}
    assert len(reference.points) == int((view.mask & (pixel_labels >= 0)).sum())


def test_align_points_maps_box_onto_box():
    corners = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 4.0], [1.0, 0.5, 2.0]])
    out = align_points(corners, (corners[0], corners[1]), (np.array([-1.0, -1, -1]), np.array([1.0, 1, 1])))
    np.testing.assert_allclose(out, [[-1, -1, -1], [1, 1, 1], [0, 0, 0]])
    flat = align_points(np.zeros((1, 3)), (np.zeros(3), np.zeros(3)), (np.full(3, -2.0), np.full(3, 4.0)))
    np.testing.assert_allclose(flat, [[1.0, 1.0, 1.0]])


def test_bad_transfer_arguments(chair):
    reference = reference_from_mesh(chair, samples=10)
    with pytest.raises(ConfigError, match="alignment"):
        LabelTransfer([reference], chair.num_labels, align="rigid")
    with pytest.raises(ConfigError, match="neighbours"):
        LabelTransfer([reference], chair.num_labels, neighbours=0)
    with pytest.raises(ConfigError, match="at least one"):
        LabelTransfer([], chair.num_labels)
    with pytest.raises(LabelError, match="out of range"):
        LabelTransfer([reference], 1)
    with pytest.raises(LabelError, match="no labelled surface point"):
        reference_from_mesh(chair, exclude_classes=tuple(range(chair.num_labels)))
    with pytest.raises(LabelError, match="labelled mesh"):
        reference_from_mesh(chair.replace(face_labels=None))


def test_neighbour_vote_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    for k in (1, 2, 5):
        labels = rng.integers(0, 4, size=(200, k))
        voted, probs = neighbour_vote(labels, 4)
        for row, (got, hist) in enumerate(zip(voted, probs, strict=True)):
            counts = np.bincount(labels[row], minlength=4)
            np.testing.assert_allclose(hist, counts / k)
            # The majority; among tied labels the one met first (the nearest match).
            best = counts.max()
            assert got == next(label for label in labels[row] if counts[label] == best)
        assert voted.dtype == labels.dtype and probs.dtype == np.float32


def test_saved_references_load_back_and_transfer_the_same_labels(chair, tmp_path):
    from mvdecor.errors import FileError
    from mvdecor.inference.transfer import load_references, save_references

    references = [
        reference_from_mesh(chair, samples=500, seed=0),
        reference_from_mesh(chair, samples=300, seed=1),
    ]
    path = save_references(tmp_path / "references.npz", references)
    loaded = load_references(path)
    assert [r.name for r in loaded] == [r.name for r in references]
    for got, want in zip(loaded, references, strict=True):
        np.testing.assert_array_equal(got.points, want.points)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.box_min, want.box_min)
        np.testing.assert_array_equal(got.box_max, want.box_max)
    classes = int(chair.face_labels.max()) + 1
    np.testing.assert_array_equal(
        LabelTransfer(loaded, classes).face_probabilities(chair),
        LabelTransfer(references, classes).face_probabilities(chair),
    )
    # Excluded classes' points are left out on loading, as reference_from_mesh leaves them out.
    dropped = load_references(path, exclude_classes=[1])[0]
    assert 1 not in dropped.labels and len(dropped.labels) == int((references[0].labels != 1).sum())
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(FileError, match=r"bad\.npz: not a file of transfer references"):
        load_references(tmp_path / "bad.npz")
