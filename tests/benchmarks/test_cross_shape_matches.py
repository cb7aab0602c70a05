"""benchmarks/cross_shape_matches.py: cross-shape matches of synthetic chairs join the same parts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from benchmark_scripts import load_benchmark

from mvdecor.config import load_config
from mvdecor.correspond import ViewSource


def test_matched_pixels_of_two_chairs_agree_on_their_parts_above_chance():
    script = load_benchmark("cross_shape_matches")
    config = load_config("cpu")
    config = replace(config, render=replace(config.render, rings=2, segments=5, resolution=64))
    source = ViewSource.from_config("synthetic:categories=chair,n=3,textured=0", config)
    rows = script.measure_category(source, source.shape_ids(), [0.02, 0.1], 6, 0.15, np.random.default_rng(0))
    assert [row["radius"] for row in rows] == [0.02, 0.1]
    for row in rows:
        assert row["matches_per_pair"] > 0
        assert 0 <= row["chance"] <= 100 and 0 <= row["agree"] <= 100
        assert row["agree"] > row["chance"] + 10
    # A wider tolerance matches more pixels.
    assert rows[1]["matches_per_pair"] > rows[0]["matches_per_pair"]
