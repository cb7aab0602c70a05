"""The ``points`` configuration section: presets, checks that name the key, round trips."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest
import yaml

from mvdecor.config import Config, PointsConfig, config_from_dict, load_config
from mvdecor.errors import ConfigError


def _preset_section(name: str) -> dict:
    text = resources.files("mvdecor.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)["points"]


@pytest.mark.parametrize("preset", ["paper", "cpu"])
def test_both_presets_list_every_setting(preset):
    keys = [f.name for f in dataclasses.fields(PointsConfig)]
    assert list(_preset_section(preset)) == keys


def test_paper_preset_is_the_defaults_and_cpu_is_smaller():
    paper, cpu = load_config("paper").points, load_config("cpu").points
    assert paper == PointsConfig() == Config().points
    assert cpu.num_points < paper.num_points and cpu.global_dim < paper.global_dim
    assert cpu.pretrain_iterations < paper.pretrain_iterations


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_points": 0}, "points.num_points must be >= 1, got 0"),
        ({"neighbours": 0}, "points.neighbours must be >= 1, got 0"),
        ({"neighbours": 5000}, "points.neighbours must be <= points.num_points and points.pretrain_points"),
        ({"widths": []}, "points.widths must be a non-empty list of widths >= 1"),
        ({"widths": [64, 0]}, "points.widths must be a non-empty list of widths >= 1"),
        ({"widths": 64}, "points.widths must be a list"),
        ({"pretrain_lr": 0}, "points.pretrain_lr must be > 0"),
        ({"pretrain_temperature": -0.1}, "points.pretrain_temperature must be > 0"),
        (
            {"pretrain_matches_per_pair": 4096},
            "points.pretrain_matches_per_pair must be <= points.pretrain_points",
        ),
        ({"pretrain_rotation_degrees": 400}, "points.pretrain_rotation_degrees must be in [0, 360]"),
        ({"finetune_iterations": 0}, "points.finetune_iterations must be >= 1, got 0"),
        ({"scale_range": [1.2, 0.8]}, "points.scale_range must be [low, high]"),
        ({"use_normals": "yes"}, "points.use_normals must be true or false"),
        ({"precision": "fp64"}, "points.precision must be one of fp32, bf16, fp16, auto"),
        ({"device": "gpu"}, "points.device must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_values_raise_a_config_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config("cpu", {"points": overrides}, overrides_source="command line")
    assert str(info.value).startswith(f"command line: {message}"), str(info.value)


def test_direct_construction_is_checked_and_the_section_survives_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"points\.embed_dim must be >= 1"):
        PointsConfig(embed_dim=0)
    path = tmp_path / "points.yaml"
    path.write_text("preset: cpu\npoints:\n  widths: [32, 48]\n  use_normals: true\n")
    config = load_config(str(path))
    assert config.points.widths == (32, 48) and config.points.use_normals
    assert config.points.num_points == load_config("cpu").points.num_points
    assert config_from_dict(yaml.safe_load(config.to_yaml())).points == config.points
