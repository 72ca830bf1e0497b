"""Canonical identity textures of SynthFaces, painted in the cylindrical texture layout.

Texture frame: a (Ht, Wt, 3) uint8 RGB image over the unwrapped head (see
:func:`~.shape.unwrap`): texture pixel coordinates are ``(uv_mm - origin) * tppm`` in the
continuous corner-origin convention (pixel (j, i) has its centre at (j + 0.5, i + 0.5)).
Features are painted where the layout vertices put them (eyes inside the eye contours, lips
between the lip contours...), so the piecewise-affine warp of the renderer carries them to the
projected landmarks of any identity shape, pose and expression.

Identity texture parameters (:class:`TextureParams`) are drawn from their own random stream
and scaled by ``texture_strength``: at strength 0 every identity has the same, mirror-symmetric
base texture (no moles, freckles, beard or hair strands).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import cv2
import numpy as np

from .shape import (
    EARS,
    LEFT_BROW,
    LEFT_EYE,
    LEFT_PUPIL,
    MOUTH_INNER,
    MOUTH_OUTER,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_PUPIL,
    aux_index,
    layout_vertices,
    unwrap,
)

#: Labels of the region map returned with ``debug_regions=True``.
REGION_NAMES = (
    "background",
    "skin",
    "left_eye",
    "right_eye",
    "left_brow",
    "right_brow",
    "nose",
    "mouth",
    "hair",
)
REGION = {name: i for i, name in enumerate(REGION_NAMES)}

_SKIN_PALETTE = np.array(
    [[241, 208, 184], [228, 184, 154], [204, 152, 118], [168, 116, 82], [120, 80, 56],
     [82, 56, 42]], np.float32,
)  # fmt: skip
_IRIS_PALETTE = np.array(
    [[92, 60, 34], [58, 38, 24], [72, 112, 150], [88, 118, 78], [110, 116, 122], [138, 104, 56]],
    np.float32,
)
_IRIS_WEIGHTS = np.array([0.35, 0.25, 0.15, 0.08, 0.07, 0.10])
_HAIR_PALETTE = np.array(
    [[28, 22, 20], [62, 42, 30], [112, 78, 48], [196, 160, 104], [150, 72, 38], [168, 166, 162]],
    np.float32,
)
_HAIR_WEIGHTS = np.array([0.3, 0.28, 0.17, 0.1, 0.07, 0.08])
_BASE_SKIN = np.array([206, 158, 124], np.float32)
_BASE_IRIS = np.array([84, 62, 44], np.float32)
_BASE_HAIR = np.array([58, 40, 30], np.float32)
_SCLERA = np.array([236, 230, 222], np.float32)
_MOUTH_INSIDE = np.array([92, 34, 38], np.float32)
_TEETH = np.array([226, 216, 198], np.float32)
_LASH = np.array([34, 24, 22], np.float32)

#: Margin (mm) around the layout in the texture.
_MARGIN = 6.0
_NUM_FRECKLES = 60
_NUM_MOLES = 8
_NUM_STRANDS = 48
_GRAIN_SEED = 0x6A1


@dataclass(frozen=True)
class TextureParams:
    """Identity texture parameters (colours RGB in 0..255, lengths in mm of the layout)."""

    skin: np.ndarray  # (3,)
    lip: np.ndarray  # (3,)
    iris: np.ndarray  # (3,)
    sclera: np.ndarray  # (3,)
    hair: np.ndarray  # (3,)
    brow_thickness: float
    brow_alpha: float
    hairline: float  # > 0 moves the hairline up
    bald: bool
    nape: float  # v of the hair's lower edge at the back
    beard_alpha: float
    blush_alpha: float
    skin_noise: np.ndarray  # (5, 5, 3) low-frequency colour variation
    freckles: np.ndarray  # (F, 3): u, v, radius
    moles: np.ndarray  # (M, 3): u, v, radius
    strands: np.ndarray  # (S, 5): u, v, length, angle, shade

    def as_dict(self) -> dict[str, np.ndarray]:
        """All parameters as numpy arrays, for comparisons."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}


def _pick(palette: np.ndarray, weights: np.ndarray, u: float) -> np.ndarray:
    return palette[min(int(np.searchsorted(np.cumsum(weights), u)), len(palette) - 1)]


def sample_texture_params(rng: np.random.Generator, strength: float) -> TextureParams:
    """Draw one identity's texture parameters; the same draws are made for every strength."""
    s = float(strength)
    skin_t, iris_u, hair_u = rng.random(3)
    jitter = rng.normal(size=(4, 3)).astype(np.float32)
    brow_thick, brow_dens, hairline, bald_u, nape_u = rng.random(5)
    beard_u, beard_dens, blush_u, freckle_dens = rng.random(4)
    freckles = rng.random((_NUM_FRECKLES, 3))
    moles = rng.random((_NUM_MOLES, 4))
    strands = rng.random((_NUM_STRANDS, 5))
    skin_noise = rng.normal(size=(5, 5, 4)).astype(np.float32)

    pos = skin_t * (len(_SKIN_PALETTE) - 1)
    lo = int(min(pos, len(_SKIN_PALETTE) - 2))
    skin = _SKIN_PALETTE[lo] + (pos - lo) * (_SKIN_PALETTE[lo + 1] - _SKIN_PALETTE[lo])
    skin = skin + np.array([6.0, 4.0, 4.0], np.float32) * jitter[0]
    skin = _BASE_SKIN + s * (skin - _BASE_SKIN)
    lip = skin * np.array([0.86, 0.6, 0.62], np.float32) + np.array([14, 0, 4], np.float32)
    lip = lip + s * np.array([10.0, 6.0, 6.0], np.float32) * jitter[1]
    iris = _BASE_IRIS + s * (_pick(_IRIS_PALETTE, _IRIS_WEIGHTS, iris_u) - _BASE_IRIS)
    iris = iris + s * 8.0 * jitter[2]
    hair = _pick(_HAIR_PALETTE, _HAIR_WEIGHTS, hair_u) * (1.0 + 0.08 * jitter[3])
    hair = _BASE_HAIR + s * (hair - _BASE_HAIR)
    clip = lambda c: np.clip(c, 0.0, 255.0).astype(np.float32)  # noqa: E731

    # freckles on the cheeks and nose; moles anywhere on the face
    count = round(_NUM_FRECKLES * min(1.0, s) * freckle_dens**3)
    f_uv = np.stack(
        [(freckles[:, 0] - 0.5) * 110.0, 5.0 + freckles[:, 1] * 45.0, 0.4 + 0.5 * freckles[:, 2]],
        1,
    )
    keep = moles[:, 0] < 0.2 * s
    m_uv = np.stack(
        [(moles[:, 1] - 0.5) * 150.0, -60.0 + moles[:, 2] * 185.0, 0.7 + 1.3 * moles[:, 3]], 1
    )
    strand_arr = strands.copy()
    strand_arr[:, 4] = (strand_arr[:, 4] - 0.5) * s
    return TextureParams(
        skin=clip(skin),
        lip=clip(lip),
        iris=clip(iris),
        sclera=clip(_SCLERA + s * np.array([-6.0, -4.0, -8.0]) * jitter[2, 0]),
        hair=clip(hair),
        brow_thickness=float(6.0 * (1.0 + s * 0.35 * (brow_thick - 0.5) * 2.0)),
        brow_alpha=float(0.8 + s * 0.35 * (brow_dens - 0.5)),
        hairline=float(s * (hairline - 0.5) * 20.0),
        bald=bool(bald_u < 0.06 * s),
        nape=float(60.0 + s * (nape_u - 0.5) * 70.0),
        beard_alpha=float(0.55 * beard_dens if beard_u < 0.25 * s else 0.0),
        blush_alpha=float(0.25 * s * blush_u),
        skin_noise=(s * (7.0 * skin_noise[..., :1] + 2.0 * skin_noise[..., 1:])).astype(np.float32),
        freckles=f_uv[:count].astype(np.float32),
        moles=m_uv[keep].astype(np.float32),
        strands=strand_arr.astype(np.float32),
    )


@dataclass(frozen=True)
class Canvas:
    """Geometry of the texture at one resolution.

    tppm: texture pixels per mm. origin: (u, v) in mm of the texture's top-left corner.
    size: (Ht, Wt). vertex_px: (V, 2) texture coordinates of the layout vertices.
    low_size: (Hl, Wl) of the half-resolution canvas the smooth skin layer is painted on.
    shading: (Hl, Wl, 1) float32 painted shading (sockets, folds, shadows), the same for
        everyone, on the low-resolution canvas.
    grain: (Hl, Wl) float32 fine random grain (mean 1) for stubble, the same for everyone.
    """

    tppm: float
    origin: np.ndarray
    size: tuple[int, int]
    vertex_px: np.ndarray
    low_size: tuple[int, int]
    shading: np.ndarray
    grain: np.ndarray

    def px(self, uv) -> np.ndarray:
        """(..., 2) layout mm -> texture pixel coordinates."""
        return (np.asarray(uv, np.float64) - self.origin) * self.tppm

    def low_px(self, uv) -> np.ndarray:
        """(..., 2) layout mm -> low-resolution canvas pixel coordinates."""
        return self.px(uv) * (self.low_size[1] / self.size[1])


def _fixed(points_px: np.ndarray) -> np.ndarray:
    """Continuous texture coordinates -> cv2 fixed-point (shift=4) int32 polygon."""
    return np.round((np.asarray(points_px, np.float64) - 0.5) * 16.0).astype(np.int32)


def _col(colour):
    c = np.asarray(colour, np.float64).ravel()
    return tuple(float(v) for v in c) if c.size > 1 else float(c[0])


def _poly(img, pts_px, colour):
    cv2.fillPoly(img, [_fixed(pts_px)], _col(colour), cv2.LINE_AA, 4)


def _line(img, pts_px, colour, thickness_px, closed=False):
    cv2.polylines(
        img, [_fixed(pts_px)], closed, _col(colour), max(1, round(thickness_px)), cv2.LINE_AA, 4
    )


def _ellipse(img, centre_px, axes_px, angle, colour, thickness=-1):
    c = np.round((np.asarray(centre_px) - 0.5) * 16).astype(int)
    a = np.maximum(np.round(np.asarray(axes_px) * 16).astype(int), 1)
    cv2.ellipse(
        img, (int(c[0]), int(c[1])), (int(a[0]), int(a[1])), float(angle), 0, 360, _col(colour),
        thickness, cv2.LINE_AA, 4,
    )  # fmt: skip


def _v(du: float, dv: float) -> np.ndarray:
    """An offset in the layout (mm)."""
    return np.array([du, dv], np.float64)


def _mirror_uv(uv: np.ndarray) -> np.ndarray:
    out = np.array(uv, np.float64)
    out[..., 0] *= -1.0
    return out


def _both_sides(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(uv, np.float64), _mirror_uv(uv)


def _hair_polygon(uv: np.ndarray, params: TextureParams, origin: np.ndarray) -> np.ndarray:
    """The hair region in mm: above the hairline, around the ears, down to the nape."""
    ear_u = uv[EARS[0], 0]
    lift = np.array([0.0, -(params.hairline + (30.0 if params.bald else 0.0))])
    nape = params.nape
    left = np.array(
        [
            (origin[0], nape),
            (ear_u - 30.0, nape),
            (ear_u - 18.0, 5.0),
            (ear_u - 8.0, -22.0),
            (ear_u + 8.0, -22.0),
            (ear_u + 13.0, 8.0),
            (ear_u + 21.0, 4.0),
            uv[70] + 0.5 * lift,
            uv[71] + lift,
            uv[72] + lift,
        ]
    )
    boundary = np.concatenate([left, _mirror_uv(left[::-1])], 0)
    top = origin[1]
    return np.concatenate([[(boundary[0, 0], top)], boundary, [(boundary[-1, 0], top)]], 0)


def _brow_polygon(uv: np.ndarray, brow: tuple[int, ...], thickness: float) -> np.ndarray:
    """Brow outline in mm from its 5 points (outer -> inner for the left brow)."""
    pts = uv[list(brow)]
    inner_first = abs(pts[0, 0]) < abs(pts[-1, 0])
    profile = np.array([0.45, 0.7, 0.85, 0.95, 1.0])  # outer -> inner
    if inner_first:
        profile = profile[::-1]
    half = 0.5 * thickness * profile
    top = pts - np.stack([np.zeros(5), half * 1.1], 1)
    bottom = pts + np.stack([np.zeros(5), half * 0.9], 1)
    return np.concatenate([top, bottom[::-1]], 0)


def _nose_polygon(uv: np.ndarray) -> np.ndarray:
    left, right = aux_index("left_nose_side"), aux_index("right_nose_side")
    return np.concatenate(
        [uv[[27]] + [-5.0, 0.0], uv[[left, 31, 32, 33, 34, 35, right]], uv[[27]] + [5.0, 0.0]], 0
    )


@functools.cache
def _layout_uv() -> np.ndarray:
    uv = unwrap(layout_vertices())
    uv.setflags(write=False)
    return uv


@functools.cache
def make_canvas(tppm: float) -> Canvas:
    """The texture canvas at ``tppm`` texture pixels per mm (cached)."""
    uv = _layout_uv()
    lo = uv.min(0) - _MARGIN
    hi = uv.max(0) + _MARGIN
    size = (int(np.ceil((hi[1] - lo[1]) * tppm)), int(np.ceil((hi[0] - lo[0]) * tppm)))
    low_size = (max(8, size[0] // 2), max(8, size[1] // 2))
    vertex_px = (uv - lo) * tppm
    shading = _paint_shading(uv, lo, tppm * low_size[1] / size[1], low_size)
    grain = np.random.default_rng(_GRAIN_SEED).random(low_size, dtype=np.float32)
    grain = 0.4 + 1.2 * cv2.GaussianBlur(grain, (0, 0), 0.6)
    for arr in (vertex_px, shading, grain):
        arr.setflags(write=False)
    return Canvas(
        tppm=float(tppm), origin=lo, size=size, vertex_px=vertex_px, low_size=low_size,
        shading=shading, grain=grain,
    )  # fmt: skip


def _paint_shading(uv, origin, tppm, size) -> np.ndarray:
    """Identity-independent multiplicative shading: sockets, folds, shadows (symmetric)."""
    img = np.ones(size, np.float32)
    px = lambda p: (np.asarray(p) - origin) * tppm  # noqa: E731
    for m in ((lambda p: p), _mirror_uv):
        socket = 0.5 * (uv[38] + uv[19]) + np.array([-2.0, 1.0])
        _ellipse(img, px(m(socket)), np.array([17.0, 8.0]) * tppm, 0, 0.86)
        fold = np.array([uv[80] + [-3.0, -2.0], uv[80] + [-5.0, 10.0], uv[48] + [-6.0, 8.0]])
        _line(img, px(m(fold)), 0.84, 2.2 * tppm)
        nose_side = np.array([uv[27] + _v(-6, 2), uv[28] + _v(-7, 0), uv[31] + _v(-2, -5)])
        _line(img, px(m(nose_side)), 0.84, 3.5 * tppm)
        under_jaw = uv[[3, 4, 5, 6, 7, 8]] + np.array([0.0, 9.0])
        _line(img, px(m(under_jaw)), 0.86, 10 * tppm)
    _ellipse(img, px(0.5 * (uv[57] + uv[aux_index("chin_sulcus")])), np.array([10.0, 3.0]) * tppm,
             0, 0.88)  # fmt: skip
    _ellipse(img, px(0.5 * (uv[33] + uv[51])), np.array([5.0, 4.0]) * tppm, 0, 0.92)
    _line(img, px(uv[[28, 29, 30]]), 1.08, 3.0 * tppm)  # highlight on the nose bridge and tip
    _ellipse(img, px(uv[aux_index("under_chin")] + [0.0, 6.0]), np.array([40.0, 14.0]) * tppm,
             0, 0.82)  # fmt: skip
    return cv2.GaussianBlur(img, (0, 0), 2.5 * tppm)[..., None]


def _blend_roi(img: np.ndarray, box, draw, colour, sigma: float) -> None:
    """Alpha-blend ``colour`` into uint8 ``img`` inside ``box`` = (x0, y0, x1, y1) through a
    float mask painted by ``draw(mask, offset)`` and blurred by ``sigma`` pixels."""
    h, w = img.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    draw(mask, np.array([x0, y0], np.float64))
    if sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    roi = img[y0:y1, x0:x1].astype(np.float32)
    colour = np.asarray(colour, np.float32)
    roi += mask[..., None] * (colour - roi)
    img[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)


def _box(points_px: np.ndarray, pad: float):
    lo, hi = points_px.min(0) - pad, points_px.max(0) + pad
    return (lo[0], lo[1], hi[0], hi[1])


def paint_texture(params: TextureParams, canvas: Canvas) -> np.ndarray:
    """Paint one identity's texture: (Ht, Wt, 3) uint8 RGB in the layout frame."""
    uv = _layout_uv()
    t = canvas.tppm
    px = canvas.px
    h, w = canvas.size
    hl, wl = canvas.low_size
    lpx = canvas.low_px
    lt = t * wl / w
    skin = params.skin

    # 1. smooth skin layer at half resolution: colour, blotches, blush, beard, shading
    low = cv2.resize(params.skin_noise, (wl, hl), interpolation=cv2.INTER_CUBIC)
    low += skin
    if params.blush_alpha > 0:
        blush = np.zeros((hl, wl), np.float32)
        for p in _both_sides(uv[78]):
            _ellipse(blush, lpx(p), np.array([15.0, 11.0]) * lt, 0, params.blush_alpha)
        blush = cv2.GaussianBlur(blush, (0, 0), 4.0 * lt)[..., None]
        low += blush * (np.array([200.0, 60.0, 70.0], np.float32) - low) * 0.5
    if params.beard_alpha > 0:
        beard = np.zeros((hl, wl), np.float32)
        region = np.concatenate(
            [uv[3:14] + _v(0, 8), uv[[aux_index("right_cheek_low"), 54]] + _v(0, -8),
             uv[[33]] + _v(0, 3), uv[[48, aux_index("left_cheek_low")]] + _v(0, -8)], 0,
        )  # fmt: skip
        _poly(beard, lpx(region), params.beard_alpha)
        beard = cv2.GaussianBlur(beard, (0, 0), 3.0 * lt)
        beard *= canvas.grain
        beard = np.minimum(beard, 1.0)[..., None]
        low += beard * (params.hair * 0.8 - low)
    low *= canvas.shading
    img = cv2.resize(np.clip(low, 0, 255), (w, h), interpolation=cv2.INTER_LINEAR)
    img = img.astype(np.uint8)

    # 2. marks on the skin
    for u, v, r in params.freckles:
        _ellipse(img, px((u, v)), (r * t, r * t), 0, skin * 0.84)
    for u, v, r in params.moles:
        _ellipse(img, px((u, v)), (r * t, r * t), 0, skin * np.array([0.45, 0.38, 0.36]))
    for p in _both_sides(uv[list(LEFT_EYE)][[0, 1, 2, 3]] + [0.0, -3.5]):
        _line(img, px(p), skin * 0.72, 1.1 * t)  # upper-lid crease

    # 3. hair (and strands inside it), ears
    _poly(img, px(_hair_polygon(uv, params, canvas.origin)), params.hair)
    hairline = uv[72, 1] - params.hairline - (30.0 if params.bald else 0.0)
    for u, v, length, angle, shade in params.strands:
        if shade == 0:
            continue
        start = np.array([(u - 0.5) * 380.0, canvas.origin[1] + v * 40.0])
        limit = hairline - 8.0 if abs(start[0]) < 110.0 else params.nape - 10.0
        end = start + np.array([np.sign(start[0]) * 15.0 * angle, 25.0 + 60.0 * length])
        end[1] = min(end[1], limit)
        if end[1] > start[1]:
            _line(img, px(np.stack([start, end])), params.hair * (1.0 + 0.6 * shade), 1.5 * t)
    for p, side in ((uv[EARS[0]], -1.0), (_mirror_uv(uv[EARS[0]]), 1.0)):
        centre = p + np.array([side * 9.0, -4.0])
        _ellipse(img, px(centre), np.array([12.0, 29.0]) * t, 0, skin * 0.95)
        _ellipse(img, px(centre), np.array([12.0, 29.0]) * t, 0, skin * 0.72, max(1, round(t)))
        _ellipse(img, px(centre + _v(side, 3)), np.array([6.0, 15.0]) * t, 0, skin * 0.62)

    # 4. brows
    brow_colour = params.hair * 0.85 + skin * 0.1
    for brow in (LEFT_BROW, RIGHT_BROW):
        outline = px(_brow_polygon(uv, brow, params.brow_thickness))
        _blend_roi(
            img, _box(outline, 3.0),
            lambda m, o, outline=outline: _poly(m, outline - o, params.brow_alpha),
            brow_colour, 0.5 * t,
        )  # fmt: skip

    # 5. eyes: sclera, iris, pupil, catch-light inside the contour; lid lines
    for eye, pupil in ((LEFT_EYE, LEFT_PUPIL), (RIGHT_EYE, RIGHT_PUPIL)):
        contour = px(uv[list(eye)])
        x0, y0 = np.floor(contour.min(0) - 2 * t).astype(int)
        x1, y1 = np.ceil(contour.max(0) + 2 * t).astype(int)
        roi = img[y0:y1, x0:x1]
        local = contour - [x0, y0]
        mask = np.zeros(roi.shape[:2], np.uint8)
        _poly(mask, local, 255)
        eye_img = np.empty_like(roi)
        eye_img[:] = params.sclera
        centre = px(uv[pupil]) - [x0, y0]
        r = 5.6 * t
        _ellipse(eye_img, centre, (r, r), 0, params.iris)
        _ellipse(eye_img, centre, (r, r), 0, params.iris * 0.55, max(1, round(0.8 * t)))
        _ellipse(eye_img, centre, (0.42 * r, 0.42 * r), 0, (14, 10, 10))
        _ellipse(
            eye_img, centre + np.array([-1.6, -1.6]) * t, (0.9 * t, 0.9 * t), 0, (250, 250, 250)
        )
        alpha = mask[..., None].astype(np.float32) / 255.0
        mixed = roi.astype(np.float32) + alpha * (eye_img.astype(np.float32) - roi)
        roi[:] = (mixed + 0.5).astype(np.uint8)
        _line(roi, local[[3, 4, 5, 0]], skin * 0.55, 0.9 * t)
        _line(roi, local[[0, 1, 2, 3]], _LASH, 1.8 * t)

    # 6. nostrils and mouth
    for p in _both_sides(uv[[31, 32, 33]]):
        centre = 0.3 * p[0] + 0.45 * p[1] + 0.25 * p[2] + np.array([0.0, -1.2])
        _ellipse(img, px(centre), np.array([3.4, 1.7]) * t, -20.0 * np.sign(-p[0, 0]), skin * 0.3)
    outer, inner = px(uv[list(MOUTH_OUTER)]), px(uv[list(MOUTH_INNER)])
    _poly(img, outer, params.lip)
    _poly(img, np.concatenate([outer[:7], inner[[4, 3, 2, 1, 0]]], 0), params.lip * 0.88)
    _poly(img, inner, _MOUTH_INSIDE)
    _poly(img, np.concatenate([inner[:5], inner[[4, 3, 2, 1, 0]] + [0.0, 2.6 * t]], 0), _TEETH)
    _line(img, inner, params.lip * 0.6, 0.8 * t, closed=True)
    return img


def paint_regions(params: TextureParams, canvas: Canvas, eye_band_px: float = 2.0) -> np.ndarray:
    """Region labels (Ht, Wt) uint8 in the layout frame (see :data:`REGION`).

    Each eye region is the eye opening plus a band of ``eye_band_px`` texture pixels around
    its contour (the lid line), so the contour landmarks lie inside it.
    """
    uv = _layout_uv()
    px = canvas.px
    out = np.full(canvas.size, REGION["skin"], np.uint8)

    def fill(points_mm, label):
        cv2.fillPoly(out, [_fixed(px(points_mm))], label, cv2.LINE_8, 4)

    fill(_hair_polygon(uv, params, canvas.origin), REGION["hair"])
    for brow, name in ((LEFT_BROW, "left_brow"), (RIGHT_BROW, "right_brow")):
        fill(_brow_polygon(uv, brow, params.brow_thickness), REGION[name])
    fill(_nose_polygon(uv), REGION["nose"])
    fill(uv[list(MOUTH_OUTER)], REGION["mouth"])
    lid = max(2, int(np.ceil(2.0 * eye_band_px)))
    for eye, name in ((LEFT_EYE, "left_eye"), (RIGHT_EYE, "right_eye")):
        pts = _fixed(px(uv[list(eye)]))
        cv2.fillPoly(out, [pts], REGION[name], cv2.LINE_8, 4)
        cv2.polylines(out, [pts], True, REGION[name], lid, cv2.LINE_8, 4)
    return out
