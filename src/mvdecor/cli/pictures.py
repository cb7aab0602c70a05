"""``mvdecor pictures``: PNG pictures of runs (training curves, embeddings, segmentations)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mvdecor.cli.common import load_mesh_arg
from mvdecor.errors import MvDecorError


def _picture_view(data: str, pick: str, render, store: str | None, cache: dict):
    """The view ``pick`` (``[SHAPE:]VIEW``) of a mesh file or a dataset, and its title."""
    from mvdecor.data.io import SUPPORTED_EXTENSIONS, load_mesh
    from mvdecor.render import Renderer
    from mvdecor.render.cameras import shape_cameras

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
            cameras = shape_cameras(render, mesh.name)
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
    from mvdecor.correspond.source import ViewSource

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
    from mvdecor.models.checkpoints import load_checkpoint, load_embedding, load_segmentation_model

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


def _paired_lookup(segmenter, args: argparse.Namespace):
    """The lookup a model averages its labels with, as ``mvdecor segment`` finds it (the ``cpu``
    preset's pair: ``RUN/nearest-prior/`` beside the network), or None for a model alone."""
    from mvdecor.inference.segment import SegmenterPrior
    from mvdecor.train.finetune import nearest_prior_beside

    segment = segmenter.config.segment
    if segment.prior_method != "nearest" or segment.transfer_prior <= 0:
        return None
    beside = nearest_prior_beside(args.model)
    if not beside.is_file():
        print(f"note: no lookup beside the model ({beside}): the network's labels alone", file=sys.stderr)
        return None
    # The model's test-time views.
    lookup = SegmenterPrior.from_checkpoint(beside, segment, args.device, args.exclude_classes)
    if segment.transfer_vote == "off":
        return lookup
    from mvdecor.cli.segment_commands import transfer_from_run
    from mvdecor.inference.refine import TransferVoter, check_vote_outside_protocol

    check_vote_outside_protocol(segment.transfer_vote, args.model)

    # Label transfer from the shapes the model was fine-tuned on, as `mvdecor segment` adds it; a
    # picture can do without it (a note says so), as it does without a lookup.
    try:
        transfer = transfer_from_run(args, segmenter, segment)
    except MvDecorError as error:
        print(f"note: {error}: the pair's labels without transfer's vote", file=sys.stderr)
        return lookup
    return TransferVoter.joining(lookup, transfer, segment.transfer_vote)


def cmd_pictures_segmentation(args: argparse.Namespace) -> int:
    import numpy as np

    from mvdecor.inference.segment import Segmenter
    from mvdecor.render import Renderer
    from mvdecor.viz import part_labels_sheet, save_image, vote_weight_sheet

    segmenter = Segmenter.from_checkpoint(args.model, args.device, exclude_classes=args.exclude_classes)
    mesh = load_mesh_arg(args).normalized()
    lookup = _paired_lookup(segmenter, args)
    result = segmenter.segment(mesh, normalize=False, transfer=lookup)
    cameras = segmenter.cameras_for(mesh)
    # Evenly spread views, skipping the first and last (the poles of the camera sphere).
    first, last = (1, len(cameras) - 2) if len(cameras) > 2 else (0, len(cameras) - 1)
    picks = sorted({int(i) for i in np.linspace(first, last, max(args.views, 1)).round()})
    renderer = Renderer(mesh)
    views = [renderer.render_view(cameras, i) for i in picks]
    names = segmenter.label_names
    columns = {"ground truth": mesh.face_labels} if mesh.has_labels else {}
    columns["prediction (fused)" if lookup is None else "prediction (fused, with its lookup)"] = (
        result.face_labels
    )
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
        list(segmenter.predict(views, mesh.bounds())),
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
            "truth, when the mesh has labels | fused prediction, averaged with the model's lookup "
            "when the cpu preset kept one beside it, as `mvdecor segment` does; from --views views, "
            "with a legend of part names) and OUT/<name>.vote_weights.png (per view: predicted labels, per-pixel "
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
