"""The nearest-labelled-pixel head against a per-pixel reference loop; its bank sampling; a shape's own prototypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvdecor.models.embedding import EmbeddingNet, SegmentationNet
from mvdecor.models.nearest import (
    FaceEmbeddingPool,
    NearestLabelHead,
    bank_index,
    box_coordinates,
    class_quotas,
    fit_box_alignment,
    labelled_pixel_embeddings,
    leave_one_shape_out_scores,
    pool_by_group,
    sample_bank,
    shape_prototype_probabilities,
)


def _reference(features: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, classes: int, k: int,
               temperature: float, positions: torch.Tensor | None = None,
               bank_positions: torch.Tensor | None = None, weight: float = 0.0) -> np.ndarray:  # fmt: skip
    """Class probabilities of every pixel of ``features (D, H, W)``, one pixel at a time in float64.

    With ``weight``: similarity ``cos - weight * |position - bank position|^2`` (``positions (3, H, W)``).
    """
    _, h, w = features.shape
    bank = [[float(x) for x in row] for row in bank.double()]
    bank = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in bank]
    out = np.zeros((classes, h, w))
    for i in range(h):
        for j in range(w):
            query = [float(x) for x in features[:, i, j].double()]
            norm = math.sqrt(sum(x * x for x in query))
            sims = [sum(q * b for q, b in zip(query, row, strict=True)) / norm for row in bank]
            if weight:
                at = [float(x) for x in positions[:, i, j].double()]
                for n, other in enumerate(bank_positions.double().tolist()):
                    sims[n] -= weight * sum((a - b) ** 2 for a, b in zip(at, other, strict=True))
            order = sorted(range(len(sims)), key=lambda n: -sims[n])[:k]
            top = max(sims[n] for n in order)
            weights = [math.exp((sims[n] - top) / temperature) for n in order]
            for n, share in zip(order, weights, strict=True):
                out[int(labels[n]), i, j] += share / sum(weights)
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


def test_position_weighted_head_votes_as_the_reference_loop():
    generator = torch.Generator().manual_seed(3)
    bank = torch.randn(40, 6, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    bank_positions = torch.rand(40, 3, generator=generator) * 2 - 1
    features = torch.randn(2, 6, 5, 7, generator=generator)
    positions = torch.rand(2, 3, 5, 7, generator=generator) * 2 - 1
    head = NearestLabelHead(bank, labels, 4, 5, 0.2, 1, bank_positions, position_weight=0.7)
    assert head.needs_positions and "bank_positions" in head.state_dict()
    probs = head(features, positions).exp().numpy()
    for b in range(2):
        expected = _reference(features[b], bank, labels, 4, 5, 0.2, positions[b], bank_positions, 0.7)
        np.testing.assert_allclose(probs[b], expected, atol=1e-5)
    # The weight changes the answer (the check can fail), and a large one is position alone:
    # every pixel takes the label of the nearest bank point.
    plain = NearestLabelHead(bank, labels, 4, 5, 0.2, 1)(features).exp().numpy()
    assert np.abs(plain - probs).max() > 0.1
    by_place = NearestLabelHead(bank, labels, 4, 1, 0.2, 1, bank_positions, position_weight=1e4)
    nearest = torch.cdist(positions.permute(0, 2, 3, 1).reshape(-1, 3), bank_positions).argmin(dim=1)
    got = by_place(features, positions).argmax(dim=1).reshape(-1)
    assert torch.equal(got, labels[nearest])
    with pytest.raises(ValueError, match="box coordinates"):
        head(features)
    with pytest.raises(ValueError, match="bank_positions"):
        NearestLabelHead(bank, labels, 4, position_weight=1.0)


def _three_class_bank(seed: int) -> tuple[torch.Tensor, ...]:
    """A 30-entry bank of 3 classes with box positions, and one 4 x 5 view of queries with theirs."""
    generator = torch.Generator().manual_seed(seed)
    bank = torch.randn(30, 6, generator=generator)
    labels = torch.randint(0, 3, (30,), generator=generator)
    bank_positions = torch.rand(30, 3, generator=generator) * 2 - 1
    features = torch.randn(1, 6, 4, 5, generator=generator)
    positions = torch.rand(1, 3, 4, 5, generator=generator) * 2 - 1
    return bank, labels, bank_positions, features, positions


def test_several_position_weights_average_the_reference_loops_distributions():
    bank, labels, bank_positions, features, positions = _three_class_bank(5)
    weights = (0.0, 0.5, 4.0)
    head = NearestLabelHead(bank, labels, 3, 4, 0.2, 1, bank_positions, position_weight=weights)
    assert head.needs_positions and head.position_weight == weights
    probs = head(features, positions).exp().numpy()[0]
    expected = np.mean(
        [_reference(features[0], bank, labels, 3, 4, 0.2, positions[0], bank_positions, w) for w in weights],
        axis=0,
    )
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    # Not any one weight's answer (the check can fail).
    for w in weights:
        single = NearestLabelHead(bank, labels, 3, 4, 0.2, 1, bank_positions, position_weight=w)
        assert np.abs(single(features, positions).exp().numpy()[0] - probs).max() > 1e-3
    # Zero alone needs no positions; a negative weight or none at all is refused.
    assert not NearestLabelHead(bank, labels, 3, position_weight=(0.0,)).needs_positions
    for bad in ((), (1.0, -1.0)):
        with pytest.raises(ValueError, match="position weights"):
            NearestLabelHead(bank, labels, 3, 4, 0.2, 1, bank_positions, position_weight=bad)


def test_position_weights_joined_by_certainty_follow_each_querys_entropies():
    bank, labels, bank_positions, features, positions = _three_class_bank(7)
    weights = (0.0, 0.5, 4.0)
    each = np.stack(
        [_reference(features[0], bank, labels, 3, 4, 0.2, positions[0], bank_positions, w) for w in weights]
    )  # (W, C, H, W)
    entropy = -(each * np.log(np.clip(each, 1e-12, None))).sum(axis=1)  # (W, H, W)
    certainty = np.clip(1.0 - entropy / np.log(3), 0.0, None)
    expected = {
        "certainty": (each * (certainty / certainty.sum(axis=0))[:, None]).sum(axis=0),
        "confident": np.take_along_axis(each, entropy.argmin(axis=0)[None, None], axis=0)[0],
    }
    averaged = each.mean(axis=0)
    for combine, want in expected.items():
        head = NearestLabelHead(bank, labels, 3, 4, 0.2, 1, bank_positions, weights, combine=combine)
        probs = head(features, positions).exp().numpy()[0]
        np.testing.assert_allclose(probs, want, atol=1e-5)
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
        assert np.abs(probs - averaged).max() > 1e-3  # not the plain average (the check can fail)
    # One weight: every way of joining is that weight's answer.
    single = NearestLabelHead(bank, labels, 3, 4, 0.2, 1, bank_positions, 0.5, combine="confident")
    np.testing.assert_allclose(single(features, positions).exp().numpy()[0], each[1], atol=1e-5)
    with pytest.raises(ValueError, match="combine"):
        NearestLabelHead(bank, labels, 3, 4, 0.2, 1, bank_positions, weights, combine="vote")


def test_segmentation_net_passes_positions_to_a_head_that_needs_them():
    embedding = EmbeddingNet("resnet18", in_channels=5, embed_dim=8, head="light")
    bank, labels, places = torch.randn(30, 8), torch.randint(0, 3, (30,)), torch.rand(30, 3)
    net = SegmentationNet(embedding, 3, head=NearestLabelHead(bank, labels, 3, 10, 0.07, 2, places, 2.0))
    assert net.needs_positions and not SegmentationNet(embedding, 3).needs_positions
    x, positions = torch.randn(2, 5, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        net.eval()
        logits = net(x, positions)
        assert logits.shape == (2, 3, 32, 32) and torch.isfinite(logits).all()
        assert not torch.equal(logits, net(x, positions.flip(-1)))
        with pytest.raises(ValueError, match="pass positions"):
            net(x)
        with pytest.raises(ValueError, match="positions must be"):
            net(x, positions[:, :, :16])


def test_box_coordinates_and_bank_index():
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 4.0, 2.0])  # the z axis is flat
    points = np.array([[-1.0, 0.0, 2.0], [1.0, 4.0, 2.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(box_coordinates(points, lo, hi), [[-1, -1, 0], [1, 1, 0], [0, -0.5, 0]])
    assert box_coordinates(points[None], lo, hi).shape == (1, 3, 3)
    assert bank_index(10, 20) is None
    index = bank_index(100, 30, seed=4)
    assert len(index) == 30 and torch.equal(index, index.sort().values) and len(set(index.tolist())) == 30


def test_leave_one_shape_out_scores_reward_the_cue_that_carries_the_labels():
    # Two shapes whose labels follow position (x < 0: class 0, else 1) while the embedding is noise:
    # any weight on position must score higher than none, and position alone is perfect.
    generator = torch.Generator().manual_seed(5)
    positions = torch.rand(400, 3, generator=generator) * 2 - 1
    labels = (positions[:, 0] >= 0).long()
    features = torch.randn(400, 8, generator=generator)
    shapes = torch.arange(400) % 2
    scores = leave_one_shape_out_scores(features, labels, positions, shapes, [0.0, 1.0, 1e3], 2, neighbours=3)
    assert scores[0] < 0.7 and scores[1] > scores[0] and scores[2] > 0.9
    # Labels that follow the embedding instead: position only gets in the way.
    labels = labels[torch.randperm(400, generator=generator)]
    features = torch.nn.functional.one_hot(labels, 8).float() + 0.01 * torch.randn(
        400, 8, generator=generator
    )
    scores = leave_one_shape_out_scores(features, labels, positions, shapes, [0.0, 1e3], 2, neighbours=3)
    assert scores[0] > 0.99 and scores[1] < 0.8
    with pytest.raises(ValueError, match="two labelled shapes"):
        leave_one_shape_out_scores(features, labels, positions, torch.zeros(400), [0.0], 2)


def test_class_balanced_bank_moves_the_shares_towards_the_rare_classes():
    # 9,000 pixels of class 0 and 1,000 of class 1, a bank of 2,000: uniform keeps class 1 at ~10 %,
    # beta = 1 at 50 %, beta = 0.5 at 1000 ** 0.5 / (1000 ** 0.5 + 9000 ** 0.5) = 25 %.
    labels = torch.cat([torch.zeros(9000, dtype=torch.long), torch.ones(1000, dtype=torch.long)])
    shares = {}
    for beta in (0.0, 0.5, 1.0):
        index = bank_index(len(labels), 2000, seed=3, labels=labels, class_balance=beta)
        assert len(index) == 2000 and len(set(index.tolist())) == 2000
        assert torch.equal(index, index.sort().values)
        assert torch.equal(index, bank_index(len(labels), 2000, seed=3, labels=labels, class_balance=beta))
        shares[beta] = float(labels[index].float().mean())
    assert 0.08 < shares[0.0] < 0.12 and shares[0.5] == 0.25 and shares[1.0] == 0.5
    # beta = 0 is the uniform draw, with or without labels; a class smaller than its share is kept whole.
    assert torch.equal(bank_index(10000, 2000, seed=3), bank_index(10000, 2000, 3, labels, 0.0))
    rare = torch.cat([torch.zeros(9990, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    assert int(rare[bank_index(10000, 2000, 3, rare, 1.0)].sum()) == 10
    with pytest.raises(ValueError, match="needs the labels"):
        bank_index(10000, 2000, class_balance=0.5)


def test_class_quotas_against_a_unit_by_unit_reference():
    # Reference: hand out the bank one entry at a time to the open class furthest below its share.
    def reference(pixels, size, beta):
        quotas = [0] * len(pixels)
        for _ in range(min(size, sum(pixels))):
            open_ = [c for c, n in enumerate(pixels) if quotas[c] < n]
            strength = {c: pixels[c] ** (1 - beta) for c in open_}
            c = min(open_, key=lambda c: (quotas[c] + 1) / strength[c])
            quotas[c] += 1
        return quotas

    for pixels, size, beta in [([9000, 1000], 2000, 1.0), ([5000, 300, 40, 0, 2000], 1000, 0.5),
                               ([5000, 300, 40, 7, 2000], 1000, 1.0), ([10, 20], 100, 0.5)]:  # fmt: skip
        quotas = class_quotas(np.array(pixels), size, beta)
        assert quotas.sum() == min(size, sum(pixels)) and (quotas <= np.array(pixels)).all()
        assert np.abs(quotas - np.array(reference(pixels, size, beta))).max() <= 1


def _naive_unit_mean(rows: list[list[float]]) -> np.ndarray:
    """The unit mean of the unit rows, in float64, one row at a time."""
    units = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in rows]
    mean = [sum(column) / len(units) for column in zip(*units, strict=True)]
    return np.array(mean) / math.sqrt(sum(x * x for x in mean))


def test_face_pool_and_group_pooling_against_a_naive_mean():
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(3, 4, 5, 6, generator=generator)
    face_ids = torch.randint(-1, 6, (3, 5, 6), generator=generator)
    face_ids[face_ids == 4] = -1  # face 4 unseen
    positions = torch.rand(3, 3, 5, 6, generator=generator)
    pool = FaceEmbeddingPool(7, 4, with_positions=True)
    pool.add(features[:2], face_ids[:2], positions[:2])  # views arrive in batches
    pool.add(features[2:], face_ids[2:], positions[2:])
    seen, pooled, mean_positions = pool.result()
    assert seen.tolist() == sorted(set(face_ids[face_ids >= 0].tolist())) and 4 not in seen.tolist()
    for row, face in enumerate(seen.tolist()):
        where = (face_ids == face).nonzero().tolist()
        rows = [[float(features[b, d, i, j]) for d in range(4)] for b, i, j in where]
        np.testing.assert_allclose(pooled[row].numpy(), _naive_unit_mean(rows), atol=1e-6)
        points = [[float(positions[b, d, i, j]) for d in range(3)] for b, i, j in where]
        np.testing.assert_allclose(mean_positions[row].numpy(), np.mean(points, axis=0), atol=1e-6)
    assert FaceEmbeddingPool(7, 4).result()[2] is None
    with pytest.raises(ValueError, match="box coordinates"):
        pool.add(features[:1], face_ids[:1])
    with pytest.raises(ValueError, match="share B, H, W"):
        pool.add(features[:1], face_ids[:1, :4], positions[:1])
    # The same pooling over labelled pixels, keyed by group: rows of a group get its unit mean.
    rows, groups = torch.randn(12, 4, generator=generator), torch.tensor([3, 1, 3, 7, 1, 1, 9, 3, 7, 7, 2, 1])
    grouped = pool_by_group(rows, groups)
    for group in groups.unique().tolist():
        members = (groups == group).nonzero().squeeze(1).tolist()
        expected = _naive_unit_mean([[float(x) for x in rows[m]] for m in members])
        for member in members:
            np.testing.assert_allclose(grouped[member].numpy(), expected, atol=1e-6)


def test_a_face_pooling_head_refuses_single_views():
    head = NearestLabelHead(torch.randn(30, 8), torch.randint(0, 3, (30,)), 3, pool_faces=True)
    assert head.pool_faces and head.class_probabilities(torch.randn(5, 8)).shape == (5, 3)
    with pytest.raises(ValueError, match="nearest_pooling"):
        head(torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_a_mask_skips_the_search_for_unwanted_pixels_and_changes_no_wanted_one(stride):
    generator = torch.Generator().manual_seed(7)
    bank, labels = torch.randn(50, 6, generator=generator), torch.randint(0, 4, (50,), generator=generator)
    positions, bank_positions = (
        torch.rand(2, 3, 7, 8, generator=generator),
        torch.rand(50, 3, generator=generator),
    )
    features = torch.randn(2, 6, 7, 8, generator=generator)
    mask = torch.rand(2, 7, 8, generator=generator) > 0.6
    mask[1] = False  # a view with no foreground at all
    head = NearestLabelHead(bank, labels, 4, neighbours=5, temperature=0.2, stride=stride,
                            bank_positions=bank_positions, position_weight=0.5)  # fmt: skip
    full = head(features, positions).exp()
    masked = head(features, positions, mask).exp()
    wanted = mask[:, None].expand_as(full)
    torch.testing.assert_close(masked[wanted], full[wanted])
    if stride == 1:  # each pixel its own grid point: every unwanted one is uniform
        unwanted = masked[0][:, ~mask[0]]
        torch.testing.assert_close(unwanted, torch.full_like(unwanted, 0.25))
    assert torch.allclose(masked[1], torch.full_like(masked[1], 0.25))
    with pytest.raises(ValueError, match="mask must be"):
        head(features, positions, mask[:, :5])
    # Through the network: a trained head ignores the mask, a nearest head honours it.
    embedding = EmbeddingNet("resnet18", in_channels=5, embed_dim=6, head="light").eval()
    net = SegmentationNet(embedding, 4, head=NearestLabelHead(bank, labels, 4, stride=stride))
    x, big_mask = torch.randn(1, 5, 32, 32), torch.zeros(1, 32, 32, dtype=torch.bool)
    big_mask[0, 8:20, 5:17] = True
    with torch.no_grad():
        assert net.masks_queries
        torch.testing.assert_close(net(x, mask=big_mask)[:, :, big_mask[0]], net(x)[:, :, big_mask[0]])
        trained = SegmentationNet(embedding, 4)
        assert not trained.masks_queries
        torch.testing.assert_close(trained.eval()(x, mask=big_mask), trained(x))


def _naive_shape_prototypes(features, probabilities, weights, temperature):
    """One face and one class at a time, from the definition."""
    faces, classes = probabilities.shape
    unit = [f / np.linalg.norm(f) for f in features.numpy().astype(np.float64)]
    prototypes, present = [], []
    for c in range(classes):
        total = sum(float(weights[i]) * float(probabilities[i, c]) * unit[i] for i in range(faces))
        mass = sum(float(weights[i]) * float(probabilities[i, c]) for i in range(faces))
        present.append(mass > 0)
        prototypes.append(total / np.linalg.norm(total) if mass > 0 else None)
    out = np.zeros((faces, classes))
    for i in range(faces):
        logits = {c: float(unit[i] @ prototypes[c]) / temperature for c in range(classes) if present[c]}
        top = max(logits.values())
        norm = sum(np.exp(v - top) for v in logits.values())
        for c, v in logits.items():
            out[i, c] = np.exp(v - top) / norm
    return out


def test_shape_prototypes_match_a_naive_reference():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(40, 6, generator=generator) * 3.0
    probabilities = torch.softmax(torch.randn(40, 4, generator=generator) * 2.0, dim=1)
    probabilities[:, 2] = 0.0  # a class no face got: no prototype, probability 0
    probabilities /= probabilities.sum(dim=1, keepdim=True)
    weights = torch.rand(40, generator=generator) * 10.0
    got = shape_prototype_probabilities(features, probabilities, weights, temperature=0.2)
    expected = _naive_shape_prototypes(features, probabilities, weights, 0.2)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (got[:, 2] == 0).all()
    np.testing.assert_allclose(got.sum(dim=1).numpy(), 1.0, rtol=1e-6)


def test_shape_prototypes_move_a_face_to_the_class_the_rest_of_its_part_got():
    # Two parts on the test shape, each alike within itself; the bank got one face of part 0 wrong.
    generator = torch.Generator().manual_seed(0)
    part = torch.tensor([0] * 20 + [1] * 20)
    centres = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    features = centres[part] + 0.1 * torch.randn(40, 3, generator=generator)
    probabilities = torch.nn.functional.one_hot(part, 2).float() * 0.9 + 0.05
    probabilities[3] = torch.tensor([0.1, 0.9])  # wrong, and confidently so
    weights = torch.ones(40)
    prototypes = shape_prototype_probabilities(features, probabilities, weights)
    assert probabilities.argmax(dim=1)[3] == 1
    assert (prototypes.argmax(dim=1) == part).all()
    mixed = 0.5 * probabilities + 0.5 * prototypes  # segment.shape_prototypes: 0.5
    assert (mixed.argmax(dim=1) == part).all()


def test_shape_prototypes_weigh_faces_by_the_pixels_that_saw_them():
    # One face of class 0 far from the others: with a large weight it drags class 0's prototype.
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    probabilities = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    light = shape_prototype_probabilities(features, probabilities, torch.tensor([1.0, 1.0, 1.0, 0.01]))
    heavy = shape_prototype_probabilities(features, probabilities, torch.tensor([1.0, 1.0, 1.0, 100.0]))
    assert light[3].argmax() == 1 and heavy[3].argmax() == 0
    empty = shape_prototype_probabilities(features, torch.zeros(4, 2), torch.ones(4))
    assert (empty == 0).all()
    with pytest.raises(ValueError, match="weights"):
        shape_prototype_probabilities(features, probabilities, torch.ones(3))


def _naive_box_alignment(queries, positions, bank, bank_positions, weight, iterations, keep, max_scale):
    """:func:`fit_box_alignment` one query and one axis at a time, in float64."""
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    scale, shift = np.ones(3), np.zeros(3)

    def fit(x, y):
        out_scale, out_shift = np.ones(3), np.zeros(3)
        for axis in range(3):
            xs, ys = x[:, axis], y[:, axis]
            ratio = math.sqrt(sum((b - ys.mean()) ** 2 for b in ys) / sum((a - xs.mean()) ** 2 for a in xs))
            out_scale[axis] = min(max(ratio, 1 / max_scale), max_scale)
            out_shift[axis] = ys.mean() - out_scale[axis] * xs.mean()
        return out_scale, out_shift

    for _ in range(iterations):
        best, match = [], []
        for q, at in zip(unit, positions * scale + shift, strict=True):
            sims = [
                float(q @ b) - weight * float(((at - p) ** 2).sum())
                for b, p in zip(bank, bank_positions, strict=True)
            ]
            match.append(int(np.argmax(sims)))
            best.append(max(sims))
        chosen = sorted(range(len(unit)), key=lambda i: -best[i])[: max(2, int(keep * len(unit)))]
        x, y = positions[chosen], bank_positions[[match[i] for i in chosen]]
        scale, shift = fit(x, y)
        residual = ((x * scale + shift - y) ** 2).sum(axis=1)
        inliers = residual <= np.quantile(residual, 0.8)
        scale, shift = fit(x[inliers], y[inliers])
    return scale, shift


def test_box_alignment_against_a_naive_reference():
    rng = np.random.default_rng(3)
    bank, bank_positions = rng.normal(size=(60, 8)), rng.uniform(-1, 1, size=(60, 3))
    queries = bank[:40] + 0.3 * rng.normal(size=(40, 8))
    positions = rng.uniform(-1, 1, size=(40, 3))
    expected = _naive_box_alignment(queries, positions, bank, bank_positions, 1.0, 3, 0.5, 1.5)
    scale, shift = fit_box_alignment(
        *(torch.from_numpy(a) for a in (queries, positions, bank, bank_positions)),
        position_weight=1.0, iterations=3, keep=0.5, max_scale=1.5,
    )  # fmt: skip
    np.testing.assert_allclose(scale.numpy(), expected[0], atol=1e-4)
    np.testing.assert_allclose(shift.numpy(), expected[1], atol=1e-4)
    assert (scale.numpy() >= 1 / 1.5 - 1e-6).all() and (scale.numpy() <= 1.5 + 1e-6).all()


def test_box_alignment_keeps_a_shape_on_itself_and_undoes_a_known_stretch():
    rng = np.random.default_rng(0)
    bank = torch.from_numpy(rng.normal(size=(300, 16))).float()
    bank_positions = torch.from_numpy(rng.uniform(-1, 1, size=(300, 3))).float()
    scale, shift = fit_box_alignment(bank, bank_positions, bank, bank_positions)
    np.testing.assert_allclose(scale.numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(shift.numpy(), 0.0, atol=1e-5)
    # The same shape framed by a box that a protruding part stretched: its coordinates are the
    # labelled ones squeezed and shifted axis by axis; the embedding finds the map back.
    true_scale, true_shift = torch.tensor([1.25, 0.8, 1.0]), torch.tensor([0.1, -0.2, 0.05])
    squeezed = (bank_positions - true_shift) / true_scale
    scale, shift = fit_box_alignment(bank, squeezed, bank, bank_positions)
    np.testing.assert_allclose(scale.numpy(), true_scale.numpy(), atol=1e-4)
    np.testing.assert_allclose(shift.numpy(), true_shift.numpy(), atol=1e-4)
    head = NearestLabelHead(bank, torch.zeros(300, dtype=torch.long), 2, bank_positions=bank_positions,
                            position_weight=(0.0, 1.0))  # fmt: skip
    np.testing.assert_allclose(
        head.aligned_positions(bank, squeezed).numpy(), bank_positions.numpy(), atol=1e-4
    )
    with pytest.raises(ValueError, match="keep"):
        fit_box_alignment(bank, bank_positions, bank, bank_positions, keep=0.0)
    scale, shift = fit_box_alignment(bank[:1], squeezed[:1], bank, bank_positions)  # one face: no fit
    assert scale.tolist() == [1.0, 1.0, 1.0] and shift.tolist() == [0.0, 0.0, 0.0]
