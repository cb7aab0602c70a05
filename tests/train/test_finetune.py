"""Fine-tuning: it learns parts from two shapes, label images equal face labels, errors are clear."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from tiny_setup import tiny_config

from mvdecor.errors import ConfigError, LabelError
from mvdecor.evaluation.segmentation import SegmentationEvaluator, pixel_miou
from mvdecor.inference.segment import Segmenter
from mvdecor.train.data import ViewSource
from mvdecor.train.finetune import finetune, load_segmentation_model
from mvdecor.train.labelled import read_label_image, select_labelled_views
from mvdecor.train.pretrain import pretrain

CHAIRS = "synthetic:categories=chair,n=6,textured=0"


def ft_config(**changes):
    config = tiny_config()
    ft = replace(config.finetune, iterations=8, views_per_batch=4, log_every=1, checkpoint_every=4,
                 num_workers=0, device="cpu", ssl_weight=0.0)  # fmt: skip
    return replace(config, finetune=replace(ft, **changes))


def test_select_labelled_views_all_or_sparse():
    all_views = select_labelled_views(["a", "b"], 12, 0, seed=0)
    assert len(all_views) == 24
    sparse = select_labelled_views(["a", "b"], 12, 3, seed=0)
    assert len(sparse) == 6 and len({v.view_index for v in sparse if v.shape_id == "a"}) == 3
    assert select_labelled_views(["a", "b"], 12, 3, seed=0) == sparse


def test_finetune_from_scratch_learns_parts_and_fusion_helps(tmp_path):
    config = ft_config(iterations=60, views_per_batch=4)
    run = tmp_path / "ft"
    labelled = ["chair_0000", "chair_0001"]
    result = finetune(config, CHAIRS, run, labelled_shapes=labelled, progress=False)
    assert result.step == 60 and result.label_names[0] == "seat"
    segmenter = Segmenter.from_checkpoint(result.last_checkpoint)
    source = ViewSource(CHAIRS, config.render)
    names = result.label_names
    evaluator = SegmentationEvaluator(names, convention="shapenet")
    pixel_gt, pixel_pred = [], []
    for shape_id in ["chair_0003", "chair_0004", "chair_0005"]:
        mesh = source.mesh(shape_id)
        seg = segmenter.segment(mesh, keep_views=True, normalize=False)
        assert (seg.face_labels >= 0).all()
        evaluator.process(mesh, mesh.face_labels, seg.face_labels, shape_id=shape_id, category="chair")
        for view, pred in zip(seg.views, seg.view_predictions, strict=True):
            gt = view.face_labels(mesh.face_labels)
            pixel_gt.append(gt[view.mask])
            pixel_pred.append(pred[view.mask])
    fused = evaluator.evaluate()["instance_miou"]
    per_view = pixel_miou(np.concatenate(pixel_gt), np.concatenate(pixel_pred), len(names), partnet=False)
    # Chance on five parts is well under 0.2; measured 0.55 fused against 0.49 per view.
    assert fused > 0.4, fused
    assert fused >= per_view - 0.01, (fused, per_view)


def _write_label_images(config, shape_id, views, folder):
    source = ViewSource(CHAIRS, config.render)
    mesh = source.mesh(shape_id)
    paths = {}
    for v in views:
        view = source.view(shape_id, v)
        labels = view.face_labels(mesh.face_labels)
        image = np.where(labels >= 0, labels, 255).astype(np.uint8)
        path = folder / f"{shape_id}_view_{v:03d}.png"
        Image.fromarray(image).save(path)
        paths[(shape_id, v)] = path
    return paths


def test_label_images_train_exactly_as_face_labels(tmp_path):
    config = ft_config(views_per_shape=3)
    sparse = select_labelled_views(["chair_0002"], config.render.num_views, 3, seed=config.finetune.seed)
    images = _write_label_images(config, "chair_0002", [v.view_index for v in sparse], tmp_path)
    finetune(config, CHAIRS, tmp_path / "faces", labelled_shapes=["chair_0002"], progress=False)
    finetune(config, CHAIRS, tmp_path / "images", labelled_shapes=["chair_0002"], label_images=images,
             progress=False)  # fmt: skip
    a = (tmp_path / "faces" / "metrics.csv").read_text().splitlines()
    b = (tmp_path / "images" / "metrics.csv").read_text().splitlines()
    loss = [r.split(",")[1] for r in a[1:]], [r.split(",")[1] for r in b[1:]]
    assert loss[0] == loss[1]


def test_label_image_errors(tmp_path):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(LabelError, match="12x10 but views are 64x64"):
        read_label_image(tmp_path / "small.png", (64, 64), 5)
    Image.fromarray(np.full((64, 64), 9, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(LabelError, match="class index 9 out of range for 5"):
        read_label_image(tmp_path / "big.png", (64, 64), 5)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(LabelError, match="single-channel"):
        read_label_image(tmp_path / "rgb.png", (64, 64), 5)
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(LabelError, match="unreadable"):
        read_label_image(tmp_path / "junk.png", (64, 64), 5)


def test_class_count_must_match_labels(tmp_path):
    folder = tmp_path / "meshes"
    folder.mkdir()
    (folder / "a.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0.3\n3 0 1 2\n3 1 3 2\n")
    (folder / "a.txt").write_text("0\n2\n")
    (folder / "label_names.txt").write_text("one\ntwo\n")
    with pytest.raises(LabelError, match="label 2 has no name"):
        finetune(ft_config(), str(folder), tmp_path / "run", labelled_shapes=["a"], progress=False)


def test_incompatible_checkpoints_are_clear_errors(tmp_path):
    config = ft_config()
    pre = pretrain(config, CHAIRS, tmp_path / "pre", progress=False, iterations=1)
    with pytest.raises(ConfigError, match="not a fine-tuned segmentation checkpoint"):
        load_segmentation_model(pre.last_checkpoint)
    ft = finetune(config, CHAIRS, tmp_path / "ft", labelled_shapes=["chair_0000"], init=pre.last_checkpoint,
                  progress=False)  # fmt: skip
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["init"] == str(pre.last_checkpoint)
    # A checkpoint whose weights do not fit its configuration.
    import torch

    payload = torch.load(ft.last_checkpoint, weights_only=True)
    payload["config"]["model"]["embed_dim"] = 32
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="does not fit its configuration"):
        load_segmentation_model(tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="labelled shapes not in"):
        finetune(config, CHAIRS, tmp_path / "x", labelled_shapes=["sofa_0000"], progress=False)


def test_finetune_with_regulariser_and_resume(tmp_path):
    config = ft_config(ssl_weight=1e-3, ssl_pairs_per_batch=1)
    full = finetune(config, CHAIRS, tmp_path / "full", labelled_shapes=["chair_0000"], progress=False)
    part = finetune(config, CHAIRS, tmp_path / "part", labelled_shapes=["chair_0000"], progress=False,
                    stop_after=5)  # fmt: skip
    assert part.step == 5
    # A kill during a checkpoint write leaves its temporary; the resumed run removes it.
    stale = tmp_path / "part" / "checkpoints" / ".last.pt.tmp-999999999"
    stale.write_bytes(b"half a checkpoint")
    resumed = finetune(config, CHAIRS, tmp_path / "part", labelled_shapes=["chair_0000"], progress=False)
    assert full.step == resumed.step == 8
    assert not stale.exists()
    a = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    b = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    col = a[0].split(",").index("loss_ce")
    assert [float(r.split(",")[col]) for r in a[1:]] == pytest.approx([float(r.split(",")[col]) for r in b[1:]],
                                                                       rel=1e-5)  # fmt: skip
    assert "loss_ssl" in a[0] and float(a[1].split(",")[a[0].split(",").index("loss_ssl")]) > 0


def _write_torchvision_resnet18(path):
    """A randomly initialised ResNet-18 state dict in torchvision's layout (RGB conv1, a classifier)."""
    import torch

    from mvdecor.models.resnet import resnet18

    torch.manual_seed(123)
    state = resnet18(in_channels=3).state_dict()
    state["fc.weight"], state["fc.bias"] = torch.randn(10, 512), torch.zeros(10)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("modalities", [("grey", "normal", "depth"), ("rgb", "normal", "depth")])
def test_imagenet_init_widens_the_first_conv_with_the_mean_rgb_filter(tmp_path, modalities):
    import torch

    from mvdecor.train.finetune import _initial_embedding

    state = _write_torchvision_resnet18(tmp_path / "resnet18.pth")
    config = ft_config()
    model = replace(config.model, modalities=modalities, imagenet_checkpoint=str(tmp_path / "resnet18.pth"))
    embedding, stats, used = _initial_embedding(replace(config, model=model), "imagenet", torch.device("cpu"))
    assert stats is None and used.model.imagenet_checkpoint == str(tmp_path / "resnet18.pth")
    conv1 = embedding.backbone.conv1.weight.detach()
    rgb, mean = state["conv1.weight"], state["conv1.weight"].mean(dim=1)
    if modalities[0] == "rgb":  # R, G, B filters on the colour channels, their mean on the 4 others
        torch.testing.assert_close(conv1[:, :3], rgb, rtol=0, atol=0)
        extra = conv1[:, 3:]
    else:  # no colour channel: grey, normals and depth all get the mean RGB filter
        extra = conv1
    for channel in range(extra.shape[1]):
        torch.testing.assert_close(extra[:, channel], mean, rtol=0, atol=0)
    backbone = embedding.backbone.state_dict()
    for key in ("bn1.running_mean", "layer1.0.conv1.weight", "layer4.1.bn2.weight"):
        torch.testing.assert_close(backbone[key], state[key], rtol=0, atol=0)


def test_position_added_at_finetuning_widens_a_pretrained_network(tmp_path):
    import torch

    from mvdecor.train.pretrain import load_embedding

    config = ft_config(iterations=2, add_modalities=("position",))
    pre = pretrain(config, CHAIRS, tmp_path / "pre", progress=False, iterations=1)
    embedding, stats, _ = load_embedding(pre.last_checkpoint)
    ft = finetune(config, CHAIRS, tmp_path / "ft", labelled_shapes=["chair_0000"], init=pre.last_checkpoint,
                  progress=False, stop_after=0)  # fmt: skip
    model, ft_stats, ft_config_, _ = load_segmentation_model(ft.last_checkpoint)
    assert ft_config_.model.modalities == ("grey", "normal", "depth", "position")
    assert model.embedding.in_channels == 8 and model.embedding.backbone.conv1.in_channels == 8
    # Before any step: the old filters as they were, zero filters for the new channels, and the
    # pre-trained channels keep their statistics.
    weight = model.embedding.backbone.conv1.weight.detach()
    torch.testing.assert_close(weight[:, :5], embedding.backbone.conv1.weight.detach())
    assert (weight[:, 5:] == 0).all()
    np.testing.assert_array_equal(ft_stats.mean[:5], stats.mean)
    assert ft_stats.modalities == ("grey", "normal", "depth", "position")
    # Scratch simply has the extra inputs from the start, and the network segments with them.
    scratch = finetune(config, CHAIRS, tmp_path / "scratch", labelled_shapes=["chair_0000"], progress=False)
    segmenter = Segmenter.from_checkpoint(scratch.last_checkpoint)
    assert segmenter.config.model.modalities[-1] == "position"
    mesh = ViewSource(CHAIRS, config.render).mesh("chair_0001")
    assert (segmenter.segment(mesh, normalize=False).face_labels >= 0).all()


def test_a_finished_run_trimmed_to_weights_is_reused_not_retrained(tmp_path):
    from mvdecor.train.checkpoint import load_checkpoint, prune_checkpoints

    config = ft_config(iterations=2)
    run = tmp_path / "ft"
    first = finetune(config, CHAIRS, run, labelled_shapes=["chair_0000"], progress=False)
    prune_checkpoints(run / "checkpoints", "weights")
    assert "optimizer" not in load_checkpoint(first.last_checkpoint)
    again = finetune(config, CHAIRS, run, labelled_shapes=["chair_0000"], progress=False)
    assert again.step == 2 and again.last_checkpoint == first.last_checkpoint
    # Asked to train on, it says why it cannot.
    with pytest.raises(ConfigError, match="holds only the network at step 2"):
        finetune(ft_config(iterations=4), CHAIRS, run, labelled_shapes=["chair_0000"], progress=False)


def test_head_warmup_freezes_the_embedding_then_trains_it(tmp_path):
    import torch

    from mvdecor.train.pretrain import load_embedding

    config = ft_config(iterations=3, head_warmup=2, ssl_weight=1e-3, ssl_pairs_per_batch=1)
    pre = pretrain(config, CHAIRS, tmp_path / "pre", progress=False, iterations=1)
    embedding, _, _ = load_embedding(pre.last_checkpoint)
    start = embedding.state_dict()  # weights and BatchNorm statistics
    kwargs = dict(labelled_shapes=["chair_0000"], init=pre.last_checkpoint, progress=False)

    def embedding_state(run):
        model, _, _, _ = load_segmentation_model(run.last_checkpoint)
        return model.embedding.state_dict(), model.head.state_dict()

    warm = finetune(config, CHAIRS, tmp_path / "warm", stop_after=2, **kwargs)
    frozen, head = embedding_state(warm)
    for name, tensor in start.items():
        torch.testing.assert_close(frozen[name], tensor, msg=name)
    # The head did train in those two steps (it starts random, so compare with step 0).
    untrained = finetune(config, CHAIRS, tmp_path / "zero", stop_after=0, **kwargs)
    _, head0 = embedding_state(untrained)
    assert any(not torch.equal(head[n], head0[n]) for n in head)
    # The third step, resumed past the warm-up, trains the embedding too (with the regulariser).
    done = finetune(config, CHAIRS, tmp_path / "warm", **kwargs)
    assert done.step == 3
    trained, _ = embedding_state(done)
    assert any(not torch.equal(trained[n], start[n]) for n in start if start[n].is_floating_point())
    with pytest.raises(ConfigError, match="head_warmup"):
        ft_config(head_warmup=-1)


def test_flip_augmentation_mirrors_views_and_labels_together():
    from mvdecor.train.labelled import LabelledViewDataset, select_labelled_views

    config = ft_config()
    source = ViewSource(CHAIRS, config.render)
    items = select_labelled_views(["chair_0000"], source.num_views("chair_0000"), 0, seed=0)
    modalities = config.model.modalities
    plain = LabelledViewDataset(source, items, modalities, None, 5, seed=3)
    always = LabelledViewDataset(source, items, modalities, None, 5, seed=3, flip_prob=1.0)
    for index in range(3):
        a, b = plain[index], always[index]  # the same view: the flip is drawn after it
        np.testing.assert_array_equal(b["labels"], a["labels"][:, ::-1])
        np.testing.assert_array_equal(b["inputs"][0], a["inputs"][0][:, ::-1])  # shading
        assert (b["labels"] >= 0).any()
    # Half the time on average, and the same items at the same probability twice.
    half = LabelledViewDataset(source, items, modalities, None, 5, seed=3, flip_prob=0.5)
    flips = [not np.array_equal(half[i]["labels"], plain[i]["labels"]) for i in range(40)]
    assert 8 < sum(flips) < 32
    np.testing.assert_array_equal(half[7]["inputs"], half[7]["inputs"])
    with pytest.raises(ConfigError, match="flip_prob"):
        ft_config(flip_prob=1.5)


def test_class_balance_weighs_rare_parts_up_in_the_loss(tmp_path, monkeypatch):
    import csv

    import torch

    # Without dropout's random draws, step 1's loss can be recomputed exactly below.
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)

    from mvdecor.train.labelled import LabelledViewDataset, collate_views

    config = ft_config(iterations=1, class_balance=1.0, precision="fp32")  # exact sums below
    source = ViewSource(CHAIRS, config.render)
    items = select_labelled_views(["chair_0000"], source.num_views("chair_0000"), 0, seed=0)
    views = LabelledViewDataset(source, items, config.model.modalities, None, 5)
    counts = views.pixel_counts()
    expected = np.zeros(5, np.int64)
    for item in items:
        labels = views.example(item)["labels"]
        expected += np.array([(labels == c).sum() for c in range(5)])
    np.testing.assert_array_equal(counts, expected)

    kwargs = dict(labelled_shapes=["chair_0000"], progress=False)
    start = finetune(config, CHAIRS, tmp_path / "start", stop_after=0, **kwargs)
    result = finetune(config, CHAIRS, tmp_path / "ft", **kwargs)
    weights = np.array(json.loads((result.run_dir / "run.json").read_text())["class_weights"])
    present = counts > 0
    # Inverse frequency: every part's pixels weigh the same in total; the rarest weighs most.
    totals = weights[present] * counts[present]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-5)
    assert weights.argmax() == np.where(present, counts, counts.max() + 1).argmin()
    # Step 1's logged loss is the weighted cross-entropy of the untrained network on its batch.
    model, stats, _, _ = load_segmentation_model(start.last_checkpoint)
    batch = LabelledViewDataset(source, items, config.model.modalities, stats, 5)
    inputs, labels = collate_views([batch[i] for i in range(config.finetune.views_per_batch)])
    with torch.no_grad():
        logits = model.train()(inputs)
    weighted = torch.nn.functional.cross_entropy(
        logits, labels, weight=torch.tensor(weights, dtype=torch.float32), ignore_index=-1
    )
    plain = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-1)
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
    logged = float(rows[0]["loss_ce"])
    assert abs(logged - float(weighted)) < 1e-4 * max(1.0, logged), (logged, float(weighted))
    assert abs(float(weighted) - float(plain)) > 1e-3  # the check tells the two apart
    unweighted = finetune(ft_config(iterations=1), CHAIRS, tmp_path / "plain", **kwargs)
    assert "class_weights" not in json.loads((unweighted.run_dir / "run.json").read_text())
    with pytest.raises(ConfigError, match="class_balance"):
        ft_config(class_balance=-0.5)


def test_nearest_method_keeps_a_bank_of_labelled_pixels_and_segments_with_it(tmp_path):
    from mvdecor.train.checkpoint import load_checkpoint, prune_checkpoints

    config = ft_config(method="nearest", nearest_references=100000, nearest_neighbours=1, nearest_stride=1,
                       val_views=2)  # fmt: skip
    labelled = ["chair_0000", "chair_0001"]
    run = tmp_path / "nn"
    result = finetune(config, CHAIRS, run, labelled_shapes=labelled, progress=False)
    assert result.step == 0 and result.model_checkpoint == result.last_checkpoint
    record = json.loads((run / "run.json").read_text())
    assert record["method"] == "nearest" and record["labelled_views"] == 24  # held-out views join the bank
    segmenter = Segmenter.from_checkpoint(result.last_checkpoint)
    bank = segmenter.model.head.bank_labels
    assert len(bank) == record["bank_pixels"] > 1000
    # Every labelled pixel is in the bank: with one neighbour, a labelled view's own pixels mostly
    # find themselves (only pixels whose embeddings coincide can vote otherwise).
    source = ViewSource(CHAIRS, config.render)
    mesh = source.mesh("chair_0000")
    views = source.views("chair_0000")[:4]
    predicted = segmenter.predict(views).argmax(1)
    gt = np.stack([v.face_labels(mesh.face_labels) for v in views])
    keep = gt >= 0
    assert (predicted[keep] == gt[keep]).mean() > 0.9
    # A test shape: better than chance on five parts (measured 0.6 with a random network).
    segmenter.model.head.stride = 2  # a quarter of the queries
    evaluator = SegmentationEvaluator(result.label_names, convention="shapenet")
    for shape_id in ["chair_0003"]:
        test_mesh = source.mesh(shape_id)
        seg = segmenter.segment(test_mesh, normalize=False)
        evaluator.process(test_mesh, test_mesh.face_labels, seg.face_labels, shape_id=shape_id)
    assert evaluator.evaluate()["instance_miou"] > 0.3
    # Run again: nothing recomputed; trimmed to weights it still loads; a trained run is no bank.
    stamp = result.last_checkpoint.stat().st_mtime_ns
    assert finetune(config, CHAIRS, run, labelled_shapes=labelled, progress=False).step == 0
    assert result.last_checkpoint.stat().st_mtime_ns == stamp
    prune_checkpoints(run / "checkpoints", "weights")
    assert load_checkpoint(result.last_checkpoint)["head"] == "nearest"
    assert Segmenter.from_checkpoint(result.last_checkpoint).model.head.bank_labels.shape == bank.shape
    with pytest.raises(ConfigError, match="labelled-pixel bank"):
        finetune(ft_config(), CHAIRS, run, labelled_shapes=labelled, progress=False)
    trained = finetune(ft_config(iterations=1), CHAIRS, tmp_path / "net", labelled_shapes=labelled,
                       progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="trained fine-tuning run"):
        finetune(config, CHAIRS, trained.run_dir, labelled_shapes=labelled, progress=False)
    with pytest.raises(ConfigError, match=r"finetune\.method"):
        ft_config(method="knn")


def test_nearest_method_with_positions_keeps_each_pixels_box_coordinates(tmp_path):
    import torch

    from mvdecor.models.nearest import bank_index, box_coordinates

    config = ft_config(method="nearest", nearest_references=100000, nearest_neighbours=1, nearest_stride=1,
                       nearest_position_weight=1e4)  # fmt: skip
    labelled = ["chair_0000"]
    result = finetune(config, CHAIRS, tmp_path / "nn", labelled_shapes=labelled, progress=False)
    segmenter = Segmenter.from_checkpoint(result.last_checkpoint)  # the positions survive the round trip
    head = segmenter.model.head
    assert segmenter.model.needs_positions and head.bank_positions.shape == (len(head.bank_labels), 3)
    # The bank holds every labelled pixel of the shape's views in order: the first view's pixels
    # come first, with their hit points in the box frame of the shape.
    source = ViewSource(CHAIRS, config.render)
    mesh = source.mesh("chair_0000")
    view = source.view("chair_0000", 0)
    keep = view.face_labels(mesh.face_labels) >= 0
    first = box_coordinates(view.hit_points[keep], *mesh.bounds())
    np.testing.assert_allclose(head.bank_positions[: len(first)].numpy(), first, atol=1e-6)
    assert float(head.bank_positions.abs().max()) <= 1.0 + 1e-5
    # A smaller bank draws features, labels and positions with the same index.
    small_config = replace(config, finetune=replace(config.finetune, nearest_references=500))
    small = finetune(small_config, CHAIRS, tmp_path / "small", labelled_shapes=labelled, progress=False)
    small_head = Segmenter.from_checkpoint(small.last_checkpoint).model.head
    index = bank_index(len(head.bank_labels), 500, small_config.finetune.seed)
    for name in ("bank_features", "bank_labels", "bank_positions"):
        torch.testing.assert_close(getattr(small_head, name), getattr(head, name)[index])
    # A class-balanced bank draws the same way, from the same pixels (nearest_class_balance).
    balanced_config = replace(
        small_config, finetune=replace(small_config.finetune, nearest_class_balance=1.0)
    )
    balanced = finetune(
        balanced_config, CHAIRS, tmp_path / "balanced", labelled_shapes=labelled, progress=False
    )
    balanced_head = Segmenter.from_checkpoint(balanced.last_checkpoint).model.head
    index = bank_index(len(head.bank_labels), 500, balanced_config.finetune.seed, head.bank_labels, 1.0)
    for name in ("bank_features", "bank_labels", "bank_positions"):
        torch.testing.assert_close(getattr(balanced_head, name), getattr(head, name)[index])
    shares = np.bincount(balanced_head.bank_labels.numpy()) / 500
    assert shares.max() - shares.min() < np.ptp(np.bincount(small_head.bank_labels.numpy()) / 500)
    # With this weight each pixel of a labelled view finds the bank pixel that sees its own point.
    views = source.views("chair_0000")[:3]
    with pytest.raises(ValueError, match="bounding box"):
        segmenter.predict(views)
    predicted = segmenter.predict(views, mesh.bounds()).argmax(1)
    gt = np.stack([v.face_labels(mesh.face_labels) for v in views])
    assert (predicted[gt >= 0] == gt[gt >= 0]).mean() > 0.95
    # Test-time flips: the mirrored copy's pixels keep the points they see, so position still decides.
    flipped = segmenter.with_segment(replace(segmenter.config.segment, flip=True))
    predicted = flipped.predict(views, mesh.bounds()).argmax(1)
    assert (predicted[gt >= 0] == gt[gt >= 0]).mean() > 0.95
    seg = segmenter.segment(source.mesh("chair_0002"), normalize=False)
    assert seg.face_labels.shape == (source.mesh("chair_0002").num_faces,)
    with pytest.raises(ConfigError, match="nearest_position_weight"):
        ft_config(nearest_position_weight=-1.0)
    with pytest.raises(ConfigError, match="nearest_class_balance"):
        ft_config(nearest_class_balance=-0.5)


def test_nearest_method_chooses_the_position_weight_on_the_labelled_shapes(tmp_path):
    config = ft_config(
        method="nearest", nearest_position_candidates=[4.0, 0.0, 1e4], nearest_position_combine="choose"
    )
    labelled = ["chair_0000", "chair_0001"]
    result = finetune(config, CHAIRS, tmp_path / "nn", labelled_shapes=labelled, progress=False)
    record = json.loads((result.run_dir / "run.json").read_text())
    scores = record["position_weight_scores"]
    assert list(scores) == ["0.0", "4.0", "10000.0"] and all(0 <= v <= 1 for v in scores.values())
    best = max(scores.values())
    assert record["position_weight"] == min(float(w) for w, v in scores.items() if v == best)
    head = Segmenter.from_checkpoint(result.last_checkpoint).model.head
    assert head.position_weight == record["position_weight"]
    # One labelled shape: no choice, the configured weight.
    single = finetune(replace(config, finetune=replace(config.finetune, nearest_position_weight=2.0)), CHAIRS,
                      tmp_path / "one", labelled_shapes=labelled[:1], progress=False)  # fmt: skip
    assert json.loads((single.run_dir / "run.json").read_text())["position_weight"] == 2.0
    with pytest.raises(ConfigError, match="nearest_position_candidates"):
        ft_config(nearest_position_candidates=[1.0, -1.0])


def test_nearest_method_averages_the_candidate_weights_with_any_number_of_labelled_shapes(tmp_path):
    import torch

    config = ft_config(method="nearest", nearest_position_candidates=[4.0, 0.0, 1.0],
                       nearest_position_combine="average")  # fmt: skip
    # No candidates: nothing to average, the weight as given.
    chosen = ft_config(method="nearest", nearest_position_weight=4.0, nearest_position_candidates=[],
                       nearest_position_combine="average")  # fmt: skip
    for labelled in (["chair_0000"], ["chair_0000", "chair_0001"]):
        folder = tmp_path / str(len(labelled))
        result = finetune(config, CHAIRS, folder / "avg", labelled_shapes=labelled, progress=False)
        record = json.loads((result.run_dir / "run.json").read_text())
        assert record["position_weight"] == [0.0, 1.0, 4.0] and "position_weight_scores" not in record
        segmenter = Segmenter.from_checkpoint(result.last_checkpoint)
        assert segmenter.model.head.position_weights == (0.0, 1.0, 4.0)
        # The same bank as a single-weight run's: only the vote differs.
        single = finetune(chosen, CHAIRS, folder / "w4", labelled_shapes=labelled, progress=False)
        assert json.loads((single.run_dir / "run.json").read_text())["position_weight"] == 4.0
        other = Segmenter.from_checkpoint(single.last_checkpoint).model.head
        torch.testing.assert_close(segmenter.model.head.bank_features, other.bank_features)
        torch.testing.assert_close(segmenter.model.head.bank_positions, other.bank_positions)
        mesh = ViewSource(CHAIRS, config.render).mesh(labelled[0])
        labels = segmenter.segment(mesh).face_labels
        assert labels.shape == (mesh.num_faces,) and (labels >= 0).all()
    with pytest.raises(ConfigError, match="nearest_position_combine"):
        ft_config(nearest_position_combine="vote")


@pytest.mark.parametrize("combine", ["certainty", "confident"])
def test_nearest_method_joins_the_candidate_weights_by_certainty_through_its_checkpoint(tmp_path, combine):
    config = ft_config(method="nearest", nearest_position_candidates=[1.0, 0.0],
                       nearest_position_combine=combine)  # fmt: skip
    result = finetune(config, CHAIRS, tmp_path / "nn", labelled_shapes=["chair_0000"], progress=False)
    assert json.loads((result.run_dir / "run.json").read_text())["position_weight"] == [0.0, 1.0]
    head = Segmenter.from_checkpoint(result.last_checkpoint).model.head
    assert head.position_weights == (0.0, 1.0) and head.combine == combine


def test_nearest_method_pools_each_faces_embeddings(tmp_path):
    import torch

    from mvdecor.models.nearest import pool_by_group

    config = ft_config(method="nearest", nearest_references=100000, nearest_neighbours=1, nearest_stride=1,
                       nearest_pooling="faces")  # fmt: skip
    labelled = ["chair_0000"]
    result = finetune(config, CHAIRS, tmp_path / "pooled", labelled_shapes=labelled, progress=False)
    segmenter = Segmenter.from_checkpoint(result.last_checkpoint)
    head = segmenter.model.head
    assert segmenter.pools_faces and head.pool_faces
    # The bank: the unpooled run's pixels (same draw), each with its face's unit mean embedding.
    plain_config = replace(config, finetune=replace(config.finetune, nearest_pooling="none"))
    plain = finetune(plain_config, CHAIRS, tmp_path / "plain", labelled_shapes=labelled, progress=False)
    plain_head = Segmenter.from_checkpoint(plain.last_checkpoint).model.head
    source = ViewSource(CHAIRS, config.render)
    mesh = source.mesh("chair_0000")
    views = source.views("chair_0000")
    keys = np.concatenate([v.face_ids[v.face_labels(mesh.face_labels) >= 0] for v in views])
    assert len(keys) == len(head.bank_labels)
    torch.testing.assert_close(head.bank_labels, plain_head.bank_labels)
    torch.testing.assert_close(
        head.bank_features, pool_by_group(plain_head.bank_features, torch.from_numpy(keys)), atol=1e-5, rtol=0
    )
    assert not torch.allclose(head.bank_features, plain_head.bank_features, atol=1e-3)
    # Predicting views: every pixel of one face, in any view, gets the face's one distribution.
    probs = segmenter.predict(views[:4])
    first = {}
    for view, p in zip(views[:4], probs, strict=True):
        for face, i, j in zip(view.face_ids[view.mask], *np.nonzero(view.mask), strict=True):
            np.testing.assert_allclose(p[:, i, j], first.setdefault(int(face), p[:, i, j]), atol=1e-6)
    gt = np.stack([v.face_labels(mesh.face_labels) for v in views[:4]])
    assert (probs.argmax(1)[gt >= 0] == gt[gt >= 0]).mean() > 0.9  # its own faces find themselves
    # Segmenting a shape pools all its views: the faces' labels are the pooled prediction's.
    test_mesh = source.mesh("chair_0003")
    seg = segmenter.segment(test_mesh, normalize=False, keep_views=True)
    all_probs = segmenter.predict(seg.views)
    for view, predicted, p in zip(seg.views, seg.view_predictions, all_probs, strict=True):
        np.testing.assert_array_equal(predicted[view.mask], p.argmax(0)[view.mask])
        np.testing.assert_array_equal(seg.vote.face_labels[view.face_ids[view.mask]], p.argmax(0)[view.mask])
    evaluator = SegmentationEvaluator(result.label_names, convention="shapenet")
    evaluator.process(test_mesh, test_mesh.face_labels, seg.face_labels, shape_id="chair_0003")
    assert evaluator.evaluate()["instance_miou"] > 0.3
    flipped = segmenter.with_segment(replace(segmenter.config.segment, flip=True))
    assert flipped.segment(test_mesh, normalize=False).face_labels.shape == (test_mesh.num_faces,)
    with pytest.raises(ValueError, match="nearest_pooling"):
        head(torch.zeros(1, head.bank_features.shape[1], 4, 4))  # one view alone cannot be pooled
    # Pooled positions: a face's mean surface point finds a bank pixel of the same face.
    positioned = finetune(replace(config, finetune=replace(config.finetune, nearest_position_weight=1e4)),
                          CHAIRS, tmp_path / "positioned", labelled_shapes=labelled, progress=False)  # fmt: skip
    own = Segmenter.from_checkpoint(positioned.last_checkpoint).segment(mesh, normalize=False)
    assert (own.face_labels == mesh.face_labels)[own.fusion.seen].mean() > 0.95
    if torch.cuda.is_available():  # the pool sums on the CPU; the head runs where the network does
        on_gpu = Segmenter.from_checkpoint(positioned.last_checkpoint, device="cuda").segment(
            mesh, normalize=False
        )
        assert (on_gpu.face_labels == own.face_labels).mean() > 0.99
    with pytest.raises(ConfigError, match="nearest_pooling"):
        ft_config(nearest_pooling="vertices")
