"""DenseCL's pieces: losses against naive loops, argmax matching, momentum, queues, the module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvdecor.models.densecl import (
    DenseCL,
    DenseCLHeads,
    densecl_dense_loss,
    densecl_global_loss,
    enqueue,
    match_grid_locations,
    momentum_update,
    reference_dense_loss_loop,
    reference_global_loss_loop,
    same_source_mask,
)
from mvdecor.models.embedding import EmbeddingNet


def _unit(*shape: int, dim: int = -1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=dim).float()


@pytest.mark.parametrize("queue_size", [0, 1, 7])
def test_global_loss_matches_the_naive_loop(queue_size):
    query, key, queue = _unit(3, 5, seed=1), _unit(3, 5, seed=2), _unit(queue_size, 5, seed=3)
    loss = densecl_global_loss(query, key, queue, temperature=0.2)
    assert float(loss) == pytest.approx(
        reference_global_loss_loop(query, key, queue, 0.2), rel=1e-5, abs=1e-6
    )


def test_global_loss_is_low_for_a_matching_key_and_chance_for_equal_logits():
    query = _unit(4, 8, seed=1)
    queue = _unit(16, 8, seed=2)
    assert float(densecl_global_loss(query, query, queue, 0.2)) < 0.5
    # All logits equal: the loss is log(1 + K).
    same = torch.zeros(2, 3)
    same[:, 0] = 1.0
    assert float(densecl_global_loss(same, same, same[:1].expand(5, 3), 0.2)) == pytest.approx(
        torch.log(torch.tensor(6.0)).item(), rel=1e-6
    )


def test_dense_loss_and_matching_match_the_naive_loop():
    b, c, f, cells, k = 2, 4, 5, 6, 5
    query_dense, key_dense = _unit(b, c, cells, dim=1, seed=1), _unit(b, c, cells, dim=1, seed=2)
    query_grid = torch.randn(b, f, cells, generator=torch.Generator().manual_seed(3))
    key_grid = torch.randn(b, f, cells, generator=torch.Generator().manual_seed(4))
    queue = _unit(k, c, seed=5)
    expected, expected_match = reference_dense_loss_loop(
        query_dense, key_dense, query_grid, key_grid, queue, 0.2
    )
    match = match_grid_locations(query_grid, key_grid)
    assert match.shape == (b, cells) and match.dtype == torch.int64
    assert match.tolist() == expected_match
    loss = densecl_dense_loss(query_dense, key_dense, match, queue, 0.2)
    assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_argmax_matching_recovers_a_permutation_of_cells():
    grid = torch.randn(2, 16, 9, generator=torch.Generator().manual_seed(0))
    permutation = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    # Key cell j holds query cell permutation[j], rescaled (cosine ignores the norm) and a little noisy.
    key = 3.0 * grid[:, :, permutation] + 0.01 * torch.randn(
        2, 16, 9, generator=torch.Generator().manual_seed(2)
    )
    inverse = torch.argsort(permutation)
    assert torch.equal(match_grid_locations(grid, key), inverse.expand(2, 9))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="queue"):
        densecl_global_loss(_unit(2, 4), _unit(2, 4), _unit(3, 5), 0.2)
    with pytest.raises(ValueError, match="match"):
        densecl_dense_loss(_unit(2, 4, 6, dim=1), _unit(2, 4, 6, dim=1), torch.zeros(2, 5, dtype=torch.long),
                           _unit(3, 4), 0.2)  # fmt: skip
    with pytest.raises(ValueError, match="temperature"):
        densecl_global_loss(_unit(2, 4), _unit(2, 4), _unit(3, 4), 0.0)


def test_momentum_update_moves_parameters_only():
    torch.manual_seed(0)
    target, source = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        source.weight.fill_(3.0)
        source.running_mean.fill_(5.0)
    before_weight, before_mean = target.weight.clone(), target.running_mean.clone()
    momentum_update(target, source, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * before_weight + 0.1 * source.weight)
    torch.testing.assert_close(target.running_mean, before_mean)  # buffers follow their own forward
    momentum_update(target, source, 0.0)
    torch.testing.assert_close(target.weight, source.weight)
    with pytest.raises(ValueError, match="momentum"):
        momentum_update(target, source, 1.5)


def test_enqueue_is_a_ring_buffer():
    queue, pointer = torch.zeros(5, 2), torch.zeros((), dtype=torch.long)
    keys = torch.arange(8.0).reshape(4, 2)  # rows [0, 1], [2, 3], [4, 5], [6, 7]
    enqueue(queue, pointer, keys[:3])
    assert int(pointer) == 3
    enqueue(queue, pointer, keys[3:] + 10)  # one row at index 3
    enqueue(queue, pointer, keys[:2] + 20)  # wraps: indices 4 and 0
    assert int(pointer) == 1
    assert queue[:, 0].tolist() == [22.0, 2.0, 4.0, 16.0, 20.0]


def _tiny_embedding() -> EmbeddingNet:
    torch.manual_seed(0)
    return EmbeddingNet("resnet18", in_channels=5, embed_dim=8, output_stride=16)


def test_heads_give_unit_projections_on_the_grid():
    heads = DenseCLHeads(in_channels=8, hidden_channels=16, out_channels=6, grid_size=3)
    out = heads(torch.randn(2, 8, 20, 20))
    assert out.global_.shape == (2, 6) and out.dense.shape == (2, 6, 9)
    assert out.dense_mean.shape == (2, 6) and out.grid.shape == (2, 8, 9)
    for tensor, dim in ((out.global_, 1), (out.dense, 1), (out.dense_mean, 1), (out.grid, 1)):
        torch.testing.assert_close(tensor.norm(dim=dim), torch.ones_like(tensor.norm(dim=dim)))


@pytest.mark.parametrize("attach", ["embedding", "backbone"])
def test_densecl_step_trains_the_query_network_and_fills_the_queues(attach):
    model = DenseCL(_tiny_embedding(), attach=attach, hidden_dim=16, projection_dim=8, grid_size=2,
                    queue_size=6, momentum=0.5)  # fmt: skip
    model.train()
    queue_before = model.queue.clone()
    key_before = [p.clone() for p in model.key.parameters()]
    x_query, x_key = torch.randn(2, 5, 32, 32), torch.randn(2, 5, 32, 32)
    result = model(x_query, x_key)
    assert torch.isfinite(result.loss)
    torch.testing.assert_close(result.loss, 0.5 * result.global_loss + 0.5 * result.dense_loss)
    result.loss.backward()
    # The embedding network the checkpoint saves is what is trained: all of it, or the ResNet.
    for name, param in model.query.named_parameters():
        if attach == "embedding" or name.startswith("encoder.backbone."):
            assert param.grad is not None, name
        else:
            assert param.grad is None, name
    assert all(p.grad is None for p in [*model.key.parameters(), *model.key_heads.parameters()])
    assert all(p.grad is not None for p in model.query_heads.parameters())
    # Queues: two new keys at the front; the key network moved half way to the query network.
    assert int(model.queue_pointer) == 2
    assert not torch.equal(model.queue[:2], queue_before[:2]) and torch.equal(
        model.queue[2:], queue_before[2:]
    )
    for before, key, query in zip(key_before, model.key.parameters(), model.query.parameters(), strict=True):
        torch.testing.assert_close(key, 0.5 * before + 0.5 * query)


def test_training_state_round_trips_without_the_query_network():
    model = DenseCL(_tiny_embedding(), hidden_dim=16, projection_dim=8, grid_size=2, queue_size=4)
    state = model.training_state()
    assert state and not any(k.startswith("query.") for k in state)
    assert {"queue", "dense_queue", "queue_pointer"} <= set(state)
    other = DenseCL(_tiny_embedding(), hidden_dim=16, projection_dim=8, grid_size=2, queue_size=4)
    other.load_training_state(state)
    torch.testing.assert_close(other.queue, model.queue)
    with pytest.raises(RuntimeError, match="does not fit"):
        other.load_training_state({**state, "surplus": torch.zeros(1)})


def test_same_source_mask_never_matches_empty_slots():
    mask = same_source_mask(torch.tensor([3, 7]), torch.tensor([7, -1, 3, 3, 9]))
    assert mask.tolist() == [[False, False, True, True, False], [True, False, False, False, False]]
    assert not same_source_mask(torch.tensor([-1]), torch.tensor([-1, -1])).any()


def test_excluded_negatives_match_the_loops_and_removing_those_rows():
    b, c, f, cells, k = 3, 4, 5, 6, 7
    query, key, queue = _unit(b, c, seed=1), _unit(b, c, seed=2), _unit(k, c, seed=3)
    exclude = same_source_mask(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 0, -1, 5, 2, 1]))
    loss = densecl_global_loss(query, key, queue, 0.2, exclude)
    assert float(loss) == pytest.approx(reference_global_loss_loop(query, key, queue, 0.2, exclude), rel=1e-5)
    # Query 0 without its two same-source keys is query 0 against the other five.
    kept = ~exclude[0]
    alone = densecl_global_loss(query[:1], key[:1], queue[kept], 0.2)
    per_query = densecl_global_loss(query[:1], key[:1], queue, 0.2, exclude[:1])
    torch.testing.assert_close(per_query, alone)
    assert float(densecl_global_loss(query, key, queue, 0.2)) != pytest.approx(float(loss))

    query_dense, key_dense = _unit(b, c, cells, dim=1, seed=4), _unit(b, c, cells, dim=1, seed=5)
    query_grid = torch.randn(b, f, cells, generator=torch.Generator().manual_seed(6))
    key_grid = torch.randn(b, f, cells, generator=torch.Generator().manual_seed(7))
    expected, _ = reference_dense_loss_loop(query_dense, key_dense, query_grid, key_grid, queue, 0.2, exclude)
    match = match_grid_locations(query_grid, key_grid)
    dense = densecl_dense_loss(query_dense, key_dense, match, queue, 0.2, exclude)
    assert float(dense) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="exclude mask"):
        densecl_global_loss(query, key, queue, 0.2, exclude[:, :3])


def test_step_records_sources_and_leaves_the_querys_own_keys_out():
    torch.manual_seed(0)
    model = DenseCL(_tiny_embedding(), hidden_dim=16, projection_dim=8, grid_size=2, queue_size=5,
                    momentum=0.5, exclude_same_source=True)  # fmt: skip
    model.eval()  # no BatchNorm batch statistics: the same input gives the same projections
    x = torch.randn(2, 5, 32, 32)
    with pytest.raises(ValueError, match="needs the sources"):
        model(x, x)
    model(x, x, torch.tensor([11, 12]))
    assert model.queue_sources.tolist() == [11, 12, -1, -1, -1] and int(model.queue_pointer) == 2
    # The next step's loss leaves slot 0 (source 11) out for the query of source 11 only.
    queue, dense_queue = model.queue.clone(), model.dense_queue.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = model(x, x, torch.tensor([11, 13]))
    assert model.queue_sources.tolist() == [11, 12, 11, 13, -1]
    model.load_state_dict(state)
    model.update_key_network()
    query, key = model.project_query(x), model.project_key(x)
    exclude = torch.tensor([[True, False, False, False, False], [False] * 5])
    expected = model.losses(query, key, queue, dense_queue, exclude)
    torch.testing.assert_close(result.loss, expected.loss)
    assert model.queue_sources.tolist()[:2] == [
        11,
        12,
    ]  # restored state; the step above wrote [11, 12, 11, 13]
