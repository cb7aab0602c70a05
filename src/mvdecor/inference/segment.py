"""Segment a mesh: render views, predict per-pixel class probabilities, vote per face.

A :class:`Segmenter` holds a fine-tuned network and everything needed to use
it (channel statistics, the camera scheme it was trained with, label names).
``segment(mesh)`` works on any mesh, labelled or not: the user's main case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from mvdecor.config import Config, SegmentConfig
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import InvalidMeshError
from mvdecor.inference.fusion import FaceVoter, FusionResult
from mvdecor.inference.refine import FacePrior, refine_with, transfer_vote_of
from mvdecor.models.embedding import SegmentationNet
from mvdecor.models.inputs import ChannelStats, flip_view_array, view_to_array
from mvdecor.models.nearest import FaceEmbeddingPool, box_coordinates, shape_prototype_probabilities
from mvdecor.render.cameras import Cameras, shape_cameras
from mvdecor.render.renderer import Renderer
from mvdecor.render.views import RenderedView


@dataclass
class SegmentationResult:
    """Per-face labels of one mesh and how they were obtained.

    Attributes
    ----------
    mesh : the (normalised) mesh that was segmented
    fusion : the vote (face scores, labels, confidence, seen faces, view weights),
        refined by the transfer prior and mesh smoothing when they are on
    vote : the vote before any refinement (``fusion`` itself when there is none)
    label_names : the class names
    timings : seconds spent rendering, predicting and voting
    view_predictions : per-view predicted labels ``(H, W)`` int64 (-1 background),
        kept only when asked for (for 2D pixel metrics)
    views : the rendered views, kept only when asked for
    """

    mesh: LabelledMesh
    fusion: FusionResult
    label_names: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    view_predictions: list[np.ndarray] | None = None
    views: list[RenderedView] | None = None
    vote: FusionResult | None = None

    def __post_init__(self) -> None:
        if self.vote is None:
            self.vote = self.fusion

    @property
    def face_labels(self) -> np.ndarray:
        return self.fusion.face_labels

    @property
    def face_confidence(self) -> np.ndarray:
        return self.fusion.face_confidence


class Segmenter:
    """A fine-tuned network ready to segment meshes.

    Parameters
    ----------
    model : the segmentation network
    stats : its input channel statistics
    config : its configuration (render, model and segment sections are used)
    label_names : class names, one per output channel
    device : where the network runs
    exclude_classes : classes never predicted (PartNet's label 0, "other")
    """

    def __init__(
        self,
        model: SegmentationNet,
        stats: ChannelStats,
        config: Config,
        label_names: Sequence[str],
        device: str | torch.device = "cpu",
        exclude_classes: Sequence[int] = (),
    ) -> None:
        self.model = model.to(device).eval()
        self.stats, self.config = stats, config
        self.label_names = tuple(label_names)
        self.device = torch.device(device)
        self.exclude_classes = tuple(exclude_classes)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", exclude_classes: Sequence[int] = ()
    ) -> Segmenter:
        from mvdecor.models.checkpoints import load_segmentation_model

        model, stats, config, names = load_segmentation_model(path, device)
        return cls(model, stats, config, names, device, exclude_classes)

    def with_segment(self, segment: SegmentConfig) -> Segmenter:
        """This network with other inference settings (the ``segment`` section); shares the weights."""
        config = replace(self.config, segment=segment)
        return Segmenter(self.model, self.stats, config, self.label_names, self.device, self.exclude_classes)

    def cameras_for(self, mesh: LabelledMesh) -> Cameras:
        """The training camera scheme, seeded per shape as during training.

        ``segment.rings`` / ``segment.segments`` and ``segment.resolution``, when
        positive, replace the scheme's own (more views, larger images at test
        time); everything else is the training's.
        """
        seg = self.config.segment
        render = self.config.render
        if seg.resolution > 0:
            render = replace(render, resolution=seg.resolution)
        return shape_cameras(render, mesh.name, seg.rings, seg.segments)

    @property
    def pools_faces(self) -> bool:
        """Whether the network labels face-pooled embeddings (``finetune.nearest_pooling: faces``)."""
        return bool(getattr(self.model.head, "pool_faces", False))

    def _inputs(
        self, views: Sequence[RenderedView], box: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The network inputs ``(B, K, H, W)`` of views, each followed by its mirror with ``segment.flip``,
        their box coordinates ``(B, 3, H, W)`` when the head weighs positions (else None) and
        their foreground masks ``(B, H, W)`` bool.

        A mirrored view's pixels keep the surface points they see.
        """
        modalities = self.config.model.modalities
        needs_positions = self.model.needs_positions
        if needs_positions and box is None:
            raise ValueError("this network weighs positions: pass the bounding box of the views' mesh")
        arrays, positions, masks = [], [], []
        for view in views:
            array = view_to_array(view, modalities)
            arrays.append(self.stats.normalize(array, view.mask))
            masks.append(view.mask)
            if needs_positions:
                positions.append(box_coordinates(view.hit_points, *box).transpose(2, 0, 1))
            if self.config.segment.flip:
                camera = view.camera
                mirrored, mask = flip_view_array(
                    array, view.mask, modalities, camera.rotation[0, 0], camera.centers[0]
                )
                arrays.append(self.stats.normalize(mirrored, mask))
                masks.append(mask)
                if needs_positions:
                    positions.append(positions[-1][:, :, ::-1])
        x = torch.from_numpy(np.stack(arrays).astype(np.float32)).to(self.device)
        foreground = torch.from_numpy(np.ascontiguousarray(np.stack(masks))).to(self.device)
        if not needs_positions:
            return x, None, foreground
        return x, torch.from_numpy(np.ascontiguousarray(np.stack(positions))).to(self.device), foreground

    @torch.no_grad()
    def predict(
        self, views: Sequence[RenderedView], box: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Class probabilities ``(V, C, H, W)`` float32 of views (softmax of the logits).

        With ``segment.flip`` each view is also predicted mirrored (its world-space
        channels mirrored with it, :func:`~mvdecor.models.inputs.flip_view_array`)
        and the mean of the two maps, the mirrored one flipped back, is returned.

        ``box``: the bounding box ``(min, max)`` of the mesh the views show, for a
        network whose head weighs positions (``finetune.nearest_position_weight``);
        a mirrored view's pixels keep the surface points they see.

        A face-pooling network (:attr:`pools_faces`) labels each face once from
        all the given views together (they must show one shape), and each pixel
        gets its face's distribution (background: uniform).
        """
        self._check_prototypes()
        if self.pools_faces:
            faces = 1 + max((int(view.face_ids.max()) for view in views), default=-1)
            face_probs = self._pooled_face_probabilities(self._face_pool(views, box, faces))
            return np.stack([self._paint(face_probs, view.face_ids) for view in views])
        out = []
        batch = max(self.config.segment.batch_views, 1)
        for start in range(0, len(views), batch):
            chunk = views[start : start + batch]
            x, positions, foreground = self._inputs(chunk, box)
            # Only foreground pixels (for a head that can skip the rest): fusion and metrics read nothing else.
            logits = self.model(x, positions, foreground)
            probs = torch.softmax(logits.float(), dim=1)
            if self.config.segment.flip:  # pairs (view, its mirror): average with the mirror flipped back
                probs = 0.5 * (probs[0::2] + probs[1::2].flip(-1))
            out.append(probs.cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def _add_to_pool(
        self,
        pool: FaceEmbeddingPool,
        views: Sequence[RenderedView],
        box: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        """Add views' pixel embeddings (and their mirrors', flipped back) to ``pool``."""
        x, positions, _ = self._inputs(views, box)
        features = self.model.embedding(x, normalize=False)
        face_ids = torch.from_numpy(np.stack([view.face_ids for view in views]).astype(np.int64))
        if self.config.segment.flip:  # (view, mirror) pairs: both see the view's faces once flipped back
            features = torch.stack([features[0::2], features[1::2].flip(-1)], dim=1).flatten(0, 1)
            face_ids = face_ids.repeat_interleave(2, dim=0)
            if positions is not None:
                positions = torch.stack([positions[0::2], positions[1::2].flip(-1)], dim=1).flatten(0, 1)
        pool.add(features, face_ids, positions)

    def _face_pool(
        self, views: Sequence[RenderedView], box: tuple[np.ndarray, np.ndarray] | None, num_faces: int
    ) -> FaceEmbeddingPool:
        pool = FaceEmbeddingPool(num_faces, self.model.embedding.embed_dim, self.model.needs_positions)
        batch = max(self.config.segment.batch_views, 1)
        for start in range(0, len(views), batch):
            self._add_to_pool(pool, views[start : start + batch], box)
        return pool

    def _check_prototypes(self) -> None:
        if self.config.segment.shape_prototypes > 0 and not self.pools_faces:
            raise ValueError(
                "segment.shape_prototypes needs a network that labels face-pooled embeddings "
                "(finetune.method: nearest, nearest_pooling: faces); this one has a trained head"
            )

    @torch.no_grad()
    def _pooled_face_probabilities(self, pool: FaceEmbeddingPool) -> np.ndarray:
        """``(faces, C)`` float32: the head's distribution for each seen face, zeros for the others
        (mixed with the shape's own class prototypes' with ``segment.shape_prototypes``)."""
        seen, features, positions = pool.result()  # the pool sums on the CPU
        if positions is not None:
            positions = positions.to(self.device)
        features = features.to(self.device)
        if positions is not None and self.config.segment.position_alignment == "axes":
            positions = self.model.head.aligned_positions(features, positions)
        probs = self.model.head.class_probabilities(features, positions)
        share = self.config.segment.shape_prototypes
        if share > 0:
            prototypes = shape_prototype_probabilities(
                features, probs, pool.counts[seen].to(self.device), self.model.head.temperature
            )
            probs = (1.0 - share) * probs + share * prototypes
        out = np.zeros((len(pool.counts), len(self.label_names)), np.float32)
        out[seen.numpy()] = probs.cpu().numpy()
        return out

    def _paint(self, face_probs: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
        """``(C, H, W)``: each pixel its face's distribution; background pixels uniform."""
        probs = face_probs[np.maximum(face_ids, 0)]
        probs[face_ids < 0] = 1.0 / face_probs.shape[1]
        return np.ascontiguousarray(probs.transpose(2, 0, 1))

    def segment(
        self,
        mesh: LabelledMesh,
        cameras: Cameras | None = None,
        *,
        keep_views: bool = False,
        normalize: bool = True,
        transfer: FacePrior | None = None,
    ) -> SegmentationResult:
        """Segment one mesh.

        Parameters
        ----------
        mesh : any mesh; normalised into the unit sphere first unless ``normalize=False``
        cameras : default: the training scheme (``config.render``, with
            ``segment.rings`` / ``segment.segments`` if set), seeded by the mesh name
        keep_views : also return the views and per-view predicted labels
        transfer : label transfer from the labelled reference shapes (a
            :class:`~mvdecor.inference.transfer.LabelTransfer`, or any
            :class:`~mvdecor.inference.refine.FacePrior`), mixed into
            the vote as a prior with weight ``segment.transfer_prior`` (ignored
            when that is 0); ``segment.smoothing`` applies with or without it
            (see :func:`~mvdecor.inference.refine.refine_fusion`)
        """
        seg = self.config.segment
        self._check_prototypes()
        if normalize:
            mesh = mesh.normalized()
        cameras = cameras if cameras is not None else self.cameras_for(mesh)
        timings = {"render_s": 0.0, "predict_s": 0.0, "vote_s": 0.0}
        start = time.perf_counter()
        renderer = Renderer(mesh)
        timings["render_s"] += time.perf_counter() - start
        box = mesh.bounds() if self.model.needs_positions else None
        voter = FaceVoter(
            mesh.num_faces,
            len(self.label_names),
            method=seg.method,
            gamma=seg.gamma,
            exclude_classes=self.exclude_classes,
        )
        kept_views: list[RenderedView] = []
        predictions: list[np.ndarray] = []

        def add_vote(view: RenderedView, p: np.ndarray) -> None:
            voter.add_view(view.face_ids, p)
            if keep_views:
                scores = p.copy()
                scores[list(self.exclude_classes)] = -np.inf
                predictions.append(np.where(view.mask, scores.argmax(0), -1))
                kept_views.append(view)

        batch = max(seg.batch_views, 1)
        if self.pools_faces:  # every view first: a face is labelled once, from all of them
            t0 = time.perf_counter()
            views = [renderer.render_view(cameras, i) for i in range(len(cameras))]
            t1 = time.perf_counter()
            face_probs = self._pooled_face_probabilities(self._face_pool(views, box, mesh.num_faces))
            t2 = time.perf_counter()
            for view in views:
                add_vote(view, self._paint(face_probs, view.face_ids))
            timings["render_s"] += t1 - t0
            timings["predict_s"] += t2 - t1
            timings["vote_s"] += time.perf_counter() - t2
        else:
            for first in range(0, len(cameras), batch):
                t0 = time.perf_counter()
                views = [
                    renderer.render_view(cameras, i) for i in range(first, min(first + batch, len(cameras)))
                ]
                t1 = time.perf_counter()
                timings["render_s"] += t1 - t0
                probs = self.predict(views, box)
                t2 = time.perf_counter()
                for view, p in zip(views, probs, strict=True):
                    add_vote(view, p)
                timings["predict_s"] += t2 - t1
                timings["vote_s"] += time.perf_counter() - t2
        t0 = time.perf_counter()
        centroids = mesh.triangles.mean(axis=1)
        try:
            fusion = vote = voter.result(face_centroids=centroids)
        except ValueError:
            # Zero-area faces, or a stray vertex far away that shrinks the rest of the
            # shape to a point once the mesh is fitted into the unit sphere.
            raise InvalidMeshError(
                mesh.source or mesh.name,
                f"no view sees any face of the mesh ({len(cameras)} cameras): its faces have no "
                "area, or a vertex far from the rest shrinks the shape to a point when normalised",
            ) from None
        timings["vote_s"] += time.perf_counter() - t0
        use_prior = transfer is not None and seg.transfer_prior > 0
        # Transfer votes beside a pair only (a prior of weight > 0).
        third_vote = transfer_vote_of(transfer, mesh, seg, vote.seen) if use_prior else None
        # Not ``vote``: that name holds the unrefined vote the result reports.
        third, third_share = third_vote if third_vote is not None else (None, 0.0)
        if seg.smoothing > 0 or use_prior or third is not None:
            t0 = time.perf_counter()
            fusion = refine_with(
                fusion,
                mesh,
                seg,
                prior=transfer.face_probabilities(mesh) if use_prior else None,
                transfer_vote=third,
                transfer_vote_share=third_share,
                exclude_classes=self.exclude_classes,
            )
            timings["refine_s"] = time.perf_counter() - t0
        return SegmentationResult(
            mesh=mesh,
            fusion=fusion,
            label_names=self.label_names,
            timings=timings,
            view_predictions=predictions if keep_views else None,
            views=kept_views if keep_views else None,
            vote=vote,
        )


def shape_labeller(
    segmenter: Segmenter, mesh_of: Callable[[str], LabelledMesh]
) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """``shape_id -> (face_labels (F,) int64, face_confidence (F,) float32)``: ``segmenter`` on
    ``mesh_of(shape_id)``, a mesh already normalised (a view source's), as a pseudo-labeller
    (``finetune.pseudo_shapes``)."""

    def label(shape_id: str) -> tuple[np.ndarray, np.ndarray]:
        fusion = segmenter.segment(mesh_of(shape_id), normalize=False).fusion
        return fusion.face_labels, fusion.face_confidence

    return label


class SegmenterPrior:
    """Another segmenter's face distributions as a vote's prior (``segment.prior_method: nearest``).

    Mixing two segmenters of the same labels is an ensemble: with weight
    ``segment.transfer_prior = w`` a mesh's faces get
    ``(1 - w) * votes + w * other`` (:func:`~mvdecor.inference.refine.refine_fusion`).
    Its use here is a fine-tuned network (``finetune.method: network``) with the
    nearest labelled faces of its pre-trained network (``finetune.method: nearest``)
    on the same labelled shapes: the first learns boundaries from gradient descent,
    the second copies what the labelled faces look like, and each is right where
    the other errs on different parts.

    Parameters
    ----------
    segmenter : the other segmenter; its own prior and smoothing are not applied
        (``segment.transfer_prior`` and ``segment.smoothing`` read as 0), so that
        what it adds is its vote alone.
    """

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter.with_segment(
            replace(segmenter.config.segment, transfer_prior=0.0, smoothing=0.0)
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        segment: SegmentConfig,
        device: str | torch.device = "cpu",
        exclude_classes: Sequence[int] = (),
    ) -> SegmenterPrior:
        """The model saved at ``path`` as a prior, segmenting with ``segment``: the inference
        settings (test-time views) of the model it is mixed into."""
        return cls(Segmenter.from_checkpoint(path, device, exclude_classes).with_segment(segment))

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.segmenter.label_names

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F, C)`` float32: the other segmenter's fused face distributions on ``mesh``
        (already normalised by the caller); rows of faces none of its views see are 0."""
        return self.segmenter.segment(mesh, normalize=False).fusion.face_scores
