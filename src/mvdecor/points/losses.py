"""PointInfoNCE, the contrastive loss of PointContrast (Xie et al., ECCV 2020).

For ``M`` matched point pairs between two partial clouds of one shape, with
features ``f1[i]`` and ``f2[i]`` (L2-normalised) and temperature ``tau``::

    L = mean_i  -log( exp(f1[i]·f2[i] / tau) / sum_k exp(f1[i]·f2[k] / tau) )

The negatives of ``f1[i]`` are the features ``f2[k]`` (k != i) of the other
matched points of the second cloud, as PointContrast's ``nce`` loss (one
direction; ``symmetric=True`` also averages in the other). Computed in float32
by cross-entropy (log-sum-exp), so it is stable at low temperatures and under
bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["point_info_nce"]

#: Logit given to padded (invalid) negatives: finite, so that no NaN can appear.
_MASKED_LOGIT = -1e9


def point_info_nce(
    features_a: Tensor,
    features_b: Tensor,
    temperature: float = 0.4,
    *,
    valid: Tensor | None = None,
    normalize: bool = True,
    symmetric: bool = False,
) -> Tensor:
    """PointInfoNCE over matched points: row ``i`` of ``features_a`` and of ``features_b`` match.

    Parameters
    ----------
    features_a, features_b : (M, D) or (B, M, D) float
        Features of the matched points of the first and second cloud of each
        of ``B`` pairs (a batch of pairs is padded to one ``M``).
    temperature : float
        tau (PointContrast: 0.4).
    valid : (M,) or (B, M) bool, optional
        Which rows are real matches (default: all). Padded rows are neither
        anchors nor negatives.
    normalize : bool
        L2-normalise the features first (PointContrast's features are
        normalised; pass false for features that already are).
    symmetric : bool
        Average the ``a -> b`` and ``b -> a`` directions (default: ``a -> b`` only).

    Returns
    -------
    Scalar float32 tensor: the mean over the valid anchors of every pair.

    Raises
    ------
    ValueError
        Mismatched shapes, no valid match, or a non-positive temperature.
    """
    if features_a.shape != features_b.shape or features_a.ndim not in (2, 3):
        raise ValueError(
            "expected two (M, D) or (B, M, D) tensors of one shape, got "
            f"{tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    batched = features_a.ndim == 3
    a = features_a if batched else features_a.unsqueeze(0)
    b = features_b if batched else features_b.unsqueeze(0)
    pairs, matches = a.shape[:2]
    if valid is None:
        valid = torch.ones(pairs, matches, dtype=torch.bool, device=a.device)
    else:
        valid = valid.to(device=a.device, dtype=torch.bool)
        valid = valid if batched else valid.unsqueeze(0)
        if valid.shape != (pairs, matches):
            raise ValueError(f"valid has shape {tuple(valid.shape)}, expected {(pairs, matches)}")
    if not bool(valid.any()):
        raise ValueError("point_info_nce needs at least one valid match")
    a, b = a.float(), b.float()
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = torch.bmm(a, b.transpose(1, 2)) / temperature  # (B, M, M): anchors x candidates
    target = torch.arange(matches, device=a.device).expand(pairs, matches)
    loss = _masked_cross_entropy(logits, target, valid)
    if symmetric:
        loss = 0.5 * (loss + _masked_cross_entropy(logits.transpose(1, 2), target, valid))
    return loss


def _masked_cross_entropy(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Cross-entropy of the valid rows of ``(B, M, M)`` logits, over valid columns only."""
    logits = logits.masked_fill(~valid.unsqueeze(1), _MASKED_LOGIT)
    per_row = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    return per_row[valid.flatten()].mean()
