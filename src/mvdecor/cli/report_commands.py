"""Results for people: ``report`` (HTML pages of runs and segmentations) and ``demo``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mvdecor.cli.common import add_keep_checkpoints_option


def cmd_report(args: argparse.Namespace) -> int:
    from mvdecor.viz.run_reports import write_segment_report, write_training_report

    run_dir = Path(args.run_dir)
    if (run_dir / "metrics.csv").is_file() and not any(run_dir.rglob("*.legend.json")):
        path = write_training_report(run_dir, title=args.title)
        print(f"wrote {path}: open it in a browser (works offline)")
        return 0
    preset, description = args.preset, ""
    if args.model:
        from mvdecor.models.checkpoints import load_checkpoint

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


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor report``."""
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


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor demo``."""
    p = sub.add_parser(
        "demo",
        help="run the end-to-end demo on built-in shapes",
        description=(
            "Run the whole pipeline on built-in synthetic labelled shapes and compare MvDeCor with a "
            "network that was not pre-trained (scratch) and with learning-free label transfer: split "
            "each category into training and held-out test shapes, render them, pre-train the embedding "
            "network on the training shapes of all categories without labels and measure its cross-view "
            "correspondence accuracy, then per category adapt the pre-trained and a randomly "
            "initialised network to k labelled shapes (same draw, same seed) as the preset's "
            "finetune.method says (the cpu preset's nearest: the nearest labelled faces in the "
            "embedding, no training; network, the paper preset's: fine-tuning, as the paper does), "
            "segment the held-out "
            "shapes and score them (part, shape and 2D pixel mIoU). The report "
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
        help="steps of each fine-tuning run (default 150; unused by finetune.method nearest, which "
        "trains nothing)",
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
