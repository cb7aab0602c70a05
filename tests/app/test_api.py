"""The labelling app's API: list, load, versioned atomic saves, the label set, broken meshes."""

from __future__ import annotations

import base64
import json

import numpy as np
from app_helpers import TWO_BOX_LABELS, write_off

from mvdecor.data.datasets import FolderDataset


def _array(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<"))


def test_list_shows_every_mesh_with_its_state(client):
    meshes = {m["id"]: m for m in client.get("/api/meshes").json()["meshes"]}
    assert set(meshes) == {"a", "b", "c"}
    assert meshes["a"]["state"] == "labelled" and meshes["a"]["labelled_faces"] == 24
    assert meshes["b"]["state"] == "unlabelled" and meshes["b"]["faces"] == 24
    assert meshes["c"]["error"] is None


def test_load_gives_geometry_labels_version_and_adjacency(client):
    data = client.get("/api/meshes/a").json()
    vertices, faces = _array(data["vertices"], "float32"), _array(data["faces"], "uint32")
    assert vertices.shape == (16 * 3,) and faces.shape == (24 * 3,)
    assert data["labels"] == TWO_BOX_LABELS.tolist()
    assert data["version"] != "none" and data["label_file"] == "a.labels.txt"
    pairs = _array(data["adjacency"], "uint32").reshape(-1, 2)
    angles = _array(data["dihedral"], "float32")
    assert len(pairs) == 36 and len(angles) == 36  # two closed boxes: 18 edges each
    # Across a box's side the two triangles are coplanar; across its edges, 90 degrees.
    assert np.isclose(np.sort(angles)[:12], 0, atol=1e-3).all() and np.isclose(angles.max(), 90, atol=1e-3)
    unlabelled = client.get("/api/meshes/b").json()
    assert unlabelled["labels"] == [-1] * 24 and unlabelled["version"] == "none"


def test_unknown_mesh_is_404(client):
    assert client.get("/api/meshes/nope").status_code == 404


def test_save_is_versioned_atomic_and_read_back_by_the_folder_adapter(client, folder):
    loaded = client.get("/api/meshes/b").json()
    labels = [0] * 12 + [1] * 6 + [-1] * 6
    reply = client.put("/api/meshes/b/labels", json={"version": loaded["version"], "labels": labels})
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "labelled"
    assert (folder / "b.labels.txt").is_file()
    assert not list(folder.glob(".*tmp*"))  # no temporary left behind
    assert FolderDataset(folder).load("b").face_labels.tolist() == labels
    # A second tab still holding the old version is refused, and the file is unchanged.
    stale = client.put("/api/meshes/b/labels", json={"version": loaded["version"], "labels": [1] * 24})
    assert stale.status_code == 409
    assert "changed since you loaded it" in stale.json()["error"]
    assert FolderDataset(folder).load("b").face_labels.tolist() == labels
    # With the new version it goes through.
    again = client.put("/api/meshes/b/labels", json={"version": reply.json()["version"], "labels": [1] * 24})
    assert again.status_code == 200


def test_save_keeps_the_existing_label_file_and_format(client, folder):
    (folder / "a.labels.txt").unlink()
    np.save(folder / "a.labels.npy", TWO_BOX_LABELS)
    loaded = client.get("/api/meshes/a").json()
    assert loaded["label_file"] == "a.labels.npy"
    labels = [1] * 12 + [0] * 12
    assert (
        client.put("/api/meshes/a/labels", json={"version": loaded["version"], "labels": labels}).status_code
        == 200
    )
    assert np.load(folder / "a.labels.npy").tolist() == labels


def test_labels_in_a_mesh_sub_folder_go_to_face_labels_txt(tmp_path):
    from app_helpers import two_boxes
    from fastapi.testclient import TestClient

    from mvdecor.app.server import create_app

    (tmp_path / "chair").mkdir()
    write_off(tmp_path / "chair" / "mesh.off", *two_boxes())
    with TestClient(create_app(tmp_path), base_url="http://127.0.0.1") as client:
        loaded = client.get("/api/meshes/chair").json()
        assert loaded["label_file"] == "chair/face_labels.txt"
        reply = client.put("/api/meshes/chair/labels", json={"version": "none", "labels": [3] * 24})
        assert reply.status_code == 200
    assert FolderDataset(tmp_path).load("chair").face_labels.tolist() == [3] * 24


def test_bad_labels_are_refused(client):
    version = client.get("/api/meshes/b").json()["version"]
    short = client.put("/api/meshes/b/labels", json={"version": version, "labels": [0] * 3})
    assert short.status_code == 400 and "3 labels for 24 faces" in short.json()["error"]
    unnamed = client.put("/api/meshes/b/labels", json={"version": version, "labels": [5] * 24})
    assert unnamed.status_code == 400 and "-1 (unlabelled) or 0 to 1" in unnamed.json()["error"]


def test_label_set_round_trip(client, folder):
    label_set = client.get("/api/labels").json()
    assert label_set["names"] == ["seat", "back"] and len(label_set["colors"]) == 2
    body = {
        "version": label_set["version"],
        "names": ["seat", "back", "leg"],
        "colors": ["#ff0000", "#00ff00", "#0000ff"],
    }
    reply = client.put("/api/labels", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["names"] == ["seat", "back", "leg"]
    assert json.loads((folder / "labels.json").read_text())["colors"][2] == "#0000ff"
    assert FolderDataset(folder).label_names == ("seat", "back", "leg")
    assert client.put("/api/labels", json=body).status_code == 409  # stale version
    # Dropping a name that saved labels use is refused.
    fresh = client.get("/api/labels").json()
    shrink = client.put(
        "/api/labels", json={"version": fresh["version"], "names": ["seat"], "colors": ["#ff0000"]}
    )
    assert shrink.status_code == 400 and "label 1 is used" in shrink.json()["error"]


def test_a_corrupt_mesh_is_an_error_entry_and_the_others_still_work(client, folder):
    (folder / "broken.off").write_text("OFF\n3 1 0\n0 0 0\nnot a number\n")
    (folder / "empty.ply").write_bytes(b"")
    meshes = {m["id"]: m for m in client.get("/api/meshes").json()["meshes"]}
    assert meshes["broken"]["state"] == "error" and meshes["broken"]["error"]
    assert meshes["empty"]["state"] == "error" and "empty" in meshes["empty"]["error"]
    assert meshes["a"]["state"] == "labelled"
    assert client.get("/api/meshes/broken").status_code == 422
    assert client.get("/api/meshes/a").status_code == 200


def test_an_unreadable_label_file_is_reported_and_can_be_overwritten(client, folder):
    (folder / "b.labels.txt").write_text("x y z\n")
    meshes = {m["id"]: m for m in client.get("/api/meshes").json()["meshes"]}
    assert meshes["b"]["state"] == "error" and "labels" in meshes["b"]["error"]
    loaded = client.get("/api/meshes/b").json()
    assert loaded["label_error"] and loaded["labels"] == [-1] * 24
    reply = client.put("/api/meshes/b/labels", json={"version": loaded["version"], "labels": [0] * 24})
    assert reply.status_code == 200 and reply.json()["state"] == "labelled"


def test_the_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    for script in ("app.js", "views.js", "selection.js", "jobs.js", "uploads.js"):
        assert f"static/{script}" in page.text and client.get(f"/static/{script}").status_code == 200
    assert client.get("/static/three/three.min.js").status_code == 200
    assert client.get("/static/three/OrbitControls.js").status_code == 200
    assert client.get("/static/../folder.py").status_code == 404


def test_a_folder_without_label_names_gets_numbered_names_until_they_are_saved(tmp_path):
    from app_helpers import two_boxes
    from fastapi.testclient import TestClient

    from mvdecor.app.server import create_app

    write_off(tmp_path / "m.off", *two_boxes())
    (tmp_path / "m.seg").write_text("\n".join(["0"] * 12 + ["2"] * 12) + "\n")
    with TestClient(create_app(tmp_path), base_url="http://127.0.0.1") as client:
        label_set = client.get("/api/labels").json()
        assert label_set["names"] == ["0", "1", "2"] and not label_set["named"]
        assert client.get("/api/meshes/m").json()["label_file"] == "m.seg"
        names = {"version": "none", "names": ["a", "b", "c"], "colors": ["#000000"] * 3}
        assert client.put("/api/labels", json=names).json()["named"]
