"""Painted views: per-pixel labels on a few rendered views of a mesh (the paper's 2D setting).

The page shows a few views of the current shape, rendered here with the
package's renderer and the cameras training uses
(:class:`~mvdecor.correspond.source.ViewSource`, so view ``N`` is exactly
the view ``N`` fine-tuning renders), and the user paints labels on them. Each
painted view is saved atomically as the label PNG that ``mvdecor finetune
--label-images`` reads:

- ``label_images/<shape>/view_<N>.png``: 8-bit single-channel (``L``), one
  class index per pixel, 255 unlabelled (:data:`~mvdecor.train.labelled.LABEL_IMAGE_IGNORE`),
  at the render resolution; written by :func:`mvdecor.fileio.save_image` and read back
  by :func:`mvdecor.train.labelled.read_label_image`;
- ``label_images/render.json``: the render settings the views were made with
  (written with the first painted view); a pipeline job with other settings
  refuses to use them, since its view ``N`` would be another picture.

A view's version is the hash of its PNG, as for face labels; a save from a
stale page is refused (:class:`~mvdecor.app.folder.VersionConflictError`). An
all-unlabelled save removes the PNG (a view nobody painted supervises nothing).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.app.folder import ABSENT_VERSION, AppFolder, NotFoundError, VersionConflictError, file_version
from mvdecor.config import RenderConfig, render_config_from_dict, render_config_to_dict
from mvdecor.errors import ConfigError, LabelError

__all__ = ["LABEL_IMAGES_DIR", "PaintedViews", "painted_label_images", "saved_render_config"]

#: Where painted views go, inside the folder (``mvdecor finetune --label-images FOLDER/label_images``).
LABEL_IMAGES_DIR = "label_images"
RENDER_FILE = "render.json"
#: Views offered for painting per shape (spread over the camera sphere).
DEFAULT_VIEW_COUNT = 6
#: Unlabelled pixel value of a label PNG (mvdecor.train.labelled.LABEL_IMAGE_IGNORE; not imported
#: at module level, since that pulls in torch).
IGNORE = 255
_VIEW_NAME = re.compile(r"^view_(\d+)\.png$")


def saved_render_config(folder: AppFolder) -> RenderConfig | None:
    """The render settings recorded with the folder's painted views, or None."""
    path = folder.safe_path(f"{LABEL_IMAGES_DIR}/{RENDER_FILE}")
    if not path.is_file():
        return None
    try:
        return render_config_from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except ValueError as exc:
        raise ConfigError(folder.relative(path), f"unreadable render settings ({exc})") from None


def painted_label_images(folder: AppFolder) -> dict[tuple[str, int], Path]:
    """``{(shape_id, view_index): png}`` of every painted view of a shape in the folder.

    The mapping ``mvdecor finetune``'s ``label_images`` takes.
    """
    root = folder.safe_path(LABEL_IMAGES_DIR)
    found: dict[tuple[str, int], Path] = {}
    if not root.is_dir():
        return found
    known = set(folder.refresh().shape_ids())
    for shape_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in known):
        for png in sorted(shape_dir.iterdir()):
            match = _VIEW_NAME.match(png.name)
            if match and png.is_file():
                found[(shape_dir.name, int(match.group(1)))] = folder.check_inside(png)
    return found


class PaintedViews:
    """Renders a folder's shapes for painting and keeps their painted label PNGs.

    Parameters
    ----------
    folder : the app's folder
    render : the render settings of the views; default: those recorded in
        ``label_images/render.json``, else the ``cpu`` preset's (what the
        pipeline job trains with by default)
    count : views offered per shape
    max_cached : rendered shapes kept in memory
    """

    def __init__(
        self,
        folder: AppFolder,
        render: RenderConfig | None = None,
        count: int = DEFAULT_VIEW_COUNT,
        max_cached: int = 4,
    ) -> None:
        self.folder = folder
        if render is None:
            render = saved_render_config(folder)
        if render is None:
            from mvdecor.config import load_config

            render = load_config("cpu").render
        self.render = render
        self.count = int(count)
        self._max_cached = max_cached
        self._views: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._source = None
        self._shape_keys: dict[str, tuple[int, int]] = {}

    # ---------------------------------------------------------------- views
    @property
    def num_views(self) -> int:
        return self.render.num_views

    def indices(self, shape_id: str) -> list[int]:
        """The view indices offered for ``shape_id``: spread evenly, plus any painted before."""
        total = self.num_views
        count = min(self.count, total)
        step = max(total // max(count, 1), 1)
        chosen = set(range(0, total, step)[:count])
        chosen |= {v for (s, v) in painted_label_images(self.folder) if s == shape_id and v < total}
        return sorted(chosen)

    def view(self, shape_id: str, index: int):
        """The :class:`~mvdecor.render.views.RenderedView` ``index`` of ``shape_id`` (cached).

        Raises
        ------
        NotFoundError
            No such shape, or ``index`` out of range.
        """
        from mvdecor.correspond.source import ViewSource

        if shape_id not in self.folder.refresh().shape_ids():
            raise NotFoundError(f"no mesh {shape_id!r} in this folder")
        if not 0 <= index < self.num_views:
            raise NotFoundError(f"no view {index} (the render settings give {self.num_views} views)")
        stat = self.folder.mesh_file(shape_id).stat()
        # The mesh file's size and time are in the key: a mesh edited on disk is rendered anew.
        key = (shape_id, int(index), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._views.pop(key, None)
            if cached is None:
                if self._source is None or self._shape_keys.get(shape_id, key[2:]) != key[2:]:
                    # The renderer training uses: same normalisation, same cameras per shape id
                    # (a new source: its renderers of changed meshes are stale).
                    self._source = ViewSource(self.folder.dataset, self.render, max_cached_shapes=2)
                self._shape_keys[shape_id] = key[2:]
                self._source.dataset = self.folder.dataset
                cached = self._source.view(shape_id, int(index))
                while len(self._views) >= self._max_cached * self.count:
                    self._views.popitem(last=False)
            self._views[key] = cached
        return cached

    def image_png(self, shape_id: str, index: int) -> bytes:
        """The view as an RGBA PNG: shaded grey, alpha 255 on the object and 0 on the background."""
        import io

        from PIL import Image

        view = self.view(shape_id, index)
        grey = np.clip(np.asarray(view.shading, np.float32), 0.0, 1.0)
        grey = (grey if grey.ndim == 2 else grey[..., 0]) * 205 + 50  # never black: labels show on it
        mask = np.asarray(view.mask, bool)
        rgba = np.zeros((*mask.shape, 4), np.uint8)
        rgba[..., :3] = np.where(mask, grey, 0).astype(np.uint8)[..., None]
        rgba[..., 3] = np.where(mask, 255, 0)
        out = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(out, format="PNG")
        return out.getvalue()

    # --------------------------------------------------------------- labels
    def label_path(self, shape_id: str, index: int) -> Path:
        """Where view ``index`` of ``shape_id`` is (or would be) saved."""
        return self.folder.safe_path(f"{LABEL_IMAGES_DIR}/{shape_id}/view_{int(index)}.png")

    def listing(self, shape_id: str) -> dict[str, Any]:
        """``{"width", "height", "render", "views": [{"index", "version", "painted"}]}``."""
        size = self.render.resolution
        views = []
        for index in self.indices(shape_id):
            version = file_version(self.label_path(shape_id, index))
            views.append({"index": index, "version": version, "painted": version != ABSENT_VERSION})
        return {"width": size, "height": size, "render": render_config_to_dict(self.render), "views": views}

    def read_labels(self, shape_id: str, index: int) -> tuple[np.ndarray, str]:
        """``((H, W) int64 labels, -1 unlabelled; version)`` of a view (all -1 when unpainted).

        Read with the fine-tuning reader, so the app shows what training will see.
        """
        from mvdecor.train.labelled import read_label_image

        self.view(shape_id, index)  # checks the shape and the index
        path = self.label_path(shape_id, index)
        size = (self.render.resolution, self.render.resolution)
        version = file_version(path)
        if version == ABSENT_VERSION:
            return np.full(size, -1, np.int64), version
        return read_label_image(path, size, max(self.folder.num_classes(), 1)), version

    def decode(self, encoded: str) -> np.ndarray:
        """A page's labels (base64 of ``H * W`` bytes, 255 unlabelled) as an ``(H, W)`` uint8 image.

        Raises
        ------
        LabelError
            Not base64, the wrong size, or a class index the label set does not have.
        """
        size = self.render.resolution
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise LabelError(None, "view labels must be base64 bytes") from None
        if len(raw) != size * size:
            raise LabelError(None, f"{len(raw)} view labels for a {size}x{size} view")
        image = np.frombuffer(raw, np.uint8).reshape(size, size)
        painted = image[image != IGNORE]
        classes = self.folder.num_classes()
        if len(painted) and int(painted.max()) >= classes:
            raise LabelError(None, f"label {int(painted.max())} in a view, but the label set has {classes}")
        return image

    def save_labels(self, shape_id: str, index: int, encoded: str, version: str) -> str:
        """Save a painted view atomically if ``version`` is still current; the new version.

        Raises
        ------
        VersionConflictError
            The PNG changed since ``version`` (nothing is written).
        ConfigError
            The folder's painted views were made with other render settings.
        """
        from mvdecor.fileio import atomic_path, save_image

        self.view(shape_id, index)
        image = self.decode(encoded)
        path = self.label_path(shape_id, index)
        with self.folder.lock:
            current = file_version(path)
            if current != version:
                raise VersionConflictError(f"view {index} of {shape_id}", version, current)
            recorded = saved_render_config(self.folder)
            if recorded is not None and recorded != self.render:
                raise ConfigError(
                    LABEL_IMAGES_DIR,
                    "holds views painted with other render settings; move it away to paint new ones",
                )
            if (image == IGNORE).all():
                path.unlink(missing_ok=True)
                return ABSENT_VERSION
            if recorded is None:
                settings = self.folder.safe_path(f"{LABEL_IMAGES_DIR}/{RENDER_FILE}")
                settings.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(settings) as tmp:
                    tmp.write_text(json.dumps(render_config_to_dict(self.render), indent=2) + "\n")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(image, path)  # mode "L": one class index per pixel
        return file_version(path)
