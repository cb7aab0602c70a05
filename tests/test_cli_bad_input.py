"""Bad input on the command line: one clear line naming the option or file, exit 1, nothing written."""

from __future__ import annotations

import pytest

from mvdecor.cli import main

SQUARE_OFF = "OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n3 1 3 2\n"
DATASET = "synthetic:categories=mug,n=3,textured=0"


def _fails_cleanly(capsys, argv: list[str], *expected: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("mvdecor: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture
def square(tmp_path):
    mesh = tmp_path / "square.off"
    mesh.write_text(SQUARE_OFF)
    return mesh


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--num", "0"], ["--num must be at least 1, got 0"]),
        (["--resolution", "0"], ["command line", "render.resolution", "got 0"]),
        (["--resolution", "-1"], ["command line", "render.resolution", "got -1"]),
        (["--resolution", "100000"], ["command line", "render.resolution", "got 100000"]),
        (["--rings", "-1"], ["command line", "render.rings must be >= 1, got -1"]),
        (["--segments", "-3"], ["command line", "render.segments must be >= 1, got -3"]),
    ],
)
def test_views_rejects_bad_counts_and_sizes(tmp_path, capsys, square, extra, expected):
    out = tmp_path / "views"
    _fails_cleanly(capsys, ["views", str(square), str(out), "--preset", "cpu", *extra], *expected)
    assert not out.exists()


@pytest.mark.parametrize("resolution", ["0", "100000"])
def test_render_rejects_bad_resolution_before_writing(tmp_path, capsys, resolution):
    out = tmp_path / "store"
    argv = ["render", DATASET, str(out), "--preset", "cpu", "--resolution", resolution, "--quiet"]
    _fails_cleanly(capsys, argv, "render.resolution")
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--k", "0"], ["--k must be at least 1, got 0"]),
        (["--k", "99"], ["--k 99", "more labelled shapes than", "(3)"]),
        (["--iterations", "-1"], ["command line", "finetune.iterations must be >= 1, got -1"]),
        (["--views-per-shape", "-1"], ["--views-per-shape must be at least 0, got -1"]),
        (["--resolution", "0"], ["command line", "render.resolution"]),
    ],
)
def test_finetune_rejects_bad_counts(tmp_path, capsys, extra, expected):
    run = tmp_path / "ft"
    _fails_cleanly(capsys, ["finetune", DATASET, str(run), "--preset", "cpu", "--quiet", *extra], *expected)
    assert not run.exists()


def test_segment_rejects_negative_test_views(tmp_path, capsys, square):
    out = tmp_path / "seg"
    argv = ["segment", str(square), "--model", str(tmp_path / "model.pt"), "--out", str(out)]
    _fails_cleanly(capsys, [*argv, "--test-rings", "-1"], "--test-rings must be at least 0, got -1")
    _fails_cleanly(capsys, [*argv, "--test-segments", "-2"], "--test-segments must be at least 0, got -2")
    _fails_cleanly(capsys, [*argv, "--test-resolution", "-8"], "--test-resolution must be at least 0, got -8")
    assert not out.exists()


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("render:\n  distance_scale: 5\n", "render.distance_scale must be a list such as [0.7, 1.0], got 5"),
        (
            "model:\n  modalities: grey\n",
            "model.modalities must be a list such as [grey, normal], got 'grey'",
        ),
        ("render:\n  resolution: 64.9\n", "render.resolution must be an integer, got 64.9"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path, capsys, square, yaml_text, expected):
    config = tmp_path / "mine.yaml"
    config.write_text("preset: cpu\n" + yaml_text)
    out = tmp_path / "views"
    _fails_cleanly(capsys, ["views", str(square), str(out), "--config", str(config)], str(config), expected)
    assert not out.exists()


def test_a_huge_label_value_is_rejected_before_anything_grows(tmp_path, capsys, square):
    labels = tmp_path / "l.txt"
    labels.write_text("0\n1000000000\n")
    _fails_cleanly(
        capsys, ["info", str(square), "--labels", str(labels)], str(labels), "label 1000000000 is too large"
    )


def test_a_huge_label_value_in_a_folder_dataset_is_named(tmp_path, capsys):
    folder = tmp_path / "shapes"
    folder.mkdir()
    for name, top in (("a", 1), ("b", 1_000_000_000)):
        (folder / f"{name}.off").write_text(SQUARE_OFF)
        (folder / f"{name}.txt").write_text(f"0\n{top}\n")
    run = tmp_path / "ft"
    argv = ["finetune", str(folder), str(run), "--preset", "cpu", "--labelled", "a", "b", "--quiet"]
    _fails_cleanly(capsys, argv, "b.txt", "too large")
    assert not run.exists()


def test_a_mesh_of_zero_area_faces_is_rejected_when_read(tmp_path, capsys):
    flat = tmp_path / "flat.off"
    flat.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    out = tmp_path / "views"
    _fails_cleanly(capsys, ["views", str(flat), str(out), "--preset", "cpu"], str(flat), "zero area")
    assert not out.exists()


def test_a_mesh_no_view_sees_is_an_error_naming_it(tmp_path):
    import numpy as np

    from mvdecor.config import load_config
    from mvdecor.data.mesh import LabelledMesh
    from mvdecor.errors import InvalidMeshError
    from mvdecor.inference.segment import Segmenter
    from mvdecor.models.embedding import SegmentationNet
    from mvdecor.models.inputs import ChannelStats

    # One vertex at 1e30: once fitted into the unit sphere, the square is a point no ray hits.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1e30, 0, 0]], float)
    faces = np.array([[0, 1, 2], [1, 3, 2], [1, 4, 3]])
    mesh = LabelledMesh(vertices, faces, name="far", source=str(tmp_path / "far.obj")).normalized()
    config = load_config("cpu", {"render": {"rings": 1, "segments": 2, "resolution": 16}})
    from mvdecor.models.embedding import EmbeddingNet

    net = SegmentationNet(EmbeddingNet("resnet18", in_channels=5, embed_dim=8, head="light"), num_classes=2)
    stats = ChannelStats(np.zeros(5, np.float32), np.ones(5, np.float32), ("grey", "normal", "depth"))
    segmenter = Segmenter(net, stats, config, ("a", "b"))
    with pytest.raises(InvalidMeshError, match="no view sees any face") as info:
        segmenter.segment(mesh)
    assert "far.obj" in str(info.value)


TINY_TRAINING = ["--preset", "cpu", "--rings", "1", "--segments", "2", "--resolution", "32",
                 "--backbone", "resnet18", "--head", "light", "--iterations", "1", "--ssl-weight", "0",
                 "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """The checkpoint `mvdecor finetune` writes, after one step: 4 views of 32x32, resnet18, light head."""
    run = tmp_path_factory.mktemp("finetuned") / "ft"
    argv = ["finetune", DATASET, str(run), "--labelled", "mug_0000", *TINY_TRAINING]
    assert main(argv) == 0
    return run / "checkpoints" / "last.pt"


def test_finetune_from_a_finetuned_checkpoint_says_what_to_pass(tmp_path, capsys, finetuned):
    run = tmp_path / "again"
    argv = ["finetune", DATASET, str(run), "--labelled", "mug_0000", "--init", str(finetuned), *TINY_TRAINING]
    err = _fails_cleanly(
        capsys, argv, str(finetuned), "fine-tuned segmentation checkpoint", "mvdecor pretrain", "--init"
    )
    assert len(err) < 400, err
    assert not run.exists()
    out = tmp_path / "accuracy.json"
    argv = ["evaluate-embedding", str(finetuned), DATASET, "--out", str(out)]
    _fails_cleanly(capsys, argv, str(finetuned), "fine-tuned segmentation checkpoint", "mvdecor pretrain")
    assert not out.exists()
    folder = tmp_path / "fewshot"
    argv = ["fewshot", DATASET, str(folder), "--k", "1", "--runs", "1", "--init", str(finetuned), "--quiet"]
    _fails_cleanly(capsys, argv, str(finetuned), "fine-tuned segmentation checkpoint")
    assert not folder.exists()  # not even split.json


def test_a_checkpoint_that_does_not_fit_its_network_is_summarised(tmp_path, capsys, finetuned, square):
    from mvdecor.train.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(finetuned)
    payload["config"]["model"]["backbone"] = "resnet34"  # more blocks than the weights have
    bad = save_checkpoint(tmp_path / "bad.pt", payload)
    out = tmp_path / "seg"
    argv = ["segment", str(square), "--model", str(bad), "--out", str(out)]
    err = _fails_cleanly(capsys, argv, str(bad), "does not fit its configuration", "missing keys (")
    assert len(err) < 400 and "state_dict" not in err, err
    assert not out.exists()
