"""``mvdecor app``: the labelling app in the browser (label a few meshes, segment the rest)."""

from __future__ import annotations

import argparse
import secrets
import sys

from mvdecor.errors import MvDecorError

#: Hosts that reach only this machine: no token is needed for them.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Seconds Ctrl-C waits for open requests (the page's job event stream) before closing them.
_SHUTDOWN_GRACE_S = 3


def cmd_app(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from mvdecor.app.server import LOCAL_HOSTS, create_app
    except ImportError as exc:  # pragma: no cover - fastapi/uvicorn are dependencies
        raise MvDecorError(
            f"the app needs fastapi and uvicorn ({exc}); pip install fastapi uvicorn"
        ) from None
    from mvdecor.app.folder import AppFolder

    folder = AppFolder(args.folder)
    local = args.host in _LOOPBACK
    token = None if local and not args.token else secrets.token_urlsafe(24)
    app = create_app(folder, token=token, allowed_hosts=LOCAL_HOSTS)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    count = len(folder.shape_ids())
    print(f"mvdecor app: {count} mesh(es) in {folder.root}")
    problem = folder.label_set_error()
    if problem is not None:
        print(f"warning: {problem}; the page offers to start a fresh label set (the old file is kept)")
    print(f"open {url}")
    if token:
        print("every request needs this token (in the URL above, or the X-MVDecor-Token header)")
    if args.host in ("0.0.0.0", "::"):
        print("listening on every interface: from another machine, use this machine's address instead")
    print("Ctrl-C stops the server", flush=True)
    if args.open:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=_SHUTDOWN_GRACE_S,
    )
    print("mvdecor app: stopped", file=sys.stderr)
    return 0


def add_app_parser(sub: argparse._SubParsersAction) -> None:
    """``mvdecor app``."""
    p = sub.add_parser(
        "app",
        help="label a few meshes in the browser and segment the rest (a local web app)",
        description=(
            "Serve a labelling page for FOLDER, any folder of meshes that `mvdecor` reads "
            "(<shape>.<ext> with optional <shape>.labels.txt/.seg/.npy, or <shape>/mesh.<ext> with "
            "face_labels.txt; label names and colours in labels.json). In the page: pick a mesh, "
            "paint faces with a brush (visible faces within a screen-space radius), fill a region "
            "up to sharp creases, select faces with a lasso or a polygon, erase, undo/redo, and "
            "save; then 'segment the rest' labels every "
            "other mesh from the labelled ones (nearest-neighbour transfer, seconds; or the full "
            "pipeline: pre-train once, long on a CPU, then the nearest labelled faces in the network's "
            "embedding, seconds a round, and segment). Predictions "
            "go to FOLDER/predictions/ with a per-face confidence (low-confidence faces are "
            "highlighted) and become labels only when you accept them. Exports (coloured GLB/PLY, "
            "label .txt/.npy, face indices per label as JSON, one PLY per part) go to "
            "FOLDER/exports/<shape>/. Saves are atomic and versioned: a tab holding stale labels "
            "is refused instead of overwriting. 'paint views' labels pixels of a few rendered views "
            "instead, saved as FOLDER/label_images/<shape>/view_<N>.png (the PNGs `mvdecor finetune "
            "--label-images` reads; the pipeline uses them). The app reads and writes only inside FOLDER."
        ),
        epilog=(
            "Security: it listens on 127.0.0.1 (this machine only) by default. With --host set to "
            "another address a random access token is printed and required on every request; "
            "anyone who can reach the port and has the token can read and write FOLDER."
        ),
    )
    p.add_argument("folder", help="folder of meshes (and their labels) to label")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs the printed token)",
    )
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--token", action="store_true", help="require a token even on 127.0.0.1")
    p.set_defaults(func=cmd_app)
