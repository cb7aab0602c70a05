"""Labelled views: the proportion augmentation (``finetune.stretch``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tiny_setup import tiny_config

from mvdecor.errors import ConfigError
from mvdecor.train.data import ViewSource
from mvdecor.train.labelled import LabelledViewDataset, select_labelled_views

CHAIRS = "synthetic:categories=chair,n=2,textured=0"
SHAPE = "chair_0000"


@pytest.fixture(scope="module")
def chair_views():
    config = tiny_config()
    source = ViewSource(CHAIRS, config.render)
    items = select_labelled_views([SHAPE], source.num_views(SHAPE), 0, seed=0)
    return source, items, config.model.modalities


def _extent_ratio(views) -> float:
    """x extent over y extent of every hit point the views see."""
    points = np.concatenate([view.hit_points[view.mask] for view in views])
    extent = points.max(axis=0) - points.min(axis=0)
    return float(extent[0] / extent[1])


def _labelled_view(chair_views, index: int):
    """A dataset of the chair's views, its item ``index``, that view and its labels."""
    source, items, modalities = chair_views
    views = LabelledViewDataset(source, items, modalities, None, 5)
    view = source.view(SHAPE, items[index].view_index)
    return views, items[index], view, views.labels(items[index], view)


def test_no_stretch_renders_the_view_again_exactly(chair_views):
    views, item, view, labels = _labelled_view(chair_views, 2)
    same, same_labels = views.stretched(item, view, labels, np.zeros(3))
    np.testing.assert_array_equal(same.face_ids, view.face_ids)
    np.testing.assert_array_equal(same_labels, labels)
    np.testing.assert_allclose(same.hit_points, view.hit_points, atol=1e-5)


def test_stretch_scales_the_shape_along_each_axis(chair_views):
    source, items, modalities = chair_views
    views = LabelledViewDataset(source, items, modalities, None, 5)
    log_scales = np.array([0.4, 0.0, -0.2])
    plain, stretched = [], []
    for item in items:  # every camera: together they see the whole chair
        view = source.view(item.shape_id, item.view_index)
        plain.append(view)
        stretched.append(views.stretched(item, view, views.labels(item, view), log_scales)[0])
    # Normalised into the unit sphere again, so only ratios of extents survive: x / y grows by e^0.4.
    assert _extent_ratio(stretched) == pytest.approx(_extent_ratio(plain) * np.exp(0.4), rel=0.02)
    assert all(np.linalg.norm(v.hit_points[v.mask], axis=1).max() <= 1 + 1e-4 for v in stretched)


def test_stretched_labels_come_only_from_the_faces_the_view_labels(chair_views):
    views, item, view, labels = _labelled_view(chair_views, 0)
    sparse = labels.copy()
    sparse[:, : sparse.shape[1] // 2] = -1  # a user labelled only the right half of the view
    assert (sparse >= 0).any() and (labels[:, : labels.shape[1] // 2] >= 0).any()
    new_view, new_labels = views.stretched(item, view, sparse, np.array([0.3, -0.3, 0.2]))
    labelled_faces = set(view.face_ids[sparse >= 0].tolist())
    seen = new_view.face_ids[new_labels >= 0]
    assert len(seen) and set(seen.tolist()) <= labelled_faces
    # Each labelled face keeps its label, and what the new view sees of other faces is unlabelled.
    mesh_labels = views.source.mesh(SHAPE).face_labels
    np.testing.assert_array_equal(new_labels[new_labels >= 0], mesh_labels[seen])
    unlabelled_face = new_view.mask & ~np.isin(new_view.face_ids, list(labelled_faces))
    assert unlabelled_face.any() and (new_labels[unlabelled_face] == -1).all()


def test_stretch_is_drawn_per_item_and_off_keeps_the_draws(chair_views):
    source, items, modalities = chair_views
    plain = LabelledViewDataset(source, items, modalities, None, 5, seed=3)
    off = LabelledViewDataset(source, items, modalities, None, 5, seed=3, stretch=0.0, stretch_prob=1.0)
    always = LabelledViewDataset(source, items, modalities, None, 5, seed=3, stretch=0.3, stretch_prob=1.0)
    half = LabelledViewDataset(source, items, modalities, None, 5, seed=3, stretch=0.3, stretch_prob=0.5)
    for index in range(4):
        np.testing.assert_array_equal(off[index]["inputs"], plain[index]["inputs"])
        changed = always[index]
        assert not np.array_equal(changed["inputs"], plain[index]["inputs"])
        assert (changed["labels"] >= 0).any()
        np.testing.assert_array_equal(always[index]["inputs"], changed["inputs"])  # seeded per item
    stretched = [not np.array_equal(half[i]["inputs"], plain[i]["inputs"]) for i in range(30)]
    assert 6 < sum(stretched) < 24


def test_stretch_settings_are_checked():
    config = tiny_config()
    with pytest.raises(ConfigError, match="stretch"):
        replace(config.finetune, stretch=-0.1)
    with pytest.raises(ConfigError, match="stretch_prob"):
        replace(config.finetune, stretch_prob=1.5)


def test_finetune_stretches_the_views_it_trains_on(tmp_path, monkeypatch):
    from mvdecor.train.finetune import finetune

    config = tiny_config()
    finetune_cfg = replace(config.finetune, iterations=2, views_per_batch=2, num_workers=0, device="cpu",
                           ssl_weight=0.0, stretch=0.3, stretch_prob=1.0)  # fmt: skip
    calls = []
    original = LabelledViewDataset.stretched

    def counted(self, item, view, labels, log_scales):
        calls.append(np.asarray(log_scales))
        return original(self, item, view, labels, log_scales)

    monkeypatch.setattr(LabelledViewDataset, "stretched", counted)
    run = finetune(replace(config, finetune=finetune_cfg), CHAIRS, tmp_path / "ft", labelled_shapes=[SHAPE],
                   progress=False)  # fmt: skip
    assert run.step == 2
    assert len(calls) == 4  # every view of both steps
    assert all(np.abs(scales).max() <= 0.3 and scales.shape == (3,) for scales in calls)


# ----------------------------------------------------------- finetune.spread_labels


def _brute_force_fill(mesh, labels: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Each unseen face given the label of the labelled face whose centroid is nearest, by a full scan."""
    centroids = mesh.triangles.mean(axis=1)
    known = np.flatnonzero(labels >= 0)
    out = labels.copy()
    for face in np.flatnonzero(~seen):
        gaps = np.linalg.norm(centroids[known] - centroids[face], axis=1)
        out[face] = labels[known[np.argmin(gaps)]]
    return out


def test_spread_labels_give_the_seen_faces_their_views_labels(chair_views):
    from mvdecor.render.views import seen_faces
    from mvdecor.train.labelled import spread_view_labels

    source, items, modalities = chair_views
    labelled = [items[0], items[5]]
    views = LabelledViewDataset(source, labelled, modalities, None, 5)
    spread_items, face_labels = spread_view_labels(views, labelled, len(items), fill=False)
    mesh = source.mesh(SHAPE)
    seen = seen_faces([source.view(SHAPE, item.view_index) for item in labelled], mesh.num_faces)
    assert 0 < seen.sum() < mesh.num_faces  # two views see part of the chair, not all of it
    np.testing.assert_array_equal(face_labels[SHAPE][seen], mesh.face_labels[seen])
    assert (face_labels[SHAPE][~seen] == -1).all()
    # Every camera of the shape is now a labelled view, labelled through those faces only.
    assert [item.view_index for item in spread_items] == list(range(len(items)))
    spread = LabelledViewDataset(source, spread_items, modalities, None, 5, face_labels=face_labels)
    other = source.view(SHAPE, 3)
    other_labels = spread.labels(spread_items[3], other)
    on_seen = other.mask & seen[np.maximum(other.face_ids, 0)]
    assert on_seen.any() and (other.mask & ~on_seen).any()
    np.testing.assert_array_equal(other_labels[on_seen], mesh.face_labels[other.face_ids[on_seen]])
    assert (other_labels[~on_seen] == -1).all()


def test_spread_labels_fill_the_unseen_faces_from_the_nearest_labelled_face(chair_views):
    from mvdecor.render.views import seen_faces
    from mvdecor.train.labelled import spread_view_labels

    source, items, modalities = chair_views
    labelled = [items[1]]
    views = LabelledViewDataset(source, labelled, modalities, None, 5)
    spread_items, face_labels = spread_view_labels(
        views, labelled, len(items), fill=True, exclude=[items[4], items[7]]
    )
    mesh = source.mesh(SHAPE)
    seen = seen_faces([source.view(SHAPE, items[1].view_index)], mesh.num_faces)
    truth_on_seen = np.where(seen, mesh.face_labels, -1)
    np.testing.assert_array_equal(face_labels[SHAPE], _brute_force_fill(mesh, truth_on_seen, seen))
    assert (face_labels[SHAPE] >= 0).all()
    assert [item.view_index for item in spread_items] == [v for v in range(len(items)) if v not in (4, 7)]


def test_spread_labels_keep_what_a_painted_view_leaves_unlabelled(chair_views, tmp_path):
    from PIL import Image

    from mvdecor.train.labelled import LabelledView, spread_view_labels

    source, items, modalities = chair_views
    view = source.view(SHAPE, items[0].view_index)
    truth = view.face_labels(source.mesh(SHAPE).face_labels)
    painted = np.where(truth >= 0, truth, 255).astype(np.uint8)
    painted[:, : painted.shape[1] // 2] = 255  # the user painted the right half only
    path = tmp_path / "view_0.png"
    Image.fromarray(painted, mode="L").save(path)
    item = LabelledView(SHAPE, items[0].view_index, path)
    views = LabelledViewDataset(source, [item], modalities, None, 5)
    _, face_labels = spread_view_labels(views, [item], len(items), fill=False)
    painted_faces = np.unique(view.face_ids[painted != 255])
    labelled_faces = np.flatnonzero(face_labels[SHAPE] >= 0)
    np.testing.assert_array_equal(labelled_faces, painted_faces)
    np.testing.assert_array_equal(
        face_labels[SHAPE][labelled_faces], source.mesh(SHAPE).face_labels[labelled_faces]
    )


def test_spread_labels_setting_is_checked():
    with pytest.raises(ConfigError, match="spread_labels"):
        replace(tiny_config().finetune, spread_labels="everywhere")


@pytest.mark.parametrize("method", ["network", "nearest"])
def test_finetune_spreads_two_labelled_views_over_every_view(tmp_path, method):
    import json

    from mvdecor.train.finetune import finetune

    config = tiny_config()
    base = replace(config.finetune, method=method, iterations=2, views_per_batch=2, num_workers=0,
                   device="cpu", ssl_weight=0.0, views_per_shape=2)  # fmt: skip
    records = {}
    for mode in ("off", "fill"):
        cfg = replace(config, finetune=replace(base, spread_labels=mode))
        finetune(cfg, CHAIRS, tmp_path / mode, labelled_shapes=[SHAPE], progress=False)
        records[mode] = json.loads((tmp_path / mode / "run.json").read_text())
    views = ViewSource(CHAIRS, config.render).num_views(SHAPE)
    assert records["off"]["labelled_views"] == 2
    assert records["fill"]["labelled_views"] == views
    if method == "network":
        assert records["fill"]["spread_labels"] == {"from_views": 2}
    else:  # the bank holds the spread views' pixels
        assert records["fill"]["bank_pixels"] > records["off"]["bank_pixels"]
