"""ResNet backbones: torchvision names, output strides, checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from mvdecor.errors import ConfigError
from mvdecor.models.resnet import (
    BACKBONES,
    BasicBlock,
    Bottleneck,
    ResNet,
    load_torchvision_state_dict,
    resnet18,
    resnet50,
)


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet18_keys() -> list[str]:
    """torchvision.models.resnet18().state_dict().keys(), written out from its layout."""
    keys = ["conv1.weight", *(f"bn1.{b}" for b in _BN)]
    for layer in (1, 2, 3, 4):
        for block in (0, 1):
            p = f"layer{layer}.{block}."
            keys += [p + "conv1.weight", *(p + f"bn1.{b}" for b in _BN)]
            keys += [p + "conv2.weight", *(p + f"bn2.{b}" for b in _BN)]
            if layer > 1 and block == 0:
                keys += [p + "downsample.0.weight", *(p + f"downsample.1.{b}" for b in _BN)]
    return [*keys, "fc.weight", "fc.bias"]


def _torchvision_like_state(model: ResNet, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """A random state dict in torchvision's layout (with fc) for ``model``'s architecture."""
    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen)
    state["fc.weight"] = torch.randn(num_classes, model.high_channels, generator=gen)
    state["fc.bias"] = torch.randn(num_classes, generator=gen)
    return state


def test_registry_names():
    assert list(BACKBONES) == ["efficientnet_lite0", "resnet18", "resnet34", "resnet50"]


def test_resnet18_keys_are_torchvision_keys_without_fc():
    expected = torchvision_resnet18_keys()
    assert len(expected) == 122
    assert {
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean",
    } <= set(expected)
    assert list(resnet18().state_dict()) == [k for k in expected if not k.startswith("fc.")]


def test_resnet50_key_layout():
    keys = list(resnet50().state_dict())
    assert len(keys) == 320 - 2  # torchvision's resnet50 has 320 entries, 2 of them fc
    for key in ("layer1.0.downsample.0.weight", "layer4.2.conv3.weight", "layer3.5.bn3.running_var"):
        assert key in keys
    assert not any(k.startswith(("fc.", "avgpool.")) for k in keys)


@pytest.mark.parametrize(
    ("name", "low", "high"), [("resnet18", 64, 512), ("resnet34", 64, 512), ("resnet50", 256, 2048)]
)
@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_shapes(name, low, high, output_stride):
    torch.manual_seed(0)
    model = BACKBONES.get(name)(in_channels=5, output_stride=output_stride).eval()
    assert (model.low_channels, model.high_channels, model.output_stride) == (low, high, output_stride)
    with torch.no_grad():
        out = model(torch.randn(1, 5, 64, 64))
    assert out["low"].shape == (1, low, 16, 16)
    assert out["high"].shape == (1, high, 64 // output_stride, 64 // output_stride)


def test_dilation_as_torchvision():
    model = resnet18(output_stride=8)
    assert model.replace_stride_with_dilation == (False, True, True)
    assert model.layer2[0].conv1.stride == (2, 2)
    assert model.layer3[0].conv1.stride == (1, 1) and model.layer3[0].downsample[0].stride == (1, 1)
    # the first block of a dilated layer keeps the previous dilation (torchvision's rule)
    assert model.layer3[0].conv1.dilation == (1, 1) and model.layer3[1].conv1.dilation == (2, 2)
    assert model.layer4[0].conv2.dilation == (2, 2) and model.layer4[1].conv2.dilation == (4, 4)
    model = resnet50(output_stride=16)
    assert model.layer4[0].conv2.stride == (1, 1) and model.layer4[2].conv2.dilation == (2, 2)
    assert isinstance(model.layer1[0], Bottleneck) and isinstance(resnet18().layer1[0], BasicBlock)
    with pytest.raises(ValueError, match="output_stride"):
        resnet18(output_stride=4)


def test_load_expands_first_conv_to_seven_channels(tmp_path):
    source = _torchvision_like_state(resnet18())
    wrapped = {"state_dict": {"module." + k: v for k, v in source.items()}, "epoch": 3}
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(wrapped, path)

    model = resnet18(in_channels=7, output_stride=8)
    report = load_torchvision_state_dict(model, path)
    rgb = source["conv1.weight"]
    w = model.conv1.weight.detach()
    assert w.shape == (64, 7, 7, 7)
    torch.testing.assert_close(w[:, :3], rgb)
    for c in range(3, 7):
        torch.testing.assert_close(w[:, c], rgb.mean(dim=1))
    state = model.state_dict()
    for key in ("layer3.1.bn2.running_var", "layer4.0.downsample.0.weight", "bn1.bias"):
        torch.testing.assert_close(state[key], source[key])
    assert set(report.ignored) == {"fc.weight", "fc.bias"}
    assert report.missing == () and len(report.loaded) == 120
    assert "RGB filters" in report.first_conv and str(path) in str(report)


def test_load_grey_layout_and_old_checkpoints():
    source = _torchvision_like_state(resnet18())
    del source["fc.bias"]
    source = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}  # old zoo files
    model = resnet18(in_channels=5)
    report = load_torchvision_state_dict(model, {"model": source}, rgb_channels=())
    mean = source["conv1.weight"].mean(dim=1)
    for c in range(5):
        torch.testing.assert_close(model.conv1.weight.detach()[:, c], mean)
    assert report.missing == ()
    assert int(model.bn1.num_batches_tracked) == 0
    # three channels: a plain copy
    model3 = resnet18()
    assert load_torchvision_state_dict(model3, source).first_conv == "copied"
    torch.testing.assert_close(model3.conv1.weight.detach(), source["conv1.weight"])


def test_wrong_architecture_names_the_file(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(_torchvision_like_state(resnet50()), path)
    with pytest.raises(ConfigError) as info:
        load_torchvision_state_dict(resnet18(in_channels=7), path)
    message = str(info.value)
    assert info.value.path == str(path) and str(path) in message
    assert "shape mismatches" in message and "unexpected keys" in message


def test_strict_and_non_strict_missing_keys():
    source = _torchvision_like_state(resnet18())
    del source["layer4.1.conv2.weight"]
    with pytest.raises(ConfigError, match="missing"):
        load_torchvision_state_dict(resnet18(), source)
    report = load_torchvision_state_dict(resnet18(), source, strict=False)
    assert report.missing == ("layer4.1.conv2.weight",)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_torchvision_state_dict(resnet18(), tmp_path / "nope.pth")
    assert info.value.path == str(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_torchvision_state_dict(resnet18(), junk)
    assert info.value.path == str(junk)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(ConfigError, match="not a state dict"):
        load_torchvision_state_dict(resnet18(), notdict)
