"""Held-out labelled views: choosing when fine-tuning stops without looking at test shapes.

With ``finetune.val_views = n``, :func:`hold_out_views` sets ``n`` of each
labelled shape's labelled views aside; fine-tuning never trains on them.
Every ``finetune.val_every`` steps :func:`held_out_miou` scores the network on
them (pixel mIoU), the best-scoring network is kept as ``checkpoints/best.pt``,
and with ``finetune.patience`` the run stops after that many validations
without improvement. The test shapes of a benchmark play no part in the choice.

The held-out views show the same shapes as the training views, from other
cameras: they catch a network that has stopped improving or is memorising
viewpoints, not one that fits the labelled shapes' own geometry too closely
(for that, whole shapes would have to be held out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import torch

from mvdecor.errors import ConfigError

__all__ = ["held_out_miou", "hold_out_views", "miou_from_confusion"]

Item = TypeVar("Item")


def hold_out_views(
    items: Sequence[Item], per_shape: int, seed: int, shape_of: Callable[[Item], str]
) -> tuple[list[Item], list[Item]]:
    """Split labelled views into ``(training, held out)``: ``per_shape`` seeded views of each shape held out.

    Parameters
    ----------
    items : the labelled views, in a fixed order
    per_shape : how many of each shape's views to hold out (0: none)
    seed : seeds the choice (the same arguments give the same split)
    shape_of : the shape an item shows

    Raises
    ------
    ConfigError
        A shape would keep no training view.
    """
    if per_shape <= 0:
        return list(items), []
    by_shape: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_shape.setdefault(shape_of(item), []).append(index)
    rng = np.random.default_rng([int(seed), 0x5EED])
    held: set[int] = set()
    for shape_id, indices in by_shape.items():
        if len(indices) <= per_shape:
            raise ConfigError(
                None,
                f"finetune.val_views = {per_shape} would leave no training view of {shape_id} "
                f"({len(indices)} labelled views); lower it or label more views",
            )
        held.update(int(i) for i in rng.choice(indices, size=per_shape, replace=False))
    train = [item for i, item in enumerate(items) if i not in held]
    kept = [item for i, item in enumerate(items) if i in held]
    return train, kept


def miou_from_confusion(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the labels or the predictions of a confusion matrix.

    ``confusion[t, p]`` counts pixels of true class ``t`` predicted as ``p``.
    NaN when the matrix is empty.
    """
    confusion = np.asarray(confusion, np.float64)
    hits = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - hits
    present = union > 0
    if not present.any():
        return float("nan")
    return float((hits[present] / union[present]).mean())


@torch.no_grad()
def held_out_miou(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    device: torch.device,
    autocast_context: Callable[[], object],
) -> float:
    """Pixel mIoU of ``model`` on labelled views, in eval mode (the mode it had is restored).

    Parameters
    ----------
    batches : ``(inputs (B, C, H, W) float32, labels (B, H, W) int64)``, label
        ``-1`` for pixels that carry none (background, unlabelled)
    autocast_context : returns the context the forward pass runs in (the run's precision)
    """
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    try:
        for inputs, labels in batches:
            with autocast_context():
                logits = model(inputs.to(device))
            predicted = logits.argmax(1).cpu()
            keep = labels >= 0
            codes = labels[keep] * num_classes + predicted[keep]
            confusion += torch.bincount(codes, minlength=num_classes * num_classes)
    finally:
        model.train(was_training)
    return miou_from_confusion(confusion.view(num_classes, num_classes).numpy())
