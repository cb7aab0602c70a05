"""Labelled views: the supervision contract of fine-tuning.

A :class:`LabelledView` names one view of a shape whose pixels carry part labels,
either through the faces they see (a labelled mesh) or through a user's label
image (a PNG of class indices, 255 unlabelled, at the render resolution).
:class:`LabelledViewDataset` turns them into network inputs and per-pixel labels
for fine-tuning and for the nearest-pixel head's bank.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mvdecor.data.mesh import labels_from_nearest_faces
from mvdecor.errors import ConfigError, LabelError
from mvdecor.models.inputs import ChannelStats, flip_view_array, view_to_array
from mvdecor.models.nearest import box_coordinates
from mvdecor.render.renderer import Renderer
from mvdecor.render.views import RenderedView, seen_faces
from mvdecor.train.data import ViewSource

#: Value of a label image pixel that carries no label.
LABEL_IMAGE_IGNORE = 255


@dataclass(frozen=True)
class LabelledView:
    """One supervised view: a view of a shape, labelled by its faces or by an image.

    Attributes
    ----------
    shape_id : str
    view_index : int
        Index into the shape's cameras (the run's camera scheme).
    label_image : Path or None
        A PNG of class indices (255 = unlabelled) at the render resolution; None
        to label pixels by the faces they see.
    """

    shape_id: str
    view_index: int
    label_image: Path | None = None


def select_labelled_views(
    shape_ids: Sequence[str], num_views: int, views_per_shape: int, seed: int
) -> list[LabelledView]:
    """All views of each shape, or ``views_per_shape`` seeded views of each (sparse setting)."""
    rng = np.random.default_rng(seed)
    items = []
    for shape_id in shape_ids:
        if views_per_shape <= 0 or views_per_shape >= num_views:
            chosen = range(num_views)
        else:
            chosen = sorted(rng.choice(num_views, size=views_per_shape, replace=False).tolist())
        items += [LabelledView(shape_id, int(v)) for v in chosen]
    return items


def read_label_image(path: Path, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """A label PNG as ``(H, W)`` int64 with ``-1`` for unlabelled pixels.

    Raises
    ------
    LabelError
        Unreadable, wrong size, not single-channel, or a class index out of range.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise LabelError(
                    path, f"label images must be single-channel class indices, got mode {image.mode}"
                )
            labels = np.asarray(image).astype(np.int64)
    except (OSError, UnidentifiedImageError) as exc:
        raise LabelError(path, f"unreadable label image ({exc})") from None
    if labels.shape != shape:
        raise LabelError(
            path, f"label image is {labels.shape[1]}x{labels.shape[0]} but views are {shape[1]}x{shape[0]}"
        )
    labels[labels == LABEL_IMAGE_IGNORE] = -1
    if labels.max() >= num_classes:
        raise LabelError(path, f"class index {int(labels.max())} out of range for {num_classes} classes")
    return labels


class LabelledViewDataset(torch.utils.data.Dataset):
    """Item ``k``: a seeded random labelled view, as network input and per-pixel labels.

    Returns dicts with ``inputs`` ``(C, H, W)`` float32 and ``labels`` ``(H, W)``
    int64 (``-1``: background or unlabelled, ignored by the loss). With
    ``flip_prob > 0`` the view and its labels are mirrored left to right with
    that probability (:func:`~mvdecor.models.inputs.flip_view_array`). With
    ``stretch > 0`` a drawn view is, with probability ``stretch_prob``, first
    rendered again from its camera with its shape stretched axis by axis
    (:meth:`stretched`); a flip applies after it.

    ``pseudo_items`` (self-training, ``finetune.pseudo_shapes``) are views of
    unlabelled shapes labelled by ``face_labels`` (shape id -> ``(F,)`` int64,
    ``-1`` unlabelled) instead of their meshes' labels; an item is drawn from them
    with probability ``pseudo_share``, from ``items`` otherwise.
    """

    def __init__(
        self,
        source: ViewSource,
        items: Sequence[LabelledView],
        modalities: Sequence[str],
        stats: ChannelStats | None,
        num_classes: int,
        seed: int = 0,
        flip_prob: float = 0.0,
        *,
        pseudo_items: Sequence[LabelledView] = (),
        face_labels: Mapping[str, np.ndarray] | None = None,
        pseudo_share: float = 0.5,
        stretch: float = 0.0,
        stretch_prob: float = 0.5,
    ) -> None:
        if not items:
            raise ConfigError(None, "no labelled views to fine-tune on")
        self.source, self.items = source, list(items)
        self.modalities, self.stats = tuple(modalities), stats
        self.num_classes, self.seed = int(num_classes), int(seed)
        self.flip_prob = float(flip_prob)
        self.pseudo_items = list(pseudo_items)
        self.face_labels = dict(face_labels or {})
        self.pseudo_share = float(pseudo_share)
        self.stretch, self.stretch_prob = float(stretch), float(stretch_prob)
        missing = sorted({item.shape_id for item in self.pseudo_items} - set(self.face_labels))
        if missing:
            raise ConfigError(None, f"pseudo-labelled views without face labels: {missing[:5]}")

    def __len__(self) -> int:
        return 10**12

    def labels(self, item: LabelledView, view) -> np.ndarray:
        if item.label_image is not None:
            labels = read_label_image(item.label_image, (view.height, view.width), self.num_classes)
        elif item.shape_id in self.face_labels:
            labels = view.face_labels(self.face_labels[item.shape_id])
        else:
            mesh = self.source.mesh(item.shape_id)
            if mesh.face_labels is None:
                raise LabelError(mesh.source, "a labelled shape has no face labels")
            labels = view.face_labels(mesh.face_labels)
        labels = np.where(view.mask, labels, -1)
        return labels

    def batches(
        self, items: Sequence[LabelledView], size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``items`` in order, never mirrored, as collated batches of at most ``size`` views."""
        for start in range(0, len(items), size):
            yield collate_views([self.example(item) for item in items[start : start + size]])

    def pixel_positions(self, items: Sequence[LabelledView]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each labelled pixel's surface point in its shape's box coordinates, and its shape.

        In the order of :meth:`batches` over ``items`` and of the pixels that
        :func:`~mvdecor.models.nearest.labelled_pixel_embeddings` keeps (view by view,
        row-major), never mirrored.

        Returns
        -------
        ``(positions (N, 3) float32, shapes (N,) int64)``, ``shapes`` numbering the
        labelled shapes in order of first appearance.
        """
        positions, shapes, boxes = [], [], {}  # boxes: shape id -> bounds, in order of first appearance
        for item in items:
            view = self.source.view(item.shape_id, item.view_index)
            keep = self.labels(item, view) >= 0
            if item.shape_id not in boxes:
                boxes[item.shape_id] = self.source.mesh(item.shape_id).bounds()
            positions.append(box_coordinates(view.hit_points[keep], *boxes[item.shape_id]))
            shapes.append(np.full(int(keep.sum()), list(boxes).index(item.shape_id), np.int64))
        return torch.from_numpy(np.concatenate(positions)), torch.from_numpy(np.concatenate(shapes))

    def pixel_faces(self, items: Sequence[LabelledView]) -> torch.Tensor:
        """``(N,)`` int64: a key of the (shape, face) each labelled pixel sees, in :meth:`pixel_positions`' order.

        Equal keys mean the same face of the same shape (``shape number * faces + face``,
        shapes numbered in order of first appearance).
        """
        shapes: dict[str, int] = {}
        faces, numbers = [], []
        for item in items:
            view = self.source.view(item.shape_id, item.view_index)
            keep = self.labels(item, view) >= 0
            faces.append(view.face_ids[keep].astype(np.int64))
            numbers.append(np.full(int(keep.sum()), shapes.setdefault(item.shape_id, len(shapes)), np.int64))
        faces_, numbers_ = np.concatenate(faces), np.concatenate(numbers)
        span = int(faces_.max(initial=-1)) + 1
        return torch.from_numpy(numbers_ * span + faces_)

    def pixel_counts(self) -> np.ndarray:
        """``(num_classes,)`` int64: labelled pixels of each class over every item's view."""
        counts = np.zeros(self.num_classes, np.int64)
        for item in self.items:
            labels = self.labels(item, self.source.view(item.shape_id, item.view_index))
            counts += np.bincount(labels[labels >= 0], minlength=self.num_classes)[: self.num_classes]
        return counts

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        # Drawn only with pseudo-labelled views, so runs without them keep their exact draws.
        pool = self.items
        if self.pseudo_items and rng.random() < self.pseudo_share:
            pool = self.pseudo_items
        item = pool[int(rng.integers(len(pool)))]
        return self.example(item, rng)

    def example(self, item: LabelledView, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """``item`` as an example; mirrored with ``flip_prob`` when ``rng`` is given, never without."""
        view = self.source.view(item.shape_id, item.view_index)
        labels = self.labels(item, view)
        # Drawn only when augmenting, so runs without it keep their exact draws.
        if rng is not None and self.stretch > 0 and rng.random() < self.stretch_prob:
            view, labels = self.stretched(item, view, labels, rng.uniform(-self.stretch, self.stretch, 3))
        array, mask = view_to_array(view, self.modalities), view.mask
        if rng is not None and self.flip_prob > 0 and rng.random() < self.flip_prob:
            camera = view.camera
            array, mask = flip_view_array(
                array, mask, self.modalities, camera.rotation[0, 0], camera.centers[0]
            )
            labels = np.ascontiguousarray(labels[:, ::-1])
        if self.stats is not None:
            array = self.stats.normalize(array, mask)
        return {"inputs": np.ascontiguousarray(array, np.float32), "labels": labels}

    def stretched(
        self, item: LabelledView, view: RenderedView, labels: np.ndarray, log_scales: np.ndarray
    ) -> tuple[RenderedView, np.ndarray]:
        """``item``'s view rendered again with its shape scaled by ``exp(log_scales)`` per axis.

        The scaled shape is normalised into the unit sphere again and seen from
        the same camera. Its pixels take the labels of the faces they see, each
        face labelled as in ``view`` (``labels``, ``(H, W)`` int64, ``-1``
        unlabelled; a face whose pixels disagree takes one of their labels);
        faces ``view`` does not label stay ``-1``, so a sparse labelled view
        lends no labels beyond its own.

        Returns
        -------
        ``(view, labels)``: the new view and its ``(H, W)`` int64 labels.
        """
        mesh = self.source.mesh(item.shape_id)
        scaled = mesh.replace(vertices=mesh.vertices * np.exp(log_scales), normalization=None).normalized()
        new_view = Renderer(scaled).render_view(self.source.cameras(item.shape_id), item.view_index)
        face_labels = np.full(mesh.num_faces, -1, np.int64)
        labelled = labels >= 0
        face_labels[view.face_ids[labelled]] = labels[labelled]
        return new_view, new_view.face_labels(face_labels)


def collate_views(items: Sequence[dict[str, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.stack([it["inputs"] for it in items])),
        torch.from_numpy(np.stack([it["labels"] for it in items])),
    )


def label_vocabulary(source: ViewSource, shape_ids: Sequence[str]) -> tuple[str, ...]:
    """The label names of the shapes' category (or of the shapes), checked against their labels.

    All shapes must share one vocabulary: that of the dataset's category of the
    first shape, else the names the meshes carry, else ``"0", "1", ...``.
    """
    dataset = source.dataset
    names = tuple(dataset.label_names_of(dataset.category_of(shape_ids[0]))) if shape_ids else ()
    for shape_id in shape_ids:
        mesh = source.mesh(shape_id)
        if mesh.face_labels is None:
            raise LabelError(mesh.source, f"labelled shape {shape_id} has no face labels")
        if not names:
            names = mesh.label_names
        if mesh.label_names and mesh.label_names != names:
            raise LabelError(
                mesh.source, f"label names {mesh.label_names} differ from the other shapes' {names}"
            )
        top = int(mesh.face_labels.max())
        if names and top >= len(names):
            raise LabelError(mesh.source, f"face label {top} but only {len(names)} classes are named")
    if not names:
        top = max(int(source.mesh(s).face_labels.max()) for s in shape_ids)
        names = tuple(str(i) for i in range(top + 1))
    return names


def spread_view_labels(
    views: LabelledViewDataset,
    items: Sequence[LabelledView],
    num_views: int,
    fill: bool,
    exclude: Sequence[LabelledView] = (),
) -> tuple[list[LabelledView], dict[str, np.ndarray]]:
    """The labels of a few labelled views spread over their shapes' own surfaces (``finetune.spread_labels``).

    Each face of a labelled shape that a pixel of ``items`` sees takes the label most
    of its labelled pixels carry (a face's pixels agree when the views are rendered
    from face labels; a painted label image may disagree). With ``fill``, every face
    no labelled view sees then takes the label of the nearest such face (by
    centroid), as the fusion fills the faces no test view sees. Every view of the
    shape is then labelled through these face labels: the labelled views lend their
    labels to the other cameras of the same shape, and nothing is learned from
    other shapes. Faces the views see unlabelled (``-1``) stay unlabelled.

    Parameters
    ----------
    views : reads each item's pixel labels (:meth:`LabelledViewDataset.labels`)
    items : the labelled views, of one or more shapes
    num_views : the shapes' cameras; every view index ``0 .. num_views - 1`` is returned
    fill : label the faces no item sees from the nearest labelled face
    exclude : views left out of the result (held-out views)

    Returns
    -------
    ``(items, face_labels)``: every view of each shape in ``items`` (in order of first
    appearance, minus ``exclude``), labelled by its faces, and ``shape id -> (F,) int64``
    face labels (``-1`` unlabelled) for :class:`LabelledViewDataset`'s ``face_labels``.
    """
    by_shape: dict[str, list[LabelledView]] = {}
    for item in items:
        by_shape.setdefault(item.shape_id, []).append(item)
    left_out = {(item.shape_id, item.view_index) for item in exclude}
    spread_items: list[LabelledView] = []
    face_labels: dict[str, np.ndarray] = {}
    for shape_id, shape_items in by_shape.items():
        mesh = views.source.mesh(shape_id)
        counts = np.zeros((mesh.num_faces, views.num_classes), np.int64)
        rendered = [views.source.view(shape_id, item.view_index) for item in shape_items]
        for item, view in zip(shape_items, rendered, strict=True):
            labels = views.labels(item, view)
            labelled = labels >= 0
            np.add.at(counts, (view.face_ids[labelled], labels[labelled]), 1)
        seen = seen_faces(rendered, mesh.num_faces)
        known = counts.sum(axis=1) > 0
        labels_of_faces = np.where(known, counts.argmax(axis=1), -1).astype(np.int64)
        if fill:
            labels_of_faces = labels_from_nearest_faces(
                labels_of_faces, mesh.triangles.mean(axis=1), known, ~seen
            )
        face_labels[shape_id] = labels_of_faces
        spread_items += [
            LabelledView(shape_id, view_index)
            for view_index in range(num_views)
            if (shape_id, view_index) not in left_out
        ]
    return spread_items, face_labels
