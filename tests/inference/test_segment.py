"""The segmenter's test-time options (mirrored predictions, another image size) and another segmenter as its prior."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mvdecor.config import load_config
from mvdecor.data.datasets import open_dataset
from mvdecor.errors import ConfigError
from mvdecor.inference.segment import Segmenter
from mvdecor.models.embedding import EmbeddingNet, SegmentationNet
from mvdecor.models.inputs import ChannelStats, channel_names, flip_view_array, view_to_array
from mvdecor.render.renderer import Renderer

MODALITIES = ("grey", "normal", "depth", "position")


def _segmenter(**segment) -> Segmenter:
    config = load_config(
        "cpu",
        {
            "render": {"rings": 1, "segments": 4, "resolution": 32},
            "model": {"modalities": list(MODALITIES)},
            "segment": segment,
        },
    )
    torch.manual_seed(0)
    channels = len(channel_names(MODALITIES))
    net = SegmentationNet(EmbeddingNet("resnet18", in_channels=channels, embed_dim=8, head="light"), 3)
    rng = np.random.default_rng(0)
    stats = ChannelStats(rng.normal(size=channels), rng.uniform(0.5, 2.0, size=channels), MODALITIES)
    return Segmenter(net, stats, config, ("a", "b", "c"))


def _mesh():
    dataset = open_dataset("synthetic:categories=chair,n=1,textured=0")
    return dataset.load(dataset.shape_ids()[0]).normalized()


def test_flip_averages_each_view_with_its_mirror_flipped_back():
    plain = _segmenter()
    mirrored = plain.with_segment(replace(plain.config.segment, flip=True))
    assert mirrored.model is plain.model and not plain.config.segment.flip
    mesh = _mesh()
    cameras = plain.cameras_for(mesh)
    renderer = Renderer(mesh)
    views = [renderer.render_view(cameras, i) for i in range(3)]
    got = mirrored.predict(views)
    # The reference: one view at a time, mirrored by hand, its prediction flipped back.
    expected = []
    with torch.no_grad():
        for view, straight in zip(views, plain.predict(views), strict=True):
            array = view_to_array(view, MODALITIES)
            flipped, mask = flip_view_array(
                array, view.mask, MODALITIES, view.camera.rotation[0, 0], view.camera.centers[0]
            )
            x = torch.from_numpy(plain.stats.normalize(flipped, mask)[None].astype(np.float32))
            back = torch.softmax(plain.model(x), dim=1)[0].numpy()[:, :, ::-1]
            expected.append(0.5 * (straight + back))
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, plain.predict(views), atol=1e-3)  # a random network is not symmetric
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_test_time_resolution_renders_larger_views_of_the_same_cameras():
    plain = _segmenter()
    larger = _segmenter(resolution=48)
    mesh = _mesh()
    small, large = plain.cameras_for(mesh), larger.cameras_for(mesh)
    view = Renderer(mesh).render_view(large, 0)
    assert view.mask.shape == (48, 48)
    np.testing.assert_array_equal(large.rotation, small.rotation)  # the same poses, more pixels
    np.testing.assert_array_equal(large.centers, small.centers)
    result = larger.segment(mesh, keep_views=True, normalize=False)
    assert result.views[0].mask.shape == (48, 48) and result.view_predictions[0].shape == (48, 48)
    assert (result.face_labels >= 0).all()
    for bad in (30, 4, -4):
        with pytest.raises(ConfigError, match=r"segment\.resolution"):
            _segmenter(resolution=bad)


def test_a_segmenter_prior_is_the_other_segmenters_plain_vote_mixed_in():
    from mvdecor.inference.segment import SegmenterPrior

    host = _segmenter(transfer_prior=0.5)
    other = _segmenter()  # another network of the same labels: the same one, perturbed
    other.model.load_state_dict(
        {
            k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in other.model.state_dict().items()
        }
    )
    mesh = _mesh()
    alone = other.segment(mesh, normalize=False).fusion.face_scores
    # The other segmenter's own smoothing is not applied: what it adds is its vote alone.
    prior = SegmenterPrior(other.with_segment(replace(other.config.segment, smoothing=1.0)))
    np.testing.assert_array_equal(prior.face_probabilities(mesh), alone)
    assert prior.label_names == ("a", "b", "c")
    mixed = host.segment(mesh, normalize=False, transfer=prior).fusion
    vote = host.segment(mesh, normalize=False).fusion.face_scores
    seen = mixed.seen
    np.testing.assert_allclose(mixed.face_scores[seen], 0.5 * vote[seen] + 0.5 * alone[seen], atol=1e-6)
    assert not np.allclose(vote[seen], alone[seen], atol=1e-3)  # two different votes, or this proves nothing


def _pooling_segmenter(seed: int = 1, positions: bool = False, **segment) -> Segmenter:
    """A nearest-labelled-faces network (a random embedding, a random bank) of three classes;
    with ``positions``, the bank has random box coordinates, weighed at 0, 1 and 4."""
    from mvdecor.models.nearest import NearestLabelHead

    config = load_config(
        "cpu",
        {
            "render": {"rings": 1, "segments": 4, "resolution": 32},
            "model": {"modalities": ["grey", "normal", "depth"]},
            "segment": segment,
        },
    )
    torch.manual_seed(0)
    channels = len(channel_names(("grey", "normal", "depth")))
    generator = torch.Generator().manual_seed(seed)
    bank = torch.randn(60, 8, generator=generator)
    where = {}
    if positions:
        where = {
            "bank_positions": torch.rand(60, 3, generator=generator) * 2 - 1,
            "position_weight": (0.0, 1.0, 4.0),
        }
    head = NearestLabelHead(bank, torch.arange(60) % 3, 3, neighbours=5, pool_faces=True, **where)
    net = SegmentationNet(EmbeddingNet("resnet18", in_channels=channels, embed_dim=8, head="light"), 3, head)
    stats = ChannelStats(np.zeros(channels), np.ones(channels), ("grey", "normal", "depth"))
    return Segmenter(net, stats, config, ("a", "b", "c"))


def test_shape_prototypes_mix_the_shapes_own_prototypes_into_a_pooling_heads_faces():
    from mvdecor.models.nearest import shape_prototype_probabilities

    plain = _pooling_segmenter()
    assert plain.pools_faces
    mesh = _mesh()
    cameras = plain.cameras_for(mesh)
    renderer = Renderer(mesh)
    views = [renderer.render_view(cameras, i) for i in range(len(cameras))]
    pool = plain._face_pool(views, None, mesh.num_faces)
    seen, features, _ = pool.result()
    bank = plain.model.head.class_probabilities(features)
    own = shape_prototype_probabilities(features, bank, pool.counts[seen], plain.model.head.temperature)
    for share in (0.5, 1.0):
        mixed = plain.with_segment(replace(plain.config.segment, shape_prototypes=share))
        got = mixed._pooled_face_probabilities(mixed._face_pool(views, None, mesh.num_faces))
        np.testing.assert_allclose(got[seen.numpy()], ((1 - share) * bank + share * own).numpy(), atol=1e-6)
        assert (got[np.setdiff1d(np.arange(mesh.num_faces), seen.numpy())] == 0).all()
    assert (bank.argmax(dim=1) != own.argmax(dim=1)).any()  # the step changes labels here
    # The whole segmentation runs with it, and a face's labels come from the mixed distributions.
    result = _pooling_segmenter(shape_prototypes=1.0).segment(mesh, normalize=False)
    assert (result.face_labels[seen.numpy()] == own.argmax(dim=1).numpy()).mean() > 0.95


def test_shape_prototypes_need_a_face_pooling_head():
    trained = _segmenter(shape_prototypes=0.5)
    with pytest.raises(ValueError, match="shape_prototypes"):
        trained.segment(_mesh(), normalize=False)
    with pytest.raises(ConfigError, match=r"segment\.shape_prototypes"):
        _segmenter(shape_prototypes=1.5)


def test_an_unseen_transfer_vote_labels_the_part_inside_a_closed_object():
    """A small cube inside a closed one: no view sees it, and the faces of the outer cube are far
    from it, so transfer labels it; the outer cube keeps the pair's labels, and the result's
    ``vote`` is the vote before any of that."""
    from closed_boxes import box_in_box
    from mvdecor.inference.refine import TransferVoter
    from mvdecor.inference.segment import SegmenterPrior

    mesh = box_in_box(0.6, (0.1, 0.0, 0.0), 0.15)

    host = _segmenter(transfer_prior=0.5, prior_method="nearest", transfer_vote="unseen")
    lookup = SegmenterPrior(_segmenter())
    plain = host.with_segment(replace(host.config.segment, transfer_vote="off"))
    pair = plain.segment(mesh, normalize=False, transfer=lookup)
    inside = np.arange(mesh.num_faces) >= 12
    # The pair alone fills the inner cube from the nearest seen faces; transfer says another class.
    centroids = mesh.triangles.mean(axis=1)
    nearest = np.linalg.norm(centroids[inside][:, None] - centroids[~inside][None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(pair.face_labels[inside], pair.face_labels[~inside][nearest])
    other = sorted({0, 1, 2} - set(pair.face_labels[inside].tolist()))[0]

    class Transfer:  # every face: the other class
        def face_probabilities(self, mesh):
            return np.tile(np.eye(3, dtype=np.float32)[other], (mesh.num_faces, 1))

    result = host.segment(mesh, normalize=False, transfer=TransferVoter(lookup, Transfer(), {"joined": True}))
    assert result.fusion.seen[~inside].all() and not result.fusion.seen[inside].any()
    assert (result.face_labels[inside] == other).all()
    # Outside, the pair alone: the vote and the lookup mixed at 0.5 (the same random network).
    np.testing.assert_array_equal(result.face_labels[~inside], pair.face_labels[~inside])
    np.testing.assert_allclose(
        result.fusion.face_scores[~inside], pair.fusion.face_scores[~inside], atol=1e-6
    )
    # ``vote`` is the views' vote before the lookup and transfer were mixed in.
    alone = _segmenter().segment(mesh, normalize=False).fusion
    np.testing.assert_array_equal(result.vote.face_scores, alone.face_scores)
    np.testing.assert_array_equal(pair.vote.face_scores, alone.face_scores)
    assert not np.array_equal(result.fusion.face_scores, result.vote.face_scores)


def test_position_alignment_carries_a_shapes_positions_before_the_lookup():
    plain = _pooling_segmenter(seed=2, positions=True)
    head = plain.model.head
    aligned = plain.with_segment(replace(plain.config.segment, position_alignment="axes"))
    mesh = _mesh()
    renderer = Renderer(mesh)
    cameras = plain.cameras_for(mesh)
    views = [renderer.render_view(cameras, i) for i in range(len(cameras))]
    pool = plain._face_pool(views, mesh.bounds(), mesh.num_faces)
    seen, features, positions = pool.result()
    moved = head.aligned_positions(features, positions)
    assert not torch.allclose(moved, positions, atol=1e-3)  # random bank positions: the map moves
    expected = head.class_probabilities(features, moved).numpy()
    np.testing.assert_allclose(aligned._pooled_face_probabilities(pool)[seen.numpy()], expected, atol=1e-6)
    assert not np.allclose(plain._pooled_face_probabilities(pool)[seen.numpy()], expected, atol=1e-3)
    with pytest.raises(ConfigError, match=r"segment\.position_alignment"):
        load_config("cpu", {"segment": {"position_alignment": "affine"}})
