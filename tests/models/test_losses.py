"""InfoNCE: agreement with the loop reference, limits, masking, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mvdecor.models.losses import dense_info_nce, gather_pixels, info_nce, reference_info_nce_loop


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


def _unit(*shape, dim=-1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=dim)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_info_nce_matches_loop(symmetric, temperature):
    a, b = _unit(9, 6, seed=1), _unit(9, 6, seed=2)
    got = info_nce(a, b, temperature, symmetric)
    want = reference_info_nce_loop(a, b, temperature=temperature, symmetric=symmetric)
    assert got.ndim == 0
    assert math.isclose(float(got), want, rel_tol=1e-5)


def test_info_nce_directions():
    a, b = _unit(7, 5, seed=3), _unit(7, 5, seed=4)
    both = info_nce(a, b, symmetric=True)
    ab, ba = info_nce(a, b, symmetric=False), info_nce(b, a, symmetric=False)
    torch.testing.assert_close(both, 0.5 * (ab + ba))
    assert not torch.isclose(ab, ba)


def test_perfect_matches_give_zero_and_random_give_log_n():
    n = 16
    eye = torch.eye(n, 32)
    assert float(info_nce(eye, eye, temperature=0.01)) < 1e-6
    rnd_a, rnd_b = _unit(n, 2048, seed=5).float(), _unit(n, 2048, seed=6).float()
    assert float(info_nce(rnd_a, rnd_b, temperature=1.0)) == pytest.approx(math.log(n), rel=0.02)
    # low temperature stays finite
    assert torch.isfinite(info_nce(rnd_a, rnd_b, temperature=1e-4))


def _dense_inputs(bsz=3, d=5, h=6, w=7, n=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    fa = _unit(bsz, d, h, w, dim=1, seed=seed + 10)
    fb = _unit(bsz, d, h, w, dim=1, seed=seed + 20)
    ia = torch.stack([torch.randperm(h * w, generator=gen)[:n] for _ in range(bsz)])
    ib = torch.stack([torch.randperm(h * w, generator=gen)[:n] for _ in range(bsz)])
    return fa, fb, ia, ib


def test_gather_pixels():
    fa, _, ia, _ = _dense_inputs()
    z = gather_pixels(fa, ia)
    assert z.shape == (3, 10, 5)
    torch.testing.assert_close(z[2, 4], fa[2, :, ia[2, 4] // 7, ia[2, 4] % 7])


@pytest.mark.parametrize("symmetric", [True, False])
def test_dense_matches_loop_with_padding(symmetric):
    fa, fb, ia, ib = _dense_inputs()
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[0, 6:] = False  # pair 0 has 6 matches, pair 2 has 3 scattered ones
    valid[2] = torch.tensor([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=torch.bool)
    ia_pad, ib_pad = ia.clone(), ib.clone()
    ia_pad[~valid] = -1  # padded indices may be anything, even out of range
    ib_pad[~valid] = 10_000
    got = dense_info_nce(fa, fb, ia_pad, ib_pad, valid, temperature=0.1, symmetric=symmetric)
    want = reference_info_nce_loop(fa, fb, ia, ib, valid, temperature=0.1, symmetric=symmetric)
    assert math.isclose(float(got), want, rel_tol=1e-6)
    # and equal to the mean of each pair computed alone on its valid matches
    alone = []
    for p in range(3):
        za = gather_pixels(fa[p : p + 1], ia[p : p + 1, valid[p]])[0]
        zb = gather_pixels(fb[p : p + 1], ib[p : p + 1, valid[p]])[0]
        alone.append(info_nce(za, zb, 0.1, symmetric))
    assert math.isclose(float(got), float(sum(alone) / 3), rel_tol=1e-6)


def test_dense_all_valid_and_none_valid():
    fa, fb, ia, ib = _dense_inputs(seed=1)
    got = dense_info_nce(fa, fb, ia, ib)
    assert math.isclose(float(got), reference_info_nce_loop(fa, fb, ia, ib, temperature=0.07), rel_tol=1e-6)
    valid = torch.zeros(3, 10, dtype=torch.bool)
    valid[1, :4] = True  # pairs without matches do not count
    got = dense_info_nce(fa, fb, ia, ib, valid)
    one = dense_info_nce(fa[1:2], fb[1:2], ia[1:2, :4], ib[1:2, :4])
    assert math.isclose(float(got), float(one), rel_tol=1e-6)
    fa.requires_grad_(True)
    zero = dense_info_nce(fa, fb, ia, ib, torch.zeros(3, 10, dtype=torch.bool))
    assert float(zero.detach()) == 0.0
    zero.backward()
    assert fa.grad is not None and float(fa.grad.abs().sum()) == 0.0


def test_dense_errors():
    fa, fb, ia, ib = _dense_inputs()
    with pytest.raises(ValueError, match="out of range"):
        dense_info_nce(fa, fb, ia + 100, ib)
    with pytest.raises(ValueError):
        dense_info_nce(fa, fb[:2], ia, ib)
    with pytest.raises(ValueError):
        dense_info_nce(fa, fb, ia, ib[:, :5])
    with pytest.raises(ValueError):
        info_nce(fa[0, :, 0, 0], fb[0, :, 0, 0])


def test_gradients_flow_and_are_finite():
    fa, fb, ia, ib = _dense_inputs(seed=2)
    fa = fa.float().requires_grad_(True)
    fb = fb.float().requires_grad_(True)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[1, 5:] = False
    loss = dense_info_nce(F.normalize(fa, dim=1), F.normalize(fb, dim=1), ia, ib, valid, temperature=0.07)
    loss.backward()
    for g in (fa.grad, fb.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # padded matches get no gradient
    w = fa.shape[-1]
    for k in ia[1, 5:].tolist():
        if k not in ia[1, :5].tolist():
            assert float(fa.grad[1, :, k // w, k % w].abs().sum()) == 0.0


def test_bf16_autocast_is_stable():
    fa, fb, ia, ib = _dense_inputs(seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dense_info_nce(fa.float(), fb.float(), ia, ib)
    assert got.dtype == torch.float32
    want = reference_info_nce_loop(fa, fb, ia, ib)
    assert math.isclose(float(got), want, rel_tol=0.05)


def test_class_balance_weights_against_a_naive_reference():
    from mvdecor.models.losses import class_balance_weights

    counts = [900, 90, 0, 10]
    for power in (0.0, 0.5, 1.0):
        total = sum(counts)
        raw = [(c / total) ** -power if c else None for c in counts]
        mean = sum(c * r for c, r in zip(counts, raw, strict=True) if r is not None) / total
        expected = [r / mean if r is not None else 1.0 for r in raw]
        got = class_balance_weights(torch.tensor(counts), power)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32))
    inverse = class_balance_weights(torch.tensor(counts), 1.0)
    # Inverse frequency: each present class carries the same total weight.
    assert torch.allclose(inverse[[0, 1, 3]] * torch.tensor([900.0, 90.0, 10.0]), torch.tensor(1000 / 3))
    assert torch.equal(class_balance_weights(torch.zeros(3), 1.0), torch.ones(3))
    with pytest.raises(ValueError, match="power"):
        class_balance_weights(torch.tensor(counts), -1.0)
