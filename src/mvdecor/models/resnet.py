"""ResNet-18/34/50 backbones in plain PyTorch, with torchvision's parameter names.

torchvision cannot be imported next to the CPU build of torch used here (its
registry wheels are CUDA builds), so the ResNet is re-implemented. Parameter and
buffer names are exactly torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ...), so a torchvision ImageNet checkpoint loads with
:func:`load_torchvision_state_dict`. The classifier (``avgpool``, ``fc``) is left
out: a backbone returns feature maps, and ``fc.*`` keys of a checkpoint are
ignored when loading.

``replace_stride_with_dilation`` works as in torchvision (a flag for each of
``layer2``, ``layer3``, ``layer4``): output stride 8 dilates ``layer3`` and
``layer4``, output stride 16 dilates ``layer4``. Unlike torchvision, the
:class:`BasicBlock` (ResNet-18/34) supports dilation too, so every backbone runs
at output stride 8.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mvdecor.errors import ConfigError
from mvdecor.registry import Registry

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "LoadReport",
    "ResNet",
    "load_torchvision_state_dict",
    "resnet18",
    "resnet34",
    "resnet50",
    "stride_to_dilation",
]

#: Backbone factories ``f(in_channels=3, output_stride=32) -> ResNet`` by name.
BACKBONES: Registry = Registry("backbone")

#: Checkpoint keys that belong to torchvision's classifier, ignored on loading.
_CLASSIFIER_PREFIXES = ("fc.", "avgpool.")


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        bias=False,
    )


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34), torchvision's layout; dilation allowed."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 block (ResNet-50), stride on the 3x3 ("ResNet v1.5") as torchvision."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def stride_to_dilation(output_stride: int) -> list[bool]:
    """torchvision's ``replace_stride_with_dilation`` for an output stride of 8, 16 or 32."""
    table = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}
    if output_stride not in table:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    return list(table[output_stride])


class ResNet(nn.Module):
    """A ResNet feature extractor with torchvision's parameter names, without ``fc``.

    Parameters
    ----------
    block
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers
        Number of blocks in ``layer1`` ... ``layer4``.
    in_channels
        Channels of the input image (3 for RGB; 7 for grey/RGB + normal + depth...).
    replace_stride_with_dilation
        Three flags, for ``layer2``, ``layer3``, ``layer4``: replace that layer's
        stride 2 by dilation (as torchvision). ``None`` means no dilation (stride 32).

    ``forward(x)`` returns ``{"low": layer1 output (stride 4, low_channels),
    "high": layer4 output (stride output_stride, high_channels)}``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        in_channels: int = 3,
        replace_stride_with_dilation: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation should be None or a 3-element tuple, "
                f"got {replace_stride_with_dilation}"
            )
        self.in_channels = int(in_channels)
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.low_channels = 64 * block.expansion
        self.high_channels = 512 * block.expansion
        self.replace_stride_with_dilation = tuple(bool(f) for f in replace_stride_with_dilation)
        self.output_stride = 32 // (2 ** sum(self.replace_stride_with_dilation))

        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
    ) -> nn.Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, dilation=self.dilation))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        high = self.layer4(self.layer3(self.layer2(low)))
        return {"low": low, "high": high}


@BACKBONES.register("resnet18")
def resnet18(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]); low 64 channels, high 512."""
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels, stride_to_dilation(output_stride))


@BACKBONES.register("resnet34")
def resnet34(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-34 (BasicBlock, [3, 4, 6, 3]); low 64 channels, high 512."""
    return ResNet(BasicBlock, [3, 4, 6, 3], in_channels, stride_to_dilation(output_stride))


@BACKBONES.register("resnet50")
def resnet50(in_channels: int = 3, output_stride: int = 32) -> ResNet:
    """ResNet-50 (Bottleneck, [3, 4, 6, 3]); low 256 channels, high 2048."""
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels, stride_to_dilation(output_stride))


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_torchvision_state_dict` did.

    Attributes
    ----------
    source
        The checkpoint's path, or ``"<state dict>"``.
    loaded
        Backbone keys set from the checkpoint.
    missing
        Backbone keys the checkpoint lacks (left as initialised). Only possible
        with ``strict=False``; a missing BatchNorm ``num_batches_tracked`` (old
        torchvision checkpoints have none) is set to 0 and not listed.
    ignored
        Checkpoint keys not used: the classifier (``fc.*``) and, with
        ``strict=False``, keys the backbone does not have.
    first_conv
        How ``conv1.weight`` was filled (``"copied"``, or how its channels were expanded).
    """

    source: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    first_conv: str = "copied"

    def __str__(self) -> str:
        return (
            f"{self.source}: loaded {len(self.loaded)} tensors, {len(self.missing)} missing, "
            f"{len(self.ignored)} ignored; conv1 {self.first_conv}"
        )


def read_weights_file(path: Path) -> object:
    """``torch.load`` of an ImageNet weights file (tensors only), any failure a ConfigError naming it."""
    if not path.exists():
        raise ConfigError(path, "checkpoint file does not exist")
    if not path.is_file():
        raise ConfigError(path, "checkpoint path is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            path,
            "cannot read checkpoint: torch.load(weights_only=True) failed; the file is corrupt, "
            "not a PyTorch checkpoint, or pickles objects other than tensors",
        ) from exc
    except Exception as exc:  # zip, EOF and other I/O errors
        reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else "empty or truncated"
        raise ConfigError(path, f"cannot read checkpoint ({type(exc).__name__}: {reason[:160]})") from exc


def unwrap_state_dict(obj: object, source: str | None) -> dict[str, Tensor]:
    """The tensor dict inside a checkpoint, ``module.`` prefixes removed."""
    for _ in range(3):  # {"state_dict": {...}} or {"model": {...}}, possibly nested
        if isinstance(obj, Mapping):
            for wrapper in ("state_dict", "model"):
                inner = obj.get(wrapper)
                if isinstance(inner, Mapping):
                    obj = inner
                    break
            else:
                break
    if not isinstance(obj, Mapping):
        raise ConfigError(source, f"checkpoint holds a {type(obj).__name__}, not a state dict")
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ConfigError(source, f"checkpoint key {key!r} is not a string")
        if not isinstance(value, Tensor):
            continue  # e.g. an epoch counter next to the weights
        while key.startswith("module."):
            key = key[len("module.") :]
        state[key] = value
    if not state:
        raise ConfigError(source, "checkpoint contains no tensors")
    return state


def expand_first_conv(weight: Tensor, in_channels: int, rgb_channels: Sequence[int]) -> tuple[Tensor, str]:
    """Fit an RGB ``conv1`` filter bank ``(64, 3, k, k)`` to ``in_channels`` inputs."""
    out_c, _, kh, kw = weight.shape
    mean = weight.mean(dim=1, keepdim=True)
    new = mean.expand(out_c, in_channels, kh, kw).clone()
    for rgb_index, channel in enumerate(rgb_channels):
        new[:, channel] = weight[:, rgb_index]
    if list(rgb_channels):
        how = f"RGB filters to channels {list(rgb_channels)}, their mean to the other {in_channels - 3}"
    else:
        how = f"mean of the RGB filters to all {in_channels} channels"
    return new, how


def load_torchvision_state_dict(
    model: ResNet,
    state_dict_or_path: Mapping[str, Tensor] | str | os.PathLike[str],
    strict: bool = True,
    rgb_channels: Sequence[int] | None = None,
) -> LoadReport:
    """Load a torchvision-layout ResNet checkpoint into ``model`` (a :class:`ResNet`).

    Parameters
    ----------
    model
        The backbone to fill (modified in place).
    state_dict_or_path
        A state dict, or the path of a ``.pth`` file holding one (read with
        ``torch.load(weights_only=True)``); it may be wrapped in
        ``{"state_dict": ...}`` or ``{"model": ...}`` and its keys may carry
        ``module.`` prefixes (DataParallel). ``fc.*`` / ``avgpool.*`` keys are ignored.
    strict
        If true, every backbone key must be in the checkpoint and the checkpoint
        may hold no other keys (besides the classifier). If false, missing and
        unexpected keys are reported in the returned :class:`LoadReport` instead.
        A tensor whose shape does not match is an error either way.
    rgb_channels
        Input channels of ``model`` that receive the checkpoint's R, G, B filters
        when ``model.in_channels != 3``; every other input channel gets the mean
        of the three RGB filters (ShapePFCN style). Default: ``(0, 1, 2)`` when the
        model has at least 3 input channels, else none (a grey-only input gets
        the mean). Pass ``()`` for inputs with no RGB channels (grey + normal +
        depth); :func:`mvdecor.models.inputs.rgb_channel_indices` gives the right
        value for a list of modalities.

    Raises
    ------
    ConfigError
        The file is missing or unreadable, holds no state dict, or its
        architecture does not match (the mismatches are listed briefly).
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        path = Path(state_dict_or_path)
        source = str(path)
        state = unwrap_state_dict(read_weights_file(path), source)
    else:
        path, source = None, "<state dict>"
        state = unwrap_state_dict(state_dict_or_path, None)

    ignored = sorted(k for k in state if k.startswith(_CLASSIFIER_PREFIXES))
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    return fit_state_dict(
        model,
        state,
        first_conv_key="conv1.weight",
        rgb_channels=rgb_channels,
        strict=strict,
        ignored=ignored,
        source=source,
        path=path,
        keys_name="backbone",
        misfit=f"checkpoint does not fit a {type(model).__name__} with {_describe(model)}",
    )


def fit_state_dict(
    model: nn.Module,
    state: Mapping[str, Tensor],
    *,
    first_conv_key: str,
    rgb_channels: Sequence[int] | None,
    strict: bool,
    ignored: Sequence[str],
    source: str,
    path: Path | None,
    keys_name: str,
    misfit: str,
) -> LoadReport:
    """Load ``state`` (in ``model``'s key names, classifier keys already set aside as ``ignored``)
    into ``model``, fitting the RGB first convolution ``first_conv_key`` to the model's inputs.

    Shared by the ImageNet loaders of every backbone: a tensor whose shape does not
    fit is an error; with ``strict``, so are missing and unexpected keys (else they
    are reported). ``keys_name`` names the model's keys in the error and ``misfit``
    opens it; ``path`` is the file the error names.
    """
    own = model.state_dict()
    in_channels = own[first_conv_key].shape[1]
    if rgb_channels is None:
        rgb_channels = (0, 1, 2) if in_channels >= 3 else ()
    rgb_channels = tuple(int(c) for c in rgb_channels)
    if rgb_channels and (len(rgb_channels) != 3 or not all(0 <= c < in_channels for c in rgb_channels)):
        raise ValueError(f"rgb_channels must be 3 channel indices below {in_channels}, got {rgb_channels}")

    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    mismatched: list[str] = []
    new_state = dict(own)
    loaded: list[str] = []
    first_conv = "copied"
    for key, target in own.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                new_state[key] = torch.zeros_like(target)
            continue
        value = state[key]
        if (
            key == first_conv_key
            and value.shape != target.shape
            and value.ndim == 4
            and value.shape[1] == 3
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        ):
            value, first_conv = expand_first_conv(value, in_channels, rgb_channels)
        if value.shape != target.shape:
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
            continue
        new_state[key] = value.to(dtype=target.dtype)
        loaded.append(key)

    problems = []
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatches (checkpoint vs model): " + brief_list(mismatched)
        )
    if strict and missing:
        problems.append(f"{len(missing)} {keys_name} keys missing: " + brief_list(missing))
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: " + brief_list(unexpected))
    if problems:
        raise ConfigError(path, f"{misfit}; " + "; ".join(problems))
    model.load_state_dict(new_state, strict=True)
    return LoadReport(
        source=source,
        loaded=tuple(loaded),
        missing=tuple(missing),
        ignored=tuple([*ignored, *unexpected]),
        first_conv=first_conv,
    )


def brief_list(items: Sequence[str], limit: int = 4) -> str:
    """The first ``limit`` items, comma-separated, and how many more (for one-line errors)."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _describe(model: ResNet) -> str:
    block = model.layer1[0]
    kind = "Bottleneck" if isinstance(block, Bottleneck) else "BasicBlock"
    depths = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
    return f"{kind} layers {depths}, {model.conv1.weight.shape[1]} input channels"
