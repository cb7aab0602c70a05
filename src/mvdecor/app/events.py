"""The background job's progress as Server-Sent Events (``GET /api/jobs/current/events``).

The page opens an ``EventSource`` on the endpoint instead of polling
``/api/jobs/current``; it falls back to polling when the stream fails. The
stream (``text/event-stream``) sends:

- ``retry: <ms>`` first (how soon the browser reconnects after a drop);
- ``event: progress`` with ``data: {"job": {...}}`` (the job's status, as
  ``/api/jobs/current`` gives it) at once, then whenever the status changes
  (its elapsed time aside);
- ``: heartbeat`` comment lines while nothing changes, so proxies keep the
  connection open and a client that went away is noticed;
- ``event: end`` with the job's last status when it is done, failed or
  cancelled (or ``{"job": null}`` when there is no job), then the stream ends.

A stream also ends (without ``end``) after ``max_duration`` seconds; the
browser reconnects by itself and gets the current status, so no connection
outlives a server that wants to stop by long.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["JOB_ENDED", "job_events", "sse_message"]

#: The states in which a job has ended (its stream's last event).
JOB_ENDED = ("done", "failed", "cancelled")


def sse_message(event: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event: ``event: <event>`` and its JSON ``data`` line, then a blank line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _comparable(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The status without what changes on every read (the elapsed time)."""
    if status is None:
        return None
    return {k: v for k, v in status.items() if k != "elapsed_s"}


async def job_events(
    status: Callable[[], dict[str, Any] | None],
    *,
    interval: float = 0.2,
    heartbeat: float = 15.0,
    max_duration: float = 300.0,
    retry_ms: int = 2000,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[str]:
    """The event stream of the job whose status ``status()`` reads.

    Parameters
    ----------
    status : the current job's status (:meth:`~mvdecor.app.jobs.JobManager.status`), None before any job
    interval : seconds between two looks at the status
    heartbeat : seconds of silence after which a ``: heartbeat`` comment is sent
    max_duration : seconds after which the stream ends (the browser reconnects)
    retry_ms : the reconnection delay the browser is told
    disconnected : awaited between looks; the stream stops when it returns True

    Yields
    ------
    str
        Chunks of the ``text/event-stream`` body.
    """
    yield f"retry: {int(retry_ms)}\n\n"
    started = last_sent = time.monotonic()
    previous: dict[str, Any] | None = None
    first = True
    while True:
        current = status()
        if current is None or current.get("state") in JOB_ENDED:
            yield sse_message("end", {"job": current})
            return
        comparable = _comparable(current)
        if first or comparable != previous:
            yield sse_message("progress", {"job": current})
            previous, first, last_sent = comparable, False, time.monotonic()
        now = time.monotonic()
        if now - last_sent >= heartbeat:
            yield ": heartbeat\n\n"
            last_sent = now
        if now - started >= max_duration:
            return
        await asyncio.sleep(interval)
        if disconnected is not None and await disconnected():
            return
