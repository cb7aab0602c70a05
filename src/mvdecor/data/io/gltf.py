"""glTF-specific checks for GLB and glTF files.

Reads the JSON document of a ``.gltf`` file or of a ``.glb`` file's JSON chunk,
and warns (:class:`~mvdecor.errors.MissingTextureWarning`) about external texture
images it references that do not exist, which trimesh would skip silently. The
geometry itself is read by :mod:`mvdecor.data.io.scene`.
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path
from urllib.parse import unquote

from mvdecor.errors import MissingTextureWarning


def _gltf_json(path: Path) -> dict | None:
    """The JSON document of a .gltf or .glb file (None if it cannot be read)."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".glb":
            if raw[:4] != b"glTF" or len(raw) < 20:
                return None
            length, kind = struct.unpack("<II", raw[12:20])
            if kind != 0x4E4F534A:  # "JSON"
                return None
            raw = raw[20 : 20 + length]
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, struct.error):
        return None
    return doc if isinstance(doc, dict) else None


def gltf_external_files(path: str | Path) -> list[tuple[str, str]]:
    """The files a .gltf or .glb refers to outside itself: ``[(kind, uri)]``, kind ``buffer`` or ``image``.

    Embedded data (``data:`` URIs, a GLB's own binary chunk) is not listed; an
    unreadable file lists nothing (loading it says why).
    """
    doc = _gltf_json(Path(path)) or {}
    found = []
    for kind in ("buffers", "images"):
        items = doc.get(kind)
        for item in items if isinstance(items, list) else []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                found.append((kind[:-1], uri))
    return found


def _warn_missing_gltf_images(path: Path) -> None:
    doc = _gltf_json(path)
    for image in (doc or {}).get("images", []) or []:
        uri = image.get("uri") if isinstance(image, dict) else None
        if not isinstance(uri, str) or uri.startswith("data:"):
            continue
        if not (path.parent / unquote(uri)).is_file():
            warnings.warn(
                f"{path}: texture image '{uri}' not found; using the material colour",
                MissingTextureWarning,
                stacklevel=4,
            )
