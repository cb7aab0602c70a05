"""Painted views: list, render, paint, save (versioned, atomic) and read back as fine-tuning does."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mvdecor.app.server import create_app
from mvdecor.app.views import painted_label_images
from mvdecor.config import RenderConfig, render_config_to_dict
from mvdecor.train.labelled import read_label_image

#: Small views: 2 + 2 * 3 = 8 cameras of 48 x 48 pixels (fast to render on a busy CPU).
RENDER = RenderConfig(rings=2, segments=3, resolution=48)


@pytest.fixture
def views_client(folder):
    with TestClient(create_app(folder, view_render=RENDER), base_url="http://127.0.0.1") as client:
        yield client


def _encode(labels: np.ndarray) -> str:
    return base64.b64encode(np.where(labels < 0, 255, labels).astype(np.uint8).tobytes()).decode()


def _painting(views_client, shape="b", index=0) -> np.ndarray:
    """Label 0 on the object's left half, 1 on its right, as a page would paint (background left)."""
    image = Image.open(io.BytesIO(views_client.get(f"/api/meshes/{shape}/views/{index}/image").content))
    mask = np.asarray(image)[..., 3] > 0
    labels = np.full(mask.shape, -1, np.int64)
    labels[:, : mask.shape[1] // 2] = 0
    labels[:, mask.shape[1] // 2 :] = 1
    return np.where(mask, labels, -1)


def test_views_are_listed_and_rendered(views_client):
    listing = views_client.get("/api/meshes/b/views").json()
    assert listing["width"] == listing["height"] == 48
    assert listing["render"] == render_config_to_dict(RENDER)
    indices = [v["index"] for v in listing["views"]]
    assert len(indices) == 6 and indices == sorted(set(indices)) and max(indices) < RENDER.num_views
    assert all(v["version"] == "none" and not v["painted"] for v in listing["views"])
    reply = views_client.get(f"/api/meshes/b/views/{indices[1]}/image")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(reply.content)))
    assert image.shape == (48, 48, 4)
    assert 0.02 < (image[..., 3] > 0).mean() < 0.98  # the object and some background
    assert views_client.get("/api/meshes/b/views/99/image").status_code == 404
    assert views_client.get("/api/meshes/nope/views").status_code == 404


def test_painted_labels_round_trip_through_the_fine_tuning_reader(views_client, folder):
    painted = _painting(views_client)
    empty = views_client.get("/api/meshes/b/views/0/labels").json()
    assert empty["version"] == "none" and set(base64.b64decode(empty["labels"])) == {255}
    reply = views_client.put(
        "/api/meshes/b/views/0/labels", json={"version": "none", "labels": _encode(painted)}
    )
    assert reply.status_code == 200, reply.text
    version = reply.json()["version"]
    png = folder / "label_images" / "b" / "view_0.png"
    assert reply.json()["painted"] and png.is_file()
    # The file fine-tuning reads: mode L, class indices, 255 unlabelled, at the render size.
    assert Image.open(png).mode == "L"
    np.testing.assert_array_equal(read_label_image(png, (48, 48), 2), painted)
    assert json.loads((folder / "label_images" / "render.json").read_text()) == render_config_to_dict(RENDER)
    back = views_client.get("/api/meshes/b/views/0/labels").json()
    assert back["version"] == version
    decoded = np.frombuffer(base64.b64decode(back["labels"]), np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(np.where(decoded == 255, -1, decoded.astype(np.int64)), painted)
    # What `mvdecor finetune --label-images` and the pipeline job find.
    assert painted_label_images(views_client.app.state.folder) == {("b", 0): png}
    listed = {v["index"]: v for v in views_client.get("/api/meshes/b/views").json()["views"]}
    assert listed[0]["painted"] and listed[0]["version"] == version


def test_view_saves_are_versioned_checked_and_erasable(views_client, folder):
    painted = _painting(views_client)
    body = {"version": "none", "labels": _encode(painted)}
    first = views_client.put("/api/meshes/b/views/0/labels", json=body)
    assert first.status_code == 200
    stale = views_client.put("/api/meshes/b/views/0/labels", json=body)  # another tab's old version
    assert stale.status_code == 409 and stale.json()["current_version"] == first.json()["version"]
    version = first.json()["version"]
    too_high = views_client.put(
        "/api/meshes/b/views/0/labels", json={"version": version, "labels": _encode(painted * 0 + 5)}
    )
    assert too_high.status_code == 400 and "label set" in too_high.json()["error"]
    short = views_client.put("/api/meshes/b/views/0/labels", json={"version": version, "labels": "AAAA"})
    assert short.status_code == 400
    assert not list((folder / "label_images" / "b").glob(".*tmp*"))  # nothing half-written
    # Erasing everything removes the file: an unpainted view supervises nothing.
    erased = views_client.put(
        "/api/meshes/b/views/0/labels",
        json={"version": version, "labels": _encode(np.full((48, 48), -1))},
    )
    assert erased.json() == {"version": "none", "painted": False}
    assert not (folder / "label_images" / "b" / "view_0.png").exists()


def test_views_painted_with_other_render_settings_are_not_mixed(views_client, folder):
    views_client.put(
        "/api/meshes/b/views/0/labels", json={"version": "none", "labels": _encode(_painting(views_client))}
    )
    other = create_app(folder, view_render=RenderConfig(rings=2, segments=3, resolution=32))
    with TestClient(other, base_url="http://127.0.0.1") as client:
        reply = client.put(
            "/api/meshes/c/views/0/labels",
            json={"version": "none", "labels": _encode(np.zeros((32, 32), np.int64))},
        )
    assert reply.status_code == 400 and "other render settings" in reply.json()["error"]
    # Without settings of its own, an app paints with those the folder's views were made with.
    with TestClient(create_app(folder), base_url="http://127.0.0.1") as client:
        assert client.get("/api/meshes/c/views").json()["width"] == 48


def test_a_pipeline_job_with_other_render_settings_refuses_the_painted_views_at_once(views_client, folder):
    from app_helpers import wait_for_job

    views_client.put(
        "/api/meshes/b/views/0/labels", json={"version": "none", "labels": _encode(_painting(views_client))}
    )
    views_client.post("/api/jobs", json={"method": "pipeline", "options": {}})  # the cpu preset: 128 px
    job = wait_for_job(views_client, timeout=60)
    assert job["state"] == "failed" and "other render settings" in job["error"]
    assert not (folder / ".mvdecor-app" / "runs" / "pretrain").exists()  # refused before training
