"""Voting per-view class probabilities onto mesh faces."""

from __future__ import annotations

import numpy as np
import pytest

from mvdecor.inference import FaceVoter, FusionResult, fuse_views, normalized_entropy, view_weight

# Four classes make the normalised entropies easy to read: a one-hot pixel has
# 0, an even split between two classes log 2 / log 4 = 0.5, the uniform one 1.
E0, E1, E2, E3 = np.eye(4)
UNIFORM = np.full(4, 0.25)
SPLIT23 = np.array([0.0, 0.0, 0.5, 0.5])


def probability_map(face_ids: np.ndarray, pixel_probs: dict[tuple[int, int], np.ndarray], c: int = 4):
    """(C, H, W) map: the given distribution at the listed pixels, uniform elsewhere."""
    probs = np.full((c, *face_ids.shape), 1.0 / c)
    for (row, col), p in pixel_probs.items():
        probs[:, row, col] = p
    return probs


def hand_views():
    """The two views of the worked example (3 faces, 4 classes, gamma = 2)."""
    # View A: face 0 seen by two one-hot pixels (h = 0, 0), face 1 by two uniform
    # pixels (h = 1, 1): mean h = 1/2, W_A = (1 - 1/2)^2 = 1/4.
    ids_a = np.array([[0, 0], [1, 1]], np.int32)
    probs_a = probability_map(ids_a, {(0, 0): E0, (0, 1): E0, (1, 0): UNIFORM, (1, 1): UNIFORM})
    # View B: face 1 seen by a one-hot class-1 pixel (h = 0), face 2 by an even
    # 2/3 split (h = 1/2) and a one-hot class-2 pixel (h = 0); one background
    # pixel: mean h = 1/6, W_B = (5/6)^2 = 25/36.
    ids_b = np.array([[1, 2], [2, -1]], np.int32)
    probs_b = probability_map(ids_b, {(0, 0): E1, (0, 1): SPLIT23, (1, 0): E2})
    return [ids_a, ids_b], [probs_a, probs_b]


def test_normalized_entropy_values_and_layouts():
    dists = np.stack([E0, SPLIT23, UNIFORM])  # (N, C)
    np.testing.assert_allclose(normalized_entropy(dists), [0.0, 0.5, 1.0], atol=1e-12)
    image = dists.T.reshape(4, 1, 3)  # (C, H, W)
    np.testing.assert_allclose(normalized_entropy(image), [[0.0, 0.5, 1.0]], atol=1e-12)
    np.testing.assert_allclose(normalized_entropy(dists.T, axis=0), [0.0, 0.5, 1.0], atol=1e-12)
    assert normalized_entropy(image.astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(normalized_entropy(np.ones((5, 1))), np.zeros(5))  # one class


def test_hand_computed_weights_and_labels():
    face_ids, probs = hand_views()
    result = fuse_views(3, face_ids, probs, gamma=2.0)
    assert isinstance(result, FusionResult) and result.method == "entropy"
    np.testing.assert_allclose(result.view_weights, [1 / 4, 25 / 36], rtol=1e-6)
    for ids, p, w in zip(face_ids, probs, [1 / 4, 25 / 36], strict=True):
        assert view_weight(p, ids >= 0, gamma=2.0) == pytest.approx(w)
    # face 0: W_A * (e0 + e0) = (1/2, 0, 0, 0)                  -> class 0, confidence 1
    # face 1: W_A * 2 * uniform + W_B * e1 = (1/8, 1/8 + 25/36, 1/8, 1/8)
    #         total 1/2 + 25/36 = 43/36                          -> class 1, confidence 59/86
    # face 2: W_B * (split23 + e2) = 25/36 * (0, 0, 3/2, 1/2)     -> class 2, confidence 3/4
    np.testing.assert_array_equal(result.face_labels, [0, 1, 2])
    np.testing.assert_allclose(result.face_confidence, [1.0, 59 / 86, 3 / 4], rtol=1e-6)
    np.testing.assert_allclose(result.face_scores[1], np.array([9, 59, 9, 9]) / 72 / (43 / 36), rtol=1e-6)
    np.testing.assert_allclose(result.face_scores.sum(axis=1), 1.0, rtol=1e-6)
    assert result.seen.all() and not result.filled.any()
    assert result.face_scores.dtype == np.float32 and result.face_labels.dtype == np.int64


def test_weight_falls_monotonically_from_one_to_zero():
    mask = np.ones((2, 3), bool)
    weights, entropies = [], []
    for t in np.linspace(0.0, 1.0, 21):  # one-hot -> uniform
        p = (1 - t) * E0 + t * UNIFORM
        probs = np.broadcast_to(p[:, None, None], (4, 2, 3))
        entropies.append(float(normalized_entropy(probs).mean()))
        weights.append(view_weight(probs, mask, gamma=20.0))
    assert weights[0] == pytest.approx(1.0) and weights[-1] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(entropies) > 0)
    assert np.all(np.diff(weights[:12]) < 0)  # strictly falling while not underflowed
    assert np.all(np.diff(weights) <= 0)
    assert entropies[0] == pytest.approx(0.0, abs=1e-9) and entropies[-1] == pytest.approx(1.0)


def confident_vs_uncertain():
    """One face; two uncertain views favour class 0, one confident view says class 1."""
    ids = np.zeros((1, 1), np.int32)
    uncertain = np.array([0.8, 0.2]).reshape(2, 1, 1)  # normalised entropy 0.72
    confident = np.array([0.0, 1.0]).reshape(2, 1, 1)  # entropy 0
    return [ids, ids, ids], [uncertain, uncertain, confident]


@pytest.mark.parametrize(("method", "label"), [("entropy", 1), ("average", 0), ("majority", 0)])
def test_confident_view_outvotes_uncertain_views_only_with_entropy_weights(method, label):
    # entropy: class 0 gets 2 * 0.8 * 0.278^20 ~ 1e-11, class 1 gets 1 * 1.
    # average: class 0 gets 0.8 + 0.8 = 1.6 > class 1's 0.2 + 0.2 + 1 = 1.4.
    # majority: two pixels vote class 0, one class 1.
    face_ids, probs = confident_vs_uncertain()
    result = fuse_views(1, face_ids, probs, method=method)
    assert result.face_labels.tolist() == [label]
    expected_weights = [0.278**20, 0.278**20, 1.0] if method == "entropy" else [1.0, 1.0, 1.0]
    np.testing.assert_allclose(result.view_weights, expected_weights, rtol=0.02)


@pytest.mark.parametrize("method", ["entropy", "average", "majority"])
def test_excluded_classes_are_never_predicted(method):
    ids = np.array([[0, 1, -1]], np.int32)
    probs = np.zeros((3, 1, 3))
    probs[:, 0, 0] = [0.90, 0.06, 0.04]  # class 0 dominant, then 1
    probs[:, 0, 1] = [0.70, 0.05, 0.25]  # class 0 dominant, then 2
    probs[:, 0, 2] = [1.0, 0.0, 0.0]  # background: ignored
    result = fuse_views(2, [ids], [probs], method=method, exclude_classes=[0])
    assert result.face_labels.tolist() == [1, 2]
    assert (result.face_scores[:, 0] == 0).all()
    np.testing.assert_allclose(result.face_scores.sum(axis=1), 1.0, rtol=1e-6)
    plain = fuse_views(2, [ids], [probs], method=method)
    assert plain.face_labels.tolist() == [0, 0]


def test_unseen_faces_take_the_nearest_seen_label():
    # Faces 0 and 1 are seen (labels 0 and 1); 2 lies next to 0, 3 next to 1.
    centroids = np.array([[0.0, 0, 0], [100.0, 0, 0], [1.0, 0, 0], [99.0, 0, 0]])
    ids = np.array([[0, 1]], np.int32)
    probs = np.eye(2).reshape(2, 1, 2)  # pixel 0 one-hot class 0, pixel 1 one-hot class 1
    voter = FaceVoter(4, 2)
    voter.add_view(ids, probs)
    unfilled = voter.result()
    assert unfilled.face_labels.tolist() == [0, 1, -1, -1]
    result = voter.result(face_centroids=centroids)
    assert result.face_labels.tolist() == [0, 1, 0, 1]
    assert (result.face_labels >= 0).all()
    assert result.seen.tolist() == [True, True, False, False]
    assert result.filled.tolist() == [False, False, True, True]
    np.testing.assert_allclose(result.face_confidence, [1.0, 1.0, 0.0, 0.0])
    assert (result.face_scores[2:] == 0).all()


def test_view_without_foreground_has_weight_zero():
    background = np.full((2, 2), -1, np.int32)
    probs = np.full((3, 2, 2), 1 / 3)
    assert view_weight(probs, background >= 0) == 0.0
    voter = FaceVoter(2, 3)
    assert voter.add_view(background, probs) == 0.0
    ids = np.array([[0, 1], [-1, -1]], np.int32)
    voter.add_view(ids, probability_map(ids, {(0, 0): np.eye(3)[0], (0, 1): np.eye(3)[1]}, c=3))
    result = voter.result()
    assert result.view_weights.tolist() == [0.0, 1.0]
    assert result.face_labels.tolist() == [0, 1]


def test_nothing_seen_raises():
    voter = FaceVoter(3, 2)
    voter.add_view(np.full((2, 2), -1, np.int32), np.full((2, 2, 2), 0.5))
    with pytest.raises(ValueError, match="no face received a vote"):
        voter.result()
    # Every view uniform: (1 - 1)^20 = 0, but the floor weight still lets it vote.
    voter.add_view(np.zeros((2, 2), np.int32), np.full((2, 2, 2), 0.5))
    assert voter.result().seen[0]


def test_tiny_weights_still_vote():
    # View A is certain (W = 1); view B nearly uniform (W ~ 1e-71, below float32's
    # range) and is the only view to see face 1: face 1 must still get its vote.
    ids_a, ids_b = np.array([[0]], np.int32), np.array([[1]], np.int32)
    probs_a = np.array([1.0, 0.0]).reshape(2, 1, 1).astype(np.float32)
    probs_b = np.array([0.49, 0.51]).reshape(2, 1, 1).astype(np.float32)
    result = fuse_views(2, [ids_a, ids_b], [probs_a, probs_b])
    assert 0 < view_weight(probs_b, ids_b >= 0) < 1e-60
    assert result.seen.all()
    assert result.face_labels.tolist() == [0, 1]
    assert result.face_confidence[1] == pytest.approx(0.51, rel=1e-5)


def reference_votes(num_faces, face_ids, probs, method, gamma=20.0):
    """A slow, obvious implementation: loop over pixels."""
    votes = np.zeros((num_faces, probs[0].shape[0]))
    for ids, p in zip(face_ids, probs, strict=True):
        mask = ids >= 0
        weight = view_weight(p, mask, gamma) if method == "entropy" else 1.0
        for row, col in zip(*np.nonzero(mask), strict=True):
            pixel = p[:, row, col]
            vote = np.eye(len(pixel))[pixel.argmax()] if method == "majority" else pixel
            votes[ids[row, col]] += weight * vote
    return votes


def random_views(rng, num_views=5, num_faces=30, num_classes=4, size=(6, 7)):
    face_ids, probs = [], []
    for _ in range(num_views):
        ids = rng.integers(-1, num_faces, size=size).astype(np.int32)
        logits = rng.normal(size=(num_classes, *size)) * 2
        p = np.exp(logits)
        face_ids.append(ids)
        probs.append((p / p.sum(axis=0)).astype(np.float32))
    return face_ids, probs


@pytest.mark.parametrize("method", ["entropy", "average", "majority"])
def test_streaming_equals_one_shot_and_reference(method):
    rng = np.random.default_rng(0)
    face_ids, probs = random_views(rng)
    one_shot = fuse_views(30, face_ids, probs, method=method, gamma=2.0)
    # Fold after every view, and ask for results half way through.
    voter = FaceVoter(30, 4, method=method, gamma=2.0, buffer_elements=0)
    for i, (ids, p) in enumerate(zip(face_ids, probs, strict=True)):
        voter.add_view(ids, p)
        if i == 2:
            voter.result()
    streamed = voter.result()
    np.testing.assert_array_equal(streamed.face_labels, one_shot.face_labels)
    np.testing.assert_allclose(streamed.face_scores, one_shot.face_scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(streamed.view_weights, one_shot.view_weights)

    votes = reference_votes(30, face_ids, probs, method, gamma=2.0)
    seen = votes.sum(axis=1) > 0
    np.testing.assert_array_equal(one_shot.seen, seen)
    np.testing.assert_allclose(
        one_shot.face_scores[seen], votes[seen] / votes[seen].sum(axis=1, keepdims=True), rtol=1e-5
    )
    np.testing.assert_array_equal(one_shot.face_labels[seen], votes[seen].argmax(axis=1))


def test_float64_and_float32_inputs_agree():
    rng = np.random.default_rng(1)
    face_ids, probs = random_views(rng)
    a = fuse_views(30, face_ids, probs)
    b = fuse_views(30, face_ids, [p.astype(np.float64) for p in probs])
    np.testing.assert_array_equal(a.face_labels, b.face_labels)
    np.testing.assert_allclose(a.face_scores, b.face_scores, rtol=1e-5, atol=1e-7)


def test_result_arrays_are_read_only():
    face_ids, probs = hand_views()
    result = fuse_views(3, face_ids, probs)
    with pytest.raises(ValueError):
        result.face_labels[0] = 5


def test_bad_inputs_raise():
    ids = np.zeros((2, 2), np.int32)
    probs = np.full((2, 2, 2), 0.5)
    with pytest.raises(ValueError, match="unknown voting method"):
        FaceVoter(3, 2, method="vote")
    with pytest.raises(ValueError, match="every class"):
        FaceVoter(3, 2, exclude_classes=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        FaceVoter(3, 2, exclude_classes=[2])
    voter = FaceVoter(3, 2)
    with pytest.raises(ValueError, match="mesh has 3 faces"):
        voter.add_view(np.full((2, 2), 3, np.int32), probs)
    with pytest.raises(ValueError, match="expected"):
        voter.add_view(ids, np.full((3, 2, 2), 1 / 3))
    with pytest.raises(ValueError, match="NaN"):
        voter.add_view(ids, np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="integer"):
        voter.add_view(ids.astype(float), probs)
    with pytest.raises(ValueError, match="different lengths"):
        fuse_views(3, [ids, ids], [probs])
    with pytest.raises(ValueError, match="no views"):
        fuse_views(3, [], [])
    voter.add_view(ids, np.stack([np.ones((2, 2)), np.zeros((2, 2))]))
    with pytest.raises(ValueError, match="face_centroids"):
        voter.result(face_centroids=np.zeros((2, 3)))


def test_uniform_predictions_still_label_every_face():
    # An untrained network: every view maximally uncertain, W = 0 by the formula.
    from mvdecor.inference.fusion import FaceVoter

    face_ids = np.array([[0, 1], [2, -1]], np.int32)
    probs = np.full((3, 2, 2), 1 / 3, np.float32)
    probs[1, 0, 0] += 1e-4  # a hair of preference for class 1 on face 0
    voter = FaceVoter(3, 3, method="entropy")
    voter.add_view(face_ids, probs)
    result = voter.result()
    assert result.seen.all()
    assert result.face_labels[0] == 1
