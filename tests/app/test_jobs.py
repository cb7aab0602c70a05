"""Segment the rest: the transfer job, its progress, predictions, accept, cancel, failure."""

from __future__ import annotations

import threading
import time

import numpy as np
import yaml
from app_helpers import TWO_BOX_LABELS, wait_for_job

from mvdecor.data.datasets import FolderDataset


def test_transfer_job_runs_to_the_end_and_saves_predictions_apart(client, folder):
    before = (folder / "a.labels.txt").read_bytes()
    started = client.post("/api/jobs", json={"method": "transfer", "options": {"samples": 500}})
    assert started.status_code == 200, started.text
    assert started.json()["state"] in ("running", "done")
    job = wait_for_job(client)
    assert job["state"] == "done", job
    assert job["done"] == job["total"] == 2 and sorted(job["predicted"]) == ["b", "c"]
    assert (folder / "a.labels.txt").read_bytes() == before  # user labels untouched
    assert not (folder / "b.labels.txt").exists()
    labels = np.load(folder / "predictions" / "b.labels.npy")
    confidence = np.load(folder / "predictions" / "b.confidence.npy")
    assert labels.shape == confidence.shape == (24,)
    assert (labels == TWO_BOX_LABELS).mean() > 0.9  # same two-box layout, slightly stretched
    assert ((confidence > 0) & (confidence <= 1)).all()
    meshes = {m["id"]: m for m in client.get("/api/meshes").json()["meshes"]}
    assert meshes["b"]["state"] == "predicted" and meshes["b"]["has_prediction"]
    loaded = client.get("/api/meshes/b").json()
    assert loaded["prediction"]["labels"] == labels.tolist()
    assert loaded["prediction"]["info"]["method"] == "transfer"


def test_accept_turns_a_prediction_into_labels(client, folder):
    client.post("/api/jobs", json={"method": "transfer", "options": {"samples": 0}})
    assert wait_for_job(client)["state"] == "done"
    version = client.get("/api/meshes/c").json()["version"]
    reply = client.post("/api/meshes/c/accept", json={"version": version})
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "corrected"
    predicted = np.load(folder / "predictions" / "c.labels.npy")
    assert FolderDataset(folder).load("c").face_labels.tolist() == predicted.tolist()
    assert client.post("/api/meshes/c/accept", json={"version": version}).status_code == 409
    assert client.post("/api/meshes/a/accept", json={"version": "x"}).status_code == 404  # no prediction
    # The accepted mesh is now a reference, so the next job does not overwrite its labels.
    client.post("/api/jobs", json={"method": "transfer", "options": {"samples": 0}})
    assert wait_for_job(client)["predicted"] == ["b"]


def test_a_job_without_labelled_meshes_fails_with_its_reason(client, folder):
    (folder / "a.labels.txt").unlink()
    client.post("/api/jobs", json={"method": "transfer"})
    job = wait_for_job(client)
    assert job["state"] == "failed" and "label at least one mesh" in job["error"]
    assert not (folder / "predictions").exists()


def test_unknown_methods_and_options_are_refused(client):
    assert client.post("/api/jobs", json={"method": "magic"}).status_code == 400
    reply = client.post("/api/jobs", json={"method": "transfer", "options": {"bogus": 1}})
    assert reply.status_code == 400 and "bogus" in reply.json()["error"]


def test_a_job_is_cancelled_and_one_runs_at_a_time(client):
    jobs = client.app.state.jobs
    release = threading.Event()

    def slow(progress):
        progress.update(total=100)
        for step in range(100):
            release.wait(5)
            progress.check()
            progress.update(done=step + 1)

    jobs.start("slow", slow)
    busy = client.post("/api/jobs", json={"method": "transfer"})
    assert busy.status_code == 409 and "already running" in busy.json()["error"]
    assert client.get("/api/jobs/current").json()["job"]["state"] == "running"
    assert client.post("/api/jobs/current/cancel", json={}).json()["job"]["id"] == 1
    release.set()
    job = wait_for_job(client)
    assert job["state"] == "cancelled" and job["done"] < 100


#: The smallest configuration the pipeline trains with (seconds on 2 CPU cores).
TINY_PIPELINE = {
    "render": {"rings": 2, "segments": 5, "resolution": 64},
    "model": {"backbone": "resnet18", "output_stride": 16, "head": "light"},
    "pretrain": {"iterations": 2, "pairs_per_batch": 1, "matches_per_pair": 64, "val_pairs": 0,
                 "checkpoint_every": 2, "log_every": 1, "num_workers": 0, "device": "cpu", "precision": "fp32"},
    "finetune": {"iterations": 2, "views_per_batch": 2, "checkpoint_every": 2, "log_every": 1,
                 "num_workers": 0, "device": "cpu", "ssl_weight": 0.0},
}  # fmt: skip


def test_the_full_pipeline_pretrains_finetunes_and_segments_the_rest(client, folder, one_thread):
    reply = client.post(
        "/api/jobs", json={"method": "pipeline", "options": {"overrides": TINY_PIPELINE, "targets": ["b"]}}
    )
    assert reply.status_code == 200, reply.text
    job = wait_for_job(client, timeout=300)
    assert job["state"] == "done", job
    assert job["predicted"] == ["b"]
    assert (folder / ".mvdecor-app" / "runs" / "pretrain" / "checkpoints" / "last.pt").is_file()
    # On the cpu preset the app keeps to the lookup alone (seconds a round), not the preset's pair.
    runs = folder / ".mvdecor-app" / "runs" / "finetune"
    assert yaml.safe_load((runs / "config.yaml").read_text())["finetune"]["method"] == "nearest"
    assert not (runs / "nearest-prior").exists()
    prediction = client.get("/api/meshes/b").json()["prediction"]
    assert prediction["info"]["method"] == "pipeline" and len(prediction["labels"]) == 24
    assert set(prediction["labels"]) <= {0, 1}
    # The app's folder still lists exactly its meshes (the runs folder is no shape).
    assert sorted(m["id"] for m in client.get("/api/meshes").json()["meshes"]) == ["a", "b", "c"]


def test_a_pipeline_that_pairs_the_network_with_the_lookup_banks_and_mixes_it(client, folder, one_thread):
    # finetune.method network with segment.prior_method nearest: the job banks the nearest
    # labelled faces beside the fine-tuned network and mixes them in; at weight 1 the saved
    # labels are the lookup's own.
    from mvdecor.app.folder import AppFolder
    from mvdecor.inference.segment import Segmenter

    overrides = {**TINY_PIPELINE, "finetune": {**TINY_PIPELINE["finetune"], "method": "network"},
                 "segment": {"prior_method": "nearest", "transfer_prior": 1.0}}  # fmt: skip
    reply = client.post(
        "/api/jobs", json={"method": "pipeline", "options": {"overrides": overrides, "targets": ["b"]}}
    )
    assert reply.status_code == 200, reply.text
    job = wait_for_job(client, timeout=300)
    assert job["state"] == "done", job
    lookup = folder / ".mvdecor-app" / "runs" / "finetune" / "nearest-prior" / "checkpoints" / "last.pt"
    assert lookup.is_file()
    expected = Segmenter.from_checkpoint(lookup).segment(AppFolder(folder).load_mesh("b")).face_labels
    assert client.get("/api/meshes/b").json()["prediction"]["labels"] == expected.tolist()


def test_two_apps_on_one_folder_do_not_run_jobs_at_once(folder):
    from fastapi.testclient import TestClient

    from mvdecor.app.server import create_app

    release = threading.Event()
    first, second = create_app(folder), create_app(folder)
    first.state.jobs.start("slow", lambda progress: release.wait(10))
    try:
        with TestClient(second, base_url="http://127.0.0.1") as client:
            reply = client.post("/api/jobs", json={"method": "transfer"})
            assert reply.status_code == 409 and "another mvdecor app" in reply.json()["error"]
    finally:
        release.set()
        first.state.jobs.wait(10)
    with TestClient(second, base_url="http://127.0.0.1") as client:
        client.post("/api/jobs", json={"method": "transfer", "options": {"samples": 0}})
        assert wait_for_job(client)["state"] == "done"


def test_the_pipeline_fine_tunes_on_painted_views_too(folder, one_thread):
    import base64
    import json

    from fastapi.testclient import TestClient

    from mvdecor.app.server import create_app
    from mvdecor.config import load_config

    render = load_config("cpu", TINY_PIPELINE).render  # the views the job's fine-tuning renders
    with TestClient(create_app(folder, view_render=render), base_url="http://127.0.0.1") as client:
        size = client.get("/api/meshes/b/views").json()["width"]
        painted = np.full((size, size), 255, np.uint8)
        painted[: size // 2] = 1  # the upper half of the picture: "back"
        reply = client.put(
            "/api/meshes/b/views/0/labels",
            json={"version": "none", "labels": base64.b64encode(painted.tobytes()).decode()},
        )
        assert reply.status_code == 200, reply.text
        client.post(
            "/api/jobs",
            json={"method": "pipeline", "options": {"overrides": TINY_PIPELINE, "targets": ["c"]}},
        )
        job = wait_for_job(client, timeout=300)
    assert job["state"] == "done", job
    runs = folder / ".mvdecor-app" / "runs"
    # Face-labelled "a" supervises through label images of all its views; "b" through its painted one.
    face_views = sorted((runs / "face_label_views" / "a").glob("view_*.png"))
    assert len(face_views) == render.num_views
    run = json.loads((runs / "finetune" / "run.json").read_text())
    assert run["labelled_views"] == render.num_views + 1 and run["labelled_shapes"] == ["a", "b"]
    info = json.loads((folder / "predictions" / "c.json").read_text())
    assert info["painted_views"] == 1


def test_cancel_stops_pre_training_within_a_step_with_a_checkpoint(client, folder, one_thread):
    from mvdecor.app.jobs import _unfinished
    from mvdecor.train.checkpoint import load_checkpoint

    overrides = {**TINY_PIPELINE, "pretrain": {**TINY_PIPELINE["pretrain"], "iterations": 400}}
    client.post("/api/jobs", json={"method": "pipeline", "options": {"overrides": overrides}})
    seen = None
    for _ in range(1200):
        seen = client.get("/api/jobs/current").json()["job"]
        if seen["step"] >= 2 or seen["state"] != "running":
            break
        time.sleep(0.1)
    assert seen["state"] == "running" and seen["message"].startswith("pre-training step"), seen
    assert seen["steps"] == 400
    client.post("/api/jobs/current/cancel", json={})
    job = wait_for_job(client, timeout=60)
    assert job["state"] == "cancelled", job
    saved = load_checkpoint(folder / ".mvdecor-app" / "runs" / "pretrain" / "checkpoints" / "last.pt")
    assert seen["step"] <= saved["step"] <= seen["step"] + 3  # stopped within a few steps
    assert _unfinished(saved)  # so the next job trains on from there instead of using it as it is
    assert not (folder / "predictions").exists()


def test_a_paired_pipeline_brings_label_transfer_as_the_configuration_asks(folder):
    # segment.transfer_vote with the pair: transfer from the folder's labelled meshes joins the
    # lookup, as `mvdecor segment --transfer-vote` makes it join.
    import pytest

    from mvdecor.app.folder import AppFolder
    from mvdecor.app.jobs import _reference_mesh, _with_transfer_vote
    from mvdecor.config import load_config
    from mvdecor.errors import ConfigError
    from mvdecor.inference.refine import TransferVoter

    app_folder = AppFolder(folder)
    lookup = object()  # stands in for the network's lookup, which is only carried
    names = list(app_folder.label_set()["names"])
    config = load_config("cpu", {"segment": {"transfer_vote": "unseen"}})
    voter = _with_transfer_vote(app_folder, config, lookup, ["a"], names)
    assert isinstance(voter, TransferVoter) and voter.joined and voter.prior is lookup
    # Transfer between identical meshes reproduces the labels.
    labelled = _reference_mesh(app_folder, "a")
    carried = voter.vote_probabilities(labelled).argmax(axis=1)
    np.testing.assert_array_equal(carried, labelled.face_labels)
    assert not _with_transfer_vote(app_folder, config, lookup, [], names).joined  # painted views only
    with pytest.raises(ConfigError, match="auto"):
        _with_transfer_vote(
            app_folder, load_config("cpu", {"segment": {"transfer_vote": "auto"}}), lookup, ["a"], names
        )
