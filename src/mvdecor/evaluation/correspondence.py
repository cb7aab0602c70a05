"""How good is an embedding at finding the same point in another view?

:func:`correspondence_accuracy` is the measure of pre-training that needs no
labels: for ground-truth matched pixels of two views of one shape, the share
whose nearest embedding (cosine) among all foreground pixels of the other view
lies within ``t`` pixels of the true match. A random network scores about the
share of pixels within ``t`` of any given one; raw normals a little more.

:func:`label_transfer_accuracy` measures across *different* shapes, where no
pixel-exact ground truth exists (the paper's Fig. 3, two different people): the
share of foreground pixels whose nearest embedding in the other shape's view
carries the same part label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mvdecor.correspond import match_views, sample_matches
from mvdecor.models.inputs import ChannelStats, view_to_array
from mvdecor.render.views import RenderedView

#: A function from a view to its per-pixel embedding ``(D, H, W)``, L2-normalised along D.
EmbedFn = Callable[[RenderedView], np.ndarray]


def network_embed_fn(
    model: torch.nn.Module,
    modalities: Sequence[str],
    stats: ChannelStats | None,
    device: str | torch.device = "cpu",
) -> EmbedFn:
    """Embed views with a network (eval mode, no gradients)."""
    model.eval()

    @torch.no_grad()
    def embed(view: RenderedView) -> np.ndarray:
        array = view_to_array(view, tuple(modalities))
        if stats is not None:
            array = stats.normalize(array, view.mask)
        x = torch.from_numpy(np.ascontiguousarray(array, np.float32))[None].to(device)
        return model(x)[0].float().cpu().numpy()

    return embed


def normals_embed_fn(view: RenderedView) -> np.ndarray:
    """The baseline 'embedding' of raw world-space normals."""
    return np.ascontiguousarray(view.normals.transpose(2, 0, 1))


def _nearest_in_other(
    emb_a: np.ndarray, emb_b: np.ndarray, query: np.ndarray, fg_b: np.ndarray
) -> np.ndarray:
    """For flat pixel indices ``query`` of A, the flat index in B of the most similar foreground pixel."""
    d = emb_a.shape[0]
    fa = emb_a.reshape(d, -1)[:, query]  # (D, Q)
    fb = emb_b.reshape(d, -1)[:, fg_b]  # (D, Nb)
    best = np.empty(len(query), np.int64)
    for start in range(0, len(query), 512):  # bounded memory: Q x Nb similarities
        sim = fa[:, start : start + 512].T @ fb
        best[start : start + 512] = fg_b[sim.argmax(axis=1)]
    return best


def correspondence_accuracy(
    embed: EmbedFn,
    pairs: Sequence[tuple[RenderedView, RenderedView]],
    radius: float,
    thresholds: Sequence[float] = (2.0, 5.0),
    max_queries: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Share of matched pixels whose nearest embedding in the other view is within ``t`` px.

    Parameters
    ----------
    embed : view -> ``(D, H, W)`` normalised embedding
    pairs : views of the same shape (ground truth by reprojection with ``radius``)
    thresholds : pixel distances ``t``
    max_queries : matched pixels sampled per pair

    Returns
    -------
    dict
        ``acc@{t}px`` for each threshold, plus ``queries`` and ``pairs``.
    """
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(thresholds))
    total = 0
    used = 0
    for view_a, view_b in pairs:
        matches = sample_matches(match_views(view_a, view_b, radius), max_queries, rng)
        if len(matches) == 0:
            continue
        emb_a, emb_b = embed(view_a), embed(view_b)
        fg_b = np.flatnonzero(view_b.mask.reshape(-1))
        predicted = _nearest_in_other(emb_a, emb_b, matches.index_a, fg_b)
        w = view_b.width
        dr = predicted // w - matches.index_b // w
        dc = predicted % w - matches.index_b % w
        dist = np.hypot(dr, dc)
        hits += [(dist <= t).sum() for t in thresholds]
        total += len(matches)
        used += 1
    result = {f"acc@{t:g}px": float(h / max(total, 1)) for t, h in zip(thresholds, hits, strict=True)}
    result.update(queries=float(total), pairs=float(used))
    return result


def label_transfer_accuracy(
    embed: EmbedFn,
    pairs: Sequence[tuple[RenderedView, np.ndarray, RenderedView, np.ndarray]],
    max_queries: int = 2000,
    seed: int = 0,
) -> float:
    """Share of pixels whose nearest embedding in another shape's view has the same part label.

    Parameters
    ----------
    pairs : ``(view_a, face_labels_a, view_b, face_labels_b)``: views of two
        different shapes with their per-face labels over one vocabulary.
    """
    rng = np.random.default_rng(seed)
    agree = total = 0
    for view_a, labels_a, view_b, labels_b in pairs:
        pix_a = view_a.face_labels(labels_a).reshape(-1)
        pix_b = view_b.face_labels(labels_b).reshape(-1)
        fg_a = np.flatnonzero(pix_a >= 0)
        fg_b = np.flatnonzero(pix_b >= 0)
        if len(fg_a) == 0 or len(fg_b) == 0:
            continue
        query = rng.choice(fg_a, size=min(max_queries, len(fg_a)), replace=False)
        predicted = _nearest_in_other(embed(view_a), embed(view_b), query, fg_b)
        agree += int((pix_b[predicted] == pix_a[query]).sum())
        total += len(query)
    return agree / max(total, 1)
