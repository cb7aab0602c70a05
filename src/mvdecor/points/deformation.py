"""The "(3D) weak supervision via learned deformation" baseline: labels carried along a learned deformation.

MvDeCor (Sharma et al., ECCV 2022) compares its few-shot segmentation with a
3D baseline that learns, from a category's shapes and without their labels,
to deform one shape onto another, and then carries the few labelled shapes'
labels along the deformation. This module is that baseline, in plain PyTorch.

Network (:class:`DeformationNet`)
    A PointNet-style encoder (a shared MLP ``3 -> w -> 2w -> 4w``, max-pooled
    over the points) gives each point cloud a global code. A decoder ``h`` maps
    a source point ``x`` and the codes ``s`` (source) and ``t`` (target) to an
    offset, ``offset(x) = h(x, s, t) - h(x, s, s)``: it is zero whenever the
    two codes are equal, so a shape deformed onto itself does not move, whatever
    the weights. The decoder's last layer starts at zero, so training starts
    from the identity.

Frame
    Source points are first mapped onto the target's bounding box axis by axis
    (:func:`~mvdecor.inference.transfer.align_points`, the alignment of
    :class:`~mvdecor.inference.transfer.LabelTransfer`); the network learns
    the residual deformation, which is small and smooth, rather than the
    proportions, which the box alignment gets exactly.

Training (:func:`train_deformation`)
    Each step draws ``pairs_per_batch`` random (source, target) pairs of
    distinct shapes, ``num_points`` area-weighted surface points of each (from
    a pool sampled once per shape), and minimises
    ``chamfer_weight * Chamfer(deformed source, target)
    + smoothness_weight * Laplacian + offset_weight * mean |offset|^2``, the
    Laplacian comparing each source point's offset with the mean offset of its
    ``neighbours`` nearest source points. Labels are never read. A step's
    draws are a function of the seed and the step alone, so a run resumed from
    its checkpoint draws exactly the batches an unbroken one would.

Transfer (:class:`DeformationTransfer`)
    For a test shape, every labelled shape is deformed onto it and scored by
    the Chamfer distance between its deformed surface sample and the test
    shape's; only the best-fitting labelled shape is kept (the paper's
    baseline as we read it: the best source), and each test face takes the
    label of the nearest deformed labelled point (face centroids plus
    area-weighted samples, as :func:`~mvdecor.inference.transfer.reference_from_mesh`
    builds them) by a k-d tree. ``combine="all"`` pools every labelled shape's
    deformed points instead, as transfer pools its references: a poorly fitting
    shape can then win the faces it happens to lie nearest to, mixing part
    boundaries of shapes with different structures, but no single shape's
    mistakes decide a whole test shape. Excluded classes and
    ``-1`` are dropped from the labelled points, so they are never predicted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from mvdecor.config import Config, DeformConfig, config_from_dict
from mvdecor.config.points import DEFORM_COMBINE
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import ConfigError, LabelError
from mvdecor.inference.transfer import TransferReference, align_points, neighbour_vote, reference_from_mesh
from mvdecor.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from mvdecor.points.sampling import sample_surface
from mvdecor.train.distributed import resolve_device
from mvdecor.train.engine import cosine_factor, train_steps
from mvdecor.train.logs import MetricLogger

__all__ = [
    "CHECKPOINT_KIND",
    "DeformationNet",
    "DeformationTransfer",
    "chamfer_distance",
    "deformation_loss",
    "load_deformation",
    "train_deformation",
]

#: The ``kind`` entry of a deformation checkpoint (segmentation checkpoints say ``segmentation``).
CHECKPOINT_KIND = "deformation"
#: Training points are drawn from a pool of this many times ``num_points`` samples per shape,
#: sampled once: fresh subsets every step without re-sampling large meshes.
POOL_FACTOR = 16
#: Points per decoder call at transfer, to bound memory on large labelled meshes.
_CHUNK = 32_768


def _mesh_box(mesh: LabelledMesh) -> tuple[np.ndarray, np.ndarray]:
    # Over the vertices faces use, as LabelTransfer: loaders keep unused vertices for per-vertex labels.
    used = mesh.vertices[np.unique(mesh.faces)]
    return used.min(axis=0), used.max(axis=0)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, N, M)``: squared distances between ``a`` (B, N, 3) and ``b`` (B, M, 3), by a matrix product."""
    cross = torch.bmm(a, b.transpose(1, 2))
    return (a.square().sum(-1)[:, :, None] + b.square().sum(-1)[:, None, :] - 2 * cross).clamp_min(0)


@torch.no_grad()
def _nearest(a: torch.Tensor, b: torch.Tensor, k: int = 1, *, dense: bool | None = None) -> torch.Tensor:
    """``(B, N, k)`` int64: the indices of the ``k`` nearest points of ``b`` (B, M, 3) to each of ``a`` (B, N, 3).

    ``dense`` (default: on a GPU) takes the smallest entries of the full
    ``(B, N, M)`` distance matrix; otherwise a k-d tree per cloud answers, which
    on a CPU is several times faster than the matrix's passes over memory.
    """
    if a.device.type != "cpu" if dense is None else dense:
        return _squared_distances(a, b).topk(k, dim=2, largest=False).indices
    found = [
        cKDTree(cloud_b.numpy()).query(cloud_a.numpy(), k=k)[1].reshape(len(cloud_a), k)
        for cloud_a, cloud_b in zip(a.detach().cpu(), b.detach().cpu(), strict=True)
    ]
    return torch.from_numpy(np.stack(found).astype(np.int64)).to(a.device)


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance of batched point clouds, in squared distance units.

    Parameters
    ----------
    a : (B, N, 3) float tensor
    b : (B, M, 3) float tensor

    Returns
    -------
    (B,) tensor
        ``mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2`` per pair,
        differentiable in ``a`` and ``b``.
    """
    rows = torch.arange(len(a), device=a.device)[:, None]
    # Nearest points are found without gradients, then their distances are taken from the
    # coordinates: the gradient is a gather, and no (B, N, M) matrix is kept for backward.
    a_to_b = (a - b[rows, _nearest(a, b)[..., 0]]).square().sum(-1).mean(dim=1)
    b_to_a = (b - a[rows, _nearest(b, a)[..., 0]]).square().sum(-1).mean(dim=1)
    return a_to_b + b_to_a


class DeformationNet(nn.Module):
    """Per-point offsets that deform a source point cloud onto a target (see the module docstring).

    Parameters
    ----------
    width : ``w``: the encoder is ``3 -> w -> 2w -> 4w`` (max-pooled), the decoder ``2w`` wide
    """

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.width = int(width)
        w, code = self.width, 4 * self.width
        self.encoder = nn.Sequential(
            nn.Linear(3, w), nn.ReLU(), nn.Linear(w, 2 * w), nn.ReLU(), nn.Linear(2 * w, code)
        )
        # The decoder's first layer, split by input: the point's part is computed once for
        # both terms of the offset, the codes' parts are one row per cloud.
        self.point_in = nn.Linear(3, 2 * w)
        self.source_in = nn.Linear(code, 2 * w, bias=False)
        self.target_in = nn.Linear(code, 2 * w, bias=False)
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Linear(2 * w, 2 * w), nn.ReLU(), nn.Linear(2 * w, w), nn.ReLU(), nn.Linear(w, 3)
        )
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def encode(self, cloud: torch.Tensor) -> torch.Tensor:
        """``(B, 4w)``: the global code of each point cloud ``(B, N, 3)``."""
        return self.encoder(cloud).amax(dim=1)

    def offsets(
        self, points: torch.Tensor, source_code: torch.Tensor, target_code: torch.Tensor
    ) -> torch.Tensor:
        """``(B, N, 3)`` offsets of source ``points`` (B, N, 3), given the codes ``(B, 4w)``.

        ``h(x, s, t) - h(x, s, s)``: exactly zero where ``target_code == source_code``.
        """
        base = self.point_in(points) + self.source_in(source_code)[:, None]
        moved = self.decoder(base + self.target_in(target_code)[:, None])
        still = self.decoder(base + self.target_in(source_code)[:, None])
        return moved - still

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B, N, 3)``: offsets of every point of ``source`` (B, N, 3) towards ``target`` (B, M, 3)."""
        return self.offsets(source, self.encode(source), self.encode(target))


def deformation_loss(
    network: DeformationNet, sources: torch.Tensor, targets: torch.Tensor, config: DeformConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of a batch of (box-aligned source, target) pairs.

    Parameters
    ----------
    network : the deformation network
    sources : (B, N, 3) float32, source points already mapped onto their target's bounding box
    targets : (B, M, 3) float32, target points
    config : the loss weights and ``neighbours``

    Returns
    -------
    (loss, terms)
        The weighted loss (a scalar tensor) and its unweighted, detached terms
        ``chamfer``, ``smoothness`` and ``offset`` (batch means).
    """
    offsets = network(sources, targets)
    chamfer = chamfer_distance(sources + offsets, targets).mean()
    # k nearest source points of each source point, itself left out (the first of the k + 1).
    neighbours = _nearest(sources, sources, config.neighbours + 1)
    rows = torch.arange(len(sources), device=sources.device)[:, None, None]
    laplacian = offsets - offsets[rows, neighbours[:, :, 1:]].mean(dim=2)
    smoothness = laplacian.square().sum(-1).mean()
    magnitude = offsets.square().sum(-1).mean()
    loss = (
        config.chamfer_weight * chamfer
        + config.smoothness_weight * smoothness
        + config.offset_weight * magnitude
    )
    terms = {"chamfer": chamfer.detach(), "smoothness": smoothness.detach(), "offset": magnitude.detach()}
    return loss, terms


def _section(config: Config | DeformConfig) -> DeformConfig:
    return config.deform if isinstance(config, Config) else config


def _pair_batch(
    pools: Sequence[np.ndarray],
    boxes: Sequence[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    pairs: int,
    num_points: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(sources, targets)``, each ``(pairs, num_points, 3)`` float32, the sources box-aligned."""
    n = len(pools)
    source_ids = rng.integers(n, size=pairs)
    # Distinct shapes when there are several: a shape onto itself (two samples of one surface)
    # teaches little more than the identity.
    target_ids = (source_ids + rng.integers(1, n, size=pairs)) % n if n > 1 else source_ids
    sources = np.empty((pairs, num_points, 3), np.float32)
    targets = np.empty((pairs, num_points, 3), np.float32)
    for k, (i, j) in enumerate(zip(source_ids, target_ids, strict=True)):
        picked = pools[i][rng.choice(len(pools[i]), num_points, replace=False)]
        sources[k] = align_points(picked, boxes[i], boxes[j])
        targets[k] = pools[j][rng.choice(len(pools[j]), num_points, replace=False)]
    return sources, targets


def train_deformation(
    config: Config | DeformConfig,
    meshes: Sequence[LabelledMesh],
    *,
    out: str | Path,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train a :class:`DeformationNet` on a category's shapes (labels unused); the checkpoint's path.

    Writes ``out/last.pt`` every ``checkpoint_every`` steps, at the end and on
    Ctrl-C, and the losses to ``out/metrics.csv``. When ``out/last.pt`` exists
    the run resumes from its step (with the same shapes and seed it continues
    exactly as an unbroken run; a finished run returns at once).

    Parameters
    ----------
    config : a whole :class:`~mvdecor.config.Config` (its ``deform`` section is used) or a :class:`DeformConfig`
    meshes : the category's shapes, labelled or not, in a common canonical orientation
    out : the run's folder (created)
    seed : added to ``config.seed`` (e.g. a protocol's run index); the sum seeds
        initialisation, the surface pools and every drawn pair
    progress : show a progress bar

    Returns
    -------
    Path
        ``out/last.pt``: a ``torch.save`` dict with ``model`` (state dict),
        ``optimizer``, ``config`` (the ``deform`` section as a plain dict),
        ``step``, ``seed``, ``shapes`` (their names), ``kind`` (``deformation``)
        and ``format_version``.

    Raises
    ------
    ValueError
        ``meshes`` is empty.
    CheckpointError
        ``out/last.pt`` is not a deformation checkpoint, or one of another network width.
    """
    cfg = _section(config)
    if not meshes:
        raise ValueError("training a deformation needs at least one shape")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "last.pt"
    run_seed = cfg.seed + int(seed)
    device = resolve_device(cfg.device)
    torch.manual_seed(run_seed)
    network = DeformationNet(cfg.width).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=cfg.lr)
    step = 0
    if path.is_file():
        saved = load_checkpoint(path, map_location=device)
        _check_saved(saved, path, cfg.width)
        network.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
    if step >= cfg.iterations:
        return path

    # Pools and boxes depend on the seed and shapes only, so a resumed run draws from the same ones.
    pools = [
        sample_surface(mesh, POOL_FACTOR * cfg.num_points, np.random.default_rng([run_seed, index])).points
        for index, mesh in enumerate(meshes)
    ]
    boxes = [_mesh_box(mesh) for mesh in meshes]

    def batches() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        for s in range(step, cfg.iterations):
            rng = np.random.default_rng([run_seed, 1 + s])  # a function of the step alone
            yield (s, *_pair_batch(pools, boxes, rng, cfg.pairs_per_batch, cfg.num_points))

    def step_fn(batch: tuple[int, np.ndarray, np.ndarray], log: bool) -> tuple[float, dict[str, float]]:
        s, sources, targets = batch
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * cosine_factor(cfg.iterations)(s)
        loss, terms = deformation_loss(
            network, torch.from_numpy(sources).to(device), torch.from_numpy(targets).to(device), cfg
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach()), {name: float(value) for name, value in terms.items()} if log else {}

    def save(reached: int) -> None:
        payload = {
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": dataclasses.asdict(cfg),
            "step": reached,
            "seed": run_seed,
            "shapes": [mesh.name for mesh in meshes],
            "kind": CHECKPOINT_KIND,
        }
        save_checkpoint(path, payload)

    def after_step(reached: int) -> None:
        if reached % cfg.checkpoint_every == 0 or reached == cfg.iterations:
            save(reached)

    logger = MetricLogger(out, tensorboard=False, resume_step=step)
    network.train()
    try:
        train_steps(
            batches(),
            step_fn,
            step=step,
            total=cfg.iterations,
            stop=cfg.iterations,
            device=device,
            lr=lambda: optimizer.param_groups[0]["lr"],
            logger=logger,
            log_every=cfg.log_every,
            after_step=after_step,
            on_interrupt=save,
            desc="deformation",
            progress=progress,
        )
    finally:
        logger.close()
    return path


def _check_saved(saved: dict, path: Path, width: int | None = None) -> None:
    if saved.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(path, f"not a deformation checkpoint (kind {saved.get('kind')!r})")
    if width is not None and saved["config"].get("width") != width:
        raise CheckpointError(
            path,
            f"trained with deform.width {saved['config'].get('width')}, the config says {width}; "
            "use another folder to start a new run",
        )


def load_deformation(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[DeformationNet, DeformConfig, int]:
    """A trained network from a :func:`train_deformation` checkpoint: ``(network, config, step)``.

    The network is on ``device`` (``auto``: CUDA when available) in eval mode.

    Raises
    ------
    CheckpointError
        Missing, unreadable or not a deformation checkpoint.
    ConfigError
        Its stored configuration is not a valid ``deform`` section.
    """
    path = Path(path)
    saved = load_checkpoint(path, map_location="cpu")
    _check_saved(saved, path)
    cfg = config_from_dict({"deform": dict(saved["config"])}, source=str(path)).deform
    network = DeformationNet(cfg.width)
    network.load_state_dict(saved["model"])
    target = resolve_device(device) if isinstance(device, str) else device
    return network.to(target).eval(), cfg, int(saved["step"])


class DeformationTransfer:
    """Label meshes by deforming the best-fitting labelled shape onto them (see the module docstring).

    Parameters
    ----------
    network : a trained :class:`DeformationNet`
    labelled : the labelled shapes (``face_labels`` set), in the frame of the training shapes
    num_classes : ``C``, the size of the label vocabulary
    exclude_classes : labels never predicted (e.g. PartNet's 0, "other"); ``-1`` never is either
    num_points : surface points that give each shape its code and fit (the training's ``num_points``)
    samples : area-weighted labelled points per labelled shape, beside its face centroids
    neighbours : deformed labelled points per face: 1 gives the nearest one's label, more a
        label histogram (soft probabilities, and its majority label)
    device : where the network runs (``auto``: CUDA when available)
    seed : seeds the surface samples (the same mesh always gets the same samples)

    Raises
    ------
    ConfigError
        No labelled shape, or ``neighbours < 1``.
    LabelError
        A labelled shape without labels, with none left after ``exclude_classes``, or with a
        label ``>= num_classes``.

    Examples
    --------
    >>> path = train_deformation(config, category_shapes, out=run_dir)
    >>> transfer = DeformationTransfer.from_checkpoint(path, labelled_shapes, num_classes=4)
    >>> labels, probs = transfer.predict(test_shape)
    """

    def __init__(
        self,
        network: DeformationNet,
        labelled: Sequence[LabelledMesh],
        num_classes: int,
        *,
        exclude_classes: Sequence[int] = (),
        num_points: int = 2048,
        samples: int = 20_000,
        neighbours: int = 1,
        combine: str = "best",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if combine not in DEFORM_COMBINE:
            raise ConfigError(
                None, f"deform.combine must be one of {', '.join(DEFORM_COMBINE)}, got {combine!r}"
            )
        if not labelled:
            raise ConfigError(None, "deformation transfer needs at least one labelled shape")
        if neighbours < 1:
            raise ConfigError(None, f"transfer neighbours must be at least 1, got {neighbours}")
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.network = network.to(self.device).eval()
        self.num_classes = int(num_classes)
        self.num_points = int(num_points)
        self.neighbours = int(neighbours)
        self.combine = combine
        self.seed = int(seed)
        #: The labelled points of each labelled shape, in its own frame (centroids first).
        self.references: tuple[TransferReference, ...] = tuple(
            reference_from_mesh(mesh, samples=samples, seed=seed, exclude_classes=exclude_classes)
            for mesh in labelled
        )
        for reference in self.references:
            if reference.labels.max() >= self.num_classes:
                raise LabelError(
                    reference.name,
                    f"label {int(reference.labels.max())} out of range for {self.num_classes} classes",
                )
        # The whole surface, labelled or not: what the network encodes and what the fit compares.
        self._clouds = [self._cloud(mesh) for mesh in labelled]

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        labelled: Sequence[LabelledMesh],
        num_classes: int,
        *,
        exclude_classes: Sequence[int] = (),
        neighbours: int = 1,
        combine: str = "best",
        device: str | torch.device = "auto",
    ) -> DeformationTransfer:
        """The transfer with the network of a :func:`train_deformation` checkpoint.

        ``num_points``, ``samples`` (``transfer_samples``) and ``seed`` come from
        the checkpoint's configuration; see the class for the other parameters.
        """
        network, cfg, _ = load_deformation(path, device)
        return cls(
            network,
            labelled,
            num_classes,
            exclude_classes=exclude_classes,
            num_points=cfg.num_points,
            samples=cfg.transfer_samples,
            neighbours=neighbours,
            combine=combine,
            device=next(network.parameters()).device,
            seed=cfg.seed,
        )

    def _cloud(self, mesh: LabelledMesh) -> np.ndarray:
        # The same seed for every mesh: the same mesh always gets the same code.
        return sample_surface(mesh, self.num_points, self.seed).points

    def _tensor(self, points: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(points, dtype=torch.float32, device=self.device)[None]

    @torch.no_grad()
    def fit(self, mesh: LabelledMesh) -> np.ndarray:
        """``(R,)`` float64: the Chamfer distance of each labelled shape deformed onto ``mesh`` (lower fits better)."""
        box, target = _mesh_box(mesh), self._tensor(self._cloud(mesh))
        target_code = self.network.encode(target)
        scores = []
        for reference, cloud in zip(self.references, self._clouds, strict=True):
            source = self._tensor(align_points(cloud, (reference.box_min, reference.box_max), box))
            source_code = self.network.encode(source)
            moved = source + self.network.offsets(source, source_code, target_code)
            scores.append(float(chamfer_distance(moved, target)[0]))
        return np.asarray(scores, np.float64)

    @torch.no_grad()
    def deform(self, index: int, mesh: LabelledMesh) -> np.ndarray:
        """``(L, 3)`` float64: the labelled points of ``references[index]`` deformed onto ``mesh``."""
        reference, box = self.references[index], _mesh_box(mesh)
        ref_box = (reference.box_min, reference.box_max)
        source_code = self.network.encode(self._tensor(align_points(self._clouds[index], ref_box, box)))
        target_code = self.network.encode(self._tensor(self._cloud(mesh)))
        aligned = align_points(reference.points, ref_box, box)
        offsets = [
            self.network.offsets(self._tensor(aligned[start : start + _CHUNK]), source_code, target_code)[0]
            for start in range(0, len(aligned), _CHUNK)
        ]
        return aligned + torch.cat(offsets).double().cpu().numpy()

    def predict(self, mesh: LabelledMesh) -> tuple[np.ndarray, np.ndarray]:
        """``(face_labels (F,) int64, face_probabilities (F, C) float32)`` along the deformation.

        The labelled points come from the best-fitting labelled shape
        (``combine="best"``) or from every labelled shape deformed onto ``mesh``
        (``"all"``). The probabilities are the label histogram of each face
        centroid's ``neighbours`` nearest deformed labelled points (rows sum to 1);
        the label is its majority, ties going to the nearest point.
        """
        if self.combine == "all":
            chosen = list(range(len(self.references)))
        else:
            chosen = [int(np.argmin(self.fit(mesh)))]
        tree = cKDTree(np.concatenate([self.deform(index, mesh) for index in chosen]))
        labels_of_points = np.concatenate([self.references[index].labels for index in chosen])
        k = min(self.neighbours, len(labels_of_points))
        _, index = tree.query(mesh.triangles.mean(axis=1), k=k)
        return neighbour_vote(labels_of_points[index.reshape(mesh.num_faces, k)], self.num_classes)

    def face_labels(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F,)`` int64: each face's transferred label (see :meth:`predict`)."""
        return self.predict(mesh)[0]

    def face_probabilities(self, mesh: LabelledMesh) -> np.ndarray:
        """``(F, C)`` float32: each face's label histogram (see :meth:`predict`)."""
        return self.predict(mesh)[1]
