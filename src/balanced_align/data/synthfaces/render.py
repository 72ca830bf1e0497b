"""Rendering a SynthFaces image: pose, projection, visibility, texture warp, light, background.

Pipeline for one image of size (H, W) = (S, S):

1. rotate the (V, 3) model-frame vertices by R(yaw, pitch, roll) and project them with weak
   perspective: (x, y) = scale · (X', Y') + offset, where the offset puts the centre of the
   84 landmarks' bounding box at the image centre (plus the shift jitter);
2. keep the triangles that face the camera (positive projected area, see :mod:`.mesh`) and
   rasterise their ids far-to-near (painter's algorithm on mean depth) with
   ``cv2.fillConvexPoly``, giving an (H, W) triangle-id map;
3. from each visible triangle's affine map (image pixel -> texture pixel, vertex shade) compute
   a dense source map and vertex-interpolated (Gouraud) shading, and warp the canonical texture
   with a single ``cv2.remap``;
4. composite over the background, blur, add noise, quantise to uint8.

Pixel coordinates follow docs/design.md §2: corner origin, pixel (j, i) centred at
(j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .mesh import face_mesh, signed_area2
from .params import SceneParams
from .shape import NUM_LANDMARKS, REFERENCE_HEIGHT, rotation_matrix
from .texture import make_canvas

#: Fraction of the image height taken by the reference face (forehead centre to chin).
FRAME = 0.85
#: Texture pixels per image pixel at scale 1 (texture oversampling).
OVERSAMPLE = 1.6
_MIN_AREA2 = 1e-3  # twice the area (px²) below which a triangle is skipped
_NOISE_SEED = 0x5EED  # fixed bank of sensor noise; each image takes a random window of it


@dataclass(frozen=True)
class Projection:
    """A posed face: points (V, 2) in pixels, depth (V,) (larger = nearer the camera),
    rotated (V, 3) model-frame vertices, and the pixels-per-mm scale used."""

    points: np.ndarray
    depth: np.ndarray
    rotated: np.ndarray
    scale: float


def _col(colour) -> tuple[float, float, float]:
    return tuple(float(c) for c in colour)


class Renderer:
    """Renders faces at one image size; holds the mesh, the texture canvas and pixel grids."""

    def __init__(self, image_size: int) -> None:
        self.size = int(image_size)
        self.mesh = face_mesh()
        self.base_scale = self.size * FRAME / REFERENCE_HEIGHT  # pixels per mm
        self.canvas = make_canvas(round(self.base_scale * OVERSAMPLE, 4))
        centres = np.arange(self.size, dtype=np.float32) + 0.5
        self._xs, self._ys = np.meshgrid(centres, centres)
        self._xs_flat, self._ys_flat = self._xs.ravel(), self._ys.ravel()
        self._tri_tex = self.canvas.vertex_px[self.mesh.triangles].astype(np.float64)  # (T,3,2)
        num = self.mesh.num_triangles
        self._table = np.zeros((num + 1, 18), np.float32)  # see source_maps
        self._table[0, 6:9] = 1.0 / 3.0  # background: barycentric (1/3, 1/3, 1/3) of ...
        self._table[0, 9:15] = -4.0  # ... a point outside the texture, shade 1
        self._table[0, 15:18] = 1.0
        self._table[1:, 9:12] = self._tri_tex[:, :, 0]
        self._table[1:, 12:15] = self._tri_tex[:, :, 1]
        noise = np.random.default_rng(_NOISE_SEED).standard_normal((2 * self.size,) * 2 + (3,))
        self._noise = noise.astype(np.float32)

    # -- geometry ---------------------------------------------------------------------------
    def project(self, vertices: np.ndarray, scene: SceneParams) -> Projection:
        """Pose and project (V, 3) model-frame vertices."""
        rot = rotation_matrix(scene.yaw, scene.pitch, scene.roll)
        rotated = vertices @ rot.T
        scale = self.base_scale * scene.scale
        xy = scale * rotated[:, :2]
        lmk = xy[:NUM_LANDMARKS]
        centre = 0.5 * (lmk.min(0) + lmk.max(0))
        offset = 0.5 * self.size + np.asarray(scene.shift) - centre
        return Projection(points=xy + offset, depth=rotated[:, 2], rotated=rotated, scale=scale)

    def vertex_shade(self, rotated: np.ndarray, scene: SceneParams) -> np.ndarray:
        """Lambertian shade per vertex (V,) from area-weighted vertex normals."""
        tri = self.mesh.triangles
        a, b, c = rotated[tri[:, 0]], rotated[tri[:, 1]], rotated[tri[:, 2]]
        normals = self.mesh.incidence @ np.cross(b - a, c - a)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        return scene.ambient + scene.diffuse * np.maximum(normals @ scene.light, 0.0)

    def rasterise(self, proj: Projection) -> tuple[np.ndarray, np.ndarray]:
        """Triangle-id map (H, W) int32 (0 = background, t + 1 = triangle t on top) and the
        indices of the triangles that were drawn."""
        tri = self.mesh.triangles
        pts = proj.points
        corners = pts[tri]  # (T, 3, 2)
        lo, hi = corners.min(1), corners.max(1)
        inside = (hi > 0.0).all(1) & (lo < self.size).all(1)
        area = signed_area2(pts, tri)
        visible = np.flatnonzero((area > _MIN_AREA2) & inside)
        depth = proj.depth[tri[visible]].sum(1)
        order = visible[np.argsort(depth, kind="stable")]
        fixed = np.round((corners[order] - 0.5) * 16.0).astype(np.int32)
        ids = np.zeros((self.size, self.size), np.int32)
        for t, poly in zip((order + 1).tolist(), fixed):
            cv2.fillConvexPoly(ids, poly, t, cv2.LINE_8, 4)
        return ids, order

    def source_maps(self, proj: Projection, ids: np.ndarray, drawn: np.ndarray, shade):
        """Texture coordinates (mapx, mapy) for ``cv2.remap`` and the shade, each (H, W).

        Each pixel's barycentric coordinates in its triangle are clamped to the triangle
        (negative weights set to 0, then renormalised), so pixels that the rasteriser assigns
        to a sliver triangle from just outside it do not extrapolate far into the texture.
        """
        tri = self.mesh.triangles[drawn]
        p = np.empty((len(drawn), 3, 3))
        p[:, :, :2] = proj.points[tri]
        p[:, :, 2] = 1.0
        # table row: barycentric map B = P^-1 (rows: x, y, 1 coefficients), then per-vertex
        # tex_x (3), tex_y (3), shade (3)
        table = self._table.copy()
        table[drawn + 1, :9] = np.linalg.inv(p).reshape(-1, 9)
        table[drawn + 1, 15:18] = shade[tri]
        g = table[ids.ravel()]  # (N, 18)
        x, y = self._xs_flat[:, None], self._ys_flat[:, None]
        bary = x * g[:, 0:3] + y * g[:, 3:6] + g[:, 6:9]
        np.maximum(bary, 0.0, out=bary)
        bary /= bary.sum(1, keepdims=True)
        shape = ids.shape
        mapx = np.einsum("nk,nk->n", bary, g[:, 9:12]) - 0.5
        mapy = np.einsum("nk,nk->n", bary, g[:, 12:15]) - 0.5
        pixel_shade = np.einsum("nk,nk->n", bary, g[:, 15:18])
        return mapx.reshape(shape), mapy.reshape(shape), pixel_shade.reshape(shape)

    # -- pixels -----------------------------------------------------------------------------
    def background(self, scene: SceneParams, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) float32 background."""
        s = self.size
        c = scene.colours
        if scene.background == "flat":
            img = np.empty((s, s, 3), np.float32)
            img[:] = c[0]
            return img
        if scene.background == "gradient":
            d = np.cos(scene.angle) * self._xs + np.sin(scene.angle) * self._ys
            t = ((d - d.min()) / max(float(np.ptp(d)), 1e-6))[..., None]
            return (c[0] + t * (c[1] - c[0])).astype(np.float32)
        small = max(4, s // 4)
        field = cv2.resize(rng.random((3, 3, 2), dtype=np.float32), (small, small))
        field += 0.2 * (rng.random((small, small, 2), dtype=np.float32) - 0.5)
        img = c[0] + field[..., :1] * (c[1] - c[0]) + field[..., 1:] * (c[2] - c[0]) * 0.6
        for _ in range(3):  # a few blocks of clutter
            x0, y0, x1, y1 = (rng.random(4) * small).astype(int)
            shade = float(0.6 + 0.8 * rng.random())
            cv2.rectangle(img, (x0, y0), (x1, y1), _col(img[y0, x0] * shade), -1)
        return cv2.resize(img.astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)

    def render(
        self,
        vertices: np.ndarray,
        texture: np.ndarray,
        scene: SceneParams,
        rng: np.random.Generator,
        regions: np.ndarray | None = None,
    ):
        """Render one image.

        vertices: (V, 3) model-frame vertices (identity shape + expression).
        texture: (Ht, Wt, 3) uint8 identity texture on this renderer's canvas.
        regions: optional (Ht, Wt) uint8 region labels on the canvas.
        Returns image (S, S, 3) uint8, landmarks (84, 2) float32, region map (S, S) uint8 or
        None, and the Projection.
        """
        proj = self.project(vertices, scene)
        ids, drawn = self.rasterise(proj)
        shade = self.vertex_shade(proj.rotated, scene)
        mapx, mapy, pixel_shade = self.source_maps(proj, ids, drawn, shade)
        face = cv2.remap(texture, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = ids > 0
        img = self.background(scene, rng)
        lit = face.astype(np.float32)
        lit *= pixel_shade[..., None]
        lit *= scene.tint
        np.copyto(img, lit, where=mask[..., None])
        if scene.blur_sigma > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), scene.blur_sigma)
        if scene.noise_sigma > 0:
            i, j = rng.integers(0, self.size, 2)
            img += self._noise[i : i + self.size, j : j + self.size] * scene.noise_sigma
        img += 0.5
        image = np.clip(img, 0, 255, out=img).astype(np.uint8)
        region_map = None
        if regions is not None:
            region_map = cv2.remap(regions, mapx, mapy, cv2.INTER_NEAREST)
            region_map[~mask] = 0
        landmarks = proj.points[:NUM_LANDMARKS].astype(np.float32)
        return image, landmarks, region_map, proj
