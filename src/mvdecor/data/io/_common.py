"""Helpers shared by the mesh-format readers of :mod:`mvdecor.data.io`.

Holds :class:`_Part` (one mesh piece read from a file, before assembly into a
:class:`~mvdecor.data.mesh.LabelledMesh`), polygon fan triangulation, colour and
image conversion, the texture-image cache that reports missing textures with
:class:`~mvdecor.errors.MissingTextureWarning`, text-file reading, texture path
lookup and vertex-reference checks. Reads no format by itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from mvdecor.errors import InvalidMeshError, MeshLoadError, MissingTextureWarning

PathLike = str | os.PathLike[str]


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), shortened."""
    text = str(exc).strip().splitlines()
    line = text[0].strip() if text else ""
    if not line:
        line = type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _color01(values: np.ndarray) -> np.ndarray:
    """Colours as float32 in [0, 1], from 0-255 (or 0-65535) integers or 0-1 floats."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        top = 65535.0 if values.size and values.max() > 255 else 255.0
        return (values / top).astype(np.float32)
    values = values.astype(np.float32)
    if values.size and np.nanmax(values) > 1.0:
        values = values / 255.0
    return np.clip(np.nan_to_num(values), 0.0, 1.0)


def _image_to_rgb(image: object) -> np.ndarray:
    """A PIL image (or array) as an ``(H, W, 3)`` uint8 array, row 0 at the top."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            top = 65535.0 if array.max() > 255 else 255.0
            gray = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        return np.array(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype != np.uint8:
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


class _TextureCache:
    """Loads each texture image once; reports missing or unreadable ones."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self._index: dict[Path, int] = {}

    def load(self, candidates: Sequence[Path], written: str, context: str) -> int:
        """The index of the first existing candidate image, or -1 after a warning."""
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            warnings.warn(
                f"{context}: texture image '{written}' not found (looked for "
                f"{', '.join(str(p) for p in candidates)}); using the material colour",
                MissingTextureWarning,
                stacklevel=4,
            )
            return -1
        key = found.resolve()
        if key in self._index:
            return self._index[key]
        try:
            from PIL import Image

            with Image.open(found) as image:
                image.load()
                array = _image_to_rgb(image)
        except Exception as exc:
            warnings.warn(
                f"{context}: texture image '{found}' cannot be read ({_one_line(exc)}); "
                "using the material colour",
                MissingTextureWarning,
                stacklevel=4,
            )
            return -1
        self._index[key] = len(self.images)
        self.images.append(array)
        return self._index[key]


def _triangulate(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons given their corner counts, keeping their order.

    Parameters
    ----------
    lengths : (P,) int
        Number of corners of each polygon; corners are stored flat, polygon
        after polygon. Polygons with fewer than 3 corners yield no triangle.

    Returns
    -------
    corners : (T, 3) int64
        Indices into the flat corner arrays of each triangle's corners.
    polygon : (T,) int64
        The polygon each triangle came from (non-decreasing).
    """
    lengths = np.asarray(lengths, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
    counts = np.maximum(lengths - 2, 0)
    polygon = np.repeat(np.arange(len(lengths)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
    j = np.arange(len(polygon)) - np.repeat(first, counts)
    base = starts[polygon]
    corners = np.stack([base, base + j + 1, base + j + 2], axis=1)
    return corners, polygon


@dataclass
class _Part:
    """One mesh piece read from a file, before assembly into a LabelledMesh."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    face_uvs: np.ndarray | None = None
    face_texture_ids: np.ndarray | None = None
    face_part_ids: np.ndarray | None = None
    part_names: tuple[str, ...] = ()
    textures: list[np.ndarray] = field(default_factory=list)


def _check_vertex_refs(path: Path, faces: np.ndarray, n_vertices: int, what: str = "face") -> None:
    """Raise InvalidMeshError if a face indexes a vertex the file lacks."""
    if not len(faces):
        return
    bad = (faces < 0) | (faces >= n_vertices)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        index = int(faces[row][bad[row]][0])
        raise InvalidMeshError(
            path,
            f"{what} {row} references missing vertex {index} (the file has {n_vertices} vertices)",
        )


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise MeshLoadError(path, f"not a text {path.suffix.upper()[1:]} file (it holds binary data)")
    return data.decode("utf-8", errors="replace")


def _texture_candidates(written: str, mtl_path: Path, obj_dir: Path) -> list[Path]:
    clean = unquote(written.strip().strip('"')).replace("\\", "/")
    raw = Path(clean)
    if raw.is_absolute():
        return [raw]
    out: list[Path] = []
    for base in (mtl_path.parent, obj_dir):
        for cand in (base / raw, base / raw.name):
            if cand not in out:
                out.append(cand)
    return out
