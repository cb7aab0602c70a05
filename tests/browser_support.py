"""Finding headless Chromium for the tests that open pages in a real browser."""

from __future__ import annotations

import os
import shutil

import pytest


def chromium_or_skip() -> str:
    """Chromium's path; skips (or fails, with ``MVDECOR_REQUIRE_BROWSER=1``) when absent."""
    found = os.environ.get("MVDECOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium not installed (scripts/setup.sh installs it; or set MVDECOR_CHROMIUM)"
    if os.environ.get("MVDECOR_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message}, and MVDECOR_REQUIRE_BROWSER=1")
    pytest.skip(message)
