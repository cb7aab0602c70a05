"""Part-label pictures of several views, the vote-weight picture, and the layout helpers."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.data.synthetic import make_shape
from mvdecor.inference.fusion import FaceVoter, view_weight
from mvdecor.render import CameraScheme, Renderer
from mvdecor.viz import label_palette, legend_strip, part_labels_sheet, stack_images, vote_weight_sheet
from mvdecor.viz.images import heat_to_rgb


@pytest.fixture(scope="module")
def chair_views():
    mesh = make_shape("chair", 0)
    cameras = CameraScheme(resolution=32).cameras(0)
    renderer = Renderer(mesh)
    return mesh, [renderer.render_view(cameras, i) for i in (3, 8, 15)]


def random_probs(rng: np.random.Generator, masks, num_classes: int, sharpness: float) -> list[np.ndarray]:
    out = []
    for mask in masks:
        logits = rng.normal(size=(num_classes, *mask.shape)) * sharpness
        probs = np.exp(logits - logits.max(axis=0))
        out.append((probs / probs.sum(axis=0)).astype(np.float32))
    return out


def test_vote_weight_picture_uses_the_fusion_weights(chair_views):
    mesh, views = chair_views
    rng = np.random.default_rng(0)
    masks = [v.mask for v in views]
    # Views from confident to uncertain, so the weights differ by orders of magnitude.
    probs = [random_probs(rng, [m], 5, s)[0] for m, s in zip(masks, (8.0, 2.0, 0.3), strict=True)]
    picture = vote_weight_sheet(probs, masks, mesh.label_names, gamma=20.0, min_panel_size=0)
    expected = [view_weight(p, m, 20.0) for p, m in zip(probs, masks, strict=True)]
    np.testing.assert_array_equal(picture.weights, expected)
    assert picture.weights[0] > picture.weights[1] > picture.weights[2]
    # The voter multiplies each view's votes by the same weights.
    voter = FaceVoter(mesh.num_faces, 5, gamma=20.0)
    voted = [voter.add_view(v.face_ids, p) for v, p in zip(views, probs, strict=True)]
    np.testing.assert_allclose(picture.weights, voted, rtol=1e-5)
    assert picture.image.dtype == np.uint8 and picture.image.ndim == 3
    assert picture.image.shape[1] >= 3 * 32
    for labels, p, mask in zip(picture.predicted, probs, masks, strict=True):
        np.testing.assert_array_equal(labels[mask], p.argmax(axis=0)[mask])
        assert (labels[~mask] == -1).all()


def test_vote_weight_picture_honours_excluded_classes(chair_views):
    _, views = chair_views
    masks = [v.mask for v in views[:2]]
    probs = random_probs(np.random.default_rng(1), masks, 4, 3.0)
    picture = vote_weight_sheet(probs, masks, exclude_classes=[0], min_panel_size=0)
    for labels, mask in zip(picture.predicted, masks, strict=True):
        assert (labels[mask] != 0).all()
    np.testing.assert_array_equal(
        picture.weights, [view_weight(p, m) for p, m in zip(probs, masks, strict=True)]
    )
    with pytest.raises(ValueError, match="masks"):
        vote_weight_sheet(probs, masks[:1])


def test_part_labels_sheet_shows_every_view_and_column(chair_views):
    mesh, views = chair_views
    names = mesh.label_names
    wrong = np.roll(mesh.face_labels, 5)
    sheet = part_labels_sheet(
        views, {"ground truth": mesh.face_labels, "prediction": wrong}, names, min_panel_size=64
    )
    # Panels enlarged 2x to 64 px: 3 columns of 64 px (and gaps), 3 rows plus titles and legend.
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 3 * 64 + 2 * 2
    assert sheet.shape[0] > 3 * 64 + 2 * 2
    present = {tuple(c) for c in sheet.reshape(-1, 3)}
    for label in np.unique(mesh.face_labels):
        assert tuple(label_palette(len(names))[label]) in present


def test_layout_helpers_pad_and_draw():
    small, wide = np.zeros((4, 3, 3), np.uint8), np.zeros((2, 7, 3), np.uint8)
    stacked = stack_images([small, wide], axis=0, gap=1)
    assert stacked.shape == (4 + 1 + 2, 7, 3) and (stacked[:4, 3:] == 255).all()
    legend = legend_strip(["seat", "back"], 200)
    assert legend.shape[1] == 200 and tuple(label_palette(2)[1]) in {tuple(c) for c in legend.reshape(-1, 3)}
    heat = heat_to_rgb(np.array([[0.0, 1.0], [0.5, np.nan]]))
    assert tuple(heat[1, 1]) == (255, 255, 255) and heat[0, 0].sum() < heat[0, 1].sum()
