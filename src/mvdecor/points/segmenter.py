"""(3D) Scratch and (3D) PointContrast fine-tuning: a point segmentation network for meshes.

:func:`train_point_segmenter` trains a :class:`~mvdecor.points.network.PointSegmentationNet`
with cross-entropy on point clouds of the few labelled shapes: every step draws
``finetune_shapes_per_batch`` fresh clouds of ``num_points`` area-weighted
surface samples (each point labelled with its face's label), scales and
jitters them (and rotates them about the up axis with ``finetune_rotation``).
It starts from random weights (*scratch*) or from a PointContrast checkpoint
(:func:`~mvdecor.points.pointcontrast.pretrain_pointcontrast`), whose network
then trains with the new head.

:class:`PointSegmenter` labels a mesh: it samples ``predict_clouds`` clouds
on it, predicts per-point class probabilities, and gives each face the mean
probabilities of the samples on it; a face no sample fell on takes those of
the sample nearest its centroid. Its ``predict`` mirrors
:meth:`~mvdecor.inference.transfer.LabelTransfer.predict`.

Excluded classes (PartNet's label 0, "other") are handled as by the 2D
pipeline and the transfer: their points, like unlabelled ones (``-1``), are
ignored by the loss, and their scores are masked, so they are never predicted.
Meshes are used in their unit-sphere-normalised frame (normalised here when
they are not), as the renderer sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

from mvdecor.config import Config, PointsConfig
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import ConfigError, LabelError
from mvdecor.models.checkpoints import CheckpointError, load_checkpoint
from mvdecor.points.network import PointSegmentationNet, build_point_embedding
from mvdecor.points.pointcontrast import POINTCONTRAST_KIND
from mvdecor.points.sampling import UP_AXIS, augment_points, network_input, sample_surface
from mvdecor.points.training import (
    check_same_network,
    points_config_from_dict,
    resolve_points_device,
    run_point_training,
)
from mvdecor.train.precision import autocast

__all__ = [
    "POINT_SEGMENTATION_KIND",
    "PointSegmenter",
    "build_point_segmentation_net",
    "train_point_segmenter",
]

#: The ``kind`` entry of a trained point segmentation checkpoint.
POINT_SEGMENTATION_KIND = "point_segmentation"

#: Logit given to excluded classes: finite (no NaN anywhere), and 0 after the softmax in float32.
_MASKED_LOGIT = -1e9


def _allowed_classes(num_classes: int, exclude_classes: Sequence[int]) -> np.ndarray:
    """``(C,)`` bool: the classes that may be predicted."""
    allowed = np.ones(num_classes, bool)
    for label in exclude_classes:
        if 0 <= int(label) < num_classes:
            allowed[int(label)] = False
    if not allowed.any():
        raise ConfigError(None, f"every one of the {num_classes} classes is excluded")
    return allowed


def _normalized(mesh: LabelledMesh) -> LabelledMesh:
    # Always: a dataset's shapes are normalised already (then this changes nothing but makes a
    # copy), and a mesh's `normalization` survives edits of its vertices, so it proves nothing.
    return mesh.normalized()


def build_point_segmentation_net(
    settings: PointsConfig, num_classes: int, init: str | Path | None = None
) -> PointSegmentationNet:
    """A segmentation network for ``num_classes``, its point network from ``init`` if given.

    Parameters
    ----------
    settings : the network's settings
    num_classes : size of the label vocabulary
    init : None (random initialisation, by the current torch seed) or a
        PointContrast checkpoint, whose weights the embedding network takes
        (the segmentation head stays random)

    Raises
    ------
    CheckpointError
        ``init`` is not a PointContrast checkpoint.
    ConfigError
        ``init`` holds a network of other settings than ``settings``.
    """
    network = PointSegmentationNet(build_point_embedding(settings), num_classes)
    if init is not None:
        saved = load_checkpoint(init)
        if saved.get("kind") != POINTCONTRAST_KIND:
            raise CheckpointError(init, f"not a PointContrast checkpoint (kind {saved.get('kind')!r})")
        check_same_network(saved.get("config", {}), settings, init)
        network.embedding.load_state_dict(saved["model"])
    return network


class PointSegmenter:
    """Label the faces of meshes with a trained point segmentation network.

    Parameters
    ----------
    network : a trained :class:`~mvdecor.points.network.PointSegmentationNet`
    settings : the ``points`` settings it was trained with (``num_points``,
        ``predict_clouds``, ``use_normals``, ``seed``, ``device``, ``precision``)
    exclude_classes : classes never predicted (their probability is 0)
    label_names : the label vocabulary, for reference
    checkpoint, step : where the network was saved and after how many steps, if known

    Examples
    --------
    >>> segmenter = train_point_segmenter(config, labelled, num_classes=4, init=None, out=run)
    >>> face_labels, face_probs = segmenter.predict(mesh)
    """

    def __init__(
        self,
        network: PointSegmentationNet,
        settings: PointsConfig,
        *,
        exclude_classes: Sequence[int] = (),
        label_names: Sequence[str] = (),
        checkpoint: Path | None = None,
        step: int | None = None,
    ) -> None:
        self.settings = settings
        self.device = resolve_points_device(settings)
        self.network = network.to(self.device).eval()
        self.num_classes = network.num_classes
        self.exclude_classes = tuple(int(c) for c in exclude_classes)
        self.allowed = _allowed_classes(self.num_classes, self.exclude_classes)
        self.label_names = tuple(label_names)
        self.checkpoint, self.step = checkpoint, step

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None) -> PointSegmenter:
        """The segmenter a :func:`train_point_segmenter` run saved (``RUN/checkpoints/last.pt``).

        Parameters
        ----------
        path : the checkpoint
        device : overrides the saved ``device`` setting (``cpu``, ``cuda``...)

        Raises
        ------
        CheckpointError
            Not a point segmentation checkpoint.
        """
        saved = load_checkpoint(path)
        if saved.get("kind") != POINT_SEGMENTATION_KIND:
            raise CheckpointError(path, f"not a point segmentation checkpoint (kind {saved.get('kind')!r})")
        settings = points_config_from_dict(saved["config"], path)
        if device is not None:
            settings = replace(settings, device=device)
        network = PointSegmentationNet(build_point_embedding(settings), int(saved["num_classes"]))
        network.load_state_dict(saved["model"])
        return cls(
            network,
            settings,
            exclude_classes=saved.get("exclude_classes", ()),
            label_names=saved.get("label_names", ()),
            checkpoint=Path(path),
            step=int(saved.get("step", 0)),
        )

    @torch.no_grad()
    def point_probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities of the points of a batch of clouds.

        Parameters
        ----------
        inputs : (B, C, N) float32
            Clouds as :func:`~mvdecor.points.sampling.network_input` makes them.

        Returns
        -------
        (B, N, num_classes) float32
            Rows sum to 1; excluded classes are 0.
        """
        self.network.eval()
        batch = torch.from_numpy(np.ascontiguousarray(inputs, np.float32)).to(self.device)
        with autocast(self.device, self.settings.precision):
            logits = self.network(batch)
        logits = logits.float().masked_fill(
            ~torch.from_numpy(self.allowed).to(self.device)[None, :, None], _MASKED_LOGIT
        )
        return F.softmax(logits, dim=1).transpose(1, 2).cpu().numpy()

    def predict(self, mesh: LabelledMesh) -> tuple[np.ndarray, np.ndarray]:
        """``(face_labels (F,) int64, face_probabilities (F, C) float32)`` of one mesh.

        Each face's probabilities are the mean over the samples on it, or, for a
        face no sample fell on, those of the sample nearest its centroid. Rows
        sum to 1 and excluded classes are 0; the label is the most probable class.
        The samples are seeded by ``settings.seed``: the same mesh gives the same answer.
        """
        s = self.settings
        mesh = _normalized(mesh)
        rng = np.random.default_rng([s.seed, 1])  # never the stream of a training step
        clouds = [sample_surface(mesh, s.num_points, rng) for _ in range(s.predict_clouds)]
        inputs = np.stack([network_input(c.points, c.normals, s.use_normals) for c in clouds])
        point_probs = self.point_probabilities(inputs).reshape(-1, self.num_classes).astype(np.float64)
        face_ids = np.concatenate([c.face_ids for c in clouds])
        counts = np.bincount(face_ids, minlength=mesh.num_faces)
        sums = np.stack(
            [
                np.bincount(face_ids, point_probs[:, c], minlength=mesh.num_faces)
                for c in range(self.num_classes)
            ],
            axis=1,
        )
        probs = sums / np.maximum(counts, 1)[:, None]
        unseen = np.flatnonzero(counts == 0)
        if len(unseen):
            points = np.concatenate([c.points for c in clouds])
            _, nearest = cKDTree(points).query(mesh.triangles[unseen].mean(axis=1))
            probs[unseen] = point_probs[nearest]
        probs[:, ~self.allowed] = 0.0
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.argmax(axis=1).astype(np.int64), probs.astype(np.float32)

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F, C)`` float32: see :meth:`predict`."""
        return self.predict(mesh)[1]

    def face_labels(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F,)`` int64: see :meth:`predict`."""
        return self.predict(mesh)[0]


class LabelledClouds:
    """The fine-tuning batches: fresh labelled clouds of the labelled shapes, seeded per step.

    Parameters
    ----------
    meshes : the labelled shapes (normalised)
    settings : PointsConfig
    allowed : (C,) bool, the classes that are not excluded
    seed : seeds every step's draws with the step
    """

    def __init__(
        self, meshes: Sequence[LabelledMesh], settings: PointsConfig, allowed: np.ndarray, seed: int
    ) -> None:
        self.meshes, self.settings, self.allowed, self.seed = list(meshes), settings, allowed, seed

    def batch(self, step: int) -> dict[str, Tensor]:
        """``inputs`` (B, C, N) float32 and ``labels`` (B, N) int64 (``-1``: ignored) of step ``step``.

        The shapes take turns (step ``s`` uses shapes ``s B .. s B + B - 1`` modulo
        their number), so each is seen equally often.
        """
        s = self.settings
        rng = np.random.default_rng([self.seed, step])
        count = s.finetune_shapes_per_batch
        inputs, labels = [], []
        for slot in range(count):
            mesh = self.meshes[(step * count + slot) % len(self.meshes)]
            cloud = sample_surface(mesh, s.num_points, rng)
            points, normals = augment_points(
                cloud.points,
                cloud.normals,
                rng,
                rotation_degrees=360.0 if s.finetune_rotation else 0.0,
                rotation_axis=UP_AXIS,
                scale_range=s.scale_range,
                jitter_std=s.jitter_std,
            )
            inputs.append(network_input(points, normals, s.use_normals))
            known = cloud.labels >= 0
            known[known] = self.allowed[cloud.labels[known]]
            labels.append(np.where(known, cloud.labels, -1))
        return {"inputs": torch.from_numpy(np.stack(inputs)), "labels": torch.from_numpy(np.stack(labels))}


def segmentation_loss(
    network: PointSegmentationNet, batch: dict[str, Tensor], allowed: Tensor, log: bool = False
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy over the labelled points of a batch; excluded classes' logits masked.

    Returns the loss (0, with gradients, when no point is labelled) and, when
    ``log``, the training points' ``accuracy``.
    """
    logits = network(batch["inputs"]).float()
    logits = logits.masked_fill(~allowed[None, :, None], _MASKED_LOGIT)
    labels = batch["labels"]
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0, {}
    loss = F.cross_entropy(logits, labels, ignore_index=-1)
    scalars = {}
    if log:
        scalars["accuracy"] = float((logits.argmax(dim=1) == labels)[known].float().mean())
    return loss, scalars


def train_point_segmenter(
    config: Config,
    meshes: Sequence[LabelledMesh],
    num_classes: int,
    *,
    init: str | Path | None,
    out: str | Path,
    exclude_classes: Sequence[int] = (),
    seed: int | None = None,
    progress: bool = True,
) -> PointSegmenter:
    """Train a point segmentation network on a few labelled meshes: (3D) Scratch or PointContrast.

    Parameters
    ----------
    config : ``config.points`` sets the network, the fine-tuning schedule and prediction
    meshes : the labelled shapes (with ``face_labels``; ``-1`` faces are ignored)
    num_classes : ``C``, the size of the label vocabulary
    init : None (scratch) or a PointContrast checkpoint
        (:func:`~mvdecor.points.pointcontrast.pretrain_pointcontrast`)
    out : the run folder (``config.yaml``, ``metrics.csv``, ``checkpoints/last.pt``);
        a folder holding this run (same shapes, classes, init and seed) resumes,
        or is returned as it is when finished
    exclude_classes : labels never predicted and ignored by the loss
    seed : seeds the head's initialisation and every drawn cloud (default ``config.points.seed``)
    progress : show the progress bar

    Returns
    -------
    PointSegmenter
        The trained network, its checkpoint (``RUN/checkpoints/last.pt``) and step.

    Raises
    ------
    LabelError
        A mesh has no labels, a label ``>= num_classes``, or no labelled face
        left after ``exclude_classes``.
    ConfigError, CheckpointError
        ``init`` does not fit, or ``out`` holds another run.
    """
    if not meshes:
        raise ConfigError(None, "training a point segmenter needs at least one labelled shape")
    allowed = _allowed_classes(num_classes, exclude_classes)
    prepared = []
    for mesh in meshes:
        if mesh.face_labels is None:
            raise LabelError(mesh.source or mesh.name, "a labelled shape has no face labels")
        labels = mesh.face_labels
        if labels.max() >= num_classes:
            raise LabelError(mesh.source or mesh.name, f"label {int(labels.max())} >= {num_classes} classes")
        known = labels[labels >= 0]
        if not allowed[known].any():
            raise LabelError(mesh.source or mesh.name, "no face has a label that is not excluded")
        prepared.append(_normalized(mesh))
    settings = config.points
    seed = settings.seed if seed is None else int(seed)
    run_settings = replace(settings, seed=seed)
    run_config = replace(config, points=run_settings)
    device = resolve_points_device(settings)
    torch.manual_seed(seed)
    network = build_point_segmentation_net(settings, num_classes, init).to(device)
    clouds = LabelledClouds(prepared, run_settings, allowed, seed)
    allowed_tensor = torch.from_numpy(allowed).to(device)

    def compute_loss(batch: Any, log: bool) -> tuple[Tensor, dict[str, float]]:
        return segmentation_loss(network, batch, allowed_tensor, log)

    exclude = sorted({int(c) for c in exclude_classes})
    label_names = next((m.label_names for m in meshes if m.label_names), ())
    path, step = run_point_training(
        network,
        config=run_config,
        iterations=settings.finetune_iterations,
        lr=settings.finetune_lr,
        make_batch=clouds.batch,
        compute_loss=compute_loss,
        run_dir=Path(out),
        kind=POINT_SEGMENTATION_KIND,
        run={
            "shapes": [m.name for m in meshes],
            "num_classes": int(num_classes),
            "exclude_classes": exclude,
            "init": None if init is None else str(Path(init).resolve()),
            "seed": seed,
        },
        extra={"num_classes": int(num_classes), "exclude_classes": exclude, "label_names": list(label_names)},
        desc="point segmentation",
        progress=progress,
    )
    return PointSegmenter(
        network,
        run_settings,
        exclude_classes=exclude,
        label_names=label_names,
        checkpoint=path,
        step=step,
    )
