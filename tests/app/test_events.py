"""The job's progress as Server-Sent Events: progress events, heartbeats, one final event."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from mvdecor.app.events import job_events, sse_message
from mvdecor.app.server import create_app
from mvdecor.errors import MvDecorError

EVENTS = "/api/jobs/current/events"


def read_events(client: TestClient, url: str = EVENTS) -> tuple[list[tuple[str, dict]], list[str]]:
    """Read the stream until it ends: ``([(event, data), ...], comments)``."""
    events, comments = [], []
    with client.stream("GET", url) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = "".join(reply.iter_text())
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        comments += [line for line in block.splitlines() if line.startswith(":")]
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events, comments


@pytest.fixture
def fast_client(folder):
    """A client whose event stream sends a heartbeat after 50 ms of silence."""
    with TestClient(create_app(folder, heartbeat_s=0.05), base_url="http://127.0.0.1") as client:
        yield client


def test_the_stream_sends_progress_heartbeats_and_a_final_event(fast_client):
    def counting(progress):
        progress.update(total=3)
        for step in range(3):
            time.sleep(0.4)
            progress.update(done=step + 1, message=f"mesh {step + 1}")

    fast_client.app.state.jobs.start("counting", counting)
    events, comments = read_events(fast_client)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1 and set(kinds[:-1]) == {"progress"}
    done = [data["job"]["done"] for kind, data in events if kind == "progress"]
    assert done == sorted(done) and len(set(done)) >= 2  # one event per change, not per look
    final = events[-1][1]["job"]
    assert final["state"] == "done" and final["done"] == 3 and final["message"] == "finished"
    assert ": heartbeat" in comments


def test_a_cancelled_job_ends_the_stream_with_its_state(fast_client):
    jobs = fast_client.app.state.jobs

    def waiting(progress):
        while True:
            progress.check()
            time.sleep(0.02)

    jobs.start("waiting", waiting)
    threading.Timer(0.3, jobs.cancel).start()
    events, _ = read_events(fast_client)
    assert events[0][0] == "progress" and events[0][1]["job"]["state"] == "running"
    assert events[-1][0] == "end" and events[-1][1]["job"]["state"] == "cancelled"


def test_a_failed_job_ends_the_stream_with_its_error(fast_client):
    def failing(progress):
        time.sleep(0.2)
        raise MvDecorError("no labelled mesh")

    fast_client.app.state.jobs.start("failing", failing)
    events, _ = read_events(fast_client)
    final = events[-1][1]["job"]
    assert events[-1][0] == "end" and final["state"] == "failed" and final["error"] == "no labelled mesh"


def test_without_a_job_or_after_it_the_stream_ends_at_once(fast_client):
    events, _ = read_events(fast_client)
    assert events == [("end", {"job": None})]
    fast_client.app.state.jobs.start("quick", lambda progress: None)
    fast_client.app.state.jobs.wait(10)
    events, _ = read_events(fast_client)
    assert len(events) == 1 and events[0][0] == "end" and events[0][1]["job"]["state"] == "done"


def test_the_stream_needs_the_token_which_may_come_in_the_query(folder):
    with TestClient(create_app(folder, token="s3cret"), base_url="http://192.0.2.10") as client:
        assert client.get(EVENTS).status_code == 401
        assert client.get(EVENTS + "?token=wrong").status_code == 401
        events, _ = read_events(client, EVENTS + "?token=s3cret")
        assert events == [("end", {"job": None})]
    with TestClient(create_app(folder), base_url="http://evil.example") as client:
        assert client.get(EVENTS).status_code == 403


def test_a_stream_ends_after_its_longest_duration_without_a_final_event():
    status = {"id": 1, "state": "running", "done": 0, "elapsed_s": 0.0}

    async def collect() -> list[str]:
        stream = job_events(lambda: status, interval=0.01, heartbeat=10, max_duration=0.1, retry_ms=500)
        return [chunk async for chunk in stream]

    chunks = asyncio.run(collect())
    assert chunks[0] == "retry: 500\n\n"
    assert chunks[1:] == [sse_message("progress", {"job": status})]  # once: nothing changed since
