"""Write a segmented mesh to disk: labels, coloured meshes, and a colour legend.

Colours come from :func:`mvdecor.palette.label_palette`, so a part has the
same colour here as in every other picture mvdecor draws. Every file is written
to a temporary name in the output folder, then renamed into place, so a reader
never sees a half-written file.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mvdecor.data.mesh import LabelledMesh
from mvdecor.fileio import atomic_path, save_image
from mvdecor.palette import UNLABELLED_NAME, UNLABELLED_RGB, label_palette


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], object]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return path


def _safe_stem(stem: str) -> str:
    stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._")
    return stem or "mesh"


def _face_rgb(face_labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(F, 3) uint8: the palette colour of each face's label, grey for -1."""
    colors = np.empty((len(face_labels), 3), np.uint8)
    colors[:] = UNLABELLED_RGB
    labelled = face_labels >= 0
    colors[labelled] = palette[face_labels[labelled]]
    return colors


def _legend_image(entries: Sequence[tuple[str, tuple[int, int, int], int]]) -> np.ndarray:
    """A white ``(H, W, 3)`` uint8 picture: one swatch and ``name (n faces)`` per entry."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    texts = [f"{name} ({faces} faces)" for name, _, faces in entries] or ["(no faces)"]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [probe.textbbox((0, 0), t, font=font) for t in texts]
    text_h = max(b[3] - b[1] for b in boxes)
    row_h = max(text_h, 12) + 8
    swatch = row_h - 6
    pad = 6
    width = pad + swatch + pad + max(b[2] for b in boxes) + pad
    height = pad + row_h * len(texts) + pad - 2
    image = Image.new("RGB", (int(width), int(height)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(texts):
        top = pad + row * row_h
        if entries:
            rgb = tuple(int(c) for c in entries[row][1])
            draw.rectangle([pad, top, pad + swatch - 1, top + swatch - 1], fill=rgb, outline=(0, 0, 0))
        box = boxes[row]
        y = top + (swatch - (box[3] - box[1])) // 2 - box[1]
        draw.text((pad + swatch + pad, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def export_segmentation(
    mesh: LabelledMesh,
    face_labels: np.ndarray,
    label_names: Sequence[str],
    out_dir: str | Path,
    *,
    confidence: np.ndarray | None = None,
    stem: str | None = None,
) -> dict[str, Path]:
    """Write a mesh's per-face part labels as label files, coloured meshes and a legend.

    Coordinates are the mesh's original ones: when ``mesh.normalization`` is
    set (the mesh was normalised into the unit sphere for rendering), it is
    inverted so the exported mesh lines up with the source file. Faces and
    vertices keep their order and count, so face ``i`` of every output is face
    ``i`` of ``mesh``.

    Files written into ``out_dir`` (created if missing), each atomically:

    - ``<stem>.labels.txt``: one integer label per line, one line per face;
    - ``<stem>.labels.npy``: the same, ``(F,)`` int64;
    - ``<stem>.confidence.npy``: ``(F,)`` float32, only when ``confidence`` is given;
    - ``<stem>.ply``: binary PLY with one RGBA colour per face (the part colour);
    - ``<stem>.glb``: one node (and mesh, and material) per label present,
      named by the label name (``"unlabelled"`` for ``-1``), coloured by a
      material's base colour, so viewers can toggle parts;
    - ``<stem>.legend.json``: ``{"<label id>": {"name", "rgb", "faces"}}`` for every
      label of the vocabulary (``faces`` may be 0), plus ``"-1"`` when some
      faces are unlabelled;
    - ``<stem>.legend.png``: colour swatches and names of the labels present.

    Parameters
    ----------
    mesh : LabelledMesh
        The mesh that was segmented (its own ``face_labels`` are ignored).
    face_labels : (F,) int
        Predicted label of each face, an index into ``label_names``; ``-1``
        for unlabelled faces, drawn grey (:data:`UNLABELLED_RGB`).
    label_names : sequence of str
        The label vocabulary; colour ``i`` is ``label_palette(len(label_names))[i]``.
    out_dir : path
        Output folder.
    confidence : (F,) float, optional
        Per-face confidence (e.g. :attr:`FusionResult.face_confidence`).
    stem : str, optional
        File name stem; default ``mesh.name``. Characters other than letters,
        digits, ``.``, ``_`` and ``-`` become ``_``.

    Returns
    -------
    dict of str to Path
        Keys ``labels_txt``, ``labels_npy``, ``confidence_npy`` (when given),
        ``ply``, ``glb``, ``legend_json``, ``legend_png``.
    """
    import trimesh
    from trimesh.visual import TextureVisuals
    from trimesh.visual.material import PBRMaterial

    n_faces = mesh.num_faces
    labels = np.asarray(face_labels)
    if labels.shape != (n_faces,):
        raise ValueError(f"face_labels has shape {labels.shape}, expected ({n_faces},)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"face_labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    names = tuple(str(n) for n in label_names)
    if labels.min() < -1:
        raise ValueError(f"face label {int(labels.min())} is negative (only -1 = unlabelled)")
    if labels.max() >= len(names):
        raise ValueError(f"face label {int(labels.max())} has no name ({len(names)} label names)")
    if confidence is not None:
        confidence = np.asarray(confidence, np.float32)
        if confidence.shape != (n_faces,):
            raise ValueError(f"confidence has shape {confidence.shape}, expected ({n_faces},)")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(mesh.name if stem is None else stem)
    paths: dict[str, Path] = {}

    vertices = mesh.vertices if mesh.normalization is None else mesh.normalization.invert(mesh.vertices)
    faces = mesh.faces
    palette = label_palette(max(len(names), 1))
    face_rgb = _face_rgb(labels, palette)
    counts = np.bincount(labels + 1, minlength=len(names) + 1)  # counts[0]: unlabelled

    # Labels.
    paths["labels_txt"] = _atomic_write(
        out_dir / f"{stem}.labels.txt",
        lambda f: f.write(("\n".join(map(str, labels.tolist())) + "\n").encode()),
    )
    paths["labels_npy"] = _atomic_write(out_dir / f"{stem}.labels.npy", lambda f: np.save(f, labels))
    if confidence is not None:
        paths["confidence_npy"] = _atomic_write(
            out_dir / f"{stem}.confidence.npy", lambda f: np.save(f, confidence)
        )

    # PLY with per-face colours. process=False keeps trimesh from merging
    # vertices or dropping degenerate/duplicate faces: face order and count are kept.
    ply_mesh = trimesh.Trimesh(vertices=vertices, faces=faces, face_colors=face_rgb, process=False)
    ply_bytes = ply_mesh.export(file_type="ply")
    paths["ply"] = _atomic_write(out_dir / f"{stem}.ply", lambda f: f.write(ply_bytes))

    # GLB: one node per label present, named by the label. Each part is a
    # single colour, so a material base colour colours it (no per-vertex
    # colours, no duplicated vertices needed).
    scene = trimesh.Scene()
    used_names: set[str] = set()
    for label in np.flatnonzero(counts) - 1:
        part_faces = faces[labels == label]
        used, local = np.unique(part_faces, return_inverse=True)
        name = UNLABELLED_NAME if label < 0 else names[label]
        if name in used_names or not name:
            name = f"{name or 'label'}_{label}"
        used_names.add(name)
        rgb = UNLABELLED_RGB if label < 0 else tuple(int(c) for c in palette[label])
        material = PBRMaterial(
            name=name,
            baseColorFactor=[*rgb, 255],
            metallicFactor=0.0,
            roughnessFactor=1.0,
            doubleSided=True,
        )
        part = trimesh.Trimesh(
            vertices=vertices[used],
            faces=local.reshape(-1, 3),
            visual=TextureVisuals(material=material),
            process=False,
        )
        scene.add_geometry(part, node_name=name, geom_name=name)
    glb_bytes = scene.export(file_type="glb")
    paths["glb"] = _atomic_write(out_dir / f"{stem}.glb", lambda f: f.write(glb_bytes))

    # Legend.
    legend: dict[str, dict[str, object]] = {
        str(i): {"name": name, "rgb": [int(c) for c in palette[i]], "faces": int(counts[i + 1])}
        for i, name in enumerate(names)
    }
    if counts[0]:
        legend["-1"] = {"name": UNLABELLED_NAME, "rgb": list(UNLABELLED_RGB), "faces": int(counts[0])}
    paths["legend_json"] = _atomic_write(
        out_dir / f"{stem}.legend.json",
        lambda f: f.write((json.dumps(legend, indent=2) + "\n").encode()),
    )
    entries = [(v["name"], tuple(v["rgb"]), v["faces"]) for v in legend.values() if v["faces"]]
    paths["legend_png"] = save_image(_legend_image(entries), out_dir / f"{stem}.legend.png")
    return paths
