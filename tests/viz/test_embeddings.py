"""Fig. 3 colour transfer and PCA colours of embeddings, on tiny hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.viz.embeddings import MISS_RGB, color_transfer, match_pixels, pca_rgb, ramp_colors, smooth_colors

H, W, D = 12, 10, 16


def unit_embedding(rng: np.random.Generator, height: int = H, width: int = W, dim: int = D) -> np.ndarray:
    """Random unit vectors ``(D, H, W)``: no two pixels share one (with probability 1)."""
    emb = rng.normal(size=(dim, height, width)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=0, keepdims=True)


def blob_mask(height: int = H, width: int = W) -> np.ndarray:
    """An irregular foreground: a disc with a notch, so indices are not trivially contiguous."""
    yy, xx = np.mgrid[:height, :width]
    mask = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 2.2) ** 2
    mask[: height // 2, width // 2] = False
    return mask


def test_transfer_of_a_view_with_itself_is_the_identity():
    rng = np.random.default_rng(0)
    emb, mask = unit_embedding(rng), blob_mask()
    colors = ramp_colors(mask)
    result = color_transfer(emb, mask, emb, mask, colors, threshold=0.99)
    flat = np.arange(H * W).reshape(H, W)
    np.testing.assert_array_equal(result.source_index[mask], flat[mask])  # every pixel maps to itself
    assert (result.source_index[~mask] == -1).all() and np.isnan(result.best_similarity[~mask]).all()
    np.testing.assert_allclose(result.best_similarity[mask], 1.0, atol=1e-5)
    expected = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(result.image[mask], expected[mask])  # the source colours exactly
    assert (result.image[~mask] == 255).all()
    assert not result.below_threshold.any() and result.miss_share == 0.0
    assert not (result.image[mask] == MISS_RGB).all(axis=1).any()  # nothing red


def test_threshold_above_one_marks_every_foreground_pixel_red():
    rng = np.random.default_rng(1)
    emb, mask = unit_embedding(rng), blob_mask()
    result = color_transfer(emb, mask, emb, mask, ramp_colors(mask), threshold=1.01)
    np.testing.assert_array_equal(result.below_threshold, mask)
    assert (result.image[mask] == MISS_RGB).all() and (result.image[~mask] == 255).all()
    assert result.miss_share == 1.0


@pytest.mark.parametrize("chunk_elements", [1 << 22, 7])
def test_a_known_permutation_between_two_views_is_recovered(chunk_elements):
    rng = np.random.default_rng(2)
    source, source_mask = unit_embedding(rng), blob_mask()
    # The target shows the same pixels at permuted places (a different "camera").
    perm = rng.permutation(H * W)  # source pixel k appears at target pixel perm[k]
    target = np.empty_like(source).reshape(D, -1)
    target[:, perm] = source.reshape(D, -1)
    target_mask = np.zeros(H * W, bool)
    target_mask[perm] = source_mask.ravel()
    result = match_pixels(
        source, source_mask, target.reshape(D, H, W), target_mask.reshape(H, W), chunk_elements=chunk_elements
    )
    fg = np.flatnonzero(source_mask)
    np.testing.assert_array_equal(result.source_index.ravel()[perm[fg]], fg)
    assert result.image is None and not result.below_threshold.any()


def test_matching_is_cosine_and_rejects_misfits():
    rng = np.random.default_rng(3)
    emb, mask = unit_embedding(rng), blob_mask()
    scaled = emb * rng.uniform(0.5, 3.0, size=(1, H, W)).astype(np.float32)  # lengths do not matter
    result = match_pixels(scaled, mask, emb, mask)
    np.testing.assert_array_equal(result.source_index[mask], np.arange(H * W).reshape(H, W)[mask])
    with pytest.raises(ValueError, match="not"):
        match_pixels(emb, mask[:-1], emb, mask)
    with pytest.raises(ValueError, match="no foreground"):
        match_pixels(emb, np.zeros_like(mask), emb, mask)


def test_pca_colours_shape_range_determinism_and_joint_fit():
    rng = np.random.default_rng(4)
    a, b = unit_embedding(rng), unit_embedding(rng, 8, 6)
    mask_a, mask_b = blob_mask(), np.ones((8, 6), bool)
    first = pca_rgb([a, b], [mask_a, mask_b])
    assert [x.shape for x in first] == [(H, W, 3), (8, 6, 3)]
    for image, mask in zip(first, [mask_a, mask_b], strict=True):
        assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
        assert (image[~mask] == 1.0).all()
        assert image[mask].std(axis=0).min() > 0.05  # three components that vary
    again = pca_rgb([a, b], [mask_a, mask_b])
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    # Jointly fitted: a view that is a pixel permutation of another gets the same colours, permuted.
    perm = rng.permutation(H * W)
    shuffled = a.reshape(D, -1)[:, perm].reshape(D, H, W)
    mask_shuffled = mask_a.ravel()[perm].reshape(H, W)
    joint = pca_rgb([a, shuffled], [mask_a, mask_shuffled])
    np.testing.assert_allclose(
        joint[1].reshape(-1, 3)[mask_shuffled.ravel()], joint[0].reshape(-1, 3)[perm][mask_shuffled.ravel()]
    )
    # ...and the fit depends on every view: colours of `a` change when `b` joins.
    assert not np.allclose(pca_rgb([a], [mask_a])[0], first[0])


def test_pca_of_fewer_than_three_dimensions_fills_grey():
    emb = np.stack([np.linspace(0, 1, H * W).reshape(H, W), np.ones((H, W))]).astype(np.float32)
    (image,) = pca_rgb([emb], [np.ones((H, W), bool)], percentile=0.0)
    assert image[..., 0].min() == 0.0 and image[..., 0].max() == 1.0
    np.testing.assert_array_equal(image[..., 1:], 0.5)


def test_smooth_colours_never_look_like_the_miss_red():
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, 9)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    colors = smooth_colors(grid)
    assert colors.min() >= 0.0 and colors.max() <= 1.0
    assert (colors[:, 1] + colors[:, 2] > 0.8).all()
