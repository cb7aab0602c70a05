"""Few-shot methods that label a mesh's faces directly, without rendering views of it.

The few-shot protocol (:mod:`mvdecor.protocols.fewshot`) scores two kinds of
method on the same draws. The 2D methods (MvDeCor, scratch, DenseCL, ImageNet)
fine-tune a network on rendered views and fuse its view predictions onto the
faces. The *face methods* registered here go from the run's labelled shapes to
an object with ``predict(mesh) -> (face_labels, face_probabilities)``:

- ``transfer``: learning-free nearest-neighbour label transfer
  (:mod:`mvdecor.inference.transfer`), the floor every learned method must clear;
- ``scratch3d``: the paper's (3D) Scratch, a point network (DGCNN) trained on
  the labelled shapes' surface samples only (:mod:`mvdecor.points`);
- ``pointcontrast``: the same network pre-trained by PointContrast; pass the
  pre-training checkpoint as ``init`` (its ``kind`` names the method);
- ``deform``: the paper's weak supervision by learned deformation: a network
  trained without labels on the category's training shapes to deform one shape
  onto another (once per category, in ``OUT/deformation``), then the
  best-fitting labelled shape's labels carried along it
  (:mod:`mvdecor.points.deformation`).

In the labelled-view setting (``v`` labelled views per shape) every method
learns from the labels those views show: transfer from the labelled pixels' hit
points, the 3D methods from the faces the views see (:func:`labelled_meshes`),
as the paper trains its 3D baselines on labelled views projected onto the mesh.

Each :class:`FaceMethod` names the configuration sections that decide its
result, so the protocol's cache (:mod:`mvdecor.protocols.stages`) re-runs a
cell when, and only when, one of them changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from mvdecor.config import PRIOR_METHODS, TRANSFER_VOTES, Config
from mvdecor.correspond.source import ViewSource
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import ConfigError
from mvdecor.inference.refine import FacePrior, TransferVoter
from mvdecor.inference.transfer import LabelTransfer, reference_from_mesh, reference_from_views
from mvdecor.protocols.stages import config_sections, finish_stage, network_settings, open_stage
from mvdecor.registry import Registry
from mvdecor.render.views import RenderedView, seen_faces
from mvdecor.train.labelled import select_labelled_views

__all__ = [
    "DEFORM",
    "FACE_METHODS",
    "NEAREST_PRIOR",
    "SCRATCH3D",
    "TRANSFER",
    "FaceMethod",
    "FacePredictor",
    "FaceRun",
    "build_transfer",
    "choose_transfer_vote",
    "label_prior",
    "labelled_meshes",
]

#: The learning-free method: labels carried from the labelled shapes by nearest neighbour
#: (:mod:`mvdecor.inference.transfer`), no network. Pass it as ``init``.
TRANSFER = "transfer"
#: The paper's (3D) Scratch baseline. Pass it as ``init``.
SCRATCH3D = "scratch3d"
#: The paper's learned-deformation baseline. Pass it as ``init``.
DEFORM = "deform"
#: The prior (``segment.prior_method``) that mixes a 2D network's votes with the nearest labelled
#: faces of the network it was fine-tuned from: not a face method (it needs a 2D network's ``init``).
NEAREST_PRIOR = "nearest"


class FacePredictor(Protocol):
    """What a face method builds for one run: a labeller of whole meshes."""

    def predict(self, mesh: LabelledMesh) -> tuple[np.ndarray, np.ndarray]:
        """``(face_labels (F,) int64, face_probabilities (F, C) float32)`` for ``mesh``."""
        ...


@dataclass(frozen=True)
class FaceRun:
    """One run of a face method: what it may learn from, and where it may write.

    Attributes
    ----------
    config : Config
        The protocol's configuration.
    source : ViewSource
        The dataset's meshes (and views, for the labelled-view setting).
    labelled_shapes : list of str
        The run's k labelled shapes.
    unlabelled_shapes : list of str
        The pool they were drawn from (the category's training shapes), labels unused.
    num_classes : int
        Size of the label vocabulary.
    views_per_shape : int
        0 when the labelled shapes are labelled on every face; ``v`` when only
        ``v`` rendered views of each are labelled.
    seed : int
        The run's seed.
    exclude_classes : tuple of int
        Labels never predicted (PartNet's 0, "other").
    init : str
        The method's name, or the checkpoint of its own pre-training.
    folder : Path
        The run's folder (checkpoints, logs), already opened as a stage.
    progress : bool
        Show progress bars.
    """

    config: Config
    source: ViewSource
    labelled_shapes: list[str]
    unlabelled_shapes: list[str]
    num_classes: int
    views_per_shape: int
    seed: int
    exclude_classes: tuple[int, ...]
    init: str
    folder: Path
    progress: bool = True


@dataclass(frozen=True)
class FaceMethod:
    """A registered face method.

    Attributes
    ----------
    build : callable
        ``build(run: FaceRun) -> FacePredictor``; may train (in ``run.folder``).
    sections : tuple of str
        The :class:`~mvdecor.config.Config` sections that decide its result.
    learned : bool
        Whether it trains anything: refinement variants and wall times apply.
    """

    build: Callable[[FaceRun], FacePredictor]
    sections: tuple[str, ...]
    learned: bool = True


FACE_METHODS: Registry[FaceMethod] = Registry("face method")


def _labelled_views(
    config: Config, source: ViewSource, labelled_shapes: Sequence[str], views_per_shape: int, seed: int
) -> dict[str, list[RenderedView]]:
    """Per labelled shape, the ``views_per_shape`` views that fine-tuning with ``seed`` labels
    (:func:`~mvdecor.train.labelled.select_labelled_views`): what every method may learn from."""
    items = select_labelled_views(labelled_shapes, config.render.num_views, views_per_shape, seed)
    return {
        shape_id: [source.view(shape_id, item.view_index) for item in items if item.shape_id == shape_id]
        for shape_id in labelled_shapes
    }


def build_transfer(
    config: Config,
    source: ViewSource,
    labelled_shapes: Sequence[str],
    num_classes: int,
    *,
    views_per_shape: int = 0,
    seed: int = 0,
    exclude_classes: Sequence[int] = (),
) -> LabelTransfer:
    """The label transfer from a run's labelled shapes (all their faces, or their labelled views).

    With ``views_per_shape = v > 0`` the references are the hit points of the
    same ``v`` views per shape that fine-tuning with ``seed`` labels
    (:func:`~mvdecor.train.labelled.select_labelled_views`), so the transfer
    sees exactly the labels the network sees.
    """
    settings = config.transfer
    references = []
    if views_per_shape > 0:
        views_of = _labelled_views(config, source, labelled_shapes, views_per_shape, seed)
        for shape_id in labelled_shapes:
            references.append(
                reference_from_views(
                    source.mesh(shape_id), views_of[shape_id], exclude_classes=exclude_classes
                )
            )
    else:
        for shape_id in labelled_shapes:
            references.append(
                reference_from_mesh(
                    source.mesh(shape_id),
                    samples=settings.samples,
                    seed=seed,
                    exclude_classes=exclude_classes,
                )
            )
    return LabelTransfer.from_settings(references, num_classes, settings)


def _transfer(run: FaceRun) -> LabelTransfer:
    return build_transfer(
        run.config,
        run.source,
        run.labelled_shapes,
        run.num_classes,
        views_per_shape=run.views_per_shape,
        seed=run.seed,
        exclude_classes=run.exclude_classes,
    )


# The labelled views' cameras come from the render settings.
FACE_METHODS.register(TRANSFER)(FaceMethod(_transfer, sections=("transfer", "render"), learned=False))


def labelled_meshes(run: FaceRun) -> list[LabelledMesh]:
    """The run's labelled shapes, labelled as far as the run's labels reach.

    With whole labelled shapes, the meshes as they are. With ``v`` labelled
    views per shape, the same views the 2D methods and transfer learn from
    (:func:`~mvdecor.train.labelled.select_labelled_views` with the run's seed)
    projected onto the mesh: a face keeps its label where one of them sees it
    and is ``-1`` (unlabelled: ignored by the point network's loss, never
    carried by a deformation) elsewhere. The geometry is whole either way.
    """
    meshes = [run.source.mesh(shape_id) for shape_id in run.labelled_shapes]
    if run.views_per_shape <= 0:
        return meshes
    views_of = _labelled_views(run.config, run.source, run.labelled_shapes, run.views_per_shape, run.seed)
    partial = []
    for shape_id, mesh in zip(run.labelled_shapes, meshes, strict=True):
        seen = seen_faces(views_of[shape_id], mesh.num_faces)
        partial.append(mesh.replace(face_labels=np.where(seen, mesh.face_labels, -1)))
    return partial


def _point_segmenter(run: FaceRun) -> FacePredictor:
    from mvdecor.points import train_point_segmenter  # loads the point network: only here

    return train_point_segmenter(
        run.config,
        labelled_meshes(run),
        run.num_classes,
        init=None if run.init == SCRATCH3D else run.init,
        out=run.folder,
        exclude_classes=run.exclude_classes,
        seed=run.seed,
        progress=run.progress,
    )


FACE_METHODS.register(SCRATCH3D)(FaceMethod(_point_segmenter, sections=("points",)))
# PointContrast's own settings are in its checkpoint (init); fine-tuning reads ``points``.
FACE_METHODS.register("pointcontrast")(FaceMethod(_point_segmenter, sections=("points",)))


def _deformation_transfer(run: FaceRun) -> FacePredictor:
    from mvdecor.points.deformation import DeformationTransfer, train_deformation  # loads torch: only here

    # Labels are not read, so every run of the category shares one network: a stage of its own.
    folder = run.folder.parent / "deformation"
    deform = config_sections(run.config, ("deform",))["deform"]
    # How labels are carried at transfer does not change the network.
    deform.pop("combine")
    settings = {"dataset": run.source.dataset.spec, "shapes": run.unlabelled_shapes, "deform": deform}
    if open_stage(folder, settings) is None:
        meshes = [run.source.mesh(shape_id) for shape_id in run.unlabelled_shapes]
        train_deformation(run.config, meshes, out=folder, progress=run.progress)
        finish_stage(folder, settings, {})
    return DeformationTransfer.from_checkpoint(
        folder / "last.pt",
        labelled_meshes(run),
        run.num_classes,
        exclude_classes=run.exclude_classes,
        combine=run.config.deform.combine,
        device=run.config.deform.device,
    )


FACE_METHODS.register(DEFORM)(FaceMethod(_deformation_transfer, sections=("deform",)))


def nearest_prior_folder(run_folder: Path) -> Path:
    """Where the ``nearest`` prior of the 2D run in ``run_folder`` keeps its labelled-face bank."""
    return run_folder.parent / f"{run_folder.name}_nearest-prior"


def _nearest_prior(run: FaceRun) -> FacePrior:
    """The nearest labelled faces of ``run.init`` (``finetune.method: nearest`` with the
    config's ``nearest_*`` settings, the run's seed and labelled views), as a prior.

    A stage of its own beside the run's folder (which the run empties when its
    settings change): the bank costs seconds, but a re-run reuses it.
    """
    from mvdecor.inference.segment import Segmenter, SegmenterPrior  # torch: only here
    from mvdecor.train.finetune import finetune, nearest_prior_config

    lookup = nearest_prior_config(run.config)
    config = replace(
        lookup, finetune=replace(lookup.finetune, seed=run.seed, views_per_shape=run.views_per_shape)
    )
    spec = run.source.dataset.spec
    settings = {
        "dataset": spec,
        "labelled_shapes": list(run.labelled_shapes),
        "unlabelled_shapes": list(run.unlabelled_shapes),
        "training": network_settings(config, run.init),
    }
    folder = nearest_prior_folder(run.folder)
    finished = open_stage(folder, settings)
    if finished is None:
        result = finetune(
            config,
            spec,
            folder,
            labelled_shapes=run.labelled_shapes,
            init=run.init,
            unlabelled_shapes=run.unlabelled_shapes,
            progress=run.progress,
            report=False,
        )
        finished = {"checkpoint": Path(result.model_checkpoint).relative_to(folder).as_posix()}
        finish_stage(folder, settings, finished)
    segmenter = Segmenter.from_checkpoint(
        folder / finished["checkpoint"], exclude_classes=run.exclude_classes
    )
    # The protocol's test-time views, not those saved with the bank.
    segmenter.config = replace(segmenter.config, segment=run.config.segment)
    return SegmenterPrior(segmenter)


def _part_miou(gt: np.ndarray, predicted: np.ndarray, areas: np.ndarray, exclude: Sequence[int]) -> float:
    """Area-weighted mean IoU over the parts ``gt`` labels or ``predicted`` gives (a part
    predicted where it is absent scores 0): one shape's score, for the leave-one-out choice
    only. Faces labelled ``-1`` or with an excluded class as their truth weigh nothing
    (PartNet's rule for its "other"), and ``-1`` predicts no part; as the protocol's PartNet
    evaluator, which also averages over the parts present in either. (Under ShapeNet-Part
    rules the evaluator counts a part absent from both as 1; here it is left out.)"""
    keep = (gt >= 0) & ~np.isin(gt, list(exclude))
    guessed = predicted[keep]
    ious = []
    for part in np.union1d(gt[keep], guessed[(guessed >= 0) & ~np.isin(guessed, list(exclude))]):
        truth, guess = keep & (gt == part), keep & (predicted == part)
        ious.append(areas[truth & guess].sum() / max(areas[truth | guess].sum(), 1e-12))
    return float(np.mean(ious)) if ious else float("nan")


def _argmax_allowed(probabilities: np.ndarray, exclude: Sequence[int]) -> np.ndarray:
    """Each face's most likely allowed class; ``-1`` where a row has no evidence (no view saw it)."""
    scores = np.array(probabilities, np.float64)
    scores[:, list(exclude)] = -1.0
    labels = scores.argmax(axis=1)
    labels[np.asarray(probabilities).sum(axis=1) <= 0] = -1
    return labels


def choose_transfer_vote(run: FaceRun) -> dict:
    """Whether label transfer joins the run's pair (``segment.transfer_vote: auto``), by leaving
    each labelled shape out in turn.

    Each of the ``k`` labelled shapes is labelled from the other ``k - 1`` twice:
    by transfer and by the lookup (the nearest labelled faces of ``run.init``,
    a bank of the others in a folder of its own beside the run's). Transfer
    joins when its part mIoU, summed over the left-out shapes (on the faces the
    run's labels reach: all of them, or those its ``v`` labelled views see), is
    above the lookup's. The fine-tuned network cannot be left out this way
    (it was trained on every labelled shape), so the lookup stands in for the
    learned side. With one labelled shape there is nothing to leave out: transfer
    stays out.

    Returns
    -------
    dict
        ``joined`` (bool), ``transfer`` and ``lookup`` (summed part mIoU, or None
        with one labelled shape), ``folds`` (per left-out shape: its id and both
        scores) and ``reason``.
    """
    shapes = list(run.labelled_shapes)
    if len(shapes) < 2:
        return {
            "joined": False,
            "transfer": None,
            "lookup": None,
            "folds": [],
            "reason": "one labelled shape: nothing to leave out",
        }
    targets = labelled_meshes(run)
    folds = []
    for index, (shape_id, target) in enumerate(zip(shapes, targets, strict=True)):
        others = shapes[:index] + shapes[index + 1 :]
        fold = replace(
            run, labelled_shapes=others, folder=run.folder.parent / f"{run.folder.name}_loo{index}"
        )
        areas = target.face_areas()
        transfer = _transfer(fold).face_probabilities(target)
        lookup = _nearest_prior(fold).face_probabilities(target)
        folds.append(
            {
                "left_out": shape_id,
                "transfer": _part_miou(
                    target.face_labels,
                    _argmax_allowed(transfer, run.exclude_classes),
                    areas,
                    run.exclude_classes,
                ),
                "lookup": _part_miou(
                    target.face_labels,
                    _argmax_allowed(lookup, run.exclude_classes),
                    areas,
                    run.exclude_classes,
                ),
            }
        )
    transfer_score = float(np.nansum([fold["transfer"] for fold in folds]))
    lookup_score = float(np.nansum([fold["lookup"] for fold in folds]))
    joined = transfer_score > lookup_score
    return {
        "joined": joined,
        "transfer": transfer_score,
        "lookup": lookup_score,
        "folds": folds,
        "reason": "transfer labels the left-out shapes "
        + ("better than the lookup" if joined else "no better than the lookup"),
    }


def transfer_vote_record(run_folder: Path) -> Path:
    """Where the protocol files the ``auto`` choice of the 2D run in ``run_folder`` (a JSON)."""
    return run_folder.parent / f"{run_folder.name}_transfer-vote.json"


def label_prior(
    method: str, run: FaceRun, transfer_vote: str = "off", lookup: FacePrior | None = None
) -> FacePrior:
    """The label prior ``segment.prior_method`` names, built from the run's labelled shapes.

    ``transfer`` or ``deform``: the face method of that name, whose face
    distributions a segmenter mixes into its votes (``segment.transfer_prior``).
    ``run.folder`` is the 2D method's run folder; ``deform`` trains (or reuses)
    the category's deformation network beside it, as the ``deform`` method does.
    ``nearest``: the nearest labelled faces of the 2D method's own initial
    network (``run.init``), in a folder beside its run's
    (:func:`nearest_prior_folder`): the fine-tuned network and the lookup its
    pre-training allows, averaged when the weight is 0.5. With ``transfer_vote``
    ``equal``, ``near``, ``unseen`` or ``auto`` (``segment.transfer_vote``) the lookup comes as a
    :class:`~mvdecor.inference.refine.TransferVoter` that brings label transfer
    as a third voter (always, always with per-face shares, on the faces far from
    every seen one, or when
    :func:`choose_transfer_vote` says so; the choice is filed beside the run's
    folder, :func:`transfer_vote_record`).
    ``lookup``: the run's ``nearest`` lookup when already built, shared rather than
    loaded again (ignored for the other methods).

    Raises
    ------
    ConfigError
        ``method`` is not a prior method, or ``transfer_vote`` not a transfer vote
        (it plays no part with another method than ``nearest``).
    """
    if method not in PRIOR_METHODS:
        raise ConfigError(
            None, f"segment.prior_method must be one of {', '.join(PRIOR_METHODS)}, got {method!r}"
        )
    if transfer_vote not in TRANSFER_VOTES:
        raise ConfigError(
            None, f"segment.transfer_vote must be one of {', '.join(TRANSFER_VOTES)}, got {transfer_vote!r}"
        )
    if method != NEAREST_PRIOR:  # transfer votes beside a pair only
        return FACE_METHODS.get(method).build(run)
    lookup = _nearest_prior(run) if lookup is None else lookup
    if transfer_vote == "off":
        return lookup
    if transfer_vote != "auto":  # near, unseen: always, each face's share set when it is refined
        decision = {"joined": True, "reason": f"segment.transfer_vote: {transfer_vote}"}
    else:
        decision = choose_transfer_vote(run)
        record = transfer_vote_record(run.folder)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(decision, indent=2) + "\n")
    return TransferVoter(lookup, _transfer(run) if decision["joined"] else None, decision)
