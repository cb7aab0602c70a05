"""A 3D point network in plain PyTorch: DGCNN (Wang et al., *Dynamic Graph CNN*, TOG 2019).

The paper's 3D baselines use a sparse-convolution U-Net (MinkowskiEngine, as
PointContrast). Neither sparse-convolution library is a dependency here:
MinkowskiEngine is compiled from source against the installed torch (a
``--cpu_only`` build exists, but its last release, 0.5.4 of 2021, predates
torch 2 and builds against newer versions commonly need source patches), and
spconv's fast builds are its CUDA packages (its CPU package is, by its
authors' account, unoptimised and meant for debugging). DGCNN needs nothing
beyond PyTorch, runs on a CPU and a GPU alike, and is a standard backbone of
point cloud part segmentation, so it stands in for the sparse U-Net; the
pre-training objective (PointInfoNCE) and the protocol are PointContrast's.

The network, for a cloud of ``N`` points with ``C_in`` input channels:

1. ``L`` EdgeConv blocks (``widths``). Block ``l`` builds the k-nearest
   neighbour graph of its input features (of the positions for the first
   block; recomputed in feature space for the others: the *dynamic* graph),
   and gives point ``i`` the feature ``LeakyReLU(BN(max_j W1 (x_j - x_i) + W2 x_i))``
   over its ``k`` neighbours ``j`` (itself included).
2. The blocks' outputs are concatenated, mapped to ``global_dim`` channels and
   max-pooled over the points: one shape-level feature.
3. Per point, the shape feature and the blocks' outputs go through a two-layer
   MLP (``head_width``) to the ``embed_dim`` embedding.

A segmentation network (:class:`PointSegmentationNet`) adds BatchNorm, ReLU and
a 1x1 convolution to class scores, as the 2D network's head.

Each EdgeConv block has one edge layer, as DGCNN's classification network
(its part-segmentation network stacks two in the first blocks), and it departs
from DGCNN in one place, for speed on a CPU: the maximum over the neighbours is
taken *before* the BatchNorm and the LeakyReLU, not after them. As
``W1 (x_j - x_i) + W2 x_i = W1 x_j + (W2 - W1) x_i`` and only the first term
varies with ``j``, the layer computes two per-point linear maps, gathers the
first per edge and takes its maximum: one ``(N, k, C)`` tensor per block
instead of four (edge features, normalisation, activation, pooling), and the
BatchNorm is per point (the "max-relative" EdgeConv of DeepGCNs, Li et al. 2019,
with DGCNN's centre term). The activation is monotone, so this is DGCNN's layer
except where a BatchNorm scale is negative (the maximum then stands where
DGCNN's minimum would) and in the statistics normalised (of the maxima, not of
every edge). Measured on one CPU core, a training step took half the time.

Every operation is per point, per neighbourhood or a symmetric pooling, so the
per-point outputs are **permutation-equivariant**: permuting the input points
permutes the outputs the same way (up to ties in the neighbour search).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvdecor.config import PointsConfig

__all__ = [
    "EdgeConv",
    "PointEmbeddingNet",
    "PointSegmentationNet",
    "build_point_embedding",
    "input_channels",
    "knn",
]

_SLOPE = 0.2  # DGCNN's LeakyReLU slope


def input_channels(use_normals: bool) -> int:
    """Input channels per point: positions (3), and normals (3 more) when ``use_normals``."""
    return 6 if use_normals else 3


def knn(features: Tensor, k: int) -> Tensor:
    """The ``k`` nearest neighbours of every point, itself included, in feature space.

    Distances are computed in float32 even under autocast: bf16 distances
    would make ties of neighbours that are not.

    Parameters
    ----------
    features : (B, C, N) float
    k : int, at most ``N``

    Returns
    -------
    (B, N, k) int64
        Indices into the ``N`` points, nearest first.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = features.float()
        squared = (x * x).sum(dim=1, keepdim=True)  # (B, 1, N)
        # -|xi - xj|^2 = 2 xi.xj - |xj|^2 - |xi|^2; the last term is the same along a row, so
        # the row's ranking needs only the first two: one fused matrix product per cloud.
        score = torch.baddbmm(-squared, x.transpose(1, 2), x, alpha=2.0)
        return score.topk(k, dim=-1).indices


def _neighbour_max(values: Tensor, index: Tensor) -> Tensor:
    """The maximum of ``values`` (B, C, N) over each point's neighbours (B, N, k) -> (B, C, N).

    Gathered as ``(B, N, k, C)``, channels last, so the reduction over ``k``
    runs over contiguous rows (over ``(B, C, N, k)`` it was the step's slowest
    operation on a CPU); ``max`` with indices, not ``amax``, as its backward is
    a scatter where ``amax``'s compares every gathered value.
    """
    batch, channels, points = values.shape
    k = index.shape[2]
    flat = values.transpose(1, 2).reshape(batch * points, channels)
    offsets = torch.arange(batch, device=index.device).view(batch, 1, 1) * points
    picked = flat[(index + offsets).reshape(-1)].view(batch, points, k, channels)
    return picked.max(dim=2).values.transpose(1, 2)


class EdgeConv(nn.Module):
    """One EdgeConv layer: ``LeakyReLU(BN(max_j W1 (x_j - x_i) + W2 x_i))`` over the graph's edges.

    The maximum over the neighbours is taken before the normalisation and the
    activation (see the module docstring): ``W1 (x_j - x_i) + W2 x_i = W1 x_j +
    (W2 - W1) x_i`` and only ``W1 x_j`` varies with ``j``.

    Parameters
    ----------
    in_channels, out_channels : int
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # W1 on the neighbour, (W2 - W1) on the centre: the edge layer, split per point.
        self.neighbour = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.centre = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, features: Tensor, neighbours: Tensor) -> Tensor:
        """``features`` (B, C_in, N) and the graph (B, N, k) -> (B, C_out, N)."""
        strongest = _neighbour_max(self.neighbour(features), neighbours)
        return F.leaky_relu(self.norm(strongest + self.centre(features)), _SLOPE)


def _pointwise(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.LeakyReLU(_SLOPE),
    )


class PointEmbeddingNet(nn.Module):
    """DGCNN: a cloud ``(B, C_in, N)`` -> per-point embeddings ``(B, embed_dim, N)`` (raw, not normalised).

    Parameters
    ----------
    in_channels : int
        3 (positions) or 6 (positions and normals); the first graph is always
        built on the positions (the first three channels).
    neighbours : int
        ``k`` of every graph (clipped to the cloud's size).
    widths : sequence of int
        Output width of each EdgeConv block.
    global_dim, head_width, embed_dim : int
        See the module docstring.
    """

    def __init__(
        self,
        in_channels: int = 3,
        neighbours: int = 20,
        widths: Sequence[int] = (64, 64, 64),
        global_dim: int = 1024,
        head_width: int = 256,
        embed_dim: int = 64,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("a DGCNN needs at least one EdgeConv block")
        self.in_channels, self.neighbours, self.embed_dim = int(in_channels), int(neighbours), int(embed_dim)
        channels = [self.in_channels, *map(int, widths)]
        self.blocks = nn.ModuleList(EdgeConv(a, b) for a, b in itertools.pairwise(channels))
        stacked = sum(channels[1:])
        self.global_layer = _pointwise(stacked, global_dim)
        self.head = nn.Sequential(
            _pointwise(global_dim + stacked, head_width),
            nn.Conv1d(head_width, embed_dim, 1),
        )

    def forward(self, cloud: Tensor) -> Tensor:
        """``cloud`` (B, C_in, N) -> embeddings (B, embed_dim, N)."""
        if cloud.ndim != 3 or cloud.shape[1] != self.in_channels:
            raise ValueError(f"expected a (B, {self.in_channels}, N) cloud, got {tuple(cloud.shape)}")
        k = min(self.neighbours, cloud.shape[2])
        features, outputs = cloud, []
        for index, block in enumerate(self.blocks):
            graph = knn(cloud[:, :3] if index == 0 else features, k)
            features = block(features, graph)
            outputs.append(features)
        stacked = torch.cat(outputs, dim=1)
        shape_feature = self.global_layer(stacked).amax(dim=2, keepdim=True)
        return self.head(torch.cat([shape_feature.expand(-1, -1, stacked.shape[2]), stacked], dim=1))


class PointSegmentationNet(nn.Module):
    """The embedding network, then BN, ReLU and a 1x1 convolution: ``(B, C_in, N) -> (B, classes, N)``.

    As in the 2D network, the head reads the raw embedding (its BatchNorm
    rescales every channel); the L2 normalisation belongs to the contrastive loss.
    """

    def __init__(self, embedding: PointEmbeddingNet, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.embedding = embedding
        self.head = nn.Sequential(
            nn.BatchNorm1d(embedding.embed_dim),
            nn.ReLU(),
            nn.Conv1d(embedding.embed_dim, num_classes, 1),
        )
        self.num_classes = int(num_classes)

    def forward(self, cloud: Tensor) -> Tensor:
        """``cloud`` (B, C_in, N) -> logits (B, num_classes, N)."""
        return self.head(self.embedding(cloud))


def build_point_embedding(settings: PointsConfig) -> PointEmbeddingNet:
    """The :class:`PointEmbeddingNet` that ``settings`` describes (randomly initialised)."""
    return PointEmbeddingNet(
        in_channels=input_channels(settings.use_normals),
        neighbours=settings.neighbours,
        widths=settings.widths,
        global_dim=settings.global_dim,
        head_width=settings.head_width,
        embed_dim=settings.embed_dim,
    )
