"""benchmarks/pretraining_curve.py: the table and the picture from results files."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_scripts import load_benchmark


def _load():
    return load_benchmark("pretraining_curve")


def _results(path: Path, iterations: int, acc2: float, miou: float) -> Path:
    accuracy = {"pretrained": {"acc@2px": acc2, "acc@5px": 2 * acc2},
                "random_network": {"acc@2px": 0.01, "acc@5px": 0.05}}  # fmt: skip
    record = {
        "pretrain": {"runs": {"all": {"iterations": iterations, "wall_s": 60.0}}},
        "correspondence": accuracy,
        "settings": [
            {"k": 1, "v": None, "mean": {"mvdecor": 1.0}},
            {"k": 2, "v": 3, "mean": {"mvdecor": 2.0}},
            {"k": 2, "v": None, "mean": {"mvdecor": miou, "scratch": 20.0, "transfer": 25.0}},
        ],
    }
    path.write_text(json.dumps(record))
    return path


def test_points_table_and_picture(tmp_path, capsys):
    curve = _load()
    short = _results(tmp_path / "a.json", 100, 0.1, 26.0)
    long = _results(tmp_path / "b.json", 400, 0.2, 31.5)
    point = curve.read_point(long, 2, "mvdecor")
    assert point["iterations"] == 400 and point["miou"] == 31.5
    assert abs(point["acc2"] - 20.0) < 1e-9 and abs(point["acc5"] - 40.0) < 1e-9
    suffixed = _results(tmp_path / "c.json", 400, 0.2, 0.0)
    record = json.loads(suffixed.read_text())
    record["settings"][2]["mean"] = {"mvdecor-cosine": 33.0, "mvdecor-cosine+prior": 1.0}
    suffixed.write_text(json.dumps(record))
    assert curve.read_point(suffixed, 2, "mvdecor")["miou"] == 33.0  # a --suffix run's column
    out = tmp_path / "curve.png"
    assert curve.main(["--run", f"x={long}", "--run", f"x={short}", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| x |")]
    assert [row.split("|")[2].strip() for row in rows] == ["100", "400"]  # sorted by length
    assert "| scratch (no pre-training) | 0 | 1.0 / 5.0 | 20.0 |" in table
    assert "| transfer (learns nothing) | | | 25.0 |" in table
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
