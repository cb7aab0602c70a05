"""Background jobs of the labelling app: "segment the rest" from the labelled meshes.

One job runs at a time per folder (:class:`JobManager`), in a thread, so the
server keeps answering while it works. Its progress (:class:`JobStatus`) is
read by polling, or streamed as Server-Sent Events (:mod:`mvdecor.app.events`). A job is cancelled between two meshes (or, for the full
pipeline, after the training step in progress, with a checkpoint); the
predictions of meshes already finished are kept. A job only ever writes
*predictions* (``predictions/``); the user's labels are never touched, whether
it succeeds, fails or is cancelled.

Methods:

- ``transfer`` (:func:`run_transfer`, seconds): the learning-free nearest
  neighbour transfer of :mod:`mvdecor.inference.transfer` from every mesh with
  user labels (after per-axis box alignment). The confidence of a face is the
  share of its ``neighbours`` nearest reference points that agree with its label.
- ``pipeline`` (:func:`run_pipeline`; on 2 CPU cores about 25 minutes for the
  first round, which pre-trains, and seconds for later rounds, which reuse the
  network; BENCHMARKS.md, "Segment the rest"): pre-train an
  embedding network on every mesh of the folder when none exists yet, fine-tune
  it on the labelled meshes and painted views, and segment the others (``cpu``
  preset, or a config file; ``overrides`` shrink it, e.g. for a test). On the
  ``cpu`` preset the app "fine-tunes" with the nearest labelled faces alone
  (:data:`APP_CPU_OVERRIDES`): a later round answers in seconds rather than
  the minutes the preset's fine-tuned network and its lookup take.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.app.folder import AppFolder
from mvdecor.errors import ConfigError, LabelError, MvDecorError

__all__ = [
    "APP_CPU_OVERRIDES",
    "METHODS",
    "JobBusyError",
    "JobCancelled",
    "JobManager",
    "JobStatus",
    "run_pipeline",
    "run_transfer",
]

#: The "segment the rest" methods.
METHODS = ("transfer", "pipeline")
#: What the pipeline job changes in the ``cpu`` preset unless its ``overrides`` say otherwise: the
#: nearest labelled faces alone, no training (the preset pairs them with a fine-tuned network:
#: 36.5 s instead of 7.3 s for a later round on 10 meshes and 2 cores, for −0.5 to +1.8 points
#: of part mIoU in the few-shot benchmarks; BENCHMARKS.md, "Segment the rest").
APP_CPU_OVERRIDES: dict[str, Any] = {"finetune": {"method": "nearest"}}
#: Where the pipeline's training runs go, inside the folder.
RUNS_DIR = ".mvdecor-app/runs"
#: The lock file a running job holds (one job per folder, across app servers too).
LOCK_FILE = ".mvdecor-app/job.lock"


class JobBusyError(MvDecorError):
    """A job is already running in this folder (one at a time)."""


class JobCancelled(Exception):
    """Raised inside a job when it has been asked to stop."""


@dataclass
class JobStatus:
    """What a job is doing.

    Attributes
    ----------
    id : increasing number of the job in this server's life
    method : ``transfer``, ``pipeline``, or a test's name
    state : ``running``, ``done``, ``failed`` or ``cancelled``
    done, total : meshes finished and meshes to do
    message : what it is doing now
    error : why it failed (``state == "failed"``)
    predicted : shape ids whose prediction it saved
    step, steps : training steps done and to do in the current training stage (0 outside one)
    """

    id: int
    method: str
    state: str = "running"
    done: int = 0
    total: int = 0
    message: str = "starting"
    error: str | None = None
    predicted: list[str] = field(default_factory=list)
    step: int = 0
    steps: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["predicted"] = list(self.predicted)
        end = self.finished if self.finished is not None else time.time()
        out["elapsed_s"] = round(end - self.started, 2)
        return out


class Progress:
    """Handed to a job function: report progress, and stop when cancelled."""

    def __init__(self, status: JobStatus, cancel: threading.Event, lock: threading.Lock) -> None:
        self._status, self._cancel, self._lock = status, cancel, lock

    def check(self) -> None:
        """Raise :class:`JobCancelled` when the job has been asked to stop."""
        if self._cancel.is_set():
            raise JobCancelled

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def update(
        self,
        *,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
        step: int | None = None,
        steps: int | None = None,
    ) -> None:
        with self._lock:
            if step is not None:
                self._status.step = step
            if steps is not None:
                self._status.steps = steps
            if done is not None:
                self._status.done = done
            if total is not None:
                self._status.total = total
            if message is not None:
                self._status.message = message

    def training(self, stage: str) -> Callable[[int, int], None]:
        """An ``on_step(step, total)`` for a training stage: "<stage> step 120/2400" as the message."""

        def on_step(step: int, total: int) -> None:
            self.update(message=f"{stage} step {step}/{total}", step=step, steps=total)

        return on_step

    def predicted(self, shape_id: str) -> None:
        with self._lock:
            self._status.predicted.append(shape_id)


JobFunction = Callable[[Progress], None]


class JobManager:
    """Runs at most one job at a time for one folder.

    Parameters
    ----------
    lock_file : when given, a job also holds an exclusive ``flock`` on this file
        while it runs, so that two app servers on one folder cannot run jobs at once
    """

    def __init__(self, lock_file: Path | None = None) -> None:
        self._lock_file = lock_file
        self._lock = threading.Lock()
        self._status: JobStatus | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._count = 0

    def start(self, method: str, function: JobFunction) -> JobStatus:
        """Start ``function(progress)`` in a thread.

        Raises
        ------
        JobBusyError
            Another job is still running.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise JobBusyError("a job is already running in this folder; wait for it or cancel it")
            handle = self._hold_folder_lock()
            self._count += 1
            self._cancel = threading.Event()
            status = JobStatus(self._count, method)
            self._status = status
            progress = Progress(status, self._cancel, self._lock)
            thread = threading.Thread(
                target=self._run,
                args=(function, progress, status, handle),
                name=f"mvdecor-job-{status.id}",
                daemon=True,
            )
            self._thread = thread
        thread.start()
        return status

    def _hold_folder_lock(self):
        """The open, exclusively locked lock file (None without one); JobBusyError when held elsewhere."""
        if self._lock_file is None:
            return None
        import fcntl

        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self._lock_file, "a")  # noqa: SIM115 - closed when the job ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JobBusyError("another mvdecor app is running a job in this folder; wait for it") from None
        return handle

    def _run(self, function: JobFunction, progress: Progress, status: JobStatus, handle=None) -> None:
        try:
            self._work(function, progress, status)
        finally:
            if handle is not None:
                handle.close()  # releases the flock

    def _work(self, function: JobFunction, progress: Progress, status: JobStatus) -> None:
        try:
            function(progress)
        except JobCancelled:
            outcome, error = "cancelled", None
        except MvDecorError as exc:
            outcome, error = "failed", str(exc)
        except Exception as exc:  # a bug or an unexpected library error: report it, keep serving
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        else:
            outcome, error = ("cancelled", None) if self._cancel.is_set() else ("done", None)
        with self._lock:
            status.state, status.error, status.finished = outcome, error, time.time()
            status.message = {"done": "finished", "cancelled": "cancelled", "failed": "failed"}[outcome]

    def status(self) -> dict[str, Any] | None:
        """The current (or last) job's status, or None before the first."""
        with self._lock:
            return None if self._status is None else self._status.to_dict()

    def cancel(self) -> dict[str, Any] | None:
        """Ask the running job to stop (it stops at its next check); returns its status."""
        self._cancel.set()
        return self.status()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job to end; True when no job is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


# ------------------------------------------------------------------ helpers
def _labelled_and_targets(
    folder: AppFolder, targets: Sequence[str] | None, painted: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """``(reference ids, target ids, names)``: meshes with user labels, the rest (or ``targets``).

    ``painted``: the folder has painted views, which supervise without face labels.
    """
    entries = folder.entries()
    known = {e.id: e for e in entries}
    references = [e.id for e in entries if e.state in ("labelled", "corrected")]
    if targets:
        unknown = sorted(set(targets) - set(known))
        if unknown:
            raise LabelError(None, f"no mesh(es) {', '.join(unknown[:5])} in the folder")
        chosen = [t for t in targets if known[t].state != "error"]
    else:
        chosen = [e.id for e in entries if e.state in ("unlabelled", "predicted")]
    if not references and not painted:
        raise LabelError(
            None, "label at least one mesh (paint some faces and save) before segmenting the rest"
        )
    names = list(folder.label_set()["names"])  # type: ignore[arg-type]
    return references, chosen, names


def _reference_mesh(folder: AppFolder, shape_id: str):
    mesh = folder.load_mesh(shape_id)
    labels, _ = folder.read_labels(shape_id, mesh)
    return mesh.with_labels(labels).normalized()


def _folder_references(folder: AppFolder, shape_ids: Sequence[str], samples: int, check=None) -> list:
    """The folder's labelled meshes ``shape_ids`` as label transfer's references (``check``,
    when given, runs before each: a job's cancellation point)."""
    from mvdecor.inference.transfer import reference_from_mesh

    refs = []
    for shape_id in shape_ids:
        if check is not None:
            check()
        refs.append(reference_from_mesh(_reference_mesh(folder, shape_id), samples=samples))
    return refs


# ---------------------------------------------------------------- transfer
def run_transfer(
    folder: AppFolder,
    progress: Progress,
    *,
    targets: Sequence[str] | None = None,
    neighbours: int = 8,
    samples: int = 20_000,
    align: str = "box",
) -> None:
    """Label every mesh without user labels by nearest-neighbour transfer; save predictions.

    Parameters
    ----------
    folder : the app's folder
    progress : the job's progress handle
    targets : shape ids to label (default: every mesh without user labels)
    neighbours : nearest reference points per face; the label is their majority and
        the confidence the share that agrees (1 gives a confidence of 1 everywhere)
    samples : surface samples per reference (beside its face centroids)
    align : ``box`` or ``none`` (see :class:`~mvdecor.inference.transfer.LabelTransfer`)
    """
    from mvdecor.inference.transfer import LabelTransfer

    progress.update(message="reading the labelled meshes")
    references, chosen, names = _labelled_and_targets(folder, targets)
    progress.update(total=len(chosen), done=0)
    refs = _folder_references(folder, references, samples, progress.check)
    transfer = LabelTransfer(refs, max(len(names), 1), align=align, neighbours=neighbours)
    for index, shape_id in enumerate(chosen):
        progress.check()
        progress.update(message=f"transferring labels to {shape_id}")
        mesh = folder.load_mesh(shape_id).normalized()
        labels, probs = transfer.predict(mesh)
        confidence = probs[np.arange(len(labels)), labels]
        folder.save_prediction(
            shape_id,
            labels,
            confidence,
            {"method": "transfer", "references": references, "label_names": names, "neighbours": neighbours},
        )
        progress.predicted(shape_id)
        progress.update(done=index + 1)
    progress.update(message="finished")


# ---------------------------------------------------------------- pipeline
def pipeline_label_images(
    folder: AppFolder, config: Any, references: Sequence[str], progress: Progress
) -> dict[tuple[str, int], Path] | None:
    """The label images fine-tuning should read, or None when no view is painted.

    Fine-tuning supervises with label images *or* with face labels, not both
    (:func:`mvdecor.train.finetune.finetune`), so when views are painted, the
    face-labelled meshes' views (``config.finetune.views_per_shape`` of them, as
    fine-tuning would choose) are written as label images too, under the
    app's runs folder: the per-pixel labels fine-tuning would derive itself. A
    painted view replaces the face-derived one of the same index.

    Raises
    ------
    ConfigError
        The views were painted with other render settings than ``config.render``.
    """
    import shutil

    from mvdecor.app.views import painted_label_images
    from mvdecor.correspond.source import ViewSource
    from mvdecor.fileio import save_image
    from mvdecor.train.labelled import LABEL_IMAGE_IGNORE, select_labelled_views

    painted = painted_label_images(folder)
    if not painted:
        return None
    check_painted_render(folder, config)
    images = dict(painted)
    out = folder.safe_path(f"{RUNS_DIR}/face_label_views")
    shutil.rmtree(out, ignore_errors=True)  # stale views of meshes relabelled since
    source = ViewSource(folder.dataset, config.render)
    cfg = config.finetune
    chosen = select_labelled_views(references, config.render.num_views, cfg.views_per_shape, cfg.seed)
    for number, item in enumerate(chosen):
        if (item.shape_id, item.view_index) in images:
            continue
        progress.check()
        progress.update(message=f"rendering the labelled meshes' views ({number + 1}/{len(chosen)})")
        mesh = source.mesh(item.shape_id)
        view = source.view(item.shape_id, item.view_index)
        labels = np.where(view.mask, view.face_labels(mesh.face_labels), -1)
        path = out / item.shape_id / f"view_{item.view_index}.png"
        save_image(np.where(labels < 0, LABEL_IMAGE_IGNORE, labels).astype(np.uint8), path)
        images[(item.shape_id, item.view_index)] = path
    return images


def check_painted_render(folder: AppFolder, config: Any) -> None:
    """Refuse painted views made with other render settings than ``config.render``.

    Raises
    ------
    ConfigError
        ``label_images/render.json`` differs from ``config.render``: view ``N``
        of this job would be another picture than the one painted.
    """
    from mvdecor.app.views import saved_render_config

    recorded = saved_render_config(folder)
    if recorded is not None and recorded != config.render:
        raise ConfigError(
            "label_images/render.json",
            "the views were painted with other render settings than this job's "
            f"({recorded} vs {config.render}); run with the same settings, or move label_images away",
        )


def run_pipeline(
    folder: AppFolder,
    progress: Progress,
    *,
    targets: Sequence[str] | None = None,
    preset: str = "cpu",
    overrides: dict[str, Any] | None = None,
    pretrained: str | None = None,
) -> None:
    """Pre-train (when no network exists yet), fine-tune on the labelled meshes, segment the rest.

    Parameters
    ----------
    folder : the app's folder
    progress : the job's progress handle
    targets : shape ids to segment (default: every mesh without user labels)
    preset : ``cpu`` or ``paper``, or a YAML config file inside the folder
    overrides : nested config values over the preset (e.g. fewer iterations); on
        ``cpu`` they apply over :data:`APP_CPU_OVERRIDES`
    pretrained : a pre-training checkpoint inside the folder; default: the app's own
        pre-trained network (``.mvdecor-app/runs/pretrain``), trained first when
        missing, or trained on when a cancelled job left it unfinished

    Notes
    -----
    Painted views (``label_images/``, :mod:`mvdecor.app.views`) supervise
    fine-tuning beside the face labels (:func:`pipeline_label_images`). A
    configuration that pairs the fine-tuned network with the nearest labelled
    faces (``segment.prior_method: nearest``) gets that bank too, and the two
    are mixed as ``mvdecor segment`` mixes them.
    Cancelling stops pre-training or fine-tuning after the step in progress
    (with a checkpoint: a cancelled pre-training resumes in the next job),
    else between meshes. The status's ``step``/``steps`` and message follow
    the training steps.
    """
    from mvdecor.app.views import painted_label_images
    from mvdecor.config import load_config, merge_dicts
    from mvdecor.inference.segment import Segmenter, SegmenterPrior
    from mvdecor.train.checkpoint import load_checkpoint
    from mvdecor.train.engine import TrainingCancelled
    from mvdecor.train.finetune import finetune, finetune_nearest_prior, wants_nearest_prior
    from mvdecor.train.pretrain import pretrain

    progress.update(message="reading the labelled meshes")
    painted = painted_label_images(folder)
    references, chosen, names = _labelled_and_targets(folder, targets, painted=bool(painted))
    if preset == "cpu":
        overrides = merge_dicts(APP_CPU_OVERRIDES, overrides or {})
    elif preset != "paper":
        preset = str(folder.safe_path(preset, must_exist=True))
    config = load_config(preset, overrides)
    runs = folder.safe_path(RUNS_DIR)
    spec = f"folder:{folder.root}"
    loadable = [e.id for e in folder.entries() if e.state != "error"]
    if painted:
        check_painted_render(folder, config)  # before hours of pre-training, not after
    stop = {"should_stop": lambda: progress.cancelled}
    try:
        if pretrained is not None:
            checkpoint = folder.safe_path(pretrained, must_exist=True)
        else:
            checkpoint = runs / "pretrain" / "checkpoints" / "last.pt"
            unfinished = checkpoint.is_file() and _unfinished(load_checkpoint(checkpoint))
            if not checkpoint.is_file() or unfinished:
                progress.check()
                progress.update(message=f"pre-training a network on {len(loadable)} meshes (long on a CPU)")
                result = pretrain(
                    config,
                    spec,
                    runs / "pretrain",
                    split={"train": loadable, "val": []},
                    resume=unfinished,
                    progress=False,
                    report=False,
                    on_step=progress.training("pre-training"),
                    **stop,
                )
                checkpoint = result.last_checkpoint
        progress.check()
        label_images = pipeline_label_images(folder, config, references, progress)
        labelled = sorted(set(references) | {s for s, _ in painted})
        what = f"{len(labelled)} labelled meshes" + (f" ({len(painted)} painted views)" if painted else "")
        # The cpu preset's nearest head trains nothing: it banks the labelled pixels in seconds.
        verb = "banking the labelled pixels of" if config.finetune.method == "nearest" else "fine-tuning on"
        progress.update(message=f"{verb} {what}", step=0, steps=0)
        # The labelled data and run options of the network and of its lookup, when paired.
        common = dict(
            labelled_shapes=labelled,
            init=checkpoint,
            unlabelled_shapes=loadable,
            label_images=label_images,
            resume=False,
            progress=False,
            report=False,
            **stop,
        )
        tuned = finetune(config, spec, runs / "finetune", on_step=progress.training("fine-tuning"), **common)
        lookup = None
        if wants_nearest_prior(config):  # a configuration that pairs the network with the lookup
            progress.update(message=f"banking the labelled pixels of {what} as the network's prior")
            lookup = finetune_nearest_prior(config, spec, runs / "finetune", **common)
    except TrainingCancelled:
        raise JobCancelled from None
    progress.update(step=0, steps=0)
    if list(tuned.label_names) != names[: len(tuned.label_names)]:
        raise ConfigError(None, f"the network's labels {list(tuned.label_names)} differ from {names}")
    segmenter = Segmenter.from_checkpoint(tuned.model_checkpoint)
    prior = None if lookup is None else SegmenterPrior(Segmenter.from_checkpoint(lookup.model_checkpoint))
    if prior is not None and config.segment.transfer_vote != "off":
        prior = _with_transfer_vote(folder, config, prior, references, names)
    progress.update(total=len(chosen), done=0)
    for index, shape_id in enumerate(chosen):
        progress.check()
        progress.update(message=f"segmenting {shape_id}")
        result = segmenter.segment(folder.load_mesh(shape_id), transfer=prior)
        folder.save_prediction(
            shape_id,
            result.face_labels,
            result.face_confidence,
            {
                "method": "pipeline",
                "references": references,
                "painted_views": len(painted),
                "label_names": names,
                "preset": config.preset,
            },
        )
        progress.predicted(shape_id)
        progress.update(done=index + 1)
    progress.update(message="finished")


def _with_transfer_vote(folder: AppFolder, config, prior, references: Sequence[str], names: Sequence[str]):
    """The pair's lookup with label transfer from the labelled meshes as a third voter, as
    ``segment.transfer_vote`` asks (``mvdecor segment --transfer-vote``); with painted views
    only there is no labelled mesh to transfer from, and the pair votes alone."""
    from mvdecor.inference.refine import TransferVoter, check_vote_outside_protocol
    from mvdecor.inference.transfer import LabelTransfer

    vote = config.segment.transfer_vote
    check_vote_outside_protocol(vote)
    if not references:
        return TransferVoter(prior, None, {"joined": False, "reason": "no labelled mesh to transfer from"})
    settings = config.transfer
    refs = _folder_references(folder, references, settings.samples)
    transfer = LabelTransfer.from_settings(refs, max(len(names), 1), settings)
    return TransferVoter.joining(prior, transfer, vote)


def _unfinished(saved: dict) -> bool:
    """Whether a pre-training checkpoint stopped before its own run's length (a cancelled job)."""
    try:
        return int(saved["step"]) < int(saved["config"]["pretrain"]["iterations"])
    except (KeyError, TypeError, ValueError):
        return False


def job_function(folder: AppFolder, method: str, options: dict[str, Any]) -> JobFunction:
    """The function of a ``method`` job over ``folder`` with the request's ``options``.

    Raises
    ------
    ConfigError
        Unknown method or option.
    """
    allowed = {
        "transfer": {"targets", "neighbours", "samples", "align"},
        "pipeline": {"targets", "preset", "overrides", "pretrained"},
    }
    if method not in allowed:
        raise ConfigError(None, f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    unknown = sorted(set(options) - allowed[method])
    if unknown:
        raise ConfigError(None, f"unknown {method} option(s) {unknown}; known: {sorted(allowed[method])}")
    run = run_transfer if method == "transfer" else run_pipeline
    return lambda progress: run(folder, progress, **options)


def runs_folder(folder: AppFolder) -> Path:
    """Where the pipeline keeps its training runs (inside the folder)."""
    return folder.safe_path(RUNS_DIR)
