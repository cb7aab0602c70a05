"""Refining fused votes: the transfer prior and CRF smoothing, applied after the vote."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mvdecor.data.mesh import LabelledMesh
from mvdecor.inference.fusion import FaceVoter
from mvdecor.inference.refine import (
    TRANSFER_VOTE_SHARE,
    TransferVoter,
    far_unseen_faces,
    refine_fusion,
    transfer_vote_of,
    welded,
)


def _strip(num_quads: int = 6) -> LabelledMesh:
    """A flat strip of ``2 * num_quads`` triangles along x."""
    xs = np.arange(num_quads + 1, dtype=np.float64)
    vertices = np.concatenate([np.stack([xs, np.zeros_like(xs), np.zeros_like(xs)], 1),
                               np.stack([xs, np.ones_like(xs), np.zeros_like(xs)], 1)])  # fmt: skip
    n = num_quads + 1
    faces = []
    for i in range(num_quads):
        faces += [[i, i + 1, n + i], [i + 1, n + i + 1, n + i]]
    return LabelledMesh(vertices, np.asarray(faces))


def _fusion(face_probs: np.ndarray, seen: np.ndarray, exclude=()):
    voter = FaceVoter(len(face_probs), face_probs.shape[1], method="average", exclude_classes=exclude)
    # One 1 x S "view" whose pixels each see one seen face.
    face_ids = np.where(seen)[0].astype(np.int32)[None]
    voter.add_view(face_ids, face_probs[seen].T[:, None, :].astype(np.float32))
    return voter.result()


def test_no_refinement_returns_the_vote_itself():
    mesh = _strip()
    fusion = _fusion(np.tile([0.7, 0.3], (12, 1)), np.ones(12, bool))
    assert refine_fusion(fusion, mesh) is fusion
    assert refine_fusion(fusion, mesh, prior=np.ones((12, 2)), prior_weight=0.0) is fusion


def test_prior_is_mixed_linearly_and_labels_unseen_faces():
    mesh = _strip()
    votes = np.tile([0.8, 0.2, 0.0], (12, 1))
    seen = np.ones(12, bool)
    seen[-2:] = False
    fusion = _fusion(votes, seen)
    prior = np.tile([0.0, 2.0, 0.0], (12, 1))  # un-normalised rows are normalised first
    refined = refine_fusion(fusion, mesh, prior=prior, prior_weight=0.25)
    np.testing.assert_allclose(refined.face_scores[:10], np.tile([0.6, 0.4, 0.0], (10, 1)), rtol=1e-6)
    assert (refined.face_labels[:10] == 0).all()
    # Unseen faces take the prior's distribution (before: no label, or the nearest seen face's).
    assert (fusion.face_labels[-2:] == -1).all() and (refined.face_labels[-2:] == 1).all()
    np.testing.assert_allclose(refined.face_scores[-2:], np.tile([0.0, 1.0, 0.0], (2, 1)))
    assert (refined.face_confidence[-2:] == 0).all() and (refined.seen == fusion.seen).all()
    assert (refined.view_weights == fusion.view_weights).all()
    heavy = refine_fusion(fusion, mesh, prior=prior, prior_weight=0.75)
    assert (heavy.face_labels == 1).all()


def test_excluded_classes_stay_out_of_a_prior():
    mesh = _strip()
    fusion = _fusion(np.tile([0.0, 0.6, 0.4], (12, 1)), np.ones(12, bool), exclude=(0,))
    prior = np.tile([1.0, 0.0, 1.0], (12, 1))  # votes for the excluded class 0 are dropped
    refined = refine_fusion(fusion, mesh, prior=prior, prior_weight=0.5, exclude_classes=(0,))
    assert (refined.face_scores[:, 0] == 0).all() and (refined.face_labels == 2).all()


def test_a_transfer_vote_makes_equal_thirds_with_a_prior_of_weight_one_half():
    mesh = _strip()
    rng = np.random.default_rng(0)
    votes, lookup, transfer = (rng.dirichlet(np.ones(3), size=12) for _ in range(3))
    fusion = _fusion(votes, np.ones(12, bool))
    refined = refine_fusion(fusion, mesh, prior=lookup, prior_weight=0.5, transfer_vote=3 * transfer)
    # Naive reference: the three sources averaged, each normalised first.
    thirds = (fusion.face_scores + lookup + transfer) / 3
    np.testing.assert_allclose(refined.face_scores, thirds, rtol=1e-5)
    assert abs(TRANSFER_VOTE_SHARE - 1 / 3) < 1e-12
    # Without the prior's weight the vote still joins: (2/3) votes + (1/3) transfer.
    alone = refine_fusion(fusion, mesh, transfer_vote=transfer)
    np.testing.assert_allclose(alone.face_scores, (2 * fusion.face_scores + transfer) / 3, rtol=1e-5)
    with pytest.raises(ValueError, match="transfer_vote has shape"):
        refine_fusion(fusion, mesh, transfer_vote=transfer[:5])


def test_certainty_weighting_lets_the_more_decided_source_count_more():
    mesh = _strip()
    rng = np.random.default_rng(1)
    votes, prior = rng.dirichlet(np.ones(3), size=12), rng.dirichlet(np.ones(3), size=12)
    votes[0], prior[0] = [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]  # decided votes against a flat prior
    fusion = _fusion(votes, np.ones(12, bool))
    refined = refine_fusion(fusion, mesh, prior=prior, prior_weight=0.5, prior_weighting="certainty")

    def certainty(row):  # naive: 1 - H / log C
        return 1 - sum(-p * np.log(p) for p in row if p > 0) / np.log(3)

    for face in range(12):
        a, b = 0.5 * certainty(fusion.face_scores[face]), 0.5 * certainty(prior[face])
        expected = (a * fusion.face_scores[face] + b * prior[face]) / (a + b)
        np.testing.assert_allclose(refined.face_scores[face], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(refined.face_scores[0], [1.0, 0.0, 0.0], atol=1e-6)
    # Neither decided: the fixed mix.
    flat = _fusion(np.full((12, 3), 1 / 3), np.ones(12, bool))
    both = refine_fusion(
        flat, mesh, prior=np.full((12, 3), 1.0), prior_weight=0.5, prior_weighting="certainty"
    )
    np.testing.assert_allclose(both.face_scores, 1 / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="prior_weighting"):
        refine_fusion(fusion, mesh, prior=prior, prior_weight=0.5, prior_weighting="loudest")


def test_a_transfer_voter_brings_its_transfer_only_when_it_joined():
    mesh = _strip()

    class Constant:
        def __init__(self, row):
            self.row = np.asarray(row, np.float32)

        def face_probabilities(self, mesh):
            return np.tile(self.row, (mesh.num_faces, 1))

    lookup, transfer = Constant([1.0, 0.0]), Constant([0.0, 1.0])
    joined, out = TransferVoter(lookup, transfer, {"joined": True}), TransferVoter(lookup, None)
    assert joined.joined and not out.joined
    np.testing.assert_array_equal(joined.face_probabilities(mesh), lookup.face_probabilities(mesh))
    probabilities, share = transfer_vote_of(joined, mesh)
    np.testing.assert_array_equal(probabilities, transfer.face_probabilities(mesh))
    assert share == TRANSFER_VOTE_SHARE
    assert transfer_vote_of(out, mesh) is None and transfer_vote_of(lookup, mesh) is None


def test_a_near_transfer_vote_fades_with_the_distance_to_the_labelled_surface():
    from mvdecor.config import SegmentConfig
    from mvdecor.inference.transfer import LabelTransfer, align_points, reference_from_mesh

    flat = _strip()
    lifted = flat.vertices.copy()
    lifted[:, 2] = 0.3 * np.sin(lifted[:, 0] * 3.0)
    reference_mesh = flat.replace(vertices=lifted)  # a strip with ridges
    reference = reference_from_mesh(reference_mesh.with_labels(np.arange(12) % 2), samples=200, seed=0)
    transfer = LabelTransfer([reference], num_classes=2)
    lookup = TransferVoter(None, transfer, {"joined": True})
    # The same strip: every face centroid is a reference point, so transfer keeps its whole third.
    assert transfer.nearest_distances(reference_mesh) == pytest.approx(np.zeros(12), abs=1e-12)
    near = SegmentConfig(prior_method="nearest", transfer_vote="near", transfer_vote_radius=0.05)
    _, share = transfer_vote_of(lookup, reference_mesh, near)
    np.testing.assert_allclose(share, np.full(12, TRANSFER_VOTE_SHARE))
    # The flat strip, box-aligned, lies in the ridged one's middle plane: near it where the
    # ridges cross that plane, away from it at their crests.
    _, share = transfer_vote_of(lookup, flat, near)
    # Naive reference: brute-force distances from each aligned centroid to every reference point.
    aligned = align_points(flat.triangles.mean(axis=1), flat.bounds(), (reference.box_min, reference.box_max))
    distances = np.sqrt(((aligned[:, None, :] - reference.points[None]) ** 2).sum(axis=2)).min(axis=1)
    np.testing.assert_allclose(share, TRANSFER_VOTE_SHARE * np.exp(-((distances / 0.05) ** 2)), rtol=1e-9)
    assert share.min() < 0.1 * TRANSFER_VOTE_SHARE and share.max() > 0.5 * TRANSFER_VOTE_SHARE
    # equal keeps the fixed third whatever the distances.
    assert transfer_vote_of(lookup, flat, replace(near, transfer_vote="equal"))[1] == TRANSFER_VOTE_SHARE
    # refine_fusion mixes face by face at those shares.
    rng = np.random.default_rng(2)
    votes, third = rng.dirichlet(np.ones(2), size=12), rng.dirichlet(np.ones(2), size=12)
    fusion = _fusion(votes, np.ones(12, bool))
    mixed = refine_fusion(fusion, flat, transfer_vote=third, transfer_vote_share=share)
    expected = (1 - share[:, None]) * fusion.face_scores + share[:, None] * third
    np.testing.assert_allclose(mixed.face_scores, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="transfer_vote_share must be"):
        refine_fusion(fusion, flat, transfer_vote=third, transfer_vote_share=share[:5])
    with pytest.raises(ValueError, match="transfer_vote_share must lie"):
        refine_fusion(fusion, flat, transfer_vote=third, transfer_vote_share=1.5)


def _two_strips(gap: float) -> LabelledMesh:
    """Two parallel 12-triangle strips, the second ``gap`` above the first (z)."""
    strip = _strip()
    lifted = strip.vertices + np.array([0.0, 0.0, gap])
    return LabelledMesh(
        np.concatenate([strip.vertices, lifted]), np.concatenate([strip.faces, strip.faces + 14])
    )


def test_far_unseen_faces_against_brute_force_distances():
    rng = np.random.default_rng(3)
    mesh = LabelledMesh(rng.normal(size=(60, 3)), rng.integers(0, 60, size=(40, 3)))
    seen = rng.random(40) < 0.5
    centroids = mesh.triangles.mean(axis=1)
    diagonal = np.linalg.norm(mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0))
    gaps = np.sqrt(((centroids[:, None] - centroids[None, seen]) ** 2).sum(axis=2)).min(axis=1)
    for distance in (0.0, 0.05, 0.2):
        np.testing.assert_array_equal(
            far_unseen_faces(mesh, seen, distance), ~seen & (gaps > distance * diagonal)
        )
    assert far_unseen_faces(mesh, seen, 0.05).any() and not far_unseen_faces(mesh, seen, 10.0).any()
    # Nothing seen, or everything: no face is far from a seen one.
    assert not far_unseen_faces(mesh, np.zeros(40, bool), 0.0).any()
    assert not far_unseen_faces(mesh, np.ones(40, bool), 0.0).any()
    with pytest.raises(ValueError, match="seen has shape"):
        far_unseen_faces(mesh, seen[:5], 0.1)


def test_an_unseen_transfer_vote_labels_only_the_unseen_faces_far_from_every_seen_one():
    from mvdecor.config import SegmentConfig

    class Constant:
        def __init__(self, row):
            self.row = np.asarray(row, np.float32)

        def face_probabilities(self, mesh):
            return np.tile(self.row, (mesh.num_faces, 1))

    # The lower strip is seen; of the upper one (1.0 above it; the diagonal is about 6.2),
    # nothing. At 0.1 of the diagonal the upper strip is far: transfer labels it.
    mesh = _two_strips(1.0)
    seen = np.arange(24) < 12
    voter = TransferVoter(Constant([1.0, 0.0, 0.0]), Constant([0.0, 0.0, 1.0]), {"joined": True})
    unseen = SegmentConfig(prior_method="nearest", transfer_vote="unseen", unseen_transfer_distance=0.1)
    probabilities, share = transfer_vote_of(voter, mesh, unseen, seen)
    np.testing.assert_array_equal(share, (~seen).astype(np.float64))
    fusion = _fusion(np.tile([0.1, 0.9, 0.0], (24, 1)), seen)
    refined = refine_fusion(fusion, mesh, prior=voter.face_probabilities(mesh), prior_weight=0.5,
                            transfer_vote=probabilities, transfer_vote_share=share)  # fmt: skip
    assert (refined.face_labels[:12] == 0).all()  # seen: the pair's 0.55 for class 0, transfer silent
    assert (refined.face_labels[12:] == 2).all()  # far and unseen: transfer's
    np.testing.assert_allclose(refined.face_scores[12:], np.tile([0.0, 0.0, 1.0], (12, 1)))
    # At a distance above the gap the upper strip is the back of a panel: it follows the seen faces.
    near = replace(unseen, unseen_transfer_distance=0.5)
    probabilities, share = transfer_vote_of(voter, mesh, near, seen)
    assert not share.any()
    refined = refine_fusion(fusion, mesh, prior=voter.face_probabilities(mesh), prior_weight=0.5,
                            transfer_vote=probabilities, transfer_vote_share=share)  # fmt: skip
    assert (refined.face_labels == 0).all()
    with pytest.raises(ValueError, match="seen faces"):
        transfer_vote_of(voter, mesh, unseen)


def test_faces_with_no_evidence_follow_the_nearest_seen_face_with_some():
    # Three rows of faces: seen (class 0) at z = 0, unseen and labelled by transfer (class 2) at
    # z = 2, unseen with no evidence at z = 1.4, nearer the transferred row than the seen one: it
    # still follows the seen faces, as the back of a panel follows its front.
    strip = _strip()
    rows = [strip.vertices + np.array([0.0, 0.0, z]) for z in (0.0, 2.0, 1.4)]
    mesh = LabelledMesh(np.concatenate(rows), np.concatenate([strip.faces + 14 * i for i in range(3)]))
    seen = np.arange(36) < 12
    fusion = _fusion(np.tile([0.9, 0.1, 0.0], (36, 1)), seen)
    third = np.tile([0.0, 0.0, 1.0], (36, 1))
    share = np.where((np.arange(36) >= 12) & (np.arange(36) < 24), 1.0, 0.0)
    refined = refine_fusion(fusion, mesh, transfer_vote=third, transfer_vote_share=share)
    assert (refined.face_labels[:12] == 0).all() and (refined.face_labels[12:24] == 2).all()
    assert (refined.face_labels[24:] == 0).all()
    # With no seen face having evidence (they voted for an excluded class), the nearest face with some decides.
    excluded = _fusion(np.tile([0.0, 1.0, 0.0], (36, 1)), seen)
    refined = refine_fusion(
        excluded, mesh, transfer_vote=third, transfer_vote_share=share, exclude_classes=[1]
    )
    assert (refined.face_labels == 2).all()


def test_smoothing_relabels_an_isolated_face_on_a_flat_strip():
    mesh = _strip()
    votes = np.tile([0.9, 0.1], (12, 1))
    votes[5] = [0.3, 0.7]
    fusion = _fusion(votes, np.ones(12, bool))
    assert fusion.face_labels[5] == 1
    refined = refine_fusion(fusion, mesh, smoothing=2.0)
    assert (refined.face_labels == 0).all()
    np.testing.assert_allclose(refined.face_scores.sum(axis=1), 1.0, rtol=1e-5)


def test_bad_refinement_arguments():
    mesh = _strip()
    fusion = _fusion(np.tile([0.5, 0.5], (12, 1)), np.ones(12, bool))
    with pytest.raises(ValueError, match="prior_weight"):
        refine_fusion(fusion, mesh, prior=np.ones((12, 2)), prior_weight=1.5)
    with pytest.raises(ValueError, match="prior has shape"):
        refine_fusion(fusion, mesh, prior=np.ones((11, 2)), prior_weight=0.5)
    with pytest.raises(ValueError, match="smoothing"):
        refine_fusion(fusion, mesh, smoothing=-1.0)


def test_smoothing_couples_faces_whose_shared_vertices_are_duplicated():
    # The strip with every face on its own copy of its corners (as UV seams or parts give):
    # after welding, the isolated face is still relabelled by its neighbours.
    strip = _strip()
    split = LabelledMesh(strip.triangles.reshape(-1, 3), np.arange(3 * strip.num_faces).reshape(-1, 3))
    vertices, faces = welded(split)
    assert len(vertices) == strip.num_vertices
    np.testing.assert_allclose(vertices[faces], strip.triangles)
    votes = np.tile([0.9, 0.1], (12, 1))
    votes[5] = [0.3, 0.7]
    refined = refine_fusion(_fusion(votes, np.ones(12, bool)), split, smoothing=2.0)
    assert (refined.face_labels == 0).all()


def test_auto_vote_is_refused_outside_the_protocol_and_others_join():
    from mvdecor.errors import ConfigError
    from mvdecor.inference.refine import TransferVoter, check_vote_outside_protocol

    with pytest.raises(ConfigError, match=r"model\.pt: segment\.transfer_vote auto"):
        check_vote_outside_protocol("auto", "model.pt")
    for vote in ("off", "equal", "near", "unseen"):
        check_vote_outside_protocol(vote)
    prior, transfer = object(), object()
    voter = TransferVoter.joining(prior, transfer, "unseen")
    assert voter.joined and voter.prior is prior and voter.transfer is transfer
    assert voter.decision == {"joined": True, "reason": "segment.transfer_vote: unseen"}
