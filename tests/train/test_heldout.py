"""Held-out labelled views: the split, the score, and fine-tuning that keeps the best network."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_setup import tiny_config

from mvdecor.errors import ConfigError
from mvdecor.inference.segment import Segmenter
from mvdecor.train import finetune as finetune_module
from mvdecor.train.checkpoint import load_checkpoint, prune_checkpoints
from mvdecor.train.finetune import finetune
from mvdecor.train.heldout import held_out_miou, hold_out_views, miou_from_confusion
from mvdecor.train.labelled import LabelledView, select_labelled_views

CHAIRS = "synthetic:categories=chair,n=6,textured=0"
LABELLED = ["chair_0000", "chair_0001"]


def ft_config(**changes):
    config = tiny_config()
    ft = replace(config.finetune, iterations=8, views_per_batch=4, log_every=1, checkpoint_every=4,
                 num_workers=0, device="cpu", ssl_weight=0.0, val_views=2, val_every=2)  # fmt: skip
    return replace(config, finetune=replace(ft, **changes))


def _val_rows(run):
    with open(run / "val.csv", newline="") as handle:
        return [(int(float(r["step"])), float(r["val_miou"])) for r in csv.DictReader(handle)]


def test_hold_out_views_takes_n_seeded_views_of_each_shape():
    items = select_labelled_views(["a", "b", "c"], 12, 0, seed=0)
    train, held = hold_out_views(items, 3, seed=5, shape_of=lambda item: item.shape_id)
    assert len(held) == 9 and len(train) == 27
    assert {item.shape_id for item in held} == {"a", "b", "c"}
    assert all(sum(item.shape_id == s for item in held) == 3 for s in "abc")
    assert not set(train) & set(held) and set(train) | set(held) == set(items)
    assert train == [item for item in items if item not in held]  # order kept
    again = hold_out_views(items, 3, seed=5, shape_of=lambda item: item.shape_id)
    other = hold_out_views(items, 3, seed=6, shape_of=lambda item: item.shape_id)
    assert again == (train, held) and other[1] != held
    assert hold_out_views(items, 0, seed=5, shape_of=lambda item: item.shape_id) == (items, [])
    sparse = [LabelledView("a", 0), LabelledView("a", 4), LabelledView("b", 1)]
    with pytest.raises(ConfigError, match="no training view of b"):
        hold_out_views(sparse, 1, seed=0, shape_of=lambda item: item.shape_id)


def test_miou_from_confusion_matches_a_naive_count():
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 4, 500), rng.integers(0, 5, 500)
    predicted[predicted == 4] = 0  # class 4 never appears: not counted
    confusion = np.zeros((5, 5), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    ious = []
    for c in range(5):
        union = np.sum((truth == c) | (predicted == c))
        if union:
            ious.append(np.sum((truth == c) & (predicted == c)) / union)
    assert miou_from_confusion(confusion) == pytest.approx(np.mean(ious))
    assert np.isnan(miou_from_confusion(np.zeros((3, 3))))


def test_held_out_miou_scores_in_eval_mode_and_restores_the_mode():
    class Echo(torch.nn.Module):
        """Logits that are the labels' one-hot code, but only in eval mode."""

        def forward(self, inputs):
            logits = torch.nn.functional.one_hot(inputs[:, 0].long(), 3).permute(0, 3, 1, 2).float()
            return logits if not self.training else logits.flip(1)

    labels = torch.tensor([[[0, 1], [2, -1]]])
    inputs = labels.clamp(min=0)[:, None].float()
    model = Echo().train()
    score = held_out_miou(model, [(inputs, labels)], 3, torch.device("cpu"), _no_autocast)
    assert score == 1.0 and model.training
    wrong = (inputs + 1) % 3
    assert held_out_miou(model.eval(), [(wrong, labels)], 3, torch.device("cpu"), _no_autocast) == 0.0
    assert not model.training


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_finetune_keeps_the_best_held_out_network_and_resumes_its_scores(tmp_path):
    config = ft_config(iterations=4, val_every=1)
    run = tmp_path / "ft"
    result = finetune(config, CHAIRS, run, labelled_shapes=LABELLED, progress=False, report=False)
    assert result.step == 4
    rows = _val_rows(run)
    assert [step for step, _ in rows] == [1, 2, 3, 4]
    best_step = rows[int(np.argmax([miou for _, miou in rows]))][0]  # the first of ties
    assert result.best_step == best_step
    assert result.best_val_miou == pytest.approx(max(m for _, m in rows))
    assert result.model_checkpoint == run / "checkpoints" / "best.pt"
    best = load_checkpoint(result.model_checkpoint)
    assert best["step"] == best_step and "optimizer" not in best
    info = json.loads((run / "run.json").read_text())
    assert info["held_out_views"] == 4 and info["labelled_views"] == 2 * 12 - 4
    Segmenter.from_checkpoint(result.model_checkpoint)  # the chosen network segments
    # Interrupted and resumed, the run scores the held-out views as the unbroken one did.
    part = finetune(
        config,
        CHAIRS,
        tmp_path / "part",
        labelled_shapes=LABELLED,
        progress=False,
        report=False,
        stop_after=2,
    )
    assert part.step == 2
    resumed = finetune(
        config, CHAIRS, tmp_path / "part", labelled_shapes=LABELLED, progress=False, report=False
    )
    assert resumed.best_step == best_step
    assert _val_rows(tmp_path / "part") == [(s, pytest.approx(m, abs=1e-6)) for s, m in rows]
    # The finished run is reused with its choice, after trimming too.
    prune_checkpoints(run / "checkpoints", "weights", keep_best=True)
    again = finetune(config, CHAIRS, run, labelled_shapes=LABELLED, progress=False, report=False)
    assert (again.step, again.best_step, again.model_checkpoint) == (4, best_step, result.model_checkpoint)
    prune_checkpoints(run / "checkpoints", "last")
    assert not (run / "checkpoints" / "best.pt").exists()
    # Without held-out views the last network is the model, and nothing is scored.
    plain = finetune(ft_config(val_views=0, iterations=1), CHAIRS, tmp_path / "plain",
                     labelled_shapes=LABELLED, progress=False, report=False)  # fmt: skip
    assert plain.model_checkpoint == plain.last_checkpoint and plain.best_step is None
    assert not (tmp_path / "plain" / "val.csv").exists()


def test_patience_stops_the_run_and_a_rerun_does_not_train_on(tmp_path, monkeypatch):
    scores = iter([0.5, 0.6, 0.6, 0.55, 0.9, 0.9])
    monkeypatch.setattr(finetune_module, "held_out_miou", lambda *args: next(scores))
    config = ft_config(val_every=1, patience=2)
    run = tmp_path / "ft"
    result = finetune(config, CHAIRS, run, labelled_shapes=LABELLED, progress=False, report=False)
    # 0.5 (step 1), 0.6 (2, best), 0.6 (3, a tie is no gain), 0.55 (4): two without a gain.
    assert (result.step, result.best_step, result.best_val_miou) == (4, 2, 0.6)
    assert [step for step, _ in _val_rows(run)] == [1, 2, 3, 4]
    assert load_checkpoint(result.last_checkpoint)["validation"]["stopped"] is True
    again = finetune(config, CHAIRS, run, labelled_shapes=LABELLED, progress=False, report=False)
    assert (again.step, again.best_step) == (4, 2)
    assert len(_val_rows(run)) == 4
    prune_checkpoints(run / "checkpoints", "weights", keep_best=True)  # no optimizer: still finished
    assert finetune(config, CHAIRS, run, labelled_shapes=LABELLED, progress=False, report=False).step == 4


def test_validation_settings_are_checked():
    with pytest.raises(ConfigError, match="val_every"):
        ft_config(val_every=0)
    with pytest.raises(ConfigError, match="patience"):
        ft_config(patience=-1)
    with pytest.raises(ConfigError, match="val_views"):
        ft_config(val_views=-1)
