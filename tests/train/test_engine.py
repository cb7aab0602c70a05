"""The shared step loop, on a linear model (no rendering)."""

from __future__ import annotations

import copy
import csv

import pytest
import torch

from mvdecor.train.engine import (
    TrainingCancelled,
    make_grad_scaler,
    optimizer_step,
    restore_training_state,
    train_steps,
    training_state,
)
from mvdecor.train.logs import MetricLogger

CPU = torch.device("cpu")


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler, make_grad_scaler("fp32")


def _batches(n):
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, generator=gen) for _ in range(n)]


def _step_fn(model, optimizer, scheduler, scaler):
    def step(batch, log):
        loss = (model(batch) - 1.0).pow(2).mean()
        optimizer_step(loss, optimizer, scaler)
        scheduler.step()
        return float(loss.detach()), ({"extra": 2.0} if log else {})

    return step


def test_rows_hooks_and_the_loss_going_down(tmp_path):
    model, optimizer, scheduler, scaler = _setup()
    logger = MetricLogger(tmp_path, "metrics", tensorboard=False)
    seen = []
    step, last = train_steps(
        _batches(7),
        _step_fn(model, optimizer, scheduler, scaler),
        step=3,
        total=10,
        stop=10,
        device=CPU,
        lr=lambda: optimizer.param_groups[0]["lr"],
        logger=logger,
        log_every=3,
        images_per_step=4,
        after_step=seen.append,
        progress=False,
    )
    logger.close()
    assert step == 10 and seen == list(range(4, 11))
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    # Every third step, and always the last one.
    assert [int(r["step"]) for r in rows] == [6, 9, 10]
    assert {"loss", "extra", "lr", "it_per_s", "images_per_s", "data_wait_share"} <= set(rows[0])
    assert float(rows[0]["images_per_s"]) == pytest.approx(4 * float(rows[0]["it_per_s"]))
    assert float(rows[-1]["lr"]) == optimizer.param_groups[0]["lr"]
    assert 0.0 <= float(rows[0]["data_wait_share"]) <= 1.0
    assert last == pytest.approx(float(rows[-1]["loss"]))


def test_a_loss_that_is_not_finite_names_the_step():
    def step(batch, log):
        return (float("nan") if int(batch) == 2 else 1.0), {}

    with pytest.raises(FloatingPointError, match="at step 3"):
        train_steps(range(5), step, step=0, total=5, stop=5, device=CPU, lr=lambda: 0.1, progress=False)


def test_an_interrupt_saves_at_the_step_reached():
    saved = []

    def step(batch, log):
        if batch == 3:
            raise KeyboardInterrupt
        return 1.0, {}

    with pytest.raises(KeyboardInterrupt):
        train_steps(
            range(6), step, step=0, total=6, stop=6, device=CPU, lr=lambda: 0.1,
            on_interrupt=saved.append, progress=False,
        )  # fmt: skip
    assert saved == [3]


def test_training_state_round_trip_resumes_exactly():
    batches = _batches(6)
    model, optimizer, scheduler, scaler = _setup()
    step_fn = _step_fn(model, optimizer, scheduler, scaler)
    kwargs = dict(total=6, device=CPU, lr=lambda: 0.1, progress=False)
    train_steps(batches[:3], step_fn, step=0, stop=3, **kwargs)
    # Deep-copied as saving would: the state dicts share the live tensors.
    state = copy.deepcopy(training_state(3, CPU, model, optimizer, scheduler, scaler))
    train_steps(batches[3:], step_fn, step=3, stop=6, **kwargs)
    unbroken = [p.detach().clone() for p in model.parameters()]

    other, opt2, sched2, scaler2 = _setup(seed=5)  # other weights, fresh optimiser
    assert restore_training_state(state, CPU, other, opt2, sched2, scaler2) == 3
    train_steps(batches[3:], _step_fn(other, opt2, sched2, scaler2), step=3, stop=6, **kwargs)
    for a, b in zip(unbroken, other.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach())


def test_a_stop_request_saves_at_the_step_reached_and_raises():
    saved, progress = [], []
    calls = iter([False, False, True])
    with pytest.raises(TrainingCancelled) as info:
        train_steps(
            range(6), lambda batch, log: (1.0, {}), step=0, total=6, stop=6, device=CPU,
            lr=lambda: 0.1, on_interrupt=saved.append, progress=False,
            should_stop=lambda: next(calls), on_step=lambda s, t: progress.append((s, t)),
        )  # fmt: skip
    assert info.value.step == 3 and saved == [3]
    assert progress == [(1, 6), (2, 6), (3, 6)]


def test_a_stop_request_at_the_last_step_is_a_normal_end():
    # Nothing is left to stop: the run ends as usual and its caller writes the final checkpoint.
    seen = [0]
    step, _ = train_steps(
        range(3), lambda batch, log: (1.0, {}), step=0, total=3, stop=3, device=CPU,
        lr=lambda: 0.1, progress=False, on_step=lambda s, t: seen.append(s),
        should_stop=lambda: seen[-1] == 3,
    )  # fmt: skip
    assert step == 3


def test_a_run_stopped_on_request_resumes_exactly():
    batches = _batches(6)
    kwargs = dict(total=6, device=CPU, lr=lambda: 0.1, progress=False)
    model, optimizer, scheduler, scaler = _setup()
    unbroken_losses = []
    step_fn = _step_fn(model, optimizer, scheduler, scaler)
    train_steps(batches, lambda b, log: _record(step_fn(b, log), unbroken_losses), step=0, stop=6, **kwargs)
    unbroken = [p.detach().clone() for p in model.parameters()]

    model, optimizer, scheduler, scaler = _setup()
    checkpoints, losses = [], []
    step_fn = _step_fn(model, optimizer, scheduler, scaler)

    def save(at_step):
        checkpoints.append(copy.deepcopy(training_state(at_step, CPU, model, optimizer, scheduler, scaler)))

    with pytest.raises(TrainingCancelled):
        train_steps(
            batches, lambda b, log: _record(step_fn(b, log), losses), step=0, stop=6,
            on_interrupt=save, should_stop=lambda: len(losses) == 4, **kwargs,
        )  # fmt: skip
    assert [c["step"] for c in checkpoints] == [4]
    other, opt2, sched2, scaler2 = _setup(seed=5)
    start = restore_training_state(checkpoints[0], CPU, other, opt2, sched2, scaler2)
    step_fn = _step_fn(other, opt2, sched2, scaler2)
    train_steps(
        batches[start:], lambda b, log: _record(step_fn(b, log), losses), step=start, stop=6, **kwargs
    )
    assert losses == pytest.approx(unbroken_losses, rel=1e-6)
    for a, b in zip(unbroken, other.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach())


def _record(result, losses):
    losses.append(result[0])
    return result


def test_pretraining_stopped_on_request_resumes_with_the_same_losses(tmp_path, tiny):
    # The whole path a cancel button takes: pretrain(should_stop=...) -> checkpoint -> resume.
    from tiny_setup import TINY_DATASET

    from mvdecor.train.checkpoint import load_checkpoint
    from mvdecor.train.pretrain import pretrain

    def losses(run):
        rows = csv.DictReader((run / "metrics.csv").read_text().splitlines())
        return {int(float(r["step"])): float(r["loss"]) for r in rows}

    full = pretrain(tiny, TINY_DATASET, tmp_path / "full", progress=False, report=False)
    steps = []
    with pytest.raises(TrainingCancelled) as info:
        pretrain(
            tiny, TINY_DATASET, tmp_path / "split", progress=False, report=False,
            on_step=lambda s, t: steps.append((s, t)), should_stop=lambda: len(steps) == 3,
        )  # fmt: skip
    assert info.value.step == 3 and steps == [(1, full.step), (2, full.step), (3, full.step)]
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 3
    resumed = pretrain(tiny, TINY_DATASET, tmp_path / "split", progress=False, report=False)
    assert resumed.step == full.step
    a, b = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert sorted(a) == sorted(b)
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
