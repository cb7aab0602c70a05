"""Fixtures of the labelling app's tests: a tiny folder of meshes and a client for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import TWO_BOX_LABELS, two_boxes, write_off
from fastapi.testclient import TestClient

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
