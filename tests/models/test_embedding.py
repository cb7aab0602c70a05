"""DeepLabV3+ embedding network, segmentation head and net."""

from __future__ import annotations

import pytest
import torch

from mvdecor.models.deeplab import ASPP_RATES, DeepLabV3Plus
from mvdecor.models.embedding import (
    EMBEDDING_HEADS,
    EmbeddingNet,
    SegmentationHead,
    SegmentationNet,
    count_parameters,
)
from mvdecor.models.losses import dense_info_nce
from mvdecor.models.resnet import resnet18


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplab_output_quarter_resolution(output_stride):
    torch.manual_seed(0)
    net = DeepLabV3Plus(resnet18(in_channels=5, output_stride=output_stride)).eval()
    assert net.aspp.rates == ASPP_RATES[output_stride]
    assert ASPP_RATES[8] == (12, 24, 36) and ASPP_RATES[16] == (6, 12, 18)
    with torch.no_grad():
        out = net(torch.randn(2, 5, 64, 96))
    assert out.shape == (2, 256, 16, 24)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_embedding_shape_and_unit_norm(output_stride):
    torch.manual_seed(0)
    net = EmbeddingNet("resnet18", in_channels=7, output_stride=output_stride).eval()
    x = torch.randn(2, 7, 32, 64)
    with torch.no_grad():
        emb = net(x)
        raw = net(x, normalize=False)
    assert emb.shape == (2, 64, 32, 64)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2, 32, 64))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(2, 32, 64))
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=1), emb)


def test_embedding_resnet50():
    torch.manual_seed(0)
    net = EmbeddingNet("resnet50", in_channels=5, embed_dim=32, output_stride=8).eval()
    with torch.no_grad():
        emb = net(torch.randn(1, 5, 64, 64))
    assert emb.shape == (1, 32, 64, 64)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1, 64, 64))
    assert net.config == {
        "backbone": "resnet50",
        "in_channels": 5,
        "embed_dim": 32,
        "output_stride": 8,
        "dropout": 0.1,
        "head": "paper",
    }


def test_bad_inputs():
    net = EmbeddingNet("resnet18", in_channels=5).eval()
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, 5, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        net(torch.randn(1, 7, 32, 32))
    with pytest.raises(ValueError, match="output_stride"):
        EmbeddingNet("resnet18", output_stride=32)
    with pytest.raises(KeyError, match="resnet101"):
        EmbeddingNet("resnet101")


def test_deterministic_given_seed():
    torch.manual_seed(3)
    a = EmbeddingNet("resnet18", in_channels=5).state_dict()
    torch.manual_seed(3)
    b = EmbeddingNet("resnet18", in_channels=5).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_parameter_counts():
    net = EmbeddingNet("resnet18", in_channels=7)
    # torchvision resnet18 has 11,689,512 parameters, 513,000 of them in fc;
    # 4 extra input channels add 4 * 64 * 7 * 7
    assert count_parameters(net.backbone) == 11_689_512 - 513_000 + 4 * 64 * 49
    assert count_parameters(net) > count_parameters(net.backbone)
    net.backbone.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == count_parameters(net) - count_parameters(
        net.backbone
    )


def test_pretrained_path(tmp_path):
    torch.manual_seed(1)
    source = resnet18().state_dict()
    path = tmp_path / "r18.pth"
    torch.save(source, path)
    net = EmbeddingNet("resnet18", in_channels=5, pretrained_path=path, rgb_channels=())
    assert net.load_report is not None and net.load_report.missing == ()
    torch.testing.assert_close(net.backbone.conv1.weight[:, 4].detach(), source["conv1.weight"].mean(dim=1))
    torch.testing.assert_close(net.backbone.layer2[1].conv2.weight.detach(), source["layer2.1.conv2.weight"])


@pytest.mark.parametrize("head", ["paper", "light"])
def test_gradients_flow_to_every_parameter(head):
    torch.manual_seed(0)
    net = EmbeddingNet("resnet18", in_channels=5, head=head)
    x = torch.randn(2, 5, 32, 32)
    emb = net(x)
    idx = torch.randperm(32 * 32)[:50].repeat(2, 1)
    loss = dense_info_nce(emb[:1], emb[1:], idx[:1], idx[1:])
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_segmentation_net_logits():
    torch.manual_seed(0)
    net = SegmentationNet(EmbeddingNet("resnet18", in_channels=5, embed_dim=16), num_classes=9)
    assert isinstance(net.head, SegmentationHead) and net.head.num_classes == 9
    x = torch.randn(2, 5, 32, 32)
    logits = net(x)
    assert logits.shape == (2, 9, 32, 32)
    logits.logsumexp(dim=1).mean().backward()
    assert net.embedding.backbone.conv1.weight.grad is not None
    net.eval()
    with torch.no_grad():
        logits2, emb = net.forward_with_embedding(x)
        torch.testing.assert_close(logits2, net(x))
    assert emb.shape == (2, 16, 32, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2, 32, 32))
    with pytest.raises(ValueError):
        SegmentationHead(16, 0)


# ---------------------------------------------------------------- embedding heads
#: The paper head's parameters and buffers, as every checkpoint so far has them.
PAPER_HEAD_STATE = {
    "head.0.0.weight": (256,),
    "head.0.0.bias": (256,),
    "head.0.0.running_mean": (256,),
    "head.0.0.running_var": (256,),
    "head.0.0.num_batches_tracked": (),
    "head.0.3.weight": (128, 256, 3, 3),
    "head.1.0.weight": (128,),
    "head.1.0.bias": (128,),
    "head.1.0.running_mean": (128,),
    "head.1.0.running_var": (128,),
    "head.1.0.num_batches_tracked": (),
    "head.1.3.weight": (64, 128, 3, 3),
    "head.1.3.bias": (64,),
}


def test_heads_are_named():
    assert {"paper", "light"} <= set(EMBEDDING_HEADS)
    assert EmbeddingNet("resnet18", in_channels=5).config["head"] == "paper"


@pytest.mark.parametrize("normalize", [True, False])
def test_light_head_shape_and_unit_norm(normalize):
    torch.manual_seed(0)
    net = EmbeddingNet("resnet18", in_channels=5, embed_dim=16, output_stride=16, head="light").eval()
    with torch.no_grad():
        emb = net(torch.randn(2, 5, 32, 48), normalize=normalize)
    assert emb.shape == (2, 16, 32, 48)
    norms = emb.norm(dim=1)
    if normalize:
        torch.testing.assert_close(norms, torch.ones(2, 32, 48))
    else:
        assert not torch.allclose(norms, torch.ones(2, 32, 48))


def test_light_head_is_a_quarter_resolution_conv_interpolated():
    torch.manual_seed(0)
    net = EmbeddingNet("resnet18", in_channels=5, embed_dim=8, head="light").eval()
    x = torch.randn(1, 5, 32, 32)
    with torch.no_grad():
        features = net.encoder(x)
        bn, conv = net.head[0], net.head[2]
        assert features.shape[-2:] == (8, 8) and conv.kernel_size == (1, 1) and conv.bias is not None
        coarse = conv(torch.relu(bn(features)))
        expected = torch.nn.functional.interpolate(
            coarse, size=(32, 32), mode="bilinear", align_corners=False
        )
        torch.testing.assert_close(net(x, normalize=False), expected)


def test_paper_head_is_unchanged_and_the_default():
    torch.manual_seed(0)
    state = EmbeddingNet("resnet18", in_channels=5, head="paper").state_dict()
    head_state = {k: tuple(v.shape) for k, v in state.items() if k.startswith("head.")}
    assert head_state == PAPER_HEAD_STATE
    EmbeddingNet("resnet18", in_channels=5).load_state_dict(state, strict=True)
    light = EmbeddingNet("resnet18", in_channels=5, head="light")
    with pytest.raises(RuntimeError):
        light.load_state_dict(state, strict=True)


def test_unknown_head_is_an_error():
    with pytest.raises(ValueError, match=r"'tiny'.*light, paper"):
        EmbeddingNet("resnet18", in_channels=5, head="tiny")


def test_config_rebuilds_the_network():
    light = EmbeddingNet("resnet18", in_channels=5, embed_dim=8, head="light")
    rebuilt = EmbeddingNet(**light.config)
    assert rebuilt.config == light.config
    rebuilt.load_state_dict(light.state_dict(), strict=True)
    # A configuration saved before heads were named rebuilds the paper head.
    old = {k: v for k, v in EmbeddingNet("resnet18", in_channels=5).config.items() if k != "head"}
    net = EmbeddingNet(**old)
    assert net.config["head"] == "paper"
    assert {
        k: tuple(v.shape) for k, v in net.state_dict().items() if k.startswith("head.")
    } == PAPER_HEAD_STATE


def test_checkpoint_config_without_head_builds_the_paper_head():
    from mvdecor.config import ModelConfig, config_from_dict, load_config
    from mvdecor.errors import ConfigError
    from mvdecor.train.pretrain import build_model

    assert ModelConfig().head == "paper"
    saved = load_config("cpu").to_dict()
    del saved["model"]["head"]  # as in checkpoints written before heads were named
    config = config_from_dict(saved)
    assert config.model.head == "paper"
    net = build_model(config)
    assert net.config["head"] == "paper"
    assert {
        k: tuple(v.shape) for k, v in net.state_dict().items() if k.startswith("head.")
    } == PAPER_HEAD_STATE
    saved["model"]["head"] = "light"
    assert build_model(config_from_dict(saved)).config["head"] == "light"
    saved["model"]["head"] = "tiny"
    with pytest.raises(ConfigError, match=r"model\.head must be one of light, paper"):
        build_model(config_from_dict(saved))
