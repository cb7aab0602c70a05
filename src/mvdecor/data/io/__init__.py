"""Reading mesh files (and their part labels) into a :class:`LabelledMesh`.

:func:`load_mesh` reads OBJ (with MTL materials and textures), PLY, OFF, STL,
GLB and glTF files. Whatever the format, the result is one triangle mesh:

- **Faces keep file order.** Face ``i`` of the result is face ``i`` of the file
  when the file holds only triangles. Polygons (quads, n-gons) are split into a
  fan of ``n - 2`` triangles that take the polygon's place in the order, so
  per-face labels always refer to the *triangulated* faces.
- **Vertices keep file order** for OBJ, PLY and OFF (nothing is merged, split or
  dropped), so per-vertex labels line up with the file's vertices.
- **Parts**: OBJ objects/groups (or materials, when a file has no ``o``/``g``
  statements) and glTF scene nodes become parts (``face_part_ids`` and
  ``part_names``); each scene node's transform is applied to its geometry.
- **Appearance**: UV textures (``face_uvs``, ``face_texture_ids``,
  ``textures``), material colours (``face_colors``) and vertex colours
  (``vertex_colors``) are kept. A referenced texture or material file that is
  missing is reported with :class:`~mvdecor.errors.MissingTextureWarning` and
  the material colour is used instead.

OBJ, PLY and OFF are parsed here rather than by trimesh, because trimesh's
readers reorder faces (mixed triangles and quads come back triangles first; OBJ
chunks are grouped by material and come back in reverse), split vertices along
UV seams, read only the first ``mtllib``, cannot read binary PLY files whose
faces have different vertex counts, and silently drop missing textures. STL,
GLB and glTF are read with trimesh (``process=False``).

Every problem a user can cause raises a :class:`~mvdecor.errors.FileError`
subclass naming the file with a one-line reason.

Modules
-------
loader
    :func:`load_mesh`, the dispatch by extension and :data:`SUPPORTED_EXTENSIONS`.
obj, ply, off
    The OBJ (with MTL and textures), PLY and OFF parsers.
scene, gltf
    STL, GLB and glTF through trimesh; glTF missing-texture checks.
labels
    Label files, label-name files and label checks.
_common
    Helpers the readers share.
"""

from __future__ import annotations

from mvdecor.data.io._common import PathLike as PathLike
from mvdecor.data.io.gltf import gltf_external_files
from mvdecor.data.io.labels import (
    LABEL_EXTENSIONS,
    LABEL_NAME_EXTENSIONS,
    MAX_UNNAMED_LABELS,
    check_unnamed_label_range,
    load_label_names,
    load_labels,
)
from mvdecor.data.io.loader import SUPPORTED_EXTENSIONS, load_mesh

__all__ = [
    "LABEL_EXTENSIONS",
    "LABEL_NAME_EXTENSIONS",
    "MAX_UNNAMED_LABELS",
    "SUPPORTED_EXTENSIONS",
    "check_unnamed_label_range",
    "gltf_external_files",
    "load_label_names",
    "load_labels",
    "load_mesh",
]
