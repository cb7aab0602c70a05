"""Drive headless Chromium over the DevTools protocol on a pipe (no extra packages, no network).

``--remote-debugging-pipe`` makes Chromium read commands from file descriptor 3
and write replies to 4, as NUL-terminated JSON messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path


def find_chromium() -> str | None:
    """Chromium's path: ``MVDECOR_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    return os.environ.get("MVDECOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page, driven by :meth:`send`."""

    def __init__(self, chromium: str, profile: Path, size: tuple[int, int] = (1000, 700)) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends at fds 3 and 4 (copied high first)
            high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", f"--user-data-dir={profile}", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--remote-debugging-pipe", f"--window-size={size[0]},{size[1]}",
            "about:blank",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            preexec_fn=wire,  # the child only dup2s two fds before exec
            # Kept open in the child: subprocess closes every other fd after preexec_fn.
            pass_fds=(to_child_r, from_child_w, 3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self._lock = threading.Lock()
        self.session: str | None = None
        #: JavaScript errors, console errors and browser log errors (e.g. CSP violations) seen so far.
        self.console: list[str] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from chromium")
            # Wait no longer than the deadline: a page stuck in a long script must not hang the caller.
            ready, _, _ = select.select([self._from_child], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, timeout: float = 30.0, **params) -> dict:
        """Send one command (to the page once :meth:`open` attached) and return its result."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            event = reply.get("method")
            if event == "Runtime.exceptionThrown":
                self.console.append(json.dumps(reply["params"]["exceptionDetails"])[:500])
            elif event == "Log.entryAdded" and reply["params"]["entry"]["level"] == "error":
                self.console.append(reply["params"]["entry"]["text"][:500])  # CSP violations, failed loads
            elif event == "Runtime.consoleAPICalled" and reply["params"]["type"] == "error":
                self.console.append(json.dumps(reply["params"]["args"])[:500])
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Runtime.enable")
        self.send("Log.enable")
        self.send("Page.enable")
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0):
        """Poll ``expression`` until it is truthy (errors, e.g. while the page loads, count as false)."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:
                value, last_error = None, exc
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"never true: {expression} (last error: {last_error})")

    def mouse(self, kind: str, x: float, y: float, button: str = "left", buttons: int = 1) -> None:
        self.send(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=buttons, clickCount=1
        )

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)
