"""The labelling app's web server: a FastAPI application over one :class:`AppFolder`.

:func:`create_app` builds it; ``mvdecor app FOLDER`` serves it with uvicorn.

Endpoints (JSON unless said otherwise):

=======  ==================================  ==============================================
GET      ``/``                               the page (``static/index.html``)
GET      ``/static/...``                     the page's scripts (three.js r147, vendored)
GET      ``/api/info``                       folder, label set, methods, the job's status
GET      ``/api/meshes``                     every mesh with its state (errors included)
PUT      ``/api/meshes/{name}``              the bytes of a mesh file (``application/octet-stream``):
                                             add it to the folder as ``name``; 201 and its list
                                             entry, 409 when taken, 413 over ``max_upload``,
                                             422 when it does not load
GET      ``/api/meshes/{id}``                geometry (base64 little-endian arrays), labels,
                                             version, face adjacency and dihedral angles
                                             (null with ``?fill_graph=false``), prediction
GET      ``/api/meshes/{id}/fill-graph``     the face adjacency and dihedral angles alone
PUT      ``/api/meshes/{id}/labels``         ``{"version", "labels"}``: save; 409 when stale
POST     ``/api/meshes/{id}/accept``         ``{"version"}``: the prediction becomes the labels
POST     ``/api/meshes/{id}/export``         ``{"source": "labels"|"prediction"}``: write exports
GET      ``/api/meshes/{id}/views``          views offered for painting (index, version, painted)
GET      ``/api/meshes/{id}/views/{n}/image`` view ``n`` rendered (RGBA PNG, alpha = the object)
GET      ``/api/meshes/{id}/views/{n}/labels`` its painted labels (base64 ``H*W`` bytes, 255 none)
PUT      ``/api/meshes/{id}/views/{n}/labels`` ``{"version", "labels"}``: save the label PNG; 409
GET      ``/api/labels``                     the label set (``error``: why ``labels.json`` is
                                             malformed, or null); PUT ``{"names", "colors", "version"}``
POST     ``/api/labels/reset``               ``{"version"}``: a fresh label set over a malformed
                                             ``labels.json``, kept as ``labels.json.bak-<time>``
POST     ``/api/jobs``                       ``{"method", "options"}``: start "segment the rest"
GET      ``/api/jobs/current``               the job's progress; POST ``.../cancel`` stops it
GET      ``/api/jobs/current/events``        its progress as Server-Sent Events (:mod:`.events`)
GET      ``/api/files/{path}``               a file under ``exports/`` (downloads)
=======  ==================================  ==============================================

Safety:

- every path is resolved inside the folder (:meth:`AppFolder.safe_path`);
- with a ``token``, every request must carry it (``?token=`` or the
  ``X-MVDecor-Token`` header), compared in constant time; without one, only
  requests whose ``Host`` is a loopback name are served (against DNS rebinding);
- requests that change something must be ``application/json`` (a cross-site
  form cannot send that without a preflight, which is never granted) and carry
  a ``Content-Length`` of at most ``max_body`` bytes; the one exception is an
  added mesh (``PUT /api/meshes/{name}``): ``application/octet-stream`` (no
  cross-site form can send that either, nor a ``PUT``), at most ``max_upload``
  bytes, read in chunks into a hidden staging folder and published only once
  the folder's loader reads it (:mod:`mvdecor.app.uploads`): nothing
  half-written is ever left under a mesh's name;
- a mesh that fails to load is an error entry in the list, never a crash, and a
  malformed ``labels.json`` is reported by ``/api/info`` and ``/api/labels``
  (the page offers to replace it), never a failure to start.
"""

from __future__ import annotations

import base64
import hmac
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from mvdecor.app.events import job_events
from mvdecor.app.folder import (
    ABSENT_VERSION,
    EXPORTS_DIR,
    AppFolder,
    NotFoundError,
    UnsafePathError,
    VersionConflictError,
    file_version,
)
from mvdecor.app.geometry import FillGraphCache
from mvdecor.app.jobs import LOCK_FILE, METHODS, JobBusyError, JobManager, job_function
from mvdecor.app.labelset import LabelSetFileError
from mvdecor.app.uploads import (
    MeshExistsError,
    MeshUploadError,
    add_mesh,
    new_mesh_path,
    remove_stale_uploads,
    upload_staging,
)
from mvdecor.app.views import PaintedViews
from mvdecor.config import RenderConfig
from mvdecor.data.io import SUPPORTED_EXTENSIONS
from mvdecor.errors import FileError, MvDecorError

__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_UPLOAD",
    "LOCAL_HOSTS",
    "create_app",
    "fill_graph_payload",
    "mesh_payload",
]

#: Largest request body accepted (labels of ~4 million faces as JSON).
DEFAULT_MAX_BODY = 32 * 1024 * 1024
#: Largest mesh file that can be added from the page.
DEFAULT_MAX_UPLOAD = 200 * 1024 * 1024
#: Seconds between two heartbeat comments of the job's event stream.
DEFAULT_HEARTBEAT_S = 15.0
#: Host names served without a token.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
TOKEN_HEADER = "X-MVDecor-Token"
_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
#: The one route that takes a raw body: ``PUT /api/meshes/{name}`` (a mesh file added).
_UPLOAD_PATH = re.compile(r"^/api/meshes/[^/]+$")
_UPLOAD_TYPE = "application/octet-stream"
#: On every response: the page loads only its own scripts and talks only to this server, cannot
#: be framed by another site, and never sends the token-bearing address on as a referrer.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class LabelsBody(BaseModel):
    version: str = Field(max_length=64)
    labels: list[int]


class VersionBody(BaseModel):
    version: str = Field(max_length=64)


class LabelSetBody(BaseModel):
    version: str = Field(max_length=64)
    names: list[str] = Field(max_length=4096)
    colors: list[str] = Field(max_length=4096)


class ViewLabelsBody(BaseModel):
    version: str = Field(max_length=64)
    labels: str = Field(max_length=8 * 1024 * 1024)  # base64 of H * W bytes


class JobBody(BaseModel):
    method: str = "transfer"
    options: dict[str, Any] = Field(default_factory=dict)


class ExportBody(BaseModel):
    source: str = "labels"


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(
        np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    ).decode()


def fill_graph_payload(folder: AppFolder, shape_id: str, graphs: FillGraphCache) -> dict[str, Any]:
    """``{"adjacency", "dihedral"}`` of a mesh, base64 as in :func:`mesh_payload`."""
    mesh = folder.load_mesh(shape_id)
    pairs, angles = graphs.get(shape_id, folder.mesh_file(shape_id), mesh.vertices, mesh.faces)
    return {"id": shape_id, "adjacency": _b64(pairs, "uint32"), "dihedral": _b64(angles, "float32")}


def mesh_payload(
    folder: AppFolder, shape_id: str, graphs: FillGraphCache | None = None, *, fill_graph: bool = True
) -> dict[str, Any]:
    """The JSON the page loads for one mesh.

    Arrays are base64 strings of little-endian typed arrays: ``vertices``
    float32 ``(V*3)``, ``faces`` uint32 ``(F*3)``, ``adjacency`` uint32 ``(E*2)``
    (faces sharing an edge, vertices merged by position), ``dihedral`` float32
    ``(E)`` in degrees; ``labels`` is a JSON list (``-1`` unlabelled, one per
    face; all ``-1`` when nothing is saved); ``prediction`` holds ``labels``
    (list) and ``confidence`` (float32 base64) or is null. ``graphs`` keeps the
    adjacency and angles between calls (:class:`~mvdecor.app.geometry.FillGraphCache`);
    ``fill_graph=False`` leaves them out (the page fetches them apart, after the
    first frame: on a 300k-face mesh they are half the payload and most of its time).
    """
    mesh = folder.load_mesh(shape_id)
    label_error = None
    try:
        labels, version = folder.read_labels(shape_id, mesh)
    except MvDecorError as exc:
        # Shown to the user; saving writes a good file over the bad one.
        labels, label_error = None, str(exc)
        version = file_version(folder.label_file(shape_id))
    if labels is None:
        labels = np.full(mesh.num_faces, -1, np.int64)
    prediction = None
    try:
        saved = folder.load_prediction(shape_id)
    except MvDecorError as exc:
        saved, label_error = None, label_error or str(exc)
    if saved is not None and len(saved["labels"]) == mesh.num_faces:
        prediction = {
            "labels": saved["labels"].tolist(),
            "confidence": _b64(saved["confidence"], "float32"),
            "info": saved["info"],
        }
    graph = {}
    if fill_graph:
        graph = fill_graph_payload(folder, shape_id, graphs if graphs is not None else FillGraphCache(1))
    return {
        "id": shape_id,
        "file": folder.relative(folder.mesh_file(shape_id)),
        "num_vertices": mesh.num_vertices,
        "num_faces": mesh.num_faces,
        "vertices": _b64(mesh.vertices, "float32"),
        "faces": _b64(mesh.faces, "uint32"),
        "labels": labels.tolist(),
        "version": version,
        "label_file": folder.relative(folder.label_file(shape_id)),
        "label_error": label_error,
        "adjacency": graph.get("adjacency"),
        "dihedral": graph.get("dihedral"),
        "prediction": prediction,
    }


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _size(count: int) -> str:
    return f"{count / 2**20:g} MB" if count >= 2**20 else f"{count} bytes"


def _page(token: str | None) -> str:
    html = resources.files("mvdecor.app").joinpath("static/index.html").read_text(encoding="utf-8")
    query = f"?token={token}" if token else ""
    return html.replace("__TOKEN_QUERY__", query)


def _static_root() -> Path:
    return Path(str(resources.files("mvdecor.app").joinpath("static")))


def _three_root() -> Path:
    from mvdecor.viz.report import THREE_VERSION

    return Path(str(resources.files("mvdecor.viz").joinpath(f"static/three-{THREE_VERSION}")))


def create_app(
    folder: str | Path | AppFolder,
    token: str | None = None,
    *,
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS,
    max_body: int = DEFAULT_MAX_BODY,
    max_upload: int | None = None,
    view_render: RenderConfig | None = None,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
) -> FastAPI:
    """The labelling app for ``folder``.

    Parameters
    ----------
    folder : a dataset folder (or an :class:`AppFolder`)
    token : when set, every request must carry it (``?token=`` or the
        ``X-MVDecor-Token`` header); set it whenever the server listens
        beyond the loopback interface
    allowed_hosts : without a token, the ``Host`` names served (loopback by default)
    max_body : the largest request body, in bytes
    max_upload : the largest mesh file added from the page, in bytes
        (default :data:`DEFAULT_MAX_UPLOAD`)
    view_render : render settings of the views offered for painting (default:
        those the folder's painted views were made with, else the ``cpu`` preset's)
    heartbeat_s : seconds between the heartbeat comments of the job's event stream

    Returns
    -------
    FastAPI
        ``app.state.folder`` is the :class:`AppFolder`, ``app.state.jobs`` its
        :class:`~mvdecor.app.jobs.JobManager`, ``app.state.views`` its
        :class:`~mvdecor.app.views.PaintedViews`.
    """
    app_folder = folder if isinstance(folder, AppFolder) else AppFolder(folder)
    remove_stale_uploads(app_folder)
    upload_limit = DEFAULT_MAX_UPLOAD if max_upload is None else int(max_upload)
    jobs = JobManager(app_folder.safe_path(LOCK_FILE))
    views = PaintedViews(app_folder, view_render)
    graphs = FillGraphCache()
    app = FastAPI(title="mvdecor labelling app", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.folder, app.state.jobs, app.state.token = app_folder, jobs, token
    app.state.views = views

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None:
            given = request.query_params.get("token") or request.headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(
                    401, "this server needs its access token (printed when it started): add ?token=..."
                )
        else:
            host = request.headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in allowed_hosts:
                return _error(403, f"host {host!r} refused: serve with --host and use the token to allow it")
        if request.method in _MUTATING:
            path, kind = request.url.path, request.headers.get("content-type", "")
            upload = request.method == "PUT" and _UPLOAD_PATH.match(path) is not None
            limit = upload_limit if upload else max_body
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "a Content-Length header is required")
            if int(length) > limit:
                if upload:
                    return _error(413, f"the file is {_size(int(length))}, over the limit of {_size(limit)}")
                return _error(413, f"request body over {max_body} bytes")
            if upload:
                if not kind.startswith(_UPLOAD_TYPE):
                    return _error(415, f"send the mesh file's bytes (Content-Type: {_UPLOAD_TYPE})")
            elif (
                request.method == "PUT" and kind.startswith(_UPLOAD_TYPE) and path.startswith("/api/meshes/")
            ):
                return _error(403, "a mesh is added under a plain file name (no folders, no '..')")
            elif not kind.startswith("application/json"):
                return _error(415, "send JSON (Content-Type: application/json)")
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    @app.exception_handler(VersionConflictError)
    async def conflict(request: Request, exc: VersionConflictError) -> JSONResponse:
        return _error(409, str(exc), current_version=exc.current)

    @app.exception_handler(LabelSetFileError)
    async def malformed_label_set(request: Request, exc: LabelSetFileError) -> JSONResponse:
        return _error(409, str(exc), file=exc.path, reason=exc.reason)

    # The other refusals are their message under a status (the most specific class wins).
    for error_type, status in (
        (JobBusyError, 409),
        (NotFoundError, 404),
        (UnsafePathError, 403),
        (MeshExistsError, 409),
        (MeshUploadError, 422),
        (MvDecorError, 400),
    ):

        async def refused(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            return _error(status, str(exc))

        app.add_exception_handler(error_type, refused)

    # ----------------------------------------------------------------- page
    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(_page(token), headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name:path}")
    def static(name: str) -> Response:
        if name.startswith("three/"):
            base, rest = _three_root(), name[len("three/") :]
        else:
            base, rest = _static_root(), name
        path = (base / rest).resolve()
        if ".." in Path(rest).parts or base.resolve() not in path.parents or not path.is_file():
            return _error(404, f"no static file {name!r}")
        return FileResponse(path)

    # ------------------------------------------------------------------ api
    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "folder": str(app_folder.root),
            "name": app_folder.root.name,
            "labels": app_folder.label_set(),
            "methods": list(METHODS),
            "job": jobs.status(),
            "upload": {"extensions": list(SUPPORTED_EXTENSIONS), "max_bytes": upload_limit},
        }

    @app.get("/api/meshes")
    def meshes() -> dict[str, Any]:
        return {"meshes": [e.to_dict() for e in app_folder.entries()]}

    @app.put("/api/meshes/{name}", status_code=201)
    async def put_mesh(name: str, request: Request) -> Response:
        """Add a mesh file: checked, staged in chunks, loaded, then published (never over a file)."""
        new_mesh_path(app_folder, name)  # a bad or taken name is refused before the body is read
        try:
            with upload_staging(app_folder, name) as staged:
                size = 0
                with open(staged, "wb") as handle:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > upload_limit:  # more than its Content-Length said
                            return _error(413, f"the file is over the limit of {_size(upload_limit)}")
                        handle.write(chunk)
                shape_id = await run_in_threadpool(add_mesh, app_folder, staged, name)
        except ClientDisconnect:
            return _error(400, f"the upload of {name} was interrupted; nothing was added")
        except OSError as exc:  # a read-only folder, a full disk
            return _error(
                500, f"{name}: cannot write into the folder ({exc.strerror or exc}); nothing was added"
            )
        entry = await run_in_threadpool(app_folder.entry, shape_id)
        return JSONResponse(entry.to_dict(), status_code=201)

    def _known(shape_id: str) -> str:
        if shape_id not in app_folder.refresh().shape_ids():
            raise NotFoundError(f"no mesh {shape_id!r} in this folder")
        return shape_id

    @app.get("/api/meshes/{shape_id}")
    def mesh(shape_id: str, fill_graph: bool = True) -> Response:
        shape_id = _known(shape_id)
        app_folder.mesh_file(shape_id)  # outside the folder: 403 (UnsafePathError), not 422
        try:
            payload = mesh_payload(app_folder, shape_id, graphs, fill_graph=fill_graph)
        except UnsafePathError:
            raise
        except FileError as exc:  # the mesh cannot be read: the list shows why too
            return _error(422, str(exc))
        return JSONResponse(payload)

    @app.get("/api/meshes/{shape_id}/fill-graph")
    def mesh_fill_graph(shape_id: str) -> Response:
        shape_id = _known(shape_id)
        app_folder.mesh_file(shape_id)
        try:
            return JSONResponse(fill_graph_payload(app_folder, shape_id, graphs))
        except UnsafePathError:
            raise
        except FileError as exc:
            return _error(422, str(exc))

    @app.put("/api/meshes/{shape_id}/labels")
    def save_labels(shape_id: str, body: LabelsBody) -> dict[str, Any]:
        version = app_folder.save_labels(_known(shape_id), body.labels, body.version)
        return {"version": version, "state": _state(shape_id)}

    @app.post("/api/meshes/{shape_id}/accept")
    def accept(shape_id: str, body: VersionBody) -> dict[str, Any]:
        version = app_folder.accept_prediction(_known(shape_id), body.version)
        labels, _ = app_folder.read_labels(shape_id)
        return {"version": version, "state": _state(shape_id), "labels": labels.tolist()}

    def _state(shape_id: str) -> str:
        return app_folder.entry(shape_id).state

    @app.post("/api/meshes/{shape_id}/export")
    def export(shape_id: str, body: ExportBody) -> dict[str, Any]:
        from mvdecor.app.exports import export_shape

        _known(shape_id)
        mesh = app_folder.load_mesh(shape_id)
        confidence = None
        if body.source == "prediction":
            saved = app_folder.load_prediction(shape_id)
            if saved is None:
                raise NotFoundError(f"no prediction for {shape_id!r}")
            labels, confidence = saved["labels"], saved["confidence"]
        elif body.source == "labels":
            labels, _ = app_folder.read_labels(shape_id, mesh)
            if labels is None:
                raise NotFoundError(f"{shape_id} has no saved labels to export; save first")
        else:
            raise MvDecorError(f"unknown export source {body.source!r} (labels or prediction)")
        names = list(app_folder.label_set()["names"])  # type: ignore[arg-type]
        app_folder.check_labels(labels, mesh.num_faces)
        out = app_folder.safe_path(f"{EXPORTS_DIR}/{shape_id}")
        paths = export_shape(mesh, labels, names, out, confidence=confidence)
        return {
            "folder": app_folder.relative(out),
            "files": {k: app_folder.relative(p) for k, p in paths.items()},
        }

    # ------------------------------------------------------- painted views
    @app.get("/api/meshes/{shape_id}/views")
    def view_list(shape_id: str) -> dict[str, Any]:
        return views.listing(_known(shape_id))

    @app.get("/api/meshes/{shape_id}/views/{index}/image")
    def view_image(shape_id: str, index: int) -> Response:
        return Response(views.image_png(_known(shape_id), index), media_type="image/png")

    @app.get("/api/meshes/{shape_id}/views/{index}/labels")
    def view_labels(shape_id: str, index: int) -> dict[str, Any]:
        labels, version = views.read_labels(_known(shape_id), index)
        encoded = np.where(labels < 0, 255, labels).astype(np.uint8)
        height, width = labels.shape
        return {"labels": base64.b64encode(encoded.tobytes()).decode(), "version": version,
                "width": width, "height": height}  # fmt: skip

    @app.put("/api/meshes/{shape_id}/views/{index}/labels")
    def save_view_labels(shape_id: str, index: int, body: ViewLabelsBody) -> dict[str, Any]:
        version = views.save_labels(_known(shape_id), index, body.labels, body.version)
        return {"version": version, "painted": version != ABSENT_VERSION}

    @app.get("/api/labels")
    def label_set() -> dict[str, Any]:
        return app_folder.label_set()

    @app.put("/api/labels")
    def save_label_set(body: LabelSetBody) -> dict[str, Any]:
        return app_folder.save_label_set(body.names, body.colors, body.version)

    @app.post("/api/labels/reset")
    def reset_label_set(body: VersionBody) -> dict[str, Any]:
        labels, backup = app_folder.reset_label_set(body.version)
        return {"labels": labels, "backup": backup}

    @app.post("/api/jobs")
    def start_job(body: JobBody) -> dict[str, Any]:
        function = job_function(app_folder, body.method, body.options)
        problem = app_folder.label_set_error()
        if problem is not None:  # the job would name its labels from a file nobody can read
            raise LabelSetFileError(problem.path, f"{problem.reason}; fix it before segmenting the rest")
        jobs.start(body.method, function)
        return jobs.status() or {}

    @app.get("/api/jobs/current")
    def job_status() -> dict[str, Any]:
        return {"job": jobs.status()}

    @app.get("/api/jobs/current/events")
    def job_event_stream(request: Request) -> StreamingResponse:
        stream = job_events(jobs.status, heartbeat=heartbeat_s, disconnected=request.is_disconnected)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @app.post("/api/jobs/current/cancel")
    def cancel_job() -> dict[str, Any]:
        return {"job": jobs.cancel()}

    @app.get("/api/files/{path:path}")
    def download(path: str) -> Response:
        resolved = app_folder.safe_path(path, must_exist=True)
        exports = app_folder.check_inside(app_folder.root / EXPORTS_DIR)
        if exports not in resolved.parents or not resolved.is_file():
            raise UnsafePathError(path, f"only files under {EXPORTS_DIR}/ can be downloaded")
        return FileResponse(resolved, filename=resolved.name)

    return app
