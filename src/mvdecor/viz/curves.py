"""Training curves as PNG plots, from the CSV logs of :class:`~mvdecor.train.logs.MetricLogger`.

A run folder holds ``metrics.csv`` (training: ``loss`` or ``loss_ce`` /
``loss_ssl``, ``lr``, throughput, ``pixel_accuracy``...) and, for
pre-training, ``val.csv`` (``val_loss``, ``lr``). :func:`plot_training_curves`
draws one panel per kind of curve, against the step:

- **loss**: every column whose name contains ``loss`` (training and validation);
- **learning rate**: ``lr`` columns, on a log scale;
- **accuracy / mIoU**: every column whose name contains ``acc``, ``miou`` or
  ``iou`` (correspondence accuracy, pixel accuracy...).

Other columns (throughput, data-wait share) are not drawn. Plots use
matplotlib's Agg backend through its object API, so no display is needed and
no global pyplot state is touched.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvdecor.errors import FileError
from mvdecor.fileio import atomic_path

__all__ = ["CURVE_FILES", "Curve", "curve_panels", "plot_training_curves", "read_metric_csv"]

#: The CSV files read from a run folder, in order; the first one must exist.
CURVE_FILES = ("metrics.csv", "val.csv")

#: Panels: title, y-axis scale, and whether a column belongs to it.
_PANELS = (
    ("loss", "linear", lambda name: "loss" in name),
    ("learning rate", "log", lambda name: name == "lr" or name.endswith("_lr") or name.startswith("lr_")),
    ("accuracy / mIoU", "linear", lambda name: any(key in name for key in ("acc", "miou", "iou"))),
)


@dataclass(frozen=True, eq=False)
class Curve:
    """One column of a metrics CSV.

    Attributes
    ----------
    name : str
        The column name (``"loss"``, ``"val_loss"``, ``"lr"``...).
    steps : (N,) int64
        The ``step`` of each row that has a finite value in the column, ascending
        as logged.
    values : (N,) float64
        The values.
    source : Path
        The CSV file it was read from.
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    source: Path


def read_metric_csv(path: str | Path) -> list[Curve]:
    """The numeric columns of a MetricLogger CSV, one :class:`Curve` each (empty cells and NaN skipped).

    Raises
    ------
    FileError
        The file is missing or unreadable, or has no ``step`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(path, "no such metrics file")
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FileError(path, f"unreadable metrics file ({exc})") from None
    if "step" not in columns:
        raise FileError(path, "has no 'step' column (not a metrics CSV written by mvdecor training)")
    curves = []
    for name in columns:
        if name == "step":
            continue
        steps, values = [], []
        for row in rows:
            try:
                step, value = float(row.get("step") or "nan"), float(row.get(name) or "nan")
            except ValueError:
                continue
            if math.isfinite(step) and math.isfinite(value):
                steps.append(int(step))
                values.append(value)
        if steps:
            curves.append(Curve(name, np.asarray(steps, np.int64), np.asarray(values, np.float64), path))
    return curves


def _sources(run_or_csv: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(run_or_csv, (str, Path)):
        path = Path(run_or_csv)
        if path.is_dir():
            first = path / CURVE_FILES[0]
            if not first.is_file():
                raise FileError(first, f"no such metrics file (is {path} a training run folder?)")
            return [first] + [path / name for name in CURVE_FILES[1:] if (path / name).is_file()]
        return [path]
    return [Path(p) for p in run_or_csv]


def curve_panels(run_or_csv: str | Path | Sequence[str | Path]) -> list[tuple[str, str, list[Curve]]]:
    """The curves to draw, grouped into panels.

    Parameters
    ----------
    run_or_csv : path or sequence of paths
        A run folder (its ``metrics.csv`` and, if present, ``val.csv``), one
        CSV file, or several CSV files.

    Returns
    -------
    list of (title, y scale, curves)
        Only panels with at least one curve, in the order loss, learning rate,
        accuracy. A column present in several files is taken from the first
        (e.g. ``lr`` from ``metrics.csv``, not again from ``val.csv``).

    Raises
    ------
    FileError
        A file is missing or unreadable, or no file has a usable column (a
        loss, learning rate or accuracy with at least one value).
    """
    sources = _sources(run_or_csv)
    if not sources:
        raise FileError(None, "no metrics file given")
    curves: dict[str, Curve] = {}
    for path in sources:
        for curve in read_metric_csv(path):
            curves.setdefault(curve.name, curve)
    panels = []
    for title, scale, belongs in _PANELS:
        members = [c for c in curves.values() if belongs(c.name.lower())]
        if scale == "log":
            members = [c for c in members if (c.values > 0).any()]
        if members:
            panels.append((title, scale, members))
    if not panels:
        names = ", ".join(str(p) for p in sources)
        found = ", ".join(curves) or "none with values"
        raise FileError(
            names if len(sources) == 1 else None,
            f"no loss, learning-rate or accuracy column with values to plot (columns: {found})"
            + ("" if len(sources) == 1 else f" in {names}"),
        )
    return panels


def plot_training_curves(
    run_or_csv: str | Path | Sequence[str | Path],
    out: str | Path,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Plot a run's training curves to a PNG: loss, learning rate (log), accuracy; x = step.

    Parameters
    ----------
    run_or_csv : path or sequence of paths
        A run folder, one metrics CSV, or several (see :func:`curve_panels`).
    out : str or Path
        The PNG to write (folders are created; written atomically).
    title : str, optional
        Figure title (default: the run folder's or the file's name).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    FileError
        Missing CSV, or no usable column (the message names the file).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = curve_panels(run_or_csv)
    if title is None:
        first = _sources(run_or_csv)[0]
        title = first.parent.name if first.name in CURVE_FILES else first.name
    figure = Figure(figsize=(4.2 * len(panels), 3.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    several_files = len({c.source for _, _, cs in panels for c in cs}) > 1
    for ax, (panel_title, scale, curves) in zip(axes, panels, strict=True):
        for curve in curves:
            steps, values = curve.steps, curve.values
            if scale == "log":
                keep = values > 0
                steps, values = steps[keep], values[keep]
            label = curve.name
            if several_files and curve.source.name != CURVE_FILES[0]:
                label += f" ({curve.source.name})"
            # Sparse logs (validation every few hundred steps) read better with markers.
            marker = "o" if len(steps) <= 30 else None
            ax.plot(steps, values, label=label, marker=marker, markersize=3, linewidth=1.3)
        ax.set_yscale(scale)
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    out = Path(out)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png")
    return out
