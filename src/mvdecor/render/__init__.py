"""Rendering: cameras, the ray-cast renderer, and the render store."""

from mvdecor.render.cameras import Cameras, CameraScheme, closeup_cameras, sphere_cameras
from mvdecor.render.raycast import embree_available, require_embree
from mvdecor.render.renderer import Renderer, ShadingOptions
from mvdecor.render.views import BACKGROUND_FACE_ID, RenderedView, seen_faces

__all__ = [
    "BACKGROUND_FACE_ID",
    "CameraScheme",
    "Cameras",
    "RenderedView",
    "Renderer",
    "ShadingOptions",
    "closeup_cameras",
    "embree_available",
    "require_embree",
    "seen_faces",
    "sphere_cameras",
]
