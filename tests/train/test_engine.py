"""The shared step loop, on a linear model (no rendering)."""

from __future__ import annotations

import copy
import csv

import pytest
import torch

from mvdecor.train.engine import (
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
