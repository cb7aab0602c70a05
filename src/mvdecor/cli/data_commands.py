"""Commands on meshes and datasets: ``render``, ``info``, ``views``, ``datasets``."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap
import time
from pathlib import Path

from mvdecor.cli.common import EXIT_ERROR, add_mesh_args, add_render_options, load_mesh_arg
from mvdecor.cli.overrides import config_from_args
from mvdecor.errors import MvDecorError


def cmd_render(args: argparse.Namespace) -> int:
    from mvdecor.render.store import parse_shard, render_dataset

    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise MvDecorError(str(exc)) from None
    config = config_from_args(args)
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


def add_render_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor render``."""
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
    add_render_options(p, "paper")
    p.set_defaults(func=cmd_render)


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    mesh = load_mesh_arg(args)
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


def add_info_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor info``."""
    p = sub.add_parser(
        "info", help="summarise a mesh file", description="Print what mvdecor reads from a mesh."
    )
    add_mesh_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def cmd_views(args: argparse.Namespace) -> int:
    from mvdecor.render import Renderer
    from mvdecor.render.cameras import shape_cameras
    from mvdecor.viz import save_image, view_panels, view_sheet

    mesh = load_mesh_arg(args).normalized()
    config = config_from_args(args)
    cameras = shape_cameras(config.render, mesh.name)
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


def add_views_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor views``."""
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
    add_render_options(p, "paper")
    p.set_defaults(func=cmd_views)


def cmd_datasets(args: argparse.Namespace) -> int:
    from mvdecor.data.datasets import DATASETS

    for name, cls in DATASETS.items():
        doc = inspect.cleandoc(cls.__doc__ or "")
        print(f"{name}\n{textwrap.indent(doc, '    ')}\n")
    return 0


def add_datasets_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor datasets``."""
    p = sub.add_parser("datasets", help="list the dataset adapters", description="List dataset names.")
    p.set_defaults(func=cmd_datasets)
