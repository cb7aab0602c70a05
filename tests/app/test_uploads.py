"""Adding meshes from the page: ``PUT /api/meshes/{name}`` checks, stages, loads, then publishes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from app_helpers import box
from fastapi.testclient import TestClient

from mvdecor.app import server as app_server
from mvdecor.app.server import create_app

RAW = {"Content-Type": "application/octet-stream"}


def obj_bytes(offset: float = 0.0) -> bytes:
    v, f = box(offset=(offset, 0.0, 0.0))
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    return ("\n".join(lines) + "\n").encode()


def everything(folder: Path) -> list[str]:
    """Every path in the folder, hidden ones and staging folders included."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def ids(client) -> list[str]:
    return [m["id"] for m in client.get("/api/meshes").json()["meshes"]]


def test_an_added_obj_is_listed_and_loads(client, folder):
    reply = client.put("/api/meshes/chair.obj", content=obj_bytes(), headers=RAW)
    assert reply.status_code == 201, reply.text
    entry = reply.json()
    assert entry == next(m for m in client.get("/api/meshes").json()["meshes"] if m["id"] == "chair")
    assert entry["file"] == "chair.obj" and entry["state"] == "unlabelled" and entry["faces"] == 12
    loaded = client.get("/api/meshes/chair?fill_graph=false").json()
    assert loaded["num_faces"] == 12 and loaded["labels"] == [-1] * 12
    assert (folder / "chair.obj").read_bytes() == obj_bytes()
    assert not [p for p in everything(folder) if p.startswith(".")]  # the staging folder is gone


def test_a_taken_name_or_shape_id_is_409_and_the_original_is_untouched(client, folder):
    assert client.put("/api/meshes/chair.obj", content=obj_bytes(), headers=RAW).status_code == 201
    again = client.put("/api/meshes/chair.obj", content=obj_bytes(5.0), headers=RAW)
    assert again.status_code == 409 and "already in the folder" in again.json()["error"]
    assert (folder / "chair.obj").read_bytes() == obj_bytes()
    before = (folder / "a.off").read_bytes()
    same_id = client.put("/api/meshes/a.obj", content=obj_bytes(), headers=RAW)  # shape "a" is a.off
    assert same_id.status_code == 409 and "'a' (a.off)" in same_id.json()["error"]
    assert (folder / "a.off").read_bytes() == before and not (folder / "a.obj").exists()


@pytest.mark.parametrize("name", ["..%2Fx.obj", "a%2Fb.obj", "a%5Cb.obj", ".hidden.obj", "%2Ftmp%2Fx.obj"])
def test_names_with_folders_or_hidden_names_are_refused(client, folder, name):
    before = everything(folder)
    reply = client.put(f"/api/meshes/{name}", content=obj_bytes(), headers=RAW)
    assert reply.status_code in (400, 403) and reply.json()["error"]
    assert everything(folder) == before and not (folder.parent / "x.obj").exists()


@pytest.mark.parametrize("name", ["notes.txt", "chair.obj.exe", "chair"])
def test_a_name_without_a_mesh_extension_is_refused(client, folder, name):
    reply = client.put(f"/api/meshes/{name}", content=obj_bytes(), headers=RAW)
    assert reply.status_code == 400 and "supported: .obj, .ply" in reply.json()["error"]
    assert not (folder / name).exists()


def test_a_mesh_that_does_not_load_is_422_and_leaves_nothing(client, folder):
    before = everything(folder)
    external = {"asset": {"version": "2.0"}, "buffers": [{"uri": "chair.bin", "byteLength": 96}]}
    bad = {
        "garbage.obj": bytes(range(256)) * 4,
        "header.ply": b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n",
        "empty.off": b"",
        "external.gltf": json.dumps(external).encode(),
    }
    for name, body in bad.items():
        reply = client.put(f"/api/meshes/{name}", content=body, headers=RAW)
        assert reply.status_code == 422, (name, reply.text)
        message = reply.json()["error"]
        assert message.startswith(f"{name}: ") and "\n" not in message and ".mvdecor-upload" not in message
    assert "separate file 'chair.bin'" in reply.json()["error"]
    assert everything(folder) == before and ids(client) == ["a", "b", "c"]


def test_a_self_contained_glb_is_added(client):
    import trimesh

    glb = trimesh.Trimesh(*box(), process=False).export(file_type="glb")
    reply = client.put("/api/meshes/cube.glb", content=glb, headers=RAW)
    assert reply.status_code == 201, reply.text
    assert reply.json()["faces"] == 12


def test_an_oversized_body_is_413_and_leaves_nothing(folder, monkeypatch):
    monkeypatch.setattr(app_server, "DEFAULT_MAX_UPLOAD", 100)
    before = everything(folder)
    with TestClient(create_app(folder), base_url="http://127.0.0.1") as client:
        assert client.get("/api/info").json()["upload"]["max_bytes"] == 100
        big = client.put("/api/meshes/big.obj", content=obj_bytes(), headers=RAW)
        assert big.status_code == 413 and "over the limit of 100 bytes" in big.json()["error"]

        def lying():  # more bytes than its Content-Length: counted while read, refused
            yield b"v 0 0 0\n" * 10
            yield b"v 0 0 0\n" * 10

        streamed = client.put("/api/meshes/big.obj", content=lying(), headers={**RAW, "Content-Length": "50"})
        assert streamed.status_code == 413
        # JSON requests keep their own bound.
        assert client.post("/api/jobs/current/cancel", json={}).status_code == 200
    assert everything(folder) == before


def test_uploads_need_the_token_or_a_loopback_host_as_every_route(folder):
    before = everything(folder)
    with TestClient(create_app(folder, token="s3cret"), base_url="http://192.0.2.10") as client:
        assert client.put("/api/meshes/x.obj", content=obj_bytes(), headers=RAW).status_code == 401
        assert everything(folder) == before
        with_token = client.put("/api/meshes/x.obj?token=s3cret", content=obj_bytes(), headers=RAW)
        assert with_token.status_code == 201
    with TestClient(create_app(folder), base_url="http://evil.example") as client:
        assert client.put("/api/meshes/y.obj", content=obj_bytes(), headers=RAW).status_code == 403
    assert not (folder / "y.obj").exists()


def test_an_upload_needs_the_raw_content_type(client, folder):
    form = client.put("/api/meshes/x.obj", content=obj_bytes(), headers={"Content-Type": "text/plain"})
    assert form.status_code == 415 and not (folder / "x.obj").exists()


def test_an_interrupted_upload_is_never_listed_and_leaves_nothing(folder):
    """The client goes away mid-body: the staged part is removed; while it lasted, no list showed it."""
    app = create_app(folder)
    before = everything(folder)
    seen: dict[str, object] = {}
    body = [{"type": "http.request", "body": obj_bytes()[:40], "more_body": True}]

    async def receive():
        if body:
            return body.pop(0)
        seen["ids"] = app.state.folder.refresh().shape_ids()
        seen["staged"] = [p for p in everything(folder) if p.endswith("/staged/x.obj")]
        return {"type": "http.disconnect"}

    async def send(message):
        pass

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PUT",
        "scheme": "http", "path": "/api/meshes/x.obj", "raw_path": b"/api/meshes/x.obj",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", RAW["Content-Type"].encode()),
                    (b"content-length", b"1000")],
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert seen["ids"] == ["a", "b", "c"] and len(seen["staged"]) == 1
    assert everything(folder) == before


def test_staging_folders_of_dead_processes_are_removed_at_start(folder):
    stale = folder / ".mvdecor-upload-999999999-0a1b2c" / "staged"
    stale.mkdir(parents=True)
    (stale / "x.obj").write_bytes(obj_bytes()[:10])
    create_app(folder)
    assert not stale.parent.exists()


def test_a_file_picked_in_the_page_is_added_and_opened(server, folder, browser, tmp_path):
    picked = tmp_path / "stool.obj"
    picked.write_bytes(obj_bytes())
    browser.open(server)
    browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'a'")
    field = browser.send("Runtime.evaluate", expression="document.getElementById('mesh-files')")["result"]
    browser.send("DOM.setFileInputFiles", files=[str(picked)], objectId=field["objectId"])
    browser.wait_for("document.body.dataset.upload === 'done'")
    assert browser.evaluate("document.body.dataset.uploadAdded") == "stool"
    assert "added stool" in browser.evaluate("document.getElementById('message').textContent")
    _open = "[...document.querySelectorAll('#meshes li')].find(li => li.firstChild.textContent === 'stool')"
    browser.evaluate(f"{_open}.click()")
    browser.wait_for("document.body.dataset.mesh === 'stool'")
    # A second copy is refused with the server's reason.
    browser.send("DOM.setFileInputFiles", files=[str(picked)], objectId=field["objectId"])
    browser.wait_for("document.body.dataset.upload === 'done' && document.body.dataset.uploadFailed === '1'")
    assert "already in the folder" in browser.evaluate("document.getElementById('message').textContent")
    assert [e for e in browser.console if "409" not in e] == []
    assert (folder / "stool.obj").read_bytes() == obj_bytes()
