"""Configuration: presets, YAML files, overrides, and strict checking."""

from __future__ import annotations

import pytest

from mvdecor.config import Config, RenderConfig, load_config, render_config_from_dict, render_config_to_dict
from mvdecor.errors import ConfigError


def test_paper_preset_is_the_authors_setup():
    config = load_config("paper")
    assert config.preset == "paper"
    assert config.render == RenderConfig()
    assert config.render.num_views == 86 and config.render.resolution == 256
    assert config.render.camera_scheme().cameras(0).width == 256


def test_cpu_preset_is_small():
    render = load_config("cpu").render
    assert render.num_views < 30 and render.resolution <= 128


def test_file_based_on_preset_with_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: cpu\nrender:\n  resolution: 64\n")
    config = load_config(str(path), {"render": {"seed": 7}})
    assert config.render.resolution == 64 and config.render.seed == 7
    assert config.render.rings == load_config("cpu").render.rings
    assert config.preset == str(path)


def test_yaml_roundtrip(tmp_path):
    config = load_config("cpu")
    path = tmp_path / "saved.yaml"
    config.save(path)
    again = load_config(str(path))
    assert again.render == config.render
    assert render_config_from_dict(render_config_to_dict(config.render)) == config.render


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("render:\n  resolutoin: 64\n", "unknown key"),
        ("render:\n  resolution: big\n", "must be a int"),
        ("render: 5\n", "must be a mapping"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("preset: gpu\n", "unknown base preset"),
        ("render: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(str(path))
    assert "bad.yaml" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "none.yaml"))


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().preset = "x"  # type: ignore[misc]


def test_presets_name_the_pretraining_method_and_densecl_settings(tmp_path):
    import yaml

    from mvdecor.config import DenseCLConfig, config_from_dict

    paper, cpu = load_config("paper"), load_config("cpu")
    assert paper.pretrain.method == cpu.pretrain.method == "mvdecor"
    assert paper.pretrain.densecl == DenseCLConfig()  # DenseCL's own settings
    assert paper.pretrain.densecl.queue_size == 65536 and paper.pretrain.densecl.momentum == 0.999
    assert cpu.pretrain.densecl.queue_size < 65536
    path = tmp_path / "densecl.yaml"
    path.write_text("preset: cpu\npretrain:\n  method: densecl\n  densecl:\n    crop_scale: [0.3, 0.9]\n")
    config = load_config(str(path))
    assert config.pretrain.method == "densecl" and config.pretrain.densecl.crop_scale == (0.3, 0.9)
    assert config.pretrain.densecl.queue_size == cpu.pretrain.densecl.queue_size
    assert config_from_dict(yaml.safe_load(config.to_yaml())).pretrain == config.pretrain  # tuples as lists
    path.write_text("pretrain:\n  densecl:\n    queue: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['queue'\] in pretrain.densecl"):
        load_config(str(path))
