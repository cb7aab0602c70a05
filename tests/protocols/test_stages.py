"""The one stage cache: reuse with the same settings, a fresh start with others, checkpoints by content."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mvdecor.config import load_config
from mvdecor.models.checkpoints import save_checkpoint
from mvdecor.protocols import fewshot
from mvdecor.protocols.fewshot import cached_fewshot, lookup_settings, run_fewshot, training_settings
from mvdecor.protocols.stages import (
    STAGE_RECORD,
    config_sections,
    finish_stage,
    finished_stage,
    init_identity,
    json_safe,
    open_stage,
    same_settings,
    without_new_defaults,
)

SETTINGS = {"dataset": "d", "shapes": ("a", "b"), "lr": 1e-3}


def test_json_safe_gives_what_json_reads_back():
    value = {"t": (1, 2), "p": Path("x/y"), "f": np.float32(0.5), "i": np.int64(3), "nan": math.nan, 4: "k"}
    safe = json_safe(value)
    assert safe == {"t": [1, 2], "p": "x/y", "f": 0.5, "i": 3, "nan": None, "4": "k"}
    assert json.loads(json.dumps(safe)) == safe


def test_config_sections_leave_out_where_and_how_fast_it_runs():
    config = load_config("cpu")
    sections = config_sections(config, ("finetune", "render"))
    assert set(sections) == {"finetune", "render"}
    assert "device" not in sections["finetune"] and "num_workers" not in sections["finetune"]
    moved = replace(config, finetune=replace(config.finetune, device="cpu", num_workers=5))
    assert config_sections(moved, ("finetune",)) == config_sections(config, ("finetune",))
    assert config_sections(moved, ("finetune",))["finetune"]["lr"] == config.finetune.lr


def test_a_record_from_before_an_option_existed_matches_that_option_at_its_default(tmp_path):
    config = load_config("cpu")
    wanted = {
        "seed": 1,
        "training": config_sections(config, ("finetune",)),
        **config_sections(config, ("segment",)),
    }
    older = json_safe(wanted)
    del older["training"]["finetune"]["class_balance"], older["segment"]["flip"]  # fmt: skip
    assert same_settings(older, wanted)
    # The option set away from its default is a change, as is any other key the record lacks.
    balanced = replace(config, finetune=replace(config.finetune, class_balance=0.5))
    assert not same_settings(older, {**wanted, "training": config_sections(balanced, ("finetune",))})
    mirrored = replace(config, segment=replace(config.segment, flip=True))
    assert not same_settings(older, {**wanted, **config_sections(mirrored, ("segment",))})
    assert not same_settings({k: v for k, v in older.items() if k != "seed"}, wanted)
    assert without_new_defaults({"a": {"b": 1}}, {"a": {"b": 1, "c": 0}, "d": 2}, {"a": {"c": 0}}) == {
        "a": {"b": 1},
        "d": 2,
    }
    # A stage recorded before the option existed is reused, not emptied.
    folder = tmp_path / "stage"
    open_stage(folder, older)
    finish_stage(folder, older, {"score": 0.5})
    assert open_stage(folder, wanted) == {"score": 0.5}


def test_a_stage_is_reused_resumed_or_started_afresh(tmp_path):
    folder = tmp_path / "stage"
    assert open_stage(folder, SETTINGS) is None  # new: the folder is made, the settings recorded
    assert json.loads((folder / STAGE_RECORD).read_text()) == {"settings": json_safe(SETTINGS)}
    (folder / "checkpoint.pt").write_text("partial")
    # Unfinished, same settings: kept, so the stage resumes from what it left.
    assert open_stage(folder, dict(SETTINGS)) is None and (folder / "checkpoint.pt").is_file()
    finish_stage(folder, SETTINGS, {"score": 0.5})
    assert finished_stage(folder, SETTINGS) == {"score": 0.5}
    assert open_stage(folder, SETTINGS) == {"score": 0.5}
    # Other settings: the folder is emptied first, never resumed.
    other = {**SETTINGS, "lr": 5e-4}
    assert finished_stage(folder, other) is None
    assert open_stage(folder, other) is None
    assert sorted(p.name for p in folder.iterdir()) == [STAGE_RECORD]
    assert finished_stage(folder, SETTINGS) is None


def test_an_unrecorded_folder_is_emptied_unless_adopted(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "last.pt").write_text("old run")
    assert open_stage(legacy, SETTINGS, adopt_unrecorded=True) is None
    assert (legacy / "last.pt").is_file()
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "junk").write_text("x")
    assert open_stage(stray, SETTINGS) is None
    assert not (stray / "junk").exists()
    # A damaged record counts as other settings.
    (stray / STAGE_RECORD).write_text("{not json")
    (stray / "junk").write_text("x")
    assert open_stage(stray, SETTINGS) is None and not (stray / "junk").exists()


def _fake_embedding(path: Path, step: int, lr: float) -> Path:
    config = load_config("cpu")
    config = replace(config, pretrain=replace(config.pretrain, lr=lr))
    return save_checkpoint(path, {"model": {"w": torch.zeros(1)}, "config": config.to_dict(), "step": step})


def test_a_checkpoint_is_identified_by_what_it_holds_not_its_path(tmp_path):
    assert init_identity("scratch") == "scratch"
    assert init_identity(tmp_path / "missing.pt") == str(tmp_path / "missing.pt")
    path = _fake_embedding(tmp_path / "last.pt", step=10, lr=1e-3)
    first = init_identity(path)
    assert first["checkpoint"] == str(path) and first["step"] == 10 and first["pretrain"]["lr"] == 1e-3
    assert "device" not in first["pretrain"]
    assert init_identity(path) == first
    _fake_embedding(path, step=20, lr=1e-3)  # the same path, trained longer
    assert init_identity(path) != first
    _fake_embedding(path, step=10, lr=5e-4)  # the same path and step, other settings
    assert init_identity(path) != first


def test_protocol_results_are_not_reused_after_the_pretrained_checkpoint_changed(tmp_path, monkeypatch):
    config = load_config("cpu")
    init = _fake_embedding(tmp_path / "last.pt", step=10, lr=1e-3)
    setting = dict(method="mvdecor", k=1, runs=1, train_shapes=["a", "b"], test_shapes=["c"])
    record = {"runs": 1, "train_shapes": ["a", "b"], "test_shapes": ["c"], "seed": 0,
              "training": training_settings(config, init), "refinements": {}}  # fmt: skip
    (tmp_path / "results_mvdecor_k1.json").write_text(json.dumps(json_safe(record)))
    assert cached_fewshot(config, tmp_path, init=init, **setting) is not None
    assert cached_fewshot(config, tmp_path, init=init, seed=1, **setting) is None  # another draw
    _fake_embedding(init, step=20, lr=1e-3)
    assert cached_fewshot(config, tmp_path, init=init, **setting) is None
    # A record written before checkpoints were identified by content names the path only.
    legacy = {**record, "training": {**record["training"], "init": str(init)}}
    legacy.pop("seed")
    (tmp_path / "results_mvdecor_k1.json").write_text(json.dumps(json_safe(legacy)))
    assert cached_fewshot(config, tmp_path, init=init, **setting) is not None
    monkeypatch.setattr(fewshot, "run_fewshot", lambda *a, **k: {"ran": True})
    assert fewshot.run_fewshot_cached(config, "d", tmp_path, init=tmp_path / "x.pt", **setting) == {
        "ran": True
    }


def test_a_fine_tuning_run_left_by_other_settings_starts_afresh(tmp_path):
    from mvdecor.train.checkpoint import load_checkpoint

    config = load_config(
        "cpu",
        {
            "render": {"rings": 1, "segments": 4, "resolution": 32},
            # A trained run, whatever the preset's method (nearest labelled pixels train nothing).
            "finetune": {
                "method": "network",
                "iterations": 2,
                "ssl_weight": 0.0,
                "device": "cpu",
                "log_every": 1,
            },
        },
    )
    dataset = "synthetic:categories=mug,n=3,textured=0"
    setting = dict(train_shapes=["mug_0000", "mug_0001"], test_shapes=["mug_0002"], k=1, runs=1,
                   progress=False, keep_checkpoints="all")  # fmt: skip
    run_fewshot(config, dataset, tmp_path, **setting)
    run_dir = tmp_path / "scratch_k1_run0"
    assert finished_stage(run_dir, json.loads((run_dir / STAGE_RECORD).read_text())["settings"])
    other = replace(config, finetune=replace(config.finetune, lr=config.finetune.lr / 2))
    run_fewshot(other, dataset, tmp_path, **setting)
    # Trained again under the new rate, not resumed at (and stopped by) the old run's last step.
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(float(r["step"])) for r in rows] == [1, 2]
    assert float(rows[0]["lr"]) == other.finetune.lr
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert saved["config"]["finetune"]["lr"] == other.finetune.lr
    recorded = json.loads((run_dir / STAGE_RECORD).read_text())
    assert recorded["settings"]["training"]["finetune"]["lr"] == other.finetune.lr
    assert recorded["result"]["step"] == 2
    # A record that also holds settings a trained run never reads (as records once did) keeps the run.
    recorded["settings"]["training"]["finetune"]["nearest_neighbours"] = 3
    (run_dir / STAGE_RECORD).write_text(json.dumps(recorded))
    (run_dir / "kept.txt").write_text("")
    run_fewshot(other, dataset, tmp_path, **setting)
    assert (run_dir / "kept.txt").is_file()
    assert (
        "nearest_neighbours"
        not in json.loads((run_dir / STAGE_RECORD).read_text())["settings"]["training"]["finetune"]
    )


def test_a_record_differing_only_in_what_its_work_never_read_is_restated_and_kept(tmp_path):
    from mvdecor.protocols.stages import restate_record

    def read(settings):  # the work reads everything but "unused"
        return {k: v for k, v in settings.items() if k != "unused"}

    folder = tmp_path / "stage"
    old = {**SETTINGS, "unused": 1}
    open_stage(folder, old)
    finish_stage(folder, old, {"loss": 0.5})
    (folder / "weights.pt").write_text("w")
    new = {**SETTINGS, "unused": 2}
    restate_record(folder, new, read)
    assert json.loads((folder / STAGE_RECORD).read_text())["settings"] == json_safe(new)
    assert open_stage(folder, new) == {"loss": 0.5} and (folder / "weights.pt").is_file()
    # A setting the work reads: the record stays as it is, and the stage starts afresh.
    other = {**new, "lr": 5e-4}
    restate_record(folder, other, read)
    assert json.loads((folder / STAGE_RECORD).read_text())["settings"] == json_safe(new)
    assert open_stage(folder, other) is None and not (folder / "weights.pt").exists()
    restate_record(tmp_path / "nothing-here", new, read)  # no record: nothing to do
    assert not (tmp_path / "nothing-here").exists()


def test_protocol_runs_compare_only_the_finetune_settings_their_method_reads(tmp_path, monkeypatch):
    config = load_config("cpu", {"finetune": {"method": "nearest"}})
    init = _fake_embedding(tmp_path / "last.pt", step=10, lr=1e-3)
    recorded = training_settings(config, init)["finetune"]
    assert "nearest_neighbours" in recorded and "seed" in recorded and "lr" not in recorded
    setting = dict(method="mvdecor", k=1, runs=1, train_shapes=["a", "b"], test_shapes=["c"])
    # A results file written when records held every fine-tuning setting.
    full = {"init": init_identity(init), **config_sections(config, ("model", "render", "finetune"))}
    record = {"runs": 1, "train_shapes": ["a", "b"], "test_shapes": ["c"], "seed": 0, "training": full,
              "refinements": {}}  # fmt: skip
    (tmp_path / "results_mvdecor_k1.json").write_text(json.dumps(json_safe(record)))

    def with_finetune(**changes):
        return replace(config, finetune=replace(config.finetune, **changes))

    # Training settings a nearest run never reads: the finished results are reused.
    assert cached_fewshot(with_finetune(lr=5e-4, iterations=7), tmp_path, init=init, **setting) is not None
    # What it reads: not.
    assert cached_fewshot(with_finetune(nearest_neighbours=3), tmp_path, init=init, **setting) is None
    assert cached_fewshot(with_finetune(val_views=2), tmp_path, init=init, **setting) is None
    # A trained run reads no nearest_* setting, and every training one.
    trained = with_finetune(method="network")
    record["training"] = {
        "init": init_identity(init),
        **config_sections(trained, ("model", "render", "finetune")),
    }
    (tmp_path / "results_mvdecor_k1.json").write_text(json.dumps(json_safe(record)))
    assert "nearest_neighbours" not in training_settings(trained, init)["finetune"]
    changed = replace(trained, finetune=replace(trained.finetune, nearest_neighbours=3))
    assert cached_fewshot(changed, tmp_path, init=init, **setting) is not None
    changed = replace(trained, finetune=replace(trained.finetune, lr=5e-4))
    assert cached_fewshot(changed, tmp_path, init=init, **setting) is None
    # ...but the preset's pair votes with a lookup made by the nearest_* settings: once a results
    # file records them, they decide whether it is reused (one without the record matches any).
    paired = replace(trained, segment=load_config("cpu").segment)
    assert paired.segment.prior_method == "nearest" and paired.segment.transfer_prior > 0
    assert lookup_settings(trained, init) is None  # the network alone reads no lookup
    assert lookup_settings(trained, init, {"pair": {"transfer_prior": 0.5, "prior_method": "nearest"}})
    record["lookup"] = lookup_settings(paired, init)
    assert record["lookup"]["nearest_neighbours"] == paired.finetune.nearest_neighbours
    assert "lr" not in record["lookup"]
    (tmp_path / "results_mvdecor_k1.json").write_text(json.dumps(json_safe(record)))
    assert cached_fewshot(paired, tmp_path, init=init, **setting) is not None
    changed = replace(paired, finetune=replace(paired.finetune, nearest_neighbours=3))
    assert cached_fewshot(changed, tmp_path, init=init, **setting) is None
