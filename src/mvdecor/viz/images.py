"""Turn rendered buffers into 8-bit pictures (Pillow only, no plotting library).

Besides single views: layout helpers (:func:`stack_images`, :func:`text_strip`,
:func:`legend_strip`...), part colours of several views side by side
(:func:`part_labels_sheet`, e.g. prediction against ground truth) and the
per-view weights of the entropy-weighted vote (:func:`vote_weight_sheet`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# label_palette and save_image live in leaf modules; re-exported here for viz callers.
from mvdecor.fileio import save_image as save_image
from mvdecor.palette import BACKGROUND_RGB as BACKGROUND_RGB
from mvdecor.palette import label_palette as label_palette
from mvdecor.render.views import RenderedView


def labels_to_rgb(labels: np.ndarray, num_labels: int | None = None) -> np.ndarray:
    """Colour an integer label image ``(H, W)``; negative labels (background) are white."""
    labels = np.asarray(labels)
    n = int(labels.max()) + 1 if num_labels is None else num_labels
    palette = label_palette(max(n, 1))
    out = np.empty((*labels.shape, 3), np.uint8)
    out[...] = BACKGROUND_RGB
    fg = labels >= 0
    out[fg] = palette[np.clip(labels[fg], 0, len(palette) - 1)]
    return out


def _to_uint8(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    out = (image * 255.0 + 0.5).astype(np.uint8)
    out[~mask] = BACKGROUND_RGB
    return out


def view_panels(
    view: RenderedView, face_labels: np.ndarray | None = None, num_labels: int | None = None
) -> dict[str, np.ndarray]:
    """One ``(H, W, 3)`` uint8 picture per buffer of a view.

    Keys: ``shading``, ``rgb``, ``normals`` (world normal mapped from
    ``[-1, 1]`` to colour), ``depth`` (normalised, near is dark), ``face_ids``
    (a random colour per face), and ``labels`` when ``face_labels`` is given.
    """
    mask = view.mask
    panels = {
        "shading": _to_uint8(view.shading, mask),
        "rgb": _to_uint8(view.rgb, mask),
        "normals": _to_uint8((view.normals + 1.0) / 2.0, mask),
        "depth": _to_uint8(view.depth_normalized, mask),
    }
    rng = np.random.default_rng(0)
    n_faces = int(view.face_ids.max()) + 1 if mask.any() else 1
    face_colors = rng.integers(30, 230, size=(n_faces, 3), dtype=np.uint8)
    ids = np.full((*mask.shape, 3), BACKGROUND_RGB, np.uint8)
    ids[mask] = face_colors[view.face_ids[mask]]
    panels["face_ids"] = ids
    if face_labels is not None:
        panels["labels"] = labels_to_rgb(view.face_labels(face_labels), num_labels)
    return panels


def view_sheet(
    views: Sequence[RenderedView],
    face_labels: np.ndarray | None = None,
    num_labels: int | None = None,
    buffers: Sequence[str] = ("rgb", "normals", "depth", "labels"),
    gap: int = 2,
) -> np.ndarray:
    """A contact sheet: one row per view, one column per buffer, uint8 ``(H', W', 3)``."""
    rows = []
    for view in views:
        panels = view_panels(view, face_labels, num_labels)
        cols = [panels[b] for b in buffers if b in panels]
        h = cols[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        row = np.concatenate([x for c in cols for x in (c, spacer)][:-1], axis=1)
        rows.append(row)
    width = rows[0].shape[1]
    spacer = np.full((gap, width, 3), 255, np.uint8)
    return np.concatenate([x for r in rows for x in (r, spacer)][:-1], axis=0)


# ------------------------------------------------------------ layout helpers
#: Gap between the panels of a picture, in pixels.
PANEL_GAP = 2

#: Colour of text drawn on pictures (black).
TEXT_RGB = (0, 0, 0)

#: Font size of the text on the sheets of this package (Pillow's default font is 10 px: small).
SHEET_FONT_SIZE = 12


@functools.lru_cache(maxsize=8)
def _font(size: int | None = None):
    """Pillow's built-in font (no font file needed), at its default size or ``size`` pixels."""
    from PIL import ImageFont

    if size is not None:
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, ImportError):  # Pillow < 10.1 or without FreeType: one fixed size only
            pass
    return ImageFont.load_default()


def _text_size(draw, text: str, font) -> tuple[int, int, tuple[int, int, int, int]]:
    box = (
        draw.multiline_textbbox((0, 0), text, font=font)
        if "\n" in text
        else draw.textbbox((0, 0), text, font=font)
    )
    return box[2] - box[0], box[3] - box[1], box


def stack_images(images: Sequence[np.ndarray], axis: int, gap: int = PANEL_GAP) -> np.ndarray:
    """Pictures side by side (``axis=1``) or one above the other (``axis=0``), white gaps between.

    Parameters
    ----------
    images : sequence of (H_i, W_i, 3) uint8
        The pictures, in order. Ones smaller than the largest across the
        stacking direction are padded with white on the right (``axis=0``) or
        at the bottom (``axis=1``).
    axis : {0, 1}
        0 stacks vertically, 1 horizontally.
    gap : int
        White pixels between neighbours.

    Returns
    -------
    (H, W, 3) uint8
    """
    if not images:
        raise ValueError("stack_images needs at least one image")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis}")
    across = 1 - axis
    size = max(image.shape[across] for image in images)
    parts: list[np.ndarray] = []
    for image in images:
        if image.shape[across] < size:
            pad = [(0, 0), (0, 0), (0, 0)]
            pad[across] = (0, size - image.shape[across])
            image = np.pad(image, pad, constant_values=255)
        if parts and gap > 0:
            shape = list(image.shape)
            shape[axis] = gap
            parts.append(np.full(shape, 255, np.uint8))
        parts.append(image)
    return np.concatenate(parts, axis=axis)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge an ``(H, W, ...)`` picture ``factor`` times by repeating pixels (no blur)."""
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def readable_factor(height: int, min_panel_size: int) -> int:
    """The integer enlargement that brings a panel ``height`` pixels tall to ``min_panel_size``."""
    if height <= 0 or min_panel_size <= height:
        return 1
    return -(-min_panel_size // height)


def text_strip(
    texts: Sequence[str],
    cell_width: int,
    height: int = 16,
    gap: int = PANEL_GAP,
    font_size: int | None = None,
) -> np.ndarray:
    """A white strip with each text centred in its cell, for column titles.

    Parameters
    ----------
    texts : sequence of str
        One text per cell; ``"\\n"`` starts a new line.
    cell_width : int
        Width of each cell in pixels (cells are ``gap`` pixels apart, like
        panels stacked by :func:`stack_images`).
    height : int
        Strip height in pixels; grown when a text does not fit.
    font_size : int, optional
        Text size in pixels (default: Pillow's default font, 10 px).

    Returns
    -------
    (height, len(texts) * (cell_width + gap) - gap, 3) uint8
    """
    from PIL import Image, ImageDraw

    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = [_text_size(probe, text, font) for text in texts]
    height = max([height] + [h + 6 for _, h, _ in sizes if h + 4 > height])
    width = len(texts) * cell_width + (len(texts) - 1) * gap
    image = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(image)
    for i, (text, (w, h, box)) in enumerate(zip(texts, sizes, strict=True)):
        x = i * (cell_width + gap) + max((cell_width - w) // 2, 0)
        y = (height - h) // 2 - box[1]
        if "\n" in text:
            draw.multiline_text((x, y), text, fill=TEXT_RGB, font=font, align="center")
        else:
            draw.text((x, y), text, fill=TEXT_RGB, font=font)
    return np.asarray(image)


def text_block(text: str, width: int, pad: int = 4, font_size: int | None = None) -> np.ndarray:
    """A caption: ``text`` wrapped at word boundaries to ``width`` pixels, left-aligned.

    ``"\n"`` starts a new paragraph; ``font_size`` is in pixels (default: Pillow's, 10 px).

    Returns
    -------
    (H, width, 3) uint8
        ``H`` grows with the number of lines.
    """
    from PIL import Image, ImageDraw

    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and _text_size(probe, candidate, font)[0] > width - 2 * pad:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    line_height = _text_size(probe, "Ag", font)[1] + 4
    image = Image.new("RGB", (width, len(lines) * line_height + 2 * pad), BACKGROUND_RGB)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_height), line, fill=TEXT_RGB, font=font)
    return np.asarray(image)


def label_text(
    image: np.ndarray, text: str, corner: str = "top-left", font_size: int | None = None
) -> np.ndarray:
    """A copy of ``image`` ``(H, W, 3)`` uint8 with ``text`` written in a white box at a corner.

    ``corner`` is ``"top-left"`` or ``"bottom-left"``.
    """
    from PIL import Image, ImageDraw

    font = _font(font_size)
    picture = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(picture)
    w, h, box = _text_size(draw, text, font)
    x = 2
    y = 2 if corner == "top-left" else picture.height - h - 6
    draw.rectangle([x, y, x + w + 4, y + h + 4], fill=BACKGROUND_RGB, outline=(90, 90, 90))
    draw.text((x + 2 - box[0], y + 2 - box[1]), text, fill=TEXT_RGB, font=font)
    return np.asarray(picture)


def legend_strip(
    label_names: Sequence[str],
    width: int,
    colors: np.ndarray | Sequence[Sequence[int]] | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """Colour swatches and part names, wrapped to ``width`` pixels.

    Parameters
    ----------
    label_names : sequence of str
        Name of each label, in label order.
    width : int
        Width of the strip in pixels; entries wrap onto new rows.
    colors : (len(label_names), 3) uint8, optional
        Swatch colours; default: :func:`label_palette`, the colours
        :func:`labels_to_rgb` paints label ``i`` with.
    font_size : int, optional
        Text size in pixels (default: Pillow's default font, 10 px).

    Returns
    -------
    (H, width, 3) uint8
    """
    from PIL import Image, ImageDraw

    font = _font(font_size)
    palette = label_palette(max(len(label_names), 1)) if colors is None else np.asarray(colors, np.uint8)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    swatch, pad = 10, 6
    row_h = max(16, _text_size(probe, "Ag", font)[1] + 6)
    places, x, y = [], pad, 3
    for name in label_names:
        box = probe.textbbox((0, 0), name, font=font)
        entry_w = swatch + 4 + (box[2] - box[0]) + 2 * pad
        if x + entry_w > width and x > pad:
            x, y = pad, y + row_h
        places.append((x, y, box))
        x += entry_w
    image = Image.new("RGB", (width, y + row_h + 2), BACKGROUND_RGB)
    draw = ImageDraw.Draw(image)
    for (x, y, box), name, rgb in zip(places, label_names, palette, strict=False):
        draw.rectangle(
            [x, y + 2, x + swatch, y + 2 + swatch], fill=tuple(int(c) for c in rgb), outline=TEXT_RGB
        )
        draw.text(
            (x + swatch + 4, y + 2 + (swatch - (box[3] - box[1])) // 2 - box[1]),
            name,
            fill=TEXT_RGB,
            font=font,
        )
    return np.asarray(image)


# Viridis at 9 evenly spaced points: dark purple (0) to yellow (1), readable in grey print.
_HEAT_ANCHORS = np.array(
    [
        (68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140),
        (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37),
    ],
    dtype=np.float64,
)  # fmt: skip


def heat_to_rgb(
    values: np.ndarray, mask: np.ndarray | None = None, vmin: float = 0.0, vmax: float = 1.0
) -> np.ndarray:
    """Colour a scalar image with a heat map (viridis: dark purple at ``vmin``, yellow at ``vmax``).

    Parameters
    ----------
    values : (H, W) float
        Values outside ``[vmin, vmax]`` are clipped; NaN counts as background.
    mask : (H, W) bool, optional
        Pixels to colour; others are white. Default: the non-NaN pixels.

    Returns
    -------
    (H, W, 3) uint8
    """
    values = np.asarray(values, np.float64)
    if mask is None:
        mask = ~np.isnan(values)
    mask = np.asarray(mask, bool) & ~np.isnan(values)
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((values - vmin) / span, 0.0, 1.0) * (len(_HEAT_ANCHORS) - 1)
    low = np.clip(np.floor(np.nan_to_num(t)), 0, len(_HEAT_ANCHORS) - 2).astype(np.int64)
    frac = np.nan_to_num(t - low)[..., None]
    rgb = _HEAT_ANCHORS[low] * (1.0 - frac) + _HEAT_ANCHORS[low + 1] * frac
    out = np.empty((*values.shape, 3), np.uint8)
    out[...] = BACKGROUND_RGB
    out[mask] = (rgb[mask] + 0.5).astype(np.uint8)
    return out


def heat_colorbar(
    width: int, low_text: str, high_text: str, height: int = 10, font_size: int | None = None
) -> np.ndarray:
    """A horizontal colour bar of :func:`heat_to_rgb` with a text at each end.

    Returns
    -------
    (H, W, 3) uint8
        ``W`` is at most about ``width``: the bar takes what the texts leave.
    """
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cells = [_text_size(probe, text, _font(font_size))[0] + 8 for text in (low_text, high_text)]
    bar_width = max(width - sum(cells) - 8, 16)
    bar = heat_to_rgb(np.tile(np.linspace(0.0, 1.0, bar_width), (height, 1)))
    left, right = (
        text_strip([text], cell, font_size=font_size)
        for text, cell in zip((low_text, high_text), cells, strict=True)
    )
    return stack_images([left, bar, right], axis=1, gap=4)


# ----------------------------------------------------------- label pictures
#: Column titles of the colour buffers :func:`part_labels_sheet` can show.
_BUFFER_TITLES = {"rgb": "colour", "shading": "shading", "normals": "normals", "depth": "depth"}


def part_labels_sheet(
    views: Sequence[RenderedView],
    face_labels: Mapping[str, np.ndarray],
    label_names: Sequence[str],
    *,
    colour_buffer: str | None = "rgb",
    min_panel_size: int = 128,
    caption: str | None = None,
    gap: int = PANEL_GAP,
) -> np.ndarray:
    """Part colours of a mesh seen from several views, e.g. predicted next to ground truth, with a legend.

    One row per view; columns: the view's colour render (unless
    ``colour_buffer`` is None), then one column per entry of ``face_labels``
    under its title; below, a legend of the part names.

    Parameters
    ----------
    views : sequence of RenderedView
        Views of one mesh (all of one size).
    face_labels : mapping of str to (F,) int
        Column title -> per-face labels of the mesh, in column order (e.g.
        ``{"ground truth": mesh.face_labels, "MvDeCor": result.face_labels}``).
        Label ``-1`` (unlabelled / unseen) is painted white.
    label_names : sequence of str
        Part names; label ``i`` gets colour ``label_palette(len(label_names))[i]``.
    colour_buffer : {"rgb", "shading", "normals", "depth"} or None
        Buffer shown in the first column (see :func:`view_panels`).
    min_panel_size : int
        Panels smaller than this many pixels are enlarged by an integer factor
        (pixel repetition) so that titles and legend stay readable.
    caption : str, optional
        Text under the legend.

    Returns
    -------
    (H, W, 3) uint8
    """
    if not views:
        raise ValueError("part_labels_sheet needs at least one view")
    num_labels = max(len(label_names), 1)
    factor = readable_factor(views[0].height, min_panel_size)
    rows = []
    for view in views:
        panels = [] if colour_buffer is None else [view_panels(view)[colour_buffer]]
        panels += [labels_to_rgb(view.face_labels(labels), num_labels) for labels in face_labels.values()]
        rows.append(stack_images([upscale(p, factor) for p in panels], axis=1, gap=gap))
    grid = stack_images(rows, axis=0, gap=gap)
    titles = ([] if colour_buffer is None else [_BUFFER_TITLES.get(colour_buffer, colour_buffer)]) + list(
        face_labels
    )
    size = SHEET_FONT_SIZE
    parts = [text_strip(titles, cell_width=views[0].width * factor, gap=gap, font_size=size), grid]
    parts.append(legend_strip(label_names, grid.shape[1], font_size=size))
    if caption:
        parts.append(text_block(caption, grid.shape[1], font_size=size))
    return stack_images(parts, axis=0, gap=gap)


@dataclass(frozen=True, eq=False)
class VoteWeightPicture:
    """The picture made by :func:`vote_weight_sheet` and the numbers written on it.

    Attributes
    ----------
    image : (H', W', 3) uint8
        The picture.
    weights : (V,) float64
        Each view's vote weight, :func:`mvdecor.inference.fusion.view_weight`.
    mean_entropy : (V,) float64
        Each view's mean normalised entropy over its foreground (NaN for a view
        without foreground).
    predicted : list of (H, W) int64
        Each view's predicted label per pixel (``-1`` on background).
    """

    image: np.ndarray
    weights: np.ndarray
    mean_entropy: np.ndarray
    predicted: list[np.ndarray]


def vote_weight_sheet(
    probs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    label_names: Sequence[str] | None = None,
    *,
    gamma: float = 20.0,
    exclude_classes: Sequence[int] = (),
    titles: Sequence[str] | None = None,
    min_panel_size: int = 128,
    gap: int = PANEL_GAP,
) -> VoteWeightPicture:
    """How much each view counts in the entropy-weighted vote, as a picture.

    One column per view: its predicted labels (top), its per-pixel normalised
    entropy as a heat map with the view's vote weight ``W`` written on it
    (middle), and its mean entropy (below); then a colour bar of the heat map
    and a legend of the part names. Entropies come from
    :func:`~mvdecor.inference.fusion.normalized_entropy` and weights from
    :func:`~mvdecor.inference.fusion.view_weight`, the functions the vote uses.

    Parameters
    ----------
    probs : sequence of (C, H, W) float
        Each view's per-pixel class distributions (softmax output).
    masks : sequence of (H, W) bool
        Each view's foreground (``view.mask``).
    label_names : sequence of str, optional
        ``C`` class names, for the legend (default: class numbers).
    gamma : float
        The exponent of the view weight (the config's ``segment.gamma``).
    exclude_classes : sequence of int
        Classes never predicted (as for :class:`~mvdecor.inference.fusion.FaceVoter`):
        the picture's labels are the argmax over the other classes. The
        weight still uses the full distribution, as the vote does.
    titles : sequence of str, optional
        A title per view (default ``"view 0"``, ``"view 1"``...).
    min_panel_size : int
        Smaller panels are enlarged by an integer factor to stay readable.

    Returns
    -------
    VoteWeightPicture
    """
    from mvdecor.inference.fusion import normalized_entropy, view_weight

    if len(probs) != len(masks) or not probs:
        raise ValueError(
            f"need as many masks as probability maps (got {len(probs)} and {len(masks)}), at least one"
        )
    num_classes = np.asarray(probs[0]).shape[0]
    names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
    titles = list(titles) if titles is not None else [f"view {i}" for i in range(len(probs))]
    allowed = np.setdiff1d(np.arange(num_classes), np.asarray(exclude_classes, np.int64))
    factor = readable_factor(np.asarray(masks[0]).shape[0], min_panel_size)
    weights, means, predicted, columns = [], [], [], []
    for p, mask in zip(probs, masks, strict=True):
        p = np.asarray(p)
        mask = np.asarray(mask, bool)
        weight = view_weight(p, mask, gamma)
        entropy = normalized_entropy(p)
        mean = float(entropy[mask].mean(dtype=np.float64)) if mask.any() else float("nan")
        labels = np.where(mask, allowed[p[allowed].argmax(axis=0)], -1).astype(np.int64)
        heat = label_text(
            upscale(heat_to_rgb(entropy, mask), factor), f"W = {weight:.3g}", font_size=SHEET_FONT_SIZE
        )
        label_panel = upscale(labels_to_rgb(labels, num_classes), factor)
        columns.append(stack_images([label_panel, heat], axis=0, gap=gap))
        weights.append(weight)
        means.append(mean)
        predicted.append(labels)
    cell = columns[0].shape[1]
    grid = stack_images(columns, axis=1, gap=gap)
    size = SHEET_FONT_SIZE
    header = text_strip(titles, cell_width=cell, gap=gap, font_size=size)
    footer = text_strip([f"mean H = {m:.3f}" for m in means], cell_width=cell, gap=gap, font_size=size)
    bar = heat_colorbar(min(grid.shape[1], 420), "H = 0 (certain)", "H = 1 (uniform)", font_size=size)
    caption = text_block(
        f"Top: each view's predicted labels. Below: its per-pixel normalised entropy H (class entropy / "
        f"log C), and W = (1 - mean H)^{gamma:g}, the weight of the view's votes when the views are "
        f"fused onto the mesh faces.",
        grid.shape[1],
        font_size=size,
    )
    legend = legend_strip(names, grid.shape[1], font_size=size)
    image = stack_images([header, grid, footer, bar, legend, caption], axis=0, gap=gap)
    return VoteWeightPicture(
        image=image,
        weights=np.asarray(weights, np.float64),
        mean_entropy=np.asarray(means, np.float64),
        predicted=predicted,
    )
