"""The HTML reports of run folders: ``mvdecor segment`` output and training runs.

Both are pages of :func:`mvdecor.viz.report.write_report`: the segmented
meshes as interactive 3D views (with the ground truth where it is known), and
a training run's curves, last metrics and configuration.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvdecor.errors import FileError, LabelError, MeshLoadError
from mvdecor.viz.report import MetricsTable, Picture, ReportMesh, write_report

__all__ = ["load_exported_mesh", "write_segment_report", "write_training_report"]


def load_exported_mesh(
    folder: str | Path, stem: str, ground_truth: str | Path | None = None, name: str | None = None
) -> ReportMesh:
    """A mesh written by :func:`mvdecor.inference.export.export_segmentation`, for the report.

    Reads ``<stem>.ply`` (the mesh, in its original coordinates),
    ``<stem>.labels.npy`` (or ``.labels.txt``) and ``<stem>.legend.json``
    (the label names) from ``folder``.

    Parameters
    ----------
    folder : path
        The folder the files are in.
    stem : str
        Their common file name stem.
    ground_truth : path, optional
        A per-face label file (``.npy``, ``.txt`` or ``.seg``: one integer per
        face, ``-1`` unlabelled, the same label ids as the legend), shown as a
        second colouring, "ground truth".
    name : str, optional
        Heading of the 3D view (default ``stem``).

    Raises
    ------
    MeshLoadError
        The PLY file is missing or unreadable.
    LabelError
        A label or legend file is missing, unreadable, or does not fit the mesh.
    """
    import trimesh

    folder = Path(folder)
    ply = folder / f"{stem}.ply"
    if not ply.is_file():
        raise MeshLoadError(ply, "no such file (expected next to the legend)")
    try:
        loaded = trimesh.load(ply, process=False, force="mesh")
    except Exception as exc:  # trimesh raises many types for damaged files
        raise MeshLoadError(ply, f"unreadable PLY ({type(exc).__name__}: {exc})") from None
    vertices = np.asarray(loaded.vertices)
    faces = np.asarray(loaded.faces)

    legend_path = folder / f"{stem}.legend.json"
    try:
        legend = json.loads(legend_path.read_text())
        entries = {int(key): value["name"] for key, value in legend.items() if int(key) >= 0}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LabelError(legend_path, f"unreadable legend ({type(exc).__name__}: {exc})") from None
    if sorted(entries) != list(range(len(entries))):
        raise LabelError(legend_path, "label ids are not 0, 1, ... without gaps")
    names = [entries[i] for i in range(len(entries))]

    npy = folder / f"{stem}.labels.npy"
    labels = _read_face_labels(npy if npy.is_file() else folder / f"{stem}.labels.txt", len(faces), names)
    labelings = {"predicted": labels}
    if ground_truth is not None:
        labelings["ground truth"] = _read_face_labels(Path(ground_truth), len(faces), names)
    return ReportMesh(name or stem, vertices, faces, names, labelings)


def _read_face_labels(path: Path, num_faces: int, names: Sequence[str]) -> np.ndarray:
    """``(F,)`` int64 face labels from a ``.npy`` or text file, checked against the mesh."""
    try:
        if path.suffix == ".npy":
            labels = np.load(path, allow_pickle=False)
        else:
            labels = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise LabelError(path, f"unreadable label file ({type(exc).__name__}: {exc})") from None
    labels = np.asarray(labels)
    if labels.shape != (num_faces,) or not np.issubdtype(labels.dtype, np.integer):
        raise LabelError(path, f"{labels.shape} labels ({labels.dtype}), expected {num_faces} integers")
    if labels.size and (labels.min() < -1 or labels.max() >= len(names)):
        raise LabelError(path, f"labels outside [-1, {len(names)}) ({len(names)} label names)")
    return labels.astype(np.int64)


def write_segment_report(
    run_dir: str | Path,
    *,
    title: str | None = None,
    preset: str | None = None,
    ground_truth_dir: str | Path | None = None,
    description: str = "",
) -> Path:
    """``report.html`` of a folder written by ``mvdecor segment``.

    Every ``<stem>.legend.json`` under ``run_dir`` (one mesh in the folder
    itself, or one sub-folder per mesh) names a segmented mesh; its PLY and
    labels are read with :func:`load_exported_mesh`. The metrics table has one
    row per mesh: vertices, faces, parts found, mean confidence (when
    ``<stem>.confidence.npy`` exists) and, with ground truth, the share of faces
    labelled right (by count, not area). The legend pictures are shown.

    Parameters
    ----------
    run_dir : path
        The ``--out`` folder of ``mvdecor segment``.
    title : str, optional
        Default ``"Segmentation of <folder name>"``.
    preset : str, optional
        Settings preset of the model, shown under the title.
    ground_truth_dir : path, optional
        A folder of ``<stem>.labels.npy`` / ``.labels.txt`` / ``.seg`` files with
        the true face labels (same label ids); meshes with such a file get a
        "ground truth" colouring.
    description : str
        A paragraph under the title.

    Raises
    ------
    FileError
        ``run_dir`` holds no segmented mesh, or one of its files is unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileError(run_dir, "no such folder")
    legends = sorted(run_dir.rglob("*.legend.json"))
    if not legends:
        raise FileError(run_dir, "no segmented mesh (<name>.legend.json) found; run `mvdecor segment` first")
    stems = [legend.name[: -len(".legend.json")] for legend in legends]
    meshes, pictures, rows = [], [], []
    for legend, stem in zip(legends, stems, strict=True):
        truth = None
        if ground_truth_dir is not None:
            candidates = [
                Path(ground_truth_dir) / f"{stem}{s}" for s in (".labels.npy", ".labels.txt", ".seg")
            ]
            truth = next((c for c in candidates if c.is_file()), None)
        # A mesh is named by its stem, or by its path when stems repeat (several methods' folders).
        name = (
            stem if stems.count(stem) == 1 else legend.relative_to(run_dir).as_posix()[: -len(".legend.json")]
        )
        mesh = load_exported_mesh(legend.parent, stem, truth, name)
        meshes.append(mesh)
        predicted = mesh.labelings["predicted"]
        row: dict[str, object] = {
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
            "parts found": len(np.unique(predicted[predicted >= 0])),
        }
        confidence_path = legend.parent / f"{stem}.confidence.npy"
        if confidence_path.is_file():
            row["mean confidence"] = float(np.load(confidence_path, allow_pickle=False).mean())
        if ground_truth_dir is not None:
            truth_labels = mesh.labelings.get("ground truth")
            row["faces right (share)"] = (
                None
                if truth_labels is None or not (truth_labels >= 0).any()
                else float((predicted == truth_labels)[truth_labels >= 0].mean())
            )
        rows.append((name, row))
        legend_png = legend.parent / f"{stem}.legend.png"
        if legend_png.is_file():
            # Relative to the run folder, as Picture takes it (run_dir itself may be relative).
            pictures.append(Picture(legend_png.relative_to(run_dir), f"{name}: parts and face counts"))
    table = MetricsTable.from_records(dict(rows), index="mesh", title="Meshes")
    return write_report(
        run_dir,
        title or f"Segmentation of {run_dir.resolve().name}",
        table,
        pictures,
        meshes,
        preset=preset,
        description=description,
    )


#: Columns of a training run's summary: (CSV column, how to summarise it, heading).
_TRAINING_SUMMARY = (
    ("loss", "last", "final training loss"),
    ("loss_ce", "last", "final cross-entropy"),
    ("loss_ssl", "last", "final InfoNCE regulariser"),
    ("pixel_accuracy", "last", "final training pixel accuracy"),
    ("val_loss", "min", "best validation loss"),
    ("val_miou", "max", "best held-out pixel mIoU"),
    ("lr", "last", "final learning rate"),
    ("it_per_s", "mean", "steps per second (mean)"),
)


def write_training_report(run_dir: str | Path, *, title: str | None = None) -> Path:
    """``report.html`` of a ``pretrain`` or ``finetune`` run folder.

    The page shows what the run was (command, method, dataset, preset, steps
    done), a summary of its logs (final losses, best validation loss, final
    learning rate, mean speed), its training curves (written to
    ``run_dir/pictures/curves.png`` by
    :func:`~mvdecor.viz.curves.plot_training_curves`) and its configuration.
    ``pretrain`` and ``finetune`` call it when they finish; ``mvdecor report``
    calls it for a run folder at any time, e.g. on a run still going. A
    ``finetune.method: nearest`` run trains nothing: its page shows the bank of
    labelled pixels and the position weight it chose instead of curves.

    Raises
    ------
    FileError
        ``run_dir`` has none of ``run.json``, ``config.yaml`` and
        ``metrics.csv``, or one of them is unreadable. A run that has not
        logged a row yet (fewer steps than ``log_every``) gets a page without
        curves.
    """
    import yaml

    from mvdecor.viz.curves import CURVE_FILES, plot_training_curves, read_metric_csv

    run_dir = Path(run_dir)
    if not any((run_dir / name).is_file() for name in ("run.json", "config.yaml", CURVE_FILES[0])):
        raise FileError(
            run_dir,
            "no run.json, config.yaml or metrics.csv: not a `mvdecor pretrain` or `finetune` run folder",
        )
    info: dict = {}
    config: dict = {}
    try:
        if (run_dir / "run.json").is_file():
            info = json.loads((run_dir / "run.json").read_text())
        if (run_dir / "config.yaml").is_file():
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise FileError(
            run_dir, f"unreadable run.json or config.yaml ({type(exc).__name__}: {exc})"
        ) from None
    command = str(info.get("command", "training"))
    curves = {}
    for name in CURVE_FILES:
        if (run_dir / name).is_file():
            for curve in read_metric_csv(run_dir / name):
                curves.setdefault(curve.name, curve)
    section = config.get(command, {}) if command in ("pretrain", "finetune") else {}
    run_row: dict[str, object] = {"command": command}
    if command == "pretrain":
        run_row["method"] = section.get("method", "mvdecor")
    run_row["dataset"] = info.get("dataset")
    run_row["preset"] = config.get("preset")
    nearest = command == "finetune" and info.get("method") == "nearest"
    units = "faces" if section.get("nearest_pooling") == "faces" else "pixels"
    if nearest:
        run_row["method"] = f"nearest labelled {units} (no training)"
    else:
        last_step = max((int(c.steps[-1]) for c in curves.values()), default=0)
        run_row["steps logged"] = f"{last_step} of {section.get('iterations', '?')}"
    for key in ("labelled_shapes", "train_shapes"):
        if isinstance(info.get(key), list):
            run_row[key.replace("_", " ")] = len(info[key])
    summary: dict[str, object] = {}
    for column, how, heading in _TRAINING_SUMMARY:
        curve = curves.get(column)
        if curve is None:
            continue
        values = curve.values
        summary[heading] = float(
            values[-1]
            if how == "last"
            else values.min()
            if how == "min"
            else values.max()
            if how == "max"
            else values.mean()
        )
    tables = [MetricsTable(list(run_row), [list(run_row.values())], title="Run")]
    if nearest:
        weight = info.get("position_weight")
        if isinstance(weight, list):  # finetune.nearest_position_combine: average
            weight = "average over " + ", ".join(f"{w:g}" for w in weight)
        bank = {"labelled pixels in the bank": info.get("bank_pixels"), "position weight": weight}
        # With two labelled shapes or more, each candidate weight's leave-one-shape-out pixel mIoU.
        bank.update(
            {f"pixel mIoU at weight {w}": v for w, v in (info.get("position_weight_scores") or {}).items()}
        )
        tables.append(
            MetricsTable(
                list(bank), [list(bank.values())], title="Nearest labelled pixels", float_format="{:.4g}"
            )
        )
    if summary:
        tables.append(
            MetricsTable(list(summary), [list(summary.values())], title="Logs", float_format="{:.4g}")
        )
    for name in ("render", "model", command):
        values = config.get(name)
        if isinstance(values, dict):
            flat = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in values.items()}
            tables.append(
                MetricsTable(
                    ["setting", "value"],
                    list(flat.items()),
                    title=f"Configuration: {name}",
                    float_format="{:g}",
                )
            )
    pictures = []
    if curves:
        # Named relative to the run folder, as Picture takes it (run_dir itself may be relative).
        picture = Path("pictures", "curves.png")
        plot_training_curves(run_dir, run_dir / picture)
        sources = "metrics.csv, val.csv" if {"val_loss", "val_miou"} & set(curves) else "metrics.csv"
        pictures.append(Picture(picture, f"Training curves ({sources})"))
    return write_report(
        run_dir,
        title or f"{command.capitalize()} run {run_dir.resolve().name}",
        tables,
        pictures,
        preset=config.get("preset"),
        description=(
            f"No training: each {units[:-1]} takes the labels of its nearest labelled {units} in the "
            "embedding (finetune.method nearest)."
            if nearest
            else ""
            if curves
            else "No training metrics logged yet."
        ),
    )
