"""Fixtures of the labelling app's tests: a tiny folder of meshes, a client, a served app, a browser."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from app_helpers import TWO_BOX_LABELS, two_boxes, write_off
from browser import Browser
from fastapi.testclient import TestClient

from browser_support import chromium_or_skip
from mvdecor.app.server import create_app


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``a.off`` (labelled), ``b.off`` and ``c.off`` (unlabelled), ``labels.json``."""
    root = tmp_path / "shapes"
    root.mkdir()
    v, f = two_boxes()
    write_off(root / "a.off", v, f)
    (root / "a.labels.txt").write_text("\n".join(map(str, TWO_BOX_LABELS)) + "\n")
    write_off(root / "b.off", *two_boxes(0.3))
    write_off(root / "c.off", *two_boxes(-0.2))
    (root / "labels.json").write_text(json.dumps({"labels": ["seat", "back"]}))
    return root


@pytest.fixture
def client(folder: Path):
    with TestClient(create_app(folder), base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def server(folder):
    """The app served by uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(folder), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    running.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium (skipped without it, unless MVDECOR_REQUIRE_BROWSER=1); closed after the test."""
    opened = Browser(chromium_or_skip(), tmp_path / "profile")
    yield opened
    opened.close()
