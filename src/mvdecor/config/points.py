"""The configuration's sections of the 3D point-cloud baselines: ``points`` and ``deform``."""

from __future__ import annotations

from dataclasses import dataclass

from mvdecor.config.checks import at_least, check, device_ok, one_of, ordered_range, positive
from mvdecor.config.sections import PRECISIONS


@dataclass(frozen=True)
class PointsConfig:
    """The 3D point-cloud baselines (:mod:`mvdecor.points`): (3D) Scratch and (3D) PointContrast.

    A DGCNN (EdgeConv on k-nearest-neighbour graphs recomputed in feature space)
    gives every surface point an embedding; a 1x1 convolution turns it into
    class scores. *Scratch* trains both on the few labelled shapes' point
    clouds; *PointContrast* first pre-trains the network without labels by
    PointInfoNCE between the hit points of two overlapping rendered views
    (cameras from ``render``, pairs overlapping by more than
    ``pretrain.overlap_threshold``, pixels matched with the radius of
    ``pretrain``), then fine-tunes like scratch. Shapes are in their
    unit-sphere-normalised frame, +Y up. The defaults are the paper-scale
    settings, for a GPU.

    Attributes
    ----------
    num_points : int
        Surface points per whole-shape cloud, in fine-tuning and prediction (2048).
    neighbours : int
        ``k`` of every k-nearest-neighbour graph (20, DGCNN's); at most
        ``num_points`` and ``pretrain_points``.
    widths : tuple of int
        Output width of each EdgeConv block, one block per entry (``[64, 64, 64]``).
    global_dim : int
        Width of the shape-level feature, max-pooled over the points and given
        back to every point (1024, DGCNN's).
    head_width : int
        Hidden width of the per-point MLP that makes the embedding (256).
    embed_dim : int
        Size of each point's embedding (64, as the 2D network's).
    use_normals : bool
        Feed each point's surface normal beside its position (false: positions
        only, as DGCNN's part segmentation).
    pretrain_points : int
        Points per partial cloud (the hit points of one rendered view) in
        pre-training (1024: a view sees about half of a shape, so its cloud is
        about as dense as a whole-shape cloud of ``num_points``).
    pretrain_iterations : int
        PointContrast optimiser steps (60,000). A run continued with more steps
        resumes from its last checkpoint.
    pretrain_lr : float
        Adam learning rate of pre-training, decayed to 0 at the last step along
        half a cosine (1e-3).
    pretrain_pairs_per_batch : int
        Pairs of overlapping views (two partial clouds each) per step (8).
    pretrain_matches_per_pair : int
        Matched points per pair, the positives of PointInfoNCE and each other's
        negatives (512); at most ``pretrain_points``.
    pretrain_temperature : float
        PointInfoNCE temperature tau (0.4, PointContrast's).
    pretrain_rotation_degrees : float
        Each partial cloud is rotated independently about a random axis by an
        angle drawn from ``+-degrees / 2`` (360: any rotation, as PointContrast).
        The network must then learn rotation invariance, which a short run does
        not: the ``cpu`` preset uses 0, as its shapes are aligned and
        fine-tuning does not rotate them.
    finetune_iterations : int
        Cross-entropy steps on the labelled shapes, for scratch and after
        pre-training alike (2000).
    finetune_lr : float
        Adam learning rate of fine-tuning, cosine-decayed to 0 (1e-3).
    finetune_shapes_per_batch : int
        Whole-shape clouds per step, each freshly sampled from a labelled shape (8).
    finetune_rotation : bool
        Rotate each fine-tuning cloud about the up axis by a random angle
        (false: category datasets are aligned, and the rotation would hide it).
    scale_range : (float, float)
        Every training cloud is scaled by a factor drawn from this range
        ((0.8, 1.2), PointContrast's).
    jitter_std : float
        Standard deviation of the Gaussian noise added to every training
        point's position (0.005, unit-sphere units).
    predict_clouds : int
        Clouds of ``num_points`` sampled from a mesh to label it; each face
        takes the mean class probabilities of the samples on it (8).
    checkpoint_every : int
        Steps between checkpoints (``checkpoints/last.pt``, from which a run
        resumes) (1000).
    log_every : int
        Steps between rows of ``metrics.csv`` (50).
    precision : str
        ``fp32``, ``bf16``, ``fp16`` (CUDA only) or ``auto``, as in pre-training
        (``fp32``); neighbours are always searched in fp32.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    seed : int
        Seeds initialisation, every sampled cloud and drawn pair, and prediction's samples.
    """

    num_points: int = 2048
    neighbours: int = 20
    widths: tuple[int, ...] = (64, 64, 64)
    global_dim: int = 1024
    head_width: int = 256
    embed_dim: int = 64
    use_normals: bool = False
    pretrain_points: int = 1024
    pretrain_iterations: int = 60_000
    pretrain_lr: float = 1e-3
    pretrain_pairs_per_batch: int = 8
    pretrain_matches_per_pair: int = 512
    pretrain_temperature: float = 0.4
    pretrain_rotation_degrees: float = 360.0
    finetune_iterations: int = 2000
    finetune_lr: float = 1e-3
    finetune_shapes_per_batch: int = 8
    finetune_rotation: bool = False
    scale_range: tuple[float, float] = (0.8, 1.2)
    jitter_std: float = 0.005
    predict_clouds: int = 8
    checkpoint_every: int = 1000
    log_every: int = 50
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        section = "points"
        at_least(self, section, 1, "num_points", "neighbours", "global_dim", "head_width", "embed_dim")
        at_least(self, section, 1, "pretrain_points", "pretrain_pairs_per_batch", "pretrain_matches_per_pair")
        at_least(self, section, 1, "finetune_iterations", "finetune_shapes_per_batch", "predict_clouds")
        at_least(self, section, 1, "checkpoint_every", "log_every")
        at_least(self, section, 0, "pretrain_iterations", "jitter_std")
        positive(self, section, "pretrain_lr", "pretrain_temperature", "finetune_lr")
        check(
            section,
            "widths",
            self.widths,
            len(self.widths) > 0 and all(width >= 1 for width in self.widths),
            "a non-empty list of widths >= 1",
        )
        smallest = min(self.num_points, self.pretrain_points)
        check(
            section,
            "neighbours",
            self.neighbours,
            self.neighbours <= smallest,
            f"<= points.num_points and points.pretrain_points ({smallest})",
        )
        check(
            section,
            "pretrain_matches_per_pair",
            self.pretrain_matches_per_pair,
            self.pretrain_matches_per_pair <= self.pretrain_points,
            f"<= points.pretrain_points ({self.pretrain_points})",
        )
        degrees = self.pretrain_rotation_degrees
        check(section, "pretrain_rotation_degrees", degrees, 0 <= degrees <= 360, "in [0, 360]")
        ordered_range(self, section, "scale_range", 0.0, None)
        one_of(self, section, "precision", PRECISIONS)
        check(section, "device", self.device, device_ok(self.device), "auto, cpu, cuda or cuda:N")


#: ``deform.combine`` values: carry labels from the best-fitting labelled shape, or from all.
DEFORM_COMBINE = ("best", "all")


@dataclass(frozen=True)
class DeformConfig:
    """The "(3D) weak supervision via learned deformation" baseline (:mod:`mvdecor.points.deformation`).

    A small point network learns, without labels, to deform any shape of a
    category onto any other (Chamfer loss between the deformed source and the
    target, after the per-axis bounding-box alignment of :mod:`mvdecor.inference.transfer`);
    labels then travel along the deformation from the best-fitting labelled shape
    (or from all of them: ``combine``).

    Attributes
    ----------
    num_points : int
        Surface points per shape in each training pair, and in the samples that
        give a shape its global code and fit at transfer (2048). Must exceed ``neighbours``.
    width : int
        Network width ``w``: the encoder is a shared MLP ``3 -> w -> 2w -> 4w``
        with max-pooling, the offset decoder an MLP of width ``2w`` (128).
    iterations : int
        Optimiser steps (20,000). A run continued with more steps picks up from
        its last checkpoint (the cosine learning-rate curve stretches to the new end).
    lr : float
        Adam learning rate at the start, decayed to 0 at ``iterations`` along half a cosine (1e-3).
    pairs_per_batch : int
        Random (source, target) pairs of distinct shapes per step (16).
    chamfer_weight : float
        Weight of the symmetric Chamfer distance (mean squared nearest-point
        distance each way) between the deformed source and the target (1.0).
    smoothness_weight : float
        Weight of the Laplacian term: each source point's offset against the mean
        offset of its ``neighbours`` nearest source points, so nearby points move together.
    offset_weight : float
        Weight of the mean squared offset, which keeps the deformation close to
        the box alignment where the Chamfer loss does not ask for more.
    neighbours : int
        ``k`` of the source's k-nearest-neighbour graph of the smoothness term (8).
    transfer_samples : int
        Area-weighted surface points per labelled shape carried through the
        deformation at transfer, beside its face centroids (20,000).
    combine : str
        With several labelled shapes, which carry labels to a target: ``best``
        (the paper's choice: the one whose deformation fits the target best, lowest
        Chamfer distance) or ``all`` (each deformed onto the target; a face takes the
        labels of the nearest deformed labelled points of any of them, as transfer does
        with several references). A transfer-time choice: the network does not depend on it.
    checkpoint_every : int
        Steps between checkpoints (``last.pt``, from which a run resumes).
    log_every : int
        Steps between rows of the run's ``metrics.csv`` (the loss and its terms).
    seed : int
        Seeds initialisation, the surface samples and every drawn pair.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    num_points: int = 2048
    width: int = 128
    iterations: int = 20_000
    lr: float = 1e-3
    pairs_per_batch: int = 16
    chamfer_weight: float = 1.0
    smoothness_weight: float = 1.0
    offset_weight: float = 0.01
    neighbours: int = 8
    transfer_samples: int = 20_000
    combine: str = "best"
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        section = "deform"
        at_least(self, section, 1, "num_points", "width", "iterations", "pairs_per_batch")
        at_least(self, section, 1, "neighbours", "checkpoint_every", "log_every")
        at_least(self, section, 0, "smoothness_weight", "offset_weight", "transfer_samples")
        positive(self, section, "lr", "chamfer_weight")
        check(
            section,
            "neighbours",
            self.neighbours,
            self.neighbours < self.num_points,
            f"< deform.num_points ({self.num_points})",
        )
        one_of(self, section, "combine", DEFORM_COMBINE)
        check(section, "device", self.device, device_ok(self.device), "auto, cpu, cuda or cuda:N")
