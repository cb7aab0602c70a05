"""benchmarks/paper_table.py: rows gathered from made-up results files, and the draws check."""

from __future__ import annotations

import json

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("paper_table")


def _cell(mean: float, wall_s: float) -> dict:
    return {"mean": mean, "std": 0.0, "wall_s": wall_s}


def _results(path, settings: dict, pretrain: dict | None = None):
    """A fewshot.py results file: ``settings[(k, v)] = {category: {method: (mean, wall_s)}}``."""
    record = {
        "methods": sorted({m for cats in settings.values() for ms in cats.values() for m in ms}),
        "settings": [],
    }
    for (k, v), categories in settings.items():
        per_category = {c: {m: _cell(*value) for m, value in ms.items()} for c, ms in categories.items()}
        methods = set.intersection(*(set(ms) for ms in categories.values()))
        mean = {m: round(sum(categories[c][m][0] for c in categories) / len(categories), 2) for m in methods}
        record["settings"].append(
            {"k": k, "v": v or None, "runs": 3, "per_category": per_category, "mean": mean}
        )
    record["pretrain"] = pretrain or {"scope": "dataset", "runs": {}}
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def files(tmp_path):
    two_d = _results(
        tmp_path / "2d.json",
        {
            (1, 0): {"A": {"transfer": (30.0, 1), "mvdecor": (40.0, 60)}, "B": {"transfer": (20.0, 1), "mvdecor": (30.0, 120)}},
            (2, 3): {"A": {"transfer": (10.0, 1), "mvdecor": (12.0, 30)}, "B": {"transfer": (14.0, 1), "mvdecor": (20.0, 30)}},
        },
        {"scope": "dataset", "runs": {"all": {"wall_s": 600.0, "iterations": 10}}},
    )  # fmt: skip
    three_d = _results(
        tmp_path / "3d.json",
        {
            (1, 0): {"A": {"transfer": (30.0, 1), "pointcontrast": (31.0, 90)}, "B": {"transfer": (20.0, 1), "pointcontrast": (25.0, 30)}},
            (5, 0): {"A": {"transfer": (33.0, 1), "pointcontrast": (36.0, 60)}, "B": {"transfer": (21.0, 1)}},
        },
        {"scope": "dataset", "runs": {}, "pointcontrast_runs": {"all": {"wall_s": 120.0, "iterations": 5}}},
    )  # fmt: skip
    return two_d, three_d


def test_rows_gather_their_files_and_cells_say_their_time(script, files, tmp_path):
    two_d, three_d = files
    rows = [
        script.parse_row(f"no learning={two_d}:transfer+{three_d}:transfer"),
        script.parse_row(f"(2D) MvDeCor={two_d}:mvdecor"),
        script.parse_row(f"(3D) PointContrast={three_d}:pointcontrast"),
    ]
    settings, _ = script.build_table(rows)
    # All views first, by k; then the labelled-view settings.
    assert settings == [(1, 0), (5, 0), (2, 3)]
    transfer, mvdecor, pointcontrast = rows
    assert transfer.cells == {(1, 0): (25.0, 2), (2, 3): (12.0, 2), (5, 0): (27.0, 2)}
    assert mvdecor.cells == {(1, 0): (35.0, 180), (2, 3): (16.0, 60)} and mvdecor.pretrain_s == [600]
    # k = 5 lacks category B for PointContrast: no mean, no cell.
    assert pointcontrast.cells == {(1, 0): (28.0, 120)} and pointcontrast.pretrain_s == [120]
    table = script.format_markdown(rows, settings)
    assert "| (2D) MvDeCor | 35.0 (3) +10.0 |  | 16.0 (1) +4.0 | 10 |" in table
    assert "| (3D) PointContrast | 28.0 (2) +3.0 |  |  | 2 |" in table

    assert script.main([f"transfer={two_d}:transfer", "--name", "t", "--results", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "t-paper-table.json").read_text())
    assert written["rows"][0]["settings"][0] == {"k": 1, "v": None, "mean": 25.0, "wall_s": 2}


def test_files_of_other_draws_are_refused_by_name(script, files, tmp_path):
    two_d, _ = files
    other = _results(tmp_path / "other.json", {(1, 0): {"A": {"transfer": (29.0, 1), "scratch": (5.0, 1)}}})
    rows = [script.parse_row(f"MvDeCor={two_d}:mvdecor"), script.parse_row(f"scratch={other}:scratch")]
    with pytest.raises(
        script.TableError, match=r"other\.json: transfer scores 29\.0 on A at k = 1.*same split"
    ):
        script.build_table(rows)


def test_bad_rows_and_files_are_named(script, files, tmp_path, capsys):
    two_d, three_d = files
    with pytest.raises(script.TableError, match="expected LABEL=FILE:METHOD"):
        script.parse_row("no label here")
    with pytest.raises(
        script.TableError, match=r"2d\.json: no column 'deform'.*has \['mvdecor', 'transfer'\]"
    ):
        script.build_table([script.parse_row(f"deform={two_d}:deform")])
    # One row, two files disagreeing on a setting both give.
    with pytest.raises(script.TableError, match=r"row 'mixed': k = 1 is 35\.0 in one file and 28\.0 in"):
        script.build_table([script.parse_row(f"mixed={two_d}:mvdecor+{three_d}:pointcontrast")])
    assert (
        script.main([f"x={tmp_path / 'absent.json'}:mvdecor", "--name", "t", "--results", str(tmp_path)]) == 2
    )
    assert "absent.json: no such results file" in capsys.readouterr().err
    assert not (tmp_path / "t-paper-table.md").exists()


def test_a_refinement_column_keeps_its_plus_sign(script, files):
    two_d, three_d = files
    row = script.parse_row(f"pair={two_d}:mvdecor+ens+{three_d}:pointcontrast+smooth")
    assert [(str(path), method) for path, method in row.sources] == [
        (str(two_d), "mvdecor+ens"),
        (str(three_d), "pointcontrast+smooth"),
    ]
    with pytest.raises(script.TableError, match="is not FILE:METHOD"):
        script.parse_row("x=+ens")
