"""DeepLabV3+ (Chen et al., ECCV 2018) on a ResNet or EfficientNet-Lite backbone, in plain PyTorch.

Encoder: the backbone (output stride 8 or 16) followed by ASPP: a 1x1 branch,
three 3x3 atrous branches (rates 12, 24, 36 at output stride 8; 6, 12, 18 at 16;
3, 6, 9 at 32) and an image-pooling branch, each 256 channels with BN + ReLU,
concatenated and projected to 256 channels (BN, ReLU, dropout 0.1).

Decoder: the low-level features (stride 4: ResNet ``layer1``, EfficientNet-Lite
stage 2) are reduced to 48 channels by a 1x1 conv (BN, ReLU), concatenated with
the ASPP output upsampled bilinearly (``align_corners=False``) to stride 4, then
refined by two 3x3 convs of 256 channels (BN, ReLU). Output: 256 channels at 1/4 of the input resolution
(precisely ``ceil(H / 4) x ceil(W / 4)``).

Plain (not depthwise-separable) convolutions are used in ASPP and decoder, as
in torchvision's DeepLabV3 and segmentation-models-pytorch's default ResNet
encoders. The image-pooling branch has a BatchNorm on a 1x1 map, so training
mode needs a batch of at least 2 images (as in torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvdecor.models.efficientnet import EfficientNetLite
from mvdecor.models.resnet import ResNet

__all__ = ["ASPP", "ASPP_RATES", "DeepLabV3Plus", "DeepLabV3PlusDecoder"]

#: Atrous rates of ASPP for each backbone output stride.
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = 0 if kernel == 1 else dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class _ASPPPooling(nn.Module):
    """Image-level features: global average pool, 1x1 conv, BN, ReLU, broadcast back."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = _conv_bn_relu(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(self.pool(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3, image pooling; project."""

    def __init__(
        self,
        in_channels: int,
        rates: Sequence[int] = (12, 24, 36),
        out_channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches = [_conv_bn_relu(in_channels, out_channels, 1)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, int(r)) for r in rates]
        branches.append(_ASPPPooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            *_conv_bn_relu(len(branches) * out_channels, out_channels, 1),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.rates = tuple(int(r) for r in rates)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """Low-level 1x1 -> 48 channels, concatenated with the upsampled ASPP output, two 3x3 convs."""

    def __init__(
        self,
        low_channels: int,
        aspp_channels: int = 256,
        low_reduced: int = 48,
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        self.reduce = _conv_bn_relu(low_channels, low_reduced, 1)
        self.fuse = nn.Sequential(
            _conv_bn_relu(aspp_channels + low_reduced, out_channels, 3),
            _conv_bn_relu(out_channels, out_channels, 3),
        )

    def forward(self, aspp: Tensor, low: Tensor) -> Tensor:
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([aspp, self.reduce(low)], dim=1))


class DeepLabV3Plus(nn.Module):
    """Backbone + ASPP + DeepLabV3+ decoder: ``(B, K, H, W) -> (B, 256, H/4, W/4)``.

    Parameters
    ----------
    backbone
        A :class:`~mvdecor.models.resnet.ResNet` or
        :class:`~mvdecor.models.efficientnet.EfficientNetLite`: ``forward`` gives
        ``{"low": stride 4, "high": stride output_stride}`` with ``low_channels``
        and ``high_channels`` channels; its ``output_stride`` picks the ASPP rates.
    channels
        Channels of ASPP and of the decoder output (256 in the paper).
    dropout
        Dropout after the ASPP projection (0 disables it).
    rates
        ASPP atrous rates; default :data:`ASPP_RATES` for the backbone's output stride.
    """

    def __init__(
        self,
        backbone: ResNet | EfficientNetLite,
        channels: int = 256,
        dropout: float = 0.1,
        rates: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if rates is None:
            rates = ASPP_RATES[backbone.output_stride]
        self.backbone = backbone
        self.aspp = ASPP(backbone.high_channels, rates, channels, dropout)
        self.decoder = DeepLabV3PlusDecoder(backbone.low_channels, channels, 48, channels)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        return self.decoder(self.aspp(features["high"]), features["low"])
