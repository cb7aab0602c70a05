"""``mvdecor app``: its help, the URL it prints, and the token it requires off the loopback."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from mvdecor.cli import main


def test_help_explains_the_app(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["app", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for words in (
        "FOLDER",
        "--port",
        "--host",
        "--open",
        "token",
        "segment the rest",
        "predictions/",
        "exports/",
    ):
        assert words in " ".join(text.split()), words


@pytest.fixture
def served(monkeypatch):
    """Run ``mvdecor app`` with uvicorn.run replaced: returns the app and the arguments it got."""
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app, **kwargs))
    return seen


def test_on_the_loopback_no_token_is_needed(folder, served, capsys):
    assert main(["app", str(folder), "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert "3 mesh(es)" in out and "http://127.0.0.1:8123/\n" in out
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    with TestClient(served["app"], base_url="http://127.0.0.1:8123") as client:
        assert client.get("/api/meshes").status_code == 200


def test_another_host_prints_and_requires_a_token(folder, served, capsys):
    assert main(["app", str(folder), "--host", "0.0.0.0"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"\?token=([\w-]+)", out).group(1)
    assert len(token) >= 24
    with TestClient(served["app"], base_url="http://192.0.2.1:8765") as client:
        assert client.get("/api/meshes").status_code == 401
        assert client.get(f"/api/meshes?token={token}").status_code == 200


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["app", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_a_malformed_label_set_is_a_warning_not_a_failure_to_start(folder, served, capsys):
    (folder / "labels.json").write_text("[1, 2")
    assert main(["app", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "labels.json: invalid JSON" in out and "fresh label set" in out
    assert served["timeout_graceful_shutdown"] > 0  # open event streams do not hold up Ctrl-C
    with TestClient(served["app"], base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/info").json()["labels"]["error"]["file"] == "labels.json"
