"""The labelling app stays inside its folder and refuses requests it should not serve."""

from __future__ import annotations

import os

import pytest
from app_helpers import two_boxes, write_off
from fastapi.testclient import TestClient

from mvdecor.app.folder import AppFolder, UnsafePathError
from mvdecor.app.server import create_app


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "exports/../../x"])
def test_safe_path_refuses_traversal_and_absolute_paths(folder, path):
    with pytest.raises(UnsafePathError):
        AppFolder(folder).safe_path(path)


def test_safe_path_refuses_a_symlink_out_of_the_folder(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, folder / "link")
    app_folder = AppFolder(folder)
    with pytest.raises(UnsafePathError):
        app_folder.safe_path("link/secret.txt")
    assert app_folder.safe_path("a.off") == folder / "a.off"


def test_downloads_refuse_traversal_absolute_paths_and_symlinks(client, folder, tmp_path):
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT")
    (folder / "exports").mkdir()
    os.symlink(tmp_path / "secret.txt", folder / "exports" / "leak.txt")
    for url in ("/api/files/..%2Fsecret.txt", "/api/files/%2Fetc%2Fpasswd", "/api/files/exports/leak.txt",
                "/api/files/a.off"):  # fmt: skip
        reply = client.get(url)
        assert reply.status_code in (403, 404), url
        assert "TOP-SECRET-CONTENT" not in reply.text
    (folder / "exports" / "ok.txt").write_text("fine")
    assert client.get("/api/files/exports/ok.txt").text == "fine"


def test_a_mesh_linked_from_outside_is_an_error_entry_and_never_read(folder, tmp_path):
    outside = tmp_path / "elsewhere.off"
    write_off(outside, *two_boxes())
    os.symlink(outside, folder / "linked.off")
    with TestClient(create_app(folder), base_url="http://127.0.0.1") as client:
        meshes = {m["id"]: m for m in client.get("/api/meshes").json()["meshes"]}
        assert meshes["linked"]["state"] == "error" and "outside" in meshes["linked"]["error"]
        assert client.get("/api/meshes/linked").status_code == 403
        assert (
            client.put("/api/meshes/linked/labels", json={"version": "none", "labels": [0] * 24}).status_code
            == 403
        )
    assert not (folder / "linked.labels.txt").exists()


def test_ids_with_traversal_are_unknown(client):
    assert client.get("/api/meshes/..%2F..%2Fetc").status_code == 404
    reply = client.put("/api/meshes/..%2Fx/labels", json={"version": "none", "labels": []})
    assert reply.status_code == 404


def test_with_a_token_requests_without_it_are_refused(folder):
    app = create_app(folder, token="s3cret-token")
    with TestClient(app, base_url="http://192.0.2.10") as client:
        assert client.get("/api/meshes").status_code == 401
        assert client.get("/").status_code == 401
        assert client.get("/api/meshes?token=wrong").status_code == 401
        assert client.get("/api/meshes?token=s3cret-token").status_code == 200
        assert client.get("/api/meshes", headers={"X-MVDecor-Token": "s3cret-token"}).status_code == 200
        page = client.get("/?token=s3cret-token")
        assert page.status_code == 200 and "app.js?token=s3cret-token" in page.text


def test_without_a_token_only_loopback_hosts_are_served(folder):
    with TestClient(create_app(folder), base_url="http://evil.example") as client:
        assert client.get("/api/meshes").status_code == 403
    with TestClient(create_app(folder), base_url="http://localhost:8765") as client:
        assert client.get("/api/meshes").status_code == 200


def test_writes_must_be_json_with_a_bounded_length(folder):
    with TestClient(create_app(folder, max_body=1000), base_url="http://127.0.0.1") as client:
        big = client.put("/api/meshes/b/labels", json={"version": "none", "labels": [0] * 1000})
        assert big.status_code == 413
        form = client.put(
            "/api/meshes/b/labels", content=b"version=none", headers={"Content-Type": "text/plain"}
        )
        assert form.status_code == 415
        assert client.post("/api/jobs/current/cancel", json={}).status_code == 200


def test_responses_carry_a_strict_content_security_policy(client):
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"
