"""The DGCNN point network: shapes, neighbours, the split edge layer, permutation equivariance."""

from __future__ import annotations

import pytest
import torch

from mvdecor.config import PointsConfig
from mvdecor.points.network import (
    EdgeConv,
    PointEmbeddingNet,
    PointSegmentationNet,
    build_point_embedding,
    input_channels,
    knn,
)


def _small(in_channels: int = 3) -> PointEmbeddingNet:
    torch.manual_seed(0)
    return PointEmbeddingNet(
        in_channels, neighbours=8, widths=(16, 24), global_dim=32, head_width=32, embed_dim=12
    )


def test_knn_matches_brute_force_and_includes_each_point():
    torch.manual_seed(1)
    features = torch.randn(2, 5, 40)
    index = knn(features, 6)
    assert index.shape == (2, 40, 6) and index.dtype == torch.int64
    distance = torch.cdist(features.transpose(1, 2), features.transpose(1, 2))
    expected = distance.topk(6, dim=-1, largest=False).indices
    assert torch.equal(index.sort(dim=-1).values, expected.sort(dim=-1).values)
    assert torch.equal(index[:, :, 0], torch.arange(40).expand(2, 40))  # nearest: itself


def test_edge_conv_is_the_max_over_neighbours_of_the_edge_function():
    torch.manual_seed(2)
    layer = EdgeConv(4, 7).eval()
    features, index = torch.randn(1, 4, 30), None
    index = knn(features, 5)
    # The reference: W1 (x_j - x_i) + W2 x_i with W1 = neighbour, W2 = neighbour + centre, max over j.
    w1 = layer.neighbour.weight[:, :, 0]
    w2 = w1 + layer.centre.weight[:, :, 0]
    x = features[0].T  # (N, C)
    edges = (x[index[0]] - x[:, None]) @ w1.T + (x @ w2.T)[:, None]  # (N, k, O)
    expected = torch.nn.functional.leaky_relu(layer.norm(edges.amax(dim=1).T[None]), 0.2)
    torch.testing.assert_close(layer(features, index), expected, rtol=1e-5, atol=1e-5)


def test_outputs_have_one_embedding_or_score_vector_per_point():
    network = _small()
    cloud = torch.randn(3, 3, 50)
    assert network(cloud).shape == (3, 12, 50)
    segmentation = PointSegmentationNet(network, num_classes=5)
    assert segmentation(cloud).shape == (3, 5, 50)
    with pytest.raises(ValueError, match=r"expected a \(B, 3, N\) cloud"):
        network(torch.randn(3, 6, 50))
    # Fewer points than neighbours: k is clipped to the cloud.
    assert network(torch.randn(1, 3, 5)).shape == (1, 12, 5)


@pytest.mark.parametrize("use_normals", [False, True])
def test_per_point_outputs_follow_a_permutation_of_the_points(use_normals):
    channels = input_channels(use_normals)
    network = PointSegmentationNet(_small(channels), num_classes=4).eval()
    torch.manual_seed(3)
    cloud = torch.randn(2, channels, 200)
    order = torch.randperm(200)
    with torch.no_grad():
        scores = network(cloud)
        permuted = network(cloud[:, :, order])
    torch.testing.assert_close(permuted, scores[:, :, order], rtol=1e-4, atol=1e-5)
    # Training mode too: batch statistics do not depend on the order either.
    network.train()
    with torch.no_grad():
        torch.testing.assert_close(
            network(cloud[:, :, order]), network(cloud)[:, :, order], rtol=1e-4, atol=1e-5
        )


def test_the_configuration_builds_the_network():
    settings = PointsConfig(
        neighbours=4, widths=(8, 8, 8), global_dim=16, head_width=16, embed_dim=10, use_normals=True
    )
    network = build_point_embedding(settings)
    assert network.in_channels == 6 and len(network.blocks) == 3 and network.embed_dim == 10
    assert network(torch.randn(2, 6, 20)).shape == (2, 10, 20)
