"""The losses: MvDeCor's contrastive loss (paper eq. 2; docs/design.md section 3) and
the class weights of the fine-tuning cross-entropy.

For ``N`` matched pixel pairs ``(a_i, b_i)`` between two views of one shape,
with L2-normalised embeddings and temperature τ::

    L(a -> b) = mean_i  -log( exp(a_i·b_i / τ) / Σ_k exp(a_i·b_k / τ) )

The negatives of ``a_i`` are the embeddings ``b_k`` (k ≠ i) of the other sampled
matched pixels of the other view. The symmetric loss averages ``L(a -> b)`` and
``L(b -> a)``. The paper sums over pixels; a mean keeps the scale independent of
``N`` (chance level: ``log N``).

All losses are computed in float32 with log-sum-exp (cross-entropy), so they are
stable at low temperatures and under bf16 autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "class_balance_weights",
    "dense_info_nce",
    "gather_pixels",
    "info_nce",
    "reference_info_nce_loop",
]

#: Logit given to padded (invalid) negatives: finite, so that no NaN can appear.
_MASKED_LOGIT = -1e9


def info_nce(emb_a: Tensor, emb_b: Tensor, temperature: float = 0.07, symmetric: bool = True) -> Tensor:
    """InfoNCE over matched pairs: row ``i`` of ``emb_a`` and of ``emb_b`` is a positive pair.

    Parameters
    ----------
    emb_a, emb_b
        ``(N, D)`` embeddings, assumed L2-normalised.
    temperature
        τ (0.07 in the paper).
    symmetric
        Average the ``a -> b`` and ``b -> a`` directions; else ``a -> b`` only.

    Returns
    -------
    Scalar tensor: the mean over the ``N`` anchors (and the two directions).
    """
    if emb_a.ndim != 2 or emb_a.shape != emb_b.shape:
        raise ValueError(
            f"expected two (N, D) tensors of one shape, got {tuple(emb_a.shape)}, {tuple(emb_b.shape)}"
        )
    if emb_a.shape[0] == 0:
        raise ValueError("info_nce needs at least one pair")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = (emb_a @ emb_b.T).float() / temperature
    target = torch.arange(emb_a.shape[0], device=emb_a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return loss


def gather_pixels(features: Tensor, index: Tensor) -> Tensor:
    """Features ``(B, D, H, W)`` at flat pixel indices ``(B, N)`` -> ``(B, N, D)``.

    A flat index is ``row * W + col``.
    """
    b, d = features.shape[:2]
    flat = features.reshape(b, d, -1)
    return flat.gather(2, index.unsqueeze(1).expand(b, d, index.shape[1])).transpose(1, 2)


def dense_info_nce(
    feat_a: Tensor,
    feat_b: Tensor,
    index_a: Tensor,
    index_b: Tensor,
    valid: Tensor | None = None,
    temperature: float = 0.07,
    symmetric: bool = True,
) -> Tensor:
    """InfoNCE between matched pixels of ``B`` view pairs, averaged over the pairs.

    Parameters
    ----------
    feat_a, feat_b
        ``(B, D, H, W)`` L2-normalised embeddings of the first and second view of each pair.
    index_a, index_b
        ``(B, N)`` long: flat pixel indices (``row * W + col``) of the matches;
        ``index_a[p, i]`` in view ``a`` of pair ``p`` sees the same surface point as
        ``index_b[p, i]`` in view ``b``.
    valid
        ``(B, N)`` bool, or None (all valid). Pairs with fewer than ``N`` matches
        are padded; padded entries (any index value) are left out as anchors,
        as positives and as negatives.
    temperature, symmetric
        As :func:`info_nce`.

    Returns
    -------
    Scalar tensor: the mean over the pairs with at least one valid match of
    each pair's InfoNCE (mean over its valid anchors). If no pair has a valid
    match the result is 0, still attached to the graph.
    """
    if feat_a.ndim != 4 or feat_a.shape != feat_b.shape:
        raise ValueError(
            f"expected two (B, D, H, W) tensors of one shape, got {tuple(feat_a.shape)}, {tuple(feat_b.shape)}"
        )
    bsz, _, h, w = feat_a.shape
    if index_a.shape != index_b.shape or index_a.ndim != 2 or index_a.shape[0] != bsz:
        raise ValueError(
            f"index_a and index_b must both be ({bsz}, N), got {tuple(index_a.shape)}, {tuple(index_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = index_a.shape[1]
    if valid is None:
        valid = torch.ones(index_a.shape, dtype=torch.bool, device=index_a.device)
    elif valid.shape != index_a.shape:
        raise ValueError(f"valid must have shape {tuple(index_a.shape)}, got {tuple(valid.shape)}")
    valid = valid.to(device=feat_a.device, dtype=torch.bool)
    index_a = torch.where(valid, index_a.to(feat_a.device).long(), 0)
    index_b = torch.where(valid, index_b.to(feat_a.device).long(), 0)
    if n > 0 and (index_a.min() < 0 or index_b.min() < 0 or index_a.max() >= h * w or index_b.max() >= h * w):
        raise ValueError(f"pixel indices out of range [0, {h * w})")

    za = gather_pixels(feat_a, index_a)  # (B, N, D)
    zb = gather_pixels(feat_b, index_b)
    logits = torch.bmm(za, zb.transpose(1, 2)).float() / temperature  # (B, N, N): a_i . b_k
    if not bool(valid.all()):
        # padded entries drop out as negatives in both directions (no (B, N, N) mask needed)
        bias = (~valid).float() * _MASKED_LOGIT
        logits = logits + bias[:, :, None] + bias[:, None, :]
    positives = torch.diagonal(logits, dim1=1, dim2=2)  # (B, N)

    row_loss = torch.logsumexp(logits, dim=2) - positives  # anchors a_i against all b_k
    if symmetric:
        col_loss = torch.logsumexp(logits, dim=1) - positives  # anchors b_i against all a_k
        row_loss = 0.5 * (row_loss + col_loss)
    weights = valid.float()
    counts = weights.sum(dim=1)
    per_pair = (row_loss * weights).sum(dim=1) / counts.clamp(min=1)
    has_matches = counts > 0
    if not bool(has_matches.any()):
        return (feat_a.sum() + feat_b.sum()) * 0.0
    return per_pair[has_matches].mean()


def reference_info_nce_loop(
    feat_a: Tensor,
    feat_b: Tensor,
    index_a: Tensor | None = None,
    index_b: Tensor | None = None,
    valid: Tensor | None = None,
    temperature: float = 0.07,
    symmetric: bool = True,
) -> float:
    """Slow pure-Python reference of :func:`info_nce` and :func:`dense_info_nce` (for tests).

    Without indices, ``feat_a`` and ``feat_b`` are ``(N, D)`` matched pairs as in
    :func:`info_nce`; with them, ``(B, D, H, W)`` maps as in :func:`dense_info_nce`.
    Every dot product and log-sum-exp is an explicit Python loop in float64.
    """
    if index_a is None:
        pairs = [(feat_a.detach().double().tolist(), feat_b.detach().double().tolist())]
    else:
        fa = feat_a.detach().double()
        fb = feat_b.detach().double()
        w = fa.shape[-1]
        pairs = []
        for p in range(fa.shape[0]):
            keep = [i for i in range(index_a.shape[1]) if valid is None or bool(valid[p, i])]
            ia = [int(index_a[p, i]) for i in keep]
            ib = [int(index_b[p, i]) for i in keep]
            za = [fa[p, :, k // w, k % w].tolist() for k in ia]
            zb = [fb[p, :, k // w, k % w].tolist() for k in ib]
            pairs.append((za, zb))

    def dot(u: list[float], v: list[float]) -> float:
        return sum(x * y for x, y in zip(u, v, strict=True))

    def direction(za: list, zb: list) -> float:
        total = 0.0
        for i, anchor in enumerate(za):
            logits = [dot(anchor, other) / temperature for other in zb]
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            total += lse - logits[i]
        return total / len(za)

    losses = []
    for za, zb in pairs:
        if not za:
            continue
        loss = direction(za, zb)
        if symmetric:
            loss = 0.5 * (loss + direction(zb, za))
        losses.append(loss)
    return sum(losses) / len(losses) if losses else 0.0


def class_balance_weights(pixel_counts: Tensor, power: float) -> Tensor:
    """Cross-entropy class weights ``frequency ** -power`` from labelled pixel counts.

    Part mIoU weighs every part equally while a plain cross-entropy weighs pixels,
    so a button of a few hundred pixels hardly moves the loss. ``power`` 0 gives
    equal weights (the plain loss), 1 inverse frequency, 0.5 a middle way.

    Parameters
    ----------
    pixel_counts : ``(C,)`` labelled pixels of each class (any dtype)
    power : the exponent, ``>= 0``

    Returns
    -------
    ``(C,)`` float32, scaled so the labelled pixels' mean weight is 1 (the loss
    keeps its scale). Classes with no pixels get 1: no target has them.
    """
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64)
    if counts.ndim != 1 or bool((counts < 0).any()):
        raise ValueError("pixel_counts must be a 1-D tensor of counts >= 0")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    weights = torch.ones_like(counts)
    present = counts > 0
    if not bool(present.any()):
        return weights.float()
    weights[present] = (counts[present] / counts.sum()) ** -power
    weights[present] /= (counts * weights)[present].sum() / counts.sum()
    return weights.float()
