"""The paper's comparison in one table, gathered from several few-shot results files.

``benchmarks/fewshot.py`` writes one results file per command, and the methods of the
paper's tables were measured by several commands (the 3D rows with another config than the
2D ones, some settings in later sessions). This script puts them side by side: one row per
method, one column per setting, each cell the mean part mIoU over the categories with the
wall time of its runs, and each row's pre-training time.

A row is ``LABEL=FILE:METHOD[+FILE:METHOD...]``: the method's column in each results file
(a refinement's column, ``mvdecor+ens``, keeps its ``+``)
(``benchmarks/fewshot.py`` JSON), the files' settings merged. Two files giving the same
setting of a row must agree to the hundredth.

The rows must come from the same split and label draws, or the table compares nothing.
Every results file holds the ``transfer`` column (``fewshot.py`` always runs it), and
transfer is learning-free and deterministic: the same split and draws give the same
per-category figures to the hundredth. The script checks this across every file it reads,
for every setting two files share, and refuses a file that disagrees.

Example (BENCHMARKS.md has the recorded tables)::

    python benchmarks/paper_table.py --name partnet_mobility \\
        "transfer=benchmarks/results/partnet_mobility-cpu-effnet-inet.json:transfer" \\
        "(2D) MvDeCor=benchmarks/results/partnet_mobility-cpu-effnet-inet.json:mvdecor-effnet-inet" \\
        "(3D) PointContrast=R/pm-pc-k1.json:pointcontrast-effnet-inet+R/pm-pc-k2.json:pointcontrast"

writes ``benchmarks/results/<name>-paper-table.md`` and ``.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mvdecor.fileio import atomic_path

#: The learning-free method every results file holds, checked across files.
FLOOR = "transfer"
#: Results files round mIoU to the hundredth: figures closer than this are the same figure.
SAME = 0.011
#: Where a results file records a pre-training method's finished runs.
PRETRAIN_KEYS = {"mvdecor": "runs", "densecl": "densecl_runs", "pointcontrast": "pointcontrast_runs"}


class TableError(ValueError):
    """A row or results file that cannot go into the table (the message names it)."""


@dataclass
class Row:
    """One method's cells: ``cells[(k, v)] = (mean part mIoU %, wall seconds of its runs)``.

    ``pretrain_s`` holds the wall seconds of each distinct pre-training its files used (two
    files of one row may come from two pre-training runs of the same settings).
    """

    label: str
    sources: list[tuple[Path, str]]
    cells: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    pretrain_s: list[float] = field(default_factory=list)


def setting_key(setting: dict) -> tuple[int, int]:
    """``(k, v)`` of a results file's setting, v = 0 for all views."""
    return int(setting["k"]), int(setting["v"] or 0)


def setting_label(key: tuple[int, int]) -> str:
    k, v = key
    return f"k = {k}" + (f", {v} views" if v else "")


def parse_row(text: str) -> Row:
    """``LABEL=FILE:METHOD[+FILE:METHOD...]`` -> a :class:`Row` with no cells yet."""
    label, sep, rest = text.partition("=")
    if not sep or not label.strip() or not rest:
        raise TableError(f"row {text!r}: expected LABEL=FILE:METHOD[+FILE:METHOD...]")
    sources = []
    # A method's name may hold "+" itself (a refinement's column, "mvdecor+ens"): a piece with no
    # ":" continues the previous source's method.
    items: list[str] = []
    for piece in rest.split("+"):
        if items and ":" not in piece:
            items[-1] += "+" + piece
        else:
            items.append(piece)
    for item in items:
        path, sep, method = item.rpartition(":")
        if not sep or not path or not method:
            raise TableError(f"row {label!r}: {item!r} is not FILE:METHOD")
        sources.append((Path(path), method))
    return Row(label.strip(), sources)


def read_results(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise TableError(f"{path}: no such results file") from None
    except json.JSONDecodeError as error:
        raise TableError(f"{path}: not a JSON results file ({error})") from None
    if not isinstance(record, dict) or "settings" not in record:
        raise TableError(f"{path}: not a benchmarks/fewshot.py results file (no 'settings')")
    return record


def check_same_draws(records: dict[Path, dict]) -> None:
    """Raise :class:`TableError` unless every file's transfer figures agree where settings overlap."""
    seen: dict[tuple[tuple[int, int], str], tuple[float, Path]] = {}
    for path, record in records.items():
        for setting in record["settings"]:
            for category, methods in setting["per_category"].items():
                if FLOOR not in methods:
                    continue
                key = (setting_key(setting), category)
                value = methods[FLOOR]["mean"]
                if key in seen and abs(seen[key][0] - value) > SAME:
                    raise TableError(
                        f"{path}: {FLOOR} scores {value} on {category} at {setting_label(key[0])}, "
                        f"{seen[key][1]} scores {seen[key][0]}: not the same split and draws"
                    )
                seen.setdefault(key, (value, path))


def fill_row(row: Row, records: dict[Path, dict]) -> None:
    """The row's cells and pre-training time from its sources (read into ``records``)."""
    for path, method in row.sources:
        record = records[path]
        found = False
        for setting in record["settings"]:
            if method not in setting["mean"]:
                continue  # not every category: no mean
            found = True
            wall = sum(c[method]["wall_s"] for c in setting["per_category"].values())
            cell = (setting["mean"][method], wall)
            key = setting_key(setting)
            if key in row.cells and abs(row.cells[key][0] - cell[0]) > SAME:
                raise TableError(
                    f"row {row.label!r}: {setting_label(key)} is {row.cells[key][0]} in one file "
                    f"and {cell[0]} in {path}"
                )
            row.cells.setdefault(key, cell)
        if not found:
            raise TableError(f"{path}: no column {method!r} with every category (has {record['methods']})")
        base = method.split("-")[0]
        runs = record.get("pretrain", {}).get(PRETRAIN_KEYS.get(base, ""), {})
        if runs and (seconds := sum(run["wall_s"] for run in runs.values())) not in row.pretrain_s:
            row.pretrain_s.append(seconds)


def build_table(rows: list[Row]) -> tuple[list[tuple[int, int]], dict[Path, dict]]:
    """Read every row's files, check them against each other and fill the rows."""
    records = {path: read_results(path) for row in rows for path, _ in row.sources}
    check_same_draws(records)
    for row in rows:
        fill_row(row, records)
    settings = sorted({key for row in rows for key in row.cells}, key=lambda kv: (kv[1] > 0, kv))
    return settings, records


def format_markdown(rows: list[Row], settings: list[tuple[int, int]]) -> str:
    # The row of transfer's own columns, whatever its label: the others are shown against it.
    floor = next((row for row in rows if all(method == FLOOR for _, method in row.sources)), None)
    lines = [
        "Part mIoU %, mean over the categories (wall time of the runs, minutes); "
        "pre-training: minutes, once for every setting.",
        "",
        "| method | " + " | ".join(setting_label(s) for s in settings) + " | pre-training |",
        "| --- | " + " | ".join("---:" for _ in settings) + " | ---: |",
    ]
    for row in rows:
        cells = []
        for key in settings:
            if key not in row.cells:
                cells.append("")
                continue
            mean, wall = row.cells[key]
            text = f"{mean:.1f} ({wall / 60:.0f})"
            if floor is not None and row is not floor and key in floor.cells:
                text += f" {mean - floor.cells[key][0]:+.1f}"
            cells.append(text)
        pretrain = " / ".join(f"{seconds / 60:.0f}" for seconds in row.pretrain_s)
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {pretrain} |")
    if floor is not None:
        lines += ["", f"The signed figure after a cell is its difference from {FLOOR}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", metavar="LABEL=FILE:METHOD[+FILE:METHOD...]")
    parser.add_argument("--name", required=True, help="writes RESULTS/<name>-paper-table.{md,json}")
    parser.add_argument("--results", default="benchmarks/results", help="folder for the table's files")
    args = parser.parse_args(argv)
    try:
        rows = [parse_row(text) for text in args.rows]
        settings, records = build_table(rows)
    except TableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = format_markdown(rows, settings)
    out = Path(args.results) / f"{args.name}-paper-table"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(table)
    record = {
        "sources": sorted(str(path) for path in records),
        "rows": [
            {
                "label": row.label,
                "sources": [f"{path}:{method}" for path, method in row.sources],
                "pretrain_s": row.pretrain_s,
                "settings": [
                    {
                        "k": k,
                        "v": v or None,
                        "mean": row.cells[(k, v)][0],
                        "wall_s": round(row.cells[(k, v)][1], 1),
                    }
                    for k, v in settings
                    if (k, v) in row.cells
                ],
            }
            for row in rows
        ],
    }
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(table)
    print(f"table in {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
