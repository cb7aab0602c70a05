"""Training curves from MetricLogger CSV files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mvdecor.errors import FileError
from mvdecor.train.logs import MetricLogger
from mvdecor.viz.curves import curve_panels, plot_training_curves, read_metric_csv


def write_run(run_dir, steps: int = 12) -> None:
    """A pre-training-like run folder: metrics.csv with loss, lr, accuracy; val.csv with val_loss, lr."""
    logger = MetricLogger(run_dir, "metrics", tensorboard=False)
    val = MetricLogger(run_dir, "val", tensorboard=False)
    for step in range(1, steps + 1):
        logger.log(step, loss=3.0 / step, lr=1e-3 * 0.9**step, it_per_s=5.0)
        if step % 4 == 0:
            val.log(step, val_loss=3.2 / step, lr=1e-3 * 0.9**step)
            logger.log(step, **{"acc@2px": 0.1 * step / 4, "acc@5px": 0.2 * step / 4})
    logger.close()
    val.close()


def test_curves_png_for_a_run_with_loss_lr_and_accuracy(tmp_path):
    write_run(tmp_path / "run")
    panels = curve_panels(tmp_path / "run")
    assert [title for title, _, _ in panels] == ["loss", "learning rate", "accuracy / mIoU"]
    names = {title: [c.name for c in curves] for title, _, curves in panels}
    assert names["loss"] == ["loss", "val_loss"] and names["learning rate"] == ["lr"]
    assert names["accuracy / mIoU"] == ["acc@2px", "acc@5px"]
    assert dict((t, s) for t, s, _ in panels)["learning rate"] == "log"
    out = plot_training_curves(tmp_path / "run", tmp_path / "pictures" / "curves.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 3 * 300 and image.height > 200
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # lines and text, not a blank page


def test_a_single_csv_with_empty_cells(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,loss_ce,pixel_accuracy,lr\n1,2.0,,0.01\n2,1.5,0.4,0.01\n3,nan,0.5,0.005\n")
    curves = {c.name: c for c in read_metric_csv(csv)}
    np.testing.assert_array_equal(curves["loss_ce"].steps, [1, 2])
    np.testing.assert_array_equal(curves["pixel_accuracy"].values, [0.4, 0.5])
    assert plot_training_curves(csv, tmp_path / "c.png").is_file()


def test_missing_or_empty_csv_is_a_clear_error_naming_the_file(tmp_path):
    with pytest.raises(FileError, match=r"nope\.csv: no such metrics file"):
        plot_training_curves(tmp_path / "nope.csv", tmp_path / "c.png")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FileError, match=r"empty\.csv"):
        plot_training_curves(empty, tmp_path / "c.png")
    header_only = tmp_path / "header.csv"
    header_only.write_text("step,loss,lr\n")
    with pytest.raises(FileError, match=r"header\.csv: no loss, learning-rate or accuracy column"):
        plot_training_curves(header_only, tmp_path / "c.png")
    throughput_only = tmp_path / "speed.csv"
    throughput_only.write_text("step,it_per_s\n1,3.0\n")
    with pytest.raises(FileError, match=r"speed\.csv"):
        plot_training_curves(throughput_only, tmp_path / "c.png")
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(FileError, match=r"metrics\.csv"):
        plot_training_curves(tmp_path / "not_a_run", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
