"""The HTML report: the page the writer produces, and the page as a real browser shows it.

The browser tests open the report from ``file://`` in headless Chromium (as a
user double-clicking ``report.html`` would) and read back what the page sets:
``<body data-viewer="ready" data-triangles data-errors>``. They are skipped
when no Chromium is installed, unless ``MVDECOR_REQUIRE_BROWSER=1`` (set by
``scripts/test.sh``, so CI runs them) turns the skip into a failure.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from browser_support import chromium_or_skip
from mvdecor.cli import main
from mvdecor.data.mesh import LabelledMesh
from mvdecor.errors import FileError
from mvdecor.inference.export import UNLABELLED_RGB, export_segmentation
from mvdecor.viz import label_palette
from mvdecor.viz.report import (
    ASSETS_DIR,
    THREE_VERSION,
    MetricsTable,
    Picture,
    ReportMesh,
    write_report,
)
from mvdecor.viz.run_reports import write_segment_report, write_training_report

PART_NAMES = ("seat", "leg", "back")


# ----------------------------------------------------------------- fixtures
def tiny_chair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seat, a leg and a back: ``(vertices, faces, face labels)``."""
    seat = trimesh.creation.box((1.0, 0.15, 1.0))
    leg = trimesh.creation.cylinder(radius=0.1, height=0.9, sections=12)
    leg.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    leg.apply_translation((0.0, -0.5, 0.0))
    back = trimesh.creation.box((1.0, 1.0, 0.12))
    back.apply_translation((0.0, 0.55, -0.45))
    parts = [seat, leg, back]
    chair = trimesh.util.concatenate(parts)
    labels = np.concatenate([np.full(len(part.faces), i) for i, part in enumerate(parts)])
    return np.asarray(chair.vertices), np.asarray(chair.faces), labels


def tiny_report(run_dir: Path, **kwargs) -> tuple[Path, ReportMesh]:
    """A report of the tiny chair (predicted and ground truth), a metrics table and a picture."""
    vertices, faces, predicted = tiny_chair()
    truth = predicted.copy()
    leg_faces = np.flatnonzero(predicted == 1)
    truth[leg_faces[:6]] = 0  # the top of the leg belongs to the seat
    truth[-2:] = -1
    mesh = ReportMesh(
        "chair <01>", vertices, faces, PART_NAMES, {"predicted": predicted, "ground truth": truth}
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 48 * 64).astype(np.uint8).reshape(48, 64)
    Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], axis=2)).save(run_dir / "views.png")
    table = MetricsTable(
        ["category", "part mIoU", "faces", "note"],
        [["chair", 0.8125, 1234, "<b>bold</b> & more"], ["mean", float("nan"), None, True]],
        title="Scores",
    )
    path = write_report(
        run_dir,
        "Tiny run",
        table,
        [Picture("views.png", "four views")],
        [mesh],
        preset="cpu",
        **kwargs,
    )
    return path, mesh


def decode(block: dict) -> np.ndarray:
    dtypes = {"float32": "<f4", "uint8": "u1", "uint16": "<u2", "uint32": "<u4"}
    return np.frombuffer(base64.b64decode(block["data"]), dtypes[block["dtype"]])


# ------------------------------------------------------- the page as written
def test_report_page_content(tmp_path):
    path, mesh = tiny_report(tmp_path / "run")
    assert path == tmp_path / "run" / "report.html"
    page = path.read_text()

    # The metrics table, escaped, with numbers formatted; the preset.
    assert '<table class="metrics">' in page and "<th>part mIoU</th>" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in page and "<b>bold</b>" not in page
    assert '<td class="num">0.812</td>' in page and '<td class="num">1,234</td>' in page
    assert "<td>yes</td>" in page
    assert "preset <code>cpu</code>" in page
    assert "chair &lt;01&gt;" in page and "chair <01>" not in page

    # Pictures and scripts by relative path; nothing from the network, no ES modules.
    assert '<img src="views.png" alt="four views">' in page
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == [
        f"{ASSETS_DIR}/three-{THREE_VERSION}/three.min.js",
        f"{ASSETS_DIR}/three-{THREE_VERSION}/OrbitControls.js",
        f"{ASSETS_DIR}/report-viewer/viewer.js",
    ]
    for script in scripts:
        assert (path.parent / script).is_file()
    assert (path.parent / ASSETS_DIR / f"three-{THREE_VERSION}" / "LICENSE").is_file()
    assert 'type="module"' not in page and "import " not in page
    assert "http://" not in page and "https://" not in page and str(tmp_path) not in page

    # One toggle per part (unlabelled appears: the ground truth has unlabelled faces), with its colour.
    toggles = re.findall(
        r'<input type="checkbox" class="part-toggle" data-slot="(\d+)" data-part="([^"]+)"', page
    )
    assert toggles == [("1", "seat"), ("2", "leg"), ("3", "back"), ("0", "unlabelled")]
    palette = label_palette(len(PART_NAMES))
    for rgb in [*palette, UNLABELLED_RGB]:
        assert f"background: rgb({rgb[0]}, {rgb[1]}, {rgb[2]})" in page
    assert page.count('class="colouring"') == 2 and "ground truth</label>" in page

    # The inline mesh data decodes to the mesh.
    blocks = re.findall(r'<script type="application/json" class="mesh-data">(.*?)</script>', page)
    assert len(blocks) == 1
    data = json.loads(blocks[0])
    np.testing.assert_array_equal(decode(data["vertices"]).reshape(-1, 3), mesh.vertices.astype(np.float32))
    np.testing.assert_array_equal(decode(data["faces"]).reshape(-1, 3), mesh.faces)
    assert [labeling["name"] for labeling in data["labelings"]] == ["predicted", "ground truth"]
    for labeling, labels in zip(data["labelings"], mesh.labelings.values(), strict=True):
        np.testing.assert_array_equal(decode(labeling).astype(np.int64) - 1, labels)
    assert [slot["name"] for slot in data["slots"]] == ["unlabelled", *PART_NAMES]


def test_report_without_meshes_loads_no_scripts(tmp_path):
    path = write_report(tmp_path, "Just numbers", MetricsTable.from_records({"a": {"x": 1.5}, "b": {"y": 2}}))
    page = path.read_text()
    assert "<script src=" not in page and "Segmented meshes" not in page
    assert "<th></th><th>x</th><th>y</th>" in page.replace("\n", "")


def test_metrics_table_checks_rows():
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        MetricsTable(["a", "b"], [[1, 2], [3]])
    table = MetricsTable.from_records({"r1": {"a": 1}, "r2": {"b": 2}}, index="run")
    assert table.columns == ["run", "a", "b"] and table.rows == [["r1", 1, None], ["r2", None, 2]]


def test_pictures_must_be_files_in_the_run_folder(tmp_path):
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (4, 4)).save(outside)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("x")
    with pytest.raises(FileError, match="outside the run folder"):
        write_report(tmp_path / "run", "t", pictures=[outside])
    with pytest.raises(FileError, match="no such picture file"):
        write_report(tmp_path / "run", "t", pictures=["missing.png"])
    with pytest.raises(FileError, match="not a picture"):
        write_report(tmp_path / "run", "t", pictures=["notes.txt"])
    assert not (tmp_path / "run" / "report.html").exists()


def test_report_mesh_checks_its_arrays():
    vertices, faces, labels = tiny_chair()
    with pytest.raises(ValueError, match="labeling 'p' has shape"):
        ReportMesh("m", vertices, faces, PART_NAMES, {"p": labels[:-1]})
    with pytest.raises(ValueError, match="outside"):
        ReportMesh("m", vertices, faces, PART_NAMES, {"p": labels + 1})
    with pytest.raises(ValueError, match="face indices"):
        ReportMesh("m", vertices, faces + len(vertices), PART_NAMES, {"p": labels})
    with pytest.raises(ValueError, match="no labeling"):
        ReportMesh("m", vertices, faces, PART_NAMES, {})


def test_report_command_on_segment_output(tmp_path, capsys):
    """`mvdecor report` reads what `mvdecor segment` writes (one sub-folder per mesh)."""
    vertices, faces, labels = tiny_chair()
    out, truth_dir = tmp_path / "segmented", tmp_path / "truth"
    truth = labels.copy()
    truth[:4] = 2
    for name in ("chair_a", "chair_b"):
        mesh = LabelledMesh(vertices=vertices * 10.0, faces=faces, name=name)
        export_segmentation(
            mesh, labels, PART_NAMES, out / name, confidence=np.full(len(faces), 0.75), stem=name
        )
    export_segmentation(
        LabelledMesh(vertices=vertices, faces=faces, name="chair_a"), truth, PART_NAMES, truth_dir
    )

    assert main(["report", str(out), "--ground-truth", str(truth_dir), "--preset", "cpu"]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert page.count('<article class="viewer"') == 2
    assert "<th>faces right (share)</th>" in page and "<th>mean confidence</th>" in page
    assert '<td class="num">0.750</td>' in page
    right = 1 - 4 / len(faces)
    assert f'<td class="num">{right:.3f}</td>' in page  # chair_a has ground truth
    assert "<td>-</td>" in page  # chair_b has none
    assert page.count('class="colouring"') == 2  # only chair_a gets the switch
    assert '<img src="chair_a/chair_a.legend.png"' in page
    assert 'data-name="chair_a"' in page and 'data-name="chair_b"' in page

    assert main(["report", str(tmp_path / "truth" / "nothing")]) == 1
    assert "no such folder" in capsys.readouterr().err


def fake_pretrain_run(run: Path) -> Path:
    """A pre-training run folder as `mvdecor pretrain` leaves it, written by hand."""
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps({"command": "pretrain", "dataset": "synthetic:n=2", "train_shapes": ["a", "b", "c"]})
    )
    (run / "config.yaml").write_text(
        "preset: cpu\nrender: {rings: 2, segments: 5}\nmodel: {backbone: resnet18, modalities: [grey, depth]}\n"
        "pretrain: {method: mvdecor, iterations: 30, lr: 0.0001}\n"
    )
    (run / "metrics.csv").write_text(
        "step,loss,lr,it_per_s\n10,6.5,0.001,2.0\n20,5.25,0.001,4.0\n30,5.75,0.0005,3.0\n"
    )
    (run / "val.csv").write_text("step,val_loss,lr\n10,6.0,0.001\n20,4.5,0.001\n30,4.75,0.0005\n")
    return run


def test_training_report_summarises_the_logs(tmp_path, capsys):
    run = fake_pretrain_run(tmp_path / "pre")
    page = write_training_report(run).read_text()
    logs = page.split("<h3>Logs</h3>", 1)[1].split("</table>", 1)[0]
    headings = re.findall(r"<th>([^<]*)</th>", logs)
    values = re.findall(r"<td[^>]*>([^<]*)</td>", logs)
    assert dict(zip(headings, values, strict=True)) == {
        "final training loss": "5.75",
        "best validation loss": "4.5",  # the lowest, not the last
        "final learning rate": "0.0005",
        "steps per second (mean)": "3",
    }
    assert "<td>pretrain</td>" in page and "<td>mvdecor</td>" in page and "30 of 30" in page
    assert (
        "<td>lr</td>" in page and '<td class="num">0.0001</td>' in page
    )  # config floats are not rounded to 0
    assert '<img src="pictures/curves.png"' in page and "<script src=" not in page
    with Image.open(run / "pictures" / "curves.png") as image:
        assert image.width > 600
    # The CLI picks the training report for a run folder, and names a folder that is neither.
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "no segmented mesh" in capsys.readouterr().err


def test_training_report_of_a_run_folder_named_relatively(tmp_path, monkeypatch):
    # The demo and the CLI pass paths like "demo_output/pretrain": the curves picture must not be
    # looked for at demo_output/pretrain/demo_output/pretrain/pictures/curves.png.
    fake_pretrain_run(tmp_path / "out" / "pre")
    monkeypatch.chdir(tmp_path)
    page = write_training_report(Path("out") / "pre").read_text()
    assert '<img src="pictures/curves.png"' in page
    assert (tmp_path / "out" / "pre" / "pictures" / "curves.png").is_file()


def test_training_report_of_a_run_with_nothing_logged_yet(tmp_path):
    with pytest.raises(FileError, match=r"no run\.json, config\.yaml or metrics\.csv"):
        write_training_report(tmp_path)
    run = fake_pretrain_run(tmp_path / "run")
    (run / "metrics.csv").unlink()
    (run / "val.csv").unlink()
    page = write_training_report(run).read_text()
    assert "No training metrics logged yet." in page and "<h3>Logs</h3>" not in page and "<img" not in page
    assert "0 of 30" in page


def test_segment_report_names_repeated_stems_by_path(tmp_path):
    """The same shape segmented by two methods (demo layout): views named method/shape."""
    vertices, faces, labels = tiny_chair()
    for method in ("mvdecor", "scratch"):
        mesh = LabelledMesh(vertices=vertices, faces=faces, name="chair")
        export_segmentation(mesh, labels, PART_NAMES, tmp_path / method)
    page = write_segment_report(tmp_path, title="Two methods").read_text()
    assert 'data-name="mvdecor/chair"' in page and 'data-name="scratch/chair"' in page
    assert "<td>mvdecor/chair</td>" in page and "<h1>Two methods</h1>" in page


def test_segment_report_of_a_folder_named_relatively(tmp_path, monkeypatch):
    # `mvdecor segment mesh --out segmented/`: the legend pictures are found under segmented/ once.
    vertices, faces, labels = tiny_chair()
    export_segmentation(LabelledMesh(vertices=vertices, faces=faces, name="chair"), labels, PART_NAMES,
                        tmp_path / "segmented")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    page = write_segment_report(Path("segmented")).read_text()
    assert '<img src="chair.legend.png"' in page and 'data-name="chair"' in page


# ------------------------------------------------------- the page in a browser
def run_chromium(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``page`` from file:// in headless Chromium, offline-safe, with software WebGL."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        # WebGL without a GPU: ANGLE on SwiftShader (needs the "unsafe" opt-in since Chrome 137).
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        "--window-size=1200,1300",
        "--virtual-time-budget=10000",
        *extra,
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def attributes(tag: str) -> dict[str, str]:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def page_errors(dom: str, stderr: str) -> list[str]:
    """JavaScript errors: those the page collected, and uncaught ones in Chromium's console log."""
    listed = re.findall(r"<li>(.*?)</li>", dom.split('id="js-errors"', 1)[1].split("</section>", 1)[0])
    uncaught = [line for line in stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    return listed + uncaught


def test_report_draws_in_headless_chromium(tmp_path):
    chromium = chromium_or_skip()
    path, mesh = tiny_report(tmp_path / "run")

    result = run_chromium(chromium, path, tmp_path / "profile-dom", "--dump-dom")
    dom = result.stdout
    body = attributes(re.search(r"<body[^>]*>", dom).group(0))
    assert page_errors(dom, result.stderr) == [] and body["data-errors"] == "0", result.stderr[-3000:]
    assert body["data-viewer"] == "ready", result.stderr[-3000:]
    assert int(body["data-triangles"]) == len(mesh.faces) > 0
    assert '<table class="metrics">' in dom and "<th>part mIoU</th>" in dom
    article = attributes(re.search(r'<article class="viewer"[^>]*>', dom).group(0))
    assert article["data-triangles"] == str(len(mesh.faces))
    parts = re.findall(r'<input type="checkbox" class="part-toggle" data-slot="\d+" data-part="([^"]+)"', dom)
    assert parts == [*PART_NAMES, "unlabelled"]
    # The viewer filled in the face counts of the predicted labeling.
    counts = re.findall(r'<span class="count">([^<]*)</span>', dom)
    expected = [int((mesh.labelings["predicted"] == label).sum()) for label in (0, 1, 2, -1)]
    assert counts == [f"{n:,} face{'' if n == 1 else 's'}" for n in expected]

    screenshot = tmp_path / "report.png"
    run_chromium(chromium, path, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    assert screenshot.is_file()
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), np.float64)
    assert pixels.shape[:2] == (1300, 1200) and pixels.std() > 10
    # Every part is drawn in its colour (shaded): many more pixels of its hue than the
    # 14x14 swatch of the part list has (the thin leg covers about 1,900 pixels).
    directions = pixels / np.maximum(np.linalg.norm(pixels, axis=2, keepdims=True), 1e-9)
    for name, rgb in zip(PART_NAMES, label_palette(len(PART_NAMES)), strict=True):
        colour = rgb / np.linalg.norm(rgb)
        assert ((directions @ colour) > 0.995).sum() > 800, f"part {name} not visible in {screenshot}"


def test_part_toggles_and_colouring_switch_in_headless_chromium(tmp_path):
    """Untick a part, then switch to the ground truth: the triangles drawn follow."""
    chromium = chromium_or_skip()
    path, mesh = tiny_report(tmp_path / "run")
    probe = """<script>
document.addEventListener("DOMContentLoaded", function () {
  var article = document.querySelector("article.viewer");
  var drawn = [Number(article.dataset.triangles)];
  var leg = article.querySelector('input.part-toggle[data-part="leg"]');
  leg.checked = false;
  leg.dispatchEvent(new Event("change"));
  drawn.push(Number(article.dataset.triangles));
  var truth = article.querySelectorAll("input.colouring")[1];
  truth.checked = true;
  truth.dispatchEvent(new Event("change"));
  drawn.push(Number(article.dataset.triangles));
  article.querySelector('button[data-parts="all"]').click();
  drawn.push(Number(article.dataset.triangles));
  document.body.dataset.probe = drawn.join(",");
});
</script>
</body>"""
    probed = path.with_name("probed.html")  # next to report.html: same relative asset paths
    probed.write_text(path.read_text().replace("</body>", probe))

    result = run_chromium(chromium, probed, tmp_path / "profile", "--dump-dom")
    body = attributes(re.search(r"<body[^>]*>", result.stdout).group(0))
    assert page_errors(result.stdout, result.stderr) == [], result.stderr[-3000:]
    predicted, truth = mesh.labelings["predicted"], mesh.labelings["ground truth"]
    faces = len(mesh.faces)
    expected = [faces, faces - (predicted == 1).sum(), faces - (truth == 1).sum(), faces]
    assert body["data-probe"] == ",".join(str(n) for n in expected)


def test_32_bit_vertex_indices_draw_in_headless_chromium(tmp_path):
    """Faces index vertices beyond 65,535: the data and the index buffer switch to uint32."""
    chromium = chromium_or_skip()
    vertices, faces, labels = tiny_chair()
    padding = np.repeat(vertices[:1], 70_000, axis=0)  # unused vertices, inside the chair's bounds
    mesh = ReportMesh(
        "far indices", np.concatenate([padding, vertices]), faces + len(padding), PART_NAMES, {"p": labels}
    )
    path = write_report(tmp_path / "run", "Many vertices", meshes=[mesh])
    data = json.loads(re.search(r'class="mesh-data">(.*?)</script>', path.read_text()).group(1))
    assert data["faces"]["dtype"] == "uint32" and decode(data["faces"]).max() >= 70_000

    result = run_chromium(chromium, path, tmp_path / "profile", "--dump-dom")
    body = attributes(re.search(r"<body[^>]*>", result.stdout).group(0))
    assert page_errors(result.stdout, result.stderr) == [], result.stderr[-3000:]
    assert body["data-viewer"] == "ready" and body["data-triangles"] == str(len(faces))
