"""The nearest-labelled-pixel head against a per-pixel reference loop; its bank sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvdecor.models.embedding import EmbeddingNet, SegmentationNet
from mvdecor.models.nearest import NearestLabelHead, labelled_pixel_embeddings, sample_bank


def _reference(features: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, classes: int, k: int,
               temperature: float) -> np.ndarray:  # fmt: skip
    """Class probabilities of every pixel of ``features (D, H, W)``, one pixel at a time in float64."""
    _, h, w = features.shape
    bank = [[float(x) for x in row] for row in bank.double()]
    bank = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in bank]
    out = np.zeros((classes, h, w))
    for i in range(h):
        for j in range(w):
            query = [float(x) for x in features[:, i, j].double()]
            norm = math.sqrt(sum(x * x for x in query))
            sims = [sum(q * b for q, b in zip(query, row, strict=True)) / norm for row in bank]
            order = sorted(range(len(sims)), key=lambda n: -sims[n])[:k]
            top = max(sims[n] for n in order)
            weights = [math.exp((sims[n] - top) / temperature) for n in order]
            for n, weight in zip(order, weights, strict=True):
                out[int(labels[n]), i, j] += weight / sum(weights)
    return out


def test_head_votes_as_the_reference_loop_at_every_pixel_and_on_a_grid():
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(40, 6, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    features = torch.randn(2, 6, 5, 7, generator=generator)
    head = NearestLabelHead(bank, labels, 4, neighbours=5, temperature=0.2, stride=1)
    probs = head(features).exp().numpy()
    for b in range(2):
        np.testing.assert_allclose(probs[b], _reference(features[b], bank, labels, 4, 5, 0.2), atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # Stride 2: the grid's pixels as above, each repeated over its 2 x 2 block (cropped at the edge).
    coarse = (
        NearestLabelHead(bank, labels, 4, neighbours=5, temperature=0.2, stride=2)(features).exp().numpy()
    )
    assert coarse.shape == probs.shape
    np.testing.assert_allclose(coarse[:, :, ::2, ::2], probs[:, :, ::2, ::2], atol=1e-6)
    np.testing.assert_allclose(coarse[:, :, 1::2, 1::2], probs[:, :, ::2, ::2][:, :, :2, :3], atol=1e-6)
    # More neighbours than entries: all of them vote; chunking does not change a thing.
    everyone = NearestLabelHead(bank[:3], labels[:3], 4, neighbours=10, stride=1)(features).exp()
    assert torch.allclose(everyone.sum(dim=1), torch.ones(2, 5, 7))


def test_head_is_a_segmentation_network_head_and_checks_its_bank():
    embedding = EmbeddingNet("resnet18", in_channels=5, embed_dim=8, head="light")
    bank, labels = torch.randn(30, 8), torch.randint(0, 3, (30,))
    net = SegmentationNet(embedding, 3, head=NearestLabelHead(bank, labels, 3)).eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 5, 32, 32))
    assert logits.shape == (2, 3, 32, 32) and torch.isfinite(logits).all()
    assert set(net.state_dict()) >= {"head.bank_features", "head.bank_labels"}
    with pytest.raises(ValueError, match="lie in"):
        NearestLabelHead(bank, labels + 3, 3)
    with pytest.raises(ValueError, match="empty"):
        NearestLabelHead(bank[:0], labels[:0], 3)


def test_bank_sampling_and_labelled_pixels():
    features, labels = torch.arange(100.0)[:, None].repeat(1, 2), torch.arange(100) % 4
    kept, kept_labels = sample_bank(features, labels, 30, seed=1)
    assert len(kept) == 30 and torch.equal(kept[:, 0].long() % 4, kept_labels)
    again, _ = sample_bank(features, labels, 30, seed=1)
    assert torch.equal(kept, again) and not torch.equal(kept, sample_bank(features, labels, 30, seed=2)[0])
    assert sample_bank(features, labels, 500)[0] is features

    embedding = EmbeddingNet("resnet18", in_channels=5, embed_dim=8, head="light").train()
    inputs = torch.randn(2, 5, 32, 32)
    view_labels = torch.full((2, 32, 32), -1)
    view_labels[0, 3:5, 4:7] = 2
    view_labels[1, 10, 11] = 1
    pixels, pixel_labels = labelled_pixel_embeddings(embedding, [(inputs, view_labels)], torch.device("cpu"))
    assert embedding.training  # its mode is restored
    with torch.no_grad():
        raw = embedding.eval()(inputs, normalize=False)
    assert pixels.shape == (7, 8) and pixel_labels.tolist() == [2] * 6 + [1]
    torch.testing.assert_close(pixels[-1], raw[1, :, 10, 11])
