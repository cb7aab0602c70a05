"""Turn rendered buffers into 8-bit pictures (Pillow only, no plotting library)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvdecor.fileio import atomic_path
from mvdecor.render.views import RenderedView

#: Background colour of every picture (white).
BACKGROUND_RGB = (255, 255, 255)

# A qualitative palette (Tableau 20-like), extended deterministically.
_BASE_PALETTE = np.array(
    [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
        (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
        (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
    ],
    dtype=np.uint8,
)  # fmt: skip


def label_palette(num_labels: int) -> np.ndarray:
    """Distinct colours ``(num_labels, 3)`` uint8; the same label always gets the same colour."""
    if num_labels <= len(_BASE_PALETTE):
        return _BASE_PALETTE[:num_labels].copy()
    rng = np.random.default_rng(12345)
    extra = rng.integers(40, 230, size=(num_labels - len(_BASE_PALETTE), 3), dtype=np.uint8)
    return np.concatenate([_BASE_PALETTE, extra])


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


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 image as PNG atomically (temporary file, then rename)."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return path
