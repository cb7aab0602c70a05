"""The few-shot benchmark: MvDeCor against the paper's 2D baselines, per category.

For one dataset, on one split and one set of seeds:

1. split every category into train and test shapes (the dataset's official split,
   else seeded; written to WORK/split.json and reused);
2. pre-train the embedding network without labels on the training shapes, of all
   the dataset's categories together (``--pretrain-scope dataset``, as the paper
   does on PartNet) or of each benchmarked category alone (``category``): by
   MvDeCor into WORK/pretrain_<scope>, and, with the ``densecl`` method, by
   DenseCL on the same shapes into WORK/pretrain_densecl_<scope>. With
   ``--pretrain-pool all`` the pool also holds the test shapes, without their
   labels, as a user pre-training on the folder of meshes they will segment
   would; the methods without pre-training read nothing of them, and the
   correspondence accuracy (step 3) is then measured on shapes the network saw;
3. measure the MvDeCor network's cross-view correspondence accuracy on the
   test shapes (against a random network and raw normals);
4. for every setting (k labelled shapes with all views, or k shapes with v
   labelled views) and every method of ``--methods`` run the few-shot protocol:
   R runs, each with its own label-covering draw and seed, the same draws and
   seeds for every method. Methods (the paper's Table 2 rows):

   - ``mvdecor``: fine-tune the MvDeCor pre-trained network;
   - ``scratch``: the same network from random weights;
   - ``densecl``: fine-tune the DenseCL pre-trained network (same network, same
     shapes and budget, no 3D correspondences);
   - ``imagenet``: the ResNet from ``--imagenet-checkpoint``, a torchvision-layout
     ImageNet state dict (nothing is downloaded), its first convolution widened
     to the input channels as in ShapePFCN (see ``load_torchvision_state_dict``);
   - ``transfer``: no network at all: each test face takes the label of the
     nearest labelled surface point after a per-axis bounding-box alignment
     (``mvdecor.inference.transfer``; with v views, the labelled pixels' hit
     points). The floor every learned method must clear; it ignores the
     segment options (prior, smoothing) and stays learning-free;
   - ``scratch3d``: the paper's (3D) Scratch, a point network (DGCNN,
     ``mvdecor.points``; settings: the ``points`` section) trained on the
     labelled shapes' surface samples only;
   - ``pointcontrast``: the same network pre-trained by PointContrast on the
     same training shapes (WORK/pretrain_pointcontrast_<scope>), then trained
     like scratch3d;
   - ``deform``: weak supervision by learned deformation: a network trained
     without labels on each category's training shapes to deform one shape onto
     another (``mvdecor.points.deformation``; settings: the ``deform`` section),
     the best-fitting labelled shape's labels carried along it. In the ``kxv``
     settings the 3D methods learn from the faces the labelled views see, as the
     paper trains its 3D baselines on labelled views;
5. print a markdown table and write ``benchmarks/results/<name>-<budget><suffix>.json``
   (``--suffix``, so runs with other configs do not overwrite each other's)::

       {"dataset", "preset", "machine", "wall_s",
        "settings": [{"k", "v", "runs",
                      "per_category": {category: {method: {"mean", "std"}}},
                      "mean": {method: mean part mIoU over categories}}], ...}

   with every mIoU in percent, plus the budget, the pre-training records and the
   correspondence accuracy; the table has a column per method and the
   ``mvdecor − scratch`` gap.

Everything is resumable: re-running the same command skips finished pre-training
and finished (category, setting, method) cells, whose runs live under WORK. A
``--config`` that would pre-train another network than the finished one in WORK
(another rate, length, backbone...) is refused by name: it needs its own WORK
(copy split.json into it to keep the split and the draws).

Budgets (``--budget``): ``cpu`` is the ``cpu`` preset, whose fine-tuning stage is
a short fine-tuning (100 steps, see ``BUDGETS``) averaged with the nearest labelled
faces of the network it started from (a ``--config`` with ``finetune.method:
nearest`` keeps that lookup alone, which trains nothing), sized so a few
categories finish in about an hour on 2 cores;
``paper`` is the ``paper`` preset with its own iteration counts, for a GPU.
``--config YAML`` starts from a config file instead of the budget's preset (the
budget's changes still apply where it makes any).

Example (BENCHMARKS.md has the recorded runs)::

    python benchmarks/fewshot.py partnet_mobility:root=../shared/data/partnet_mobility \\
        --name partnet_mobility --categories Laptop+Bucket+Safe+Faucet+Microwave \\
        --settings 1,2,5,2x3 --runs 3 --work /tmp/fewshot-pm

    # the paper's four 2D rows
    python benchmarks/fewshot.py ... --methods mvdecor,scratch,densecl,imagenet \\
        --imagenet-checkpoint resnet18-f37072fd.pth
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from mvdecor.cli import add_keep_checkpoints_option
from mvdecor.config import PACKAGED_IMAGENET, Config, load_config
from mvdecor.data.datasets import open_dataset
from mvdecor.data.splits import load_split, make_split, save_split
from mvdecor.evaluation.embedding import evaluate_embedding
from mvdecor.fileio import atomic_path
from mvdecor.points import pretrain_pointcontrast
from mvdecor.protocols.fewshot import finished_fewshot, run_fewshot_cached
from mvdecor.protocols.methods import FACE_METHODS as FACE_METHOD_REGISTRY
from mvdecor.protocols.refinements import check_refinements
from mvdecor.protocols.stages import RUN_PLACE_KEYS
from mvdecor.train.data import split_shapes
from mvdecor.train.precision import resolve_precision
from mvdecor.train.pretrain import pretrain

#: Benchmark methods; those in ``PRETRAINED`` pre-train first, with that pre-training method.
METHODS = ("transfer", "mvdecor", "scratch", "densecl", "imagenet", "scratch3d", "pointcontrast", "deform")
PRETRAINED = ("mvdecor", "densecl")
#: Methods that label faces directly (registered in mvdecor.protocols.methods): no votes for
#: --refine to act on.
FACE_METHODS = tuple(name for name in METHODS if name in FACE_METHOD_REGISTRY)

#: Per budget: the preset, and what is changed from it (None keeps the preset's value).
BUDGETS = {
    # The cpu preset's 2,400 pre-training steps with the light head (55 min for the five
    # PartNet-Mobility categories on 2 cores with native bf16, BENCHMARKS.md) and its fine-tuning:
    # 100 steps of 4 views, without the lambda = 1e-3 InfoNCE regulariser (its extra view pair per
    # step costs half a step and moves the loss by ~0.5%). Repeated here (the preset holds the same
    # since session 29) so that every --config is fine-tuned with the budget's settings
    # (--finetune-iterations and --ssl-weight change them).
    "cpu": {
        "preset": "cpu",
        "pretrain_iterations": None,  # the preset's 2,400
        "finetune_iterations": 100,
        "ssl_weight": 0.0,
        # auto: bf16 on CPUs with native bf16 (1.56x fp32 for a pre-training step), fp32 on
        # AVX2-only CPUs, where bf16 autocast falls back to PyTorch's reference convolutions
        # (80 s per pre-training step against about 2 s in fp32). Resolved before anything
        # runs, so results record the precision used.
        "precision": "auto",
    },
    "paper": {
        "preset": "paper",
        "pretrain_iterations": None,
        "finetune_iterations": None,
        "ssl_weight": None,
        "precision": None,
    },
}


def parse_settings(text: str) -> list[tuple[int, int]]:
    """``"1,2,5,2x3"`` -> ``[(1, 0), (2, 0), (5, 0), (2, 3)]`` (k, v; v = 0: all views)."""
    settings = []
    for item in filter(None, text.split(",")):
        k, _, v = item.partition("x")
        settings.append((int(k), int(v or 0)))
    return settings


def machine_description(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def pretrain_folder(work: Path, method: str, scope: str) -> Path:
    """WORK/pretrain_<scope> for MvDeCor (the layout of earlier runs), WORK/pretrain_<method>_<scope> else."""
    return work / (f"pretrain_{scope}" if method == "mvdecor" else f"pretrain_{method}_{scope}")


#: The configuration a finished pre-training of each method was decided by: whole sections, or
#: ``section.field`` where a method reads one setting of another's section (PointContrast draws
#: its view pairs with ``pretrain``'s overlap threshold).
PRETRAINING_SECTIONS = {
    "mvdecor": ("model", "render", "pretrain"),
    "densecl": ("model", "render", "pretrain"),
    "pointcontrast": ("render", "points", "pretrain.overlap_threshold"),
}
#: Settings that do not change the network a pre-training writes (where it ran, how many meshes
#: each loader kept cached, what it logged: item k is a function of the seed and k alone) or that
#: only later stages read (the point network's fine-tuning and prediction).
INCIDENTAL_SETTINGS = (
    *RUN_PLACE_KEYS,
    "cached_shapes",
    "log_every",
    "checkpoint_every",
    "keep_snapshots",
    "predict_clouds",
)


def changed_pretraining(run_dir: Path, config: Config, method: str) -> list[str]:
    """What ``config`` changes from the settings the finished pre-training in ``run_dir`` used.

    The benchmark reuses a finished network (``done.json``) instead of training it again, so a
    ``--config`` that changes what it would learn (another learning rate, length, backbone...)
    must not be scored on the old network under the new settings' name. Returns
    ``"section.field: saved -> now"`` items; empty when the network is the one asked for.
    """
    saved = load_config(run_dir / "config.yaml")
    changed = []
    for item in PRETRAINING_SECTIONS[method]:
        section, _, only = item.partition(".")
        old, new = getattr(saved, section), getattr(config, section)
        for field in fields(new):
            name = field.name
            if (only and name != only) or name in INCIDENTAL_SETTINGS or name.startswith("finetune_"):
                continue
            if section == "pretrain" and name == "densecl" and method != "densecl":
                continue  # DenseCL's own settings: MvDeCor never reads them
            if getattr(old, name) != getattr(new, name):
                changed.append(f"{section}.{name}: {getattr(old, name)!r} -> {getattr(new, name)!r}")
    return changed


def pretrain_pool(split: dict, category: str | None, pool: str) -> list[str]:
    """The shapes a pre-training reads: ``category``'s (every category's for None) training
    shapes, and with ``pool == "all"`` their test shapes too (never their labels)."""
    parts = ("train", "test") if pool == "all" else ("train",)
    return [s for c, e in split.items() if category in (None, c) for part in parts for s in e[part]]


def _refuse_changed_pretraining(
    parser: argparse.ArgumentParser, run_dir: Path, config: Config, method: str, pool: str
) -> None:
    # Pre-trainings finished before the pool was recorded read the training shapes.
    saved_pool = json.loads((run_dir / "done.json").read_text()).get("pool", "train")
    changed = changed_pretraining(run_dir, config, method)
    if saved_pool != pool:
        changed.append(f"--pretrain-pool: {saved_pool} -> {pool}")
    if changed:
        parser.error(
            f"{run_dir} holds a finished {method} pre-training with other settings ({'; '.join(changed)}): "
            "give this configuration its own --work (copy split.json into it to keep the split and draws)"
        )


def _write_done(done: Path, last: Path, wall_s: float, device: str, pool: str) -> None:
    """Mark a finished pre-training: its length, wall time, shape pool and the machine it ran on."""
    saved = torch.load(last, map_location="cpu", weights_only=False)
    record = {
        "wall_s": round(wall_s, 1),
        "iterations": int(saved["step"]),
        "machine": machine_description(device),
        "pool": pool,
    }
    _write_json(done, record)


def _write_json(path: Path, record: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def gaps_of(columns: list[str]) -> list[tuple[str, str]]:
    """The gaps a table shows: what pre-training adds (mvdecor − scratch) and the margin over the
    learning-free floor (mvdecor − transfer), for the plain pipeline and each variant of it."""
    gaps = []
    for column in columns:
        if column.startswith("mvdecor"):
            variant = column[len("mvdecor") :]
            gaps += [(column, f"scratch{variant}"), (column, "transfer")]
    return [(a, b) for a, b in gaps if a in columns and b in columns]


def _gap_cells(cells: dict, gaps: list[tuple[str, str]], bold: bool = False) -> list[str]:
    out = []
    for a, b in gaps:
        if {a, b} <= set(cells):
            value = (cells[a]["mean"] if isinstance(cells[a], dict) else cells[a]) - (
                cells[b]["mean"] if isinstance(cells[b], dict) else cells[b]
            )
            out.append(f"**{value:+.1f}**" if bold else f"{value:+.1f}")
        else:
            out.append("")
    return out


def format_table(record: dict) -> str:
    methods = record["methods"]
    lines = [
        f"Dataset `{record['dataset']}`, budget `{record['budget']}` (preset `{record['preset']}`), "
        f"{record['machine']}; {record['wall_s'] / 60:.0f} min in all.",
    ]
    if (record.get("pretrain") or {}).get("pool") == "all":
        lines.append("Pre-training read the test shapes too, without their labels (`--pretrain-pool all`).")
    # A network pre-trained elsewhere (a GPU machine, say) and scored here: where, and how long.
    for key, runs in (record.get("pretrain") or {}).items():
        if key == "runs" or key.endswith("_runs"):
            method = "mvdecor" if key == "runs" else key.removesuffix("_runs")
            for scope, run in runs.items():
                if run.get("machine", record["machine"]) != record["machine"]:
                    note = f" ({run['note']})" if run.get("note") else ""
                    lines.append(
                        f"{method} pre-training ({scope}): {run['iterations']} steps in "
                        f"{run['wall_s'] / 60:.1f} min on {run['machine']}{note}."
                    )
    lines.append("")
    gaps = gaps_of(methods)
    gap_names = [f"{a} − {b}" for a, b in gaps]
    for setting in record["settings"]:
        label = f"k = {setting['k']}" + (f", v = {setting['v']} views" if setting["v"] else ", all views")
        lines += [
            f"**{label}**, {setting['runs']} runs, part mIoU % (mean ± std over runs)",
            "",
            "| category | " + " | ".join(methods + gap_names) + " |",
            "| --- |" + " ---: |" * (len(methods) + len(gap_names)),
        ]
        for category, cells in setting["per_category"].items():
            row = [
                f"{cells[m]['mean']:.1f} ± {cells[m]['std']:.1f}" if m in cells else "not run"
                for m in methods
            ]
            repeats = sorted({r for m in cells for r in cells[m].get("repeated_draws", [])})
            name = category + (f" (draws repeat in runs {', '.join(map(str, repeats))})" if repeats else "")
            lines.append(f"| {name} | " + " | ".join(row + _gap_cells(cells, gaps)) + " |")
        mean = setting["mean"]
        lines.append(
            "| **mean** | "
            + " | ".join(
                [f"**{mean[m]:.1f}**" if m in mean else "incomplete" for m in methods]
                + _gap_cells(mean, gaps, True)
            )
            + " |"
        )
        lines.append("")
    corr = record.get("correspondence")
    if corr:
        lines.append(
            "Correspondence accuracy on the test shapes (within 2 / 5 px): "
            + ", ".join(
                f"{name} {100 * corr[name]['acc@2px']:.1f} / {100 * corr[name]['acc@5px']:.1f}"
                for name in ("pretrained", "random_network", "normals")
                if name in corr
            )
        )
    return "\n".join(lines) + "\n"


def _cell(summary: dict) -> dict:
    """A table cell from a protocol summary: part mIoU in percent and what goes with it."""
    return {
        "mean": round(100 * summary["part_miou"]["mean"], 2),
        "std": round(100 * summary["part_miou"]["std"], 2),
        "shape_miou": round(100 * summary["shape_miou"]["mean"], 2),
        "pixel_miou_2d": None
        if summary["pixel_miou_2d"]["mean"] is None  # transfer: no per-view prediction
        else round(100 * summary["pixel_miou_2d"]["mean"], 2),
        "wall_s": summary["wall_s"],
        "repeated_draws": summary.get("repeated_draws", []),
    }


def parse_refinements(items: list[str]) -> dict[str, dict[str, float | str]]:
    """``["prior=transfer_prior:0.5", "deform=transfer_prior:0.3,prior_method:deform"]`` -> variant settings."""
    out = {}
    for item in items:
        name, _, body = item.partition("=")
        changes: dict[str, float | str] = {}
        for pair in filter(None, body.split(",")):
            key, _, value = pair.partition(":")
            try:
                changes[key.strip()] = float(value)
            except ValueError:  # a named choice (prior_method); check_refinements validates it
                changes[key.strip()] = value.strip()
        out[name.strip()] = changes
    return check_refinements(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset spec, e.g. partnet_mobility:root=PATH or a folder")
    parser.add_argument("--name", help="short dataset name for the results file (default: the spec's name)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--categories", help="categories to benchmark, e.g. Laptop+Bucket (default: all)")
    parser.add_argument("--settings", default="1,2,5,2x3", help="k or kxv items (default 1,2,5,2x3)")
    parser.add_argument("--runs", type=int, default=3, help="runs per setting (default 3; the paper uses 5)")
    add_keep_checkpoints_option(parser, "weights")  # dozens of runs: ~60 MB each, not ~200
    parser.add_argument(
        "--methods",
        default="mvdecor,scratch",
        help=f"methods to run, of {','.join(METHODS)} (default mvdecor,scratch)",
    )
    parser.add_argument(
        "--imagenet-checkpoint",
        metavar="PATH",
        help="torchvision-layout ResNet state dict (.pth) for the imagenet method (nothing is downloaded), "
        "or 'packaged': the installed EfficientNet-Lite0 weights (model.backbone efficientnet_lite0)",
    )
    parser.add_argument(
        "--config", metavar="YAML", help="a config file to start from instead of the budget's preset"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        help="override the budget's precision (cpu: auto, bf16 where the CPU has it), e.g. fp32 to "
        "compare with results measured on a CPU without bf16",
    )
    parser.add_argument("--pretrain-scope", choices=("dataset", "category"), default="dataset")
    parser.add_argument(
        "--pretrain-pool",
        choices=("train", "all"),
        default="train",
        help="the shapes pre-training reads: the split's training shapes, or all: the test shapes too, "
        "unlabelled, as a user pre-training on the folder they segment (needs its own --work)",
    )
    parser.add_argument("--pretrain-iterations", type=int, help="override the budget's pre-training length")
    parser.add_argument("--finetune-iterations", type=int, help="override the budget's fine-tuning length")
    parser.add_argument(
        "--ssl-weight",
        type=float,
        metavar="LAMBDA",
        help="override the budget's weight of the self-supervised regulariser during fine-tuning "
        "(cpu: 0; the paper's is 1e-3)",
    )
    parser.add_argument(
        "--convention",
        choices=("partnet", "shapenet"),
        help="scoring rules (default: partnet when every category's label 0 is 'other', else shapenet)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the draws and the runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--work", required=True, help="folder for runs and checkpoints (large; outside the repo)"
    )
    parser.add_argument(
        "--results",
        default=str(Path(__file__).parent / "results"),
        help="folder for <name>-<budget><suffix>.json and .md (default benchmarks/results)",
    )
    parser.add_argument(
        "--refine",
        action="append",
        default=[],
        metavar="NAME=KEY:VALUE[,KEY:VALUE]",
        help="a refinement variant of every learned method, scored on the same networks as its own "
        "column <method>+NAME, e.g. prior=transfer_prior:0.5, dprior=transfer_prior:0.3,prior_method:deform, "
        "smooth=smoothing:1, views46=rings:4, "
        "flip=flip:1 or res192=resolution:192 (the last three segment each test shape again) (repeatable)",
    )
    parser.add_argument(
        "--suffix",
        default="",
        help="appended to the learned methods' names (write --suffix=-pos: a bare leading dash reads as an option), so runs with another --config share "
        "the work folder, split, draws and pre-training without mixing cells",
    )
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--no-correspondence",
        action="store_true",
        help="do not measure the MvDeCor network's correspondence accuracy on the test shapes now "
        "(e.g. pre-training only, on a GPU machine: --settings '' --methods mvdecor); a later run measures it",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the table and JSON from the cells already finished in --work",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    budget = BUDGETS[args.budget]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(args.dataset)
    name = args.name or dataset.spec.partition(":")[0]
    categories = args.categories.split("+") if args.categories else list(dataset.categories())
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    refinements = parse_refinements(args.refine)
    learned = [m + args.suffix for m in methods if m not in FACE_METHODS]
    columns = [m if m == "transfer" else m + args.suffix for m in methods] + [
        f"{m}+{n}" for n in refinements for m in learned
    ]
    if "imagenet" in methods and not args.imagenet_checkpoint:
        parser.error("the imagenet method needs --imagenet-checkpoint PATH (or 'packaged')")
    packaged = args.imagenet_checkpoint == PACKAGED_IMAGENET
    if args.imagenet_checkpoint and not packaged and not Path(args.imagenet_checkpoint).is_file():
        parser.error(f"--imagenet-checkpoint {args.imagenet_checkpoint}: no such file")
    convention = args.convention or (
        "partnet" if all(dataset.label_names_of(c)[:1] == ("other",) for c in categories) else "shapenet"
    )

    split_path = work / "split.json"
    if split_path.is_file():
        split = load_split(split_path, dataset)
    else:
        split = make_split(dataset, args.test_fraction, args.seed)
        save_split(split, split_path, dataset.spec, args.seed, args.test_fraction)

    config = load_config(args.config or budget["preset"])
    wanted = args.precision or budget["precision"]
    precision = wanted and resolve_precision(wanted, None if args.device == "auto" else args.device)
    pre = config.pretrain
    ft = config.finetune
    pre = replace(
        pre,
        iterations=args.pretrain_iterations or budget["pretrain_iterations"] or pre.iterations,
        precision=precision or pre.precision,
        device=args.device,
    )
    ft = replace(
        ft,
        iterations=args.finetune_iterations or budget["finetune_iterations"] or ft.iterations,
        ssl_weight=next(w for w in (args.ssl_weight, budget["ssl_weight"], ft.ssl_weight) if w is not None),
        precision=precision or ft.precision,
        device=args.device,
    )
    config = replace(config, pretrain=pre, finetune=ft)

    # Pre-training: one network on every category's training shapes, or one per category,
    # per pre-training method, on the same shapes.
    scopes = {"all": None} if args.pretrain_scope == "dataset" else {c: c for c in categories}
    checkpoints: dict[str, dict[str, Path]] = {}  # method -> scope -> checkpoint
    for method in (m for m in PRETRAINED if m in methods):
        checkpoints[method] = {}
        method_config = replace(config, pretrain=replace(pre, method=method))
        for scope, category in scopes.items():
            run_dir = pretrain_folder(work, method, scope)
            last = run_dir / "checkpoints" / "last.pt"
            checkpoints[method][scope] = last
            if args.report_only:
                continue
            pool = pretrain_pool(split, category, args.pretrain_pool)
            train, val = split_shapes(pool, 0.1, args.seed)  # 10% for the validation loss
            done = run_dir / "done.json"
            if done.is_file():
                _refuse_changed_pretraining(parser, run_dir, method_config, method, args.pretrain_pool)
            else:
                print(
                    f"pre-training ({method}) on {len(train)} shapes ({scope}), {pre.iterations} iterations",
                    flush=True,
                )
                t0 = time.perf_counter()
                pretrain(
                    method_config,
                    dataset.spec,
                    run_dir,
                    split={"train": train, "val": val},
                    progress=not args.quiet,
                )
                _write_done(done, last, time.perf_counter() - t0, args.device, args.pretrain_pool)
    if "pointcontrast" in methods:
        checkpoints["pointcontrast"] = {}
        for scope, category in scopes.items():
            run_dir = pretrain_folder(work, "pointcontrast", scope)
            checkpoints["pointcontrast"][scope] = run_dir / "checkpoints" / "last.pt"
            done = run_dir / "done.json"
            if args.report_only:
                continue
            if done.is_file():
                _refuse_changed_pretraining(parser, run_dir, config, "pointcontrast", args.pretrain_pool)
                continue
            pool = pretrain_pool(split, category, args.pretrain_pool)
            print(
                f"pre-training (pointcontrast) on {len(pool)} shapes ({scope}), "
                f"{config.points.pretrain_iterations} iterations",
                flush=True,
            )
            t0 = time.perf_counter()
            last = pretrain_pointcontrast(
                config, dataset.spec, run_dir, shape_ids=pool, progress=not args.quiet
            )
            _write_done(done, last, time.perf_counter() - t0, args.device, args.pretrain_pool)
    scope_of = {c: "all" if args.pretrain_scope == "dataset" else c for c in categories}
    init_of = {
        **{m: {c: checkpoints[m][scope_of[c]] for c in categories} for m in checkpoints},
        "scratch": {c: "scratch" for c in categories},
        "imagenet": {c: "imagenet" for c in categories},
        "transfer": {c: "transfer" for c in categories},
        "scratch3d": {c: "scratch3d" for c in categories},
        "deform": {c: "deform" for c in categories},
    }
    # Only the imagenet method reads the ImageNet file; the others keep the budget's config.
    config_of = {m: config for m in methods}
    if "imagenet" in methods:
        imagenet_path = PACKAGED_IMAGENET if packaged else str(Path(args.imagenet_checkpoint).resolve())
        config_of["imagenet"] = replace(
            config, model=replace(config.model, imagenet_checkpoint=imagenet_path)
        )

    correspondence = None
    if "mvdecor" in methods:
        corr_path = work / "correspondence.json"
        if corr_path.is_file():
            correspondence = json.loads(corr_path.read_text())
            # Written before the match threshold's key was renamed from "radius".
            if "radius" in correspondence and "match_radius" not in correspondence:
                correspondence["match_radius"] = correspondence.pop("radius")
        elif not (args.report_only or args.no_correspondence):
            test_shapes = [s for c in categories for s in split[c]["test"]]
            device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
            device = "cpu" if device == "auto" else device
            checkpoint = next(iter(checkpoints["mvdecor"].values()))
            correspondence = evaluate_embedding(checkpoint, dataset.spec, shapes=test_shapes, device=device)
            _write_json(corr_path, correspondence)

    # Category by category, each method in turn, so an interrupted benchmark has
    # comparable cells; finished cells are read back (see run_fewshot_cached).
    settings = []
    for k, v in parse_settings(args.settings):
        per_category: dict[str, dict[str, dict[str, float]]] = {c: {} for c in categories}
        for category in categories:
            entry = split[category]
            for method in methods:
                learned = method not in FACE_METHODS  # refined by --refine
                column = method if method == "transfer" else method + args.suffix
                cell = dict(
                    method=column,
                    k=k,
                    views_per_shape=v,
                    runs=args.runs,
                    train_shapes=entry["train"],
                    test_shapes=entry["test"],
                )
                if args.report_only:
                    summary = finished_fewshot(work / "fewshot" / category, **cell)
                    if summary is None:
                        continue
                else:
                    print(f"k = {k}, v = {v or 'all'}, {category}: {column}", flush=True)
                    summary = run_fewshot_cached(
                        config_of[method],
                        dataset.spec,
                        work / "fewshot" / category,
                        init=init_of[method][category],
                        convention=convention,
                        seed=args.seed,
                        progress=not args.quiet,
                        category=category,
                        keep_checkpoints=args.keep_checkpoints,
                        refinements=refinements if learned else None,
                        **cell,
                    )
                per_category[category][column] = _cell(summary)
                for variant in refinements if learned else ():
                    found = finished_fewshot(
                        work / "fewshot" / category, **{**cell, "method": f"{column}+{variant}"}
                    )
                    if found is not None:
                        per_category[category][f"{column}+{variant}"] = _cell(found)
        # A method's mean over categories only where it has every category.
        means = {
            m: round(sum(per_category[c][m]["mean"] for c in categories) / len(categories), 2)
            for m in columns
            if all(m in per_category[c] for c in categories)
        }
        settings.append(
            {"k": k, "v": v or None, "runs": args.runs, "per_category": per_category, "mean": means}
        )

    # method -> scope -> done.json of the finished pre-training runs
    pretrain_runs = {
        method: {
            scope: json.loads(done.read_text())
            for scope in scopes
            if (done := pretrain_folder(work, method, scope) / "done.json").is_file()
        }
        for method in checkpoints
    }
    record = {
        "dataset": name,
        "dataset_spec": dataset.spec,
        "preset": config.preset,
        "budget": args.budget,
        "machine": machine_description(args.device),
        "date": time.strftime("%Y-%m-%d"),
        # With --report-only: the finished cells' and the pre-training's own times.
        "wall_s": round(
            time.perf_counter() - start
            if not args.report_only
            else sum(c[m]["wall_s"] for st in settings for c in st["per_category"].values() for m in c)
            + sum(run["wall_s"] for runs in pretrain_runs.values() for run in runs.values()),
            1,
        ),
        "report_only": args.report_only,
        "command": "python benchmarks/fewshot.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "units": "part mIoU in percent; mean and std over runs",
        "convention": convention,
        "methods": columns,
        "refinements": refinements,
        "pretrain": {
            "scope": args.pretrain_scope,
            "pool": args.pretrain_pool,
            "precision": pre.precision,
            "runs": pretrain_runs.get("mvdecor", {}),
            **{f"{m}_runs": runs for m, runs in pretrain_runs.items() if m != "mvdecor"},
        },
        "imagenet_checkpoint": args.imagenet_checkpoint if "imagenet" in methods else None,
        "finetune": {"iterations": ft.iterations, "ssl_weight": ft.ssl_weight, "precision": ft.precision},
        "split": {c: {"train": len(split[c]["train"]), "test": len(split[c]["test"])} for c in categories},
        "correspondence": {
            key: correspondence[key] for key in ("pretrained", "random_network", "normals", "match_radius")
        }
        if correspondence
        else None,
        "settings": settings,
    }
    out = Path(args.results) / f"{name}-{args.budget}{args.suffix}.json"
    _write_json(out, record)
    table = format_table(record)
    _write_json_md = out.with_suffix(".md")
    with atomic_path(_write_json_md) as tmp:
        tmp.write_text(table)
    print(table)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
