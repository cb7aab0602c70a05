"""PointInfoNCE against a naive per-row loop, with padding, batches and the symmetric form."""

from __future__ import annotations

import math

import pytest
import torch

from mvdecor.points.losses import point_info_nce


def naive_point_info_nce(
    f1: torch.Tensor, f2: torch.Tensor, tau: float, valid: list[bool] | None = None
) -> float:
    """PointContrast's loss written out: for each matched point, -log of its match's softmax share."""
    rows = range(len(f1)) if valid is None else [i for i, ok in enumerate(valid) if ok]
    losses = []
    for i in rows:
        a = f1[i] / f1[i].norm()
        positive = math.exp(float(a @ (f2[i] / f2[i].norm())) / tau)
        everyone = sum(math.exp(float(a @ (f2[k] / f2[k].norm())) / tau) for k in rows)
        losses.append(-math.log(positive / everyone))
    return sum(losses) / len(losses)


def test_matches_the_naive_loop():
    torch.manual_seed(0)
    f1, f2 = torch.randn(12, 8), torch.randn(12, 8)
    for tau in (0.07, 0.4, 1.0):
        assert float(point_info_nce(f1, f2, tau)) == pytest.approx(
            naive_point_info_nce(f1, f2, tau), rel=1e-5
        )


def test_padded_rows_are_neither_anchors_nor_negatives_and_pairs_are_separate():
    torch.manual_seed(1)
    f1, f2 = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 7:] = False
    loss = float(point_info_nce(f1, f2, 0.4, valid=valid))
    first = naive_point_info_nce(f1[0], f2[0], 0.4)
    second = naive_point_info_nce(f1[1], f2[1], 0.4, valid[1].tolist())
    # The mean over the 10 + 7 valid anchors; the other pair's points are no negatives.
    assert loss == pytest.approx((10 * first + 7 * second) / 17, rel=1e-5)


def test_symmetric_averages_both_directions_and_perfect_features_give_a_low_loss():
    torch.manual_seed(2)
    f1, f2 = torch.randn(9, 5), torch.randn(9, 5)
    both = float(point_info_nce(f1, f2, 0.5, symmetric=True))
    assert both == pytest.approx(
        0.5 * (naive_point_info_nce(f1, f2, 0.5) + naive_point_info_nce(f2, f1, 0.5)), rel=1e-5
    )
    identity = torch.eye(9)
    assert float(point_info_nce(identity, identity, 0.05)) < 1e-6
    assert float(point_info_nce(identity, identity.roll(1, 0), 0.05)) > math.log(9)  # every match wrong


def test_gradients_flow_and_bad_input_is_refused():
    f1 = torch.randn(6, 4, requires_grad=True)
    point_info_nce(f1, torch.randn(6, 4)).backward()
    assert f1.grad is not None and torch.isfinite(f1.grad).all()
    with pytest.raises(ValueError, match="one shape"):
        point_info_nce(torch.randn(6, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least one valid"):
        point_info_nce(torch.randn(6, 4), torch.randn(6, 4), valid=torch.zeros(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        point_info_nce(torch.randn(6, 4), torch.randn(6, 4), 0.0)
