"""DenseCL pre-training: augmentations that respect the channels, a tiny run that resumes and fine-tunes."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_setup import TINY_DATASET, tiny_config

from mvdecor.errors import ConfigError
from mvdecor.models.inputs import view_to_array
from mvdecor.train.checkpoint import load_checkpoint
from mvdecor.train.data import ViewSource
from mvdecor.train.densecl import (
    VIEWS_PER_SHAPE_BOUND,
    AugmentedViewDataset,
    ViewAugmentation,
    apply_view_augmentation,
    check_densecl_config,
    draw_view_augmentation,
    flip_view_array,
)
from mvdecor.train.finetune import finetune
from mvdecor.train.pretrain import checkpoint_method, load_embedding, pretrain

MODALITIES = ("grey", "normal", "depth")


def densecl_config(**pretrain_changes):
    """The tiny setup at 32x32 with small DenseCL heads and queues, leaving out same-view negatives."""
    config = tiny_config(iterations=2, val_pairs=2, val_every=2, checkpoint_every=100, **pretrain_changes)
    densecl = replace(
        config.pretrain.densecl, queue_size=8, hidden_dim=16, grid_size=4, exclude_negatives="view"
    )
    return replace(
        config,
        render=replace(config.render, resolution=32),
        pretrain=replace(config.pretrain, method="densecl", densecl=densecl),
    )


@pytest.fixture(scope="module")
def view():
    config = densecl_config()
    source = ViewSource(TINY_DATASET, replace(config.render, resolution=48))
    return source.view(source.shape_ids()[0], 3)


def test_flip_twice_is_identity_and_a_flipped_normal_is_x_negated():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(5, 6, 7)).astype(np.float32)
    mask = rng.random((6, 7)) > 0.3
    right = np.array([0.6, 0.0, 0.8])  # a unit camera right axis
    once, once_mask = flip_view_array(array, mask, MODALITIES, right)
    twice, twice_mask = flip_view_array(once, once_mask, MODALITIES, right)
    np.testing.assert_allclose(twice, array, atol=1e-6)
    np.testing.assert_array_equal(twice_mask, mask)
    # A camera whose right axis is world x: the map is mirrored and its x component negated.
    flipped, _ = flip_view_array(array, mask, MODALITIES, np.array([1.0, 0.0, 0.0]))
    expected = array[:, :, ::-1].copy()
    expected[1] *= -1
    np.testing.assert_allclose(flipped, expected, atol=1e-6)


def test_a_flipped_render_has_camera_space_normals_with_x_negated(view):
    array = view_to_array(view, MODALITIES)
    rotation = view.camera.rotation[0]  # world to camera; row 0 is the camera's right axis
    flipped, flipped_mask = flip_view_array(array, view.mask, MODALITIES, rotation[0])
    camera_normals = np.einsum("ij,jhw->ihw", rotation, array[1:4])[:, :, ::-1]
    flipped_camera_normals = np.einsum("ij,jhw->ihw", rotation, flipped[1:4])
    np.testing.assert_allclose(flipped_camera_normals[0], -camera_normals[0], atol=1e-5)
    np.testing.assert_allclose(flipped_camera_normals[1:], camera_normals[1:], atol=1e-5)
    # Shading and depth are only mirrored.
    np.testing.assert_array_equal(flipped[[0, 4]], array[[0, 4], :, ::-1])
    np.testing.assert_array_equal(flipped_mask, view.mask[:, ::-1])


def test_a_whole_image_crop_without_flip_or_jitter_changes_nothing(view):
    array = view_to_array(view, MODALITIES)
    h, w = view.mask.shape
    out, out_mask = apply_view_augmentation(
        array, view.mask, MODALITIES, np.eye(3)[0], ViewAugmentation(0, 0, h, w)
    )
    np.testing.assert_allclose(out, array, atol=1e-6)
    np.testing.assert_array_equal(out_mask, view.mask)


def test_random_augmentations_keep_every_channel_meaningful(view):
    cfg = densecl_config().pretrain.densecl
    array = view_to_array(view, MODALITIES)
    rng = np.random.default_rng(1)
    for _ in range(10):
        aug = draw_view_augmentation(rng, view.mask, cfg)
        out, mask = apply_view_augmentation(array, view.mask, MODALITIES, view.camera.rotation[0, 0], aug)
        assert out.shape == array.shape and mask.shape == view.mask.shape and mask.any()
        assert (out[:, ~mask] == 0).all()  # background 0 in every channel
        np.testing.assert_allclose(np.linalg.norm(out[1:4][:, mask], axis=0), 1.0, atol=1e-5)
        depth = out[4][mask]
        if np.ptp(depth) > 0:  # normalised again over the crop's foreground
            assert depth.min() == 0.0 and depth.max() == pytest.approx(1.0)
        assert out[0].min() >= 0.0 and out[0].max() <= 1.0


@pytest.mark.parametrize("modalities", [("grey", "normal", "depth"), ("rgb", "normal", "depth")])
def test_colour_jitter_changes_colour_channels_only(view, modalities):
    array = view_to_array(view, modalities)
    colour = 1 if modalities[0] == "grey" else 3
    h, w = view.mask.shape
    plain = ViewAugmentation(0, 0, h, w)
    jittered = replace(
        plain, jitter=True, brightness=1.3, contrast=0.7, saturation=0.6, hue=0.1, grayscale=True
    )
    right = view.camera.rotation[0, 0]
    out, _ = apply_view_augmentation(array, view.mask, modalities, right, jittered)
    reference, _ = apply_view_augmentation(array, view.mask, modalities, right, plain)
    np.testing.assert_array_equal(out[colour:], reference[colour:])
    assert not np.allclose(out[:colour], reference[:colour])
    if colour == 3:  # greyscale: three equal channels
        np.testing.assert_allclose(out[0], out[2], atol=1e-6)


def test_items_are_a_function_of_the_index():
    config = densecl_config()
    source = ViewSource(TINY_DATASET, config.render)
    ds = AugmentedViewDataset(source, source.shape_ids(), MODALITIES, None, config.pretrain.densecl, seed=3)
    a, b = ds[11], ds[11]
    for key in ("inputs_query", "inputs_key"):
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].shape == (5, 32, 32) and a[key].dtype == np.float32
    assert not np.array_equal(a["inputs_query"], a["inputs_key"])
    # The source id names the shape and view drawn; at the shape level, the shape only.
    shapes = [ds[k]["source"] // VIEWS_PER_SHAPE_BOUND for k in range(40)]
    views = [ds[k]["source"] % VIEWS_PER_SHAPE_BOUND for k in range(40)]
    assert set(shapes) == set(range(len(source.shape_ids()))) and max(views) < config.render.num_views
    by_shape = AugmentedViewDataset(
        source,
        source.shape_ids(),
        MODALITIES,
        None,
        replace(config.pretrain.densecl, exclude_negatives="shape"),
        seed=3,
    )
    assert [by_shape[k]["source"] for k in range(40)] == shapes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attach": "decoder"}, "attach"),
        ({"momentum": 1.5}, "momentum"),
        ({"crop_scale": (0.5, 0.2)}, "crop_scale"),
        ({"grid_size": 0}, "grid_size"),
        ({"exclude_negatives": "image"}, "exclude_negatives"),
    ],
)
def test_bad_densecl_settings_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=f"pretrain.densecl.{message}"):
        check_densecl_config(replace(densecl_config().pretrain.densecl, **change))


def _losses(run) -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as handle:
        return {int(float(r["step"])): float(r["loss"]) for r in csv.DictReader(handle)}


def test_tiny_densecl_run_resumes_exactly_and_fine_tuning_loads_it(tmp_path):
    config = densecl_config()
    # Step 2 uses the queue and the key network that step 1 left: the resumed run must restore them.
    full = pretrain(config, TINY_DATASET, tmp_path / "full", progress=False)
    assert full.step == 2 and full.best_checkpoint is not None
    half = pretrain(config, TINY_DATASET, tmp_path / "split", progress=False, stop_after=1)
    assert half.step == 1
    resumed = pretrain(config, TINY_DATASET, tmp_path / "split", progress=False)
    assert resumed.step == 2
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert sorted(a) == sorted(b) == [1, 2]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    header = (tmp_path / "full" / "metrics.csv").read_text().splitlines()[0]
    assert "loss_global" in header and "loss_dense" in header
    assert (tmp_path / "full" / "val.csv").read_text().count("\n") == 2  # header + step 2

    last = tmp_path / "full" / "checkpoints" / "last.pt"
    wa, wb = load_checkpoint(last), load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for key in wa["model"]:
        torch.testing.assert_close(wa["model"][key], wb["model"][key], rtol=1e-4, atol=1e-5)
    for key in ("queue", "dense_queue", "queue_pointer", "key_heads.global_mlp.0.weight"):
        torch.testing.assert_close(wa["densecl"][key], wb["densecl"][key], rtol=1e-4, atol=1e-5)
    assert wa["method"] == "densecl" and checkpoint_method(last) == "densecl"
    assert json.loads((tmp_path / "full" / "run.json").read_text())["method"] == "densecl"

    # The checkpoint is an embedding checkpoint like MvDeCor's: load_embedding and fine-tuning read it.
    model, stats, saved_config = load_embedding(last)
    assert saved_config.pretrain.method == "densecl" and stats.mean.shape == (5,)
    assert model.embed_dim == config.model.embed_dim
    ft = replace(
        config.finetune, iterations=1, views_per_batch=2, num_workers=0, device="cpu", ssl_weight=0.0
    )
    result = finetune(replace(config, finetune=ft), TINY_DATASET, tmp_path / "ft", labelled_shapes=["mug_0000"],
                      init=last, progress=False)  # fmt: skip
    assert result.step == 1
    fine_tuned = load_checkpoint(result.last_checkpoint)["model"]
    # Fine-tuning started from the DenseCL weights: one Adam step moves each weight by about lr at most.
    start, after = (
        wa["model"]["encoder.backbone.conv1.weight"],
        fine_tuned["embedding.encoder.backbone.conv1.weight"],
    )
    assert (after - start).abs().max() < 2 * ft.lr

    # A DenseCL run folder is not resumed as another method's run.
    with pytest.raises(ConfigError, match="densecl pre-training run, not mvdecor"):
        pretrain(replace(config, pretrain=replace(config.pretrain, method="mvdecor")), TINY_DATASET,
                 tmp_path / "full", progress=False)  # fmt: skip
