"""The ray-cast renderer: one cast per view gives every buffer MvDeCor uses.

The authors render twice (OpenGL for shading, a ray caster for face ids) and
align the two with a hard-coded rotation; here a single Embree cast per view
yields face ids and barycentrics, and every other buffer (hit points, depth,
normals, shading, colour) is computed from them, so nothing can go out of
alignment. The same computation rebuilds a view from stored face ids alone
(:meth:`Renderer.view_from_face_ids`), which is what the render store keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvdecor.data.mesh import LabelledMesh
from mvdecor.render.cameras import Cameras
from mvdecor.render.raycast import EmbreeRayCaster, intersect_known_faces
from mvdecor.render.views import RenderedView


@dataclass(frozen=True)
class ShadingOptions:
    """How the grey and colour images are lit.

    Attributes
    ----------
    ambient : float
        Share of light that does not depend on the surface orientation.
    """

    ambient: float = 0.25


def sample_texture_bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrapping UVs.

    Parameters
    ----------
    texture : (H, W, 3) uint8
        Row 0 is the top of the image.
    uv : (N, 2) float
        OpenGL texture coordinates (``v = 0`` is the bottom row); values outside
        ``[0, 1)`` wrap around (GL_REPEAT).

    Returns
    -------
    (N, 3) float32 in [0, 1]
    """
    h, w = texture.shape[:2]
    uv = np.asarray(uv, np.float64)
    # Texel centres sit at (i + 0.5) / size; flip v so that v = 0 is the bottom row.
    x = np.mod(uv[:, 0], 1.0) * w - 0.5
    y = np.mod(1.0 - uv[:, 1], 1.0) * h - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0 = x0.astype(np.int64) % w
    y0 = y0.astype(np.int64) % h
    x1 = (x0 + 1) % w
    y1 = (y0 + 1) % h
    tex = texture.astype(np.float32) / 255.0
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


class Renderer:
    """Renders one mesh from any cameras.

    Parameters
    ----------
    mesh : LabelledMesh
        Usually normalised into the unit sphere first (``mesh.normalized()``),
        which is what the camera schemes assume.
    shading : ShadingOptions, optional

    Examples
    --------
    >>> from mvdecor.render import Renderer, CameraScheme
    >>> views = Renderer(mesh.normalized()).render(CameraScheme().cameras(seed=0))
    >>> views[0].face_ids.shape
    (256, 256)
    """

    def __init__(self, mesh: LabelledMesh, shading: ShadingOptions | None = None) -> None:
        self.mesh = mesh
        self.shading = shading or ShadingOptions()
        self._caster = EmbreeRayCaster(mesh.vertices, mesh.faces)
        self._triangles = mesh.vertices[mesh.faces]  # (F, 3, 3) float64
        self._face_normals = mesh.face_normals().astype(np.float32)
        self._camera_rays: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------ public API
    def render(self, cameras: Cameras) -> list[RenderedView]:
        """Render every camera of the batch."""
        return [self.render_view(cameras, i) for i in range(len(cameras))]

    def cast(self, cameras: Cameras, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Only the ray cast of camera ``index``.

        Returns
        -------
        face_ids : (H * W,) int32
            ``-1`` on background.
        uv : (H * W, 2) float32
            Embree's barycentric ``(u, v)``.
        distances : (H * W,) float32
            Ray parameter of the hit along unit directions, ``inf`` on background.
        """
        origin, directions = self._rays(cameras, index)
        origins = np.broadcast_to(origin.astype(np.float32), directions.shape)
        return self._caster.intersect(origins, directions)

    def render_view(self, cameras: Cameras, index: int) -> RenderedView:
        """Cast the rays of camera ``index`` and compute every buffer."""
        origin, directions = self._rays(cameras, index)
        origins = np.broadcast_to(origin.astype(np.float32), directions.shape)
        face_ids, uv, distances = self._caster.intersect(origins, directions)
        foreground = np.flatnonzero(face_ids >= 0)
        u, v = uv[foreground, 0], uv[foreground, 1]
        bary = np.stack([1.0 - u - v, u, v], axis=1)
        return self._assemble(
            cameras, index, face_ids, foreground, bary, distances[foreground], directions, origin
        )

    def view_from_face_ids(self, cameras: Cameras, index: int, face_ids: np.ndarray) -> RenderedView:
        """Rebuild a view exactly from its face ids alone (as the render store keeps it).

        Each foreground pixel's ray is intersected (in float64) with the plane of
        the face it is known to see, giving barycentrics and distance, and so
        every other buffer. The result equals :meth:`render_view`'s to float32
        precision.

        Parameters
        ----------
        face_ids : (H, W) int
            As produced by :meth:`render_view` for the same mesh and camera.
        """
        face_ids = np.asarray(face_ids, np.int32).reshape(-1)
        origin, directions = self._rays(cameras, index)
        foreground = np.flatnonzero(face_ids >= 0)
        if len(foreground) and face_ids[foreground].max() >= self.mesh.num_faces:
            raise ValueError(
                f"face id {int(face_ids.max())} out of range for a mesh of {self.mesh.num_faces} faces"
            )
        bary, distances = intersect_known_faces(
            self._triangles[face_ids[foreground]], origin, directions[foreground]
        )
        return self._assemble(
            cameras,
            index,
            face_ids,
            foreground,
            bary.astype(np.float32),
            distances.astype(np.float32),
            directions,
            origin,
        )

    # -------------------------------------------------------------- internals
    def _rays(self, cameras: Cameras, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera centre ``(3,)`` float64 and unit world ray directions ``(H*W, 3)`` float32."""
        key = (cameras.width, cameras.height, *cameras.focal[index], *cameras.principal[index])
        cam_dirs = self._camera_rays.get(key)
        if cam_dirs is None:
            one = Cameras(
                np.eye(3)[None],
                np.zeros((1, 3)),
                cameras.focal[index : index + 1],
                cameras.principal[index : index + 1],
                cameras.width,
                cameras.height,
            )
            cam_dirs = one.pixel_rays(0)[1].reshape(-1, 3).astype(np.float32)
            if len(self._camera_rays) > 16:
                self._camera_rays.clear()
            self._camera_rays[key] = cam_dirs
        directions = cam_dirs @ cameras.rotation[index].astype(np.float32)  # R^T d, row vectors
        return cameras.centers[index], directions

    def _assemble(
        self,
        cameras: Cameras,
        index: int,
        face_ids: np.ndarray,
        foreground: np.ndarray,
        bary: np.ndarray,
        distances: np.ndarray,
        directions: np.ndarray,
        origin: np.ndarray,
    ) -> RenderedView:
        """Fill every buffer from flat face ids, foreground indices, barycentrics and hit distances."""
        h, w = cameras.height, cameras.width
        faces = face_ids[foreground]
        rays = directions[foreground]
        hit = origin.astype(np.float32) + distances[:, None] * rays
        # Depth along the optical axis: the distance times the ray's cosine to it.
        depth = distances * (rays @ cameras.rotation[index][2].astype(np.float32))

        normals = self._face_normals[faces]
        cos = np.einsum("ij,ij->i", normals, rays)
        normals *= np.where(cos > 0, np.float32(-1.0), np.float32(1.0))[:, None]  # face the camera
        ambient = np.float32(self.shading.ambient)
        shading = ambient + (1 - ambient) * np.abs(cos)
        rgb = self._albedo(faces, bary) * shading[:, None]

        if len(depth):
            near, far = depth.min(), depth.max()
            depth_norm = (depth - near) / max(far - near, np.float32(1e-12))
        else:
            depth_norm = depth

        # One scatter into a packed buffer; the view's arrays are slices of it.
        packed = np.zeros((h * w, 15), np.float32)
        packed[foreground] = np.concatenate(
            [bary, hit, normals, rgb, depth[:, None], depth_norm[:, None], shading[:, None]], axis=1
        )
        packed = packed.reshape(h, w, 15)
        full_ids = face_ids.reshape(h, w)
        return RenderedView(
            camera=cameras[index],
            face_ids=full_ids,
            barycentrics=packed[..., 0:3],
            hit_points=packed[..., 3:6],
            normals=packed[..., 6:9],
            rgb=packed[..., 9:12],
            depth=packed[..., 12],
            depth_normalized=packed[..., 13],
            shading=packed[..., 14],
        )

    def _albedo(self, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Surface colour ``(N, 3)`` float32 at hit points on ``faces``."""
        mesh = self.mesh
        if mesh.vertex_colors is not None:
            corner_colors = mesh.vertex_colors[mesh.faces[faces]]  # (N, 3, 3)
            albedo = np.einsum("nk,nkc->nc", bary, corner_colors).astype(np.float32)
        else:
            albedo = mesh.face_colors[faces].copy()
        if mesh.face_texture_ids is not None:
            tex_ids = mesh.face_texture_ids[faces]
            for tex_id in np.unique(tex_ids[tex_ids >= 0]):
                rows = np.flatnonzero(tex_ids == tex_id)
                uv = np.einsum("nk,nkc->nc", bary[rows], mesh.face_uvs[faces[rows]])
                albedo[rows] = sample_texture_bilinear(mesh.textures[tex_id], uv)
        return albedo
