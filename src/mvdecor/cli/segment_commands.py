"""Labelling meshes: ``segment`` (a fine-tuned network) and ``transfer`` (nearest labelled neighbours)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mvdecor.cli.common import add_inference_options, add_transfer_options, load_category_shapes
from mvdecor.cli.overrides import add_set_option, config_from_args, inference_overrides
from mvdecor.errors import MvDecorError


def _load_reference_meshes(spec: str, shape_ids: Sequence[str] | None):
    """The labelled reference shapes of a dataset or folder, normalised; returns (meshes, label names)."""
    from mvdecor.data.datasets import open_dataset

    dataset = open_dataset(spec)
    meshes, category = load_category_shapes(
        dataset,
        spec,
        shape_ids,
        noun="reference shape",
        choose="choose shapes of one with --reference-shapes",
        too_few="no labelled reference shapes found",
    )
    names = tuple(dataset.label_names_of(category))
    if not names:
        first = meshes[0]
        names = tuple(first.label_names) or tuple(str(i) for i in range(first.num_labels))
    return meshes, names


def _load_references(
    spec: str,
    shape_ids: Sequence[str] | None,
    exclude: Sequence[int],
    config,
    deformation: str | None = None,
    device: str = "cpu",
):
    """A label transfer from a dataset's or folder's labelled shapes; returns (transfer, label names).

    Nearest-neighbour transfer (the ``transfer`` section), or with ``deformation``
    (a ``mvdecor deform`` checkpoint) the references deformed onto each mesh: the
    best-fitting one, or all of them (``deform.combine``).
    """
    meshes, names = _load_reference_meshes(spec, shape_ids)
    if deformation is not None:
        from mvdecor.points.deformation import DeformationTransfer  # loads torch: only here

        transfer = DeformationTransfer.from_checkpoint(
            deformation,
            meshes,
            len(names),
            exclude_classes=exclude,
            combine=config.deform.combine,
            device=device,
        )
        return transfer, names
    from mvdecor.inference.transfer import LabelTransfer

    transfer = LabelTransfer.from_settings(
        transfer_references(meshes, config, exclude), len(names), config.transfer
    )
    return transfer, names


#: Where ``finetune`` keeps the labelled shapes' transfer references beside a model that asks
#: for a transfer vote (``RUN/transfer-references.npz``).
TRANSFER_REFERENCES_FILE = "transfer-references.npz"


def transfer_references(meshes, config, exclude: Sequence[int] = ()):
    """The labelled ``meshes`` as label transfer's references (the ``transfer`` section's samples)."""
    from mvdecor.inference.transfer import reference_from_mesh

    return [
        reference_from_mesh(mesh, samples=config.transfer.samples, exclude_classes=exclude) for mesh in meshes
    ]


def save_run_references(run_dir: str | Path, spec: str, shape_ids: Sequence[str], config) -> Path:
    """Keep the labelled shapes ``shape_ids`` of ``spec`` as transfer references in ``run_dir``."""
    from mvdecor.inference.transfer import save_references

    meshes, _ = _load_reference_meshes(spec, shape_ids)
    return save_references(Path(run_dir) / TRANSFER_REFERENCES_FILE, transfer_references(meshes, config))


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


def _model_references(args: argparse.Namespace, segmenter, deformation: str | None = None):
    """The ``--references`` as a label transfer (or deformation) for ``segmenter``'s model; their
    labels must be the model's."""
    transfer, names = _load_references(
        args.references,
        args.reference_shapes,
        args.exclude_classes,
        segmenter.config,
        deformation=deformation,
        device=args.device,
    )
    if tuple(names) != tuple(segmenter.label_names):
        raise MvDecorError(
            f"{args.references}: the references' labels {list(names)} differ from the model's "
            f"{list(segmenter.label_names)}"
        )
    return transfer


def transfer_from_run(args: argparse.Namespace, segmenter, segment):
    """The label transfer from the shapes the model was fine-tuned on: the references ``finetune``
    kept beside it (``RUN/transfer-references.npz``, :func:`save_run_references`), else the
    shapes its ``run.json`` names, read from their dataset (``RUN/checkpoints/*.pt`` →
    ``RUN/run.json``): a transfer vote's default ``--references`` for a model ``finetune`` made."""
    import json

    from mvdecor.inference.transfer import LabelTransfer, load_references

    run_dir = Path(args.model).parent.parent
    kept = run_dir / TRANSFER_REFERENCES_FILE
    if kept.is_file():  # finetune kept them: no dataset needed
        references = load_references(kept, args.exclude_classes)
        return LabelTransfer.from_settings(references, len(segmenter.label_names), segmenter.config.transfer)
    run_file = run_dir / "run.json"
    needs = (
        f"--transfer-vote {segment.transfer_vote} needs --references (the labelled shapes to transfer "
        "from), or a model made by `mvdecor finetune`, whose run.json names them"
    )
    try:
        record = json.loads(run_file.read_text())
    except (OSError, ValueError):
        raise MvDecorError(f"{needs} (no readable {run_file})") from None
    spec, shapes = record.get("dataset"), record.get("labelled_shapes")
    if not isinstance(spec, str) or not shapes:
        raise MvDecorError(f"{needs} ({run_file} names no dataset and labelled shapes)")
    try:
        transfer, names = _load_references(spec, shapes, args.exclude_classes, segmenter.config)
    except MvDecorError as error:
        raise MvDecorError(
            f"{run_file}: the labelled shapes the model was fine-tuned on cannot be read ({error}); "
            "give --references"
        ) from None
    if tuple(names) != tuple(segmenter.label_names):
        raise MvDecorError(
            f"{run_file}: the labelled shapes' labels {list(names)} differ from the model's "
            f"{list(segmenter.label_names)}"
        )
    return transfer


def _load_prior_model(args: argparse.Namespace, segmenter, segment):
    """``--prior-method nearest``: the ``--prior-model`` segmenter as the vote's prior, by default
    the one ``finetune --nearest-prior`` kept beside the model (:func:`nearest_prior_beside`)."""
    from mvdecor.inference.segment import SegmenterPrior
    from mvdecor.train.finetune import nearest_prior_beside

    if segment.prior_method != "nearest":
        raise MvDecorError("--prior-model is read only with --prior-method nearest")
    prior_model = args.prior_model
    if not prior_model:
        beside = nearest_prior_beside(args.model)
        if not beside.is_file():
            raise MvDecorError(
                "--prior-method nearest needs --prior-model (a second model on the same labelled shapes, "
                "e.g. `mvdecor finetune --method nearest`), or a model made by `mvdecor finetune --method "
                f"network --nearest-prior`, which keeps it beside the network (no {beside})"
            )
        prior_model = str(beside)
    if args.references and (segment.transfer_vote == "off" or segment.transfer_prior <= 0):
        raise MvDecorError(
            "--references is not read with --prior-method nearest (--prior-model holds its labels) "
            "unless --transfer-vote equal, near or unseen makes them a third voter beside the pair "
            "(--transfer-prior > 0)"
        )
    # The same test-time views as the model's.
    prior = SegmenterPrior.from_checkpoint(prior_model, segment, args.device, args.exclude_classes)
    if tuple(prior.label_names) != tuple(segmenter.label_names):
        raise MvDecorError(
            f"{prior_model}: the prior model's labels {list(prior.label_names)} differ from the "
            f"model's {list(segmenter.label_names)}"
        )
    if segment.transfer_prior <= 0:
        print("note: --prior-model without --transfer-prior > 0 changes nothing", file=sys.stderr)
    if segment.transfer_vote == "off" or segment.transfer_prior <= 0:  # transfer votes beside a pair only
        return prior
    from mvdecor.inference.refine import TransferVoter

    if args.references:
        transfer = _model_references(args, segmenter)
    else:
        transfer = transfer_from_run(args, segmenter, segment)
    return TransferVoter.joining(prior, transfer, segment.transfer_vote)


def _vote_prior(args: argparse.Namespace, segmenter, segment):
    """What ``segment --transfer-prior`` mixes into the vote, or None: a second model
    (``--prior-method nearest``) or the ``--references`` carried by transfer or deformation."""
    if args.deformation and segment.prior_method != "deform":
        raise MvDecorError("--deformation is read only with --prior-method deform")
    if args.prior_model or (segment.prior_method == "nearest" and segment.transfer_prior > 0):
        return _load_prior_model(args, segmenter, segment)
    if segment.prior_method == "deform" and not args.deformation:
        raise MvDecorError(
            "--prior-method deform needs --deformation (a network trained by `mvdecor deform`)"
        )
    if not args.references:
        if segment.transfer_prior > 0:
            raise MvDecorError("--transfer-prior needs --references (the labelled shapes to transfer from)")
        return None
    transfer = _model_references(args, segmenter, deformation=args.deformation)
    if segment.transfer_prior <= 0:
        print("note: --references without --transfer-prior > 0 changes nothing", file=sys.stderr)
    return transfer


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.data.io import load_mesh
    from mvdecor.inference.export import export_segmentation
    from mvdecor.inference.refine import check_vote_outside_protocol
    from mvdecor.inference.segment import Segmenter

    segmenter = Segmenter.from_checkpoint(args.model, args.device, exclude_classes=args.exclude_classes)
    from dataclasses import replace

    # The command line's inference settings over the model's own.
    changes = inference_overrides(args)
    segment = replace(segmenter.config.segment, **changes["segment"])
    check_vote_outside_protocol(segment.transfer_vote, args.model)
    if (
        args.references
        and "prior_method" not in changes["segment"]
        and segment.prior_method == "nearest"
        and "transfer_vote" not in changes["segment"]
    ):
        # References name the prior's labels: a network paired with its lookup takes them by transfer
        # instead (as a model of another preset does; --prior-method deform carries them otherwise),
        # unless --transfer-vote makes them the pair's third voter.
        segment = replace(segment, prior_method="transfer")
    transfer_settings = replace(segmenter.config.transfer, **changes["transfer"])
    segmenter.config = replace(segmenter.config, segment=segment, transfer=transfer_settings)
    if segment.shape_prototypes > 0 and not segmenter.pools_faces:
        raise MvDecorError(
            f"{args.model}: --shape-prototypes needs a model of the nearest labelled faces "
            "(`mvdecor finetune --method nearest`); this one has a trained head"
        )
    transfer = _vote_prior(args, segmenter, segment)
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
        from mvdecor.viz.run_reports import write_segment_report

        page = write_segment_report(
            out, preset=segmenter.config.preset, description=f"Segmented with the model {args.model}."
        )
        print(f"report: {page} (opens offline in a browser)")
    return 0


def add_segment_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor segment``."""
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
        help="labelled shapes (a dataset spec or folder) for --transfer-prior: the few you fine-tuned on "
        "(without --prior-method they are carried by transfer, also for a model paired with its lookup); "
        "for --transfer-vote, by default the shapes named in the model's run.json",
    )
    p.add_argument(
        "--reference-shapes", dest="reference_shapes", nargs="+", metavar="ID", help="only these shapes of it"
    )
    p.add_argument(
        "--deformation",
        metavar="NET",
        help="with --prior-method deform: the deformation network (`mvdecor deform`'s OUT/last.pt)",
    )
    p.add_argument(
        "--prior-model",
        dest="prior_model",
        metavar="CKPT",
        help="with --prior-method nearest: a second model of the same labels whose face labels are mixed "
        "in (--transfer-prior 0.5 averages the two), e.g. `mvdecor finetune --method nearest` from the "
        "pre-trained network on the same labelled shapes, beside a --method network --model "
        "(default: the one `finetune --nearest-prior` kept in the model's run folder)",
    )
    add_inference_options(p)
    p.set_defaults(func=cmd_segment)


def cmd_transfer(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.data.io import load_mesh
    from mvdecor.inference.export import export_segmentation

    config = config_from_args(args)
    transfer, names = _load_references(
        args.references, args.reference_shapes, args.exclude_classes, config, deformation=args.deformation
    )
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
        from mvdecor.viz.run_reports import write_segment_report

        page = write_segment_report(
            out,
            preset=config.preset,
            description=f"Labelled by nearest-neighbour transfer from {len(transfer.references)} "
            f"reference shape(s) of {args.references} (align: {config.transfer.align}); no network."
            if args.deformation is None
            else f"Labelled along the learned deformation {args.deformation} of the best-fitting of "
            f"{len(transfer.references)} reference shape(s) of {args.references}.",
        )
        print(f"report: {page} (opens offline in a browser)")
    return 0


def add_transfer_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor transfer``."""
    p = sub.add_parser(
        "transfer",
        help="label meshes from a few labelled reference meshes by nearest neighbour (no network)",
        description=(
            "The learning-free baseline and a quick first answer: each face of each mesh takes the "
            "label of the nearest labelled surface point of the reference shapes, after mapping the "
            "mesh's bounding box onto each reference's, axis by axis (--transfer-align none: as they "
            "are; the shapes must share an orientation, as a category's do). Seconds per mesh, no "
            "training. With --deformation (a network `mvdecor deform` trained on the category's "
            "shapes, no labels), the best-fitting reference is deformed onto each mesh first and "
            "only its labels are carried (the paper's learned-deformation baseline). Writes what "
            "`segment` writes: labels, confidence, coloured PLY/GLB, legend, and OUT/report.html."
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
    p.add_argument(
        "--deformation",
        metavar="NET",
        help="carry labels along this learned deformation (`mvdecor deform`'s OUT/last.pt) instead of "
        "by nearest neighbour",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write OUT/report.html")
    p.add_argument("--preset", default="cpu", choices=("paper", "cpu"), help=argparse.SUPPRESS)
    p.add_argument("--config", metavar="YAML", help="a config file (its transfer section is used)")
    add_set_option(p)
    add_transfer_options(p)
    p.set_defaults(func=cmd_transfer)
