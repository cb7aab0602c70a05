"""Input modalities, channel stacking and foreground channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvdecor.errors import ConfigError
from mvdecor.models.inputs import (
    MODALITIES,
    ChannelStats,
    channel_count,
    channel_names,
    flip_view_array,
    parse_modalities,
    rgb_channel_indices,
    view_to_array,
    views_to_tensor,
)
from mvdecor.render.cameras import Cameras
from mvdecor.render.views import RenderedView


def make_view(seed: int, h: int = 8, w: int = 10) -> RenderedView:
    """A RenderedView with random buffers on a random foreground, 0 on background."""
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < 0.6
    face_ids = np.where(mask, rng.integers(0, 50, (h, w)), -1).astype(np.int32)

    def buf(*shape, low=0.0, high=1.0):
        a = rng.uniform(low, high, (h, w, *shape)).astype(np.float32)
        a[~mask] = 0
        return a

    camera = Cameras(np.eye(3)[None], np.array([[0.0, 0.0, 2.0]]), [[10.0, 10.0]], [[w / 2, h / 2]], w, h)
    return RenderedView(
        camera=camera,
        face_ids=face_ids,
        barycentrics=buf(3),
        hit_points=buf(3, low=-1),
        depth=buf(low=1, high=3),
        depth_normalized=buf(),
        normals=buf(3, low=-1),
        shading=buf(),
        rgb=buf(3),
    )


def test_modalities_table_and_counts():
    assert MODALITIES == {"grey": 1, "rgb": 3, "normal": 3, "depth": 1, "position": 3}
    assert channel_count(["grey", "normal", "depth"]) == 5
    assert channel_count("rgb,normal,depth") == 7
    assert channel_count("depth") == 1
    assert parse_modalities(["depth", "normal", "grey"]) == ("grey", "normal", "depth")
    assert parse_modalities("normal+rgb") == ("rgb", "normal")
    assert channel_names(["depth", "grey", "normal"]) == ("grey", "nx", "ny", "nz", "depth")
    assert rgb_channel_indices("rgb,normal,depth") == (0, 1, 2)
    assert rgb_channel_indices("grey,normal,depth") == ()


@pytest.mark.parametrize(
    ("modalities", "match"),
    [
        (
            ["grey", "colour"],
            "unknown input modality 'colour'; valid modalities: grey, rgb, normal, depth, position",
        ),
        ([], "no input modality"),
        (["grey", "grey"], "repeat"),
        (["grey", "rgb"], "exclude each other"),
    ],
)
def test_bad_modalities_raise(modalities, match):
    with pytest.raises(ConfigError, match=match):
        parse_modalities(modalities)
    with pytest.raises(ConfigError):
        channel_count(modalities)


def test_view_to_array_order_and_values():
    view = make_view(0)
    arr = view_to_array(view, ["depth", "normal", "rgb"])
    assert arr.dtype == np.float32 and arr.shape == (7, 8, 10) and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr[0:3], view.rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(arr[3:6], view.normals.transpose(2, 0, 1))
    np.testing.assert_array_equal(arr[6], view.depth_normalized)
    grey = view_to_array(view, "grey,normal,depth")
    assert grey.shape == (5, 8, 10)
    np.testing.assert_array_equal(grey[0], view.shading)
    assert np.all(grey[:, ~view.mask] == 0)


def test_stats_use_foreground_only():
    rng = np.random.default_rng(1)
    arrays, masks, fg_values = [], [], []
    for _ in range(3):
        mask = rng.random((16, 16)) < 0.5
        arr = rng.normal([[[2.0]], [[-1.0]]], [[[3.0]], [[0.5]]], (2, 16, 16))
        arr[:, ~mask] = 1e6  # wildly different background, must be ignored
        arrays.append(arr)
        masks.append(mask)
        fg_values.append(arr[:, mask])
    fg = np.concatenate(fg_values, axis=1)
    stats = ChannelStats.from_arrays(arrays, masks)
    np.testing.assert_allclose(stats.mean, fg.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats.std, fg.std(axis=1), rtol=1e-5)
    assert abs(stats.mean[0] - 2) < 0.5 and abs(stats.std[1] - 0.5) < 0.1

    out = stats.normalize(np.stack(arrays).astype(np.float32), np.stack(masks))
    assert out.dtype == np.float32
    all_masks = np.stack(masks)
    assert np.all(out.transpose(1, 0, 2, 3)[:, ~all_masks] == 0)  # background stays exactly 0
    normed_fg = out.transpose(1, 0, 2, 3)[:, all_masks]
    np.testing.assert_allclose(normed_fg.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(normed_fg.std(axis=1), 1, atol=1e-4)

    # torch path agrees, single images too
    t = stats.normalize(torch.from_numpy(arrays[0]).float(), torch.from_numpy(masks[0]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), out[0], rtol=1e-5, atol=1e-6)


def test_constant_channel_and_errors():
    mask = np.ones((4, 4), bool)
    stats = ChannelStats.from_arrays(
        [np.stack([np.full((4, 4), 0.3), np.arange(16.0).reshape(4, 4)])], [mask]
    )
    assert stats.std[0] == 1.0 and np.isclose(stats.mean[0], 0.3)
    with pytest.raises(ValueError, match="no foreground"):
        ChannelStats.from_arrays([np.zeros((2, 4, 4))], [np.zeros((4, 4), bool)])
    with pytest.raises(ValueError, match="channels"):
        stats.normalize(np.zeros((3, 4, 4)), mask)
    with pytest.raises(ValueError):
        ChannelStats([0.0, 1.0], [1.0, 0.0])


def test_stats_from_views_and_round_trip():
    views = [make_view(s) for s in range(4)]
    stats = ChannelStats.from_views(views, ["normal", "grey", "depth"])
    assert stats.modalities == ("grey", "normal", "depth") and stats.channels == 5
    fg = np.concatenate([view_to_array(v, stats.modalities)[:, v.mask] for v in views], axis=1)
    np.testing.assert_allclose(stats.mean, fg.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats.std, fg.std(axis=1), rtol=1e-5)

    again = ChannelStats.from_dict(stats.to_dict())
    np.testing.assert_array_equal(again.mean, stats.mean)
    np.testing.assert_array_equal(again.std, stats.std)
    assert again.modalities == stats.modalities
    with pytest.raises(ConfigError, match="channel statistics"):
        ChannelStats.from_dict({"mean": [0.0]})
    with pytest.raises(ConfigError):
        ChannelStats.from_dict({"mean": [0.0], "std": [1.0], "modalities": ["grey", "rgb"]})
    with pytest.raises(ValueError):
        stats.mean[0] = 5.0  # read-only


def test_views_to_tensor():
    views = [make_view(s) for s in range(3)]
    raw = views_to_tensor(views, "grey,normal,depth")
    assert raw.shape == (3, 5, 8, 10) and raw.dtype == torch.float32
    np.testing.assert_array_equal(raw[1].numpy(), view_to_array(views[1], "grey,normal,depth"))
    stats = ChannelStats.from_views(views, "grey,normal,depth")
    normed = views_to_tensor(views, "grey,normal,depth", stats)
    masks = torch.from_numpy(np.stack([v.mask for v in views]))
    assert torch.all(normed.permute(1, 0, 2, 3)[:, ~masks] == 0)
    fg = normed.permute(1, 0, 2, 3)[:, masks]
    torch.testing.assert_close(fg.mean(dim=1), torch.zeros(5), atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        views_to_tensor([], "grey")


def test_position_channels_are_the_hit_points_in_the_shape_frame():
    from mvdecor.data.synthetic import make_shape
    from mvdecor.render import CameraScheme, Renderer

    mesh = make_shape("mug", 0).normalized()
    view = Renderer(mesh).render(CameraScheme(rings=1, segments=4, resolution=32).cameras(seed=0))[1]
    arr = view_to_array(view, ["position", "grey"])
    assert channel_names(["position", "grey"]) == ("grey", "px", "py", "pz")
    np.testing.assert_array_equal(arr[1:], view.hit_points.transpose(2, 0, 1))
    # The hit points lie on the normalised mesh: in the unit sphere, 0 off the object.
    assert np.linalg.norm(arr[1:, view.mask], axis=0).max() <= 1 + 1e-5
    assert (arr[1:, ~view.mask] == 0).all()
    # A face's pixels carry points of that face: each lies in the face's plane.
    face = view.face_ids[view.mask][0]
    pixels = view.face_ids == face
    normal = mesh.face_normals()[face]
    offsets = (arr[1:, pixels].T - mesh.triangles[face, 0]) @ normal
    np.testing.assert_allclose(offsets, 0, atol=1e-5)


def test_a_flipped_render_is_the_mirrored_scene_in_every_world_channel():
    from mvdecor.data.synthetic import make_shape
    from mvdecor.render import CameraScheme, Renderer

    mesh = make_shape("mug", 0).normalized()
    view = Renderer(mesh).render(CameraScheme(rings=1, segments=4, resolution=32).cameras(seed=0))[2]
    modalities = ("grey", "normal", "depth", "position")
    array = view_to_array(view, modalities)
    rotation, center = view.camera.rotation[0], view.camera.centers[0]
    flipped, flipped_mask = flip_view_array(array, view.mask, modalities, rotation[0], center)
    np.testing.assert_array_equal(flipped_mask, view.mask[:, ::-1])
    np.testing.assert_array_equal(flipped[[0, 4]], array[[0, 4], :, ::-1])  # shading, depth

    # In camera coordinates a horizontal mirror negates x: normals (directions) and
    # positions (relative to the camera centre) alike, at the mirrored pixel.
    def camera_frame(vectors, origin):
        return np.einsum("ij,jhw->ihw", rotation, vectors - np.reshape(origin, (3, 1, 1)))

    for channels, origin in ((slice(1, 4), np.zeros(3)), (slice(5, 8), center)):
        before = camera_frame(array[channels], origin)[:, :, ::-1]
        after = camera_frame(flipped[channels], origin)
        fg = flipped_mask
        np.testing.assert_allclose(after[0][fg], -before[0][fg], atol=1e-5)
        np.testing.assert_allclose(after[1:, fg], before[1:, fg], atol=1e-5)
    assert (flipped[5:8, ~flipped_mask] == 0).all()
    twice, _ = flip_view_array(flipped, flipped_mask, modalities, rotation[0], center)
    np.testing.assert_allclose(twice, array, atol=1e-5)
    with pytest.raises(ValueError, match="camera centre"):
        flip_view_array(array, view.mask, modalities, rotation[0])


def test_input_channel_positions():
    from mvdecor.models.inputs import input_channel_positions

    assert input_channel_positions("grey,normal,depth", "grey,normal,depth,position") == [0, 1, 2, 3, 4]
    assert input_channel_positions("normal,depth", "grey,normal,depth") == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="lack"):
        input_channel_positions("grey,normal", "grey")
