"""(3D) PointContrast: pre-training the point network without labels (Xie et al., ECCV 2020).

PointContrast contrasts two partial scans of one scene that overlap: matched
points (the same 3D point seen in both) should have the same feature, and a
different one from every other matched point. Here the two partial scans of a
shape are the **hit points of two overlapping rendered views**:

1. a shape and an ordered pair of its views that overlap by more than
   ``pretrain.overlap_threshold`` are drawn (:class:`~mvdecor.correspond.PairSampler`
   on the shape's overlap matrix, from the run's :class:`~mvdecor.correspond.ViewSource`);
2. the views' pixels are matched (:func:`~mvdecor.correspond.match_views`, the
   radius of the 2D pre-training), and ``pretrain_matches_per_pair`` matches drawn;
3. each view becomes a partial cloud of ``pretrain_points`` of its hit points
   (the matched ones and a random draw of the others), centred on its mean,
   and transformed independently (a rotation about a random axis, a scale,
   jitter), so that the network cannot match the clouds by their coordinates;
4. the loss is PointInfoNCE (:func:`~mvdecor.points.losses.point_info_nce`)
   over the matched points, at ``pretrain_temperature``.

:func:`pretrain_pointcontrast` runs it in a run folder and returns the
checkpoint, which :func:`~mvdecor.points.segmenter.train_point_segmenter`
fine-tunes from. Each step's batch is a function of the step alone, so a
resumed run draws exactly what an unbroken one would.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mvdecor.config import Config, PointsConfig
from mvdecor.correspond import PairSampler, ViewSource, match_views
from mvdecor.errors import ConfigError
from mvdecor.models.checkpoints import load_checkpoint
from mvdecor.points.losses import point_info_nce
from mvdecor.points.network import PointEmbeddingNet, build_point_embedding
from mvdecor.points.sampling import augment_points, network_input
from mvdecor.points.training import last_checkpoint, resolve_points_device, run_point_training
from mvdecor.render.views import RenderedView

__all__ = ["POINTCONTRAST_KIND", "PartialViewPairs", "partial_cloud", "pretrain_pointcontrast"]

#: The ``kind`` entry of a PointContrast checkpoint.
POINTCONTRAST_KIND = "pointcontrast"

#: Draws of a pair before giving up on finding one with matches (an overlap above the
#: threshold means matches, so this guards against a degenerate render, not a common case).
_MAX_DRAWS = 20


def partial_cloud(
    view: RenderedView, matched: np.ndarray, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A partial cloud of one view's hit points that contains its matched pixels.

    Parameters
    ----------
    view : RenderedView
    matched : (M,) int64
        Flat indices of distinct foreground pixels that must be in the cloud (``M <= num_points``).
    num_points : int
        ``P``, the cloud's size; the other ``P - M`` pixels are drawn among the
        view's other foreground pixels (with replacement only when too few).
    rng : numpy.random.Generator

    Returns
    -------
    points : (P, 3) float32
        The hit points, in random order (world frame, not yet centred).
    normals : (P, 3) float32
        Their camera-facing normals.
    positions : (M,) int64
        Where each matched pixel ended up in the cloud: ``points[positions[i]]``
        is the hit point of ``matched[i]``.
    """
    matched = np.asarray(matched, np.int64)
    foreground = np.flatnonzero(view.face_ids.reshape(-1) >= 0)
    others = np.setdiff1d(foreground, matched, assume_unique=True)
    extra = num_points - len(matched)
    if extra < 0:
        raise ValueError(f"{len(matched)} matched pixels do not fit in a cloud of {num_points}")
    pool = others if len(others) else matched
    drawn = rng.choice(pool, size=extra, replace=len(pool) < extra) if extra else pool[:0]
    pixels = np.concatenate([matched, drawn])
    # Shuffled, so that nothing downstream can tell matched points by their place in the cloud.
    order = rng.permutation(num_points)
    positions = np.argsort(order)[: len(matched)]
    pixels = pixels[order]
    points = view.hit_points.reshape(-1, 3)[pixels]
    normals = view.normals.reshape(-1, 3)[pixels]
    return points.astype(np.float32), normals.astype(np.float32), positions.astype(np.int64)


class PartialViewPairs:
    """Batches of pairs of partial clouds (two overlapping views of a shape) with their matches.

    Parameters
    ----------
    source : ViewSource
        Renders (or reads) the views; its radius matches pixels.
    shape_ids : the shapes to draw from; shapes with no pair of views above the
        threshold are left out with a warning
    settings : PointsConfig
    overlap_threshold : a pair is used when its views overlap by more than this
    progress : show a bar while the shapes' overlaps are computed

    Raises
    ------
    ConfigError
        No shape has a pair of overlapping views.
    """

    def __init__(
        self,
        source: ViewSource,
        shape_ids: Sequence[str],
        settings: PointsConfig,
        overlap_threshold: float,
        progress: bool = False,
    ) -> None:
        from tqdm.auto import tqdm

        self.source, self.settings = source, settings
        self.samplers: dict[str, PairSampler] = {}
        for shape_id in tqdm(shape_ids, desc="view overlaps", unit="shape", disable=not progress):
            try:
                self.samplers[shape_id] = PairSampler(source.overlaps(shape_id), overlap_threshold)
            except ValueError as exc:
                warnings.warn(f"{shape_id}: left out of PointContrast pre-training ({exc})", stacklevel=2)
        if not self.samplers:
            raise ConfigError(None, "no shape has a pair of overlapping views to pre-train on")
        self.shape_ids = sorted(self.samplers)

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One pair: ``(input_a (C, P), input_b (C, P), positions_a (M,), positions_b (M,))`` float32/int64.

        ``input_a[:, positions_a[i]]`` and ``input_b[:, positions_b[i]]`` see the same 3D point.
        """
        s = self.settings
        for _ in range(_MAX_DRAWS):
            shape_id = self.shape_ids[rng.integers(len(self.shape_ids))]
            i, j = self.samplers[shape_id].sample(rng)
            view_a, view_b = self.source.view(shape_id, i), self.source.view(shape_id, j)
            matches = match_views(view_a, view_b, self.source.radius)
            if len(matches):
                break
        else:
            raise RuntimeError(
                f"no matched pixels in {_MAX_DRAWS} pairs of views above the overlap threshold"
            )
        chosen = rng.choice(len(matches), size=min(s.pretrain_matches_per_pair, len(matches)), replace=False)
        inputs, positions = [], []
        for view, pixels in ((view_a, matches.index_a[chosen]), (view_b, matches.index_b[chosen])):
            points, normals, where = partial_cloud(view, pixels, s.pretrain_points, rng)
            points, normals = augment_points(
                points - points.mean(axis=0),
                normals,
                rng,
                rotation_degrees=s.pretrain_rotation_degrees,
                rotation_axis=None,
                scale_range=s.scale_range,
                jitter_std=s.jitter_std,
            )
            inputs.append(network_input(points, normals, s.use_normals))
            positions.append(where)
        return inputs[0], inputs[1], positions[0], positions[1]

    def batch(self, step: int) -> dict[str, Tensor]:
        """Step ``step``'s ``B = pretrain_pairs_per_batch`` pairs, seeded by ``(seed, step)``.

        Returns
        -------
        dict
            ``inputs`` (2B, C, P) float32: the first clouds of the B pairs, then
            the second ones; ``positions_a``, ``positions_b`` (B, M) int64 and
            ``valid`` (B, M) bool: the matches, padded to ``M = pretrain_matches_per_pair``.
        """
        s = self.settings
        rng = np.random.default_rng([s.seed, step])
        pairs = [self.pair(rng) for _ in range(s.pretrain_pairs_per_batch)]
        size = s.pretrain_matches_per_pair
        positions_a = np.zeros((len(pairs), size), np.int64)
        positions_b = np.zeros((len(pairs), size), np.int64)
        valid = np.zeros((len(pairs), size), bool)
        for row, (_, _, where_a, where_b) in enumerate(pairs):
            positions_a[row, : len(where_a)] = where_a
            positions_b[row, : len(where_b)] = where_b
            valid[row, : len(where_a)] = True
        return {
            "inputs": torch.from_numpy(np.stack([p[0] for p in pairs] + [p[1] for p in pairs])),
            "positions_a": torch.from_numpy(positions_a),
            "positions_b": torch.from_numpy(positions_b),
            "valid": torch.from_numpy(valid),
        }


def _gather_points(embeddings: Tensor, positions: Tensor) -> Tensor:
    """Embeddings ``(B, D, P)`` at point positions ``(B, M)`` -> ``(B, M, D)``."""
    index = positions.unsqueeze(1).expand(-1, embeddings.shape[1], -1)
    return embeddings.gather(2, index).transpose(1, 2)


def pointcontrast_loss(
    network: PointEmbeddingNet, batch: Mapping[str, Tensor], temperature: float, log: bool = False
) -> tuple[Tensor, dict[str, float]]:
    """PointInfoNCE of one batch of :meth:`PartialViewPairs.batch` (on the network's device).

    Returns the loss and, when ``log``, ``match_accuracy``: the share of
    matched points whose nearest feature among the other cloud's matched
    points is their own match (chance: ``1 / M``).
    """
    embeddings = network(batch["inputs"])
    pairs = batch["positions_a"].shape[0]
    features_a = _gather_points(embeddings[:pairs], batch["positions_a"])
    features_b = _gather_points(embeddings[pairs:], batch["positions_b"])
    valid = batch["valid"]
    loss = point_info_nce(features_a, features_b, temperature, valid=valid)
    scalars: dict[str, float] = {}
    if log:
        with torch.no_grad():
            similarity = torch.bmm(features_a.float(), features_b.float().transpose(1, 2))
            similarity = similarity.masked_fill(~valid.unsqueeze(1), -torch.inf)
            hit = similarity.argmax(dim=2) == torch.arange(valid.shape[1], device=valid.device)
            scalars["match_accuracy"] = float(hit[valid].float().mean())
    return loss, scalars


def pretrain_pointcontrast(
    config: Config,
    dataset: str,
    out: str | Path,
    *,
    shape_ids: Sequence[str] | None = None,
    store: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Pre-train the point network by PointContrast on a dataset's shapes, without their labels.

    Resumes from ``OUT/checkpoints/last.pt`` when the folder holds this run
    (same dataset, shapes and network); a finished run is returned as it is.

    Parameters
    ----------
    config : ``config.points`` sets the network and the schedule; ``config.render``
        the cameras, ``config.pretrain`` the overlap threshold, the match radius and
        how many shapes stay loaded (``cached_shapes``)
    dataset : a dataset spec (see :func:`~mvdecor.data.datasets.open_dataset`)
    out : the run folder (``config.yaml``, ``metrics.csv``, ``checkpoints/last.pt``,
        ``overlaps/``: each shape's view overlaps, reused on resuming)
    shape_ids : the shapes to pre-train on (default: all of the dataset's)
    store : a render store of the dataset made with ``config.render`` (default: render on the fly)
    progress : show progress bars

    Returns
    -------
    Path
        ``OUT/checkpoints/last.pt``: ``model`` (the embedding network's state
        dict), ``config`` (the ``points`` section as a plain dict), ``step``,
        ``kind: pointcontrast``, and the optimiser state to resume from.

    Raises
    ------
    ConfigError
        ``out`` holds another run, or no shape has overlapping views.
    """
    settings = config.points
    out = Path(out)
    # Pairs come from random shapes: a cache smaller than the shape set reloads a mesh for most
    # pairs (PartNet-Mobility's many OBJ pieces: the step's slowest part), as in 2D pre-training.
    source = ViewSource.from_config(
        dataset,
        config,
        store=store,
        cache_dir=out / "overlaps",
        max_cached_shapes=config.pretrain.cached_shapes,
    )
    known = source.shape_ids()
    chosen = sorted(known if shape_ids is None else shape_ids)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ConfigError(None, f"shapes not in {dataset}: {unknown[:5]}")
    if not chosen:
        raise ConfigError(None, "PointContrast pre-training needs at least one shape")
    device = resolve_points_device(settings)
    torch.manual_seed(settings.seed)
    network = build_point_embedding(settings).to(device)
    # The overlaps are the slow part of setting up; a finished run does not need them.
    saved = last_checkpoint(out)
    finished = saved.is_file() and int(load_checkpoint(saved, mmap=True).get("step", 0)) >= (
        settings.pretrain_iterations
    )
    pairs = (
        None
        if finished
        else PartialViewPairs(source, chosen, settings, config.pretrain.overlap_threshold, progress)
    )

    def make_batch(step: int) -> dict[str, Tensor]:
        if pairs is None:
            raise RuntimeError("a finished PointContrast run draws no batch")
        return pairs.batch(step)

    def compute_loss(batch: Any, log: bool) -> tuple[Tensor, dict[str, float]]:
        return pointcontrast_loss(network, batch, settings.pretrain_temperature, log)

    path, _ = run_point_training(
        network,
        config=config,
        iterations=settings.pretrain_iterations,
        lr=settings.pretrain_lr,
        make_batch=make_batch,
        compute_loss=compute_loss,
        run_dir=out,
        kind=POINTCONTRAST_KIND,
        run={"dataset": source.dataset.spec, "shape_ids": chosen},
        desc="pointcontrast",
        progress=progress,
    )
    return path
