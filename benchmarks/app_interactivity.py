"""How interactive the labelling app is on a large mesh, in headless Chromium.

Writes a folder with a small box and an icosphere (``--subdivisions 7``: 327,680
faces; 6: 81,920), serves it with ``mvdecor app``'s server (uvicorn, in a
thread), drives headless Chromium over the DevTools protocol with the tests'
driver (``tests/app/browser.py``) and prints:

- the server's time to build the mesh's JSON (read, weld, adjacency,
  dihedral angles, encode), by part, and the payload's size;
- in the page: the time from clicking the mesh in the list to its first frame
  (request, JSON parse, buffers, first draw, finished on the GPU), with the
  request alone from the Resource Timing entry, and until the fill tool's
  adjacency has arrived (the page loads it after the first frame);
- the latency of a brush stroke (pointer down, then each move, each followed
  by a 1-pixel ``readPixels`` so the frame is finished) and of one fill that
  covers the whole sphere (every dihedral angle is under the 30 degree limit);
- the latency of saving (``Ctrl+S``) once the fill has labelled every face: from
  the key press until the page has the server's reply (the label file written
  atomically, a new version) and marks the mesh clean, with the request alone
  from its Resource Timing entry.

Not a timed test: the figures depend on the machine (Chromium renders WebGL in
software here, with SwiftShader). Run::

    .venv/bin/python benchmarks/app_interactivity.py [--subdivisions 7] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "app"), str(ROOT / "tests")]

LOAD_JS = """(async () => {
  const id = %(id)s;
  performance.clearResourceTimings();
  const t0 = performance.now();
  const shown = new Promise(resolve => {
    const watch = new MutationObserver(() => {
      if (document.body.dataset.mesh === id) { watch.disconnect(); resolve(); }
    });
    watch.observe(document.body, {attributes: true});
  });
  [...document.querySelectorAll('#meshes li')].find(li => li.firstChild.textContent === id).click();
  await shown;
  await new Promise(requestAnimationFrame);  // the page may draw in the next animation frame
  const gl = document.getElementById('view').getContext('webgl2');
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
  const t1 = performance.now();
  while (document.body.dataset.fillReady === 'false') await new Promise(resolve => setTimeout(resolve, 20));
  const t2 = performance.now();
  // The resource timing entry is queued after the response: on a small mesh the page can be drawn first.
  let entry;
  for (let tries = 0; !entry && tries < 100; tries++) {
    entry = performance.getEntriesByType('resource').filter(e => e.name.includes('api/meshes/' + id) && !e.name.includes('fill-graph')).pop();
    if (!entry) await new Promise(resolve => setTimeout(resolve, 10));
  }
  return {total_ms: t1 - t0, fill_ready_ms: t2 - t0, request_ms: entry.responseEnd - entry.startTime,
          waiting_ms: entry.responseStart - entry.requestStart, bytes: entry.encodedBodySize};
})()"""

#: Each input event is timed twice: its handler alone, and until the next frame is drawn and
#: finished (the page may draw in the handler or in the next animation frame).
TIMING_JS = """
  const c = document.getElementById('view'), r = c.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const gl = c.getContext('webgl2'), px = new Uint8Array(4);
  const fire = (target, type, dx, dy) => target.dispatchEvent(new PointerEvent(type,
    {clientX: x + dx, clientY: y + dy, button: 0, buttons: type === 'pointerup' ? 0 : 1, bubbles: true, pointerId: 1}));
  const timed = async f => {
    const t0 = performance.now(); f(); const t1 = performance.now();
    await new Promise(requestAnimationFrame);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    return [t1 - t0, performance.now() - t0];
  };
"""

STROKE_JS = (
    """(async () => {"""
    + TIMING_JS
    + """
  const down = await timed(() => fire(c, 'pointerdown', 0, 0));
  const moves = [];
  for (let i = 1; i <= %(moves)d; i++) moves.push(await timed(() => fire(c, 'pointermove', 6 * i, 3 * i)));
  const up = await timed(() => fire(window, 'pointerup', 6 * %(moves)d, 3 * %(moves)d));
  const labelled = Number(document.body.dataset.labelled);
  const undo = await timed(() => document.getElementById('undo').click());
  return {down, moves, up, labelled, undo};
})()"""
)

FILL_JS = (
    """(async () => {"""
    + TIMING_JS
    + """
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'f'}));
  const fill = await timed(() => { fire(c, 'pointerdown', 0, 0); fire(window, 'pointerup', 0, 0); });
  const labelled = Number(document.body.dataset.labelled);
  const undo = await timed(() => document.getElementById('undo').click());
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'b'}));
  return {fill, labelled, undo};
})()"""
)

SAVE_JS = (
    """(async () => {"""
    + TIMING_JS
    + """
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'f'}));
  fire(c, 'pointerdown', 0, 0); fire(window, 'pointerup', 0, 0);
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'b'}));
  const labelled = Number(document.body.dataset.labelled);
  performance.clearResourceTimings();
  const t0 = performance.now();
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 's', ctrlKey: true}));
  while (document.body.dataset.dirty !== 'false') await new Promise(resolve => setTimeout(resolve, 5));
  const total = performance.now() - t0;
  const entry = performance.getEntriesByType('resource').filter(e => e.name.endsWith('/labels')).pop();
  // Leave the mesh unlabelled on disk again, so that the next repeat paints, fills and saves changes.
  document.getElementById('undo').click();
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 's', ctrlKey: true}));
  while (document.body.dataset.dirty !== 'false') await new Promise(resolve => setTimeout(resolve, 5));
  return {labelled, total_ms: total, request_ms: entry ? entry.responseEnd - entry.startTime : null};
})()"""
)

FRAME_JS = (
    """(async () => {"""
    + TIMING_JS
    + """
  const frames = [];
  for (let i = 0; i < 3; i++) frames.push(await timed(() => window.dispatchEvent(new Event('resize'))));
  return frames;
})()"""
)


def write_folder(root: Path, subdivisions: int) -> tuple[str, int]:
    """``a_box.off`` and ``sphere.ply`` (binary), ``labels.json``; the sphere's id and faces."""
    import trimesh

    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from app_helpers import two_boxes, write_off

    write_off(root / "a_box.off", *two_boxes())
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    sphere.export(root / "sphere.ply")
    (root / "labels.json").write_text(json.dumps({"labels": ["one", "two"]}))
    return "sphere", len(sphere.faces)


def server_breakdown(folder: Path, shape_id: str) -> dict[str, float]:
    """Seconds of each part of the mesh payload, measured in this process (a cold cache)."""
    from mvdecor.app.folder import AppFolder
    from mvdecor.app.server import mesh_payload
    from mvdecor.inference.smoothing import dihedral_angles, face_adjacency

    def timed(key, function):
        start = time.perf_counter()
        value = function()
        out[key] = time.perf_counter() - start
        return value

    app_folder = AppFolder(folder)
    out: dict[str, float] = {}
    mesh = timed("read_mesh_s", lambda: app_folder.load_mesh(shape_id))
    try:  # the app's own fill graph (absent before it was added)
        from mvdecor.app.geometry import FillGraphCache, fill_graph, welded_faces
    except ImportError:
        from mvdecor.app.server import _welded_faces as welded_faces

        fill_graph = FillGraphCache = None
    welded = timed("weld_s", lambda: welded_faces(mesh.vertices, mesh.faces))
    pairs, _ = timed("library_adjacency_s", lambda: face_adjacency(welded))
    timed("library_dihedral_s", lambda: dihedral_angles(mesh.vertices, mesh.faces, pairs))
    if fill_graph is not None:
        timed("app_fill_graph_s", lambda: fill_graph(mesh.vertices, mesh.faces))
        graphs = FillGraphCache()
        payload = timed("payload_first_s", lambda: mesh_payload(app_folder, shape_id, graphs))
        timed("payload_again_s", lambda: mesh_payload(app_folder, shape_id, graphs))
    else:
        payload = timed("payload_first_s", lambda: mesh_payload(app_folder, shape_id))
        timed("payload_again_s", lambda: mesh_payload(app_folder, shape_id))
    body = timed("json_encode_s", lambda: json.dumps(payload))
    out["json_mb"] = len(body) / 1e6
    return out


def serve(folder: Path):
    import uvicorn

    from mvdecor.app.server import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(folder), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}/"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subdivisions", type=int, default=7, help="icosphere subdivisions (7: 327,680 faces)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="loads, strokes and fills measured")
    parser.add_argument("--moves", type=int, default=10, help="pointer moves per brush stroke")
    parser.add_argument("--load-only", action="store_true", help="measure the load and first frame only")
    args = parser.parse_args()
    from browser import Browser, find_chromium

    chromium = find_chromium()
    if not chromium:
        print("chromium not found (set MVDECOR_CHROMIUM)", file=sys.stderr)
        return 1
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print(f"load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shapes"
        folder.mkdir()
        shape_id, faces = write_folder(folder, args.subdivisions)
        print(f"mesh: icosphere, subdivisions {args.subdivisions}: {faces} faces")
        server_side = server_breakdown(folder, shape_id)
        print("server (in process): " + ", ".join(f"{k} {v:.3f}" for k, v in server_side.items()))
        server, thread, url = serve(folder)
        browser = Browser(chromium, Path(tmp) / "profile", size=(1200, 800))
        try:
            browser.open(url)
            browser.wait_for(
                "document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'a_box'", 120
            )
            print("chromium:", browser.send("Browser.getVersion", timeout=10).get("product"))
            print("webgl:", browser.evaluate(
                "(() => { const gl = document.getElementById('view').getContext('webgl2');"
                " const ext = gl.getExtension('WEBGL_debug_renderer_info');"
                " return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); })()"
            ))  # fmt: skip
            loads, strokes, fills, saves = [], [], [], []

            def run(expression, timeout=600):
                reply = browser.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                                     returnByValue=True, timeout=timeout)  # fmt: skip
                if "exceptionDetails" in reply:
                    raise RuntimeError(json.dumps(reply["exceptionDetails"])[:800])
                return reply["result"].get("value")

            for _ in range(args.repeat):
                run(LOAD_JS % {"id": json.dumps("a_box")})
                loads.append(run(LOAD_JS % {"id": json.dumps(shape_id)}))
                print(f"  loaded: {loads[-1]['total_ms']:.0f} ms", flush=True)
                if args.load_only:
                    continue
                frames = run(FRAME_JS)
                strokes.append(run(STROKE_JS % {"moves": args.moves}))
                strokes[-1]["frames"] = frames
                print(f"  stroke: {strokes[-1]['down']} ms down", flush=True)
                fills.append(run(FILL_JS))
                print(f"  fill: {fills[-1]['fill']} ms", flush=True)
                saves.append(run(SAVE_JS))
                print(f"  save: {saves[-1]['total_ms']:.0f} ms", flush=True)
            if browser.console:
                print("page errors:", browser.console)
        finally:
            browser.close()
            server.should_exit = True
            thread.join(10)

    def med(values) -> str:
        return f"{statistics.median(values):.0f} ms (runs: {', '.join(f'{v:.0f}' for v in values)})"

    def pair(key, rows):
        return (f"handler {med([row[key][0] for row in rows])}; "
                f"to the finished frame {med([row[key][1] for row in rows])}")  # fmt: skip

    print(f"load and first frame: {med([x['total_ms'] for x in loads])}")
    if all("fill_ready_ms" in x for x in loads):  # the fill's adjacency, loaded after the first frame
        print(f"  fill ready after: {med([x['fill_ready_ms'] for x in loads])}")
    print(f"  of which the request: {med([x['request_ms'] for x in loads])}; "
          f"server wait {med([x['waiting_ms'] for x in loads])}; body {loads[0]['bytes'] / 1e6:.1f} MB")  # fmt: skip
    if args.load_only:
        print(json.dumps({"faces": faces, "server": server_side, "loads": loads}))
        return 0
    frames = [f[1] for s in strokes for f in s["frames"]]
    print(f"a frame with nothing changed (resize): median {statistics.median(frames):.0f} ms")
    print(f"brush pointer down (pick buffer drawn): {pair('down', strokes)}")
    moves = [m for s in strokes for m in s["moves"]]
    print(f"brush pointer move, each ({len(moves)} moves; {strokes[0]['labelled']} faces painted per stroke): "
          f"handler median {statistics.median([m[0] for m in moves]):.0f} ms (max {max(m[0] for m in moves):.0f}); "
          f"to the finished frame median {statistics.median([m[1] for m in moves]):.0f} ms "
          f"(max {max(m[1] for m in moves):.0f})")  # fmt: skip
    print(f"brush stroke undo: {pair('undo', strokes)}")
    print(f"fill ({fills[0]['labelled']} faces): {pair('fill', fills)}")
    print(f"fill undo: {pair('undo', fills)}")
    print(f"save ({saves[0]['labelled']} faces labelled): key press to clean {med([x['total_ms'] for x in saves])}; "
          f"the request {med([x['request_ms'] for x in saves if x['request_ms'] is not None] or [float('nan')])}")  # fmt: skip
    record = {"faces": faces, "server": server_side, "loads": loads, "strokes": strokes, "fills": fills}
    print(json.dumps({**record, "saves": saves}))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    raise SystemExit(main())
