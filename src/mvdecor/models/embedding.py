"""The MvDeCor networks: the per-pixel embedding network and the segmentation head.

:class:`EmbeddingNet` (the paper's Φ): DeepLabV3+ on a ResNet, whose 256-channel
output at 1/4 resolution is brought to full resolution by two stages of
[BN, ReLU, bilinear x2, 3x3 conv] (256 -> 128 -> ``embed_dim``), giving a
``embed_dim``-dimensional (64 in the paper) embedding per pixel, L2-normalised
for the contrastive loss.

:class:`SegmentationHead` (the paper's Θ): BN, ReLU, 3x3 conv from the
embedding to ``num_classes`` logits. :class:`SegmentationNet` = Φ then Θ.

**Input size**: ``H`` and ``W`` must be multiples of 4, the decoder's stride,
so that the two x2 upsamplings land exactly on the input size (otherwise a
ValueError). Any multiple of 4 works; multiples of the backbone's output stride
(8 or 16) additionally align the coarse ASPP grid exactly with the pixel grid.
The renders (128 or 256 pixels) are multiples of both.
"""

from __future__ import annotations

import os

import torch.nn.functional as F
from torch import Tensor, nn

from mvdecor.models.deeplab import DeepLabV3Plus
from mvdecor.models.resnet import BACKBONES, LoadReport, load_torchvision_state_dict

__all__ = ["EmbeddingNet", "SegmentationHead", "SegmentationNet", "count_parameters"]

#: The decoder's output stride: input sizes must be multiples of it.
INPUT_MULTIPLE = 4


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``model``; buffers are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class _UpStage(nn.Sequential):
    """BN, ReLU, bilinear x2 (``align_corners=False``), 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool) -> None:
        super().__init__(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=bias),
        )


class EmbeddingNet(nn.Module):
    """Per-pixel embedding network Φ: ``(B, K, H, W) -> (B, embed_dim, H, W)``.

    Parameters
    ----------
    backbone
        A name in :data:`~mvdecor.models.resnet.BACKBONES` (``resnet18``,
        ``resnet34``, ``resnet50``).
    in_channels
        Input channels ``K`` (:func:`~mvdecor.models.inputs.channel_count`).
    embed_dim
        Embedding size ``D`` (64 in the paper).
    output_stride
        The backbone's output stride, 8 (paper) or 16.
    pretrained_path
        Optional torchvision ImageNet checkpoint for the backbone (the paper
        uses random initialisation). Its RGB filters go to ``rgb_channels`` and
        their mean to every other input channel; see
        :func:`~mvdecor.models.resnet.load_torchvision_state_dict`. The load
        report is kept in ``self.load_report``.
    rgb_channels
        Input channels holding R, G, B, for ``pretrained_path``
        (:func:`~mvdecor.models.inputs.rgb_channel_indices`); default: the first three.
    dropout
        Dropout after the ASPP projection.

    ``forward(x, normalize=True)`` returns embeddings L2-normalised along ``D``;
    ``normalize=False`` gives the raw output of the last convolution.
    ``config`` holds the constructor arguments needed to rebuild the network
    for a checkpoint (``EmbeddingNet(**net.config)``).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 7,
        embed_dim: int = 64,
        output_stride: int = 8,
        pretrained_path: str | os.PathLike[str] | None = None,
        *,
        rgb_channels: tuple[int, ...] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride!r}")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        resnet = BACKBONES.get(backbone)(in_channels=in_channels, output_stride=output_stride)
        self.load_report: LoadReport | None = None
        if pretrained_path is not None:
            self.load_report = load_torchvision_state_dict(
                resnet, pretrained_path, strict=True, rgb_channels=rgb_channels
            )
        self.encoder = DeepLabV3Plus(resnet, channels=256, dropout=dropout)
        self.head = nn.Sequential(
            _UpStage(256, 128, bias=False),  # followed by a BN: no bias needed
            _UpStage(128, embed_dim, bias=True),
        )
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        self.config = {
            "backbone": backbone,
            "in_channels": int(in_channels),
            "embed_dim": int(embed_dim),
            "output_stride": int(output_stride),
            "dropout": float(dropout),
        }

    @property
    def backbone(self) -> nn.Module:
        """The ResNet (``self.encoder.backbone``)."""
        return self.encoder.backbone

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless ``x`` is ``(B, in_channels, H, W)`` with H, W multiples of 4."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE or h == 0 or w == 0:
            raise ValueError(
                f"input height and width must be positive multiples of {INPUT_MULTIPLE}, got {h}x{w}"
            )

    def forward(self, x: Tensor, normalize: bool = True) -> Tensor:
        self.check_input(x)
        features = self.head(self.encoder(x))
        return F.normalize(features, dim=1) if normalize else features


class SegmentationHead(nn.Sequential):
    """Θ: BN, ReLU, 3x3 conv from ``embed_dim`` channels to ``num_classes`` logits."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        super().__init__(
            nn.BatchNorm2d(embed_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(embed_dim, num_classes, kernel_size=3, padding=1),
        )
        self.num_classes = int(num_classes)


class SegmentationNet(nn.Module):
    """Φ then Θ: ``(B, K, H, W) -> logits (B, num_classes, H, W)``.

    The head reads the **raw** (un-normalised) embedding. Its first layer is a
    BatchNorm, which rescales every channel anyway, so the L2 normalisation
    would add nothing for it; that normalisation belongs to the contrastive
    loss's cosine similarity. The raw features also keep their norm, which
    normalisation throws away. :meth:`forward_with_embedding` returns the
    normalised embedding as well, for the λ·InfoNCE regulariser.
    """

    def __init__(self, embedding: EmbeddingNet, num_classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.head = SegmentationHead(embedding.embed_dim, num_classes)
        self.num_classes = int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embedding(x, normalize=False))

    def forward_with_embedding(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, L2-normalised embedding)`` from one pass through Φ."""
        features = self.embedding(x, normalize=False)
        return self.head(features), F.normalize(features, dim=1)
