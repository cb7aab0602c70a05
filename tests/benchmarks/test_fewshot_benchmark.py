"""benchmarks/fewshot.py: the DenseCL and ImageNet methods end to end on tiny synthetic shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from benchmark_scripts import load_benchmark

from mvdecor.config import load_config
from mvdecor.models.resnet import resnet18
from mvdecor.train.checkpoint import load_checkpoint
from mvdecor.train.pretrain import checkpoint_method

DATASET = "synthetic:categories=mug+bottle,n=3,textured=0"

#: 6 views at 32x32, the smallest network, one step of everything, no worker processes.
TINY_YAML = """\
preset: cpu
render: {rings: 1, segments: 4, resolution: 32}
model: {backbone: resnet18, output_stride: 16}
pretrain:
  pairs_per_batch: 2
  matches_per_pair: 64
  val_pairs: 2
  num_workers: 0
  precision: fp32
  densecl: {queue_size: 8, hidden_dim: 16, grid_size: 4}
finetune: {views_per_batch: 2, ssl_weight: 0.0, num_workers: 0, precision: fp32, checkpoint_every: 100}
"""


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("fewshot")


def _write_torchvision_resnet18(path: Path) -> dict[str, torch.Tensor]:
    """A randomly initialised ResNet-18 state dict in torchvision's layout (RGB conv1, a classifier)."""
    torch.manual_seed(7)
    state = resnet18(in_channels=3).state_dict()
    state["fc.weight"], state["fc.bias"] = torch.randn(10, 512), torch.zeros(10)
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "fc.weight"} <= set(state)
    torch.save(state, path)
    return state


def test_densecl_and_imagenet_methods_run_on_the_same_cells(tmp_path, benchmark, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML.replace("precision: fp32", "precision: bf16"))  # --precision fp32 wins
    imagenet = tmp_path / "resnet18.pth"
    state = _write_torchvision_resnet18(imagenet)
    work, results = tmp_path / "work", tmp_path / "results"
    args = [DATASET, "--name", "tiny", "--budget", "paper", "--config", str(config), "--categories", "mug",
            "--settings", "1", "--runs", "1", "--methods", "scratch,densecl,imagenet", "--imagenet-checkpoint",
            str(imagenet), "--pretrain-iterations", "1", "--finetune-iterations", "1", "--device", "cpu",
            "--test-fraction", "0.34", "--work", str(work), "--results", str(results), "--quiet",
            "--precision", "fp32"]  # fmt: skip
    assert benchmark.main(args) == 0
    table = capsys.readouterr().out
    assert "| category | scratch | densecl | imagenet |" in table  # no mvdecor column, no gap columns

    # DenseCL pre-trained in its own folder, on the same training shapes MvDeCor would use.
    densecl_run = work / "pretrain_densecl_all"
    done = json.loads((densecl_run / "done.json").read_text())
    assert done["iterations"] == 1 and done["machine"] == benchmark.machine_description("cpu")
    assert checkpoint_method(densecl_run / "checkpoints" / "last.pt") == "densecl"
    assert not (work / "pretrain_all").exists()  # MvDeCor's folder: only for the mvdecor method

    record = json.loads((results / "tiny-paper.json").read_text())
    assert record["methods"] == ["scratch", "densecl", "imagenet"]
    assert set(record["settings"][0]["per_category"]["mug"]) == {"scratch", "densecl", "imagenet"}
    assert set(record["pretrain"]["densecl_runs"]) == {"all"} and record["pretrain"]["runs"] == {}
    assert record["imagenet_checkpoint"] == str(imagenet)
    # --precision overrides the budget's (paper: the config file's bf16) in both stages.
    assert record["pretrain"]["precision"] == "fp32" and record["finetune"]["precision"] == "fp32"
    cells = work / "fewshot" / "mug"
    summaries = {m: json.loads((cells / f"results_{m}_k1.json").read_text()) for m in record["methods"]}
    assert {m: s["method"] for m, s in summaries.items()} == {m: m for m in summaries}
    # The same draw of labelled shapes for every method.
    assert len({tuple(s["per_run"][0]["labelled_shapes"]) for s in summaries.values()}) == 1
    assert summaries["densecl"]["init"] == str(densecl_run / "checkpoints" / "last.pt")

    # The imagenet cell started from the file: its widened conv1 (the mean RGB filter on each of the
    # 5 grey/normal/depth channels) moved by about one Adam step of lr 1e-3 at most; scratch's did not.
    mean_filter = state["conv1.weight"].mean(dim=1, keepdim=True).expand(-1, 5, -1, -1)
    key = "embedding.encoder.backbone.conv1.weight"
    tuned = load_checkpoint(cells / "imagenet_k1_run0" / "checkpoints" / "last.pt")["model"][key]
    scratch = load_checkpoint(cells / "scratch_k1_run0" / "checkpoints" / "last.pt")["model"][key]
    assert (tuned - mean_filter).abs().max() < 2e-3
    assert (scratch - mean_filter).abs().max() > 2e-2
    assert str(imagenet) in (cells / "imagenet_k1_run0" / "config.yaml").read_text()
    assert "resnet18.pth" not in (cells / "scratch_k1_run0" / "config.yaml").read_text()

    # Re-running finds everything finished.
    before = (cells / "results_densecl_k1.json").stat().st_mtime_ns
    assert benchmark.main(args) == 0
    assert (cells / "results_densecl_k1.json").stat().st_mtime_ns == before
    # A network made elsewhere, with more loader workers and a larger mesh cache, is the same
    # network; a learning setting is not.
    saved = str(densecl_run / "config.yaml")
    elsewhere = load_config(saved, {"pretrain": {"num_workers": 12, "cached_shapes": 128}})
    assert benchmark.changed_pretraining(densecl_run, elsewhere, "densecl") == []
    other = load_config(saved, {"pretrain": {"cached_shapes": 128, "lr": 0.5}})
    assert benchmark.changed_pretraining(densecl_run, other, "densecl") == [
        f"pretrain.lr: {load_config(saved).pretrain.lr!r} -> 0.5"
    ]


def test_bad_method_lists_are_refused(tmp_path, benchmark, capsys):
    base = [DATASET, "--work", str(tmp_path / "w"), "--results", str(tmp_path / "r")]
    with pytest.raises(SystemExit):
        benchmark.main([*base, "--methods", "mvdecor,moco"])
    assert "unknown methods ['moco']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.main([*base, "--methods", "imagenet"])
    assert "needs --imagenet-checkpoint" in capsys.readouterr().err


def test_transfer_column_refinements_and_suffix(tmp_path, benchmark, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    work, results = tmp_path / "work", tmp_path / "results"
    args = [DATASET, "--name", "tiny", "--budget", "paper", "--config", str(config), "--categories", "mug",
            "--settings", "1", "--runs", "1", "--methods", "transfer,mvdecor,scratch", "--pretrain-iterations",
            "1", "--finetune-iterations", "1", "--device", "cpu", "--test-fraction", "0.34", "--work", str(work),
            "--results", str(results), "--quiet", "--refine", "prior=transfer_prior:1,prior_method:transfer",
            "--suffix=-x", "--ssl-weight", "0.5"]  # fmt: skip
    assert benchmark.main(args) == 0
    table = capsys.readouterr().out
    columns = ["transfer", "mvdecor-x", "scratch-x", "mvdecor-x+prior", "scratch-x+prior"]
    gaps = ["mvdecor-x − scratch-x", "mvdecor-x − transfer", "mvdecor-x+prior − scratch-x+prior",
            "mvdecor-x+prior − transfer"]  # fmt: skip
    assert "| category | " + " | ".join(columns + gaps) + " |" in table
    # The suffix names the results file too, so runs with other configs keep theirs.
    assert sorted(p.name for p in results.iterdir()) == ["tiny-paper-x.json", "tiny-paper-x.md"]
    record = json.loads((results / "tiny-paper-x.json").read_text())
    assert record["methods"] == columns
    # --ssl-weight overrides the config's lambda (0 in the tiny config) for every fine-tuning run.
    assert record["finetune"]["ssl_weight"] == 0.5
    run_config = (work / "fewshot" / "mug" / "mvdecor-x_k1_run0" / "config.yaml").read_text()
    assert "ssl_weight: 0.5" in run_config
    assert record["refinements"] == {"prior": {"transfer_prior": 1.0, "prior_method": "transfer"}}
    cells = record["settings"][0]["per_category"]["mug"]
    # A prior of weight 1 is the transfer itself, whatever the network.
    assert cells["mvdecor-x+prior"]["mean"] == cells["scratch-x+prior"]["mean"] == cells["transfer"]["mean"]
    assert cells["transfer"]["pixel_miou_2d"] is None
    assert (work / "fewshot" / "mug" / "results_scratch-x+prior_k1.json").is_file()
    # Report-only finds the same cells, variants included.
    assert benchmark.main([*args, "--report-only"]) == 0
    again = json.loads((results / "tiny-paper-x.json").read_text())
    assert again["settings"][0]["per_category"]["mug"] == cells
    # A config that would pre-train another network is not scored on the finished one.
    other = tmp_path / "other.yaml"
    other.write_text(
        TINY_YAML.replace("pretrain:\n", "pretrain:\n  lr: 0.01\n  log_every: 3\n").replace(
            "queue_size: 8", "queue_size: 16"
        )
    )
    with pytest.raises(SystemExit):
        benchmark.main([*args[:6], str(other), *args[7:], "--suffix=-y"])
    error = capsys.readouterr().err
    assert "pretrain.lr: 0.001 -> 0.01" in error and "its own --work" in error
    # Where and how often it logs, and DenseCL's settings, do not change MvDeCor's network.
    assert "log_every" not in error and "densecl" not in error
    assert not (results / "tiny-paper-y.json").exists()


#: The tiny config with a tiny point network and two steps of PointContrast.
TINY_POINTS_YAML = (
    TINY_YAML
    + """\
points:
  num_points: 128
  neighbours: 8
  widths: [16, 16]
  global_dim: 16
  head_width: 16
  embed_dim: 16
  pretrain_points: 64
  pretrain_iterations: 2
  pretrain_pairs_per_batch: 1
  pretrain_matches_per_pair: 16
  finetune_iterations: 3
  finetune_shapes_per_batch: 2
  predict_clouds: 1
  device: cpu
deform: {num_points: 64, width: 8, iterations: 2, pairs_per_batch: 1, transfer_samples: 200, device: cpu}
"""
)


def test_3d_methods_share_the_cells_and_learn_from_labelled_views(tmp_path, benchmark, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_POINTS_YAML)
    work, results = tmp_path / "work", tmp_path / "results"
    args = [DATASET, "--name", "tiny", "--budget", "paper", "--config", str(config), "--categories", "mug",
            "--settings", "1,1x2", "--runs", "1", "--methods", "transfer,scratch3d,pointcontrast,deform",
            "--refine", "prior=transfer_prior:1", "--device", "cpu", "--test-fraction", "0.34", "--work",
            str(work), "--results", str(results), "--quiet"]  # fmt: skip
    assert benchmark.main(args) == 0
    record = json.loads((results / "tiny-paper.json").read_text())
    # Face methods have no votes to refine: no +prior columns.
    assert record["methods"] == ["transfer", "scratch3d", "pointcontrast", "deform"]
    shapes, views = record["settings"]
    assert set(shapes["per_category"]["mug"]) == {"transfer", "scratch3d", "pointcontrast", "deform"}
    assert (work / "fewshot" / "mug" / "deformation" / "last.pt").is_file()  # one network per category
    # Labelled views: the 3D methods learn from the faces they see, beside transfer.
    assert set(views["per_category"]["mug"]) == {"transfer", "scratch3d", "pointcontrast", "deform"}
    assert (work / "fewshot" / "mug" / "scratch3d_k1_v2_run0").is_dir()
    assert (
        checkpoint_method(work / "pretrain_pointcontrast_all" / "checkpoints" / "last.pt") == "pointcontrast"
    )
    assert record["pretrain"]["pointcontrast_runs"]["all"]["iterations"] == 2
    # Another PointContrast pre-training asked of the same folder: refused by name; the point
    # network's fine-tuning settings are not the pre-training's.
    other = tmp_path / "other.yaml"
    other.write_text(
        TINY_POINTS_YAML.replace("pretrain_iterations: 2", "pretrain_iterations: 3").replace(
            "finetune_iterations: 3", "finetune_iterations: 4"
        )
    )
    with pytest.raises(SystemExit):
        benchmark.main([*args[:6], str(other), *args[7:], "--methods", "pointcontrast", "--suffix=-y"])
    error = capsys.readouterr().err
    assert "points.pretrain_iterations: 2 -> 3" in error and "finetune_iterations" not in error
    # The view pairs it learns from are drawn with pre-training's overlap threshold; MvDeCor's
    # other pre-training settings do not concern it.
    assert (
        benchmark.changed_pretraining(
            work / "pretrain_pointcontrast_all", load_config(str(config)), "pointcontrast"
        )
        == []
    )
    changed = load_config(str(config), {"pretrain": {"overlap_threshold": 0.9, "lr": 0.5}})
    assert benchmark.changed_pretraining(work / "pretrain_pointcontrast_all", changed, "pointcontrast") == [
        f"pretrain.overlap_threshold: {load_config(str(config)).pretrain.overlap_threshold!r} -> 0.9"
    ]


def test_the_table_says_where_a_network_was_pre_trained_when_not_here(benchmark):
    here, gpu = "2 cores, torch 2.13.0+cpu", "16 cores, torch 2.11.0+cu130, GPU NVIDIA H100 80GB HBM3"
    cells = {"transfer": {"mean": 30.0, "std": 0.5}, "mvdecor": {"mean": 35.0, "std": 1.0}}
    record = {
        "dataset": "tiny", "budget": "cpu", "preset": "cpu", "machine": here, "wall_s": 600.0,
        "methods": ["transfer", "mvdecor"],
        "pretrain": {
            "runs": {"all": {"wall_s": 366.7, "iterations": 7200, "machine": gpu}},
            "densecl_runs": {"all": {"wall_s": 90.0, "iterations": 2400, "machine": here}},
        },
        "settings": [{"k": 2, "v": None, "runs": 3, "per_category": {"mug": cells},
                      "mean": {"transfer": 30.0, "mvdecor": 35.0}}],
    }  # fmt: skip
    lines = benchmark.format_table(record).splitlines()
    assert lines[1] == f"mvdecor pre-training (all): 7200 steps in 6.1 min on {gpu}." and lines[2] == ""
    assert "| mug | 30.0 ± 0.5 | 35.0 ± 1.0 | +5.0 |" in lines
    # Pre-trained here (or by an older benchmark, without a machine): no such line.
    del record["pretrain"]["runs"]["all"]["machine"]
    assert benchmark.format_table(record).splitlines()[1] == ""


def test_pre_training_alone_can_leave_the_correspondence_for_later(tmp_path, benchmark):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    work, results = tmp_path / "work", tmp_path / "results"
    args = [DATASET, "--name", "tiny", "--config", str(config), "--categories", "mug", "--runs", "1",
            "--methods", "mvdecor", "--pretrain-iterations", "1", "--device", "cpu", "--test-fraction", "0.34",
            "--work", str(work), "--results", str(results), "--quiet", "--precision", "fp32"]  # fmt: skip
    # Pre-training only (what a GPU machine is lent for): the network, no cells, no correspondence.
    assert benchmark.main([*args, "--settings", "", "--no-correspondence"]) == 0
    assert (work / "pretrain_all" / "done.json").is_file()
    assert not (work / "correspondence.json").exists() and not (work / "fewshot").exists()
    assert json.loads((results / "tiny-cpu.json").read_text())["correspondence"] is None
    # The next run, without the flag, measures it on the network already made.
    assert benchmark.main([*args, "--settings", ""]) == 0
    record = json.loads((results / "tiny-cpu.json").read_text())
    assert set(record["correspondence"]) == {"pretrained", "random_network", "normals", "match_radius"}
    assert json.loads((work / "correspondence.json").read_text())["checkpoint"].endswith("last.pt")


def test_the_pre_training_pool_can_hold_the_test_shapes_unlabelled(tmp_path, benchmark, capsys):
    split = {
        "mug": {"train": ["m0", "m1"], "test": ["m2"]},
        "bottle": {"train": ["b0"], "test": ["b1", "b2"]},
    }
    assert benchmark.pretrain_pool(split, None, "train") == ["m0", "m1", "b0"]
    assert benchmark.pretrain_pool(split, None, "all") == ["m0", "m1", "m2", "b0", "b1", "b2"]
    assert benchmark.pretrain_pool(split, "bottle", "all") == ["b0", "b1", "b2"]

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    work, results = tmp_path / "work", tmp_path / "results"
    args = [DATASET, "--name", "tiny", "--config", str(config), "--categories", "mug", "--runs", "1",
            "--methods", "mvdecor", "--pretrain-iterations", "1", "--device", "cpu", "--test-fraction", "0.34",
            "--work", str(work), "--results", str(results), "--quiet", "--precision", "fp32", "--settings", "",
            "--no-correspondence"]  # fmt: skip
    assert benchmark.main([*args, "--pretrain-pool", "all"]) == 0
    # 3 shapes per category, 2 categories: all 6 shapes, 10% of them (at least one) for validation.
    assert "pre-training (mvdecor) on 5 shapes (all)" in capsys.readouterr().out
    assert json.loads((work / "pretrain_all" / "done.json").read_text())["pool"] == "all"
    record = json.loads((results / "tiny-cpu.json").read_text())
    assert record["pretrain"]["pool"] == "all"
    assert "Pre-training read the test shapes too" in benchmark.format_table(record)
    # The finished network read the test shapes: the default pool does not reuse it.
    with pytest.raises(SystemExit):
        benchmark.main(args)
    assert "--pretrain-pool: all -> train" in capsys.readouterr().err
