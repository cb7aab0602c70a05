"""The shapenet_part dataset adapter: point labels carried onto ShapeNetCore meshes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvdecor.data.datasets import DATASETS, open_dataset
from mvdecor.data.shapenet_part import (
    PART_NAMES,
    LabelTransferWarning,
    MissingMeshWarning,
    ShapeNetPartDataset,
    global_label_offsets,
    transfer_point_labels,
)
from mvdecor.errors import ConfigError, LabelError

UNIT_BOX = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float
)
BOX_FACES = np.array(
    [
        [0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
        [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],
    ]
)  # fmt: skip

# Boxes (low corner, high corner, 1-based part label): an asymmetric "airplane"
# (body, wing on one side, tail, engine under the wing) and a "mug" (handle, body).
AIRPLANE = [
    ((0.0, 0.0, 0.0), (4.0, 1.0, 1.0), 1),
    ((1.5, 0.4, 1.3), (2.5, 0.6, 3.0), 2),
    ((3.5, 1.3, 0.3), (4.0, 2.0, 0.7), 3),
    ((1.8, -0.7, 1.8), (2.3, -0.2, 2.3), 4),
]
MUG = [((1.3, 0.2, 0.4), (1.5, 0.8, 0.6), 1), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 2)]
SYNSETS = {"Airplane": "02691156", "Mug": "03797390"}


def boxes_mesh(boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, faces and 1-based face labels of a mesh of boxes."""
    vertices = np.concatenate([np.asarray(lo) + UNIT_BOX * (np.asarray(hi) - lo) for lo, hi, _ in boxes])
    faces = np.concatenate([BOX_FACES + 8 * i for i in range(len(boxes))])
    labels = np.repeat([label for _, _, label in boxes], 12)
    return vertices, faces, labels


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def sample_points(vertices, faces, labels, n=1500, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted points on the faces, each with its face's label."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces]
    areas = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), n, p=areas / areas.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return points, labels[face]


def to_part_frame(points: np.ndarray) -> np.ndarray:
    """The mesh frame -> another frame: axes swapped and flipped, scaled, shifted."""
    swapped = np.stack([-points[:, 2], points[:, 1], points[:, 0]], axis=1)
    return swapped * 0.37 + [0.1, -0.2, 0.3]


def make_release(tmp_path: Path, variant: str, *, missing_mesh: bool = False) -> tuple[Path, Path]:
    """A tiny ShapeNet-Part release (``v0`` or ``normal``) and ShapeNetCore folder."""
    parts, meshes = tmp_path / f"parts_{variant}", tmp_path / "core"
    parts.mkdir()
    (parts / "synsetoffset2category.txt").write_text("".join(f"{c}\t{s}\n" for c, s in SYNSETS.items()))
    offsets = global_label_offsets()
    models = [("Airplane", "plane1", AIRPLANE), ("Mug", "mug1", MUG)]
    if missing_mesh:
        models.append(("Airplane", "plane_without_mesh", AIRPLANE))
    for category, model, boxes in models:
        synset = SYNSETS[category]
        vertices, faces, labels = boxes_mesh(boxes)
        if model != "plane_without_mesh":
            mesh_file = "models/model_normalized.obj" if category == "Airplane" else "model.obj"
            write_obj(meshes / synset / model / mesh_file, vertices, faces)
        points, point_labels = sample_points(vertices, faces, labels)
        points = to_part_frame(points)
        if variant == "v0":
            (parts / synset / "points").mkdir(parents=True, exist_ok=True)
            (parts / synset / "points_label").mkdir(parents=True, exist_ok=True)
            np.savetxt(parts / synset / "points" / f"{model}.pts", points, fmt="%.6f")
            np.savetxt(parts / synset / "points_label" / f"{model}.seg", point_labels, fmt="%d")
        else:
            (parts / synset).mkdir(parents=True, exist_ok=True)
            normals = np.zeros_like(points)
            global_labels = point_labels - 1 + offsets[category]
            table = np.column_stack([points, normals, global_labels])
            np.savetxt(parts / synset / f"{model}.txt", table, fmt="%.6f")
    return parts, meshes


def test_part_name_table():
    counts = {c: len(n) for c, n in PART_NAMES.items()}
    assert counts == {
        "Airplane": 4, "Bag": 2, "Cap": 2, "Car": 4, "Chair": 4, "Earphone": 3, "Guitar": 3, "Knife": 2,
        "Lamp": 4, "Laptop": 2, "Motorbike": 6, "Mug": 2, "Pistol": 3, "Rocket": 3, "Skateboard": 3,
        "Table": 3,
    }  # fmt: skip
    assert sum(counts.values()) == 50
    assert global_label_offsets()["Mug"] == 36 and global_label_offsets()["Table"] == 47
    assert "shapenet_part" in DATASETS


@pytest.mark.parametrize("variant", ["v0", "normal"])
def test_labels_transferred_to_every_face(tmp_path, variant):
    parts, meshes = make_release(tmp_path, variant)
    ds = open_dataset(f"shapenet_part:root={parts},meshes={meshes}")
    assert isinstance(ds, ShapeNetPartDataset)
    assert ds.shape_ids() == ["Airplane_plane1", "Mug_mug1"]
    assert ds.categories() == {"Airplane": ["Airplane_plane1"], "Mug": ["Mug_mug1"]}
    assert ds.label_names == ("body", "wing", "tail", "engine")
    assert ds.label_names_of("Mug") == ("handle", "body")
    for shape_id, boxes in (("Airplane_plane1", AIRPLANE), ("Mug_mug1", MUG)):
        mesh = ds.load(shape_id)
        _, _, expected = boxes_mesh(boxes)
        assert mesh.name == shape_id
        assert mesh.face_labels.tolist() == (expected - 1).tolist()
        assert mesh.label_names == PART_NAMES[ds.category_of(shape_id)]
        assert ds.transfer_agreement(shape_id) > 0.99
    assert open_dataset(ds.spec).shape_ids() == ds.shape_ids()


@pytest.mark.parametrize(
    "part_from_mesh",
    [
        [[0, 0, -1], [0, 1, 0], [1, 0, 0]],  # the swap of the fixture releases
        [[0, 1, 0], [-1, 0, 0], [0, 0, -1]],  # one that is not among the preferred turns
    ],
)
def test_transfer_finds_the_axis_permutation(part_from_mesh):
    vertices, faces, labels = boxes_mesh(AIRPLANE)
    points, point_labels = sample_points(vertices, faces, labels - 1, n=1200, seed=3)
    matrix = np.array(part_from_mesh, float)
    transfer = transfer_point_labels(vertices, faces, points @ matrix.T * 2.5 - 7.0, point_labels)
    assert transfer.face_labels.tolist() == (labels - 1).tolist()
    assert transfer.agreement > 0.99 and transfer.mean_distance < 0.02
    np.testing.assert_array_equal(transfer.rotation @ matrix, np.eye(3))  # it undoes the swap


def test_missing_mesh_skipped_with_one_warning(tmp_path):
    parts, meshes = make_release(tmp_path, "v0", missing_mesh=True)
    with pytest.warns(
        MissingMeshWarning, match="1 ShapeNet-Part models have no mesh.*Airplane_plane_without_mesh"
    ):
        ds = ShapeNetPartDataset(parts, meshes)
    assert ds.shape_ids() == ["Airplane_plane1", "Mug_mug1"]
    assert ds.skipped == [("Airplane_plane_without_mesh", "no mesh")]


def test_category_filter_and_official_split(tmp_path):
    parts, meshes = make_release(tmp_path, "v0")
    split_dir = parts / "train_test_split"
    split_dir.mkdir()
    (split_dir / "shuffled_train_file_list.json").write_text(json.dumps(["shape_data/02691156/plane1"]))
    (split_dir / "shuffled_val_file_list.json").write_text(json.dumps([]))
    (split_dir / "shuffled_test_file_list.json").write_text(json.dumps(["shape_data/03797390/mug1"]))
    ds = ShapeNetPartDataset(parts, meshes)
    assert ds.official_split() == {
        "Airplane": {"train": ["Airplane_plane1"], "test": []},
        "Mug": {"train": [], "test": ["Mug_mug1"]},
    }
    only_mugs = open_dataset(f"shapenet_part:root={parts},meshes={meshes},categories=mug")
    assert only_mugs.shape_ids() == ["Mug_mug1"] and only_mugs.label_names == ("handle", "body")
    with pytest.raises(ConfigError, match="unknown categories"):
        open_dataset(f"shapenet_part:root={parts},meshes={meshes},categories=Sofa")
    with pytest.raises(ConfigError, match="needs root=PARTS_ROOT,meshes=SHAPENET_ROOT"):
        open_dataset(f"shapenet_part:root={parts}")


def test_bad_label_files_name_the_file(tmp_path):
    parts, meshes = make_release(tmp_path, "v0")
    seg = parts / "02691156" / "points_label" / "plane1.seg"
    labels = seg.read_text().split()
    seg.write_text("\n".join(labels[:-1]) + "\n")
    ds = ShapeNetPartDataset(parts, meshes)
    with pytest.raises(LabelError, match="1499 labels for 1500 points") as info:
        ds.load("Airplane_plane1")
    assert info.value.path == str(seg)
    seg.write_text("\n".join(["5", *labels[1:]]) + "\n")
    with pytest.raises(LabelError, match=r"part label 5 is outside 1\.\.4") as info:
        ds.load("Airplane_plane1")
    assert info.value.path == str(seg)

    parts_n, meshes_n = make_release(tmp_path, "normal")
    txt = parts_n / "03797390" / "mug1.txt"
    rows = txt.read_text().splitlines()
    txt.write_text("\n".join([" ".join([*rows[0].split()[:6], "0"]), *rows[1:]]) + "\n")
    with pytest.raises(LabelError, match=r"part label 0 is outside 36\.\.37") as info:
        ShapeNetPartDataset(parts_n, meshes_n).load("Mug_mug1")
    assert info.value.path == str(txt)


def test_poor_agreement_warns(tmp_path):
    parts, meshes = make_release(tmp_path, "v0")
    seg = parts / "02691156" / "points_label" / "plane1.seg"
    scrambled = np.random.default_rng(0).integers(1, 5, size=1500)
    np.savetxt(seg, scrambled, fmt="%d")
    ds = ShapeNetPartDataset(parts, meshes)
    with pytest.warns(LabelTransferWarning, match="Airplane_plane1: only"):
        ds.load("Airplane_plane1")
    assert ds.transfer_agreement("Airplane_plane1") < 0.8
