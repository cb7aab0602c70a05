"""``benchmarks/segment.py`` times what each preset segments with."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_benchmark

from mvdecor.data.synthetic import make_shape


@pytest.fixture(scope="module")
def script():
    return load_benchmark("segment")


def test_the_cpu_preset_is_timed_with_its_network_and_its_nearest_faces_lookup(script):
    segmenter, prior = script.make_segmenter("cpu", 8, "cpu")
    assert not segmenter.pools_faces and segmenter.config.segment.prior_method == "nearest"
    lookup, finetune = prior.segmenter, prior.segmenter.config.finetune
    assert lookup.pools_faces and finetune.method == "nearest"
    assert len(lookup.model.head.bank_labels) == finetune.nearest_references
    assert lookup.model.head.position_weights == tuple(sorted(finetune.nearest_position_candidates))
    result = segmenter.segment(make_shape("table", 0, detail=1), transfer=prior)
    assert (result.face_labels >= 0).all() and result.timings["predict_s"] > 0
    assert result.timings["refine_s"] > 0  # the lookup's segmentation is timed with the mixing


def test_the_paper_preset_keeps_a_trained_head_alone(script):
    segmenter, prior = script.make_segmenter("paper", 8, "cpu")
    assert not segmenter.pools_faces and prior is None
