"""Training data: batches of matched view pairs drawn from a :class:`ViewSource`.

:class:`ViewPairDataset` turns a :class:`~mvdecor.correspond.source.ViewSource`
(views of a dataset's shapes and their overlaps) into the pre-training data contract, a
:class:`ViewPairBatch`. Item ``k`` is a pure function of ``(seed, k)``: which
shape (or shapes), which pair of views and which matches are drawn depends on nothing
else, so a resumed run sees exactly the batches an uninterrupted run would, in
any number of worker processes or ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mvdecor.correspond import (
    PairSampler,
    match_views,
    match_views_aligned,
    sample_matches,
)

# ViewSource lives in correspond/ (evaluation reads it too); re-exported for training code.
from mvdecor.correspond.source import ViewSource as ViewSource
from mvdecor.models.inputs import ChannelStats, view_to_array
from mvdecor.render.views import RenderedView


@dataclass(frozen=True)
class ViewPairBatch:
    """A batch of ``B`` pairs of views of the same shapes, with matched pixels.

    ``N`` is the number of matches sampled per pair; pairs with fewer matches
    are padded, and ``valid`` marks the real entries. Padding indices are 0.

    Attributes
    ----------
    inputs_a, inputs_b : (B, C, H, W) float32
        Network inputs of the two views (channels per the modalities, normalised
        by the channel statistics; background 0).
    index_a, index_b : (B, N) int64
        Flat pixel indices (``row * W + col``) of matched pixels in each view.
    valid : (B, N) bool
        Which entries are real matches.
    """

    inputs_a: torch.Tensor
    inputs_b: torch.Tensor
    index_a: torch.Tensor
    index_b: torch.Tensor
    valid: torch.Tensor

    def to(self, device: torch.device | str) -> ViewPairBatch:
        return ViewPairBatch(
            *(
                t.to(device, non_blocking=True)
                for t in (self.inputs_a, self.inputs_b, self.index_a, self.index_b)
            ),
            self.valid.to(device, non_blocking=True),
        )

    def __len__(self) -> int:
        return self.inputs_a.shape[0]


def collate_pairs(items: Sequence[dict[str, np.ndarray]]) -> ViewPairBatch:
    """Stack :meth:`ViewPairDataset.__getitem__` items into a :class:`ViewPairBatch`."""
    return ViewPairBatch(
        inputs_a=torch.from_numpy(np.stack([it["inputs_a"] for it in items])),
        inputs_b=torch.from_numpy(np.stack([it["inputs_b"] for it in items])),
        index_a=torch.from_numpy(np.stack([it["index_a"] for it in items])),
        index_b=torch.from_numpy(np.stack([it["index_b"] for it in items])),
        valid=torch.from_numpy(np.stack([it["valid"] for it in items])),
    )


class ViewPairDataset(torch.utils.data.Dataset):
    """Item ``k``: a random pair of overlapping views of a random shape, with matches.

    With ``cross_shape > 0``, that share of the items pairs a view of the drawn
    shape with a view of *another* shape of its group (category), matched by
    :func:`~mvdecor.correspond.match_views_aligned` after mapping the first
    shape's bounding box onto the second's: the pair ``(i, j)`` is drawn from the
    first shape's overlapping pairs, and view ``j`` is taken of the second shape.
    The paper pairs views of one shape only; these pairs ask the network to give
    the corresponding regions of two instances one embedding, which is what
    few-shot labelling of other instances reads.

    Parameters
    ----------
    source : where views come from
    shape_ids : the shapes to draw from
    modalities : input channels (see ``mvdecor.models.inputs``)
    stats : channel statistics used to normalise inputs (None: no normalisation)
    matches_per_pair : ``N``, matches sampled without replacement per pair
    overlap_threshold : pairs must share more than this share of the smaller
        view's foreground (paper: 15%)
    seed : the dataset's seed; item ``k`` depends only on ``(seed, k)``
    length : nominal length (items are generated, so any index is valid)
    cross_shape : share of items whose two views show two shapes of one group
        (0: the paper's same-shape pairs only; then items are drawn exactly as
        without this option)
    cross_shape_radius : matching tolerance of those pairs after the box
        alignment (unit-sphere units)
    groups : shape id -> group (category); shapes are paired only within a
        group, and a shape alone in its group keeps same-shape pairs. None:
        one group
    """

    def __init__(
        self,
        source: ViewSource,
        shape_ids: Sequence[str],
        modalities: Sequence[str],
        stats: ChannelStats | None,
        matches_per_pair: int = 4000,
        overlap_threshold: float = 0.15,
        seed: int = 0,
        length: int = 10**12,
        cross_shape: float = 0.0,
        cross_shape_radius: float = 0.05,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        if not shape_ids:
            raise ValueError("no shapes to draw view pairs from")
        if not 0.0 <= cross_shape <= 1.0:
            raise ValueError(f"cross_shape must be in [0, 1], got {cross_shape}")
        self.source = source
        self.shape_ids = list(shape_ids)
        self.modalities = tuple(modalities)
        self.stats = stats
        self.matches_per_pair = int(matches_per_pair)
        self.overlap_threshold = float(overlap_threshold)
        self.seed = int(seed)
        self.length = int(length)
        self._samplers: dict[str, PairSampler] = {}
        self.cross_shape = float(cross_shape)
        self.cross_shape_radius = float(cross_shape_radius)
        group_of = {shape_id: groups[shape_id] if groups is not None else "" for shape_id in self.shape_ids}
        members: dict[str, list[str]] = {}
        for shape_id, group in group_of.items():
            members.setdefault(group, []).append(shape_id)
        # Each shape's partners: the other shapes of its group, in the order given.
        self._partners = {
            shape_id: [other for other in members[group_of[shape_id]] if other != shape_id]
            for shape_id in self.shape_ids
        }
        self._boxes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def sampler(self, shape_id: str) -> PairSampler:
        sampler = self._samplers.get(shape_id)
        if sampler is None:
            sampler = PairSampler(self.source.overlaps(shape_id), self.overlap_threshold)
            self._samplers[shape_id] = sampler
        return sampler

    def box(self, shape_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The bounding box of a shape's normalised mesh (the frame of its views' hit points)."""
        box = self._boxes.get(shape_id)
        if box is None:
            box = self._boxes[shape_id] = self.source.mesh(shape_id).bounds()
        return box

    def inputs(self, view: RenderedView) -> np.ndarray:
        array = view_to_array(view, self.modalities)
        if self.stats is not None:
            array = self.stats.normalize(array, view.mask)
        return np.ascontiguousarray(array, dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        shape_id = self.shape_ids[int(rng.integers(len(self.shape_ids)))]
        partner = None
        # Drawn only when asked, so that same-shape runs keep their exact sequence of items.
        if self.cross_shape > 0 and rng.random() < self.cross_shape and self._partners[shape_id]:
            partners = self._partners[shape_id]
            partner = partners[int(rng.integers(len(partners)))]
        i, j = self.sampler(shape_id).sample(rng)
        view_a = self.source.view(shape_id, i)
        if partner is None:
            view_b = self.source.view(shape_id, j)
            found = match_views(view_a, view_b, self.source.radius)
        else:
            view_b = self.source.view(partner, j)
            found = match_views_aligned(
                view_a, view_b, self.box(shape_id), self.box(partner), self.cross_shape_radius
            )
        matches = sample_matches(found, self.matches_per_pair, rng)
        n = self.matches_per_pair
        index_a = np.zeros(n, np.int64)
        index_b = np.zeros(n, np.int64)
        valid = np.zeros(n, bool)
        m = len(matches)
        index_a[:m], index_b[:m], valid[:m] = matches.index_a, matches.index_b, True
        return {
            "inputs_a": self.inputs(view_a),
            "inputs_b": self.inputs(view_b),
            "index_a": index_a,
            "index_b": index_b,
            "valid": valid,
        }


def compute_channel_stats(
    source: ViewSource,
    shape_ids: Sequence[str],
    modalities: Sequence[str],
    views_per_shape: int = 4,
    seed: int = 0,
) -> ChannelStats:
    """Channel statistics over the foreground of a few views of each training shape."""
    rng = np.random.default_rng(seed)
    views = []
    for shape_id in shape_ids:
        n = source.num_views(shape_id)
        for i in rng.choice(n, size=min(views_per_shape, n), replace=False):
            views.append(source.view(shape_id, int(i)))
    return ChannelStats.from_views(views, tuple(modalities))


def split_shapes(shape_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded train/validation split of shape ids (at least one of each when possible)."""
    ids = sorted(shape_ids)
    if len(ids) < 2 or val_fraction <= 0:
        return ids, []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_val = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
    val = sorted(ids[k] for k in order[:n_val])
    train = sorted(ids[k] for k in order[n_val:])
    return train, val
