"""Overlap matrices, the pair sampler and the overlap cache."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.correspond import (
    PairSampler,
    auto_radius,
    load_or_compute_overlaps,
    load_overlaps,
    match_views,
    overlap_matrix,
    overlap_ratio,
    save_overlaps,
)
from mvdecor.correspond import pairs as pairs_module
from mvdecor.data.synthetic import make_shape
from mvdecor.render import CameraScheme, Renderer
from mvdecor.render.views import RenderedView


@pytest.fixture(scope="module")
def views() -> list[RenderedView]:
    # 2 + 3 x 6 = 20 views of a chair at 96 px.
    cams = CameraScheme(rings=3, segments=6, resolution=96).cameras(seed=1)
    return Renderer(make_shape("chair", 3)).render(cams)


@pytest.fixture(scope="module")
def radius(views) -> float:
    return auto_radius(views[0], views[1])


@pytest.fixture(scope="module")
def exact(views, radius) -> np.ndarray:
    return overlap_matrix(views, radius)


def test_exact_matrix_is_the_pairwise_overlap(views, radius, exact):
    n = len(views)
    assert exact.shape == (n, n) and exact.dtype == np.float32
    np.testing.assert_array_equal(exact, exact.T)
    assert (np.diag(exact) == 0).all()
    assert exact.min() >= 0 and exact.max() <= 1
    for i, j in [(0, 1), (0, 5), (3, 4), (4, 10), (7, 19), (2, 15)]:
        ratio = overlap_ratio(match_views(views[i], views[j], radius), views[i], views[j])
        assert exact[i, j] == pytest.approx(ratio, abs=1e-6)
    # Pairs from both sides of the chair share little; neighbours share a lot.
    assert exact.max() > 0.5 and (exact[np.triu_indices(n, 1)] < 0.05).any()


def test_matching_direction_barely_changes_the_overlap(views, radius, exact):
    # The matrix matches i -> j for i < j; the other direction resolves collisions on the other side.
    for i, j in [(0, 1), (3, 4), (4, 10), (7, 8)]:
        other = overlap_ratio(match_views(views[j], views[i], radius), views[j], views[i])
        assert other == pytest.approx(exact[i, j], abs=0.05)


@pytest.mark.parametrize(("stride", "bound"), [(2, 0.02), (3, 0.03)])
def test_subsampled_matrix_error(views, radius, exact, stride, bound):
    estimate = overlap_matrix(views, radius, subsample=stride)
    np.testing.assert_array_equal(estimate, estimate.T)
    assert (np.diag(estimate) == 0).all()
    upper = np.triu_indices(len(views), 1)
    err = np.abs(estimate - exact)[upper]
    # Measured here (chair, 96 px, 1.5-pixel radius): mean abs error 0.007 (stride 2) / 0.013
    # (stride 3), max 0.04 / 0.10. At 256 px with 86 views: 0.003 / 0.005 mean (see overlap_matrix).
    assert err.mean() < bound, f"mean abs error {err.mean():.4f}"
    assert err.max() < 5 * bound, f"max abs error {err.max():.4f}"


def test_subsample_must_be_positive(views):
    with pytest.raises(ValueError, match="subsample"):
        overlap_matrix(views[:2], 0.01, subsample=0)


# --------------------------------------------------------------- PairSampler
def test_pair_sampler_draws_only_and_all_valid_pairs(exact):
    sampler = PairSampler(exact, threshold=0.15)
    valid = {(i, j) for i in range(len(exact)) for j in range(len(exact)) if i != j and exact[i, j] > 0.15}
    assert len(sampler) == len(valid) > 0
    assert {tuple(p) for p in sampler.valid_pairs.tolist()} == valid
    rng = np.random.default_rng(0)
    drawn = [sampler.sample(rng) for _ in range(30 * len(valid))]
    assert all(isinstance(i, int) and isinstance(j, int) for i, j in drawn)
    assert set(drawn) == valid  # only valid pairs, and every one of them
    many = sampler.sample_many(500, rng)
    assert many.shape == (500, 2)
    assert {tuple(p) for p in many.tolist()} <= valid


def test_pair_sampler_ignores_the_diagonal_and_uses_ordered_pairs():
    overlap = np.array([[1.0, 0.2, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sampler = PairSampler(overlap, threshold=0.15)
    np.testing.assert_array_equal(sampler.valid_pairs, [[0, 1]])
    assert sampler.sample(np.random.default_rng(1)) == (0, 1)


def test_pair_sampler_raises_when_no_pair_is_valid():
    overlap = np.full((4, 4), 0.1, np.float32)
    with pytest.raises(ValueError, match=r"threshold 0\.15.*largest is 0\.1000"):
        PairSampler(overlap, threshold=0.15)
    with pytest.raises(ValueError, match="square"):
        PairSampler(np.zeros((2, 3)))


def test_pair_sampler_from_views(views, radius, exact):
    sampler = PairSampler.from_views(views, radius=radius, threshold=0.3, subsample=1)
    np.testing.assert_array_equal(sampler.overlap, exact)
    assert (exact[tuple(sampler.valid_pairs.T)] > 0.3).all()


# --------------------------------------------------------------------- cache
def test_save_and_load_round_trip(tmp_path, exact):
    path = tmp_path / "sub" / "overlaps.npz"
    save_overlaps(path, exact, {"radius": 0.01, "shape": "chair_3"})
    matrix, meta = load_overlaps(path)
    np.testing.assert_array_equal(matrix, exact)
    assert meta == {"radius": 0.01, "shape": "chair_3"}
    assert [p.name for p in path.parent.iterdir()] == ["overlaps.npz"]  # no temporary left behind


def test_load_or_compute_uses_the_cache_when_it_matches(tmp_path, views, monkeypatch):
    subset = views[:4]
    path = tmp_path / "overlaps.npz"
    first = load_or_compute_overlaps(path, subset, radius=0.02, meta={"shape": "chair_3"})
    assert path.is_file()

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the cache matches")

    monkeypatch.setattr(pairs_module, "overlap_matrix", fail)
    np.testing.assert_array_equal(
        load_or_compute_overlaps(path, subset, radius=0.02, meta={"shape": "chair_3"}), first
    )
    # Different settings: recomputed and rewritten.
    monkeypatch.undo()
    other = load_or_compute_overlaps(path, subset, radius=0.02, subsample=2, meta={"shape": "chair_3"})
    assert load_overlaps(path)[1]["subsample"] == 2
    assert other.shape == first.shape


def test_lazy_views_are_rendered_only_on_a_cache_miss(tmp_path):
    from mvdecor.correspond import load_or_compute_overlaps
    from mvdecor.data.synthetic import make_shape
    from mvdecor.render import CameraScheme, Renderer

    cams = CameraScheme(rings=1, segments=4, resolution=32).cameras(seed=0)
    renderer = Renderer(make_shape("mug", 0))
    calls = {"n": 0}

    def render():
        calls["n"] += 1
        return renderer.render(cams)

    path = tmp_path / "o.npz"
    kwargs = {"subsample": 1, "meta": {"shape": "mug"}, "num_views": len(cams), "image_size": (32, 32)}
    first = load_or_compute_overlaps(path, render, 0.03, **kwargs)
    again = load_or_compute_overlaps(path, render, 0.03, **kwargs)
    assert calls["n"] == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, load_or_compute_overlaps(tmp_path / "eager.npz", render(), 0.03,
                                                                  subsample=1, meta={"shape": "mug"}))  # fmt: skip
    load_or_compute_overlaps(path, render, 0.05, **kwargs)  # another radius: recomputed
    assert calls["n"] == 3
    with pytest.raises(ValueError, match="num_views and image_size"):
        load_or_compute_overlaps(path, render, 0.03)
