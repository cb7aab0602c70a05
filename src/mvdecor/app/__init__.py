"""The labelling app: label a few meshes in the browser, segment the rest (``mvdecor app FOLDER``).

Modules: :mod:`~mvdecor.app.folder` (the folder's meshes and their state, safe
paths, atomic versioned saves), :mod:`~mvdecor.app.jobs` (the "segment the
rest" background job), :mod:`~mvdecor.app.views` (painted views: rendered
views labelled per pixel, saved as fine-tuning's label PNGs),
:mod:`~mvdecor.app.geometry` (the fill tool's face adjacency, cached),
:mod:`~mvdecor.app.exports` (coloured meshes, label files, one mesh per part),
:mod:`~mvdecor.app.uploads` (meshes added from the page: staged, loaded, published),
:mod:`~mvdecor.app.labelset` (``labels.json`` read strictly; a malformed one
replaced with a backup), :mod:`~mvdecor.app.events` (the job's progress as
Server-Sent Events) and :mod:`~mvdecor.app.server` (the FastAPI application,
:func:`~mvdecor.app.server.create_app`). The page is ``static/index.html``
with ``static/app.js`` (3D view, brush, fill, labels), ``static/selection.js``
(lasso and polygon), ``static/views.js`` (painted views), ``static/jobs.js``
("segment the rest") and ``static/uploads.js`` (adding meshes); three.js comes from the copy vendored in
:mod:`mvdecor.viz` (``viz/static/three-0.147.0``).

FastAPI is imported only by :mod:`~mvdecor.app.server`, so the rest of the
package works without it.
"""
