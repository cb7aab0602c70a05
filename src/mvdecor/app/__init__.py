"""The labelling app: label a few meshes in the browser, segment the rest (``mvdecor app FOLDER``).

Modules: :mod:`~mvdecor.app.folder` (the folder's meshes and their state, safe
paths, atomic versioned saves), :mod:`~mvdecor.app.jobs` (the "segment the
rest" background job), :mod:`~mvdecor.app.views` (painted views: rendered
views labelled per pixel, saved as fine-tuning's label PNGs),
:mod:`~mvdecor.app.geometry` (the fill tool's face adjacency, cached),
:mod:`~mvdecor.app.exports` (coloured meshes, label files, one mesh per part)
and :mod:`~mvdecor.app.server` (the FastAPI application,
:func:`~mvdecor.app.server.create_app`). The page is ``static/index.html``
with ``static/app.js`` and ``static/views.js``; three.js comes from the copy
vendored in :mod:`mvdecor.viz` (``viz/static/three-0.147.0``).

FastAPI is imported only by :mod:`~mvdecor.app.server`, so the rest of the
package works without it.
"""
