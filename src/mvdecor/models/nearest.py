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
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NearestLabelHead", "labelled_pixel_embeddings", "sample_bank"]

#: Similarities computed at once, at most (queries x bank entries): bounds the memory.
_CHUNK_ELEMENTS = 1 << 24


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

    Notes
    -----
    The bank is stored as buffers, so a checkpoint of the network holds it. Its
    size is fixed when the head is built; :func:`sample_bank` chooses the entries.
    """

    def __init__(
        self,
        bank_features: Tensor,
        bank_labels: Tensor,
        num_classes: int,
        neighbours: int = 10,
        temperature: float = 0.07,
        stride: int = 2,
    ) -> None:
        super().__init__()
        if bank_features.ndim != 2 or bank_labels.shape != bank_features.shape[:1]:
            raise ValueError("bank_features must be (N, D) and bank_labels (N,)")
        if len(bank_labels) == 0:
            raise ValueError("the bank of labelled pixels is empty")
        labels = bank_labels.long()
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"bank labels must lie in [0, {num_classes})")
        if neighbours < 1 or temperature <= 0 or stride < 1:
            raise ValueError("neighbours and stride must be >= 1 and temperature > 0")
        self.register_buffer("bank_features", F.normalize(bank_features.float(), dim=1))
        self.register_buffer("bank_labels", labels)
        self.num_classes = int(num_classes)
        self.neighbours = int(neighbours)
        self.temperature = float(temperature)
        self.stride = int(stride)

    def class_probabilities(self, queries: Tensor) -> Tensor:
        """``(Q, D)`` embeddings (any norm) -> ``(Q, C)`` class probabilities."""
        bank = self.bank_features
        queries = F.normalize(queries.float(), dim=1)
        k = min(self.neighbours, len(bank))
        out = torch.zeros(len(queries), self.num_classes, device=queries.device)
        chunk = max(1, _CHUNK_ELEMENTS // len(bank))
        for start in range(0, len(queries), chunk):
            similarity = queries[start : start + chunk] @ bank.T
            top, index = similarity.topk(k, dim=1)
            weights = torch.softmax(top / self.temperature, dim=1)
            out[start : start + chunk].scatter_add_(1, self.bank_labels[index], weights)
        return out

    def forward(self, features: Tensor) -> Tensor:
        b, d, h, w = features.shape
        grid = features[:, :, :: self.stride, :: self.stride]
        gh, gw = grid.shape[-2:]
        queries = grid.permute(0, 2, 3, 1).reshape(-1, d)
        probs = self.class_probabilities(queries).reshape(b, gh, gw, self.num_classes).permute(0, 3, 1, 2)
        if self.stride > 1:
            probs = probs.repeat_interleave(self.stride, dim=2).repeat_interleave(self.stride, dim=3)
            probs = probs[:, :, :h, :w]
        return probs.clamp_min(1e-8).log()  # a class no neighbour votes for: finite, no NaN downstream


def sample_bank(features: Tensor, labels: Tensor, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """At most ``size`` of the labelled pixels ``(features (N, D), labels (N,))``, drawn uniformly.

    Uniform over pixels, so each class keeps its share; seeded (the same
    arguments give the same bank).
    """
    if len(labels) <= size:
        return features, labels
    rng = np.random.default_rng([int(seed), 0xBA4C])
    index = torch.from_numpy(np.sort(rng.choice(len(labels), size=size, replace=False)))
    return features[index], labels[index]


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
