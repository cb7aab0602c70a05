"""Tests of the procedural labelled shapes (mvdecor.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.synthetic import CATEGORIES, OPTIONAL_LABELS, make_dataset, make_shape

ALL = sorted(CATEGORIES)


def _label_faces(mesh: LabelledMesh, label: str) -> np.ndarray:
    return mesh.face_labels == mesh.label_names.index(label)


def _centroid(mesh: LabelledMesh, label: str) -> np.ndarray:
    return mesh.triangles[_label_faces(mesh, label)].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("category", ALL)
def test_every_category_builds_a_fully_labelled_mesh(category: str) -> None:
    for seed in range(3):
        mesh = make_shape(category, seed)
        assert isinstance(mesh, LabelledMesh)
        assert mesh.name == f"{category}_{seed:04d}"
        assert mesh.label_names == CATEGORIES[category]
        assert 200 <= mesh.num_faces <= 6000
        assert mesh.face_labels is not None
        assert mesh.face_labels.min() >= 0
        assert mesh.face_labels.max() < len(CATEGORIES[category])
        assert (mesh.face_areas() > 0).all()


def test_categories_cover_the_required_ones() -> None:
    assert {"chair", "table", "lamp", "mug"} <= set(CATEGORIES)
    for category, optional in OPTIONAL_LABELS.items():
        assert set(optional) <= set(CATEGORIES[category])


@pytest.mark.parametrize("category", ALL)
def test_vocabulary_is_used(category: str) -> None:
    vocab = CATEGORIES[category]
    mandatory = set(vocab) - set(OPTIONAL_LABELS.get(category, ()))
    seen: set[str] = set()
    for seed in range(12):
        mesh = make_shape(category, seed)
        present = {vocab[i] for i in np.unique(mesh.face_labels)}
        assert mandatory <= present, f"seed {seed} misses {mandatory - present}"
        seen |= present
    assert seen == set(vocab)


@pytest.mark.parametrize("category", ALL)
def test_parts_are_instances_of_one_label(category: str) -> None:
    mesh = make_shape(category, 5)
    assert len(mesh.part_names) == len(set(mesh.part_names))
    for part, name in enumerate(mesh.part_names):
        labels = np.unique(mesh.face_labels[mesh.face_part_ids == part])
        assert len(labels) == 1, name
        label = mesh.label_names[labels[0]]
        assert name.rsplit("_", 1)[0] == label


def test_chair_legs_are_separate_parts() -> None:
    for seed in range(6):
        mesh = make_shape("chair", seed)
        legs = [n for n in mesh.part_names if n.startswith("leg_")]
        assert len(legs) >= 3
        assert len(np.unique(mesh.face_part_ids[_label_faces(mesh, "leg")])) == len(legs)


@pytest.mark.parametrize("category", ALL)
def test_same_seed_gives_identical_arrays(category: str) -> None:
    for textured in (False, True):
        a = make_shape(category, 7, textured=textured)
        b = make_shape(category, 7, textured=textured)
        for field in ("vertices", "faces", "face_labels", "face_part_ids", "face_colors"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.part_names == b.part_names
        if textured:
            np.testing.assert_array_equal(a.face_uvs, b.face_uvs)
            np.testing.assert_array_equal(a.face_texture_ids, b.face_texture_ids)
            assert len(a.textures) == len(b.textures)
            for ta, tb in zip(a.textures, b.textures, strict=True):
                np.testing.assert_array_equal(ta, tb)


@pytest.mark.parametrize("category", ALL)
def test_seeds_give_different_shapes(category: str) -> None:
    meshes = [make_shape(category, seed) for seed in range(4)]
    for i in range(len(meshes)):
        for j in range(i + 1, len(meshes)):
            a, b = meshes[i].vertices, meshes[j].vertices
            assert a.shape != b.shape or not np.allclose(a, b)


@pytest.mark.parametrize("category", ALL)
def test_normalised_and_standing_on_the_ground(category: str) -> None:
    for seed in range(6):
        mesh = make_shape(category, seed)
        norms = np.linalg.norm(mesh.vertices, axis=1)
        assert norms.max() == pytest.approx(1.0, abs=1e-9)
        lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-9)
        original = mesh.normalization.invert(mesh.vertices)
        assert original[:, 1].min() == pytest.approx(0.0, abs=1e-9)  # stood on the XZ plane
        assert np.ptp(original[:, 1]) > 0.3  # about one unit tall, +Y up


@pytest.mark.parametrize("category", ALL)
def test_faces_wound_outward(category: str) -> None:
    mesh = make_shape(category, 1)
    for part in range(len(mesh.part_names)):
        tri = mesh.triangles[mesh.face_part_ids == part]
        tri = tri - tri.reshape(-1, 3).mean(axis=0)
        volume = np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6
        assert volume > 0, mesh.part_names[part]


def test_orientation_up_and_front() -> None:
    for seed in range(4):
        chair = make_shape("chair", seed)
        seat, back = _centroid(chair, "seat"), _centroid(chair, "back")
        assert back[1] > seat[1] and back[2] < seat[2]  # the back rises at the rear (-Z)
        assert _centroid(chair, "leg")[1] < seat[1]
        table = make_shape("table", seed)
        assert _centroid(table, "top")[1] > _centroid(table, "leg")[1]
        mug = make_shape("mug", seed)
        assert _centroid(mug, "handle")[0] > _centroid(mug, "body")[0] + 0.2
        lamp = make_shape("lamp", seed)
        assert _centroid(lamp, "shade")[1] > _centroid(lamp, "base")[1]


@pytest.mark.parametrize("category", ALL)
def test_textured_shapes_carry_uvs_and_textures(category: str) -> None:
    plain = make_shape(category, 2)
    mesh = make_shape(category, 2, textured=True)
    assert mesh.has_texture
    assert mesh.face_uvs.shape == (mesh.num_faces, 3, 2)
    assert mesh.face_uvs.min() >= 0.0 and mesh.face_uvs.max() <= 1.0
    assert mesh.face_texture_ids.min() >= -1
    assert (mesh.face_texture_ids >= 0).any()
    assert set(np.unique(mesh.face_texture_ids[mesh.face_texture_ids >= 0])) == set(range(len(mesh.textures)))
    for tex in mesh.textures:
        assert tex.shape == (64, 64, 3) and tex.dtype == np.uint8
        assert tex.std() > 0
    # texturing changes appearance only
    np.testing.assert_array_equal(mesh.vertices, plain.vertices)
    np.testing.assert_array_equal(mesh.face_labels, plain.face_labels)
    np.testing.assert_array_equal(mesh.face_colors, plain.face_colors)


@pytest.mark.parametrize("category", ALL)
def test_untextured_shapes_have_material_colours(category: str) -> None:
    mesh = make_shape(category, 2)
    assert not mesh.has_texture
    assert mesh.face_texture_ids is None and mesh.face_uvs is None and mesh.textures == ()
    colors = mesh.face_colors
    assert colors.min() >= 0 and colors.max() <= 1
    for part in range(len(mesh.part_names)):  # one colour per part
        assert len(np.unique(colors[mesh.face_part_ids == part], axis=0)) == 1


@pytest.mark.parametrize("category", ALL)
def test_detail_increases_face_count(category: str) -> None:
    coarse = make_shape(category, 4)
    fine = make_shape(category, 4, detail=2)
    assert fine.num_faces > 2.5 * coarse.num_faces
    assert fine.part_names == coarse.part_names
    np.testing.assert_allclose(fine.vertices.max(axis=0), coarse.vertices.max(axis=0), atol=0.05)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError) as info:
        make_shape("sofa", 0)
    for category in CATEGORIES:
        assert category in str(info.value)
    with pytest.raises(ValueError, match="detail"):
        make_shape("chair", 0, detail=0)
    with pytest.raises(ValueError, match="seed"):
        make_shape("chair", -1)
    with pytest.raises(ValueError, match="sofa"):
        make_dataset(["chair", "sofa"])
    with pytest.raises(ValueError, match="textured_fraction"):
        make_dataset(textured_fraction=1.5)


def test_make_dataset_sizes_and_determinism() -> None:
    shapes = make_dataset(shapes_per_category=4, seed=0, textured_fraction=0.5)
    assert len(shapes) == 4 * len(CATEGORIES)
    assert len({m.name for m in shapes}) == len(shapes)
    for category in CATEGORIES:
        group = [m for m in shapes if m.name.startswith(category + "_")]
        assert len(group) == 4
        assert all(m.label_names == CATEGORIES[category] for m in group)
        assert sum(m.has_texture for m in group) == 2
    again = make_dataset(shapes_per_category=4, seed=0, textured_fraction=0.5)
    for a, b in zip(shapes, again, strict=True):
        assert a.name == b.name and a.has_texture == b.has_texture
        np.testing.assert_array_equal(a.vertices, b.vertices)
    other = make_dataset(["mug"], shapes_per_category=4, seed=1, textured_fraction=0.5)
    assert {m.name for m in other}.isdisjoint(m.name for m in shapes)


def test_make_dataset_options() -> None:
    assert make_dataset(["mug", "chair"], shapes_per_category=0) == []
    shapes = make_dataset("chair", shapes_per_category=8)
    assert [m.name for m in shapes] == [f"chair_{i:04d}" for i in range(8)]
    assert sum(m.has_texture for m in shapes) == 2  # default textured_fraction 0.25
    assert not any(m.has_texture for m in make_dataset(["lamp"], 3, textured_fraction=0.0))
    assert all(m.has_texture for m in make_dataset(["lamp"], 3, textured_fraction=1.0))
