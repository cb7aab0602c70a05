"""The render store: exact rebuild, size, atomic and resumable writes, shards, corruption."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mvdecor.config import RenderConfig
from mvdecor.data.datasets import open_dataset
from mvdecor.errors import ConfigError, RenderStoreError
from mvdecor.render import Renderer
from mvdecor.render import store as store_mod
from mvdecor.render.store import (
    RenderStore,
    StoredShape,
    parse_shard,
    render_dataset,
    render_shape,
    select_shard,
    write_shape,
)

SMALL = RenderConfig(rings=2, segments=3, resolution=48)  # 8 views at 48x48
SPEC = "synthetic:categories=chair+mug,n=2,textured=0.5"


def _mesh(shape_id="chair_0000"):
    return open_dataset(SPEC).load(shape_id).normalized().replace(name=shape_id)


def test_stored_views_rebuild_the_cast_views(tmp_path):
    mesh = _mesh()
    cameras, face_ids = render_shape(mesh, SMALL)
    write_shape(tmp_path / "s.npz", mesh, cameras, face_ids)
    renderer = Renderer(mesh)
    with StoredShape(tmp_path / "s.npz") as stored:
        stored.check_mesh(mesh)
        assert len(stored) == 8 and stored.shape_id == "chair_0000"
        np.testing.assert_array_equal(stored.cameras.rotation, cameras.rotation)
        for i in range(len(stored)):
            cast = renderer.render_view(cameras, i)
            loaded = stored.view(i, renderer)
            np.testing.assert_array_equal(loaded.face_ids, cast.face_ids)
            np.testing.assert_allclose(loaded.hit_points, cast.hit_points, atol=1e-5)
            np.testing.assert_allclose(loaded.normals, cast.normals, atol=1e-5)
            np.testing.assert_allclose(loaded.rgb, cast.rgb, atol=2e-3)


def test_store_of_86_views_at_256_is_under_15_mb(tmp_path):
    mesh = _mesh()
    cameras, face_ids = render_shape(mesh, RenderConfig())
    assert face_ids.shape == (86, 256, 256)
    write_shape(tmp_path / "s.npz", mesh, cameras, face_ids)
    assert (tmp_path / "s.npz").stat().st_size < 15e6


def test_store_rejects_another_mesh(tmp_path):
    mesh = _mesh()
    write_shape(tmp_path / "s.npz", mesh, *render_shape(mesh, SMALL))
    with StoredShape(tmp_path / "s.npz") as stored, pytest.raises(RenderStoreError, match="different mesh"):
        stored.check_mesh(_mesh("mug_0001"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_store_file_names_the_file(tmp_path, damage):
    mesh = _mesh()
    path = tmp_path / "chair_0000.npz"
    write_shape(path, mesh, *render_shape(mesh, SMALL))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(4000), "empty": b""}[damage])
    with pytest.raises(RenderStoreError, match=r"chair_0000\.npz"):
        stored = StoredShape(path)
        for i in range(len(stored)):
            stored.face_ids(i)


def test_missing_store_file_and_folder(tmp_path):
    with pytest.raises(RenderStoreError, match="no such stored shape"):
        StoredShape(tmp_path / "nope.npz")
    with pytest.raises(RenderStoreError, match="not a render store"):
        RenderStore(tmp_path)


def test_render_dataset_then_resume_skips_finished_shapes(tmp_path):
    out = tmp_path / "store"
    report = render_dataset(SPEC, out, SMALL, progress=False)
    assert sorted(report.rendered) == open_dataset(SPEC).shape_ids() and not report.failed
    store = RenderStore(out)
    assert store.shape_ids() == open_dataset(SPEC).shape_ids()
    stamps = {s: store.shape_path(s).stat().st_mtime_ns for s in store.shape_ids()}
    again = render_dataset(SPEC, out, SMALL, progress=False)
    assert again.rendered == [] and sorted(again.skipped) == sorted(stamps)
    assert {s: store.shape_path(s).stat().st_mtime_ns for s in store.shape_ids()} == stamps


def test_interrupted_render_leaves_no_partial_shape_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "store"
    real_savez = np.savez_compressed
    calls = {"n": 0}

    def flaky_savez(handle, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:  # die half-way through writing the third shape
            handle.write(b"PK\x03\x04 partial")
            raise KeyboardInterrupt
        real_savez(handle, **arrays)

    monkeypatch.setattr(store_mod.np, "savez_compressed", flaky_savez)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(SPEC, out, SMALL, progress=False)
    store = RenderStore(out)
    finished = store.shape_ids()
    assert len(finished) == 2
    leftovers = [p.name for p in (out / "shapes").iterdir() if not p.name.endswith(".npz")]
    assert leftovers == []  # the temporary file was removed
    for shape_id in finished:  # finished shapes are whole
        with store.open(shape_id) as stored:
            assert all(stored.face_ids(i).shape == (48, 48) for i in range(len(stored)))
    stamps = {s: store.shape_path(s).stat().st_mtime_ns for s in finished}

    monkeypatch.setattr(store_mod.np, "savez_compressed", real_savez)
    # A stale temporary from a killed process is cleaned up too.
    (out / "shapes" / ".mug_0000.npz.tmp-99999").write_bytes(b"junk")
    report = render_dataset(SPEC, out, SMALL, progress=False)
    assert sorted(report.skipped) == sorted(finished)
    assert len(report.rendered) == 2
    assert {s: store.shape_path(s).stat().st_mtime_ns for s in finished} == stamps
    assert sorted(p.name for p in (out / "shapes").iterdir()) == [f"{s}.npz" for s in store.shape_ids()]


def test_shards_partition_the_dataset(tmp_path):
    ids = [f"s{i:02d}" for i in range(10)]
    parts = [select_shard(ids, (i, 3)) for i in range(3)]
    assert sorted(i for part in parts for i in part) == ids
    assert not set(parts[0]) & set(parts[1])
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "a/b", "1", "-1/3"):
        with pytest.raises(ValueError, match="i/n"):
            parse_shard(bad)
    out = tmp_path / "store"
    r0 = render_dataset(SPEC, out, SMALL, shard=(0, 2), progress=False)
    r1 = render_dataset(SPEC, out, SMALL, shard=(1, 2), progress=False)
    assert sorted(r0.rendered + r1.rendered) == open_dataset(SPEC).shape_ids()
    assert not set(r0.rendered) & set(r1.rendered)


def test_store_refuses_other_settings(tmp_path):
    out = tmp_path / "store"
    render_dataset("synthetic:categories=mug,n=1", out, SMALL, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        render_dataset("synthetic:categories=mug,n=1", out, RenderConfig(rings=1, segments=2, resolution=48))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        render_dataset("synthetic:categories=mug,n=1", tmp_path / "full", SMALL)


def test_render_in_two_processes_matches_one(tmp_path):
    spec = "synthetic:categories=lamp,n=3"
    render_dataset(spec, tmp_path / "one", SMALL, workers=1, progress=False)
    report = render_dataset(spec, tmp_path / "two", SMALL, workers=2, progress=False)
    assert len(report.rendered) == 3
    for shape_id in RenderStore(tmp_path / "one").shape_ids():
        with (
            StoredShape(tmp_path / "one" / "shapes" / f"{shape_id}.npz") as a,
            StoredShape(Path(tmp_path / "two" / "shapes" / f"{shape_id}.npz")) as b,
        ):
            for i in range(len(a)):
                np.testing.assert_array_equal(a.face_ids(i), b.face_ids(i))


def test_failed_shapes_are_reported_and_others_rendered(tmp_path):
    folder = tmp_path / "meshes"
    folder.mkdir()
    (folder / "good.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (folder / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    report = render_dataset(str(folder), tmp_path / "store", SMALL, progress=False)
    assert report.rendered == ["good"]
    assert "bad" in report.failed and "bad.off" in report.failed["bad"]


def test_a_render_that_stored_nothing_leaves_no_store(tmp_path):
    folder = tmp_path / "meshes"
    folder.mkdir()
    (folder / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    out = tmp_path / "store"
    report = render_dataset(str(folder), out, SMALL, progress=False)
    assert report.rendered == [] and "bad" in report.failed
    assert not out.exists()
    # An empty store left by an older version takes the corrected settings instead of refusing.
    RenderStore.create(out, RenderConfig(rings=1, segments=2, resolution=48), "synthetic:categories=mug,n=1")
    report = render_dataset("synthetic:categories=mug,n=1", out, SMALL, progress=False)
    assert report.rendered == ["mug_0000"] and RenderStore(out).settings == SMALL


def test_resume_renders_a_truncated_shape_file_again(tmp_path):
    out = tmp_path / "store"
    spec = "synthetic:categories=mug,n=2"
    render_dataset(spec, out, SMALL, progress=False)
    path = RenderStore(out).shape_path("mug_0001")
    intact = path.read_bytes()
    path.write_bytes(intact[: len(intact) // 2])  # a kill in the middle of a copy
    report = render_dataset(spec, out, SMALL, progress=False)
    assert (
        report.damaged == ["mug_0001"] and report.rendered == ["mug_0001"] and report.skipped == ["mug_0000"]
    )
    with StoredShape(path) as shape:
        assert len(shape) == SMALL.num_views


def test_store_written_before_a_key_was_renamed_still_resumes(tmp_path):
    import json

    out = tmp_path / "store"
    render_dataset("synthetic:categories=mug,n=1", out, SMALL, progress=False)
    manifest = json.loads((out / "store.json").read_text())
    manifest["settings"]["radius"] = manifest["settings"].pop("camera_distance")  # the old name
    (out / "store.json").write_text(json.dumps(manifest))
    report = render_dataset("synthetic:categories=mug,n=1", out, SMALL, progress=False)
    assert report.skipped == ["mug_0000"] and not report.rendered


def test_warnings_in_render_workers_show_as_one_line(tmp_path, capfd):
    from mvdecor.cli.common import one_line_warnings

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    tetrahedron = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    for name in ("a", "b"):
        (meshes / f"{name}.obj").write_text(f"mtllib missing_{name}.mtl\n" + tetrahedron)
    with one_line_warnings():
        report = render_dataset(str(meshes), tmp_path / "store", SMALL, workers=2, progress=False)
    assert len(report.rendered) == 2
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "material library" in line]
    # Each worker loads its mesh and warns; none in Python's format (a path, then the code line).
    assert {n for n in ("missing_a", "missing_b") if any(n in line for line in lines)} == {
        "missing_a",
        "missing_b",
    }, err
    assert all(line.startswith("mvdecor: warning: ") for line in lines), err
    assert "warnings.warn(" not in err
