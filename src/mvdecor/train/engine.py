"""The step loop every training stage shares: pre-training (MvDeCor, DenseCL) and fine-tuning.

A stage supplies its data loader and a *step function* (one batch in, the
parameters updated, the loss out); :func:`train_steps` runs it and owns what
is the same everywhere:

- the progress bar, with the loss and learning rate;
- a loss that is not finite stops the run with an error naming the step;
- metrics rows every ``log_every`` steps (the stage's scalars, the learning
  rate, steps and images per second over the window, and the share of time
  spent waiting for data) through :class:`~mvdecor.train.logs.MetricLogger`;
- a hook after every step (validation, checkpoints), and an early, normal end
  when the stage says it is done (``finished``: held-out validation's patience);
- on Ctrl-C, the stage's checkpoint is written before the interrupt goes on;
- a stop request (``should_stop``, e.g. a cancel button of the labelling app)
  is honoured after the step in progress: the checkpoint is written as on
  Ctrl-C and :class:`TrainingCancelled` is raised, so the run resumes exactly;
- ``on_step(step, total)`` after every step, for a caller's own progress display.

Beside it: :class:`StepBatchSampler` (the items of step ``s`` are a function of
``s`` alone, so a resumed run draws exactly the batches an unbroken one would),
:func:`optimizer_step` (backward and step through the gradient scaler, which
fp16 needs and which is a no-op otherwise) and :func:`restore_training_state`
and :func:`training_state` (model, optimiser, scheduler, scaler and RNG to and
from a checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from mvdecor.errors import MvDecorError
from mvdecor.train.checkpoint import rng_state, set_rng_state
from mvdecor.train.logs import MetricLogger

__all__ = [
    "StepBatchSampler",
    "StepFunction",
    "TrainingCancelled",
    "cosine_factor",
    "make_grad_scaler",
    "optimizer_step",
    "restore_training_state",
    "train_steps",
    "training_state",
]

#: One training step: ``(batch, log)`` -> ``(loss, scalars)``. It moves the batch to
#: the device, updates the parameters, and returns the loss as a float and, when
#: ``log`` is true (a metrics row follows), any extra scalars to log.
StepFunction = Callable[[Any, bool], tuple[float, dict[str, float]]]


def cosine_factor(total: int) -> Callable[[int], float]:
    """Half a cosine from 1 at step 0 to 0 at step ``total`` (then 0): a learning-rate factor."""

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))

    return factor


class TrainingCancelled(MvDecorError):
    """A run stopped on request (``should_stop``) after ``step``, its checkpoint written.

    Running the same command again resumes from that step, as after Ctrl-C.
    """

    def __init__(self, step: int) -> None:
        self.step = int(step)
        super().__init__(f"training stopped on request at step {self.step}; run again to resume")


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for steps ``start..stop-1``, the item indices of this rank's share of each step.

    Step ``s`` of rank ``r`` among ``w`` gets items ``((s * w + r) * P + k)`` for
    ``k < P``: disjoint across ranks, and a function of the step alone.
    """

    def __init__(self, start: int, stop: int, pairs: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.stop, self.pairs, self.rank, self.world = start, stop, pairs, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            base = (step * self.world + self.rank) * self.pairs
            yield list(range(base, base + self.pairs))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def make_grad_scaler(precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only: its gradients underflow without loss scaling."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16")


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> None:
    """Clear the gradients, back-propagate ``loss`` and step, through the scaler."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def training_state(
    step: int,
    device: torch.device,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> dict[str, Any]:
    """What an exact resume needs, as checkpoint entries; the stage adds its own.

    The inverse of :func:`restore_training_state`.
    """
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "rng": rng_state(device),
    }


def restore_training_state(
    saved: dict,
    device: torch.device,
    model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> int:
    """Load a checkpoint's model, optimiser, scheduler, scaler (when saved) and RNG; its step.

    The inverse of :func:`training_state`. ``model`` None: the caller has loaded it already.
    """
    if model is not None:
        model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if "scaler" in saved:
        scaler.load_state_dict(saved["scaler"])
    set_rng_state(saved["rng"], device)
    return int(saved["step"])


def train_steps(
    loader: Iterable[Any],
    step_fn: StepFunction,
    *,
    step: int,
    total: int,
    stop: int,
    device: torch.device,
    lr: Callable[[], float],
    logger: MetricLogger | None = None,
    log_every: int = 10,
    loss_name: str = "loss",
    images_per_step: int | None = None,
    after_step: Callable[[int], None] | None = None,
    on_interrupt: Callable[[int], None] | None = None,
    desc: str = "train",
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    finished: Callable[[], bool] | None = None,
) -> tuple[int, float]:
    """Run ``step_fn`` on every batch of ``loader``; ``(the step reached, the last loss)``.

    Parameters
    ----------
    loader : yields the batches of steps ``step .. stop - 1``
    step_fn : one step (see :data:`StepFunction`)
    step : the step the run starts from (0, or a resumed checkpoint's)
    total : the run's full length, for the progress bar
    stop : where this call ends (a row is always logged there)
    device : where the step runs (CUDA is synchronised, so timings are real)
    lr : the current learning rate, for the bar and the rows
    logger : where metrics rows go (None: no rows, e.g. on ranks other than 0)
    log_every : steps between rows
    loss_name : the loss's column name
    images_per_step : when given, ``images_per_s`` is logged too
    after_step : called with the new step after every step (validation, checkpoints)
    on_interrupt : called with the step reached on Ctrl-C (write the checkpoint),
        before the interrupt is re-raised
    desc, progress : the bar's label, and whether to show it
    should_stop : asked after every step (after ``after_step``); when it returns
        True before ``stop``, ``on_interrupt`` writes the checkpoint and
        :class:`TrainingCancelled` is raised. Under several processes each rank
        must get the same answer at the same step, or the others wait forever
    on_step : called with ``(step, total)`` after every step (a caller's progress)
    finished : asked after every step (after ``after_step``); True ends the run
        there, normally (early stopping: the stage has written what it keeps)

    Raises
    ------
    FloatingPointError
        The loss is not finite.
    TrainingCancelled
        ``should_stop`` returned True.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc, unit="it", disable=not progress, dynamic_ncols=True)
    last = math.nan
    wait_s = compute_s = 0.0
    window_steps = 0
    window_start = time.perf_counter()
    try:
        fetch_start = time.perf_counter()
        for batch in loader:
            got = time.perf_counter()
            wait_s += got - fetch_start
            log = logger is not None and ((step + 1) % log_every == 0 or step + 1 == stop)
            last, scalars = step_fn(batch, log)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step += 1
            window_steps += 1
            compute_s += time.perf_counter() - got
            bar.update()
            bar.set_postfix({loss_name: f"{last:.3f}", "lr": f"{lr():.1e}"})
            if not math.isfinite(last):
                raise FloatingPointError(f"loss became {last} at step {step}; lower the learning rate")
            if log and logger is not None:
                rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
                rates = {"it_per_s": rate}
                if images_per_step is not None:
                    rates["images_per_s"] = rate * images_per_step
                logger.log(
                    step,
                    **{loss_name: last},
                    **scalars,
                    lr=lr(),
                    **rates,
                    data_wait_share=wait_s / max(wait_s + compute_s, 1e-9),
                )
                wait_s = compute_s = 0.0
                window_steps = 0
                window_start = time.perf_counter()
            if after_step is not None:
                after_step(step)
            if on_step is not None:
                on_step(step, total)
            if finished is not None and finished():
                if progress:
                    bar.write(f"{desc}: stopped early at step {step}")
                break
            if should_stop is not None and step < stop and should_stop():
                if on_interrupt is not None:
                    on_interrupt(step)
                bar.write(f"stopped on request at step {step}; resume by running the same command again")
                raise TrainingCancelled(step)
            fetch_start = time.perf_counter()
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt(step)
            bar.write(f"interrupted at step {step}; resume by running the same command again")
        raise
    finally:
        bar.close()
    return step, last
