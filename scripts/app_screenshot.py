"""The README's picture of the labelling app: a folder of chairs, two labelled, the rest segmented.

Writes built-in synthetic chairs as OBJ files into a temporary folder (labels for the
first two), serves the app on a free loopback port, opens it in headless Chromium
(the tests' DevTools driver, ``tests/app/browser.py``), runs "segment the rest" with
transfer from the page's button, and saves a screenshot of an unlabelled chair with its
prediction shown. WebGL runs in software (SwiftShader), so it takes a few seconds.
Run from the repository root::

    .venv/bin/python scripts/app_screenshot.py --out docs/app.png
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/app.png", help="PNG to write (default docs/app.png)")
    parser.add_argument("--shapes", type=int, default=6, help="chairs in the folder (default 6)")
    parser.add_argument("--size", default="1200x940", help="browser window, WIDTHxHEIGHT")
    args = parser.parse_args()
    # The benchmarks' folder writer and server, and the tests' browser driver.
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests" / "app")]
    from browser import Browser, find_chromium

    from app_interactivity import serve
    from app_segment_rest import write_folder

    chromium = find_chromium()
    if not chromium:
        print(
            "error: chromium not found (scripts/setup.sh installs it; or set MVDECOR_CHROMIUM)",
            file=sys.stderr,
        )
        return 1
    width, height = (int(n) for n in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "chairs"
        folder.mkdir()
        shown = write_folder(folder, "chair", args.shapes, labelled=2, seed=0)[0]
        server, thread, url = serve(folder)
        browser = Browser(chromium, Path(tmp) / "profile", size=(width, height))
        try:
            browser.open(f"{url}#mesh={shown}")
            browser.wait_for(
                f"document.body.dataset.app === 'ready' && document.body.dataset.mesh === '{shown}'"
            )
            browser.evaluate("document.getElementById('start-job').click()")
            browser.wait_for("document.body.dataset.jobState === 'done'")
            browser.wait_for("document.getElementById('show-prediction').checked")
            time.sleep(2)  # the software renderer's last frame
            png = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
            if browser.console:
                print(f"error: the page reported errors: {browser.console}", file=sys.stderr)
                return 1
        finally:
            browser.close()
            server.should_exit = True
            thread.join(10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    print(f"{out}: {len(png) // 1024} KB, {shown} segmented from the two labelled chairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
