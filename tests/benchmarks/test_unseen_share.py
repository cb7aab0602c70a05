"""benchmarks/unseen_share.py: the share of a surface no test view sees, on a cube inside a closed cube."""

from __future__ import annotations

from dataclasses import replace

import pytest
from benchmark_scripts import load_benchmark

from closed_boxes import box_in_box, closed_box
from mvdecor.config import load_config
from mvdecor.data.mesh import LabelledMesh


def test_the_inner_cube_is_the_unseen_and_far_share():
    script = load_benchmark("unseen_share")
    mesh = box_in_box(0.5, (0.05, 0.0, 0.0), 0.1, name="nested")
    config = load_config("cpu")
    config = replace(config, render=replace(config.render, resolution=64))
    inner_share = (0.1 / 0.5) ** 2 / (1 + (0.1 / 0.5) ** 2)  # six faces each, areas as the squares
    unseen, far, count = script.surface_shares(mesh, config, 0.01)
    assert unseen == pytest.approx(inner_share) and far == pytest.approx(inner_share) and count == 12
    # Farther than the gap between the cubes, nothing is far; with nothing inside, nothing is unseen.
    assert script.surface_shares(mesh, config, 2.0)[1:] == (0.0, 0)
    alone = LabelledMesh(*closed_box((0.0, 0.0, 0.0), 0.5), name="alone")
    assert script.surface_shares(alone, config, 0.01) == (0.0, 0.0, 0)
