"""Pre-training: it learns, it resumes exactly, it writes what it promises, it runs under DDP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_setup import TINY_DATASET, tiny_config

from mvdecor.config import load_config
from mvdecor.evaluation.embedding import evaluate_embedding
from mvdecor.train.checkpoint import CheckpointError, load_checkpoint
from mvdecor.train.data import ViewPairDataset, ViewSource, collate_pairs, split_shapes
from mvdecor.train.pretrain import StepBatchSampler, load_embedding, pretrain


def _losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as handle:
        return {int(float(r["step"])): float(r["loss"]) for r in csv.DictReader(handle)}


def test_step_batch_sampler_is_disjoint_across_ranks_and_steps():
    s0 = list(StepBatchSampler(3, 6, 2, rank=0, world=2))
    s1 = list(StepBatchSampler(3, 6, 2, rank=1, world=2))
    flat = [i for b in s0 + s1 for i in b]
    assert len(flat) == len(set(flat)) == 12
    assert s0[0] == [12, 13] and s1[0] == [14, 15]
    assert len(StepBatchSampler(3, 6, 2)) == 3


def test_pair_items_are_a_function_of_the_index(tiny):
    source = ViewSource.from_config(TINY_DATASET, tiny)
    ds = ViewPairDataset(source, source.shape_ids(), tiny.model.modalities, None, 128, 0.15, seed=3)
    a, b = ds[17], ds[17]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    batch = collate_pairs([ds[1], ds[2]])
    assert batch.inputs_a.shape == (2, 5, 64, 64) and batch.index_a.shape == (2, 128)
    assert batch.valid.any(dim=1).all()
    # Valid matches point at foreground pixels of both views.
    for k in range(2):
        idx = batch.index_a[k][batch.valid[k]]
        assert (batch.inputs_a[k].reshape(5, -1)[:, idx].abs().sum(0) > 0).all()


def test_cross_shape_pairs_join_two_shapes_of_one_group(tiny):
    source = ViewSource.from_config(TINY_DATASET, tiny)
    ids = source.shape_ids()
    mugs = [s for s in ids if s.startswith("mug")]
    # The bottles as separate groups: alone in its group, a shape keeps same-shape pairs.
    groups = {s: "mug" if s in mugs else s for s in ids}
    for shape_id in ids:
        source.overlaps(shape_id)  # renders every view: done before recording the pairs' views
    calls: list[str] = []
    view = source.view

    def recording_view(shape_id, index):
        calls.append(shape_id)
        return view(shape_id, index)

    source.view = recording_view
    ds = ViewPairDataset(
        source, ids, tiny.model.modalities, None, 128, 0.15, seed=3, cross_shape=1.0, groups=groups
    )
    kinds = set()
    for k in range(12):
        calls.clear()
        item = ds[k]
        first, second = calls
        if first in mugs:
            assert second in mugs and second != first
            assert item["valid"].any()
        else:
            assert second == first
        kinds.add(first in mugs)
    assert kinds == {True, False}
    # Unchanged items without cross-shape pairs, groups or not.
    plain = ViewPairDataset(source, ids, tiny.model.modalities, None, 128, 0.15, seed=3)
    none = ViewPairDataset(
        source, ids, tiny.model.modalities, None, 128, 0.15, seed=3, cross_shape=0.0, groups=groups
    )
    for k in range(4):
        a, b = plain[k], none[k]
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="cross_shape"):
        ViewPairDataset(source, ids, tiny.model.modalities, None, 128, 0.15, cross_shape=1.5)


def test_pretraining_with_cross_shape_pairs_runs_and_records_them(tmp_path):
    config = tiny_config(cross_shape_pairs=0.5, iterations=4)
    result = pretrain(config, TINY_DATASET, tmp_path / "run", progress=False)
    assert result.step == 4
    losses = _losses(tmp_path / "run")
    assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(v) for v in losses.values())
    saved = load_config(str(tmp_path / "run" / "config.yaml"))
    assert saved.pretrain.cross_shape_pairs == 0.5 and saved.pretrain.cross_shape_radius == 0.05


def test_split_is_seeded_and_disjoint():
    ids = [f"s{i}" for i in range(10)]
    train, val = split_shapes(ids, 0.3, seed=1)
    assert sorted(train + val) == ids and len(val) == 3
    assert split_shapes(ids, 0.3, seed=1) == (train, val)
    assert split_shapes(["a"], 0.5, 0) == (["a"], [])


def test_resume_continues_with_the_same_losses(tmp_path, tiny):
    full = pretrain(tiny, TINY_DATASET, tmp_path / "full", progress=False)
    assert full.step == 8
    half = pretrain(tiny, TINY_DATASET, tmp_path / "split", progress=False, stop_after=5)
    assert half.step == 5
    resumed = pretrain(tiny, TINY_DATASET, tmp_path / "split", progress=False)
    assert resumed.step == 8
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in range(1, 9):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    wa = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5)


def test_cosine_schedule_decays_to_zero_at_the_budget_and_resumes_exactly(tmp_path, tiny):
    import math

    from mvdecor.train.pretraining import make_lr_scheduler

    cosine = replace(tiny, pretrain=replace(tiny.pretrain, lr_schedule="cosine"))
    lrs = []
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = make_lr_scheduler(optimizer, cosine.pretrain)
    for _ in range(cosine.pretrain.iterations):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    total = cosine.pretrain.iterations
    # A naive reference: half a cosine from lr at step 0 to 0 at step `total`.
    expected = [0.5e-3 * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

    full = pretrain(cosine, TINY_DATASET, tmp_path / "full", progress=False)
    pretrain(cosine, TINY_DATASET, tmp_path / "split", progress=False, stop_after=3)
    resumed = pretrain(cosine, TINY_DATASET, tmp_path / "split", progress=False)
    assert full.step == resumed.step == total
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    for step in range(1, total + 1):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    with open(tmp_path / "split" / "metrics.csv", newline="") as handle:
        logged = {int(float(r["step"])): float(r["lr"]) for r in csv.DictReader(handle)}
    assert logged[1] == pytest.approx(1e-3) and logged[total] < logged[total // 2] < logged[1]


def test_resume_refuses_another_lr_schedule(tmp_path, tiny):
    from mvdecor.errors import ConfigError

    pretrain(tiny, TINY_DATASET, tmp_path / "run", progress=False, stop_after=1)
    cosine = replace(tiny, pretrain=replace(tiny.pretrain, lr_schedule="cosine"))
    with pytest.raises(ConfigError, match="plateau learning-rate schedule, not cosine"):
        pretrain(cosine, TINY_DATASET, tmp_path / "run", progress=False)


def test_backbone_lr_scale_sets_the_backbones_rate_alone(tmp_path, tiny):
    from mvdecor.errors import ConfigError
    from mvdecor.train.pretrain import build_model

    frozen = replace(tiny, pretrain=replace(tiny.pretrain, backbone_lr_scale=0.0))
    pretrain(frozen, TINY_DATASET, tmp_path / "run", progress=False, stop_after=1)
    first = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    pretrain(frozen, TINY_DATASET, tmp_path / "run", progress=False)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["step"] == 8 and len(last["optimizer"]["param_groups"]) == 2
    model = build_model(tiny)
    backbone = {f"encoder.backbone.{name}" for name, _ in model.backbone.named_parameters()}
    others = {name for name, _ in model.named_parameters()} - backbone
    assert backbone and others
    # At rate 0 the backbone's weights stay where step 1 left them; the rest keeps learning.
    for name in backbone:
        torch.testing.assert_close(last["model"][name], first["model"][name], rtol=0, atol=0)
    assert any(not torch.equal(last["model"][n], first["model"][n]) for n in others)
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        assert {float(r["lr"]) for r in csv.DictReader(handle)} == {tiny.pretrain.lr}  # the head's rate
    # Its optimiser state has two groups: a run with one cannot resume it, nor the other way.
    with pytest.raises(ConfigError, match="backbone_lr_scale 0, not 1"):
        pretrain(
            replace(tiny, pretrain=replace(tiny.pretrain, iterations=9)),
            TINY_DATASET,
            tmp_path / "run",
            progress=False,
        )


def test_run_folder_contents_and_reload(tmp_path, tiny):
    run = tmp_path / "run"
    config = replace(tiny, pretrain=replace(tiny.pretrain, checkpoint_every=2, keep_snapshots=2))
    pretrain(config, TINY_DATASET, run, progress=False)
    for name in ("config.yaml", "run.json", "metrics.csv", "val.csv", "report.html", "pictures/curves.png"):
        assert (run / name).is_file(), name
    # Snapshots at steps 2, 4, 6 and 8; the two latest are kept.
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "best.pt",
        "last.pt",
        "step_0000006.pt",
        "step_0000008.pt",
    ]
    assert list((run / "tensorboard").glob("events.*"))
    assert "preset:" in (run / "config.yaml").read_text()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    for column in ("loss", "lr", "it_per_s", "images_per_s", "data_wait_share"):
        assert column in header
    # A checkpoint opens with plain torch.load and rebuilds the model.
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert payload["step"] == 8
    _model, stats, config = load_embedding(run / "checkpoints" / "last.pt")
    assert config.model == tiny.model and stats.mean.shape == (5,)


def test_resume_refuses_another_model(tmp_path, tiny):
    from dataclasses import replace

    from mvdecor.errors import ConfigError

    pretrain(tiny, TINY_DATASET, tmp_path / "run", progress=False, stop_after=1)
    other = replace(tiny, model=replace(tiny.model, embed_dim=32))
    with pytest.raises(ConfigError, match="another model configuration"):
        pretrain(other, TINY_DATASET, tmp_path / "run", progress=False)


def test_runs_saved_before_heads_were_named_resume_as_paper(tmp_path, tiny):
    from mvdecor.errors import ConfigError
    from mvdecor.train.pretraining import check_resumable

    saved = tiny.to_dict()
    del saved["model"]["head"]
    check_resumable(saved, tiny, tmp_path)  # the paper head: resumes
    light = replace(tiny, model=replace(tiny.model, head="light"))
    with pytest.raises(ConfigError, match="another model configuration"):
        check_resumable(saved, light, tmp_path)


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


def test_short_pretraining_learns_correspondences(tmp_path):
    # One chair to learn from, one held out for the validation loss: ~45 s on 2 cores.
    dataset = "synthetic:categories=chair,n=2,textured=0"
    # checkpoint_every: the 7 GB of snapshots every 4 steps would write are not what this tests.
    config = tiny_config(
        iterations=150, val_every=50, matches_per_pair=256, val_fraction=0.5, checkpoint_every=1000
    )
    run = tmp_path / "run"
    result = pretrain(config, dataset, run, progress=False)
    with open(run / "val.csv", newline="") as handle:
        val = [float(r["val_loss"]) for r in csv.DictReader(handle)]
    assert len(val) == 3 and min(val[1:]) < val[0]
    assert result.best_val_loss < np.log(256)  # below chance
    train_shapes = json.loads((run / "run.json").read_text())["train_shapes"]
    report = evaluate_embedding(
        run / "checkpoints" / "last.pt", dataset, shapes=train_shapes, pairs_per_shape=6
    )
    trained, random = report["pretrained"]["acc@5px"], report["random_network"]["acc@5px"]
    assert trained > random + 0.1, report  # measured: 0.33 against 0.09


def test_two_process_gloo_ddp(tmp_path, tiny):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
        "-m", "mvdecor", "pretrain", TINY_DATASET, str(run), "--preset", "cpu", "--rings", "2",
        "--segments", "5", "--resolution", "64", "--iterations", "3", "--pairs-per-batch", "1",
        "--matches-per-pair", "128", "--workers", "0", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["step"] == 3
    assert '"world_size": 2' in (run / "run.json").read_text()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 2 and "images_per_s" in rows[0]
