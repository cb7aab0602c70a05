"""A malformed labels.json: the app still starts and answers, names the file and the reason, and
replaces it by a fresh label set only on request, keeping the old file as a backup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mvdecor.app.folder import AppFolder
from mvdecor.app.labelset import LabelSetFileError, backup_path, parse_label_set, replace_label_set_file
from mvdecor.app.server import create_app

#: Malformed contents of labels.json, and a word the reason must contain.
MALFORMED = {
    "invalid JSON": ('{"labels": ["seat", "back"', "invalid JSON at line 1"),
    "not UTF-8": (b'{"labels": ["\xff"]}', "not UTF-8"),
    "a number": ("42", "found a number"),
    "no labels key": ('{"names": ["seat", "back"]}', 'no "labels" key'),
    "labels not a list": ('{"labels": "seat"}', "must be a list of names, found a string"),
    "a name not a string": ('{"labels": ["seat", 1]}', "label 1 is a number"),
    "a null name": ('["seat", null]', "label 1 is null"),
    "an empty name": ('{"labels": ["seat", " "]}', "label 1 has an empty name"),
    "duplicate names": ('{"labels": ["seat", "back", "seat"]}', "duplicate label name 'seat' (labels 0 and 2)"),
    "colours not a list": ('{"labels": ["seat", "back"], "colors": "red"}', '"colors" must be a list'),
    "a bad colour": ('{"labels": ["seat", "back"], "colors": ["#ff0000", "red"]}', 'bad colour "red" for label 1'),
    "a short colour": ('{"labels": ["seat"], "colors": ["#fff"]}', 'bad colour "#fff" for label 0'),
}  # fmt: skip


def _write(folder: Path, content: str | bytes) -> None:
    path = folder / "labels.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_label_set_is_reported_and_the_app_still_answers(folder, case):
    content, reason = MALFORMED[case]
    _write(folder, content)
    with TestClient(create_app(folder), base_url="http://127.0.0.1") as client:  # starts
        info = client.get("/api/info")
        assert info.status_code == 200
        error = info.json()["labels"]["error"]
        assert error["file"] == "labels.json" and reason in error["reason"], error
        assert error["message"].startswith("labels.json: ")
        labels = client.get("/api/labels").json()
        assert labels["error"] == error and labels["names"] == ["0", "1"]  # from a.labels.txt
        # The meshes are listed, loaded and saved as before.
        meshes = {m["id"]: m for m in client.get("/api/meshes").json()["meshes"]}
        assert meshes["a"]["state"] == "labelled" and meshes["b"]["state"] == "unlabelled"
        loaded = client.get("/api/meshes/b").json()
        saved = client.put("/api/meshes/b/labels", json={"version": loaded["version"], "labels": [1] * 24})
        assert saved.status_code == 200, saved.text
        # Saving a label set over the broken file is refused (it would lose it): replace or fix it.
        body = {"version": labels["version"], "names": ["seat", "back"], "colors": ["#000000"] * 2}
        refused = client.put("/api/labels", json=body)
        assert refused.status_code == 409 and refused.json()["file"] == "labels.json"
        assert "fresh label set" in refused.json()["error"]
        # So is a job: it would name its labels from a file nobody can read.
        job = client.post("/api/jobs", json={"method": "transfer"})
        assert job.status_code == 409 and "labels.json" in job.json()["error"]


def test_the_fresh_label_set_replaces_the_file_and_keeps_a_backup(client, folder):
    broken = '{"labels": ["seat", "seat"]}'
    _write(folder, broken)
    version = client.get("/api/labels").json()["version"]
    assert client.post("/api/labels/reset", json={"version": "stale"}).status_code == 409
    assert (folder / "labels.json").read_text() == broken  # nothing written on a stale version
    reply = client.post("/api/labels/reset", json={"version": version})
    assert reply.status_code == 200, reply.text
    backup = reply.json()["backup"]
    assert backup.startswith("labels.json.bak-") and (folder / backup).read_text() == broken
    fresh = reply.json()["labels"]
    assert fresh["error"] is None and fresh["names"] == ["0", "1"] and len(fresh["colors"]) == 2
    assert json.loads((folder / "labels.json").read_text())["labels"] == ["0", "1"]
    assert not list(folder.glob(".*tmp*"))  # no temporary left behind
    # A readable file is not replaced (edit it in the page instead), and the label set saves again.
    again = client.post("/api/labels/reset", json={"version": fresh["version"]})
    assert again.status_code == 400 and "readable" in again.json()["error"]
    body = {"version": fresh["version"], "names": ["seat", "back"], "colors": ["#ff0000", "#00ff00"]}
    assert client.put("/api/labels", json=body).status_code == 200
    assert sorted(p.name for p in folder.glob("labels.json*")) == ["labels.json", backup]


def test_a_fixed_file_is_read_again_without_a_restart(client, folder):
    _write(folder, "{oops")
    assert client.get("/api/labels").json()["error"] is not None
    _write(folder, json.dumps({"labels": ["seat", "back"], "colors": ["#112233", "#445566"]}))
    labels = client.get("/api/labels").json()
    assert labels["error"] is None and labels["names"] == ["seat", "back"] and labels["named"]
    assert labels["colors"] == ["#112233", "#445566"]


def test_parse_accepts_a_list_fewer_colours_and_other_keys():
    assert parse_label_set('["seat", "back"]').names == ("seat", "back")
    doc = parse_label_set('{"labels": ["seat", "back"], "colors": ["#ABCDEF"], "note": 1}')
    assert doc.colors == ("#ABCDEF",) and doc.extra == {"note": 1}
    with pytest.raises(LabelSetFileError) as caught:
        parse_label_set("{", shown="sub/labels.json")
    assert caught.value.path == "sub/labels.json" and str(caught.value).startswith("sub/labels.json: ")


def test_backups_never_overwrite_each_other(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("first")
    first = replace_label_set_file(path, ["a"], ["#000000"])
    path.write_text("second")
    second = replace_label_set_file(path, ["a"], ["#000000"])
    assert first != second and first.read_text() == "first" and second.read_text() == "second"
    assert backup_path(path, when=0).name.startswith("labels.json.bak-19")
    assert AppFolder(tmp_path).label_set()["error"] is None
