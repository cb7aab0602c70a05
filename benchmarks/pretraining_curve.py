"""Correspondence accuracy and few-shot part mIoU against pre-training length, from results files.

Reads results JSONs written by ``benchmarks/fewshot.py`` (each holds its pre-training's
length, its correspondence accuracy on the test shapes and the few-shot means), prints a
markdown table and draws both curves into one PNG. Scratch is the zero-step point (fine-tuning
from a random network); transfer, which learns nothing, is a horizontal line.

Example (the PartNet-Mobility runs of BENCHMARKS.md)::

    python benchmarks/pretraining_curve.py --k 2 \\
        --run "plateau=benchmarks/results/partnet_mobility-cpu-light2400-k2.json" \\
        --run "plateau=benchmarks/results/partnet_mobility-cpu-light4000-k2.json" \\
        --run "cosine=benchmarks/results/partnet_mobility-cpu-light2400-cosine-k2.json" \\
        --out benchmarks/results/partnet_mobility-pretraining-curve.png
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path


def read_point(path: Path, k: int, method: str) -> dict:
    """One results file's pre-training length, correspondence accuracy and few-shot means at ``k``."""
    record = json.loads(path.read_text())
    runs = record["pretrain"]["runs"]
    iterations = max(run["iterations"] for run in runs.values())
    setting = next((s for s in record["settings"] if s["k"] == k and not s.get("v")), None)
    if setting is None:
        raise SystemExit(f"{path}: no k = {k} setting with all views")
    means = setting["mean"]
    correspondence = record.get("correspondence") or {}
    return {
        "file": path.name,
        "iterations": iterations,
        "acc2": 100 * correspondence.get("pretrained", {}).get("acc@2px", math.nan),
        "acc5": 100 * correspondence.get("pretrained", {}).get("acc@5px", math.nan),
        "random_acc2": 100 * correspondence.get("random_network", {}).get("acc@2px", math.nan),
        "random_acc5": 100 * correspondence.get("random_network", {}).get("acc@5px", math.nan),
        "miou": means.get(method, _suffixed(means, method)),
        "scratch": means.get("scratch", math.nan),
        "transfer": means.get("transfer", math.nan),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="SERIES=RESULTS.json",
        help="a results file and the series (schedule, budget) it belongs to; repeat",
    )
    parser.add_argument(
        "--k", type=int, default=2, help="labelled shapes of the few-shot setting (default 2)"
    )
    parser.add_argument(
        "--method", default="mvdecor", help="the pre-trained method's column (default mvdecor)"
    )
    parser.add_argument("--scratch", type=float, help="scratch's mean part mIoU, if no file has it")
    parser.add_argument("--transfer", type=float, help="transfer's mean part mIoU, if no file has it")
    parser.add_argument("--out", type=Path, help="PNG to draw (default: print only)")
    args = parser.parse_args(argv)

    series: dict[str, list[dict]] = defaultdict(list)
    for item in args.run:
        name, sep, file = item.partition("=")
        if not sep:
            raise SystemExit(f"--run {item!r}: expected SERIES=RESULTS.json")
        series[name].append(read_point(Path(file), args.k, args.method))
    points = [p for pts in series.values() for p in pts]
    scratch = args.scratch if args.scratch is not None else _first(p["scratch"] for p in points)
    transfer = args.transfer if args.transfer is not None else _first(p["transfer"] for p in points)
    random_acc = (_first(p["random_acc2"] for p in points), _first(p["random_acc5"] for p in points))

    print(f"| series | steps | corr. within 2 / 5 px (%) | {args.method} part mIoU, k = {args.k} | file |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| scratch (no pre-training) | 0 | {random_acc[0]:.1f} / {random_acc[1]:.1f} | {scratch:.1f} | |")
    for name, pts in series.items():
        for p in sorted(pts, key=lambda p: p["iterations"]):
            print(
                f"| {name} | {p['iterations']} | {p['acc2']:.1f} / {p['acc5']:.1f} | {p['miou']:.1f} "
                f"| {p['file']} |"
            )
    print(f"| transfer (learns nothing) | | | {transfer:.1f} | |")

    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_acc, ax_miou) = plt.subplots(1, 2, figsize=(10, 4))
        for name, pts in series.items():
            pts = sorted(pts, key=lambda p: p["iterations"])
            steps = [0] + [p["iterations"] for p in pts]
            ax_acc.plot(steps, [random_acc[0]] + [p["acc2"] for p in pts], "o-", label=f"{name}, 2 px")
            ax_acc.plot(steps, [random_acc[1]] + [p["acc5"] for p in pts], "s--", label=f"{name}, 5 px")
            ax_miou.plot(steps, [scratch] + [p["miou"] for p in pts], "o-", label=name)
        ax_miou.axhline(transfer, color="grey", linestyle=":", label="transfer (no training)")
        ax_acc.set(xlabel="pre-training steps", ylabel="correspondence accuracy (%)", title="test shapes")
        ax_miou.set(
            xlabel="pre-training steps (0: scratch)",
            ylabel="part mIoU (%)",
            title=f"few-shot, k = {args.k}, mean of categories",
        )
        for ax in (ax_acc, ax_miou):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=110)
        print(f"\ncurves in {args.out}")
    return 0


def _suffixed(means: dict, method: str) -> float:
    """The column of ``method`` run with a ``--suffix`` (``mvdecor-cosine``), if there is exactly one."""
    found = [v for name, v in means.items() if name.startswith(f"{method}-") and "+" not in name]
    return found[0] if len(found) == 1 else math.nan


def _first(values) -> float:
    """The first number among ``values`` that is not NaN (NaN if none)."""
    return next((v for v in values if not math.isnan(v)), math.nan)


if __name__ == "__main__":
    raise SystemExit(main())
