"""Part colours shared by every picture and exported mesh (a leaf: numpy only).

``inference`` colours exported meshes and ``viz`` draws pictures with the same
palette, so a part has one colour everywhere; both import it from here rather
than from each other.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BACKGROUND_RGB", "UNLABELLED_NAME", "UNLABELLED_RGB", "label_palette"]

#: Background colour of every picture (white).
BACKGROUND_RGB = (255, 255, 255)

#: Colour of faces without a label (label ``-1``): a dark grey, distinct from the palette's greys.
UNLABELLED_RGB = (80, 80, 80)

#: Name given to faces without a label in legends and exported meshes.
UNLABELLED_NAME = "unlabelled"

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
