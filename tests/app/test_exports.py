"""Exports: coloured GLB and PLY, label files, face indices per label, one mesh per part."""

from __future__ import annotations

import json

import numpy as np
import trimesh
from app_helpers import TWO_BOX_LABELS, wait_for_job

from mvdecor.data.io import load_labels, load_mesh


def test_export_of_saved_labels_is_written_and_reads_back(client, folder):
    reply = client.post("/api/meshes/a/export", json={"source": "labels"})
    assert reply.status_code == 200, reply.text
    files = reply.json()["files"]
    out = folder / "exports" / "a"
    assert reply.json()["folder"] == "exports/a"
    for key in ("labels_txt", "labels_npy", "ply", "glb", "parts_json", "part:seat", "part:back"):
        assert (folder / files[key]).is_file(), key
    assert load_labels(out / "a.labels.txt").tolist() == TWO_BOX_LABELS.tolist()
    assert np.load(out / "a.labels.npy").tolist() == TWO_BOX_LABELS.tolist()
    ply = load_mesh(out / "a.ply")
    assert ply.num_faces == 24
    scene = trimesh.load(out / "a.glb", force="scene")
    assert sorted(scene.geometry) == ["back", "seat"]
    assert sum(len(g.faces) for g in scene.geometry.values()) == 24
    parts = json.loads((out / "a.parts.json").read_text())
    assert parts == {"seat": list(range(12)), "back": list(range(12, 24))}
    seat = load_mesh(out / "parts" / "0_seat.ply")
    assert seat.num_faces == 12 and seat.num_vertices == 8
    # The downloads endpoint serves them.
    assert client.get(f"/api/files/{files['ply']}").content == (out / "a.ply").read_bytes()


def test_export_of_a_prediction_includes_its_confidence(client, folder):
    assert client.post("/api/meshes/b/export", json={"source": "prediction"}).status_code == 404
    assert client.post("/api/meshes/b/export", json={"source": "labels"}).status_code == 404
    client.post("/api/jobs", json={"method": "transfer", "options": {"samples": 0}})
    assert wait_for_job(client)["state"] == "done"
    reply = client.post("/api/meshes/b/export", json={"source": "prediction"})
    assert reply.status_code == 200, reply.text
    confidence = np.load(folder / reply.json()["files"]["confidence_npy"])
    assert confidence.shape == (24,)
    assert load_mesh(folder / reply.json()["files"]["ply"]).num_faces == 24
