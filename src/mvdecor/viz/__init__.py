"""Pictures of views, labels and results."""

from mvdecor.viz.curves import plot_training_curves, read_metric_csv
from mvdecor.viz.embeddings import (
    ColorTransfer,
    EmbeddingSheet,
    color_transfer,
    embed_views,
    embedding_sheet,
    match_pixels,
    pca_rgb,
    position_colors,
    ramp_colors,
    write_embedding_sheet,
)
from mvdecor.viz.images import (
    VoteWeightPicture,
    label_palette,
    labels_to_rgb,
    legend_strip,
    part_labels_sheet,
    save_image,
    stack_images,
    text_block,
    text_strip,
    view_panels,
    view_sheet,
    vote_weight_sheet,
)
from mvdecor.viz.report import MetricsTable, Picture, ReportMesh, write_report
from mvdecor.viz.run_reports import write_segment_report

__all__ = ["label_palette", "labels_to_rgb", "save_image", "view_panels", "view_sheet"]
# Fig. 3, labels and vote weights, training curves.
__all__ += [
    "ColorTransfer",
    "EmbeddingSheet",
    "VoteWeightPicture",
    "color_transfer",
    "embed_views",
    "embedding_sheet",
    "legend_strip",
    "match_pixels",
    "part_labels_sheet",
    "pca_rgb",
    "plot_training_curves",
    "position_colors",
    "ramp_colors",
    "read_metric_csv",
    "stack_images",
    "text_block",
    "text_strip",
    "vote_weight_sheet",
    "write_embedding_sheet",
]
# The HTML report.
__all__ += ["MetricsTable", "Picture", "ReportMesh", "write_report", "write_segment_report"]
