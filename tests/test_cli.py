"""The command line: help, errors as one line with a non-zero exit, and each command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from mvdecor.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("render", "views", "info", "datasets", "demo", "transfer", "deform"):
        assert command in out


@pytest.mark.parametrize("command", ["render", "views", "info", "demo", "datasets", "transfer", "deform"])
def test_each_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mvdecor" in capsys.readouterr().out


def test_console_script_runs_as_module():
    result = subprocess.run(
        [sys.executable, "-m", "mvdecor", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("mvdecor ")


def test_missing_mesh_is_one_line_error(tmp_path, capsys):
    code = main(["info", str(tmp_path / "nope.obj")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mvdecor: error: ") and "nope.obj" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_shard_and_unknown_dataset_are_clear_errors(tmp_path, capsys):
    assert main(["render", "synthetic", str(tmp_path / "o"), "--shard", "3/2", "--quiet"]) == 1
    assert "i/n" in capsys.readouterr().err
    assert main(["render", "no_such_dataset", str(tmp_path / "o"), "--quiet"]) == 1
    assert "neither an existing folder nor a known dataset" in capsys.readouterr().err


def test_info_reports_labels(tmp_path, capsys):
    mesh = tmp_path / "tri.off"
    mesh.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n3 1 3 2\n")
    labels = tmp_path / "tri.txt"
    labels.write_text("0\n1\n")
    names = tmp_path / "names.txt"
    names.write_text("left\nright\n")
    assert main(["info", str(mesh), "--labels", str(labels), "--label-names", str(names), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["faces"] == 2 and info["labels"] == {"left": 1, "right": 1}


def test_render_views_and_datasets_commands(tmp_path, capsys):
    out = tmp_path / "store"
    args = ["render", "synthetic:categories=mug,n=2", str(out), "--preset", "cpu", "--resolution", "32"]
    assert main([*args, "--workers", "1", "--quiet"]) == 0
    assert "rendered 2 shapes" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "shapes").iterdir()) == ["mug_0000.npz", "mug_0001.npz"]
    assert main([*args, "--workers", "1", "--quiet"]) == 0
    assert "skipped 2 already stored" in capsys.readouterr().out

    mesh = tmp_path / "tri.off"
    mesh.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n3 1 3 2\n")
    views = tmp_path / "views"
    assert main(["views", str(mesh), str(views), "--num", "2", "--preset", "cpu", "--resolution", "32"]) == 0
    assert (views / "sheet.png").is_file() and len(list(views.glob("view_*_normals.png"))) == 2

    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "synthetic" in listing and "folder" in listing


def test_finetune_method_nearest_banks_labelled_pixels(tmp_path, capsys):
    import numpy as np
    import trimesh

    run = tmp_path / "nn"
    code = main(["finetune", "synthetic:categories=mug,n=3,textured=0", str(run), "--labelled", "mug_0000",
                 "mug_0001", "--method", "nearest", "--preset", "cpu", "--rings", "1", "--segments", "4", "--resolution", "32",
                 "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "banked the labelled pixels of 2 labelled shapes" in capsys.readouterr().out
    info = json.loads((run / "run.json").read_text())
    # The preset's settings: the distributions of all four candidate position weights averaged.
    assert info["method"] == "nearest" and info["position_weight"] == [0.0, 0.25, 1.0, 4.0]
    assert "position_weight_scores" not in info
    assert not (run / "metrics.csv").exists()
    page = (run / "report.html").read_text()
    assert "Nearest labelled pixels" in page and "No training" in page
    # The bank segments any mesh as a fine-tuned network does (positions from the mesh's own box).
    cyl = trimesh.creation.cylinder(radius=0.4, height=1.0, sections=16)
    mesh = tmp_path / "cup.ply"
    cyl.export(mesh)
    out = tmp_path / "seg"
    assert main(["segment", str(mesh), "--model", str(run / "checkpoints" / "last.pt"), "--out", str(out),
                 "--no-report", "--quiet"]) == 0  # fmt: skip
    labels = np.loadtxt(out / "cup.labels.txt", dtype=int)
    assert labels.shape == (len(cyl.faces),) and set(labels.tolist()) <= set(range(len(info["label_names"])))


def test_finetune_then_segment_an_unlabelled_mesh(tmp_path, capsys):
    import numpy as np
    import trimesh

    run = tmp_path / "ft"
    common = [
        "--preset",
        "cpu",
        "--rings",
        "1",
        "--segments",
        "4",
        "--resolution",
        "32",
        "--backbone",
        "resnet18",
    ]
    # The network alone (segment.transfer_prior=0), not the cpu preset's pair with its lookup.
    code = main(["finetune", "synthetic:categories=mug,n=2,textured=0", str(run), "--labelled", "mug_0000",
                 "--method", "network", "--iterations", "2", "--ssl-weight", "0", "--device", "cpu", "--quiet",
                 *common, "--set", "finetune.lr=0.0005", "--set", "finetune.lr_decay_every=7",
                 "--set", "segment.transfer_prior=0"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "fine-tuned on 1 labelled shapes" in capsys.readouterr().out
    # --set reaches the configuration written next to the result, as do the shortcut options.
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert (written["finetune"]["lr"], written["finetune"]["lr_decay_every"]) == (0.0005, 7)
    assert (written["finetune"]["iterations"], written["render"]["resolution"]) == (2, 32)
    # The run leaves its own report: summary, curves and configuration.
    assert (
        "<h3>Logs</h3>" in (run / "report.html").read_text() and (run / "pictures" / "curves.png").is_file()
    )
    # A mesh file with no labels at all: the user's main case.
    mesh = tmp_path / "cup.off"
    cyl = trimesh.creation.cylinder(radius=0.4, height=1.0, sections=16)
    mesh.write_text(
        "OFF\n"
        f"{len(cyl.vertices)} {len(cyl.faces)} 0\n"
        + "".join(f"{x} {y} {z}\n" for x, y, z in cyl.vertices)
        + "".join(f"3 {a} {b} {c}\n" for a, b, c in cyl.faces)
    )
    out = tmp_path / "seg"
    assert (
        main(["segment", str(mesh), "--model", str(run / "checkpoints" / "last.pt"), "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "faces ->" in printed and f"report: {out / 'report.html'}" in printed
    assert 'data-name="cup"' in (out / "report.html").read_text()
    labels = np.loadtxt(out / "cup.labels.txt", dtype=int)
    assert labels.shape == (len(cyl.faces),) and labels.min() >= 0
    assert (out / "cup.ply").is_file() and (out / "cup.glb").is_file() and (out / "cup.legend.png").is_file()
    # A missing checkpoint: one clear line, exit code 1.
    assert main(["segment", str(mesh), "--model", str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
    assert "no such checkpoint file" in capsys.readouterr().err

    # Label transfer from the labelled shape, no network; and the same as a prior of weight 1.
    refs = ["--references", "synthetic:categories=mug,n=2,textured=0", "--reference-shapes", "mug_0000"]
    assert main(["transfer", str(mesh), *refs, "--out", str(tmp_path / "tr"), "--quiet"]) == 0
    assert "faces ->" in capsys.readouterr().out
    transferred = np.loadtxt(tmp_path / "tr" / "cup.labels.txt", dtype=int)
    assert transferred.shape == (len(cyl.faces),) and (tmp_path / "tr" / "report.html").is_file()
    model = ["--model", str(run / "checkpoints" / "last.pt")]
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "prior"), *refs, "--transfer-prior", "1",
                 "--no-report", "--test-rings", "2"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "prior" / "cup.labels.txt", dtype=int), transferred)
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "smooth"), "--smoothing", "1",
                 "--no-report"]) == 0  # fmt: skip
    capsys.readouterr()
    # A second model as the prior (--prior-method nearest): the nearest labelled faces of the same
    # network on the same labelled shape; at weight 1 its labels are that model's own.
    lookup = tmp_path / "lookup"
    assert main(["finetune", "synthetic:categories=mug,n=2,textured=0", str(lookup), "--labelled", "mug_0000",
                 "--method", "nearest", "--device", "cpu", "--quiet", *common]) == 0  # fmt: skip
    lookup_model = str(lookup / "checkpoints" / "last.pt")
    assert (
        main(["segment", str(mesh), "--model", lookup_model, "--out", str(tmp_path / "nn"), "--no-report"])
        == 0
    )
    looked_up = np.loadtxt(tmp_path / "nn" / "cup.labels.txt", dtype=int)
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "ens"), "--prior-method", "nearest",
                 "--prior-model", lookup_model, "--transfer-prior", "1", "--no-report"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "ens" / "cup.labels.txt", dtype=int), looked_up)
    # The mesh's own prototypes on the lookup model; a trained head refuses them.
    assert main(["segment", str(mesh), "--model", lookup_model, "--out", str(tmp_path / "proto"),
                 "--shape-prototypes", "0.5", "--no-report"]) == 0  # fmt: skip
    assert np.loadtxt(tmp_path / "proto" / "cup.labels.txt", dtype=int).shape == looked_up.shape
    capsys.readouterr()
    assert (
        main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), "--shape-prototypes", "0.5"]) == 1
    )
    assert "--shape-prototypes needs a model of the nearest labelled faces" in capsys.readouterr().err
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), "--prior-method", "nearest",
                 "--transfer-prior", "0.5"]) == 1  # fmt: skip
    assert "--prior-method nearest needs --prior-model" in capsys.readouterr().err
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), "--prior-method", "transfer",
                 "--prior-model", lookup_model]) == 1  # fmt: skip
    assert "--prior-model is read only with --prior-method nearest" in capsys.readouterr().err
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), "--prior-method", "nearest",
                 "--prior-model", lookup_model, *refs]) == 1  # fmt: skip
    assert "--references is not read with --prior-method nearest" in capsys.readouterr().err
    # Bad combinations and inputs: one line naming the cause, exit code 1.
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), "--transfer-prior", "0.5",
                 "--prior-method", "transfer"]) == 1  # fmt: skip
    assert "--transfer-prior needs --references" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["transfer", str(empty), *refs, "--out", str(tmp_path / "y")]) == 1
    assert f"{empty}: no mesh files in this folder" in capsys.readouterr().err
    assert (
        main(
            [
                "transfer",
                str(mesh),
                refs[0],
                refs[1],
                "--reference-shapes",
                "sofa",
                "--out",
                str(tmp_path / "z"),
            ]
        )
        == 1
    )
    assert "no reference shape(s) sofa" in capsys.readouterr().err

    # A learned deformation (`mvdecor deform`, no labels): labels carried along it by `transfer`,
    # and the same labels as a prior of weight 1 in `segment`.
    tiny = ["--set", "deform.num_points=64", "--set", "deform.width=8", "--set", "deform.pairs_per_batch=1",
            "--set", "deform.transfer_samples=200"]  # fmt: skip
    mugs = "synthetic:categories=mug,n=3,textured=0"
    assert main(["deform", mugs, "--out", str(tmp_path / "deform"), "--iterations", "2", "--device", "cpu",
                 "--quiet", *tiny]) == 0  # fmt: skip
    network = tmp_path / "deform" / "last.pt"
    assert (
        f"deformation network trained on 3 shapes (2 steps, preset cpu): {network}" in capsys.readouterr().out
    )
    assert "preset: cpu" in (tmp_path / "deform" / "config.yaml").read_text()
    deformation = ["--deformation", str(network)]
    assert main(["transfer", str(mesh), *refs, *deformation, "--out", str(tmp_path / "dtr"), "--quiet"]) == 0
    carried = np.loadtxt(tmp_path / "dtr" / "cup.labels.txt", dtype=int)
    assert (
        carried.shape == (len(cyl.faces),)
        and "learned deformation" in (tmp_path / "dtr" / "report.html").read_text()
    )
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "dprior"), *refs, *deformation,
                 "--prior-method", "deform", "--transfer-prior", "1", "--no-report"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "dprior" / "cup.labels.txt", dtype=int), carried)
    capsys.readouterr()
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), *refs, "--prior-method", "deform",
                 "--transfer-prior", "1"]) == 1  # fmt: skip
    assert "--prior-method deform needs --deformation" in capsys.readouterr().err
    assert main(["segment", str(mesh), *model, "--out", str(tmp_path / "x"), *refs, *deformation]) == 1
    assert "--deformation is read only with --prior-method deform" in capsys.readouterr().err
    assert main(["deform", mugs, "--out", str(tmp_path / "d1"), "--shapes", "mug_0000"]) == 1
    assert "a deformation is learnt from two shapes or more, found 1" in capsys.readouterr().err
    # One shape check for both commands: shapes of two categories are refused by each, before any work.
    two = "synthetic:categories=mug+bottle,n=2,textured=0"
    assert main(["deform", two, "--out", str(tmp_path / "d2")]) == 1
    assert f"{two}: shapes of several categories (bottle, mug); a deformation network learns one" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "d2").exists()
    assert main(["transfer", str(mesh), "--references", two, "--out", str(tmp_path / "t2")]) == 1
    assert f"{two}: reference shapes of several categories (bottle, mug); choose shapes of one" in (
        capsys.readouterr().err
    )


def test_pretrain_method_and_imagenet_checkpoint_options(capsys):
    from mvdecor.cli import _config_from_args, build_parser

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "--method {mvdecor,densecl}" in capsys.readouterr().out
    parser = build_parser()
    config = _config_from_args(parser.parse_args(["pretrain", "d", "run", "--method", "densecl"]))
    assert config.pretrain.method == "densecl" and config.segment.method == "entropy"
    assert _config_from_args(parser.parse_args(["pretrain", "d", "run"])).pretrain.method == "mvdecor"
    assert (
        _config_from_args(parser.parse_args(["pretrain", "d", "run", "--head", "light"])).model.head
        == "light"
    )
    fewshot_args = parser.parse_args(["fewshot", "d", "out", "--smoothing", "1", "--transfer-prior", "0.5",
                                      "--add-modalities", "position", "--test-rings", "3"])  # fmt: skip
    config = _config_from_args(fewshot_args, train_section="finetune")
    assert (config.segment.smoothing, config.segment.transfer_prior, config.segment.rings) == (1.0, 0.5, 3)
    assert config.finetune.add_modalities == ("position",) and not config.segment.flip
    flipped = parser.parse_args(["fewshot", "d", "out", "--test-flip", "--test-resolution", "192"])
    config = _config_from_args(flipped, train_section="finetune")
    assert (config.segment.flip, config.segment.resolution) == (True, 192)
    for command in ("fewshot", "finetune"):
        args = parser.parse_args(
            [command, "d", "out", "--init", "imagenet", "--imagenet-checkpoint", "r.pth"]
        )
        assert _config_from_args(args, train_section="finetune").model.imagenet_checkpoint == "r.pth"


def test_set_overrides_any_config_key_after_the_shortcut_options():
    from mvdecor.cli import _config_from_args, build_parser
    from mvdecor.config import load_config

    parser = build_parser()
    argv = ["finetune", "d", "run", "--lr", "0.1", "--set", "finetune.lr=0.0005", "--set", "render.resolution=48",
            "--set", "model.head=light", "--set", "finetune.add_modalities=[position]",
            "--set", "pretrain.densecl.queue_size=1024", "--set", "model.imagenet_checkpoint="]  # fmt: skip
    config = _config_from_args(parser.parse_args(argv), train_section="finetune")
    assert (config.finetune.lr, config.render.resolution, config.model.head) == (0.0005, 48, "light")
    assert config.finetune.add_modalities == ("position",)
    assert (config.pretrain.densecl.queue_size, config.model.imagenet_checkpoint) == (1024, "")
    # Without --set, the shortcut is what counts.
    config = _config_from_args(
        parser.parse_args(["finetune", "d", "run", "--lr", "0.1"]), train_section="finetune"
    )
    assert config.finetune.lr == 0.1
    assert config.pretrain.pairs_per_batch == load_config("cpu").pretrain.pairs_per_batch
    # Pre-training-only options are not offered where they would be ignored.
    for command in (["finetune", "d", "run"], ["fewshot", "d", "o"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--pairs-per-batch", "3"])
    assert parser.parse_args(["pretrain", "d", "r", "--pairs-per-batch", "3"]).pairs_per_batch == 3
    # --radius, the old name of --camera-distance, still sets it.
    args = parser.parse_args(["render", "d", "o", "--radius", "1.7"])
    assert _config_from_args(args).render.camera_distance == 1.7
    # Every command that takes --config takes --set.
    for command in (["render", "d", "o"], ["views", "m.off", "o"], ["pretrain", "d", "r"], ["fewshot", "d", "o"],
                    ["transfer", "m.off", "--references", "d", "--out", "o"]):  # fmt: skip
        args = parser.parse_args([*command, "--set", "transfer.neighbours=3"])
        assert _config_from_args(args).transfer.neighbours == 3


def test_each_shortcut_option_names_a_config_key():
    import argparse

    from mvdecor.cli import SHORTCUTS, build_parser
    from mvdecor.cli.overrides import check_key

    def dests(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from dests(child)
            else:
                yield action.dest

    known = set(dests(build_parser()))
    for dest, key in SHORTCUTS.items():
        assert dest in known, dest
        check_key(key.format(train="pretrain"), f"{dest}=...")


def test_set_writes_into_the_render_store(tmp_path, capsys):
    out = tmp_path / "store"
    argv = ["render", "synthetic:categories=mug,n=1,textured=0", str(out), "--preset", "cpu", "--workers", "1",
            "--quiet", "--set", "render.resolution=16", "--set", "render.rings=1", "--set", "render.segments=2"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert "4 views at 16px" in capsys.readouterr().out
    settings = json.loads((out / "store.json").read_text())["settings"]
    assert (settings["resolution"], settings["rings"], settings["segments"]) == (16, 1, 2)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("render.resolutoin=64", "--set render.resolutoin=64: unknown key render.resolutoin; known: rings,"),
        ("rendr.resolution=64", "--set rendr.resolution=64: unknown section rendr; known: render,"),
        ("render.resolution", "--set render.resolution: expected SECTION.KEY=VALUE"),
        ("pretrain.densecl=3", "--set pretrain.densecl=3: pretrain.densecl is a section"),
        (
            "render.resolution=big",
            "--set render.resolution=big: render.resolution must be an integer, got 'big'",
        ),
        ("render.resolution=2", "--set render.resolution=2: render.resolution must be an image size from 8"),
        ("model.modalities=grey", "--set model.modalities=grey: model.modalities must be a list"),
        ("finetune.lr=[1", "--set finetune.lr=[1: finetune.lr: value is not valid YAML"),
    ],
)
def test_a_bad_set_is_one_line_naming_the_key(tmp_path, capsys, setting, expected):
    out = tmp_path / "store"
    argv = [
        "render",
        "synthetic:categories=mug,n=1",
        str(out),
        "--preset",
        "cpu",
        "--quiet",
        "--set",
        setting,
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("mvdecor: error: command line: ") and err.count("\n") == 1, err
    assert expected in err, err
    assert not out.exists()


def test_warnings_are_one_line_without_source_lines(tmp_path, capsys):
    import warnings

    mesh = tmp_path / "box.obj"
    mesh.write_text("mtllib missing.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    shown = warnings.showwarning
    assert main(["info", str(mesh)]) == 0
    err = capsys.readouterr().err
    assert "mvdecor: warning: " in err and "material library 'missing.mtl' not found" in err, err
    assert ".py:" not in err and "warnings.warn" not in err and err.count("\n") == 1, err
    assert warnings.showwarning is shown  # restored when the command ends


def test_finetune_nearest_prior_keeps_the_lookup_beside_the_network(tmp_path, capsys):
    # One finetune and one segment for the averaged pair (the cpu preset's): the network's config
    # records the prior, and segment finds the lookup in the run folder; the same as naming it by hand.
    import numpy as np
    import trimesh

    run = tmp_path / "ft"
    data = "synthetic:categories=mug,n=2,textured=0"
    common = ["--preset", "cpu", "--rings", "1", "--segments", "4", "--resolution", "32", "--backbone", "resnet18",
              "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(["finetune", data, str(run), "--labelled", "mug_0000", "--iterations", "2", "--ssl-weight",
                 "0", *common]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "banked the nearest labelled faces of scratch as the vote's prior (weight 0.5)" in printed
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert (written["segment"]["prior_method"], written["segment"]["transfer_prior"]) == ("nearest", 0.5)
    lookup = run / "nearest-prior" / "checkpoints" / "last.pt"
    assert lookup.is_file()
    assert (
        yaml.safe_load((run / "nearest-prior" / "config.yaml").read_text())["finetune"]["method"] == "nearest"
    )
    mesh = tmp_path / "cup.glb"
    trimesh.creation.cylinder(radius=0.4, height=1.0, sections=16).export(mesh)
    model = str(run / "checkpoints" / "last.pt")
    outputs = {}
    runs = {
        "auto": ["--model", model],
        "named": ["--model", model, "--prior-method", "nearest", "--prior-model", str(lookup), "--transfer-prior",
                  "0.5"],
        "prior_only": ["--model", model, "--transfer-prior", "1"],
        "lookup": ["--model", str(lookup)],
    }  # fmt: skip
    for name, options in runs.items():
        assert main(["segment", str(mesh), *options, "--out", str(tmp_path / name), "--no-report"]) == 0
        outputs[name] = np.loadtxt(tmp_path / name / "cup.labels.txt", dtype=int)
    np.testing.assert_array_equal(outputs["auto"], outputs["named"])
    # Weighting by certainty is the fixed average where both sources are equally decided; here it runs.
    assert main(["segment", str(mesh), "--model", model, "--prior-weighting", "certainty", "--out",
                 str(tmp_path / "certain"), "--no-report"]) == 0  # fmt: skip
    certain = np.loadtxt(tmp_path / "certain" / "cup.labels.txt", dtype=int)
    assert certain.shape == outputs["auto"].shape and certain.min() >= 0
    # At weight 1 the prior found beside the network decides alone: the lookup model's labels.
    np.testing.assert_array_equal(outputs["prior_only"], outputs["lookup"])
    # Label transfer from --references as a third voter beside the pair; its errors name the cause.
    refs = ["--references", data, "--reference-shapes", "mug_0000"]
    thirds = tmp_path / "thirds"
    assert main(["segment", str(mesh), "--model", model, *refs, "--transfer-vote", "equal", "--out", str(thirds),
                 "--no-report"]) == 0  # fmt: skip
    voted = np.loadtxt(thirds / "cup.labels.txt", dtype=int)
    assert voted.shape == outputs["auto"].shape and voted.min() >= 0
    # near: transfer's third fades with the distance to the references; far wider than the mesh, the thirds.
    wide = tmp_path / "near"
    assert main(["segment", str(mesh), "--model", model, *refs, "--transfer-vote", "near", "--transfer-vote-radius",
                 "1000", "--out", str(wide), "--no-report"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.loadtxt(wide / "cup.labels.txt", dtype=int), voted)
    # unseen: transfer labels only unseen faces far from every seen one; none lies farther than the mesh.
    hidden = tmp_path / "unseen"
    assert main(["segment", str(mesh), "--model", model, *refs, "--transfer-vote", "unseen",
                 "--unseen-transfer-distance", "1000", "--out", str(hidden), "--no-report"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.loadtxt(hidden / "cup.labels.txt", dtype=int), outputs["auto"])
    # Without --references, the shapes the model was fine-tuned on (its run.json names them).
    own = tmp_path / "own_references"
    assert main(["segment", str(mesh), "--model", model, "--transfer-vote", "equal", "--out", str(own),
                 "--no-report"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.loadtxt(own / "cup.labels.txt", dtype=int), voted)
    # A model without its run folder: nothing names them.
    alone = tmp_path / "alone" / "checkpoints"
    alone.mkdir(parents=True)
    shutil.copy(model, alone / "last.pt")
    shutil.copytree(run / "nearest-prior", alone.parent / "nearest-prior")
    capsys.readouterr()
    assert (
        main(["segment", str(mesh), "--model", str(alone / "last.pt"), "--transfer-vote", "equal", "--out",
              str(tmp_path / "none")]) == 1
    )  # fmt: skip
    error = capsys.readouterr().err
    assert "--transfer-vote equal needs --references" in error and "run.json" in error
    assert not (tmp_path / "none").exists()
    # A configuration that asks for a transfer vote: finetune keeps the references with the model,
    # and segment reads them there, with the dataset gone from where run.json says it is.
    kept_run = tmp_path / "kept"
    assert main(["finetune", data, str(kept_run), "--labelled", "mug_0000", "--iterations", "1", "--ssl-weight",
                 "0", *common, "--set", "segment.transfer_vote=equal"]) == 0  # fmt: skip
    assert "kept the labelled shapes for label transfer's vote" in capsys.readouterr().out
    assert (kept_run / "transfer-references.npz").is_file()
    kept_model = str(kept_run / "checkpoints" / "last.pt")
    named = tmp_path / "named_references"
    assert main(["segment", str(mesh), "--model", kept_model, *refs, "--transfer-vote", "equal", "--out",
                 str(named), "--no-report"]) == 0  # fmt: skip
    record = json.loads((kept_run / "run.json").read_text())
    (kept_run / "run.json").write_text(json.dumps({**record, "dataset": str(tmp_path / "gone")}))
    from_kept = tmp_path / "kept_references"
    assert main(["segment", str(mesh), "--model", kept_model, "--out", str(from_kept), "--no-report"]) == 0
    np.testing.assert_array_equal(
        np.loadtxt(from_kept / "cup.labels.txt", dtype=int), np.loadtxt(named / "cup.labels.txt", dtype=int)
    )
    # A model whose configuration asks for the protocol's leave-one-out choice: segment cannot make it.
    assert main(["finetune", data, str(tmp_path / "auto"), "--labelled", "mug_0000", "--iterations", "1",
                 "--ssl-weight", "0", *common, "--set", "segment.transfer_vote=auto"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["segment", str(mesh), "--model", str(tmp_path / "auto" / "checkpoints" / "last.pt"), "--out",
                 str(thirds)]) == 1  # fmt: skip
    assert "transfer_vote auto is decided by the few-shot protocol" in capsys.readouterr().err
    # Self-training: the banked lookup pseudo-labels the unlabelled shape before the network trains.
    assert main(["finetune", data, str(tmp_path / "self"), "--labelled", "mug_0000", "--iterations", "1",
                 "--ssl-weight", "0", *common, "--set", "finetune.pseudo_shapes=1"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "self" / "run.json").read_text())["pseudo_labelled_shapes"] == ["mug_0001"]
    assert (tmp_path / "self" / "nearest-prior" / "checkpoints" / "last.pt").is_file()
    # A configuration without the pair (as the paper preset's) gets it with --nearest-prior.
    alone = ["--set", "segment.prior_method=transfer", "--set", "segment.transfer_prior=0"]
    assert main(["finetune", data, str(tmp_path / "flag"), "--labelled", "mug_0000", "--iterations", "1",
                 "--ssl-weight", "0", *common, *alone, "--nearest-prior"]) == 0  # fmt: skip
    written = yaml.safe_load((tmp_path / "flag" / "config.yaml").read_text())
    assert (written["segment"]["prior_method"], written["segment"]["transfer_prior"]) == ("nearest", 0.5)
    assert (tmp_path / "flag" / "nearest-prior" / "checkpoints" / "last.pt").is_file()
    capsys.readouterr()
    assert main(["finetune", data, str(tmp_path / "nn"), "--labelled", "mug_0000", "--method", "nearest",
                 "--nearest-prior", *common]) == 1  # fmt: skip
    assert "--nearest-prior goes with --method network" in capsys.readouterr().err
