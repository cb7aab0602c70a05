"""Rendering speed and store size.

Prints, for a ~20k-face and a ~200k-face mesh at 256x256 and 512x512:

- views per second per process and million rays per second for the ray cast
  alone (face id, barycentrics, distance) and for a full view (every buffer);
- the same ray cast through trimesh's generic ray API (``trimesh.ray.ray_pyembree``
  over the same Embree), and the ratio between the two;
- stored MB per shape (86 views at 256x256) and the time to load one stored view
  (decompress its face ids and rebuild every buffer).

Run with ``python benchmarks/render.py`` (add ``--json FILE`` to save figures).
Single process; set OMP/MKL thread counts as you like (numpy here is mostly
single-threaded).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from mvdecor.config import RenderConfig
from mvdecor.data.io import load_mesh
from mvdecor.data.synthetic import make_shape
from mvdecor.render import CameraScheme, Renderer
from mvdecor.render.store import StoredShape, render_shape, write_shape


def _best_rate(fn, n_views: int, repeats: int = 3) -> float:
    """Views per second of ``fn(i)`` over ``n_views`` views, best of ``repeats``."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n_views):
            fn(i)
        best = max(best, n_views / (time.perf_counter() - start))
    return best


def bench_mesh(label: str, mesh, resolutions=(256, 512), n_views: int = 20) -> list[dict]:
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    start = time.perf_counter()
    renderer = Renderer(mesh)
    build_s = time.perf_counter() - start
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    start = time.perf_counter()
    generic = RayMeshIntersector(tm)
    generic.intersects_first(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0]]))  # build its scene
    generic_build_s = time.perf_counter() - start
    rows = []
    for res in resolutions:
        cams = CameraScheme(resolution=res).cameras(seed=0)
        n = min(n_views, len(cams))
        rays = res * res
        coverage = float(np.mean([(renderer.cast(cams, i)[0] >= 0).mean() for i in range(n)]))
        cast = _best_rate(lambda i, c=cams: renderer.cast(c, i), n)
        full = _best_rate(lambda i, c=cams: renderer.render_view(c, i), n)

        def generic_cast(i: int, c=cams) -> None:
            origin, dirs = c.pixel_rays(i)
            d = dirs.reshape(-1, 3)
            # Face id, hit location and barycentrics: what our cast returns.
            tri, _ray, loc = generic.intersects_id(
                np.broadcast_to(origin, d.shape), d, multiple_hits=False, return_locations=True
            )
            trimesh.triangles.points_to_barycentric(tm.triangles[tri], loc)

        generic_rate = _best_rate(generic_cast, n, repeats=2)
        rows.append(
            {
                "mesh": label,
                "faces": mesh.num_faces,
                "resolution": res,
                "coverage": round(coverage, 3),
                "scene_build_s": round(build_s, 3),
                "trimesh_scene_build_s": round(generic_build_s, 3),
                "cast_views_per_s": round(cast, 1),
                "cast_mrays_per_s": round(cast * rays / 1e6, 2),
                "full_view_views_per_s": round(full, 1),
                "trimesh_views_per_s": round(generic_rate, 1),
                "trimesh_mrays_per_s": round(generic_rate * rays / 1e6, 2),
                "cast_speedup_vs_trimesh": round(cast / generic_rate, 2),
                "full_view_speedup_vs_trimesh_cast": round(full / generic_rate, 2),
            }
        )
    return rows


def bench_store(label: str, mesh) -> dict:
    config = RenderConfig()  # 86 views at 256x256
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shape.npz"
        start = time.perf_counter()
        cameras, face_ids = render_shape(mesh, config)
        write_shape(path, mesh, cameras, face_ids)
        render_store_s = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        renderer = Renderer(mesh)
        with StoredShape(path) as stored:
            ids_ms, view_ms = [], []
            for i in range(len(stored)):
                t0 = time.perf_counter()
                ids = stored.face_ids(i)
                t1 = time.perf_counter()
                renderer.view_from_face_ids(stored.cameras, i, ids)
                t2 = time.perf_counter()
                ids_ms.append((t1 - t0) * 1e3)
                view_ms.append((t2 - t0) * 1e3)
        open_start = time.perf_counter()
        with StoredShape(path) as stored:
            stored.face_ids(0)
        open_ms = (time.perf_counter() - open_start) * 1e3
    return {
        "mesh": label,
        "faces": mesh.num_faces,
        "views": 86,
        "resolution": 256,
        "store_mb_per_shape": round(size_mb, 2),
        "render_and_store_s": round(render_store_s, 2),
        "load_face_ids_ms": round(float(np.median(ids_ms)), 2),
        "load_full_view_ms": round(float(np.median(view_ms)), 2),
        "open_file_and_first_view_ms": round(open_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--views", type=int, default=20, help="views timed per configuration")
    parser.add_argument("--mesh", action="append", default=[], help="also time this mesh file (repeatable)")
    args = parser.parse_args()
    meshes = {
        "synthetic table ~20k": make_shape("table", 0, detail=4),
        "synthetic table ~200k": make_shape("table", 0, detail=12),
    }
    for path in args.mesh:
        mesh = load_mesh(path).normalized()
        meshes[f"{mesh.name} ({Path(path).suffix[1:]})"] = mesh
    speed, store = [], []
    for label, mesh in meshes.items():
        speed += bench_mesh(label, mesh, n_views=args.views)
        store.append(bench_store(label, mesh))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    header = (
        f"{'mesh':<24}{'faces':>8}{'res':>5}{'cover':>7}{'cast v/s':>10}{'Mray/s':>8}{'full v/s':>10}"
        f"{'trimesh v/s':>13}{'Mray/s':>8}{'cast x':>8}{'full x':>8}"
    )
    print(header)
    for r in speed:
        print(
            f"{r['mesh']:<24}{r['faces']:>8}{r['resolution']:>5}{r['coverage']:>7}"
            f"{r['cast_views_per_s']:>10}{r['cast_mrays_per_s']:>8}{r['full_view_views_per_s']:>10}"
            f"{r['trimesh_views_per_s']:>13}{r['trimesh_mrays_per_s']:>8}"
            f"{r['cast_speedup_vs_trimesh']:>8}{r['full_view_speedup_vs_trimesh_cast']:>8}"
        )
    print()
    print(f"{'mesh':<24}{'faces':>8}{'MB/shape (86@256)':>19}{'face ids ms':>13}{'full view ms':>14}")
    for r in store:
        print(
            f"{r['mesh']:<24}{r['faces']:>8}{r['store_mb_per_shape']:>19}"
            f"{r['load_face_ids_ms']:>13}{r['load_full_view_ms']:>14}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"speed": speed, "store": store}, indent=2) + "\n")


if __name__ == "__main__":
    main()
