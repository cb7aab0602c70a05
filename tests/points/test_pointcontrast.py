"""(3D) PointContrast: partial clouds from matched views, pre-training, resuming, fine-tuning from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from points_setup import TINY_DATASET, tiny_config

from mvdecor.correspond import ViewSource, match_views
from mvdecor.errors import ConfigError
from mvdecor.models.checkpoints import CheckpointError, load_checkpoint
from mvdecor.points import build_point_segmentation_net, pretrain_pointcontrast, train_point_segmenter
from mvdecor.points.pointcontrast import PartialViewPairs, partial_cloud
from mvdecor.points.sampling import network_input


@pytest.fixture(scope="module")
def source() -> ViewSource:
    return ViewSource.from_config(TINY_DATASET, tiny_config())


def test_partial_clouds_keep_the_matched_points_where_they_say(source):
    shape = source.shape_ids()[0]
    view_a, view_b = source.view(shape, 2), source.view(shape, 3)
    matches = match_views(view_a, view_b, source.radius)
    assert len(matches) > 20
    rng = np.random.default_rng(0)
    points_a, normals_a, where_a = partial_cloud(view_a, matches.index_a[:20], 100, rng)
    points_b, _, where_b = partial_cloud(view_b, matches.index_b[:20], 100, rng)
    assert points_a.shape == normals_a.shape == (100, 3) and points_a.dtype == np.float32
    assert where_a.shape == (20,) and len(np.unique(where_a)) == 20
    np.testing.assert_array_equal(points_a[where_a], view_a.hit_points.reshape(-1, 3)[matches.index_a[:20]])
    # Matched points are the same 3D point, within the match radius.
    assert np.linalg.norm(points_a[where_a] - points_b[where_b], axis=1).max() <= source.radius + 1e-6
    # The other points are foreground hit points of the view, none repeated when there are enough.
    foreground = {tuple(p) for p in view_a.hit_points[view_a.mask]}
    assert all(tuple(p) in foreground for p in points_a) and len(np.unique(points_a, axis=0)) == 100


def test_a_batch_pairs_transformed_clouds_of_one_shape(source):
    settings = tiny_config().points
    pairs = PartialViewPairs(source, source.shape_ids(), settings, overlap_threshold=0.15)
    batch = pairs.batch(0)
    assert batch["inputs"].shape == (4, 3, 128) and batch["inputs"].dtype == torch.float32
    assert batch["positions_a"].shape == batch["positions_b"].shape == batch["valid"].shape == (2, 32)
    assert batch["valid"].all()
    for key, value in pairs.batch(0).items():  # a function of the step alone
        assert torch.equal(value, batch[key]), key
    assert not torch.equal(pairs.batch(1)["inputs"], batch["inputs"])
    # Each cloud is centred and rotated on its own: matched points do not share coordinates.
    inputs = batch["inputs"]
    a = inputs[0].T[batch["positions_a"][0]]
    b = inputs[2].T[batch["positions_b"][0]]
    assert (a - b).norm(dim=1).mean() > 0.1
    assert inputs.mean(dim=2).abs().max() < 0.05
    # Pairwise distances between matched points agree up to the two scales, the match radius
    # (two matched hit points are up to one radius apart) and the jitter: rigid moves only.
    da, db = torch.cdist(a, a), torch.cdist(b, b)
    ratio = (da.sum() / db.sum()).item()
    scale = settings.scale_range[1]
    bound = 2 * scale * (source.radius + 4 * settings.jitter_std * 3**0.5)
    error = (da - db * ratio).abs()
    assert error.max() < bound
    shuffled = torch.randperm(len(b), generator=torch.Generator().manual_seed(0))
    assert (da - db[shuffled][:, shuffled] * ratio).abs().mean() > 5 * error.mean()  # not by chance


def test_pretraining_writes_a_checkpoint_resumes_it_and_fine_tuning_loads_it(tmp_path, monkeypatch):
    config = tiny_config(pretrain_iterations=3, checkpoint_every=2)
    run = tmp_path / "pointcontrast"
    path = pretrain_pointcontrast(config, TINY_DATASET, run, progress=False)
    saved = load_checkpoint(path)
    assert path == run / "checkpoints" / "last.pt"
    assert saved["kind"] == "pointcontrast" and saved["step"] == 3
    assert saved["config"]["embed_dim"] == 16 and saved["config"]["widths"] == [16, 16]
    assert {"model", "optimizer", "scheduler", "rng"} <= set(saved)
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()

    # Continued to 5 steps: steps 4 and 5 only, from step 3's weights and optimiser state.
    longer = tiny_config(pretrain_iterations=5, checkpoint_every=2)
    pretrain_pointcontrast(longer, TINY_DATASET, run, progress=False)
    resumed = load_checkpoint(path)
    assert resumed["step"] == 5
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5]

    # Interrupted (Ctrl-C) after step 3 of 5, then run again: it ends where an unbroken run
    # ends, since every batch is a function of its step and the optimiser state is saved.
    unbroken = load_checkpoint(
        pretrain_pointcontrast(longer, TINY_DATASET, tmp_path / "unbroken", progress=False)
    )
    draw = PartialViewPairs.batch

    def interrupted(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return draw(self, step)

    monkeypatch.setattr(PartialViewPairs, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain_pointcontrast(longer, TINY_DATASET, tmp_path / "broken", progress=False)
    broken_path = tmp_path / "broken" / "checkpoints" / "last.pt"
    assert load_checkpoint(broken_path)["step"] == 3
    monkeypatch.setattr(PartialViewPairs, "batch", draw)
    again = load_checkpoint(pretrain_pointcontrast(longer, TINY_DATASET, tmp_path / "broken", progress=False))
    assert again["step"] == 5
    for name, value in unbroken["model"].items():
        torch.testing.assert_close(again["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)

    # Fine-tuning starts from the pre-trained point network (the head is new).
    settings = config.points
    network = build_point_segmentation_net(settings, 4, init=path)
    for name, value in resumed["model"].items():
        assert torch.equal(network.embedding.state_dict()[name], value), name
    scratch = build_point_segmentation_net(settings, 4, init=None)
    weight = "blocks.0.neighbour.weight"
    assert not torch.equal(scratch.embedding.state_dict()[weight], resumed["model"][weight])

    # Through the training entry point: one step at a tiny rate moves the weights by about the rate.
    from mvdecor.data.synthetic import make_shape

    mugs = [make_shape("mug", seed) for seed in (5, 6)]
    tuned = train_point_segmenter(
        tiny_config(finetune_iterations=1, finetune_lr=1e-7),
        mugs,
        4,
        init=path,
        out=tmp_path / "finetune",
        progress=False,
    )
    start = resumed["model"][weight]
    assert (tuned.network.embedding.state_dict()[weight].cpu() - start).abs().max() < 1e-5
    assert load_checkpoint(tuned.checkpoint)["run"]["init"] == str(path.resolve())


def test_initialisation_must_be_a_pointcontrast_checkpoint_of_the_same_network(tmp_path):
    config = tiny_config(pretrain_iterations=1)
    path = pretrain_pointcontrast(config, TINY_DATASET, tmp_path / "pre", progress=False)
    with pytest.raises(ConfigError, match=r"points\.embed_dim = 16.*has 8"):
        build_point_segmentation_net(tiny_config(embed_dim=8).points, 4, init=path)
    segmentation_run = tmp_path / "seg"
    from mvdecor.data.synthetic import make_shape

    segmenter = train_point_segmenter(
        tiny_config(finetune_iterations=1),
        [make_shape("mug", 1)],
        4,
        init=None,
        out=segmentation_run,
        progress=False,
    )
    with pytest.raises(CheckpointError, match="not a PointContrast checkpoint"):
        build_point_segmentation_net(config.points, 4, init=segmenter.checkpoint)
    with pytest.raises(ConfigError, match="holds another pointcontrast run"):
        pretrain_pointcontrast(config, TINY_DATASET, tmp_path / "pre", shape_ids=["mug_0000"], progress=False)
    with pytest.raises(ConfigError, match="shapes not in"):
        pretrain_pointcontrast(
            config, TINY_DATASET, tmp_path / "other", shape_ids=["chair_0000"], progress=False
        )


def test_network_input_of_pairs_uses_normals_when_asked(source):
    settings = tiny_config(use_normals=True).points
    pairs = PartialViewPairs(source, source.shape_ids()[:1], settings, overlap_threshold=0.15)
    inputs = pairs.batch(0)["inputs"]
    assert inputs.shape == (4, 6, 128)
    np.testing.assert_allclose(inputs[:, 3:].norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert network_input(np.zeros((2, 3)), np.ones((2, 3)), True).shape == (6, 2)


def test_pretraining_keeps_as_many_shapes_loaded_as_2d_pretraining(tmp_path, monkeypatch):
    # With the source's default (8), a larger shape set reloaded a mesh for most pairs.
    from dataclasses import replace

    from mvdecor.points import pointcontrast

    seen = {}
    original = pointcontrast.ViewSource.from_config

    def spy(*args, **kwargs):
        source = original(*args, **kwargs)
        seen["max_cached"] = source._max_cached
        return source

    monkeypatch.setattr(pointcontrast.ViewSource, "from_config", spy)
    config = tiny_config(pretrain_iterations=1)
    config = replace(config, pretrain=replace(config.pretrain, cached_shapes=37))
    pretrain_pointcontrast(config, TINY_DATASET, tmp_path / "pc", progress=False)
    assert seen["max_cached"] == 37
