"""Pictures of learned pixel embeddings: the paper's Fig. 3 and PCA colours.

Colour transfer (paper Fig. 3): every foreground pixel of a *target* view
takes the colour of the foreground pixel of a *source* view whose embedding
is most similar (cosine similarity); target pixels whose best similarity is
below a threshold are painted red. With a good embedding the transferred
picture looks like the target coloured the same way (for two views of one
shape with :func:`position_colors`, exactly the target's own colours), and
smooth source colours stay smooth.

PCA colours: the foreground embeddings of one or several views are projected
on their first three principal components, fitted jointly, so the same colour
means the same embedding in every view.

:func:`write_embedding_sheet` does it all for a network and two rendered
views: source | target | transferred | PCA source | PCA target, with a caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mvdecor.render.views import RenderedView
from mvdecor.viz.images import (
    BACKGROUND_RGB,
    PANEL_GAP,
    SHEET_FONT_SIZE,
    readable_factor,
    save_image,
    stack_images,
    text_block,
    text_strip,
    upscale,
)

if TYPE_CHECKING:  # torch is imported when a function needs it: `import mvdecor.viz` stays light
    import torch

    from mvdecor.models.inputs import ChannelStats

__all__ = [
    "MISS_RGB",
    "ColorTransfer",
    "EmbeddingSheet",
    "color_transfer",
    "embed_views",
    "embedding_sheet",
    "match_pixels",
    "pca_rgb",
    "position_colors",
    "ramp_colors",
    "smooth_colors",
    "write_embedding_sheet",
]

#: Colour of target pixels whose best similarity is below the threshold (red, as in the paper).
MISS_RGB = (255, 0, 0)

#: Default bound on the similarities held at once while matching: 2^22 float32 (16 MiB).
DEFAULT_CHUNK_ELEMENTS = 1 << 22


# ------------------------------------------------------------------ matching
def _foreground_vectors(embedding: np.ndarray | torch.Tensor, mask: np.ndarray, name: str) -> torch.Tensor:
    """Unit vectors ``(N, D)`` float32 of the foreground pixels of a ``(D, H, W)`` embedding."""
    import torch

    emb = embedding if isinstance(embedding, torch.Tensor) else torch.as_tensor(np.asarray(embedding))
    mask = np.asarray(mask, bool)
    if emb.ndim != 3 or tuple(emb.shape[1:]) != mask.shape:
        raise ValueError(f"{name} embedding {tuple(emb.shape)} is not (D, H, W) for mask {mask.shape}")
    flat = emb.detach().reshape(emb.shape[0], -1).float()
    vectors = flat[:, torch.from_numpy(np.flatnonzero(mask))].T
    # Cosine similarity: normalise even "unit" embeddings, so bf16 rounding or an
    # un-normalised input cannot push a similarity above 1.
    return torch.nn.functional.normalize(vectors, dim=1)


@dataclass(frozen=True, eq=False)
class ColorTransfer:
    """The result of :func:`color_transfer` (and, without ``image``, of :func:`match_pixels`).

    ``Ht x Wt`` is the target's size, ``Ws`` the source's width.

    Attributes
    ----------
    image : (Ht, Wt, 3) uint8
        Target foreground pixels in the colour of their best source pixel, or
        :data:`MISS_RGB` where the best similarity is below ``threshold``;
        white background. ``None`` from :func:`match_pixels`.
    best_similarity : (Ht, Wt) float32
        The best cosine similarity of each target foreground pixel to any
        source foreground pixel, in ``[-1, 1]``; NaN on the target background.
    source_index : (Ht, Wt) int64
        Flat index ``y * Ws + x`` of the most similar source pixel (first one
        on ties); -1 on the target background.
    below_threshold : (Ht, Wt) bool
        Target foreground pixels painted red.
    threshold : float
        The similarity threshold used.
    """

    best_similarity: np.ndarray
    source_index: np.ndarray
    below_threshold: np.ndarray
    threshold: float
    image: np.ndarray | None = None

    @property
    def miss_share(self) -> float:
        """Share of target foreground pixels below the threshold."""
        fg = self.source_index >= 0
        return float(self.below_threshold[fg].mean()) if fg.any() else 0.0

    @property
    def mean_similarity(self) -> float:
        """Mean best similarity over the target foreground (NaN when it is empty)."""
        fg = self.source_index >= 0
        return float(self.best_similarity[fg].mean(dtype=np.float64)) if fg.any() else float("nan")


def match_pixels(
    source_embedding: np.ndarray | torch.Tensor,
    source_mask: np.ndarray,
    target_embedding: np.ndarray | torch.Tensor,
    target_mask: np.ndarray,
    *,
    threshold: float = 0.8,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    device: str | torch.device = "cpu",
) -> ColorTransfer:
    """For every target foreground pixel, the most similar source foreground pixel.

    Parameters
    ----------
    source_embedding : (D, Hs, Ws) float, numpy or torch
        Per-pixel embedding of the source view (L2-normalised or not: the
        vectors are normalised here, so the similarity is the cosine).
    source_mask : (Hs, Ws) bool
        Source foreground; only these pixels can be matched.
    target_embedding : (D, Ht, Wt) float
        Per-pixel embedding of the target view.
    target_mask : (Ht, Wt) bool
        Target foreground; only these pixels are matched.
    threshold : float
        Pixels whose best similarity is below it are flagged in
        ``below_threshold`` (above 1: every foreground pixel).
    chunk_elements : int
        Upper bound on the similarities computed at once (target pixels x
        source pixels): besides a few copies of the foreground vectors, the
        working memory is about ``4 * chunk_elements`` bytes whatever the image
        size (16 MiB by default; never the full ``Nt x Ns`` matrix, 5 GB for
        two 256x256 views). Two views of 36,000 foreground pixels each take
        about 12 s on 2 CPU cores.
    device : str or torch.device
        Where the similarities are computed (``"cuda"`` is much faster for
        large views).

    Returns
    -------
    ColorTransfer
        Without ``image``.

    Raises
    ------
    ValueError
        Shapes that do not fit, different embedding sizes, or an empty source
        foreground while the target has foreground pixels.
    """
    import torch

    source = _foreground_vectors(source_embedding, source_mask, "source").to(device)
    target = _foreground_vectors(target_embedding, target_mask, "target").to(device)
    if source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source and target embeddings differ in size: {source.shape[1]} vs {target.shape[1]}"
        )
    target_mask = np.asarray(target_mask, bool)
    source_pixels = np.flatnonzero(np.asarray(source_mask, bool))
    best = np.full(target_mask.shape, np.nan, np.float32)
    index = np.full(target_mask.shape, -1, np.int64)
    if len(target) and not len(source):
        raise ValueError("the source view has no foreground pixel to match the target's pixels to")
    if len(target):
        rows = max(int(chunk_elements) // len(source), 1)
        best_sim = torch.empty(len(target), dtype=torch.float32)
        best_at = torch.empty(len(target), dtype=torch.int64)
        source_t = source.T.contiguous()  # (D, Ns)
        with torch.no_grad():
            for start in range(0, len(target), rows):
                similarity = target[start : start + rows] @ source_t  # (rows, Ns)
                values, at = similarity.max(dim=1)  # the first maximum on ties (CPU)
                best_sim[start : start + rows] = values.cpu()
                best_at[start : start + rows] = at.cpu()
        best[target_mask] = best_sim.numpy()
        index[target_mask] = source_pixels[best_at.numpy()]
    below = target_mask & ~(np.nan_to_num(best, nan=-np.inf) >= threshold)
    return ColorTransfer(best_similarity=best, source_index=index, below_threshold=below, threshold=threshold)


def _to_uint8_colors(colors: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    return (np.clip(colors.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def color_transfer(
    source_embedding: np.ndarray | torch.Tensor,
    source_mask: np.ndarray,
    target_embedding: np.ndarray | torch.Tensor,
    target_mask: np.ndarray,
    source_colors: np.ndarray,
    *,
    threshold: float = 0.8,
    miss_rgb: tuple[int, int, int] = MISS_RGB,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    device: str | torch.device = "cpu",
) -> ColorTransfer:
    """Paint the target view with the source view's colours through embedding similarity (Fig. 3).

    Parameters
    ----------
    source_embedding, source_mask, target_embedding, target_mask
        As for :func:`match_pixels`: ``(D, Hs, Ws)``, ``(Hs, Ws)`` bool,
        ``(D, Ht, Wt)``, ``(Ht, Wt)`` bool.
    source_colors : (Hs, Ws, 3) float in [0, 1] or uint8
        The colours to transfer (e.g. :func:`position_colors`,
        :func:`ramp_colors`, or a rendered texture).
    threshold : float
        Target pixels whose best similarity is below it are painted ``miss_rgb``.
    miss_rgb : (3,) int
        Their colour (default red).

    Returns
    -------
    ColorTransfer
        With ``image`` ``(Ht, Wt, 3)`` uint8, white off the target foreground.
    """
    colors = _to_uint8_colors(source_colors)
    if colors.shape != (*np.asarray(source_mask).shape, 3):
        raise ValueError(
            f"source_colors {colors.shape} is not (H, W, 3) for mask {np.asarray(source_mask).shape}"
        )
    matches = match_pixels(
        source_embedding,
        source_mask,
        target_embedding,
        target_mask,
        threshold=threshold,
        chunk_elements=chunk_elements,
        device=device,
    )
    image = np.empty((*matches.source_index.shape, 3), np.uint8)
    image[...] = BACKGROUND_RGB
    fg = matches.source_index >= 0
    image[fg] = colors.reshape(-1, 3)[matches.source_index[fg]]
    image[matches.below_threshold] = miss_rgb
    return ColorTransfer(
        best_similarity=matches.best_similarity,
        source_index=matches.source_index,
        below_threshold=matches.below_threshold,
        threshold=threshold,
        image=image,
    )


# ------------------------------------------------------------ source colours
def smooth_colors(coords: np.ndarray) -> np.ndarray:
    """A smooth colouring of points with 2 or 3 coordinates in ``[0, 1]``, never close to red.

    Parameters
    ----------
    coords : (..., 2) or (..., 3) float
        Coordinates in ``[0, 1]`` (clipped). The first two set the hue
        (blue, green, yellow-green, purple at the corners), the optional
        third the brightness (darker at 0).

    Returns
    -------
    (..., 3) float32 in [0, 1]
        Green + blue is at least 0.9 everywhere, so no colour looks like the
        pure red of missed pixels (:data:`MISS_RGB`).
    """
    coords = np.clip(np.asarray(coords, np.float64), 0.0, 1.0)
    if coords.shape[-1] not in (2, 3):
        raise ValueError(f"coords must have 2 or 3 columns, got shape {coords.shape}")
    u, v = coords[..., 0], coords[..., 1]
    rgb = np.stack([0.2 + 0.6 * v, 0.25 + 0.75 * u, 0.95 - 0.7 * u], axis=-1)
    if coords.shape[-1] == 3:
        rgb *= (0.75 + 0.25 * coords[..., 2])[..., None]
    return rgb.astype(np.float32)


def ramp_colors(mask: np.ndarray) -> np.ndarray:
    """A smooth 2D colour ramp over the foreground's bounding box (:func:`smooth_colors` of x, y).

    Parameters
    ----------
    mask : (H, W) bool
        Foreground.

    Returns
    -------
    (H, W, 3) float32 in [0, 1]
        1 (white) on the background.
    """
    mask = np.asarray(mask, bool)
    out = np.ones((*mask.shape, 3), np.float32)
    if not mask.any():
        return out
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    height, width = max(ys.max() - y0, 1), max(xs.max() - x0, 1)
    out[mask] = smooth_colors(np.stack([(xs - x0) / width, (ys - y0) / height], axis=1))
    return out


def position_colors(views: Sequence[RenderedView]) -> list[np.ndarray]:
    """Colour each foreground pixel by the 3D position it sees, one mapping for all the views.

    The world coordinates of the hit points are scaled to ``[0, 1]`` over the
    bounding box of every view's foreground together, then coloured by
    :func:`smooth_colors`, so the same surface point gets the same colour in
    every view. Transferring the source's position colours to a target view of
    the same shape gives the target's own position colours exactly when every
    match is right.

    Parameters
    ----------
    views : sequence of RenderedView
        The views (e.g. source and target).

    Returns
    -------
    list of (H, W, 3) float32 in [0, 1]
        One per view; 1 (white) on the background.
    """
    points = [np.asarray(v.hit_points, np.float64)[v.mask] for v in views]
    every = np.concatenate(points) if points else np.zeros((0, 3))
    low = every.min(axis=0) if len(every) else np.zeros(3)
    span = np.maximum(every.max(axis=0) - low, 1e-9) if len(every) else np.ones(3)
    out = []
    for view, p in zip(views, points, strict=True):
        image = np.ones((*view.mask.shape, 3), np.float32)
        # x, z (the horizontal axes) set the hue; y (up) the brightness.
        scaled = (p - low) / span
        image[view.mask] = smooth_colors(scaled[:, [0, 2, 1]])
        out.append(image)
    return out


# ----------------------------------------------------------------------- PCA
def pca_rgb(
    embeddings: Sequence[np.ndarray | torch.Tensor],
    masks: Sequence[np.ndarray],
    percentile: float = 1.0,
) -> list[np.ndarray]:
    """Colour embeddings by their first three principal components, fitted jointly over views.

    The principal axes, their signs and the scaling to ``[0, 1]`` come from
    the foreground pixels of all the views together, so a colour means the
    same embedding in every view of the call. The result is deterministic: each
    axis's sign is chosen so that its largest coefficient is positive.

    Parameters
    ----------
    embeddings : sequence of (D, H_i, W_i) float, numpy or torch
        Per-pixel embeddings of each view.
    masks : sequence of (H_i, W_i) bool
        Each view's foreground.
    percentile : float
        Each component is scaled linearly from its ``percentile``-th to its
        ``(100 - percentile)``-th percentile (over all views) to ``[0, 1]`` and
        clipped, so a few outliers do not wash out the colours. 0: min to max.

    Returns
    -------
    list of (H_i, W_i, 3) float32 in [0, 1]
        One per view; 1 (white) on the background. A component with no spread
        (fewer than 3 embedding dimensions, or constant embeddings) is 0.5.
    """
    if len(embeddings) != len(masks) or not embeddings:
        raise ValueError(
            f"need one mask per embedding and at least one view, got {len(embeddings)} and {len(masks)}"
        )
    vectors = []
    for i, (emb, mask) in enumerate(zip(embeddings, masks, strict=True)):
        # A torch tensor (possibly on a GPU, possibly bf16) or an array.
        emb = emb.detach().float().cpu().numpy() if hasattr(emb, "detach") else np.asarray(emb)
        mask = np.asarray(mask, bool)
        if emb.ndim != 3 or emb.shape[1:] != mask.shape:
            raise ValueError(f"embedding {i} {emb.shape} is not (D, H, W) for mask {mask.shape}")
        vectors.append(emb.reshape(emb.shape[0], -1)[:, mask.ravel()].T.astype(np.float64))
    dims = {v.shape[1] for v in vectors}
    if len(dims) != 1:
        raise ValueError(f"embeddings differ in size: {sorted(dims)}")
    every = np.concatenate(vectors)
    projected = np.full((len(every), 3), 0.5)
    if len(every) >= 2:
        centred = every - every.mean(axis=0)
        # The D x D scatter matrix is small (64 x 64), whatever the pixel count.
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(eigenvalues)[::-1][:3]
        axes = eigenvectors[:, order]  # (D, k), k <= 3
        signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
        axes *= np.where(signs == 0, 1.0, signs)
        scores = centred @ axes  # (N, k)
        lo = np.percentile(scores, percentile, axis=0)
        hi = np.percentile(scores, 100.0 - percentile, axis=0)
        for k in range(scores.shape[1]):
            if hi[k] - lo[k] > 1e-12 * max(1.0, float(np.abs(scores[:, k]).max())):
                projected[:, k] = np.clip((scores[:, k] - lo[k]) / (hi[k] - lo[k]), 0.0, 1.0)
    out, start = [], 0
    for vec, mask in zip(vectors, masks, strict=True):
        mask = np.asarray(mask, bool)
        image = np.ones((*mask.shape, 3), np.float32)
        image[mask] = projected[start : start + len(vec)]
        start += len(vec)
        out.append(image)
    return out


# --------------------------------------------------------------- the network
def embed_views(
    model: torch.nn.Module,
    views: Sequence[RenderedView],
    modalities: str | Sequence[str],
    stats: ChannelStats | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
) -> np.ndarray:
    """The network's unit embeddings of rendered views.

    Parameters
    ----------
    model : EmbeddingNet or SegmentationNet
        A (loaded) embedding network; a segmentation network's ``embedding``
        is used. Evaluated in eval mode without gradients; its training mode
        is restored afterwards.
    views : sequence of RenderedView
        Views of equal size (multiples of 4 pixels).
    modalities : str or sequence of str
        The network's input modalities (``config.model.modalities``).
    stats : ChannelStats, optional
        The channel statistics the network was trained with (from its checkpoint).
    device : str or torch.device
        Where to run the network.

    Returns
    -------
    (V, D, H, W) float32
        L2-normalised along ``D``.
    """
    import torch

    from mvdecor.models.inputs import views_to_tensor

    net = getattr(model, "embedding", model)
    was_training = net.training
    net.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(views), max(batch_size, 1)):
                x = views_to_tensor(views[start : start + batch_size], modalities, stats).to(device)
                out.append(net(x).float().cpu().numpy())
    finally:
        net.train(was_training)
    return np.concatenate(out)


# --------------------------------------------------------------------- sheet
@dataclass(frozen=True, eq=False)
class EmbeddingSheet:
    """A Fig. 3-style picture and what it shows.

    Attributes
    ----------
    image : (H', W', 3) uint8
        source | target | transferred | PCA source | PCA target, titles above,
        caption below.
    transfer : ColorTransfer
        The colour transfer (target pixel -> best source pixel) at native size.
    pca : list of (H, W, 3) float32
        The joint PCA colours of the source and the target.
    path : Path or None
        Where the picture was written (:func:`write_embedding_sheet`).
    """

    image: np.ndarray
    transfer: ColorTransfer
    pca: list[np.ndarray]
    path: Path | None = None


def embedding_sheet(
    source_view: RenderedView,
    target_view: RenderedView,
    source_embedding: np.ndarray | torch.Tensor,
    target_embedding: np.ndarray | torch.Tensor,
    *,
    threshold: float = 0.8,
    colors: str = "position",
    names: tuple[str, str] = ("source", "target"),
    note: str = "",
    min_panel_size: int = 160,
    device: str | torch.device = "cpu",
) -> EmbeddingSheet:
    """The Fig. 3 picture of two views and their embeddings.

    Parameters
    ----------
    source_view, target_view : RenderedView
        The two views (of one shape, or of two shapes).
    source_embedding, target_embedding : (D, H, W) float
        Their per-pixel embeddings (e.g. from :func:`embed_views`).
    threshold : float
        Cosine similarity below which a target pixel is painted red.
    colors : {"position", "ramp"}
        What the source is coloured with: ``"position"``, the 3D position each
        pixel sees (:func:`position_colors`; the target panel then shows the
        target's own position colours, what a perfect transfer gives for one
        shape); ``"ramp"``, a 2D ramp over the source image
        (:func:`ramp_colors`; the target panel shows its grey shading).
    names : (str, str)
        Titles of the two views (e.g. ``"chair_0001 view 3"``).
    note : str
        Text added to the caption (e.g. the checkpoint).
    min_panel_size : int
        Smaller panels are enlarged by an integer factor.

    Returns
    -------
    EmbeddingSheet
    """
    if colors == "position":
        source_colors, target_colors = position_colors([source_view, target_view])
    elif colors == "ramp":
        source_colors = ramp_colors(source_view.mask)
        # Head-light shading is mostly near 1: darken it so the shape stands out from the white.
        grey = np.where(target_view.mask, 0.2 + 0.65 * target_view.shading, 1.0)
        target_colors = np.repeat(grey[..., None], 3, axis=2)
    else:
        raise ValueError(f"colors must be 'position' or 'ramp', got {colors!r}")
    transfer = color_transfer(
        source_embedding,
        source_view.mask,
        target_embedding,
        target_view.mask,
        source_colors,
        threshold=threshold,
        device=device,
    )
    pca = pca_rgb([source_embedding, target_embedding], [source_view.mask, target_view.mask])
    panels = [
        _to_uint8_colors(source_colors),
        _to_uint8_colors(target_colors),
        transfer.image,
        _to_uint8_colors(pca[0]),
        _to_uint8_colors(pca[1]),
    ]
    factor = readable_factor(max(p.shape[0] for p in panels), min_panel_size)
    row = stack_images([upscale(p, factor) for p in panels], axis=1)
    cell = source_view.width * factor
    titles = [
        f"source\n{names[0]}",
        f"target\n{names[1]}",
        "transferred to target",
        "PCA source",
        "PCA target",
    ]
    what = "its 3D position" if colors == "position" else "a 2D colour ramp"
    caption = (
        f"Each target pixel takes the colour of the source pixel with the most similar embedding "
        f"(cosine); red: best similarity below {threshold:g} ({100 * transfer.miss_share:.1f}% of "
        f"target pixels; mean best similarity {transfer.mean_similarity:.3f}). Source coloured by {what}. "
        f"PCA: first 3 principal components of both views' embeddings, fitted jointly (same colour, "
        f"same embedding). Cf. MvDeCor Fig. 3."
    )
    if note:
        caption += f" {note}"
    image = stack_images(
        [
            text_strip(titles, cell_width=cell, gap=PANEL_GAP, font_size=SHEET_FONT_SIZE),
            row,
            text_block(caption, row.shape[1], font_size=SHEET_FONT_SIZE),
        ],
        axis=0,
    )
    return EmbeddingSheet(image=image, transfer=transfer, pca=pca)


def write_embedding_sheet(
    path: str | Path,
    model: torch.nn.Module,
    source_view: RenderedView,
    target_view: RenderedView,
    modalities: str | Sequence[str],
    stats: ChannelStats | None = None,
    *,
    threshold: float = 0.8,
    colors: str = "position",
    names: tuple[str, str] = ("source", "target"),
    note: str = "",
    device: str | torch.device = "cpu",
) -> EmbeddingSheet:
    """Embed two rendered views with a network and write their Fig. 3 picture as a PNG.

    Parameters
    ----------
    path : str or Path
        The PNG to write (folders are created; written atomically).
    model : EmbeddingNet or SegmentationNet
        A loaded network (e.g. from :func:`mvdecor.train.pretrain.load_embedding`).
    source_view, target_view : RenderedView
        Views of equal size, rendered with the network's render settings.
    modalities, stats
        The network's input modalities and channel statistics (from its checkpoint).
    threshold, colors, names, note
        As for :func:`embedding_sheet`.
    device : str or torch.device
        Where the network runs and similarities are computed.

    Returns
    -------
    EmbeddingSheet
        With ``path`` set.
    """
    source_embedding, target_embedding = embed_views(
        model, [source_view, target_view], modalities, stats, device=device
    )
    sheet = embedding_sheet(
        source_view,
        target_view,
        source_embedding,
        target_embedding,
        threshold=threshold,
        colors=colors,
        names=names,
        note=note,
        device=device,
    )
    written = save_image(sheet.image, path)
    return EmbeddingSheet(image=sheet.image, transfer=sheet.transfer, pca=sheet.pca, path=written)
