"""A segmentation head without weights: each pixel takes the labels of its nearest labelled pixels.

Fine-tuning on two labelled shapes fits a head (and the network) to a few
thousand views' pixels; the pre-trained embedding already places pixels of
corresponding surface points close together. :class:`NearestLabelHead` uses
that directly: it keeps a bank of labelled pixels' L2-normalised embeddings
(from the labelled views), and a pixel's class distribution is the
similarity-weighted vote of its ``k`` most similar bank entries,

    p(c | x) = sum over the k nearest b of [label(b) = c] * softmax_b(cos(x, b) / T),

a k-nearest-neighbour classifier in embedding space. It is a drop-in head of
:class:`~mvdecor.models.embedding.SegmentationNet`: it reads the raw embedding
and returns log-probabilities, so the usual softmax gives ``p`` back.

With a ``position_weight`` w > 0 the neighbours are chosen and weighted by

    cos(x, b) - w * |pos(x) - pos(b)|^2,

where ``pos`` is the surface point a pixel sees in its own shape's bounding
box mapped axis by axis onto ``[-1, 1]^3`` (:func:`box_coordinates`): the cue
that learning-free label transfer lives on (a safe's door is at its front),
joined with the embedding's appearance and context in one neighbour search.
Given several weights, the head averages the distributions each one gives
(one search per weight over the same similarities), rather than betting on one;
or, with ``combine``, weighs each weight's distribution per query by its
certainty ``1 - H / log C`` (``certainty``), or keeps per query the one with
the lowest entropy (``confident``): a face whose look decides its label can
follow the embedding, one whose look is ambiguous (a door flush with a safe's
body) the position.

With ``pool_faces`` the head labels faces rather than pixels: each pixel's
L2-normalised embedding is replaced by the mean over every pixel, in all the
views of its shape, that sees the same face (:class:`FaceEmbeddingPool`,
:func:`pool_by_group`), so one face gets one decision from what all views say
of it, and the bank holds such pooled embeddings of labelled faces. A pooling
head cannot label one view on its own; :class:`~mvdecor.inference.segment.Segmenter`
pools a shape's views and asks :meth:`NearestLabelHead.class_probabilities`.

:func:`shape_prototype_probabilities` is a transductive step on top of such a
face-level decision: each class's prototype is the mean embedding of the test
shape's *own* faces, weighted by how much the bank gave them that class, and
every face is labelled again by its nearest prototype. A part of the test shape
whose look differs from the labelled shapes' (another safe's door) is still
alike within itself, so faces the bank got wrong are pulled to the class most
of their part got right (``segment.shape_prototypes``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "POSITION_COMBINES",
    "FaceEmbeddingPool",
    "NearestLabelHead",
    "bank_index",
    "box_coordinates",
    "class_quotas",
    "fit_box_alignment",
    "labelled_pixel_embeddings",
    "leave_one_shape_out_scores",
    "pool_by_group",
    "position_combine",
    "sample_bank",
    "shape_prototype_probabilities",
]

#: Similarities computed at once, at most (queries x bank entries): bounds the memory.
_CHUNK_ELEMENTS = 1 << 24

#: How :class:`NearestLabelHead` joins the distributions of several position weights.
POSITION_COMBINES = ("average", "certainty", "confident")


class NearestLabelHead(nn.Module):
    """``raw embedding (B, D, H, W) -> log class probabilities (B, C, H, W)`` by nearest labelled pixels.

    Parameters
    ----------
    bank_features : ``(N, D)`` float, the labelled pixels' embeddings (normalised here)
    bank_labels : ``(N,)`` int, their classes in ``[0, num_classes)``
    num_classes : ``C``
    neighbours : ``k``, the bank entries that vote for each pixel (at most ``N``)
    temperature : ``T`` of the softmax over the ``k`` cosine similarities
    stride : pixels are classified on every ``stride``-th row and column and
        the result repeated over the block (the light embedding head is itself
        computed at 1/4 resolution, so little is lost at 2)
    bank_positions : ``(N, 3)`` float, the labelled pixels' surface points in
        box coordinates (:func:`box_coordinates`); needed when a position weight is > 0
    position_weight : ``w``, the weight of the squared box-coordinate distance
        taken from the cosine similarity (0: the embedding alone); or a sequence
        of weights, whose class distributions are averaged
    pool_faces : the bank holds face-pooled embeddings and queries must be
        pooled the same way (``finetune.nearest_pooling: faces``); :meth:`forward`,
        which sees single views, then refuses
    combine : with several position weights, how each query's distributions join
        (:data:`POSITION_COMBINES`): ``average`` (equal shares), ``certainty``
        (shares proportional to ``1 - H / log C``, equal where all are uniform)
        or ``confident`` (the lowest entropy wins; ties: the first weight)

    Notes
    -----
    The bank is stored as buffers, so a checkpoint of the network holds it. Its
    size is fixed when the head is built; :func:`sample_bank` chooses the entries.
    With a position weight > 0 the head needs the query pixels' box coordinates
    (:attr:`needs_positions`), which :class:`~mvdecor.models.embedding.SegmentationNet`
    passes on.
    """

    def __init__(
        self,
        bank_features: Tensor,
        bank_labels: Tensor,
        num_classes: int,
        neighbours: int = 10,
        temperature: float = 0.07,
        stride: int = 2,
        bank_positions: Tensor | None = None,
        position_weight: float | Sequence[float] = 0.0,
        pool_faces: bool = False,
        combine: str = "average",
    ) -> None:
        super().__init__()
        if combine not in POSITION_COMBINES:
            raise ValueError(f"combine must be one of {POSITION_COMBINES}, got {combine!r}")
        if bank_features.ndim != 2 or bank_labels.shape != bank_features.shape[:1]:
            raise ValueError("bank_features must be (N, D) and bank_labels (N,)")
        if len(bank_labels) == 0:
            raise ValueError("the bank of labelled pixels is empty")
        labels = bank_labels.long()
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"bank labels must lie in [0, {num_classes})")
        weights = (position_weight,) if isinstance(position_weight, (int, float)) else tuple(position_weight)
        self.position_weights = tuple(float(w) for w in weights)
        if neighbours < 1 or temperature <= 0 or stride < 1:
            raise ValueError("neighbours and stride must be >= 1 and temperature > 0")
        if not self.position_weights or min(self.position_weights) < 0:
            raise ValueError(f"position weights must be one or more values >= 0, got {position_weight}")
        self.register_buffer("bank_features", F.normalize(bank_features.float(), dim=1))
        self.register_buffer("bank_labels", labels)
        if self.needs_positions:
            if bank_positions is None or bank_positions.shape != (len(labels), 3):
                raise ValueError("a position weight > 0 needs bank_positions (N, 3)")
            self.register_buffer("bank_positions", bank_positions.float())
        self.num_classes = int(num_classes)
        self.neighbours = int(neighbours)
        self.temperature = float(temperature)
        self.stride = int(stride)
        self.pool_faces = bool(pool_faces)
        self.combine = combine

    #: :meth:`forward` takes a mask of the pixels wanted (and searches only for them).
    accepts_mask = True

    @property
    def needs_positions(self) -> bool:
        """Whether :meth:`forward` needs the query pixels' box coordinates."""
        return max(self.position_weights) > 0

    @property
    def position_weight(self) -> float | tuple[float, ...]:
        """The position weight, or the weights whose distributions are averaged."""
        return self.position_weights[0] if len(self.position_weights) == 1 else self.position_weights

    def class_probabilities(self, queries: Tensor, query_positions: Tensor | None = None) -> Tensor:
        """``(Q, D)`` embeddings (any norm) [and ``(Q, 3)`` box coordinates] -> ``(Q, C)`` probabilities."""
        bank = self.bank_features
        queries = F.normalize(queries.float(), dim=1)
        if self.needs_positions:
            if query_positions is None or query_positions.shape != (len(queries), 3):
                raise ValueError("this head weighs positions: pass the queries' box coordinates (Q, 3)")
            query_positions = query_positions.float()
            bank_positions = self.bank_positions
            bank_squares = (bank_positions**2).sum(dim=1)
        k = min(self.neighbours, len(bank))
        share = 1.0 / len(self.position_weights)
        averaged = self.combine == "average" or len(self.position_weights) == 1
        out = torch.zeros(len(queries), self.num_classes, device=queries.device)
        chunk = max(1, _CHUNK_ELEMENTS // len(bank))
        for start in range(0, len(queries), chunk):
            cosine = queries[start : start + chunk] @ bank.T
            if self.needs_positions:
                # -w |q - b|^2 = w (2 q.b - |b|^2) - w |q|^2; the last term is the same for all of a
                # query's candidates, so neither the top k nor their softmax depends on it. The
                # bracket is shared by every weight: one fused pass per weight on top of it.
                closeness = _closeness(query_positions[start : start + chunk], bank_positions, bank_squares)
                similarity = torch.empty_like(cosine)
            each = []  # each weight's distributions, when they are not simply averaged
            for w in self.position_weights:
                if w > 0:
                    torch.add(cosine, closeness, alpha=w, out=similarity)
                top, index = (similarity if w > 0 else cosine).topk(k, dim=1)
                weights = torch.softmax(top / self.temperature, dim=1)
                if averaged:
                    out[start : start + chunk].scatter_add_(1, self.bank_labels[index], weights * share)
                else:
                    each.append(torch.zeros_like(out[start : start + chunk]).scatter_add_(
                        1, self.bank_labels[index], weights))  # fmt: skip
            if not averaged:
                out[start : start + chunk] = _join_by_certainty(torch.stack(each), self.combine)
        return out

    def aligned_positions(self, queries: Tensor, query_positions: Tensor) -> Tensor:
        """``(Q, 3)`` box coordinates of one shape's queries carried onto the bank's frame
        (:func:`fit_box_alignment`); the same coordinates when the head weighs no position."""
        if not self.needs_positions:
            return query_positions
        scale, shift = fit_box_alignment(queries, query_positions, self.bank_features, self.bank_positions)
        return query_positions.float() * scale + shift

    def forward(
        self, features: Tensor, positions: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """``(B, D, H, W)`` raw embedding [and ``(B, 3, H, W)`` box coordinates] -> log-probabilities.

        ``mask``: ``(B, H, W)`` bool, the pixels whose distribution is wanted
        (a view's foreground). Only grid points whose ``stride`` block holds
        one are searched, so those pixels get exactly what they get without a
        mask; the others get the uniform distribution. Most of a view is
        background, and the search is most of the head's time.
        """
        if self.pool_faces:
            # Unpooled queries against a pooled bank would run, and quietly mean something else.
            raise ValueError(
                "this head labels face-pooled embeddings (finetune.nearest_pooling: faces); "
                "segment whole shapes with Segmenter, which pools their views"
            )
        b, d, h, w = features.shape
        grid = features[:, :, :: self.stride, :: self.stride]
        gh, gw = grid.shape[-2:]
        queries = grid.permute(0, 2, 3, 1).reshape(-1, d)
        query_positions = None
        if positions is not None and self.needs_positions:
            if positions.shape != (b, 3, h, w):
                raise ValueError(
                    f"positions must be (B, 3, H, W) = {(b, 3, h, w)}, got {tuple(positions.shape)}"
                )
            query_positions = (
                positions[:, :, :: self.stride, :: self.stride].permute(0, 2, 3, 1).reshape(-1, 3)
            )
        if mask is None:
            probs = self.class_probabilities(queries, query_positions)
        else:
            if mask.shape != (b, h, w):
                raise ValueError(f"mask must be (B, H, W) = {(b, h, w)}, got {tuple(mask.shape)}")
            # A grid point is needed when any pixel of the block it stands for is wanted.
            needed = F.max_pool2d(mask[:, None].float(), self.stride, self.stride, ceil_mode=True)
            needed = needed.reshape(-1) > 0
            probs = torch.full(
                (len(queries), self.num_classes), 1.0 / self.num_classes, device=queries.device
            )
            if bool(needed.any()):
                probs[needed] = self.class_probabilities(
                    queries[needed], None if query_positions is None else query_positions[needed]
                )
        probs = probs.reshape(b, gh, gw, self.num_classes).permute(0, 3, 1, 2)
        if self.stride > 1:
            probs = probs.repeat_interleave(self.stride, dim=2).repeat_interleave(self.stride, dim=3)
            probs = probs[:, :, :h, :w]
        return probs.clamp_min(1e-8).log()  # a class no neighbour votes for: finite, no NaN downstream


def _closeness(query_positions: Tensor, bank_positions: Tensor, bank_squares: Tensor) -> Tensor:
    """``(Q, N)``: ``2 q.b - |b|^2``, which is ``-|q - b|^2`` up to ``|q|^2``, a term per query that
    changes no query's ranking of the bank (``bank_squares``: ``|b|^2``, ``(N,)``)."""
    return torch.addmm(bank_squares, query_positions, bank_positions.T, beta=-1.0, alpha=2.0)


def position_combine(setting: str) -> str:
    """The head's ``combine`` for a ``finetune.nearest_position_combine`` setting.

    ``choose`` leaves one weight and ``average`` averages several: both are the head's
    ``average``; ``certainty`` and ``confident`` are passed on as they are.
    """
    return setting if setting in POSITION_COMBINES else "average"


def _join_by_certainty(distributions: Tensor, combine: str) -> Tensor:
    """``(W, Q, C)`` class distributions of W position weights -> ``(Q, C)``, per query by certainty.

    ``certainty``: shares proportional to ``1 - H / log C`` (equal where every one is
    uniform); ``confident``: the distribution of lowest entropy (ties: the first).
    """
    num_classes = distributions.shape[-1]
    entropy = -(distributions * distributions.clamp_min(1e-12).log()).sum(dim=-1)  # (W, Q)
    if combine == "confident":
        pick = entropy.argmin(dim=0)  # argmin returns the first of equal values
        return distributions.gather(0, pick[None, :, None].expand(1, -1, num_classes))[0]
    certainty = (1.0 - entropy / math.log(max(num_classes, 2))).clamp_min(0.0)
    total = certainty.sum(dim=0, keepdim=True)
    shares = torch.where(total > 0, certainty / total.clamp_min(1e-12), 1.0 / len(distributions))
    return (distributions * shares[..., None]).sum(dim=0)


class FaceEmbeddingPool:
    """The mean L2-normalised embedding (and box coordinates) of each face, over views added in batches.

    Parameters
    ----------
    num_faces : faces of the shape the views show
    dim : ``D``, the embedding's channels
    with_positions : also average the pixels' box coordinates (for a position-weighted head)
    """

    def __init__(self, num_faces: int, dim: int, with_positions: bool = False) -> None:
        self.sums = torch.zeros(int(num_faces), int(dim))
        self.counts = torch.zeros(int(num_faces))
        self.position_sums = torch.zeros(int(num_faces), 3) if with_positions else None

    def add(self, features: Tensor, face_ids: Tensor, positions: Tensor | None = None) -> None:
        """Views' raw embeddings ``(B, D, H, W)``, face ids ``(B, H, W)`` (-1: background) [, ``(B, 3, H, W)``]."""
        if features.shape[-2:] != face_ids.shape[-2:] or len(features) != len(face_ids):
            raise ValueError(
                f"features {tuple(features.shape)} and face ids {tuple(face_ids.shape)} must share B, H, W"
            )
        keep = face_ids >= 0
        faces = face_ids[keep].long().cpu()
        unit = F.normalize(features.float(), dim=1).permute(0, 2, 3, 1)[keep].cpu()
        self.sums.index_add_(0, faces, unit)
        self.counts.index_add_(0, faces, torch.ones(len(faces)))
        if self.position_sums is not None:
            if positions is None:
                raise ValueError("this pool averages positions: pass the pixels' box coordinates")
            self.position_sums.index_add_(0, faces, positions.float().permute(0, 2, 3, 1)[keep].cpu())

    def result(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(seen faces (F,) int64, their unit mean embeddings (F, D), mean box coordinates (F, 3) or None)``."""
        seen = torch.nonzero(self.counts > 0).squeeze(1)
        features = F.normalize(self.sums[seen], dim=1)
        if self.position_sums is None:
            return seen, features, None
        return seen, features, self.position_sums[seen] / self.counts[seen, None]


def shape_prototype_probabilities(
    features: Tensor, probabilities: Tensor, weights: Tensor, temperature: float = 0.07
) -> Tensor:
    """Faces labelled again by their nearest class prototype, the prototypes made from the same faces.

    With ``f_i`` the unit embeddings of one shape's faces, ``p_ic`` the class
    distributions a head gave them and ``a_i`` their weights (pixels seen), the
    prototype of class ``c`` is ``m_c = normalise(sum_i a_i p_ic f_i)`` and

        q_ic = softmax_c(cos(f_i, m_c) / T)

    over the classes with some mass (``sum_i a_i p_ic > 0``); the others get 0.
    One step of a soft k-means started from the head's answer: it corrects
    faces that look more like the rest of their part on this shape than like
    their nearest labelled faces.

    Parameters
    ----------
    features : ``(F, D)`` float, the faces' embeddings (any norm; normalised here)
    probabilities : ``(F, C)`` float, the head's class distributions of the same faces
    weights : ``(F,)`` float >= 0, each face's weight in the prototypes (pixels that saw it)
    temperature : ``T`` of the softmax over the prototype similarities

    Returns
    -------
    ``(F, C)`` float32, rows summing to 1 (all zeros where no class has mass)
    """
    if probabilities.ndim != 2 or features.shape[:1] != probabilities.shape[:1]:
        raise ValueError("features must be (F, D) and probabilities (F, C) of the same faces")
    if weights.shape != features.shape[:1]:
        raise ValueError("weights must be (F,), one per face")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    unit = F.normalize(features.float(), dim=1)
    mass = probabilities.float() * weights.float()[:, None]  # (F, C)
    present = mass.sum(dim=0) > 0
    if not bool(present.any()):
        return torch.zeros_like(mass)
    prototypes = F.normalize(mass.T @ unit, dim=1)  # (C, D); an empty class: zeros, masked below
    logits = (unit @ prototypes.T) / temperature
    logits[:, ~present] = float("-inf")
    return torch.softmax(logits, dim=1)


def fit_box_alignment(
    queries: Tensor,
    query_positions: Tensor,
    bank_features: Tensor,
    bank_positions: Tensor,
    *,
    position_weight: float = 1.0,
    iterations: int = 3,
    keep: float = 0.5,
    max_scale: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """Per-axis ``scale, shift`` that carry a shape's box coordinates onto its labelled shapes'.

    The box alignment maps each shape's bounding box onto ``[-1, 1]^3``; where a
    part sticks out (a handle, an open lid, a longer spout) the two boxes frame
    the shapes differently and the same point of the category lands at other
    coordinates. This refines the map the way ICP does, with the embedding in
    the matching: each query (a test face) is matched to the bank entry that
    maximises ``cos(x, b) - w * |s * pos(x) + t - pos(b)|^2``; the ``keep`` share
    of queries with the most similar matches, less the fifth whose positions
    agree least, fit ``s, t`` axis by axis (each axis' scale the ratio of the
    matched positions' spreads, its shift the difference of their means);
    ``iterations`` rounds. The scale stays within ``[1 / max_scale, max_scale]``.
    An embedding that says nothing (a random network's) gives matches the
    position term keeps local, so the map stays near the identity.

    Parameters
    ----------
    queries : ``(Q, D)`` float, the test faces' embeddings (any norm)
    query_positions : ``(Q, 3)`` float, their box coordinates
    bank_features : ``(N, D)`` float, unit labelled embeddings
    bank_positions : ``(N, 3)`` float, their box coordinates
    position_weight : ``w`` of the matching (> 0)
    iterations : rounds of matching and fitting (>= 1)
    keep : share of the queries, the best-matched, that fit the map
    max_scale : bound of each axis' scale

    Returns
    -------
    ``scale (3,)``, ``shift (3,)`` float32: aligned positions are ``scale * pos + shift``.
    """
    if query_positions.shape != (len(queries), 3) or bank_positions.shape != (len(bank_features), 3):
        raise ValueError("positions must be (Q, 3) and (N, 3), one per query and bank entry")
    if position_weight <= 0 or iterations < 1 or not 0 < keep <= 1 or max_scale < 1:
        raise ValueError("need position_weight > 0, iterations >= 1, 0 < keep <= 1 and max_scale >= 1")
    unit = F.normalize(queries.float(), dim=1)
    bank = F.normalize(bank_features.float(), dim=1)
    if len(unit) < 2 or len(bank) == 0:  # nothing to fit: the boxes' own map
        return torch.ones(3, device=unit.device), torch.zeros(3, device=unit.device)
    source = query_positions.float()
    target_all = bank_positions.float()
    bank_squares = (target_all**2).sum(dim=1)
    scale = torch.ones(3, device=unit.device)
    shift = torch.zeros(3, device=unit.device)
    chunk = max(1, _CHUNK_ELEMENTS // len(bank))
    for _ in range(iterations):
        moved = source * scale + shift
        best = torch.empty(len(unit), device=unit.device)
        match = torch.empty(len(unit), dtype=torch.long, device=unit.device)
        for start in range(0, len(unit), chunk):
            stop = start + chunk
            similarity = unit[start:stop] @ bank.T
            # -w |q - b|^2 = w (2 q.b - |b|^2) - w |q|^2: the last term is added after the search.
            similarity.add_(_closeness(moved[start:stop], target_all, bank_squares), alpha=position_weight)
            best[start:stop], match[start:stop] = similarity.max(dim=1)
        # The queries are ranked by their best match's whole similarity, position term included.
        best -= position_weight * (moved**2).sum(dim=1)
        chosen = best.argsort(descending=True)[: max(2, int(keep * len(unit)))]
        x, y = source[chosen], target_all[match[chosen]]
        scale, shift = _fit_axes(x, y, max_scale)
        # Refit without the fifth of the pairs that agree least with the first fit.
        residual = ((x * scale + shift - y) ** 2).sum(dim=1)
        inliers = residual <= residual.quantile(0.8)
        scale, shift = _fit_axes(x[inliers], y[inliers], max_scale)
    return scale, shift


def _fit_axes(x: Tensor, y: Tensor, max_scale: float) -> tuple[Tensor, Tensor]:
    """``y ~ scale * x + shift`` axis by axis, the scale the ratio of the spreads (clamped; 1 on a
    flat axis). Least squares of ``y`` on ``x`` would shrink the map wherever the matches are
    noisy, since inside a box a noisy match of a point near a wall lies inward; the spreads'
    ratio (the reduced major axis) keeps noisy matches at the scale the boxes gave."""
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    x_spread, y_spread = x.var(dim=0, unbiased=False), y.var(dim=0, unbiased=False)
    ratio = (y_spread / x_spread.clamp_min(1e-12)).sqrt()
    ratio = torch.where(x_spread > 1e-9, ratio, torch.ones_like(ratio))
    scale = ratio.clamp(1.0 / max_scale, max_scale)
    return scale, y_mean - scale * x_mean


def pool_by_group(features: Tensor, groups: Tensor) -> Tensor:
    """Each row's embedding replaced by the unit mean of its group's L2-normalised rows.

    ``features (N, D)``, ``groups (N,)`` int (e.g. ``shape * faces + face``):
    the labelled pixels of one labelled face get one embedding, pooled as
    :class:`FaceEmbeddingPool` pools a test shape's. Returns ``(N, D)`` float32.
    """
    if groups.shape != features.shape[:1]:
        raise ValueError("groups must be (N,) for features (N, D)")
    unique, inverse = torch.unique(groups, return_inverse=True)
    unit = F.normalize(features.float(), dim=1)
    sums = torch.zeros(len(unique), unit.shape[1]).index_add_(0, inverse, unit)
    return F.normalize(sums, dim=1)[inverse]


def bank_index(
    count: int, size: int, seed: int = 0, labels: Tensor | None = None, class_balance: float = 0.0
) -> Tensor | None:
    """Sorted indices of ``size`` of ``count`` labelled pixels; ``None``: keep all.

    With ``class_balance`` 0 (default) the draw is uniform over pixels, so each
    class keeps its share. With ``class_balance`` beta > 0 and the pixels'
    ``labels`` given, class ``c`` with ``n_c`` pixels gets a share of the bank
    proportional to ``n_c ** (1 - beta)`` (:func:`class_quotas`), its pixels
    drawn uniformly: beta = 1 gives every class the same share as far as its
    pixels allow, 0.5 moves the shares halfway (in log terms) from the pixels'
    to the classes'. Part mIoU weighs every part alike, and a part a few
    hundred pixels large otherwise keeps only a handful of entries. Seeded:
    the same arguments give the same draw.
    """
    if count <= size:
        return None
    rng = np.random.default_rng([int(seed), 0xBA4C])
    if class_balance <= 0:
        return torch.from_numpy(np.sort(rng.choice(count, size=size, replace=False)))
    if labels is None or len(labels) != count:
        raise ValueError("class_balance > 0 needs the labels of all count pixels")
    classes = labels.long().cpu().numpy()
    quotas = class_quotas(np.bincount(classes), size, class_balance)
    chosen = [
        rng.choice(np.flatnonzero(classes == c), size=quota, replace=False)
        for c, quota in enumerate(quotas)
        if quota > 0
    ]
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


def class_quotas(pixels: np.ndarray, size: int, class_balance: float) -> np.ndarray:
    """How many of each class's ``pixels`` a bank of ``size`` keeps: shares ``~ n ** (1 - beta)``.

    A class with fewer pixels than its share is kept whole and the rest shared
    out again among the others; the quotas are whole numbers summing to
    ``min(size, pixels.sum())`` (largest remainders).
    """
    pixels = np.asarray(pixels, np.int64)
    quotas = np.zeros(len(pixels), np.int64)
    open_ = pixels > 0
    budget = min(int(size), int(pixels.sum()))
    while open_.any():
        strength = np.where(open_, pixels.astype(np.float64) ** (1.0 - float(class_balance)), 0.0)
        ideal = budget * strength / strength.sum()
        full = open_ & (pixels <= ideal)
        if not full.any():
            floor = np.floor(ideal).astype(np.int64)
            extra = budget - int(floor[open_].sum())
            order = np.argsort(-(ideal - floor) * open_, kind="stable")[:extra]
            floor[order] += 1
            quotas[open_] = floor[open_]
            break
        quotas[full] = pixels[full]
        budget -= int(pixels[full].sum())
        open_ &= ~full
    return quotas


def sample_bank(features: Tensor, labels: Tensor, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """At most ``size`` of the labelled pixels ``(features (N, D), labels (N,))`` (:func:`bank_index`)."""
    index = bank_index(len(labels), size, seed)
    return (features, labels) if index is None else (features[index], labels[index])


def box_coordinates(points: np.ndarray, box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """Points ``(..., 3)`` in their shape's box frame: each axis mapped from ``[min, max]`` to ``[-1, 1]``.

    An axis on which the box is flat maps to 0. Float32, the shape of ``points``.
    """
    lo, hi = np.asarray(box_min, np.float64), np.asarray(box_max, np.float64)
    half = (hi - lo) / 2.0
    flat = half <= 1e-12
    scaled = (np.asarray(points, np.float64) - (lo + hi) / 2.0) / np.where(flat, 1.0, half)
    return np.where(flat, 0.0, scaled).astype(np.float32)


@torch.no_grad()
def labelled_pixel_embeddings(
    embedding: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Every labelled pixel's raw embedding and label, over labelled views.

    Parameters
    ----------
    embedding : the embedding network (run in eval mode; its mode is restored)
    batches : ``(inputs (B, C, H, W) float32, labels (B, H, W) int64)``, label
        ``-1`` where a pixel carries none (background, unlabelled)

    Returns
    -------
    ``(features (N, D) float32, labels (N,) int64)`` on the CPU
    """
    was_training = embedding.training
    embedding.eval()
    features, labels = [], []
    try:
        for inputs, view_labels in batches:
            out = embedding(inputs.to(device), normalize=False).float().cpu()
            keep = view_labels >= 0
            features.append(out.permute(0, 2, 3, 1)[keep])
            labels.append(view_labels[keep])
    finally:
        embedding.train(was_training)
    return torch.cat(features), torch.cat(labels).long()


def leave_one_shape_out_scores(
    features: Tensor,
    labels: Tensor,
    positions: Tensor,
    shapes: Tensor,
    weights: Sequence[float],
    num_classes: int,
    neighbours: int = 10,
    temperature: float = 0.07,
    bank_size: int = 10000,
    queries_per_shape: int = 4000,
    seed: int = 0,
    class_balance: float = 0.0,
) -> list[float]:
    """How well each position weight labels one labelled shape from the others' pixels.

    For each labelled shape in turn, a bank of the other shapes' labelled pixels
    (at most ``bank_size``) labels at most ``queries_per_shape`` of its own; the
    score of a weight is the pixel mIoU (over the classes in the shape's
    labels or predictions) averaged over the shapes. It needs two labelled
    shapes at least, and uses nothing but the labelled data, so the weight it
    picks is chosen per run without looking at the test shapes.

    Parameters
    ----------
    features, labels, positions : ``(N, D)``, ``(N,)``, ``(N, 3)``: the labelled
        pixels' raw embeddings, classes and box coordinates
    shapes : ``(N,)`` int, the labelled shape each pixel belongs to
    weights : the candidate ``position_weight`` values
    class_balance : how each bank of the other shapes' pixels is drawn (:func:`bank_index`)

    Returns
    -------
    One score in ``[0, 1]`` per weight, in order.
    """
    groups = torch.unique(shapes)
    if len(groups) < 2:
        raise ValueError("leave-one-shape-out needs pixels of two labelled shapes at least")
    totals = [0.0] * len(weights)
    for number, group in enumerate(groups.tolist()):
        held = torch.nonzero(shapes == group).squeeze(1)
        others = torch.nonzero(shapes != group).squeeze(1)
        pick = bank_index(len(others), bank_size, seed + number, labels[others], class_balance)
        others = others if pick is None else others[pick]
        pick = bank_index(len(held), queries_per_shape, seed + number)
        held = held if pick is None else held[pick]
        truth = labels[held]
        for slot, weight in enumerate(weights):
            head = NearestLabelHead(
                features[others], labels[others], num_classes, neighbours, temperature, 1,
                positions[others], float(weight),
            )  # fmt: skip
            query_positions = positions[held] if weight > 0 else None
            predicted = head.class_probabilities(features[held], query_positions).argmax(dim=1)
            ious = []
            for label in torch.unique(torch.cat([truth, predicted])).tolist():
                is_true, is_predicted = truth == label, predicted == label
                ious.append(float((is_true & is_predicted).sum()) / float((is_true | is_predicted).sum()))
            totals[slot] += sum(ious) / len(ious)
    return [total / len(groups) for total in totals]
