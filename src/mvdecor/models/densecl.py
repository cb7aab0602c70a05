"""DenseCL (Wang et al., CVPR 2021): the paper's 2D self-supervised baseline, on our network.

DenseCL learns from two augmented copies of one image. A query network and a
momentum copy of it (the key network, an exponential moving average of the
query's parameters) see one copy each. Two projection heads sit on both:

- global: global average pool, then an MLP (``F -> hidden -> C``, C = 128);
- dense: the features average-pooled to an ``S x S`` grid, then a 1x1-conv MLP
  (``F -> hidden -> C``) at each of the ``L = S * S`` grid cells.

The global loss is MoCo's InfoNCE: a query's positive is the key of the other
copy of the same image, its negatives a queue of keys of earlier batches. The
dense loss is the same at every grid cell: the positive of query cell ``l`` is
the key cell whose (pooled, L2-normalised) *features* are most similar to cell
``l``'s (cosine similarity, argmax), its negatives a second queue holding one
vector per earlier key image (the mean of its dense key projections). The loss
is ``(1 - lambda) * global + lambda * dense`` (lambda = 0.5, temperature 0.2).

**Where the heads attach.** DenseCL puts them on a ResNet's last stage (C5) and
the MvDeCor paper's baseline then copies only the ResNet into DeepLabV3+, so the
ASPP, the decoder and the upsampling head are not pre-trained. That is the
default here (``attach = "backbone"``). ``attach = "embedding"`` puts them on
the raw per-pixel output of the whole
:class:`~mvdecor.models.embedding.EmbeddingNet` (``(B, embed_dim, H, W)``,
pooled to the grid), so that every parameter fine-tuning loads is pre-trained,
as for MvDeCor. Measured on FAUST (BENCHMARKS.md), that variant fine-tunes
*worse than scratch* (part mIoU 10.6 against 16.9 at k = 1) while the
backbone variant matches scratch (16.5): instance discrimination trained into
the decoder's per-pixel output throws away where a pixel lies on the shape.
Either way the checkpoint holds a complete ``EmbeddingNet`` state.

Queues are ``(K, C)`` float32 buffers of L2-normalised rows, filled as a ring
(the oldest keys are replaced first); they start as random unit vectors, as in
MoCo. Every loss is computed in float32, outside autocast.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvdecor.models.embedding import EmbeddingNet

__all__ = [
    "ATTACH_POINTS",
    "DenseCL",
    "DenseCLHeads",
    "DenseCLLosses",
    "DenseCLProjections",
    "densecl_dense_loss",
    "densecl_global_loss",
    "enqueue",
    "match_grid_locations",
    "momentum_update",
    "reference_dense_loss_loop",
    "reference_global_loss_loop",
    "same_source_mask",
]

#: Where the projection heads may read features (see the module docstring).
ATTACH_POINTS = ("embedding", "backbone")


class DenseCLProjections(NamedTuple):
    """What the heads make of one batch of ``B`` images; every vector L2-normalised.

    Attributes
    ----------
    global_ : (B, C)
        The global projection of each image.
    dense : (B, C, L)
        The dense projection at each of the ``L = S * S`` grid cells.
    dense_mean : (B, C)
        The dense projections averaged over the grid (before normalisation):
        what the dense queue stores for a key image.
    grid : (B, F, L)
        The features pooled to the grid, the input of the dense head: what the
        cells are matched by.
    """

    global_: Tensor
    dense: Tensor
    dense_mean: Tensor
    grid: Tensor


class DenseCLLosses(NamedTuple):
    """``loss = (1 - lambda) * global_loss + lambda * dense_loss`` (scalar tensors)."""

    loss: Tensor
    global_loss: Tensor
    dense_loss: Tensor


class DenseCLHeads(nn.Module):
    """DenseCL's neck: the global MLP and the dense 1x1-conv MLP on an ``S x S`` grid.

    Parameters
    ----------
    in_channels : F, the channels of the features the heads read
    hidden_channels : width of both MLPs' hidden layer (DenseCL: 2048)
    out_channels : C, the projection size (128)
    grid_size : S (7)

    ``forward(features)`` takes ``(B, F, H, W)`` features and returns
    :class:`DenseCLProjections`, computed in float32.
    """

    def __init__(
        self, in_channels: int, hidden_channels: int = 2048, out_channels: int = 128, grid_size: int = 7
    ) -> None:
        super().__init__()
        if min(in_channels, hidden_channels, out_channels, grid_size) < 1:
            raise ValueError(
                "DenseCLHeads needs positive sizes, got "
                f"{in_channels=}, {hidden_channels=}, {out_channels=}, {grid_size=}"
            )
        self.global_mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, out_channels),
        )
        self.dense_mlp = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, out_channels, 1),
        )
        self.grid_size = int(grid_size)

    def forward(self, features: Tensor) -> DenseCLProjections:
        if features.ndim != 4:
            raise ValueError(f"expected (B, F, H, W) features, got {tuple(features.shape)}")
        pooled = F.adaptive_avg_pool2d(features, 1).flatten(1)  # (B, F)
        grid = F.adaptive_avg_pool2d(features, self.grid_size)  # (B, F, S, S)
        global_ = self.global_mlp(pooled).float()
        dense = self.dense_mlp(grid).float().flatten(2)  # (B, C, L)
        return DenseCLProjections(
            global_=F.normalize(global_, dim=1),
            dense=F.normalize(dense, dim=1),
            dense_mean=F.normalize(dense.mean(dim=2), dim=1),
            grid=F.normalize(grid.float().flatten(2), dim=1),
        )


# ------------------------------------------------------------------ functional pieces
def _check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def densecl_global_loss(
    query: Tensor, key: Tensor, queue: Tensor, temperature: float = 0.2, exclude: Tensor | None = None
) -> Tensor:
    """MoCo's InfoNCE: each query against its own key and the queue's negatives.

    Parameters
    ----------
    query, key : (B, C)
        L2-normalised projections of the two copies; row ``b`` of each is a positive pair.
    queue : (K, C)
        L2-normalised negative keys (``K`` may be 0).
    temperature : τ (DenseCL: 0.2)
    exclude : (B, K) bool, optional
        ``exclude[b, j]``: leave negative ``j`` out of query ``b``'s sum (see
        :func:`same_source_mask`).

    Returns
    -------
    Scalar tensor: the mean over the ``B`` queries of
    ``-log(exp(q·k / τ) / (exp(q·k / τ) + Σ_j exp(q·n_j / τ)))``, the sum over
    the negatives not excluded.
    """
    if query.ndim != 2 or query.shape != key.shape:
        raise ValueError(
            f"expected query and key (B, C) of one shape, got {tuple(query.shape)}, {tuple(key.shape)}"
        )
    if queue.ndim != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(f"expected a (K, {query.shape[1]}) queue, got {tuple(queue.shape)}")
    _check_temperature(temperature)
    query, key, queue = query.float(), key.float(), queue.float()
    positive = (query * key).sum(dim=1, keepdim=True)  # (B, 1)
    negatives = _masked(query @ queue.T, exclude, (query.shape[0], queue.shape[0]))  # (B, K)
    logits = torch.cat([positive, negatives], dim=1) / temperature  # (B, 1 + K)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def same_source_mask(query_sources: Tensor, queue_sources: Tensor) -> Tensor:
    """``(B, K)`` bool: which queue keys come from the same source (view or shape) as each query.

    Sources are integer ids (``(B,)`` and ``(K,)``); a queue slot not yet
    filled holds ``-1`` and matches nothing.
    """
    return (query_sources[:, None] == queue_sources[None, :]) & (queue_sources[None, :] >= 0)


def _masked(similarity: Tensor, exclude: Tensor | None, shape: tuple[int, int]) -> Tensor:
    """``similarity`` with excluded negatives at -inf (they drop out of the log-sum-exp)."""
    if exclude is None:
        return similarity
    if exclude.shape != shape:
        raise ValueError(f"expected a {shape} exclude mask, got {tuple(exclude.shape)}")
    return similarity.masked_fill(exclude.view(shape[0], *([1] * (similarity.ndim - 2)), shape[1]), -math.inf)


def match_grid_locations(query_grid: Tensor, key_grid: Tensor) -> Tensor:
    """For each query cell, the key cell of the same image with the most similar features.

    Parameters
    ----------
    query_grid, key_grid : (B, F, L)
        Features of the ``L`` grid cells of the two copies of each image (any
        norm: the similarity is the cosine).

    Returns
    -------
    (B, L) int64: ``match[b, l] = argmax_j cos(query_grid[b, :, l], key_grid[b, :, j])``.
    """
    if query_grid.ndim != 3 or query_grid.shape != key_grid.shape:
        raise ValueError(
            f"expected two (B, F, L) grids of one shape, got {tuple(query_grid.shape)}, {tuple(key_grid.shape)}"
        )
    q = F.normalize(query_grid.float(), dim=1)
    k = F.normalize(key_grid.float(), dim=1)
    similarity = torch.bmm(q.transpose(1, 2), k)  # (B, L query cells, L key cells)
    return similarity.argmax(dim=2)


def densecl_dense_loss(
    query_dense: Tensor,
    key_dense: Tensor,
    match: Tensor,
    queue: Tensor,
    temperature: float = 0.2,
    exclude: Tensor | None = None,
) -> Tensor:
    """DenseCL's dense InfoNCE: every query cell against its matched key cell and the queue.

    Parameters
    ----------
    query_dense, key_dense : (B, C, L)
        L2-normalised dense projections of the two copies at the ``L`` grid cells.
    match : (B, L) int64
        The key cell matched to each query cell (:func:`match_grid_locations`).
    queue : (K, C)
        L2-normalised negatives, one per earlier key image (``K`` may be 0).
    temperature : τ (0.2)
    exclude : (B, K) bool, optional
        Negatives left out for every cell of image ``b`` (as in
        :func:`densecl_global_loss`).

    Returns
    -------
    Scalar tensor: the mean over the ``B * L`` query cells of
    ``-log(exp(q·k_match / τ) / (exp(q·k_match / τ) + Σ_j exp(q·n_j / τ)))``.
    """
    if query_dense.ndim != 3 or query_dense.shape != key_dense.shape:
        raise ValueError(
            "expected query_dense and key_dense (B, C, L) of one shape, got "
            f"{tuple(query_dense.shape)}, {tuple(key_dense.shape)}"
        )
    b, c, cells = query_dense.shape
    if match.shape != (b, cells):
        raise ValueError(f"expected a ({b}, {cells}) match, got {tuple(match.shape)}")
    if queue.ndim != 2 or queue.shape[1] != c:
        raise ValueError(f"expected a (K, {c}) queue, got {tuple(queue.shape)}")
    _check_temperature(temperature)
    query_dense, key_dense, queue = query_dense.float(), key_dense.float(), queue.float()
    matched = key_dense.gather(2, match.long().unsqueeze(1).expand(b, c, cells))  # (B, C, L)
    positive = (query_dense * matched).sum(dim=1)  # (B, L)
    negatives = _masked(torch.einsum("bcl,kc->blk", query_dense, queue), exclude, (b, queue.shape[0]))
    logits = torch.cat([positive.unsqueeze(2), negatives], dim=2) / temperature  # (B, L, 1 + K)
    return (torch.logsumexp(logits, dim=2) - logits[..., 0]).mean()


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * source``, parameter by parameter.

    Only parameters move (as in MoCo and DenseCL); buffers such as BatchNorm's
    running statistics follow the target's own forward passes.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    target_params = list(target.parameters())
    source_params = list(source.parameters())
    if len(target_params) != len(source_params):
        raise ValueError("momentum_update needs two modules with the same parameters")
    # One fused lerp over all tensors (as torch.optim.swa_utils does): t + (1 - m) * (s - t).
    torch._foreach_lerp_(target_params, [p.detach() for p in source_params], 1.0 - momentum)


@torch.no_grad()
def enqueue(queue: Tensor, pointer: Tensor, keys: Tensor) -> None:
    """Write ``keys`` ``(B, C)`` into the ring buffer ``queue`` ``(K, C)`` at ``pointer`` (in place).

    ``pointer`` is a 0-d int64 tensor, advanced by ``B`` modulo ``K``. When
    ``B > K`` only the last ``K`` keys are kept.
    """
    size = queue.shape[0]
    if size == 0:
        return
    keys = keys.detach().to(queue.dtype)[-size:]
    index = (int(pointer) + torch.arange(keys.shape[0], device=queue.device)) % size
    queue[index] = keys
    pointer.fill_((int(pointer) + keys.shape[0]) % size)


# --------------------------------------------------------------- naive references
def _lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _dot(u: list[float], v: list[float]) -> float:
    return sum(x * y for x, y in zip(u, v, strict=True))


def _kept(exclude: Tensor | None, b: int, count: int) -> list[int]:
    """Indices of the negatives that query ``b`` keeps."""
    return [j for j in range(count) if exclude is None or not bool(exclude[b, j])]


def reference_global_loss_loop(
    query: Tensor, key: Tensor, queue: Tensor, temperature: float = 0.2, exclude: Tensor | None = None
) -> float:
    """Slow pure-Python reference of :func:`densecl_global_loss` (for tests), in float64."""
    q, k, n = (t.detach().double().tolist() for t in (query, key, queue))
    total = 0.0
    for b in range(len(q)):
        kept = _kept(exclude, b, len(n))
        logits = [_dot(q[b], k[b]) / temperature] + [_dot(q[b], n[j]) / temperature for j in kept]
        total += _lse(logits) - logits[0]
    return total / len(q)


def reference_dense_loss_loop(
    query_dense: Tensor,
    key_dense: Tensor,
    query_grid: Tensor,
    key_grid: Tensor,
    queue: Tensor,
    temperature: float = 0.2,
    exclude: Tensor | None = None,
) -> tuple[float, list[list[int]]]:
    """Slow pure-Python reference of the dense loss, matching included (for tests).

    Shapes as :func:`densecl_dense_loss` and :func:`match_grid_locations`;
    returns ``(loss, match)`` with ``match[b][l]`` the matched key cell, found
    by explicit loops over cosine similarities in float64.
    """
    qd, kd, qg, kg, n = (
        t.detach().double().tolist() for t in (query_dense, key_dense, query_grid, key_grid, queue)
    )

    def column(grid: list, b: int, cell: int) -> list[float]:
        return [grid[b][f][cell] for f in range(len(grid[b]))]

    def cosine(u: list[float], v: list[float]) -> float:
        return _dot(u, v) / max(math.sqrt(_dot(u, u)) * math.sqrt(_dot(v, v)), 1e-300)

    total, count, match = 0.0, 0, []
    for b in range(len(qd)):
        cells = len(qd[b][0])
        row = []
        for cell in range(cells):
            anchor = column(qg, b, cell)
            sims = [cosine(anchor, column(kg, b, j)) for j in range(cells)]
            best = max(range(cells), key=lambda j: sims[j])
            row.append(best)
            q = column(qd, b, cell)
            logits = [_dot(q, column(kd, b, best)) / temperature]
            logits += [_dot(q, n[j]) / temperature for j in _kept(exclude, b, len(n))]
            total += _lse(logits) - logits[0]
            count += 1
        match.append(row)
    return total / count, match


# ------------------------------------------------------------------------ the model
class DenseCL(nn.Module):
    """The query network with its heads, their momentum copies, and the two queues.

    Parameters
    ----------
    embedding : the query network (trained by the optimiser; its state is the
        checkpoint's ``model``)
    attach : ``embedding`` or ``backbone`` (module docstring)
    hidden_dim, projection_dim, grid_size : the heads' sizes
    queue_size : K, negatives per queue
    momentum : m of the key network's moving average
    temperature : τ of both losses
    dense_weight : lambda

    exclude_same_source : leave queued keys of a query's own source (the
        ``sources`` given to :meth:`forward`) out of its negatives

    Buffers ``queue`` and ``dense_queue`` are ``(K, projection_dim)``,
    ``queue_sources`` ``(K,)`` int64 (-1 until a key fills the slot),
    ``queue_pointer`` a 0-d int64. ``forward(x_query, x_key)`` is one training
    step's loss: it first moves the key network towards the query network, then
    computes the keys without gradients, the losses against the queues, and
    finally pushes this batch's keys into the queues.
    """

    def __init__(
        self,
        embedding: EmbeddingNet,
        *,
        attach: str = "backbone",
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        grid_size: int = 7,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        dense_weight: float = 0.5,
        exclude_same_source: bool = False,
    ) -> None:
        super().__init__()
        if attach not in ATTACH_POINTS:
            raise ValueError(f"attach must be one of {ATTACH_POINTS}, got {attach!r}")
        if queue_size < 0:
            raise ValueError(f"queue_size must not be negative, got {queue_size}")
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        _check_temperature(temperature)
        self.attach = attach
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.dense_weight = float(dense_weight)
        in_channels = embedding.embed_dim if attach == "embedding" else embedding.backbone.high_channels
        self.query = embedding
        self.query_heads = DenseCLHeads(in_channels, hidden_dim, projection_dim, grid_size)
        self.key = copy.deepcopy(embedding)
        self.key_heads = copy.deepcopy(self.query_heads)
        for param in [*self.key.parameters(), *self.key_heads.parameters()]:
            param.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("dense_queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        # The source (view or shape id) of each queued key; -1: a random initial vector.
        self.register_buffer("queue_sources", torch.full((queue_size,), -1, dtype=torch.long))
        self.exclude_same_source = bool(exclude_same_source)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The query network's parameters, then its heads' (the optimiser's list)."""
        return [*self.query.parameters(), *self.query_heads.parameters()]

    def _features(self, net: EmbeddingNet, x: Tensor) -> Tensor:
        if self.attach == "embedding":
            return net(x, normalize=False)
        net.check_input(x)
        return net.backbone(x)["high"]

    def project_query(self, x: Tensor) -> DenseCLProjections:
        """Query projections of ``(B, K, H, W)`` inputs (with gradients)."""
        return self.query_heads(self._features(self.query, x))

    @torch.no_grad()
    def project_key(self, x: Tensor) -> DenseCLProjections:
        """Key projections of ``(B, K, H, W)`` inputs by the momentum network (no gradients)."""
        return self.key_heads(self._features(self.key, x))

    def losses(
        self,
        query: DenseCLProjections,
        key: DenseCLProjections,
        queue: Tensor,
        dense_queue: Tensor,
        exclude: Tensor | None = None,
    ) -> DenseCLLosses:
        """Both losses of matched query and key projections against the given negatives (float32).

        ``exclude`` ``(B, K)`` leaves negatives out of both losses (see
        :func:`same_source_mask`).
        """
        with torch.autocast(device_type=query.global_.device.type, enabled=False):
            global_loss = densecl_global_loss(query.global_, key.global_, queue, self.temperature, exclude)
            match = match_grid_locations(query.grid.detach(), key.grid)
            dense_loss = densecl_dense_loss(
                query.dense, key.dense, match, dense_queue, self.temperature, exclude
            )
            loss = (1.0 - self.dense_weight) * global_loss + self.dense_weight * dense_loss
        return DenseCLLosses(loss, global_loss, dense_loss)

    @torch.no_grad()
    def update_key_network(self) -> None:
        """One step of the key network's moving average towards the query network."""
        momentum_update(self.key, self.query, self.momentum)
        momentum_update(self.key_heads, self.query_heads, self.momentum)

    def forward(self, x_query: Tensor, x_key: Tensor, sources: Tensor | None = None) -> DenseCLLosses:
        """One step: ``(B, K, H, W)`` query and key copies; ``sources`` ``(B,)`` int64 ids of their
        view or shape, recorded with the keys and, with ``exclude_same_source``, used to leave
        queued keys of a query's own source out of its negatives."""
        if self.exclude_same_source and sources is None:
            raise ValueError("exclude_same_source needs the sources of the batch")
        query = self.project_query(x_query)
        self.update_key_network()
        key = self.project_key(x_key)
        exclude = None
        if self.exclude_same_source:
            exclude = same_source_mask(sources.to(self.queue_sources.device), self.queue_sources)
        result = self.losses(query, key, self.queue.clone(), self.dense_queue.clone(), exclude)
        with torch.no_grad():
            pointer = self.queue_pointer.clone()
            if sources is not None:
                enqueue(self.queue_sources, pointer.clone(), sources.to(self.queue_sources.device))
            enqueue(self.dense_queue, pointer.clone(), key.dense_mean)
            enqueue(self.queue, self.queue_pointer, key.global_)
        return result

    def training_state(self) -> dict[str, Tensor]:
        """Everything but the query network (the checkpoint's ``model``): heads, key copies, queues."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("query.")}

    def load_training_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of :meth:`training_state` (the query network is loaded separately)."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        # queue_sources is newer than the first DenseCL checkpoints: without it all slots read -1.
        missing = [k for k in missing if not k.startswith("query.") and k != "queue_sources"]
        if missing or unexpected:
            raise RuntimeError(
                f"DenseCL state does not fit: missing {missing[:4]}, unexpected {unexpected[:4]}"
            )
