"""Training logs a user can open with standard tools: CSV and TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mvdecor.fileio import atomic_path


class MetricLogger:
    """Append rows of scalars to ``<run>/<name>.csv`` and, if installed, TensorBoard.

    The CSV gains columns as new metrics appear (the file is rewritten with
    the wider header); rows logged before a column existed leave it empty.
    Resuming appends after the rows of earlier steps and drops rows from
    steps after the resume point, so the log matches the checkpoint.
    """

    def __init__(
        self,
        run_dir: str | Path,
        name: str = "metrics",
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / f"{name}.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = ["step"]
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                self._columns = list(reader.fieldnames or ["step"])
                for row in reader:
                    if resume_step is None or int(float(row["step"])) <= resume_step:
                        self._rows.append(row)
            self._rewrite()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: CSV is always written
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(
                    str(Path(run_dir) / "tensorboard"),
                    purge_step=None if resume_step is None else resume_step + 1,
                )

    def _rewrite(self) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(self._rows)

    def log(self, step: int, **scalars: float) -> None:
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        self._rows.append(row)
        new = [k for k in row if k not in self._columns]
        if new:
            self._columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self._columns).writerow(row)
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, float(value), step)

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
