"""Pictures of views."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mvdecor.data.synthetic import make_shape
from mvdecor.render import CameraScheme, Renderer
from mvdecor.viz import label_palette, labels_to_rgb, save_image, view_panels, view_sheet


def test_palette_is_distinct_and_stable():
    p = label_palette(40)
    assert p.shape == (40, 3) and len({tuple(c) for c in p}) == 40
    np.testing.assert_array_equal(label_palette(40), p)
    np.testing.assert_array_equal(label_palette(5), p[:5])


def test_labels_to_rgb_background_white():
    img = labels_to_rgb(np.array([[-1, 0], [1, 2]]))
    assert tuple(img[0, 0]) == (255, 255, 255)
    np.testing.assert_array_equal(img[0, 1], label_palette(3)[0])


def test_view_panels_and_sheet(tmp_path):
    mesh = make_shape("chair", 1)
    cams = CameraScheme(resolution=40).cameras(0)
    views = [Renderer(mesh).render_view(cams, i) for i in (5, 20)]
    panels = view_panels(views[0], mesh.face_labels, mesh.num_labels)
    assert set(panels) == {"shading", "rgb", "normals", "depth", "face_ids", "labels"}
    for image in panels.values():
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        assert (image[~views[0].mask] == 255).all()
    sheet = view_sheet(views, mesh.face_labels, mesh.num_labels, gap=2)
    assert sheet.shape == (2 * 40 + 2, 4 * 40 + 3 * 2, 3)
    path = save_image(sheet, tmp_path / "sub" / "sheet.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), sheet)
