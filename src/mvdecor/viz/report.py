"""A self-contained HTML report of a run: metrics, pictures, and interactive 3D views.

:func:`write_report` writes ``report.html`` into a run folder. The page works
offline, opened straight from the folder (``file://``), so the folder can be
zipped and mailed:

- scripts are classic ``<script src>`` tags (browsers refuse ES-module imports
  and ``fetch`` from ``file://`` pages), and the mesh data is inline in the
  page, base64-encoded typed arrays in a JSON block per mesh (no fetched GLB);
- three.js r147 (the last release shipping classic, non-module controls; see
  ``static/three-0.147.0/README.md``) and the viewer script are *copied* into
  ``report_assets/`` next to the page rather than inlined: the page stays small
  and readable (three.js alone is 600 kB), several reports in one folder share
  one copy, and the three.js licence travels with its code;
- pictures are PNG files of the run folder, linked by relative path.

Each 3D view can be rotated (drag), zoomed (wheel) and panned (right drag); a
checkbox with the part's colour swatch shows or hides each part, and when a
mesh has several labelings (e.g. predicted and ground truth) a switch picks
the colouring. Colours come from :func:`mvdecor.viz.images.label_palette`, as
in every other picture mvdecor draws; unlabelled faces (``-1``) are grey.

Meshes are never decimated. Their data costs about 16 bytes per vertex, 8 (up
to 65,536 vertices) or 16 bytes per face, plus 1.3 bytes per face and labeling
(base64 included); each viewer states its mesh's share of the page, and the
page notes meshes over :data:`LARGE_MESH_FACES` faces as slow to open.

The pages of run folders (``mvdecor segment`` output, training runs) are built
in :mod:`mvdecor.viz.run_reports`.

The page reports its own state for tests: ``<body data-viewer>`` becomes
``"ready"`` once every 3D view has drawn (``"error"``, ``"no-webgl"``, or
``"none"`` without meshes), ``data-triangles`` the triangles drawn, and
``data-errors`` the number of JavaScript errors caught (uncaught exceptions,
failed script loads, ``console.error`` calls), which are also listed at the top
of the page.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np

from mvdecor.errors import FileError
from mvdecor.fileio import atomic_path
from mvdecor.palette import UNLABELLED_NAME, UNLABELLED_RGB, label_palette

#: The vendored three.js release (``static/three-<version>/``).
THREE_VERSION = "0.147.0"

#: Folder, next to the page, that receives the scripts the page loads.
ASSETS_DIR = "report_assets"

#: Meshes with more faces than this get a note that the page may open slowly.
LARGE_MESH_FACES = 1_000_000

#: Picture file types a browser shows.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")

_STATIC_FOLDERS = (f"three-{THREE_VERSION}", "report-viewer")
_SCRIPTS = (
    f"three-{THREE_VERSION}/three.min.js",
    f"three-{THREE_VERSION}/OrbitControls.js",
    "report-viewer/viewer.js",
)


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class MetricsTable:
    """A table of the report: column names and rows of cells.

    Cells may be strings (shown as they are), integers, floats (formatted with
    ``float_format``; NaN shows as ``-``), booleans (``yes``/``no``) or
    ``None`` (``-``). Numeric cells are right-aligned.

    Parameters
    ----------
    columns : sequence of str
        Column headers.
    rows : sequence of sequences
        One sequence of ``len(columns)`` cells per row.
    title : str
        Heading above the table (none when empty).
    float_format : str
        :meth:`str.format` pattern of float cells.
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    title: str = ""
    float_format: str = "{:.3f}"

    def __post_init__(self) -> None:
        for number, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {number} has {len(row)} cells, expected {len(self.columns)}"
                )

    @classmethod
    def from_records(
        cls,
        records: Mapping[str, Mapping[str, object]],
        index: str = "",
        title: str = "",
        float_format: str = "{:.3f}",
    ) -> MetricsTable:
        """A table with one row per record: ``{row name: {column: value}}``.

        Columns are the union of the records' keys in first-seen order; a
        record without a column shows ``-`` there. ``index`` heads the column
        of row names.
        """
        columns: list[str] = []
        for record in records.values():
            columns += [key for key in record if key not in columns]
        rows = [[name, *(record.get(column) for column in columns)] for name, record in records.items()]
        return cls([index, *columns], rows, title, float_format)


@dataclass(frozen=True)
class Picture:
    """A picture file of the run folder and its caption.

    Parameters
    ----------
    path : path
        The picture; a relative path is taken relative to the run folder.
    caption : str
        Shown under the picture (default: the file name).
    """

    path: str | Path
    caption: str = ""


@dataclass(frozen=True)
class ReportMesh:
    """A segmented mesh shown in the report's 3D view.

    Parameters
    ----------
    name : str
        Heading of the view.
    vertices : (V, 3) float
        Vertex positions (sent as float32).
    faces : (F, 3) int
        Triangles, indices into ``vertices``.
    label_names : sequence of str
        The label vocabulary; label ``i`` is drawn in ``label_palette(len(label_names))[i]``.
    labelings : mapping of str to (F,) int
        One or more per-face labelings by name, e.g. ``{"predicted": ..., "ground truth": ...}``;
        the first is shown first, a switch picks another. Labels index
        ``label_names``; ``-1`` is unlabelled (grey).
    caption : str
        A line shown under the view.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    label_names: Sequence[str]
    labelings: Mapping[str, np.ndarray]
    caption: str = ""

    def __post_init__(self) -> None:
        # Fields are replaced by their checked array forms (frozen, hence object.__setattr__).
        vertices = np.asarray(self.vertices)
        faces = np.asarray(self.faces)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
            raise ValueError(f"mesh {self.name!r}: vertices have shape {vertices.shape}, expected (V, 3)")
        if not np.isfinite(vertices).all():
            raise ValueError(f"mesh {self.name!r}: vertices are not all finite")
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(
                f"mesh {self.name!r}: faces have shape {faces.shape} ({faces.dtype}), expected (F, 3) int"
            )
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"mesh {self.name!r}: face indices outside [0, {len(vertices)})")
        if not self.labelings:
            raise ValueError(f"mesh {self.name!r}: no labeling given")
        labelings = {}
        for title, labels in self.labelings.items():
            labels = np.asarray(labels)
            if labels.shape != (len(faces),) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"mesh {self.name!r}: labeling {title!r} has shape {labels.shape} ({labels.dtype}), "
                    f"expected ({len(faces)},) int"
                )
            if labels.size and (labels.min() < -1 or labels.max() >= len(self.label_names)):
                raise ValueError(
                    f"mesh {self.name!r}: labeling {title!r} has labels outside [-1, {len(self.label_names)})"
                )
            labelings[str(title)] = labels.astype(np.int64)
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "faces", faces)
        object.__setattr__(self, "label_names", tuple(str(name) for name in self.label_names))
        object.__setattr__(self, "labelings", labelings)


# -------------------------------------------------------------- the page
def write_report(
    run_dir: str | Path,
    title: str,
    metrics: MetricsTable | Sequence[MetricsTable] = (),
    pictures: Sequence[Picture | str | Path] = (),
    meshes: Sequence[ReportMesh] = (),
    *,
    preset: str | None = None,
    description: str = "",
    filename: str = "report.html",
) -> Path:
    """Write a self-contained HTML report into a run folder.

    Writes ``run_dir/<filename>`` (atomically) and copies the scripts it loads
    into ``run_dir/report_assets/`` (three.js r147 with its licence, and the
    viewer). Open the page in a browser straight from the folder; it needs no
    network, and the folder can be moved or zipped as a whole.

    Parameters
    ----------
    run_dir : path
        The run folder (created if missing).
    title : str
        Page title and heading.
    metrics : MetricsTable or sequence of MetricsTable
        Tables shown first, in order.
    pictures : sequence of Picture, str or Path
        Picture files inside ``run_dir`` (relative paths are taken relative
        to it), shown with their captions, linked by relative path.
    meshes : sequence of ReportMesh
        Segmented meshes, each shown in an interactive 3D view.
    preset : str, optional
        The settings preset or configuration file of the run, shown under the title.
    description : str
        A paragraph of plain text under the title.
    filename : str
        Name of the page in ``run_dir``.

    Returns
    -------
    Path
        The page.

    Raises
    ------
    FileError
        A picture is missing, outside ``run_dir``, or not an image a browser shows.
    """
    from mvdecor import __version__

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tables = [metrics] if isinstance(metrics, MetricsTable) else list(metrics)
    figures = [_relative_picture(run_dir, p if isinstance(p, Picture) else Picture(p)) for p in pictures]
    _copy_assets(run_dir / ASSETS_DIR)

    written = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    meta = [f"written {written} by mvdecor {_text(__version__)}"]
    if preset:
        meta.insert(0, f"preset <code>{_text(preset)}</code>")
    body = [
        f"<header><h1>{_text(title)}</h1>",
        f'<p class="meta">{" &middot; ".join(meta)}</p>',
    ]
    if description:
        body.append(f"<p>{_text(description)}</p>")
    body += [
        "</header>",
        '<section id="js-errors" class="errors" hidden><h2>Errors in this page</h2><ul></ul></section>',
    ]
    if tables:
        body.append('<section id="metrics"><h2>Metrics</h2>')
        body += [_table_html(table) for table in tables]
        body.append("</section>")
    if meshes:
        body += [
            '<section id="meshes"><h2>Segmented meshes</h2>',
            '<p class="hint">Drag to rotate, scroll to zoom, right-drag (or shift-drag) to pan. '
            "Tick or untick a part to show or hide it.</p>",
            '<noscript><p class="errors">The 3D views need JavaScript.</p></noscript>',
            '<div class="viewers">',
        ]
        body += [_viewer_html(number, mesh) for number, mesh in enumerate(meshes)]
        body += ["</div>", "</section>"]
    if figures:
        body.append('<section id="pictures"><h2>Pictures</h2><div class="pictures">')
        for href, caption in figures:
            body.append(
                f'<figure><a href="{href}"><img src="{href}" alt="{_text(caption)}"></a>'
                f"<figcaption>{_text(caption)}</figcaption></figure>"
            )
        body.append("</div></section>")
    if meshes:
        body += [f'<script src="{ASSETS_DIR}/{script}"></script>' for script in _SCRIPTS]

    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="mvdecor {_text(__version__)}">',
            f"<title>{_text(title)}</title>",
            f"<style>{_STYLE}</style>",
            f"<script>{_ERROR_COLLECTOR}</script>",
            "</head>",
            '<body data-viewer="pending" data-triangles="0" data-errors="0">',
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    path = run_dir / filename
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _copy_assets(target: Path) -> None:
    """Copy the vendored scripts (and licence) into ``target``, replacing older copies."""
    static = resources.files("mvdecor.viz").joinpath("static")
    for folder in _STATIC_FOLDERS:
        source = static.joinpath(folder)
        for item in source.iterdir():
            if item.is_file():
                with resources.as_file(item) as item_path, atomic_path(target / folder / item.name) as tmp:
                    shutil.copyfile(item_path, tmp)


def _relative_picture(run_dir: Path, picture: Picture) -> tuple[str, str]:
    """``(URL relative to the page, caption)`` of a picture, after checking it."""
    path = Path(picture.path)
    if not path.is_absolute():
        path = run_dir / path
    if not path.is_file():
        raise FileError(path, "no such picture file")
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise FileError(path, f"not a picture a browser shows (expected {', '.join(PICTURE_SUFFIXES)})")
    try:
        relative = path.resolve().relative_to(run_dir.resolve())
    except ValueError:
        raise FileError(
            path, f"is outside the run folder {run_dir}; copy it there so the report can link it"
        ) from None
    return quote(relative.as_posix()), picture.caption or path.name


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object, float_format: str) -> tuple[str, bool]:
    """``(text, is_number)`` of a table cell."""
    if value is None:
        return "-", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", True
    if isinstance(value, float | np.floating):
        return ("-" if np.isnan(value) else float_format.format(float(value))), True
    return str(value), False


def _table_html(table: MetricsTable) -> str:
    lines = ['<div class="table">']
    if table.title:
        lines.append(f"<h3>{_text(table.title)}</h3>")
    lines.append('<table class="metrics"><thead><tr>')
    lines += [f"<th>{_text(column)}</th>" for column in table.columns]
    lines.append("</tr></thead><tbody>")
    for row in table.rows:
        cells = []
        for value in row:
            text, number = _cell(value, table.float_format)
            cells.append(f'<td class="num">{_text(text)}</td>' if number else f"<td>{_text(text)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _base64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _mesh_payload(mesh: ReportMesh) -> tuple[dict, list[tuple[int, str, tuple[int, int, int]]]]:
    """The viewer's JSON data of a mesh, and the ``(slot, name, rgb)`` of the parts present.

    Slot 0 is "unlabelled" (label ``-1``), slot ``i + 1`` label ``i``.
    """

    vertices, faces, names = mesh.vertices, mesh.faces, mesh.label_names
    palette = label_palette(max(len(names), 1))
    slots = [(UNLABELLED_NAME, tuple(UNLABELLED_RGB))]
    slots += [(name, tuple(int(c) for c in palette[i])) for i, name in enumerate(names)]
    # Little-endian: typed arrays use the platform's byte order, little-endian wherever browsers run.
    face_dtype = "uint16" if len(vertices) <= 65536 else "uint32"
    slot_dtype = "uint8" if len(slots) <= 256 else "uint16"
    present = np.zeros(len(slots), bool)
    coded = []
    for title, labels in mesh.labelings.items():
        slot_of_face = labels + 1
        present[np.unique(slot_of_face)] = True
        coded.append(
            {
                "name": title,
                "dtype": slot_dtype,
                "data": _base64(slot_of_face.astype(_LITTLE_ENDIAN[slot_dtype])),
            }
        )
    payload = {
        "vertices": {"dtype": "float32", "data": _base64(vertices.astype("<f4"))},
        "faces": {"dtype": face_dtype, "data": _base64(faces.astype(_LITTLE_ENDIAN[face_dtype]))},
        "labelings": coded,
        "slots": [{"name": name, "rgb": list(rgb)} for name, rgb in slots],
    }
    # Parts in label order, "unlabelled" (slot 0) last.
    order = [*range(1, len(slots)), 0]
    parts = [(slot, *slots[slot]) for slot in order if present[slot]]
    return payload, parts


_LITTLE_ENDIAN = {"uint8": "u1", "uint16": "<u2", "uint32": "<u4"}


def _json_for_script(data: object) -> str:
    """JSON safe inside ``<script>``: no ``</script>``, ``<!--`` or ``&`` can appear."""
    return (
        json.dumps(data, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def _viewer_html(number: int, mesh: ReportMesh) -> str:
    payload, parts = _mesh_payload(mesh)
    data = _json_for_script(payload)
    vertices, faces = len(mesh.vertices), len(mesh.faces)
    size = f"{len(data) / 1e6:.1f} MB" if len(data) >= 100_000 else f"{len(data) / 1e3:.0f} kB"
    lines = [
        f'<article class="viewer" id="mesh-{number}" data-name="{_text(mesh.name)}" '
        f'data-faces="{faces}" data-parts="{len(parts)}" data-triangles="0">',
        f"<h3>{_text(mesh.name)}</h3>",
        f'<canvas class="view" aria-label="3D view of {_text(mesh.name)}"></canvas>',
    ]
    if len(payload["labelings"]) > 1:
        lines.append('<fieldset class="colourings"><legend>colouring</legend>')
        for which, labeling in enumerate(payload["labelings"]):
            checked = " checked" if which == 0 else ""
            lines.append(
                f'<label><input type="radio" class="colouring" name="colouring-{number}" '
                f'value="{which}"{checked}> {_text(labeling["name"])}</label>'
            )
        lines.append("</fieldset>")
    lines += [
        '<fieldset class="parts"><legend>parts <button type="button" data-parts="all">all</button> '
        '<button type="button" data-parts="none">none</button></legend>',
    ]
    for slot, name, rgb in parts:
        lines.append(
            f'<label class="part"><input type="checkbox" class="part-toggle" data-slot="{slot}" '
            f'data-part="{_text(name)}" checked><span class="swatch" '
            f'style="background: rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"></span>'
            f'{_text(name)} <span class="count"></span></label>'
        )
    lines.append("</fieldset>")
    caption = f"{vertices:,} vertices, {faces:,} faces; {size} of mesh data in this page."
    if faces > LARGE_MESH_FACES:
        caption += " A large mesh (not decimated): the page may take a while to open."
    captions = [mesh.caption, caption] if mesh.caption else [caption]
    lines.append(f'<p class="caption">{" &middot; ".join(_text(c) for c in captions)}</p>')
    lines.append(f'<script type="application/json" class="mesh-data">{data}</script>')
    lines.append("</article>")
    return "\n".join(lines)


# -------------------------------------------------------- page furniture
_ERROR_COLLECTOR = """
(function () {
  "use strict";
  var errors = (window.mvdecorErrors = []);
  function show() {
    var body = document.body;
    if (!body) return;
    body.dataset.errors = String(errors.length);
    var box = document.getElementById("js-errors");
    if (!box || errors.length === 0) return;
    box.hidden = false;
    var list = box.querySelector("ul");
    while (list.children.length < errors.length) {
      var item = document.createElement("li");
      item.textContent = errors[list.children.length];
      list.appendChild(item);
    }
  }
  function record(message) {
    errors.push(String(message));
    show();
  }
  window.mvdecorRecordError = record;
  // Capture phase: also catches <script src> files that fail to load.
  window.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target !== window && (target.src || target.href)) {
      record("could not load " + (target.src || target.href));
    } else {
      record((event.message || "error") + (event.filename ? " (" + event.filename + ":" + event.lineno + ")" : ""));
    }
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    record("unhandled promise rejection: " + event.reason);
  });
  var consoleError = console.error;
  console.error = function () {
    record("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };
  document.addEventListener("DOMContentLoaded", show);
})();
"""

_STYLE = """
:root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; color: #1d1f23; background: #fff; }
h1 { margin: 8px 0 4px; font-size: 1.6em; }
h2 { margin: 28px 0 8px; font-size: 1.25em; border-bottom: 1px solid #d8dbe0; padding-bottom: 4px; }
h3 { margin: 12px 0 6px; font-size: 1.05em; }
.meta, .hint, .caption, figcaption { color: #5b6068; font-size: 0.9em; }
code { background: #f1f2f4; padding: 0 4px; border-radius: 3px; }
.errors { background: #fdecec; border: 1px solid #e3a1a1; padding: 4px 12px; color: #8a1c1c; }
table.metrics { border-collapse: collapse; font-size: 0.92em; margin-bottom: 12px; }
table.metrics th, table.metrics td { border: 1px solid #d8dbe0; padding: 4px 10px; text-align: left; }
table.metrics th { background: #f4f5f7; }
table.metrics td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.metrics tbody tr:nth-child(even) { background: #fafbfc; }
.viewers { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
article.viewer { border: 1px solid #d8dbe0; border-radius: 6px; padding: 4px 12px 8px; }
canvas.view { width: 100%; height: 380px; display: block; background: #f4f5f7; border-radius: 4px;
  cursor: grab; touch-action: none; }
article.no-webgl canvas.view { display: none; }
fieldset { border: none; margin: 6px 0 0; padding: 0; }
legend { font-weight: 600; font-size: 0.9em; padding: 0 0 2px; }
legend button { font-size: 0.85em; margin-left: 4px; }
label.part, fieldset.colourings label { display: inline-flex; align-items: center; gap: 4px;
  margin: 2px 12px 2px 0; font-size: 0.92em; cursor: pointer; }
label.part.absent { opacity: 0.45; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #444; border-radius: 2px; }
.count { color: #5b6068; font-size: 0.9em; }
.pictures { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #d8dbe0; display: block; }
"""
