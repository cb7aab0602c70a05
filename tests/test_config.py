"""Configuration: presets, YAML files, overrides, and strict checking."""

from __future__ import annotations

import pytest

from mvdecor.config import (
    Config,
    RenderConfig,
    config_from_dict,
    load_config,
    render_config_from_dict,
    render_config_to_dict,
    without_self_pairing,
)
from mvdecor.errors import ConfigError
from mvdecor.render.cameras import CameraScheme


def test_paper_preset_is_the_authors_setup():
    config = load_config("paper")
    assert config.preset == "paper"
    assert config.render == RenderConfig()
    assert config.render.num_views == 86 and config.render.resolution == 256
    assert CameraScheme.from_config(config.render).cameras(0).width == 256


def test_dataclass_defaults_are_the_paper_preset():
    # One place for the defaults: the paper preset may not drift from the dataclasses.
    paper = load_config("paper").to_dict()
    assert {**paper, "preset": None} == {**Config().to_dict(), "preset": None}


def test_cpu_preset_is_small():
    render = load_config("cpu").render
    assert render.num_views < 30 and render.resolution <= 128


def test_cpu_preset_starts_from_the_packaged_imagenet_weights_of_its_backbone_only(tmp_path):
    model = load_config("cpu").model
    assert (model.backbone, model.imagenet_checkpoint) == ("efficientnet_lite0", "packaged")
    # Another backbone without weights of its own starts from random weights (the packaged ones are
    # Lite0's), from an override or a file; weights it names, and other Lite0 settings, are kept.
    resnet = load_config("cpu", {"model": {"backbone": "resnet18"}}).model
    assert (resnet.backbone, resnet.imagenet_checkpoint) == ("resnet18", "")
    named = load_config("cpu", {"model": {"backbone": "resnet18", "imagenet_checkpoint": "r.pth"}}).model
    assert named.imagenet_checkpoint == "r.pth"
    assert load_config("cpu", {"model": {"head": "paper"}}).model.imagenet_checkpoint == "packaged"
    path = tmp_path / "resnet.yaml"
    path.write_text("preset: cpu\nmodel: {backbone: resnet34}\n")
    assert load_config(str(path)).model.imagenet_checkpoint == ""
    with pytest.raises(ConfigError, match="exists only"):  # asked for by the same layer: an error
        load_config("cpu", {"model": {"backbone": "resnet18", "imagenet_checkpoint": "packaged"}})


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
        ("render:\n  resolution: big\n", "must be an integer"),
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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"render": {"rings": -1}}, "render.rings must be >= 1, got -1"),
        ({"render": {"segments": 0}}, "render.segments must be >= 1, got 0"),
        ({"render": {"resolution": 0}}, "render.resolution must be an image size from 8"),
        ({"render": {"resolution": 100_000}}, "render.resolution must be an image size from 8"),
        ({"render": {"resolution": 64.9}}, "render.resolution must be an integer, got 64.9"),
        ({"render": {"resolution": True}}, "render.resolution must be an integer, got True"),
        ({"render": {"distance_scale": 5}}, "render.distance_scale must be a list such as [0.7, 1.0], got 5"),
        ({"render": {"distance_scale": [1.0, 0.5]}}, "render.distance_scale must be [low, high]"),
        ({"render": {"distance_scale": [0.5, 0.7, 1.0]}}, "render.distance_scale must be a list of 2"),
        (
            {"model": {"modalities": "grey"}},
            "model.modalities must be a list such as [grey, normal], got 'grey'",
        ),
        ({"model": {"modalities": [1, 2]}}, "model.modalities must be a list of names"),
        ({"pretrain": {"iterations": -1}}, "pretrain.iterations must be >= 0, got -1"),
        ({"pretrain": {"lr": 0}}, "pretrain.lr must be > 0"),
        ({"pretrain": {"lr": float("nan")}}, "pretrain.lr must be a finite number"),
        ({"pretrain": {"precision": "fp64"}}, "pretrain.precision must be one of fp32, bf16, fp16, auto"),
        ({"pretrain": {"densecl": {"momentum": 1.5}}}, "pretrain.densecl.momentum must be in [0, 1]"),
        ({"pretrain": {"cross_shape_pairs": 1.5}}, "pretrain.cross_shape_pairs must be in [0, 1]"),
        ({"pretrain": {"cross_shape_radius": 0}}, "pretrain.cross_shape_radius must be > 0"),
        ({"finetune": {"iterations": -1}}, "finetune.iterations must be >= 1, got -1"),
        ({"finetune": {"views_per_shape": -1}}, "finetune.views_per_shape must be >= 0, got -1"),
        ({"segment": {"rings": -2}}, "segment.rings must be >= 0, got -2"),
        ({"segment": {"transfer_prior": 2.0}}, "segment.transfer_prior must be in [0, 1]"),
        ({"transfer": {"neighbours": 0}}, "transfer.neighbours must be >= 1, got 0"),
    ],
)
def test_values_are_checked_once_where_the_config_is_built(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config("cpu", overrides, overrides_source="command line")
    assert str(info.value).startswith(f"command line: {message}")


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("preset: cpu\nmodel:\n  modalities: grey\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {"render": {"seed": 1}}, overrides_source="command line")
    assert str(info.value).startswith(f"{path}: model.modalities must be a list")
    # Direct construction is checked too (the Python API).
    with pytest.raises(ConfigError, match=r"render\.rings"):
        RenderConfig(rings=0)


def test_integral_floats_and_numeric_strings_are_still_accepted():
    config = load_config("cpu", {"render": {"resolution": 64.0, "seed": "3"}, "pretrain": {"lr": 1}})
    assert config.render.resolution == 64 and isinstance(config.render.resolution, int)
    assert config.render.seed == 3 and config.pretrain.lr == 1.0


def test_a_bare_yaml_off_reads_as_the_word_off(tmp_path):
    path = tmp_path / "off.yaml"
    path.write_text("preset: cpu\nsegment:\n  transfer_vote: off\n  position_alignment: off\n")
    config = load_config(str(path))
    assert config.segment.transfer_vote == "off" and config.segment.position_alignment == "off"
    # A setting that has no such value still says so, with its choices.
    path.write_text("preset: cpu\nsegment:\n  prior_method: off\n")
    with pytest.raises(ConfigError, match=r"segment\.prior_method"):
        load_config(str(path))


def test_renamed_keys_are_read_under_their_old_names_with_a_warning(tmp_path):
    from mvdecor.errors import RenamedKeyWarning

    path = tmp_path / "old.yaml"
    path.write_text(
        "preset: cpu\nrender:\n  radius: 2.5\npretrain:\n  radius: 0.01\n  radius_footprints: 2.0\n"
    )
    with pytest.warns(RenamedKeyWarning) as record:
        config = load_config(str(path))
    messages = sorted(str(w.message).split(": ", 1)[1] for w in record)
    assert messages == [
        "pretrain.radius is now called pretrain.match_radius (the old name still works)",
        "pretrain.radius_footprints is now called pretrain.match_radius_footprints (the old name still works)",
        "render.radius is now called render.camera_distance (the old name still works)",
    ]
    assert config.render.camera_distance == 2.5
    assert (config.pretrain.match_radius, config.pretrain.match_radius_footprints) == (0.01, 2.0)
    with pytest.warns(RenamedKeyWarning, match="command line"):
        config = load_config("cpu", {"render": {"radius": 1.8}}, overrides_source="command line")
    assert config.render.camera_distance == 1.8


def test_old_and_new_name_of_one_key_together_are_an_error(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("render:\n  radius: 2.5\n  camera_distance: 2.0\n")
    with pytest.raises(ConfigError, match=r"are one setting; give only render\.camera_distance"):
        load_config(str(path))


def test_stored_configs_with_old_names_load_silently(recwarn):
    stored = load_config("cpu").to_dict()
    stored["render"]["radius"] = stored["render"].pop("camera_distance")
    stored["pretrain"]["radius"] = stored["pretrain"].pop("match_radius")
    config = config_from_dict(stored, source="last.pt")  # e.g. a checkpoint written before the rename
    assert config == load_config("cpu")
    assert render_config_from_dict(stored["render"]) == config.render
    assert not [w for w in recwarn if "now called" in str(w.message)]


def test_a_config_file_may_start_from_another_file_and_a_run_config_loads_on_its_own(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("preset: cpu\nrender:\n  resolution: 96\n")
    child = tmp_path / "child.yaml"
    child.write_text("preset: base.yaml\nfinetune:\n  iterations: 7\n")  # beside the file
    config = load_config(str(child))
    assert (config.render.resolution, config.finetune.iterations) == (96, 7)
    assert config.model == load_config("cpu").model and config.preset == str(child)
    # A run's config.yaml sets every section and names the file it started from, which may be gone.
    run_config = tmp_path / "run" / "config.yaml"
    run_config.parent.mkdir()
    run_config.write_text(config.to_yaml())
    base.unlink()
    assert load_config(str(run_config)).to_dict() == {**config.to_dict(), "preset": str(run_config)}
    with pytest.raises(ConfigError, match=r"unknown base preset 'base\.yaml'"):
        load_config(str(child))  # partial: its base is needed
    child.write_text("preset: child.yaml\n")
    with pytest.raises(ConfigError, match="names itself"):
        load_config(str(child))
    # Two files naming each other: a clear error, not a recursion without end.
    child.write_text("preset: other.yaml\nfinetune:\n  iterations: 7\n")
    (tmp_path / "other.yaml").write_text("preset: child.yaml\nrender:\n  resolution: 96\n")
    with pytest.raises(ConfigError, match=r"loop \(child\.yaml -> other\.yaml -> child\.yaml\)"):
        load_config(str(child))


def test_the_cpu_preset_pairs_a_network_with_its_lookup_and_never_a_lookup_with_itself():
    cpu = load_config("cpu")
    assert cpu.finetune.method == "network" and (cpu.finetune.iterations, cpu.finetune.ssl_weight) == (
        100,
        0.0,
    )
    assert (cpu.segment.prior_method, cpu.segment.transfer_prior) == ("nearest", 0.5)
    lookup = load_config("cpu", {"finetune": {"method": "nearest"}})
    assert (lookup.segment.prior_method, lookup.segment.transfer_prior) == ("transfer", 0.0)
    # Only the self-pairing is dropped: another prior of a lookup model, and the paper preset, stay.
    deform = load_config("cpu", {"finetune": {"method": "nearest"}, "segment": {"prior_method": "deform"}})
    assert (deform.segment.prior_method, deform.segment.transfer_prior) == ("deform", 0.5)
    paper = load_config("paper")
    assert paper.finetune.method == "network" and paper.segment.transfer_prior == 0.0
    assert without_self_pairing(cpu) is cpu
