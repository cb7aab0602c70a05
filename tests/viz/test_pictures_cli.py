"""`mvdecor pictures`: curves, Fig. 3 and segmentation pictures written for tiny runs."""

from __future__ import annotations

from argparse import Namespace
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from mvdecor.cli import main
from mvdecor.config import load_config
from mvdecor.data.datasets import open_dataset
from mvdecor.train.finetune import finetune, finetune_nearest_prior
from mvdecor.train.pretrain import pretrain

DATASET = "synthetic:categories=mug,n=2,textured=0"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A one-step pre-training run and an untrained fine-tuning checkpoint: 6 views of 32x32, resnet18."""
    root = tmp_path_factory.mktemp("runs")
    config = load_config("cpu")
    config = replace(
        config,
        render=replace(config.render, rings=1, segments=4, resolution=32),
        model=replace(config.model, backbone="resnet18", output_stride=16, imagenet_checkpoint=""),
        pretrain=replace(
            config.pretrain,
            iterations=1,
            pairs_per_batch=1,
            matches_per_pair=64,
            val_pairs=1,
            log_every=1,
            num_workers=0,
            device="cpu",
        ),
        finetune=replace(
            config.finetune,
            iterations=1,
            views_per_batch=2,
            log_every=1,
            num_workers=0,
            device="cpu",
            ssl_weight=0.0,
        ),
    )
    pre = pretrain(config, DATASET, root / "pretrain", progress=False)
    # No fine-tuning step: the pictures need a segmentation checkpoint, not a good one.
    fine = finetune(
        config, DATASET, root / "finetune", labelled_shapes=["mug_0000"], progress=False, stop_after=0
    )
    return root, pre.last_checkpoint, fine.last_checkpoint


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_pictures_help_names_every_kind(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pictures", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for kind in ("curves", "embeddings", "segmentation"):
        assert kind in out
    for kind in ("curves", "embeddings", "segmentation"):
        with pytest.raises(SystemExit):
            main(["pictures", kind, "--help"])
        assert "usage: mvdecor pictures" in capsys.readouterr().out


def test_curves_command_writes_the_png_and_fails_clearly(runs, tmp_path, capsys):
    root, _, _ = runs
    assert main(["pictures", "curves", str(root / "pretrain")]) == 0
    assert png_size(root / "pretrain" / "curves.png")[0] > 600
    csv = tmp_path / "finetune_metrics.csv"
    csv.write_text("step,loss_ce,loss_ssl,pixel_accuracy,lr\n1,2.0,0.0,0.3,0.01\n2,1.5,0.0,0.4,0.005\n")
    assert main(["pictures", "curves", str(csv), "--out", str(tmp_path / "ft.png")]) == 0
    assert (tmp_path / "ft.png").is_file()
    capsys.readouterr()
    assert main(["pictures", "curves", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mvdecor: error: ") and "missing" in err and "Traceback" not in err


def test_embeddings_command_writes_fig3_for_two_shapes_and_for_a_mesh(runs, tmp_path, capsys):
    _, pre_ckpt, fine_ckpt = runs
    out = tmp_path / "fig3.png"
    args = [
        "pictures",
        "embeddings",
        str(pre_ckpt),
        DATASET,
        "--source",
        "mug_0000:1",
        "--target",
        "mug_0001:2",
    ]
    assert main([*args, "--out", str(out), "--threshold", "0.5"]) == 0
    width, height = png_size(out)
    assert width >= 5 * 160 and height > 160
    assert "mean best similarity" in capsys.readouterr().out
    # A single mesh file (views given by index only) and a fine-tuned checkpoint's embedding network.
    mesh = open_dataset(DATASET).load("mug_0000")
    off = tmp_path / "mug.off"
    lines = [f"OFF\n{mesh.num_vertices} {mesh.num_faces} 0"]
    lines += [" ".join(f"{x:.6f}" for x in v) for v in mesh.vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    off.write_text("\n".join(lines) + "\n")
    out2 = tmp_path / "fig3_mesh.png"
    assert main(["pictures", "embeddings", str(fine_ckpt), str(off), "--source", "0", "--target", "3",
                 "--out", str(out2), "--colors", "ramp"]) == 0  # fmt: skip
    assert out2.is_file()
    capsys.readouterr()
    assert main([*args[:4], "--source", "mug_0000:99", "--target", "mug_0001:2", "--out", str(out)]) == 1
    assert "out of range" in capsys.readouterr().err
    assert main([*args[:4], "--source", "nope:1", "--target", "mug_0001:2", "--out", str(out)]) == 1
    assert "no shape 'nope'" in capsys.readouterr().err


def test_segmentation_command_writes_labels_and_vote_weights(runs, tmp_path, capsys):
    _, _, fine_ckpt = runs
    mesh = open_dataset(DATASET).load("mug_0001")
    off, labels = tmp_path / "mug_0001.off", tmp_path / "mug_0001.txt"
    lines = [f"OFF\n{mesh.num_vertices} {mesh.num_faces} 0"]
    lines += [" ".join(f"{x:.6f}" for x in v) for v in mesh.vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    off.write_text("\n".join(lines) + "\n")
    np.savetxt(labels, mesh.face_labels, fmt="%d")
    out = tmp_path / "pics"
    code = main(["pictures", "segmentation", str(off), "--model", str(fine_ckpt), "--labels", str(labels),
                 "--out", str(out), "--views", "3"])  # fmt: skip
    assert code == 0
    assert png_size(out / "mug_0001.labels.png")[0] >= 3 * 128  # colour | ground truth | prediction
    assert png_size(out / "mug_0001.vote_weights.png")[0] >= 3 * 128  # three views
    # The cpu preset pairs the network with its lookup: without one beside it, the network alone.
    assert "no lookup beside the model" in capsys.readouterr().err


def test_segmentation_pictures_of_a_paired_model_use_its_lookup(runs, tmp_path, capsys):
    import shutil

    from mvdecor.cli.pictures import _paired_lookup
    from mvdecor.inference.segment import Segmenter

    root, _, fine_ckpt = runs
    # A copy of the network's run folder, so that the lookup banked beside it stays in this test.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = shutil.copy(fine_ckpt, run / "checkpoints" / "last.pt")
    segmenter = Segmenter.from_checkpoint(model)
    args = Namespace(model=str(model), device="cpu", exclude_classes=[])
    assert _paired_lookup(segmenter, args) is None  # nothing banked beside it yet
    config = load_config(str(root / "finetune" / "config.yaml"))
    finetune_nearest_prior(config, DATASET, run, labelled_shapes=["mug_0000"], progress=False)
    lookup = _paired_lookup(segmenter, args)
    assert lookup is not None and lookup.segmenter.pools_faces
    # At weight 1 the pair's labels are the lookup's own.
    mesh = open_dataset(DATASET).load("mug_0001")
    segmenter.config = replace(
        segmenter.config, segment=replace(segmenter.config.segment, transfer_prior=1.0)
    )
    np.testing.assert_array_equal(
        segmenter.segment(mesh, transfer=_paired_lookup(segmenter, args)).face_labels,
        lookup.segmenter.segment(mesh).face_labels,
    )
    off = tmp_path / "mug_0001.off"
    lines = [f"OFF\n{mesh.num_vertices} {mesh.num_faces} 0"]
    lines += [" ".join(f"{x:.6f}" for x in v) for v in mesh.vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    off.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    pictures = ["pictures", "segmentation", str(off), "--model", str(model), "--out", str(tmp_path / "pics")]
    assert main([*pictures, "--views", "2"]) == 0
    printed = capsys.readouterr().err
    assert "no lookup beside" not in printed
    # The preset's transfer vote needs the labelled shapes, which this copy of the run lacks.
    assert "needs --references" in printed and "without transfer's vote" in printed
    assert (tmp_path / "pics" / "mug_0001.labels.png").is_file()
