"""``benchmarks/segment.py`` times the head each preset segments with."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_benchmark

from mvdecor.data.synthetic import make_shape


@pytest.fixture(scope="module")
def script():
    return load_benchmark("segment")


def test_the_cpu_preset_is_timed_with_its_nearest_faces_head(script):
    segmenter = script.make_segmenter("cpu", 8, "cpu")
    head, finetune = segmenter.model.head, segmenter.config.finetune
    assert segmenter.pools_faces and finetune.method == "nearest"
    assert len(head.bank_labels) == finetune.nearest_references
    assert head.position_weights == tuple(sorted(finetune.nearest_position_candidates))
    result = segmenter.segment(make_shape("table", 0, detail=1))
    assert (result.face_labels >= 0).all() and result.timings["predict_s"] > 0


def test_the_paper_preset_keeps_a_trained_head(script):
    assert not script.make_segmenter("paper", 8, "cpu").pools_faces
