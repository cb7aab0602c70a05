"""The labelled mesh: the data contract between mesh input and rendering.

A :class:`LabelledMesh` is one triangle mesh, possibly assembled from several
parts (OBJ groups, scene nodes, PartNet pieces), with optional per-face part
labels and optional appearance (UV textures, material colours, vertex colours).
Every loader returns one and every later stage consumes one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mvdecor.errors import InvalidMeshError, LabelError

#: Colour given to faces that have neither texture, material nor vertex colour.
DEFAULT_FACE_COLOR = (0.7, 0.7, 0.7)


@dataclass(frozen=True)
class Normalization:
    """A similarity transform ``normalized = (original - center) * scale``.

    Attributes
    ----------
    center : (3,) float64
        The point moved to the origin (the centre of the bounding box).
    scale : float
        The factor that brings the farthest vertex to distance 1.
    """

    center: np.ndarray
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map original-space points ``(..., 3)`` into normalised space."""
        return (np.asarray(points, dtype=np.float64) - self.center) * self.scale

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Map normalised-space points ``(..., 3)`` back to the original space."""
        return np.asarray(points, dtype=np.float64) / self.scale + self.center

    def then(self, other: Normalization) -> Normalization:
        """The composition: first ``self``, then ``other``."""
        return Normalization(
            center=self.center + other.center / self.scale,
            scale=self.scale * other.scale,
        )


def _frozen(array: np.ndarray | None, dtype: type | None = None) -> np.ndarray | None:
    if array is None:
        return None
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class LabelledMesh:
    """A triangle mesh with per-face part ids, optional labels and appearance.

    All arrays are read-only copies. ``F`` is the number of faces, ``V`` the
    number of vertices, ``T`` the number of texture images.

    Attributes
    ----------
    vertices : (V, 3) float64
        Vertex positions; finite.
    faces : (F, 3) int64
        Vertex indices of each triangle, in ``[0, V)``. ``F >= 1``.
    face_labels : (F,) int64 or None
        Part label of each face, an index into ``label_names``; ``-1`` marks an
        unlabelled face. ``None`` when the mesh carries no labels at all.
    label_names : tuple of str
        The label vocabulary (empty when ``face_labels`` is None and no names
        were given).
    face_part_ids : (F,) int32
        Index into ``part_names`` of the file part (OBJ group or material, scene
        node, PartNet piece) each face came from. All zeros for a single part.
    part_names : tuple of str
        One name per part; at least one.
    face_colors : (F, 3) float32 in [0, 1]
        Base (material) colour of each face; ``DEFAULT_FACE_COLOR`` when the
        file gives none. Used where a face has no texture and no vertex colours.
    vertex_colors : (V, 3) float32 in [0, 1] or None
        Per-vertex colours, interpolated across faces without a texture.
    face_uvs : (F, 3, 2) float32 or None
        Texture coordinates of each face corner (OpenGL convention: ``v = 0`` is
        the bottom row of the image). Meaningful only where
        ``face_texture_ids >= 0``.
    face_texture_ids : (F,) int32 or None
        Index into ``textures`` of each face's image, ``-1`` for untextured
        faces. None when the mesh has no texture.
    textures : tuple of (H, W, 3) uint8 arrays
        Texture images, row 0 at the top.
    name : str
        A short identifier (the shape id), used to name outputs.
    source : str or None
        The file or folder it was read from.
    normalization : Normalization or None
        Set by :meth:`normalized`: maps the source's coordinates to these.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_labels: np.ndarray | None = None
    label_names: tuple[str, ...] = ()
    face_part_ids: np.ndarray | None = None
    part_names: tuple[str, ...] = ("mesh",)
    face_colors: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    face_uvs: np.ndarray | None = None
    face_texture_ids: np.ndarray | None = None
    textures: tuple[np.ndarray, ...] = field(default=())
    name: str = "mesh"
    source: str | None = None
    normalization: Normalization | None = None

    def __post_init__(self) -> None:
        src = self.source
        vertices = np.asarray(self.vertices)
        faces = np.asarray(self.faces)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise InvalidMeshError(src, f"vertices must have shape (V, 3), got {vertices.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise InvalidMeshError(src, "the mesh has no triangle faces")
        if not np.issubdtype(faces.dtype, np.integer):
            raise InvalidMeshError(src, f"face indices must be integers, got {faces.dtype}")
        if not np.isfinite(vertices).all():
            bad = int((~np.isfinite(vertices)).any(axis=1).sum())
            raise InvalidMeshError(src, f"{bad} vertices have NaN or infinite coordinates")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise InvalidMeshError(
                src,
                f"faces index vertex {int(faces.max()) if faces.max() >= len(vertices) else int(faces.min())}"
                f" but the mesh has {len(vertices)} vertices",
            )
        n_faces = len(faces)
        set_ = object.__setattr__
        set_(self, "vertices", _frozen(vertices, np.float64))
        set_(self, "faces", _frozen(faces, np.int64))

        if self.face_labels is not None:
            labels = np.asarray(self.face_labels)
            if labels.shape != (n_faces,):
                raise LabelError(
                    src, f"{labels.size} labels given for {n_faces} faces (one label per face needed)"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise LabelError(src, f"face labels must be integers, got {labels.dtype}")
            if len(labels) and labels.min() < -1:
                raise LabelError(src, f"face label {int(labels.min())} is negative (only -1 = unlabelled)")
            if self.label_names and len(labels) and labels.max() >= len(self.label_names):
                raise LabelError(
                    src,
                    f"face label {int(labels.max())} has no name ({len(self.label_names)} label names)",
                )
            set_(self, "face_labels", _frozen(labels, np.int64))
        set_(self, "label_names", tuple(str(n) for n in self.label_names))

        part_ids = self.face_part_ids
        part_ids = np.zeros(n_faces, np.int32) if part_ids is None else np.asarray(part_ids)
        if part_ids.shape != (n_faces,):
            raise InvalidMeshError(src, f"face_part_ids has shape {part_ids.shape}, expected ({n_faces},)")
        part_names = tuple(str(n) for n in self.part_names) or ("mesh",)
        if part_ids.min() < 0 or part_ids.max() >= len(part_names):
            raise InvalidMeshError(src, f"face_part_ids out of range for {len(part_names)} part names")
        set_(self, "face_part_ids", _frozen(part_ids, np.int32))
        set_(self, "part_names", part_names)

        colors = self.face_colors
        if colors is None:
            colors = np.broadcast_to(np.asarray(DEFAULT_FACE_COLOR, np.float32), (n_faces, 3))
        colors = np.asarray(colors, np.float32)
        if colors.shape != (n_faces, 3):
            raise InvalidMeshError(src, f"face_colors has shape {colors.shape}, expected ({n_faces}, 3)")
        set_(self, "face_colors", _frozen(np.clip(colors, 0.0, 1.0), np.float32))

        if self.vertex_colors is not None:
            vcol = np.asarray(self.vertex_colors, np.float32)
            if vcol.shape != (len(vertices), 3):
                raise InvalidMeshError(
                    src, f"vertex_colors has shape {vcol.shape}, expected ({len(vertices)}, 3)"
                )
            set_(self, "vertex_colors", _frozen(np.clip(vcol, 0.0, 1.0), np.float32))

        textures = tuple(_frozen(np.asarray(t, np.uint8)) for t in self.textures)
        for t in textures:
            if t.ndim != 3 or t.shape[2] != 3:
                raise InvalidMeshError(src, f"texture images must be (H, W, 3) uint8, got {t.shape}")
        set_(self, "textures", textures)
        if self.face_texture_ids is not None:
            tex_ids = np.asarray(self.face_texture_ids)
            if tex_ids.shape != (n_faces,):
                raise InvalidMeshError(src, "face_texture_ids must have one entry per face")
            if tex_ids.max() >= len(textures) or tex_ids.min() < -1:
                raise InvalidMeshError(src, f"face_texture_ids out of range for {len(textures)} textures")
            if self.face_uvs is None:
                raise InvalidMeshError(src, "face_texture_ids given without face_uvs")
            uvs = np.asarray(self.face_uvs, np.float32)
            if uvs.shape != (n_faces, 3, 2):
                raise InvalidMeshError(src, f"face_uvs has shape {uvs.shape}, expected ({n_faces}, 3, 2)")
            set_(self, "face_texture_ids", _frozen(tex_ids, np.int32))
            set_(self, "face_uvs", _frozen(uvs, np.float32))
        elif self.face_uvs is not None:
            uvs = np.asarray(self.face_uvs, np.float32)
            if uvs.shape != (n_faces, 3, 2):
                raise InvalidMeshError(src, f"face_uvs has shape {uvs.shape}, expected ({n_faces}, 3, 2)")
            set_(self, "face_uvs", _frozen(uvs))

    # ------------------------------------------------------------------ basics
    @property
    def num_faces(self) -> int:
        return len(self.faces)

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    @property
    def num_labels(self) -> int:
        """Size of the label vocabulary (0 when unlabelled and unnamed)."""
        if self.label_names:
            return len(self.label_names)
        if self.face_labels is not None and len(self.face_labels):
            return int(self.face_labels.max()) + 1
        return 0

    @property
    def has_labels(self) -> bool:
        return self.face_labels is not None

    @property
    def has_texture(self) -> bool:
        return self.face_texture_ids is not None and bool((self.face_texture_ids >= 0).any())

    @property
    def triangles(self) -> np.ndarray:
        """Corner positions ``(F, 3, 3)`` float64."""
        return self.vertices[self.faces]

    def face_normals(self) -> np.ndarray:
        """Unit normals ``(F, 3)`` float64 by the right-hand rule; zero for degenerate faces."""
        tri = self.triangles
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)

    def face_areas(self) -> np.ndarray:
        """Triangle areas ``(F,)`` float64."""
        tri = self.triangles
        return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)

    def replace(self, **changes: object) -> LabelledMesh:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------- normalising
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(min, max)``, each ``(3,)``: the bounding box of the vertices that faces use."""
        # Only vertices that faces use: loaders keep unused ones so that per-vertex
        # labels line up, and a stray one must not shift the box.
        used = self.vertices[np.unique(self.faces)]
        return used.min(axis=0), used.max(axis=0)

    def normalized(self) -> LabelledMesh:
        """This mesh centred on its bounding-box centre and scaled into the unit sphere.

        The bounding box and radius are taken over the vertices that faces use.

        The returned mesh's ``normalization`` maps this mesh's coordinates to the
        new ones (composed with any earlier normalisation), so
        ``mesh.normalization.invert(points)`` recovers source coordinates.
        """
        used = self.vertices[np.unique(self.faces)]
        center = (used.min(axis=0) + used.max(axis=0)) / 2.0  # the box of bounds(), from the same rows
        radius = float(np.linalg.norm(used - center, axis=1).max())
        if radius <= 0.0:
            raise InvalidMeshError(self.source, "all vertices coincide; the mesh has no extent")
        step = Normalization(center=center, scale=1.0 / radius)
        total = step if self.normalization is None else self.normalization.then(step)
        return self.replace(vertices=step.apply(self.vertices), normalization=total)

    def with_labels(
        self, face_labels: np.ndarray | Sequence[int], label_names: Sequence[str] = ()
    ) -> LabelledMesh:
        """A copy carrying ``face_labels`` (one per face) and their names."""
        return self.replace(face_labels=np.asarray(face_labels), label_names=tuple(label_names))


def vertex_labels_to_face_labels(faces: np.ndarray, vertex_labels: np.ndarray) -> np.ndarray:
    """Per-face labels by majority of each face's three vertex labels.

    Where all three vertices disagree, the face takes the smallest of the three
    labels (a deterministic tie-break).

    Parameters
    ----------
    faces : (F, 3) int
    vertex_labels : (V,) int

    Returns
    -------
    (F,) int64
    """
    corner = np.asarray(vertex_labels, np.int64)[np.asarray(faces)]
    a, b, c = corner[:, 0], corner[:, 1], corner[:, 2]
    out = np.minimum(np.minimum(a, b), c)
    out = np.where(b == c, b, out)
    out = np.where((a == b) | (a == c), a, out)
    return out


def labels_from_nearest_faces(
    face_labels: np.ndarray,
    centroids: np.ndarray,
    known: np.ndarray,
    fill: np.ndarray,
    *,
    fast_build: bool = False,
) -> np.ndarray:
    """Copy ``face_labels``, giving each ``fill`` face the label of the nearest ``known`` face.

    Nearest by face centroid (Euclidean). Fusion, its refinement and the labelled views' spread
    all label faces without evidence this way.

    Parameters
    ----------
    face_labels : (F,) int
        Labels of every face; read at the ``known`` faces only.
    centroids : (F, 3) float
        Face centroids (``mesh.triangles.mean(axis=1)``).
    known, fill : (F,) bool
        Faces to copy labels from, and faces that take them. A face in both keeps its own
        label only if its nearest known face is itself (distance 0 wins).
    fast_build : bool
        Build the k-d tree without balancing (``balanced_tree=False, compact_nodes=False``):
        faster for one query batch, the same nearest face except between equidistant ones.

    Returns
    -------
    (F,) int64
        A new array; ``face_labels`` unchanged where ``fill`` is False, or everywhere when
        no face is known or none is to be filled.
    """
    labels = np.array(face_labels, dtype=np.int64)
    known = np.asarray(known, bool)
    fill = np.asarray(fill, bool)
    if not known.any() or not fill.any():
        return labels
    from scipy.spatial import cKDTree

    known_idx = np.flatnonzero(known)
    flags = {"balanced_tree": False, "compact_nodes": False} if fast_build else {}
    _, nearest = cKDTree(np.asarray(centroids)[known_idx], **flags).query(centroids[fill], k=1)
    labels[fill] = labels[known_idx[nearest]]
    return labels


def concatenate_meshes(
    meshes: Sequence[LabelledMesh], name: str | None = None, source: str | None = None
) -> LabelledMesh:
    """Merge several meshes into one, keeping each input as a part.

    Part names are taken from each input's ``part_names`` (prefixed by nothing);
    labels are kept only if every input has labels over the same vocabulary.
    Textures are concatenated and texture ids re-indexed.
    """
    if not meshes:
        raise InvalidMeshError(source, "no mesh parts to concatenate")
    if len(meshes) == 1 and name is None and source is None:
        return meshes[0]
    vertices, faces, part_ids, part_names = [], [], [], []
    colors, vcols, uvs, tex_ids, textures = [], [], [], [], []
    v_off = 0
    any_vcol = any(m.vertex_colors is not None for m in meshes)
    any_tex = any(m.face_texture_ids is not None for m in meshes)
    for mesh in meshes:
        vertices.append(mesh.vertices)
        faces.append(mesh.faces + v_off)
        part_ids.append(mesh.face_part_ids + len(part_names))
        part_names.extend(mesh.part_names)
        colors.append(mesh.face_colors)
        if any_vcol:
            if mesh.vertex_colors is not None:
                vcols.append(mesh.vertex_colors)
            else:  # spread each face's colour to its vertices
                vc = np.empty((mesh.num_vertices, 3), np.float32)
                vc[:] = DEFAULT_FACE_COLOR  # for vertices no face uses
                vc[mesh.faces.ravel()] = np.repeat(mesh.face_colors, 3, axis=0)
                vcols.append(vc)
        if any_tex:
            if mesh.face_texture_ids is not None:
                ids = np.where(mesh.face_texture_ids >= 0, mesh.face_texture_ids + len(textures), -1)
                tex_ids.append(ids)
                uvs.append(mesh.face_uvs)
                textures.extend(mesh.textures)
            else:
                tex_ids.append(np.full(mesh.num_faces, -1, np.int32))
                uvs.append(np.zeros((mesh.num_faces, 3, 2), np.float32))
        v_off += mesh.num_vertices
    label_sets = {m.label_names for m in meshes}
    keep_labels = all(m.face_labels is not None for m in meshes) and len(label_sets) == 1
    return LabelledMesh(
        vertices=np.concatenate(vertices),
        faces=np.concatenate(faces),
        face_labels=np.concatenate([m.face_labels for m in meshes]) if keep_labels else None,
        label_names=meshes[0].label_names if keep_labels else (),
        face_part_ids=np.concatenate(part_ids),
        part_names=tuple(part_names),
        face_colors=np.concatenate(colors),
        vertex_colors=np.concatenate(vcols) if any_vcol else None,
        face_uvs=np.concatenate(uvs) if any_tex else None,
        face_texture_ids=np.concatenate(tex_ids) if any_tex else None,
        textures=tuple(textures),
        name=name if name is not None else meshes[0].name,
        source=source if source is not None else meshes[0].source,
    )


def align_points(
    points: np.ndarray,
    source_box: tuple[np.ndarray, np.ndarray],
    target_box: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Map ``points`` (N, 3) so that ``source_box`` lands on ``target_box``, axis by axis.

    An axis on which the source box is flat maps to the target box's centre.
    Label transfer aligns a test shape to each reference with it, and cross-shape
    pre-training pairs match two shapes' views after it.
    """
    src_lo, src_hi = (np.asarray(b, np.float64) for b in source_box)
    dst_lo, dst_hi = (np.asarray(b, np.float64) for b in target_box)
    src_extent = src_hi - src_lo
    flat = src_extent <= 1e-12
    scale = np.where(flat, 0.0, (dst_hi - dst_lo) / np.where(flat, 1.0, src_extent))
    offset = np.where(flat, (dst_lo + dst_hi) / 2, dst_lo)
    return (np.asarray(points, np.float64) - np.where(flat, 0.0, src_lo)) * scale + offset
