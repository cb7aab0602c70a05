"""DenseCL pre-training on the renders (the paper's 2D self-supervised baseline).

``pretrain.method: densecl`` (``mvdecor pretrain --method densecl``) trains the
same :class:`~mvdecor.models.embedding.EmbeddingNet` as MvDeCor on the same
renders, with the same optimiser, schedule, batch size (``pairs_per_batch``
items of two images each) and run folder, but from single views and without
any 3D correspondence: each item is one rendered view of a training shape, as
two augmented copies, and the loss is DenseCL's (:mod:`mvdecor.models.densecl`,
which also says where the projection heads attach). The checkpoint's ``model``
is an ``EmbeddingNet`` state like MvDeCor's; its ``densecl`` entry holds the
heads, the momentum network and the queues, for exact resumption; ``method``
is ``"densecl"``.

**Augmentations** (DenseCL's MoCo v2 recipe, made consistent with what each
input channel means; drawn per copy, a pure function of ``(seed, item)``):

- random resized crop (area share ``crop_scale``, aspect ``crop_ratio``) back to
  the render size, resampled with **nearest neighbours**, so every pixel stays a
  rendered one (a unit normal, a true depth, an exact foreground mask; bilinear
  resampling would blend object and background). A crop is redrawn (up to 10
  times) until it holds some foreground. Depth is min-max normalised per view by
  the renderer, so it is normalised again over the crop's foreground, as a
  render of that crop would be;
- horizontal flip (``flip_prob``): the image is mirrored, and so is the scene it
  shows, across the camera's vertical plane. Normals are world-space, so they
  are reflected across that plane, ``n - 2 (n . r) r`` with ``r`` the camera's
  right axis: in camera coordinates their x component changes sign. Shading
  and depth are unchanged by the mirror;
- colour jitter (``jitter_prob``) on the colour channels only (grey or RGB):
  brightness, contrast (about the foreground's mean), and on RGB saturation and
  hue (a rotation in YIQ space), in that fixed order, clipped to ``[0, 1]``; a
  random greyscale (``grayscale_prob``, RGB only). Normals and depth are never
  jittered (as in the paper's baseline). DenseCL's Gaussian blur is left out:
  it would smear the geometric channels' edges into the background.

The background stays exactly 0 in every channel, as the renderer makes it, and
augmented copies are then standardised by the run's channel statistics.

**Training details.** The optimiser and the learning-rate schedule are the
pre-training's (Adam at ``pretrain.lr``), so the two methods differ only in
their self-supervision; DenseCL's own settings (queue, momentum, temperature,
lambda, heads, grid) are in ``pretrain.densecl``. The validation loss is the
DenseCL loss of ``val_pairs`` fixed validation items (fixed augmentations), each
against the keys of the other validation items instead of the training queue,
which changes all the time: so successive validations are comparable. DenseCL
runs in one process (its queues and momentum network are not shared across
``torchrun`` ranks), on a GPU or the CPU. As in MoCo without "shuffle BN", the
key network's BatchNorm sees the whole key batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mvdecor.config import DenseCLConfig
from mvdecor.errors import ConfigError
from mvdecor.models.checkpoints import build_model
from mvdecor.models.densecl import ATTACH_POINTS, DenseCL, DenseCLProjections, same_source_mask
from mvdecor.models.embedding import EmbeddingNet
from mvdecor.models.inputs import (
    ChannelStats,
    channel_names,
    flip_view_array,
    parse_modalities,
    view_to_array,
)
from mvdecor.train.data import ViewSource
from mvdecor.train.precision import autocast
from mvdecor.train.pretraining import PRETRAIN_METHODS, MethodSetup, PretrainMethod, PretrainRun

__all__ = [
    "AugmentedPairBatch",
    "AugmentedViewDataset",
    "ViewAugmentation",
    "apply_view_augmentation",
    "build_densecl",
    "build_densecl_method",
    "check_densecl_config",
    "collate_augmented",
    "densecl_validation_loss",
    "draw_view_augmentation",
    "flip_view_array",
]

#: ITU-R 601 luma weights (as torchvision's greyscale).
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: RGB -> YIQ and back, for hue rotation.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)
#: Crops drawn before settling for the whole image (torchvision: 10).
_CROP_TRIES = 10


def check_densecl_config(cfg: DenseCLConfig) -> None:
    """Raise :class:`ConfigError` naming the first ``pretrain.densecl`` value out of range."""

    def bad(name: str, rule: str) -> ConfigError:
        return ConfigError(None, f"pretrain.densecl.{name} must be {rule}, got {getattr(cfg, name)!r}")

    if cfg.attach not in ATTACH_POINTS:
        raise bad("attach", " or ".join(ATTACH_POINTS))
    if cfg.exclude_negatives not in SOURCE_LEVELS:
        raise bad("exclude_negatives", ", ".join(SOURCE_LEVELS[:-1]) + " or " + SOURCE_LEVELS[-1])
    if cfg.queue_size < 0:
        raise bad("queue_size", "0 or more")
    for name in ("hidden_dim", "projection_dim", "grid_size"):
        if getattr(cfg, name) < 1:
            raise bad(name, "positive")
    if cfg.temperature <= 0:
        raise bad("temperature", "positive")
    for name in ("momentum", "dense_weight", "flip_prob", "jitter_prob", "grayscale_prob", "hue"):
        limit = 0.5 if name == "hue" else 1.0
        if not 0.0 <= getattr(cfg, name) <= limit:
            raise bad(name, f"in [0, {limit}]")
    for name in ("brightness", "contrast", "saturation"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise bad(name, "in [0, 1)")
    if len(cfg.crop_scale) != 2 or not 0.0 < float(cfg.crop_scale[0]) <= float(cfg.crop_scale[1]) <= 1.0:
        raise bad("crop_scale", "two shares 0 < low <= high <= 1")
    if len(cfg.crop_ratio) != 2 or not 0.0 < float(cfg.crop_ratio[0]) <= float(cfg.crop_ratio[1]):
        raise bad("crop_ratio", "two aspect ratios 0 < low <= high")


# ----------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class ViewAugmentation:
    """One drawn augmentation of a view.

    Attributes
    ----------
    top, left, height, width : int
        The crop box, in pixels of the view; it is resized back to the view's size.
    flip : bool
        Mirror the image horizontally (after cropping).
    jitter : bool
        Apply the colour factors below.
    brightness, contrast, saturation : float
        Multiplicative factors (1 = unchanged); saturation acts on RGB only.
    hue : float
        Hue rotation in turns (0 = unchanged; RGB only).
    grayscale : bool
        Replace RGB by its luminance.
    """

    top: int
    left: int
    height: int
    width: int
    flip: bool = False
    jitter: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    grayscale: bool = False


def _draw_crop(
    rng: np.random.Generator, mask: np.ndarray, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box, redrawn until it holds foreground."""
    h, w = mask.shape
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_CROP_TRIES):
        area = h * w * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = round(math.sqrt(area * aspect))
        ch = round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            if mask[top : top + ch, left : left + cw].any():
                return top, left, ch, cw
    return 0, 0, h, w


def draw_view_augmentation(
    rng: np.random.Generator, mask: np.ndarray, cfg: DenseCLConfig
) -> ViewAugmentation:
    """Draw one augmentation for a view with foreground ``mask`` ``(H, W)`` (see the module docstring)."""
    top, left, height, width = _draw_crop(rng, np.asarray(mask, bool), cfg.crop_scale, cfg.crop_ratio)
    flip = bool(rng.random() < cfg.flip_prob)
    jitter = bool(rng.random() < cfg.jitter_prob)
    factors = [float(rng.uniform(1 - s, 1 + s)) for s in (cfg.brightness, cfg.contrast, cfg.saturation)]
    hue = float(rng.uniform(-cfg.hue, cfg.hue))
    grayscale = bool(rng.random() < cfg.grayscale_prob)
    return ViewAugmentation(top, left, height, width, flip, jitter, *factors, hue, grayscale)


def _channel_groups(modalities: Sequence[str]) -> tuple[list[int], list[int], int | None]:
    """Indices of the colour channels, the three normal channels and the depth channel."""
    names = channel_names(modalities)
    colour = [i for i, n in enumerate(names) if n in ("grey", "r", "g", "b")]
    normal = [i for i, n in enumerate(names) if n in ("nx", "ny", "nz")]
    depth = names.index("depth") if "depth" in names else None
    return colour, normal, depth


def _jitter_colour(colour: np.ndarray, mask: np.ndarray, aug: ViewAugmentation) -> np.ndarray:
    """Colour jitter and greyscale of ``(1 or 3, H, W)`` colour channels in ``[0, 1]``."""
    rgb = colour.shape[0] == 3
    out = colour.copy()
    if aug.jitter:
        out = np.clip(out * aug.brightness, 0.0, 1.0)
        luma = np.tensordot(_LUMA, out, axes=1) if rgb else out[0]
        mean = float(luma[mask].mean()) if mask.any() else 0.0
        out = np.clip((out - mean) * aug.contrast + mean, 0.0, 1.0)
        if rgb:
            grey = np.tensordot(_LUMA, out, axes=1)[None]
            out = np.clip((out - grey) * aug.saturation + grey, 0.0, 1.0)
            if aug.hue:
                angle = 2.0 * math.pi * aug.hue
                cos, sin = math.cos(angle), math.sin(angle)
                rotate = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], np.float32)
                matrix = _YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ
                out = np.clip(np.tensordot(matrix, out, axes=1), 0.0, 1.0)
    if rgb and aug.grayscale:
        out = np.repeat(np.tensordot(_LUMA, out, axes=1)[None], 3, axis=0)
    return out.astype(np.float32, copy=False)


def apply_view_augmentation(
    array: np.ndarray,
    mask: np.ndarray,
    modalities: Sequence[str],
    right_axis: np.ndarray,
    aug: ViewAugmentation,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``aug`` to a raw (not standardised) view array ``(C, H, W)`` and its mask ``(H, W)``.

    Returns the augmented ``(C, H, W)`` float32 array, 0 on the background, and
    its mask, at the input's size. See the module docstring for what each step
    does to each channel.
    """
    modalities = parse_modalities(modalities)
    colour, _, depth = _channel_groups(modalities)
    _, h, w = array.shape
    # Nearest-neighbour resize of the crop: output pixel centres mapped into the crop.
    rows = aug.top + np.minimum(((np.arange(h) + 0.5) * aug.height / h).astype(np.int64), aug.height - 1)
    cols = aug.left + np.minimum(((np.arange(w) + 0.5) * aug.width / w).astype(np.int64), aug.width - 1)
    out = np.ascontiguousarray(array[:, rows][:, :, cols], dtype=np.float32)
    out_mask = np.ascontiguousarray(np.asarray(mask, bool)[rows][:, cols])
    if aug.flip:
        out, out_mask = flip_view_array(out, out_mask, modalities, right_axis)
    if depth is not None and out_mask.any():
        values = out[depth][out_mask]
        near, far = values.min(), values.max()
        out[depth][out_mask] = (values - near) / max(far - near, np.float32(1e-12))
    if colour and (aug.jitter or aug.grayscale):
        out[colour] = _jitter_colour(out[colour], out_mask, aug)
    out[:, ~out_mask] = 0.0
    return out, out_mask


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class AugmentedPairBatch:
    """A batch of ``B`` views, each as two augmented copies.

    Attributes
    ----------
    inputs_query, inputs_key : (B, C, H, W) float32
        Network inputs of the two copies (standardised; background 0).
    sources : (B,) int64
        Where each view came from, as :data:`SOURCE_LEVELS` ids of the
        dataset's ``exclude_negatives`` level (a view, or a shape).
    """

    inputs_query: torch.Tensor
    inputs_key: torch.Tensor
    sources: torch.Tensor

    def to(self, device: torch.device | str) -> AugmentedPairBatch:
        return AugmentedPairBatch(
            self.inputs_query.to(device, non_blocking=True),
            self.inputs_key.to(device, non_blocking=True),
            self.sources.to(device, non_blocking=True),
        )

    def __len__(self) -> int:
        return self.inputs_query.shape[0]


#: What ``pretrain.densecl.exclude_negatives`` may name.
SOURCE_LEVELS: tuple[str, ...] = ("none", "view", "shape")

#: View ids are ``shape index * VIEWS_PER_SHAPE_BOUND + view index``: unique for any camera rig.
VIEWS_PER_SHAPE_BOUND = 1 << 20


def collate_augmented(items: Sequence[dict[str, np.ndarray]]) -> AugmentedPairBatch:
    """Stack :meth:`AugmentedViewDataset.__getitem__` items into an :class:`AugmentedPairBatch`."""
    return AugmentedPairBatch(
        inputs_query=torch.from_numpy(np.stack([it["inputs_query"] for it in items])),
        inputs_key=torch.from_numpy(np.stack([it["inputs_key"] for it in items])),
        sources=torch.tensor([int(it["source"]) for it in items], dtype=torch.long),
    )


class AugmentedViewDataset(torch.utils.data.Dataset):
    """Item ``k``: a random view of a random shape, as two augmented copies.

    Parameters
    ----------
    source : where views come from (render store or on the fly)
    shape_ids : the shapes to draw from
    modalities : input channels
    stats : channel statistics applied after augmenting (None: raw values)
    augment : the augmentation settings (``pretrain.densecl``)
    seed : item ``k`` depends only on ``(seed, k)``
    length : nominal length (items are generated, so any index is valid)
    """

    def __init__(
        self,
        source: ViewSource,
        shape_ids: Sequence[str],
        modalities: Sequence[str],
        stats: ChannelStats | None,
        augment: DenseCLConfig,
        seed: int = 0,
        length: int = 10**12,
    ) -> None:
        if not shape_ids:
            raise ValueError("no shapes to draw views from")
        self.source = source
        self.shape_ids = list(shape_ids)
        self.modalities = parse_modalities(modalities)
        self.stats = stats
        self.augment = augment
        self.seed = int(seed)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        shape_index = int(rng.integers(len(self.shape_ids)))
        shape_id = self.shape_ids[shape_index]
        view_index = int(rng.integers(self.source.num_views(shape_id)))
        view = self.source.view(shape_id, view_index)
        array, mask = view_to_array(view, self.modalities), view.mask
        right_axis = view.camera.rotation[0, 0]  # row 0 of world-to-camera: camera +X in world space
        by_shape = self.augment.exclude_negatives == "shape"
        item: dict[str, np.ndarray] = {
            "source": np.int64(shape_index if by_shape else shape_index * VIEWS_PER_SHAPE_BOUND + view_index)
        }
        for name in ("inputs_query", "inputs_key"):
            aug = draw_view_augmentation(rng, mask, self.augment)
            copy, copy_mask = apply_view_augmentation(array, mask, self.modalities, right_axis, aug)
            if self.stats is not None:
                copy = self.stats.normalize(copy, copy_mask)
            item[name] = np.ascontiguousarray(copy, dtype=np.float32)
        return item


# ------------------------------------------------------------------------ training
def build_densecl(embedding: EmbeddingNet, cfg: DenseCLConfig) -> DenseCL:
    """The DenseCL training module around ``embedding`` (the query network), from ``pretrain.densecl``."""
    check_densecl_config(cfg)
    return DenseCL(
        embedding,
        attach=cfg.attach,
        hidden_dim=cfg.hidden_dim,
        projection_dim=cfg.projection_dim,
        grid_size=cfg.grid_size,
        queue_size=cfg.queue_size,
        momentum=cfg.momentum,
        temperature=cfg.temperature,
        dense_weight=cfg.dense_weight,
        exclude_same_source=cfg.exclude_negatives != "none",
    )


def _concat(parts: list[DenseCLProjections]) -> DenseCLProjections:
    return DenseCLProjections(*(torch.cat(field) for field in zip(*parts, strict=True)))


@torch.no_grad()
def densecl_validation_loss(
    densecl: DenseCL,
    val_set: AugmentedViewDataset,
    num_items: int,
    batch_items: int,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """Mean DenseCL loss of the fixed items ``0..num_items-1``, each against the other items' keys.

    The modules are put in eval mode. The negatives are the other validation
    items' global and mean dense keys, not the training queue, so that
    successive validations are comparable.
    """
    densecl.eval()
    queries, keys, sources = [], [], []
    for start in range(0, num_items, batch_items):
        batch = collate_augmented([val_set[k] for k in range(start, min(start + batch_items, num_items))])
        batch = batch.to(device)
        with autocast(device, precision):
            queries.append(densecl.project_query(batch.inputs_query))
            keys.append(densecl.project_key(batch.inputs_key))
        sources.append(batch.sources)
    query, key, source = _concat(queries), _concat(keys), torch.cat(sources)
    losses = []
    for i in range(num_items):
        others = torch.arange(num_items, device=query.global_.device) != i
        one_query = DenseCLProjections(*(t[i : i + 1] for t in query))
        one_key = DenseCLProjections(*(t[i : i + 1] for t in key))
        exclude = None
        if densecl.exclude_same_source:
            exclude = same_source_mask(source[i : i + 1], source[others])
        negatives = (key.global_[others], key.dense_mean[others])
        losses.append(float(densecl.losses(one_query, one_key, *negatives, exclude).loss))
    return float(np.mean(losses))


def build_densecl_method(run: PretrainRun) -> MethodSetup:
    """DenseCL pre-training of the embedding network (see :func:`~mvdecor.train.pretrain.pretrain`).

    Raises
    ------
    ConfigError
        The run folder holds no DenseCL state to resume from.
    """
    config, device = run.config, run.device
    cfg = config.pretrain
    model = build_model(config).to(device)
    densecl = build_densecl(model, cfg.densecl).to(device)
    if run.saved is not None and "densecl" not in run.saved:
        raise ConfigError(run.last_path, "holds no DenseCL state to resume from; use a new run folder")

    modalities = config.model.modalities
    train_set = AugmentedViewDataset(run.source, run.train_ids, modalities, run.stats, cfg.densecl, cfg.seed)
    val_set = (
        AugmentedViewDataset(
            run.source, run.val_ids, modalities, run.stats, cfg.densecl, cfg.seed + 1_000_003
        )
        if run.val_ids
        else None
    )

    def train_loss(batch: AugmentedPairBatch) -> tuple[torch.Tensor, dict[str, float]]:
        result = densecl(batch.inputs_query, batch.inputs_key, batch.sources)
        return result.loss, {
            "loss_global": float(result.global_loss.detach()),
            "loss_dense": float(result.dense_loss.detach()),
        }

    def val_loss() -> float:
        return densecl_validation_loss(
            densecl, val_set, cfg.val_pairs, cfg.pairs_per_batch, device, cfg.precision
        )

    return MethodSetup(
        model=model,
        network=densecl,
        parameters=densecl.trainable_parameters(),
        train_set=train_set,
        collate_fn=collate_augmented,
        loss=train_loss,
        validation_loss=val_loss if val_set is not None else None,
        extra_state=lambda: {"densecl": densecl.training_state()},
        load_extra_state=lambda saved: densecl.load_training_state(saved["densecl"]),
    )


# One process only: the queues are not shared across torchrun processes.
PRETRAIN_METHODS.register("densecl")(
    PretrainMethod(
        build=build_densecl_method,
        check=lambda config: check_densecl_config(config.pretrain.densecl),
        distributed=False,
    )
)
