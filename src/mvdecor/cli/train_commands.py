"""Training and its evaluation: ``pretrain``, ``finetune``, ``fewshot``, ``evaluate-embedding``, ``deform``."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from mvdecor.cli.common import (
    add_imagenet_checkpoint_option,
    add_inference_options,
    add_keep_checkpoints_option,
    add_modalities_option,
    add_render_options,
    add_train_options,
    load_category_shapes,
)
from mvdecor.cli.overrides import add_set_option, config_from_args
from mvdecor.config import SPREAD_LABELS
from mvdecor.errors import ConfigError, MvDecorError


def add_spread_labels_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spread-labels",
        dest="spread_labels",
        choices=SPREAD_LABELS,
        help="with labelled views: spread their labels over the labelled shape's own faces and label "
        "every view of it through them (seen: the faces they see; fill: the rest from the nearest "
        "labelled face too; off: the labelled views alone, the paper's)",
    )


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mvdecor.train.pretrain import pretrain

    config = config_from_args(args)
    split = None
    if args.split:
        try:
            split = json.loads(Path(args.split).read_text())
        except (OSError, ValueError) as exc:
            raise MvDecorError(f"{args.split}: unreadable split file ({exc})") from None
    result = pretrain(
        config,
        args.dataset,
        args.run,
        store=args.store,
        resume=not args.restart,
        progress=not args.quiet,
        split=split,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"pre-trained ({config.pretrain.method}) to step {result.step} (preset {config.preset}); "
            f"last loss {result.train_loss:.4f}, "
            f"best validation loss {result.best_val_loss:.4f}; checkpoints in {result.last_checkpoint.parent}"
        )
    return 0


def add_pretrain_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor pretrain``."""
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pre-training on a dataset's shapes (no labels needed)",
        description=(
            "Pre-train the embedding network so that pixels of two views seeing the same 3D point "
            "get the same embedding (dense InfoNCE over multi-view correspondences; paper section "
            "3.1), or, with --method densecl, by the paper's 2D baseline DenseCL (two augmented "
            "copies of single views, a momentum network and queues of negatives; settings in the "
            "config's pretrain.densecl section). Either way the checkpoint is the same embedding "
            "network, for `mvdecor finetune --init` and `mvdecor fewshot --init`. Writes "
            "RUN/config.yaml, metrics.csv, val.csv, tensorboard/ and checkpoints/ (last.pt, best.pt, "
            "the latest pretrain.keep_snapshots step_*.pt). Re-running the same command resumes exactly where it stopped; Ctrl-C saves "
            "first. For several GPUs (MvDeCor only): torchrun --nproc-per-node N -m mvdecor pretrain ..."
        ),
    )
    p.add_argument("dataset", help="a dataset name or spec (see `mvdecor datasets`) or a folder of meshes")
    p.add_argument("run", help="the run folder")
    p.add_argument(
        "--store", help="a render store of DATASET made by `mvdecor render` (default: render on the fly)"
    )
    p.add_argument("--restart", action="store_true", help="ignore RUN/checkpoints/last.pt and start over")
    p.add_argument(
        "--split", help='JSON file {"train": [ids], "val": [ids]} (default: a seeded random split)'
    )
    p.add_argument(
        "--method",
        dest="pretrain_method",
        choices=("mvdecor", "densecl"),
        help="mvdecor (multi-view correspondences, the paper's method) or densecl (the 2D baseline) "
        "(default: the preset's pretrain.method, mvdecor)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_render_options(p, "cpu")
    add_train_options(p)
    p.set_defaults(func=cmd_pretrain)


def _parse_label_images(folder: str, shape_ids: list[str]) -> dict[tuple[str, int], Path]:
    """``<shape>/view_<N>.png`` or ``<shape>_view_<N>.png`` files of a folder."""
    import re

    root = Path(folder)
    if not root.is_dir():
        raise MvDecorError(f"{folder}: no such label image folder")
    found: dict[tuple[str, int], Path] = {}
    pattern = re.compile(r"^(?:(?P<shape>.+)_)?view_(?P<index>\d+)\.png$")
    for path in sorted(root.rglob("*.png")):
        match = pattern.match(path.name)
        if not match:
            continue
        shape = match.group("shape") or (path.parent.name if path.parent != root else None)
        if shape is None and len(shape_ids) == 1:
            shape = shape_ids[0]
        if shape not in shape_ids:
            raise MvDecorError(f"{path}: names no shape of the dataset (expected <shape>/view_<N>.png)")
        found[(shape, int(match.group("index")))] = path
    if not found:
        raise MvDecorError(f"{folder}: no label images named <shape>/view_<N>.png or <shape>_view_<N>.png")
    return found


def cmd_finetune(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.data.datasets import open_dataset
    from mvdecor.train.finetune import finetune, finetune_nearest_prior, wants_nearest_prior

    config = config_from_args(args, train_section="finetune")
    if args.nearest_prior:
        if config.finetune.method != "network":
            raise MvDecorError(
                "--nearest-prior goes with --method network (a nearest model needs no second one)"
            )
        # Recorded in the model's configuration, so that `segment` averages the two by itself.
        share = config.segment.transfer_prior or 0.5
        config = replace(
            config, segment=replace(config.segment, prior_method="nearest", transfer_prior=share)
        )
    shape_ids = open_dataset(args.dataset).shape_ids()
    label_images = _parse_label_images(args.label_images, shape_ids) if args.label_images else None
    if args.labelled:
        labelled = args.labelled
    elif label_images:
        labelled = sorted({s for s, _ in label_images})
    else:
        if args.k > len(shape_ids):
            raise ConfigError(
                None, f"--k {args.k} asks for more labelled shapes than {args.dataset} has ({len(shape_ids)})"
            )
        rng = np.random.default_rng(config.finetune.seed)
        labelled = sorted(rng.choice(shape_ids, size=args.k, replace=False).tolist())
    # The labelled data and run options of the network and, when paired, of its lookup.
    common = dict(
        labelled_shapes=labelled,
        init=args.init,
        unlabelled_shapes=args.unlabelled,
        label_images=label_images,
        store=args.store,
        resume=not args.restart,
        progress=not args.quiet,
    )
    lookup = None
    if wants_nearest_prior(config) or (config.finetune.method == "network" and config.finetune.pseudo_shapes):
        # The nearest labelled faces of the same initial network, labelled shapes and views
        # (--nearest-prior, or a configuration that asks for the pair), banked first: self-training
        # (finetune.pseudo_shapes) pseudo-labels the unlabelled shapes with them.
        lookup = finetune_nearest_prior(config, args.dataset, args.run, report=False, **common)
    pseudo_labeller = None
    if lookup is not None and config.finetune.method == "network" and config.finetune.pseudo_shapes:
        pseudo_labeller = _lookup_labeller(lookup.model_checkpoint, config, args)
    result = finetune(config, args.dataset, args.run, pseudo_labeller=pseudo_labeller, **common)
    if lookup is not None and wants_nearest_prior(config) and config.segment.transfer_vote != "off":
        # Transfer votes beside the pair: its references kept with the model, so that `segment`
        # needs neither --references nor the dataset.
        from mvdecor.cli.segment_commands import save_run_references

        kept = save_run_references(args.run, args.dataset, labelled, config)
        print(f"kept the labelled shapes for label transfer's vote (segment.transfer_vote): {kept}")
    shapes = (
        f"{len(labelled)} labelled shapes ({', '.join(labelled[:5])}{'...' if len(labelled) > 5 else ''})"
    )
    if lookup is not None and wants_nearest_prior(config):
        print(
            f"banked the nearest labelled faces of {args.init} as the vote's prior (weight "
            f"{config.segment.transfer_prior:g}): {lookup.model_checkpoint}"
        )
    if config.finetune.method == "nearest":
        done = f"banked the labelled pixels of {shapes}, no training (finetune.method nearest"
        print(
            f"{done}, preset {config.preset}); {len(result.label_names)} classes; model: {result.model_checkpoint}"
        )
        return 0
    print(
        f"fine-tuned on {shapes} to step {result.step} (preset {config.preset}); "
        f"{len(result.label_names)} classes; model: {result.model_checkpoint}"
        + (
            f" (held-out views chose step {result.best_step}, pixel mIoU {result.best_val_miou:.3f})"
            if result.best_step is not None
            else ""
        )
    )
    return 0


def _lookup_labeller(checkpoint: str | Path, config, args: argparse.Namespace):
    """Self-training's pseudo-labeller for ``mvdecor finetune``: the banked lookup segmenting a
    shape of the dataset with the run's test-time views (``shape_id -> (labels, confidence)``)."""
    from mvdecor.correspond.source import ViewSource
    from mvdecor.inference.segment import Segmenter, shape_labeller

    source = ViewSource.from_config(args.dataset, config, store=args.store)
    return shape_labeller(Segmenter.from_checkpoint(checkpoint), source.mesh)


def add_finetune_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor finetune``."""
    p = sub.add_parser(
        "finetune",
        help="adapt a network to a few labelled shapes or views (nearest labelled faces, or fine-tuning)",
        description=(
            "Adapt the embedding network to a few labelled shapes or views, as finetune.method says "
            "(--method). network (the default of both presets, paper section 3.2): fine-tune the network "
            "with a segmentation head (BN, ReLU, 3x3 conv) by cross-entropy over the foreground pixels of "
            "labelled views, plus lambda x InfoNCE on unlabelled shapes; the cpu preset also banks the "
            "nearest labelled faces of the --init network in RUN/nearest-prior (seconds), and segment "
            "averages the two models' labels (segment.prior_method nearest, transfer_prior 0.5). nearest: "
            "that lookup alone, no training; each face (its pixels' embeddings pooled over all views) "
            "takes the labels of its nearest labelled faces in the embedding (and, with "
            "finetune.nearest_position_weight, in the shapes' bounding boxes), from a bank kept in the "
            "checkpoint; seconds. Labelled shapes: --labelled IDS, or --k K drawn "
            "at random (seeded); --views-per-shape V labels only V views of each (the sparse setting); "
            "--label-images DIR uses your own label PNGs (one class index per pixel, 255 = unlabelled) "
            "for views rendered with the preset's cameras (`mvdecor views`). Writes RUN/checkpoints/"
            "last.pt for `mvdecor segment`; re-running resumes. --nearest-prior asks for the pair with "
            "another configuration (e.g. --preset paper); --set segment.transfer_prior=0 for the network alone."
        ),
    )
    p.add_argument("dataset", help="dataset spec or folder (labels and label names from it)")
    p.add_argument("run", help="the run folder")
    p.add_argument(
        "--init",
        default="scratch",
        help="scratch (default), imagenet (with --imagenet-checkpoint), or a checkpoint of "
        "`mvdecor pretrain` (either method)",
    )
    p.add_argument(
        "--method",
        dest="finetune_method",
        choices=("nearest", "network"),
        help="network (fine-tuning, the paper's; in the cpu preset paired with the lookup) or nearest "
        "(the lookup alone, no training: nearest labelled faces in the embedding) (default: network)",
    )
    add_modalities_option(p)
    add_imagenet_checkpoint_option(p)
    p.add_argument("--labelled", nargs="+", metavar="ID", help="the labelled shape ids")
    p.add_argument(
        "--k", type=int, default=2, help="labelled shapes drawn at random when --labelled is absent"
    )
    p.add_argument(
        "--views-per-shape", dest="views_per_shape", type=int, help="labelled views per shape (0: all)"
    )
    add_spread_labels_option(p)
    p.add_argument("--label-images", help="folder of <shape>/view_<N>.png label images")
    p.add_argument("--unlabelled", nargs="*", metavar="ID", help="shapes for the regulariser (default: all)")
    p.add_argument("--ssl-weight", dest="ssl_weight", type=float, help="lambda (0 disables the regulariser)")
    p.add_argument("--encoder-lr-scale", dest="encoder_lr_scale", type=float, help="encoder lr / head lr")
    p.add_argument(
        "--head-warmup",
        dest="head_warmup",
        type=int,
        help="first steps that train the head alone, the pre-trained network frozen",
    )
    p.add_argument(
        "--flip-prob",
        dest="flip_prob",
        type=float,
        help="probability of mirroring a labelled view (augmentation; 0: off)",
    )
    p.add_argument(
        "--stretch",
        dest="stretch",
        type=float,
        help="render half the labelled views again with their shape scaled by exp(U(-VALUE, VALUE)) "
        "per axis (proportion augmentation; 0: off, 0.3: factors 0.74-1.35)",
    )
    p.add_argument(
        "--class-balance",
        dest="class_balance",
        type=float,
        help="weigh each part's pixels by frequency**-VALUE in the loss (0: off, 1: inverse frequency)",
    )
    p.add_argument(
        "--nearest-prior",
        dest="nearest_prior",
        action="store_true",
        help="with --method network: also bank the nearest labelled faces of the --init network in "
        "RUN/nearest-prior, and record segment.prior_method nearest (weight 0.5 unless "
        "segment.transfer_prior is set), so that `mvdecor segment` averages the two models' labels",
    )
    p.add_argument("--store", help="a render store of DATASET made with the same render settings")
    p.add_argument("--restart", action="store_true", help="ignore RUN/checkpoints/last.pt and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_render_options(p, "cpu")
    add_train_options(p, view_pairs=False)
    p.set_defaults(func=cmd_finetune)


def cmd_fewshot(args: argparse.Namespace) -> int:
    from mvdecor.data.datasets import open_dataset
    from mvdecor.data.splits import load_split, make_split, save_split
    from mvdecor.protocols.fewshot import format_fewshot_split, run_fewshot_split

    config = config_from_args(args, train_section="finetune")
    if args.init not in ("scratch", "imagenet", "transfer", "scratch3d", "deform"):
        # Before anything is written: a fine-tuned checkpoint here is a one-line error.
        from mvdecor.models.checkpoints import check_embedding_checkpoint, checkpoint_method

        if checkpoint_method(args.init) != "pointcontrast":  # the 3D network's own pre-training
            check_embedding_checkpoint(args.init)
    out = Path(args.out)
    dataset = open_dataset(args.dataset)
    split_path = Path(args.split) if args.split else out / "split.json"
    if split_path.is_file():
        split = load_split(split_path, dataset)
    else:
        split = make_split(dataset, args.test_fraction, args.draw_seed, categories=args.categories)
        save_split(split, split_path, dataset.spec, args.draw_seed, args.test_fraction)
    combined = run_fewshot_split(
        config,
        dataset.spec,
        out,
        split,
        k=args.k,
        views_per_shape=args.views_per_shape or 0,
        runs=args.runs,
        init=args.init,
        categories=args.categories,
        convention=args.convention,
        weighting=args.weighting,
        seed=args.draw_seed,
        progress=not args.quiet,
        keep_checkpoints=args.keep_checkpoints,
    )
    print(format_fewshot_split(combined))
    print(f"results in {out} (split: {split_path})")
    return 0


def add_fewshot_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor fewshot``."""
    p = sub.add_parser(
        "fewshot",
        help="the few-shot protocol: R runs of k labelled shapes, fine-tune, segment, score",
        description=(
            "Split each category of DATASET into train and test shapes (the dataset's official split, "
            "else seeded per category; written to OUT/split.json, or read from --split), then, per "
            "category, for each of R runs draw k labelled training shapes covering as many labels as "
            "possible, fine-tune from --init, segment every test shape and score the fused face labels "
            "(part and shape mIoU) and the per-view 2D pixel mIoU. Writes OUT/results_<method>_k<k>"
            "[_v<v>].json and .md, <method> being scratch, imagenet, or the method that wrote the "
            "--init checkpoint (mvdecor, densecl): mean and std over runs per category, and the mean "
            "over categories; each category's runs are kept in OUT/<category>/ (an interrupted "
            "protocol resumes)."
        ),
    )
    p.add_argument("dataset", help="dataset spec or folder (see `mvdecor datasets`)")
    p.add_argument("out", help="output folder (per-run fine-tuning folders inside; resumable)")
    p.add_argument(
        "--categories", type=lambda text: text.split("+"), help="only these categories, e.g. Laptop+Bucket"
    )
    p.add_argument(
        "--init",
        default="scratch",
        help="scratch (default), imagenet (with --imagenet-checkpoint), a checkpoint of "
        "`mvdecor pretrain` (either method), transfer (no network: nearest-neighbour label "
        "transfer from the labelled shapes, the learning-free floor), or the paper's 3D baselines: "
        "scratch3d (a point network on the labelled shapes only), deform (labels carried along a "
        "learned deformation) or a PointContrast checkpoint (benchmarks/fewshot.py makes one)",
    )
    add_modalities_option(p)
    add_imagenet_checkpoint_option(p)
    p.add_argument("--k", type=int, default=2, help="labelled shapes per run (default 2)")
    p.add_argument(
        "--views-per-shape", dest="views_per_shape", type=int, help="labelled views per shape (0: all)"
    )
    add_spread_labels_option(p)
    p.add_argument("--runs", type=int, default=5, help="runs, each with its own draw and seed (default 5)")
    add_keep_checkpoints_option(p, "last")
    p.add_argument("--convention", choices=("shapenet", "partnet"), default="shapenet", help="scoring rules")
    p.add_argument(
        "--weighting", choices=("area", "points", "faces"), default="area", help="per-face weights"
    )
    p.add_argument("--test-fraction", type=float, default=0.3, help="share of shapes held out (default 0.3)")
    p.add_argument(
        "--split",
        help='a split file, {"categories": {CAT: {"train": [ids], "test": [ids]}}} or one category\'s '
        '{"train": [...], "test": [...]} (default: OUT/split.json, made if missing)',
    )
    p.add_argument(
        "--draw-seed", dest="draw_seed", type=int, default=0, help="seed of the split and the draws"
    )
    p.add_argument("--ssl-weight", dest="ssl_weight", type=float, help="lambda (0 disables the regulariser)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_render_options(p, "cpu")
    add_train_options(p, view_pairs=False)
    add_inference_options(p)
    p.set_defaults(func=cmd_fewshot)


def cmd_evaluate_embedding(args: argparse.Namespace) -> int:
    from mvdecor.evaluation.embedding import evaluate_embedding
    from mvdecor.models.checkpoints import check_embedding_checkpoint

    check_embedding_checkpoint(args.checkpoint, option="")
    result = evaluate_embedding(
        args.checkpoint, args.dataset, shapes=args.shapes, pairs_per_shape=args.pairs, device=args.device
    )
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def add_evaluate_embedding_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor evaluate-embedding``."""
    p = sub.add_parser(
        "evaluate-embedding",
        help="cross-view correspondence accuracy of a pre-trained network",
        description=(
            "For pairs of views of held-out shapes, the share of matched pixels whose nearest "
            "embedding in the other view lies within 2 and 5 pixels of the true match, against a "
            "randomly initialised network of the same architecture and raw normals."
        ),
    )
    p.add_argument(
        "checkpoint", help="a checkpoint written by `mvdecor pretrain` (e.g. RUN/checkpoints/best.pt)"
    )
    p.add_argument("dataset", help="dataset spec or folder")
    p.add_argument(
        "--shapes", nargs="*", help="shape ids to evaluate on (default: the run's validation shapes)"
    )
    p.add_argument("--pairs", type=int, default=8, help="view pairs per shape (default 8)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--out", help="also write the result as JSON here")
    p.set_defaults(func=cmd_evaluate_embedding)


def cmd_deform(args: argparse.Namespace) -> int:
    from mvdecor.data.datasets import open_dataset
    from mvdecor.fileio import atomic_write_text
    from mvdecor.points.deformation import train_deformation  # loads torch: only here

    config = config_from_args(args, train_section="deform")
    meshes, _ = load_category_shapes(
        open_dataset(args.dataset),
        args.dataset,
        args.shapes,
        noun="shape",
        choose="a deformation network learns one: choose its shapes with --shapes",
        min_count=2,
        too_few="a deformation is learnt from two shapes or more, found {count}",
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", config.to_yaml())  # the preset in use, beside the network
    path = train_deformation(config, meshes, out=out, progress=not args.quiet)
    print(
        f"deformation network trained on {len(meshes)} shapes ({config.deform.iterations} steps, preset "
        f"{config.preset}): {path}; use it with `mvdecor transfer --deformation {path}` or "
        f"`mvdecor segment --prior-method deform --deformation {path}`"
    )
    return 0


def add_deform_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor deform``."""
    p = sub.add_parser(
        "deform",
        help="learn to deform a category's shapes onto each other (no labels), to carry labels along",
        description=(
            "Train a small point network that deforms any shape of a category onto any other "
            "(Chamfer loss after a per-axis bounding-box alignment, with a smoothness term; the "
            "config's deform section). Labels are not read. The network then carries the labels "
            "of a few labelled shapes to new ones: `mvdecor transfer --deformation OUT/last.pt` "
            "(the paper's learned-deformation baseline) or, as a prior mixed into a fine-tuned "
            "network's votes, `mvdecor segment --prior-method deform --transfer-prior W "
            "--deformation OUT/last.pt`. The shapes must share an orientation, as a category's "
            "do. Writes OUT/config.yaml, OUT/last.pt and OUT/metrics.csv; re-running the same command resumes."
        ),
    )
    p.add_argument("dataset", help="a dataset name or spec (see `mvdecor datasets`) or a folder of meshes")
    p.add_argument("--out", required=True, help="the run folder")
    p.add_argument(
        "--shapes", nargs="+", metavar="ID", help="only these shapes (default: all, of one category)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--preset", default="cpu", choices=("paper", "cpu"), help="settings preset (default cpu)")
    p.add_argument("--config", metavar="YAML", help="a config file (its deform section is used)")
    group = p.add_argument_group("training (override the preset's deform section)")
    group.add_argument("--iterations", type=int, help="optimiser steps")
    group.add_argument("--lr", type=float, help="learning rate")
    group.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    add_set_option(p)
    p.set_defaults(func=cmd_deform)
