"""The ``mvdecor`` command line.

Each sub-command is a thin layer over the Python API. Errors that a user can
cause (:class:`~mvdecor.errors.MvDecorError`) are printed as one line,
``mvdecor: error: <file>: <reason>``, with exit code 1; a bad command line
exits with 2; Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from mvdecor import __version__
from mvdecor.errors import ConfigError, MvDecorError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


_OVERRIDES = {
    "render": ("rings", "segments", "resolution", "seed", "radius", "fov_degrees"),
    "model": ("backbone", "output_stride", "modalities", "imagenet_checkpoint", "head"),
    "pretrain": (
        "iterations",
        "pairs_per_batch",
        "matches_per_pair",
        "lr",
        "precision",
        "device",
        "num_workers",
    ),
}


def _config_from_args(args: argparse.Namespace, train_section: str = "pretrain"):
    """The preset or config file with the command line's overrides applied.

    Training flags (``--iterations``, ``--lr``...) go to ``train_section``.
    """
    from mvdecor.config import load_config

    overrides: dict[str, dict] = {}
    for section, keys in _OVERRIDES.items():
        target = train_section if section == "pretrain" else section
        for key in keys:
            value = getattr(args, key, None)
            if value is not None and not (
                target == "finetune" and key in ("pairs_per_batch", "matches_per_pair")
            ):
                overrides.setdefault(target, {})[key] = value
    for key in ("views_per_shape", "ssl_weight", "encoder_lr_scale", "add_modalities"):
        value = getattr(args, key, None)
        if value is not None:
            overrides.setdefault("finetune", {})[key] = value
    for section, values in _inference_overrides(args).items():
        overrides.setdefault(section, {}).update(values)
    pretrain_method = getattr(args, "pretrain_method", None)
    if pretrain_method is not None:
        overrides.setdefault("pretrain", {})["method"] = pretrain_method
    return load_config(args.config or args.preset, overrides, overrides_source="command line")


#: Command-line flags of the segment section: flag dest -> config key.
_SEGMENT_OVERRIDES = {
    "method": "method",
    "transfer_prior": "transfer_prior",
    "smoothing": "smoothing",
    "test_rings": "rings",
    "test_segments": "segments",
}


def _inference_overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The ``segment`` and ``transfer`` settings the command line gives (flags left out are absent)."""
    segment = {key: getattr(args, flag, None) for flag, key in _SEGMENT_OVERRIDES.items()}
    transfer = {key: getattr(args, f"transfer_{key}", None) for key in ("align", "neighbours")}
    return {
        name: {key: value for key, value in values.items() if value is not None}
        for name, values in (("segment", segment), ("transfer", transfer))
    }


def _add_modalities_option(parser: argparse.ArgumentParser) -> None:
    """``--add-modalities``: inputs added at fine-tuning (``finetune.add_modalities``)."""
    parser.add_argument(
        "--add-modalities",
        dest="add_modalities",
        type=lambda text: text.split(","),
        help="input modalities added at fine-tuning, e.g. position (zero-initialised filters in a "
        "pre-trained network)",
    )


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    """Test-time views, the transfer prior and mesh smoothing (the ``segment`` section)."""
    group = parser.add_argument_group("inference on the mesh (override the preset or the model's)")
    group.add_argument(
        "--test-rings", dest="test_rings", type=int, help="camera rings at test time (default: training's)"
    )
    group.add_argument(
        "--test-segments", dest="test_segments", type=int, help="cameras per ring at test time"
    )
    group.add_argument(
        "--smoothing",
        type=float,
        help="weight of the CRF smoothing of face labels on the mesh (0: off, the paper; e.g. 1)",
    )
    group.add_argument(
        "--transfer-prior",
        dest="transfer_prior",
        type=float,
        help="weight in [0, 1] of the label-transfer prior from the labelled shapes (0: off)",
    )
    _add_transfer_options(parser)


def _add_transfer_options(parser: argparse.ArgumentParser) -> None:
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


def _load_references(spec: str, shape_ids: Sequence[str] | None, exclude: Sequence[int], config):
    """Transfer references from labelled shapes of a dataset or folder; returns (transfer, label names)."""
    from mvdecor.data.datasets import open_dataset
    from mvdecor.inference.transfer import LabelTransfer, reference_from_mesh

    dataset = open_dataset(spec)
    ids = list(shape_ids) if shape_ids else dataset.shape_ids()
    missing = sorted(set(ids) - set(dataset.shape_ids()))
    if missing:
        raise MvDecorError(f"{spec}: no reference shape(s) {', '.join(missing[:5])}")
    if not ids:
        raise MvDecorError(f"{spec}: no labelled reference shapes found")
    categories = {dataset.category_of(i) for i in ids}
    if len(categories) > 1:
        raise MvDecorError(f"{spec}: references from several categories ({', '.join(sorted(categories))}); "
                           "choose shapes of one with --reference-shapes")  # fmt: skip
    names = tuple(dataset.label_names_of(categories.pop()))
    references = []
    for shape_id in ids:
        mesh = dataset.load(shape_id).normalized().replace(name=shape_id)
        if not names:
            names = tuple(mesh.label_names) or tuple(str(i) for i in range(mesh.num_labels))
        references.append(reference_from_mesh(mesh, samples=config.transfer.samples, exclude_classes=exclude))
    transfer = LabelTransfer(
        references, len(names), align=config.transfer.align, neighbours=config.transfer.neighbours
    )
    return transfer, names


def _mesh_paths(items: Sequence[str]) -> list[Path]:
    """Mesh files of the arguments, folders expanded; an empty result names what was given."""
    from mvdecor.data.io import SUPPORTED_EXTENSIONS

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS)
            if not found:
                raise MvDecorError(
                    f"{path}: no mesh files in this folder ({', '.join(SUPPORTED_EXTENSIONS)})"
                )
            paths += found
        else:
            paths.append(path)
    if not paths:
        raise MvDecorError("no mesh files given")
    return paths


def add_imagenet_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--imagenet-checkpoint``: the file ``--init imagenet`` reads (``model.imagenet_checkpoint``)."""
    parser.add_argument(
        "--imagenet-checkpoint",
        dest="imagenet_checkpoint",
        metavar="PTH",
        help="torchvision-layout ResNet state dict for --init imagenet (first conv widened to the "
        "input channels; nothing is downloaded)",
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


def _add_render_options(parser: argparse.ArgumentParser, default_preset: str) -> None:
    group = parser.add_argument_group("rendering (override the preset)")
    group.add_argument(
        "--preset",
        default=default_preset,
        choices=("paper", "cpu"),
        help=f"settings preset: paper = 86 views at 256x256 (the authors'), cpu = 24 views at "
        f"128x128 (default: {default_preset})",
    )
    group.add_argument("--config", metavar="YAML", help="a config file (overrides --preset)")
    group.add_argument("--rings", type=int, help="rings of the camera sphere (views = 2 + rings x segments)")
    group.add_argument("--segments", type=int, help="cameras per ring")
    group.add_argument("--resolution", type=int, help="image size in pixels (square)")
    group.add_argument("--radius", type=float, help="camera sphere radius (unit-sphere units)")
    group.add_argument("--fov-degrees", dest="fov_degrees", type=float, help="vertical field of view")
    group.add_argument("--seed", type=int, help="camera jitter seed")


# ------------------------------------------------------------------- commands
def cmd_render(args: argparse.Namespace) -> int:
    from mvdecor.render.store import parse_shard, render_dataset

    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise MvDecorError(str(exc)) from None
    config = _config_from_args(args)
    start = time.perf_counter()
    report = render_dataset(
        args.dataset,
        args.out,
        config.render,
        workers=args.workers,
        shard=shard,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - start
    print(
        f"rendered {len(report.rendered)} shapes ({config.render.num_views} views at "
        f"{config.render.resolution}px, preset {config.preset}) in {elapsed:.1f} s; "
        f"skipped {len(report.skipped)} already stored; store: {args.out}"
    )
    if report.damaged:
        print(
            f"mvdecor: warning: {len(report.damaged)} stored shapes were damaged (a killed run?) and "
            f"were rendered again: {', '.join(report.damaged[:5])}{'...' if len(report.damaged) > 5 else ''}",
            file=sys.stderr,
        )
    for shape_id, reason in sorted(report.failed.items()):
        print(f"mvdecor: warning: {shape_id} not rendered: {reason}", file=sys.stderr)
    return EXIT_ERROR if report.failed and not report.rendered and not report.skipped else 0


def _load_mesh_arg(args: argparse.Namespace):
    from mvdecor.data.io import load_mesh

    return load_mesh(args.mesh, labels=args.labels, label_names=args.label_names)


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    mesh = _load_mesh_arg(args)
    info = {
        "file": str(args.mesh),
        "name": mesh.name,
        "vertices": mesh.num_vertices,
        "faces": mesh.num_faces,
        "parts": len(mesh.part_names),
        "textured": mesh.has_texture,
        "textures": len(mesh.textures),
        "vertex_colors": mesh.vertex_colors is not None,
        "labelled": mesh.has_labels,
        "bounds": [mesh.vertices.min(axis=0).round(6).tolist(), mesh.vertices.max(axis=0).round(6).tolist()],
    }
    if mesh.has_labels:
        counts = np.bincount(mesh.face_labels[mesh.face_labels >= 0], minlength=mesh.num_labels)
        names = mesh.label_names or tuple(str(i) for i in range(len(counts)))
        info["labels"] = {name: int(c) for name, c in zip(names, counts, strict=False)}
        info["unlabelled_faces"] = int((mesh.face_labels < 0).sum())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_views(args: argparse.Namespace) -> int:
    from mvdecor.render import Renderer
    from mvdecor.render.store import shape_camera_seed
    from mvdecor.viz import save_image, view_panels, view_sheet

    mesh = _load_mesh_arg(args).normalized()
    config = _config_from_args(args)
    cameras = config.render.camera_scheme().cameras(seed=shape_camera_seed(mesh.name, config.render.seed))
    count = len(cameras) if args.num is None else min(args.num, len(cameras))
    step = max(len(cameras) // max(count, 1), 1)
    indices = list(range(0, len(cameras), step))[:count]
    renderer = Renderer(mesh)
    views = [renderer.render_view(cameras, i) for i in indices]
    out = Path(args.out)
    labels = mesh.face_labels if mesh.has_labels else None
    for i, view in zip(indices, views, strict=True):
        for buffer, image in view_panels(view, labels, mesh.num_labels or None).items():
            save_image(image, out / f"view_{i:03d}_{buffer}.png")
    save_image(view_sheet(views[:8], labels, mesh.num_labels or None), out / "sheet.png")
    print(f"wrote {len(views)} views of {mesh.name} ({mesh.num_faces} faces) to {out}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from mvdecor.data.datasets import DATASETS

    for name, cls in DATASETS.items():
        doc = inspect.cleandoc(cls.__doc__ or "")
        print(f"{name}\n{textwrap.indent(doc, '    ')}\n")
    return 0


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (override the preset)")
    group.add_argument("--iterations", type=int, help="optimiser steps")
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
    group.add_argument("--backbone", choices=("resnet18", "resnet34", "resnet50"), help="encoder")
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


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mvdecor.train.pretrain import pretrain

    config = _config_from_args(args)
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
    from mvdecor.train.finetune import finetune

    config = _config_from_args(args, train_section="finetune")
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
    result = finetune(
        config,
        args.dataset,
        args.run,
        labelled_shapes=labelled,
        init=args.init,
        unlabelled_shapes=args.unlabelled,
        label_images=label_images,
        store=args.store,
        resume=not args.restart,
        progress=not args.quiet,
    )
    print(
        f"fine-tuned on {len(labelled)} labelled shapes ({', '.join(labelled[:5])}"
        f"{'...' if len(labelled) > 5 else ''}) to step {result.step} (preset {config.preset}); "
        f"{len(result.label_names)} classes; model: {result.last_checkpoint}"
    )
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.data.io import load_mesh
    from mvdecor.inference.export import export_segmentation
    from mvdecor.inference.segment import Segmenter

    segmenter = Segmenter.from_checkpoint(args.model, args.device, exclude_classes=args.exclude_classes)
    from dataclasses import replace

    # The command line's inference settings over the model's own.
    changes = _inference_overrides(args)
    segment = replace(segmenter.config.segment, **changes["segment"])
    transfer_settings = replace(segmenter.config.transfer, **changes["transfer"])
    segmenter.config = replace(segmenter.config, segment=segment, transfer=transfer_settings)
    transfer = None
    if args.references:
        transfer, names = _load_references(
            args.references, args.reference_shapes, args.exclude_classes, segmenter.config
        )
        if tuple(names) != tuple(segmenter.label_names):
            raise MvDecorError(
                f"{args.references}: the references' labels {list(names)} differ from the model's "
                f"{list(segmenter.label_names)}"
            )
        if segment.transfer_prior <= 0:
            print("note: --references without --transfer-prior > 0 changes nothing", file=sys.stderr)
    elif segment.transfer_prior > 0:
        raise MvDecorError("--transfer-prior needs --references (the labelled shapes to transfer from)")
    paths = _mesh_paths(args.meshes)
    out = Path(args.out)
    from tqdm.auto import tqdm

    for path in tqdm(paths, desc="segment", unit="mesh", disable=args.quiet or len(paths) == 1):
        mesh = load_mesh(path)
        result = segmenter.segment(mesh, transfer=transfer)
        folder = out / mesh.name if len(paths) > 1 else out
        files = export_segmentation(
            result.mesh,
            result.face_labels,
            segmenter.label_names,
            folder,
            confidence=result.face_confidence,
            stem=mesh.name,
        )
        counts = np.bincount(
            result.face_labels[result.face_labels >= 0], minlength=len(segmenter.label_names)
        )
        parts = ", ".join(f"{segmenter.label_names[i]} {c}" for i, c in enumerate(counts) if c)
        t = result.timings
        print(
            f"{path}: {mesh.num_faces} faces -> {parts}; {100 * result.fusion.seen.mean():.1f}% of faces seen; "
            f"render {t['render_s']:.1f} s, predict {t['predict_s']:.1f} s, vote {t['vote_s']:.1f} s; "
            f"wrote {files['ply'].parent}"
        )
    if not args.no_report:
        from mvdecor.viz.report import write_segment_report

        page = write_segment_report(
            out, preset=segmenter.config.preset, description=f"Segmented with the model {args.model}."
        )
        print(f"report: {page} (opens offline in a browser)")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.data.io import load_mesh
    from mvdecor.inference.export import export_segmentation

    config = _config_from_args(args)
    transfer, names = _load_references(args.references, args.reference_shapes, args.exclude_classes, config)
    paths = _mesh_paths(args.meshes)
    out = Path(args.out)
    from tqdm.auto import tqdm

    for path in tqdm(paths, desc="transfer", unit="mesh", disable=args.quiet or len(paths) == 1):
        start = time.perf_counter()
        mesh = load_mesh(path).normalized()
        labels, probs = transfer.predict(mesh)
        folder = out / mesh.name if len(paths) > 1 else out
        files = export_segmentation(mesh, labels, names, folder, confidence=probs.max(axis=1), stem=mesh.name)
        counts = np.bincount(labels, minlength=len(names))
        parts = ", ".join(f"{names[i]} {c}" for i, c in enumerate(counts) if c)
        print(
            f"{path}: {mesh.num_faces} faces -> {parts}; {time.perf_counter() - start:.1f} s; "
            f"wrote {files['ply'].parent}"
        )
    if not args.no_report:
        from mvdecor.viz.report import write_segment_report

        page = write_segment_report(
            out,
            preset=config.preset,
            description=f"Labelled by nearest-neighbour transfer from {len(transfer.references)} "
            f"reference shape(s) of {args.references} (align: {config.transfer.align}); no network.",
        )
        print(f"report: {page} (opens offline in a browser)")
    return 0


def cmd_fewshot(args: argparse.Namespace) -> int:
    from mvdecor.data.datasets import open_dataset
    from mvdecor.data.splits import load_split, make_split, save_split
    from mvdecor.evaluation.fewshot import format_fewshot_split, run_fewshot_split

    config = _config_from_args(args, train_section="finetune")
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


def cmd_evaluate_embedding(args: argparse.Namespace) -> int:
    from mvdecor.evaluation.embedding import evaluate_embedding

    result = evaluate_embedding(
        args.checkpoint, args.dataset, shapes=args.shapes, pairs_per_shape=args.pairs, device=args.device
    )
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mvdecor.demo import run_demo

    report = run_demo(
        args.out,
        shapes_per_category=args.shapes,
        workers=args.workers,
        pretrain_iterations=args.pretrain_iterations,
        finetune_iterations=args.finetune_iterations,
        labelled_shapes=args.k,
        categories=args.categories,
        precision=args.precision,
        seed=args.seed,
        preset=args.preset,
        keep_checkpoints=args.keep_checkpoints,
        progress=not args.quiet,
    )
    print(f"demo finished: open {report.with_name('report.html')} in a browser, or read {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mvdecor.viz.report import write_segment_report, write_training_report

    run_dir = Path(args.run_dir)
    if (run_dir / "metrics.csv").is_file() and not any(run_dir.rglob("*.legend.json")):
        path = write_training_report(run_dir, title=args.title)
        print(f"wrote {path}: open it in a browser (works offline)")
        return 0
    preset, description = args.preset, ""
    if args.model:
        from mvdecor.train.checkpoint import load_checkpoint

        payload = load_checkpoint(args.model)
        preset = preset or payload.get("config", {}).get("preset")
        description = f"Segmented with the model {args.model}."
    path = write_segment_report(
        args.run_dir,
        title=args.title,
        preset=preset,
        ground_truth_dir=args.ground_truth,
        description=description,
    )
    print(f"wrote {path}: open it in a browser (works offline; keep report_assets/ next to it)")
    return 0


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html for a `mvdecor segment` folder or a pretrain / finetune run folder",
        description=(
            "For a pretrain or finetune run folder (one with metrics.csv), write RUN_DIR/report.html "
            "with the run's summary, training curves and configuration (the runs write it themselves "
            "when they finish; this refreshes it, e.g. for a run still going). "
            "For the output folder of `mvdecor segment` (which writes it too, unless --no-report): a table of the "
            "segmented meshes (faces, parts found, mean confidence, and with --ground-truth the share of "
            "faces labelled right), their legend pictures, and an interactive 3D view of each mesh "
            "(rotate, zoom, show or hide parts, switch to the ground-truth colouring). The page works "
            "offline from the folder (file://); its scripts (three.js r147) are copied to "
            "RUN_DIR/report_assets/. Meshes are embedded whole, not decimated."
        ),
    )
    p.add_argument(
        "run_dir", help="the --out folder of `mvdecor segment`, or a pretrain / finetune run folder"
    )
    p.add_argument("--title", help="page title (default: Segmentation of <folder name>)")
    p.add_argument("--model", help="the checkpoint used by `mvdecor segment`: its preset is shown")
    p.add_argument("--preset", help="preset or config name to show (default: the model's)")
    p.add_argument(
        "--ground-truth",
        help="folder of true face labels, <name>.labels.npy, .labels.txt or .seg per mesh",
    )
    p.set_defaults(func=cmd_report)


# ------------------------------------------------------------------- pictures
def _picture_view(data: str, pick: str, render, store: str | None, cache: dict):
    """The view ``pick`` (``[SHAPE:]VIEW``) of a mesh file or a dataset, and its title."""
    from mvdecor.data.io import SUPPORTED_EXTENSIONS, load_mesh
    from mvdecor.render import Renderer
    from mvdecor.render.store import shape_camera_seed

    shape, _, index_text = pick.rpartition(":")
    try:
        index = int(index_text)
    except ValueError:
        raise MvDecorError(
            f"{pick!r}: expected [SHAPE:]VIEW with an integer view index, e.g. chair_0001:12"
        ) from None
    path = Path(data)
    if path.is_file() and path.suffix.lower() in SUPPORTED_EXTENSIONS:
        if "mesh" not in cache:
            mesh = load_mesh(path).normalized()
            cameras = render.camera_scheme().cameras(seed=shape_camera_seed(mesh.name, render.seed))
            cache["mesh"] = (Renderer(mesh), cameras)
        renderer, cameras = cache["mesh"]
        if shape and shape != renderer.mesh.name:
            raise MvDecorError(
                f"{pick!r}: {data} is one mesh, {renderer.mesh.name!r}; give just the view index"
            )
        shape = renderer.mesh.name
        if not 0 <= index < len(cameras):
            raise MvDecorError(
                f"{pick!r}: view index out of range; the render settings give {len(cameras)} views"
            )
        return renderer.render_view(cameras, index), f"{shape} view {index}"
    from mvdecor.train.data import ViewSource

    if "source" not in cache:
        cache["source"] = ViewSource(data, render, store=store)
    source = cache["source"]
    ids = source.shape_ids()
    if not shape and len(ids) == 1:
        shape = ids[0]
    if shape not in ids:
        some = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise MvDecorError(f"{pick!r}: no shape {shape!r} in {data} (shapes: {some}); use SHAPE:VIEW")
    if not 0 <= index < source.num_views(shape):
        raise MvDecorError(
            f"{pick!r}: view index out of range; the render settings give {source.num_views(shape)} views"
        )
    return source.view(shape, index), f"{shape} view {index}"


def _load_embedding_network(path: str, device: str):
    """The embedding network, channel statistics and configuration of a pre-training or fine-tuning checkpoint."""
    from mvdecor.train.checkpoint import load_checkpoint
    from mvdecor.train.finetune import load_segmentation_model
    from mvdecor.train.pretrain import load_embedding

    if load_checkpoint(path).get("kind") == "segmentation":
        model, stats, config, _ = load_segmentation_model(path, device)
        return model.embedding, stats, config
    return load_embedding(path, device)


def cmd_pictures_curves(args: argparse.Namespace) -> int:
    from mvdecor.viz.curves import plot_training_curves

    first = Path(args.run[0])
    default = first / "curves.png" if first.is_dir() else first.with_suffix(".curves.png")
    out = plot_training_curves(args.run if len(args.run) > 1 else first, args.out or default)
    print(f"wrote {out}")
    return 0


def cmd_pictures_embeddings(args: argparse.Namespace) -> int:
    from mvdecor.viz.embeddings import write_embedding_sheet

    model, stats, config = _load_embedding_network(args.checkpoint, args.device)
    cache: dict = {}
    source_view, source_name = _picture_view(args.data, args.source, config.render, args.store, cache)
    target_view, target_name = _picture_view(args.data, args.target, config.render, args.store, cache)
    sheet = write_embedding_sheet(
        args.out,
        model,
        source_view,
        target_view,
        config.model.modalities,
        stats,
        threshold=args.threshold,
        colors=args.colors,
        names=(source_name, target_name),
        note=f"Network: {args.checkpoint}.",
        device=args.device,
    )
    t = sheet.transfer
    print(
        f"wrote {sheet.path}: mean best similarity {t.mean_similarity:.3f}, "
        f"{100 * t.miss_share:.1f}% of target pixels below {args.threshold:g} (red)"
    )
    return 0


def cmd_pictures_segmentation(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.inference.segment import Segmenter
    from mvdecor.render import Renderer
    from mvdecor.viz import part_labels_sheet, save_image, vote_weight_sheet

    segmenter = Segmenter.from_checkpoint(args.model, args.device, exclude_classes=args.exclude_classes)
    mesh = _load_mesh_arg(args).normalized()
    result = segmenter.segment(mesh, normalize=False)
    cameras = segmenter.cameras_for(mesh)
    # Evenly spread views, skipping the first and last (the poles of the camera sphere).
    first, last = (1, len(cameras) - 2) if len(cameras) > 2 else (0, len(cameras) - 1)
    picks = sorted({int(i) for i in np.linspace(first, last, max(args.views, 1)).round()})
    renderer = Renderer(mesh)
    views = [renderer.render_view(cameras, i) for i in picks]
    names = segmenter.label_names
    columns = {"ground truth": mesh.face_labels} if mesh.has_labels else {}
    columns["prediction (fused)"] = result.face_labels
    out = Path(args.out)
    labels_png = save_image(
        part_labels_sheet(
            views,
            columns,
            names,
            caption=f"{mesh.name}: views {', '.join(map(str, picks))} of {len(cameras)}; model {args.model}.",
        ),
        out / f"{mesh.name}.labels.png",
    )
    votes = vote_weight_sheet(
        list(segmenter.predict(views)),
        [v.mask for v in views],
        names,
        gamma=segmenter.config.segment.gamma,
        exclude_classes=segmenter.exclude_classes,
        titles=[f"view {i}" for i in picks],
    )
    weights_png = save_image(votes.image, out / f"{mesh.name}.vote_weights.png")
    print(f"wrote {labels_png} and {weights_png}")
    return 0


def add_pictures_command(sub) -> None:
    """Register ``mvdecor pictures`` (curves, embeddings, segmentation) on the sub-command parsers."""
    p = sub.add_parser(
        "pictures",
        help="PNG pictures of your runs: training curves, learned embeddings (Fig. 3), segmentations",
        description=(
            "Make PNG pictures of your own runs. `curves`: loss, learning rate and accuracy against "
            "the step, from a run's metrics.csv (and val.csv). `embeddings`: the paper's Fig. 3 for "
            "a pre-trained (or fine-tuned) network and two views, each pixel of the target view "
            "coloured like its most similar source pixel, plus PCA colours of the embeddings. "
            "`segmentation`: a mesh's predicted parts next to its ground truth from several views, "
            "and each view's entropy weight in the vote. Run `mvdecor pictures KIND --help`."
        ),
    )
    kinds = p.add_subparsers(dest="picture", metavar="KIND", required=True)

    q = kinds.add_parser(
        "curves",
        help="training curves of a run folder or metrics CSV",
        description=(
            "Plot the training curves of a run (written by `mvdecor pretrain` or `finetune`): one "
            "panel each for the losses (training and validation), the learning rate (log scale) "
            "and any accuracy or mIoU columns, against the step."
        ),
    )
    q.add_argument("run", nargs="+", help="a run folder (reads metrics.csv and val.csv) or CSV files")
    q.add_argument("--out", help="the PNG to write (default: RUN/curves.png, or beside the CSV)")
    q.set_defaults(func=cmd_pictures_curves)

    q = kinds.add_parser(
        "embeddings",
        help="Fig. 3: colour transfer through learned embeddings between two views",
        description=(
            "Render two views with the network's own camera settings, embed them, and write "
            "source | target | transferred | PCA source | PCA target. Each target pixel takes the "
            "colour of the source pixel with the most similar embedding (cosine); pixels whose best "
            "similarity is below --threshold are red. Views are picked as SHAPE:VIEW from a dataset "
            "(two shapes allowed), or as VIEW from a single mesh file."
        ),
    )
    q.add_argument(
        "checkpoint", help="a checkpoint of `mvdecor pretrain` (or `finetune`), e.g. RUN/checkpoints/best.pt"
    )
    q.add_argument("data", help="a mesh file, a dataset spec (see `mvdecor datasets`) or a folder of meshes")
    q.add_argument(
        "--source",
        required=True,
        metavar="[SHAPE:]VIEW",
        help="the view whose colours are transferred, e.g. chair_0001:3",
    )
    q.add_argument(
        "--target",
        required=True,
        metavar="[SHAPE:]VIEW",
        help="the view painted with them, e.g. chair_0002:10",
    )
    q.add_argument("--out", default="embeddings.png", help="the PNG to write (default: embeddings.png)")
    q.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        help="cosine similarity below which pixels are red (default 0.8)",
    )
    q.add_argument(
        "--colors",
        choices=("position", "ramp"),
        default="position",
        help="source colouring: position = the 3D point each pixel sees (default; a perfect match of one "
        "shape reproduces the target panel), ramp = a 2D colour ramp over the source image",
    )
    q.add_argument("--store", help="a render store of the dataset with the network's render settings")
    q.add_argument("--device", default="cpu", help="device (default cpu; e.g. cuda)")
    q.set_defaults(func=cmd_pictures_embeddings)

    q = kinds.add_parser(
        "segmentation",
        help="predicted against ground-truth parts from several views, and the vote's view weights",
        description=(
            "Segment MESH with a fine-tuned model and write OUT/<name>.labels.png (colour | ground "
            "truth, when the mesh has labels | fused prediction, from --views views, with a legend "
            "of part names) and OUT/<name>.vote_weights.png (per view: predicted labels, per-pixel "
            "normalised entropy, and the view's weight (1 - mean entropy)^gamma in the vote)."
        ),
    )
    q.add_argument("mesh", help="a mesh file: OBJ, PLY, OFF, STL, GLB or GLTF")
    q.add_argument("--model", required=True, help="a checkpoint written by `mvdecor finetune`")
    q.add_argument("--labels", help="ground-truth per-face labels: .txt, .seg or .npy")
    q.add_argument("--label-names", help="label names: .json list or .txt (only used to read --labels)")
    q.add_argument("--out", default=".", help="output folder (default: the current folder)")
    q.add_argument("--views", type=int, default=4, help="views to show (default 4)")
    q.add_argument(
        "--exclude-classes", type=int, nargs="*", default=[], help="classes never predicted (PartNet: 0)"
    )
    q.add_argument("--device", default="cpu", help="device (default cpu; e.g. cuda)")
    q.set_defaults(func=cmd_pictures_segmentation)


# --------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvdecor",
        description=(
            "Few-shot fine-grained 3D mesh segmentation by multi-view dense correspondence "
            "learning (MvDeCor, ECCV 2022). Render meshes from many views, learn per-pixel "
            "embeddings that agree across views, fine-tune on a few labelled shapes, and vote "
            "the per-view predictions back onto the mesh."
        ),
        epilog="Run `mvdecor COMMAND --help` for a command's options. Datasets: `mvdecor datasets`.",
    )
    parser.add_argument("--version", action="version", version=f"mvdecor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "render",
        help="render every shape of a dataset into a render store",
        description=(
            "Render every shape of DATASET into the render store OUT: per shape, the cameras and "
            "the face id seen by every pixel (everything else is recomputed from them on load), "
            "compressed, 1.3-4.8 MB per shape for 86 views at 256x256 in our measurements. Resumable: "
            "shapes already in OUT are skipped, and each shape is written atomically. Shardable: "
            "--shard i/n renders every n-th shape starting at the i-th (0-based), e.g. "
            "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."
        ),
    )
    p.add_argument("dataset", help="a dataset name or spec (see `mvdecor datasets`) or a folder of meshes")
    p.add_argument("out", help="the render store folder (created if missing)")
    p.add_argument(
        "--workers", type=int, default=max((os.cpu_count() or 1), 1), help="processes (default: all cores)"
    )
    p.add_argument("--shard", default="0/1", metavar="I/N", help="render only shard I of N (default 0/1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_render_options(p, "paper")
    p.set_defaults(func=cmd_render)

    def add_mesh_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("mesh", help="a mesh file: OBJ, PLY, OFF, STL, GLB or GLTF")
        q.add_argument(
            "--labels", help="per-face (or per-vertex) labels: .txt, .seg or .npy, one integer per face"
        )
        q.add_argument("--label-names", help="label names: .json list or .txt, one per line")

    p = sub.add_parser(
        "info", help="summarise a mesh file", description="Print what mvdecor reads from a mesh."
    )
    add_mesh_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "views",
        help="render one mesh and write its views as PNG images",
        description=(
            "Render MESH with the preset's cameras and write, per view, PNG pictures of the "
            "colour, normal, depth and face-id buffers (and labels when given), plus sheet.png."
        ),
    )
    add_mesh_args(p)
    p.add_argument("out", help="output folder")
    p.add_argument("--num", type=int, default=8, help="how many views to write (default 8)")
    _add_render_options(p, "paper")
    p.set_defaults(func=cmd_views)

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
    _add_render_options(p, "cpu")
    _add_train_options(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a segmentation head on a few labelled shapes or views",
        description=(
            "Fine-tune the embedding network with a segmentation head (BN, ReLU, 3x3 conv) by "
            "cross-entropy over the foreground pixels of labelled views, plus lambda x InfoNCE on "
            "unlabelled shapes (paper section 3.2). Labelled shapes: --labelled IDS, or --k K drawn "
            "at random (seeded); --views-per-shape V labels only V views of each (the sparse setting); "
            "--label-images DIR uses your own label PNGs (one class index per pixel, 255 = unlabelled) "
            "for views rendered with the preset's cameras (`mvdecor views`). Writes RUN/checkpoints/"
            "last.pt for `mvdecor segment`; re-running resumes."
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
    _add_modalities_option(p)
    add_imagenet_checkpoint_option(p)
    p.add_argument("--labelled", nargs="+", metavar="ID", help="the labelled shape ids")
    p.add_argument(
        "--k", type=int, default=2, help="labelled shapes drawn at random when --labelled is absent"
    )
    p.add_argument(
        "--views-per-shape", dest="views_per_shape", type=int, help="labelled views per shape (0: all)"
    )
    p.add_argument("--label-images", help="folder of <shape>/view_<N>.png label images")
    p.add_argument("--unlabelled", nargs="*", metavar="ID", help="shapes for the regulariser (default: all)")
    p.add_argument("--ssl-weight", dest="ssl_weight", type=float, help="lambda (0 disables the regulariser)")
    p.add_argument("--encoder-lr-scale", dest="encoder_lr_scale", type=float, help="encoder lr / head lr")
    p.add_argument("--store", help="a render store of DATASET made with the same render settings")
    p.add_argument("--restart", action="store_true", help="ignore RUN/checkpoints/last.pt and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_render_options(p, "cpu")
    _add_train_options(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "segment",
        help="segment meshes with a fine-tuned model and write coloured meshes and labels",
        description=(
            "Render each mesh with the model's cameras, predict per-pixel class probabilities, and "
            "vote them onto the faces (views weighted by (1 - mean normalised entropy)^20; faces no "
            "view sees take the label of the nearest seen face). Writes per mesh: <name>.labels.txt "
            "and .npy (one label per face), .confidence.npy, a PLY and a GLB coloured by part (one "
            "GLB node per part), and a legend (.legend.json, .legend.png). Meshes need no labels."
        ),
    )
    p.add_argument("meshes", nargs="+", help="mesh files or folders of meshes")
    p.add_argument("--model", required=True, help="a checkpoint written by `mvdecor finetune`")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per mesh when several)")
    p.add_argument("--method", choices=("entropy", "average", "majority"), help="voting (default: entropy)")
    p.add_argument(
        "--exclude-classes", type=int, nargs="*", default=[], help="classes never predicted (PartNet: 0)"
    )
    p.add_argument("--device", default="cpu", help="device (default cpu; e.g. cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not write OUT/report.html (a page with a 3D view of each segmented mesh)",
    )
    p.add_argument(
        "--references",
        metavar="DATASET",
        help="labelled shapes (a dataset spec or folder) for --transfer-prior: the few you fine-tuned on",
    )
    p.add_argument(
        "--reference-shapes", dest="reference_shapes", nargs="+", metavar="ID", help="only these shapes of it"
    )
    _add_inference_options(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser(
        "transfer",
        help="label meshes from a few labelled reference meshes by nearest neighbour (no network)",
        description=(
            "The learning-free baseline and a quick first answer: each face of each mesh takes the "
            "label of the nearest labelled surface point of the reference shapes, after mapping the "
            "mesh's bounding box onto each reference's, axis by axis (--transfer-align none: as they "
            "are; the shapes must share an orientation, as a category's do). Seconds per mesh, no "
            "training. Writes what `segment` writes: labels, confidence, coloured PLY/GLB, legend, "
            "and OUT/report.html."
        ),
    )
    p.add_argument("meshes", nargs="+", help="mesh files or folders of meshes to label")
    p.add_argument(
        "--references",
        required=True,
        metavar="DATASET",
        help="labelled reference shapes: a folder of meshes with label files, or a dataset spec",
    )
    p.add_argument(
        "--reference-shapes", dest="reference_shapes", nargs="+", metavar="ID", help="only these shapes of it"
    )
    p.add_argument("--out", required=True, help="output folder (one sub-folder per mesh when several)")
    p.add_argument(
        "--exclude-classes", type=int, nargs="*", default=[], help="classes never predicted (PartNet: 0)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write OUT/report.html")
    p.add_argument("--preset", default="cpu", choices=("paper", "cpu"), help=argparse.SUPPRESS)
    p.add_argument("--config", metavar="YAML", help="a config file (its transfer section is used)")
    _add_transfer_options(p)
    p.set_defaults(func=cmd_transfer)

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
        "`mvdecor pretrain` (either method), or transfer (no network: nearest-neighbour label "
        "transfer from the labelled shapes, the learning-free floor)",
    )
    _add_modalities_option(p)
    add_imagenet_checkpoint_option(p)
    p.add_argument("--k", type=int, default=2, help="labelled shapes per run (default 2)")
    p.add_argument(
        "--views-per-shape", dest="views_per_shape", type=int, help="labelled views per shape (0: all)"
    )
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
    _add_render_options(p, "cpu")
    _add_train_options(p)
    _add_inference_options(p)
    p.set_defaults(func=cmd_fewshot)

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

    add_pictures_command(sub)

    p = sub.add_parser("datasets", help="list the dataset adapters", description="List dataset names.")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser(
        "demo",
        help="run the end-to-end demo on built-in shapes",
        description=(
            "Run the whole pipeline on built-in synthetic labelled shapes and compare MvDeCor with "
            "training from scratch: split each category into training and held-out test shapes, render "
            "them, pre-train the embedding network on the training shapes of all categories without "
            "labels and measure its cross-view correspondence accuracy, then per category fine-tune on "
            "k labelled shapes from the pre-trained network and from scratch (same draw, same seed), "
            "segment the held-out shapes and score both (part, shape and 2D pixel mIoU). The report "
            "folder gets report.md (both methods side by side), summary.json (every number and the "
            "stage timings), report.html (the results, every picture and a 3D view of each held-out "
            "shape), config.yaml, coloured meshes (segmentations/<method>/*.ply, *.glb), pictures of "
            "predictions next to the ground truth (pictures/predictions/), of the embeddings (the paper's "
            "Fig. 3, pictures/embeddings/), of the vote weights and of the training curves. The default "
            "budgets are sized for a 2-core CPU. Re-running reuses finished stages."
        ),
    )
    p.add_argument("--out", default="demo_output", help="report folder (default: demo_output)")
    p.add_argument("--shapes", type=int, default=8, help="shapes per category (default 8)")
    p.add_argument(
        "--categories",
        type=lambda text: text.split("+"),
        default=["chair", "table"],
        help="synthetic categories joined by + (default chair+table; also lamp, mug, bottle)",
    )
    p.add_argument("--k", type=int, default=2, help="labelled training shapes per category (default 2)")
    p.add_argument(
        "--pretrain-iterations",
        type=int,
        default=400,
        help="pre-training steps (default 400; 0 skips pre-training, then only scratch runs)",
    )
    p.add_argument(
        "--finetune-iterations",
        type=int,
        default=150,
        help="steps of each fine-tuning run (default 150)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="auto (default): bf16 autocast where the CPU or GPU supports bf16 natively (about 1.8x "
        "faster on such CPUs), else fp32",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split, labelled draw and training")
    p.add_argument("--preset", default="cpu", help="settings preset or YAML file to start from (default cpu)")
    p.add_argument("--workers", type=int, default=max((os.cpu_count() or 1), 1), help="processes")
    add_keep_checkpoints_option(p, "last")
    p.add_argument("--quiet", action="store_true", help="no progress messages or bars")
    p.set_defaults(func=cmd_demo)
    _add_report_command(sub)
    return parser


#: Count options checked before any command runs (the config checks what maps onto it).
_MINIMUM_COUNTS = {"num": 1, "k": 1, "test_rings": 0, "test_segments": 0, "views_per_shape": 0}


def _check_counts(args: argparse.Namespace) -> None:
    for dest, minimum in _MINIMUM_COUNTS.items():
        value = getattr(args, dest, None)
        if isinstance(value, int) and value < minimum:
            raise ConfigError(None, f"--{dest.replace('_', '-')} must be at least {minimum}, got {value}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mvdecor`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_counts(args)
        return int(args.func(args) or 0)
    except MvDecorError as exc:
        print(f"mvdecor: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mvdecor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
