"""Pictures of views, labels and results."""

from mvdecor.viz.images import (
    label_palette,
    labels_to_rgb,
    save_image,
    view_panels,
    view_sheet,
)

__all__ = ["label_palette", "labels_to_rgb", "save_image", "view_panels", "view_sheet"]
