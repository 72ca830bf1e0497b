"""The 3D face model of SynthFaces: a mean head, identity shape modes and expression modes.

Model frame (millimetres, a head of average adult size): X to the image right, Y down,
Z towards the camera; the origin is the head's pivot, between the ears at eye level. A frontal
face looks along +Z, so the *left* points of the LMK84 schema (smaller image x) have X < 0.

Vertices: the 84 LMK84 landmarks (indices 0–83, schema order) followed by ``NUM_AUX``
auxiliary render-only points (forehead, cheeks, nose sides, chin, scalp, back of the head,
neck), so a vertex array is (V, 3) with V = 84 + NUM_AUX. Every field is mirror-symmetric
under :data:`VERTEX_FLIP` (X -> -X with the left/right partners swapped), except the
per-identity asymmetry drawn in :func:`identity_shape`.
"""

from __future__ import annotations

import functools

import numpy as np

from balanced_align.core.schema import LMK84

NUM_LANDMARKS = 84

# Left-side and midline landmarks (X <= 0); the right side is their mirror image.
_LEFT_LANDMARKS: dict[int, tuple[float, float, float]] = {
    # jaw / face contour, from the left ear-front down to the chin
    0: (-70.0, 6.0, 18.0),
    1: (-69.5, 26.0, 20.0),
    2: (-67.5, 46.0, 24.0),
    3: (-63.0, 65.0, 30.0),
    4: (-56.0, 83.0, 40.0),
    5: (-46.0, 98.0, 54.0),
    6: (-34.0, 110.0, 67.0),
    7: (-18.0, 118.0, 79.0),
    8: (0.0, 121.0, 84.0),
    # left brow, outer -> inner
    17: (-56.0, -17.0, 58.0),
    18: (-46.0, -24.0, 70.0),
    19: (-34.0, -27.0, 78.0),
    20: (-22.0, -25.0, 84.0),
    21: (-11.0, -20.0, 87.0),
    # nose bridge, top -> tip
    27: (0.0, -1.0, 84.0),
    28: (0.0, 14.0, 90.0),
    29: (0.0, 29.0, 97.0),
    30: (0.0, 44.0, 106.0),
    # nose bottom, left wing -> subnasale
    31: (-16.0, 50.0, 84.0),
    32: (-8.0, 53.0, 91.0),
    33: (0.0, 55.0, 94.0),
    # left eye: outer corner, upper lid (2), inner corner, lower lid (2)
    36: (-46.0, 1.0, 61.0),
    37: (-38.5, -4.5, 72.0),
    38: (-25.5, -5.0, 76.0),
    39: (-17.0, 1.0, 73.0),
    40: (-25.5, 5.0, 75.0),
    41: (-38.5, 5.0, 71.0),
    # outer lips: left corner, upper lip, ..., lower lip
    48: (-25.0, 72.0, 76.0),
    49: (-16.0, 66.5, 86.0),
    50: (-6.0, 63.5, 92.0),
    51: (0.0, 64.5, 93.0),
    57: (0.0, 83.5, 90.0),
    58: (-7.0, 82.5, 89.0),
    59: (-16.0, 79.0, 85.0),
    # inner lips
    60: (-21.0, 72.5, 79.0),
    61: (-10.0, 71.0, 88.0),
    62: (0.0, 71.5, 91.0),
    66: (0.0, 74.0, 90.0),
    67: (-10.0, 73.5, 87.0),
    # the 16 extra points (LMK84_EXTRA); the pupil is set to the eye-contour mean below
    68: (0.0, 0.0, 78.0),
    70: (-58.0, -42.0, 42.0),
    71: (-33.0, -62.0, 70.0),
    72: (0.0, -68.0, 80.0),
    75: (0.0, -16.0, 89.0),
    76: (-33.0, 17.0, 72.0),
    78: (-46.0, 38.0, 65.0),
    80: (-24.0, 54.0, 81.0),
    82: (-75.0, 12.0, -2.0),
}

# Auxiliary render-only points, left side and midline: (name, (X, Y, Z)).
_LEFT_AUX: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("forehead_mid", (-22.0, -44.0, 80.0)),
    ("forehead_side", (-47.0, -30.0, 63.0)),
    ("forehead_centre_low", (0.0, -42.0, 86.0)),
    ("temple_low", (-63.0, -14.0, 38.0)),
    ("zygoma", (-59.0, 12.0, 48.0)),
    ("nose_root_side", (-8.5, 8.0, 80.0)),
    ("nose_side", (-10.0, 26.0, 86.0)),
    ("cheek_low", (-37.0, 86.0, 66.0)),
    ("chin_side", (-15.0, 101.0, 82.0)),
    ("chin_sulcus", (0.0, 97.0, 87.0)),
    ("under_jaw", (-48.0, 104.0, 30.0)),
    ("under_chin_side", (-28.0, 123.0, 48.0)),
    ("under_chin", (0.0, 131.0, 58.0)),
    ("below_ear", (-64.0, 58.0, -8.0)),
    ("neck_front", (0.0, 155.0, 46.0)),
    ("neck_front_side", (-38.0, 152.0, 30.0)),
    ("neck_side", (-52.0, 150.0, -6.0)),
    ("neck_back", (-44.0, 150.0, -42.0)),
    ("neck_bottom_front", (0.0, 215.0, 50.0)),
    ("neck_bottom_side", (-50.0, 215.0, 20.0)),
    ("neck_bottom_back", (-55.0, 215.0, -45.0)),
    ("nape", (-58.0, 95.0, -48.0)),
    ("behind_ear", (-72.0, 16.0, -42.0)),
    ("above_ear", (-77.0, -40.0, 4.0)),
    ("above_ear_back", (-70.0, -45.0, -48.0)),
    ("back_top", (-52.0, -95.0, -62.0)),
    ("crown_side", (-56.0, -104.0, -8.0)),
    ("crown_front_side", (-45.0, -98.0, 36.0)),
    ("crown_front", (0.0, -110.0, 48.0)),
    ("crown", (0.0, -127.0, 0.0)),
    ("parietal", (-70.0, -80.0, -5.0)),
    ("crown_side_top", (-38.0, -120.0, -10.0)),
    ("temple_high", (-64.0, -70.0, 30.0)),
    ("back_crown", (-22.0, -105.0, -62.0)),
    ("occiput_high", (-31.0, -50.0, -92.0)),
    ("occiput", (-31.0, 15.0, -92.0)),
    ("nape_back", (-22.0, 95.0, -62.0)),
    ("neck_back_centre", (-16.0, 150.0, -46.0)),
    ("neck_bottom_back_centre", (-17.0, 215.0, -48.0)),
)

#: Landmark index groups (schema order).
JAW = tuple(range(17))
LEFT_BROW = tuple(range(17, 22))
RIGHT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BOTTOM = tuple(range(31, 36))
LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
MOUTH_OUTER = tuple(range(48, 60))
MOUTH_INNER = tuple(range(60, 68))
LEFT_PUPIL, RIGHT_PUPIL = 68, 69
EARS = (82, 83)


def _mirror_table(left: dict[int, tuple], perm) -> np.ndarray:
    out = np.full((len(perm), 3), np.nan)
    for i, p in left.items():
        out[i] = p
    for i in range(len(perm)):
        if np.isnan(out[i, 0]):
            out[i] = out[perm[i]] * np.array([-1.0, 1.0, 1.0])
    if np.isnan(out).any():
        raise AssertionError("landmark table does not cover all 84 points")
    return out


def _build_vertices() -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Mean vertices (V, 3), the aux point names and the vertex flip permutation (V,)."""
    landmarks = _mirror_table(_LEFT_LANDMARKS, LMK84.flip_permutation)
    for eye, pupil in ((LEFT_EYE, LEFT_PUPIL), (RIGHT_EYE, RIGHT_PUPIL)):
        landmarks[pupil, :2] = landmarks[list(eye), :2].mean(0)
    names: list[str] = []
    points: list[tuple[float, float, float]] = []
    flip = list(LMK84.flip_permutation)
    for name, (x, y, z) in _LEFT_AUX:
        if x == 0.0:
            names.append(name)
            points.append((x, y, z))
            flip.append(len(flip))
        else:
            base = len(flip)
            names += [f"left_{name}", f"right_{name}"]
            points += [(x, y, z), (-x, y, z)]
            flip += [base + 1, base]
    vertices = np.concatenate([landmarks, np.asarray(points)], 0)
    return vertices, tuple(names), np.asarray(flip)


MEAN_VERTICES, AUX_NAMES, VERTEX_FLIP = _build_vertices()
MEAN_VERTICES.setflags(write=False)
NUM_AUX = len(AUX_NAMES)
NUM_VERTICES = NUM_LANDMARKS + NUM_AUX


def aux_index(name: str) -> int:
    """Vertex index of an auxiliary point (``"crown"``, ``"left_nape"``, ...)."""
    return NUM_LANDMARKS + AUX_NAMES.index(name)


def mirror(vertices: np.ndarray) -> np.ndarray:
    """Mirror (..., V, 3) vertices or displacements: X -> -X and left/right partners swapped."""
    out = vertices[..., VERTEX_FLIP, :].copy()
    out[..., 0] *= -1.0
    return out


def _aux_mask(*names: str) -> np.ndarray:
    mask = np.zeros(NUM_VERTICES, bool)
    for name in names:
        for prefix in ("", "left_", "right_"):
            if prefix + name in AUX_NAMES:
                mask[aux_index(prefix + name)] = True
    return mask


def _ramp(t, lo, hi):
    return np.clip((t - lo) / (hi - lo), 0.0, 1.0)


def _eye_centres(v: np.ndarray) -> np.ndarray:
    """(V, 3) -> (V, 3): each eye point's eye centre (pupil), zeros elsewhere."""
    out = np.zeros_like(v)
    for eye, pupil in ((LEFT_EYE, LEFT_PUPIL), (RIGHT_EYE, RIGHT_PUPIL)):
        out[[*eye, pupil]] = v[pupil]
    return out


def _identity_modes(v: np.ndarray) -> dict[str, np.ndarray]:
    """Identity shape modes: name -> (V, 3) displacement in mm for a coefficient of 1 (≈ 1 sd)."""
    x, y, z = v.T
    sx, ax = np.sign(x), np.abs(x)
    eyes = np.zeros(len(v), bool)
    eyes[[*LEFT_EYE, *RIGHT_EYE, LEFT_PUPIL, RIGHT_PUPIL]] = True
    contour = np.zeros(len(v), bool)
    contour[[*LEFT_EYE, *RIGHT_EYE]] = True
    brows = np.zeros(len(v), bool)
    brows[[*LEFT_BROW, *RIGHT_BROW]] = True
    mouth = np.zeros(len(v), bool)
    mouth[[*MOUTH_OUTER, *MOUTH_INNER]] = True
    hair = _aux_mask("crown", "crown_front", "crown_front_side", "crown_side", "back_top")
    hair |= _aux_mask("parietal", "crown_side_top", "temple_high", "back_crown", "occiput_high")
    hair |= _aux_mask("above_ear", "above_ear_back")
    centre = _eye_centres(v)
    modes: dict[str, np.ndarray] = {}

    def mode(name: str) -> np.ndarray:
        modes[name] = np.zeros_like(v)
        return modes[name]

    mode("face_width")[:, 0] = 0.05 * x
    mode("lower_face_length")[:, 1] = 0.045 * np.clip(y, 0.0, 150.0)
    mode("forehead_height")[:, 1] = -6.0 * _ramp(-y, 22.0, 60.0)
    d = mode("jaw_width")
    d[:, 0] = 5.0 * sx * np.exp(-(((y - 92.0) / 28.0) ** 2)) * _ramp(ax, 12.0, 40.0) * (z > 0)
    d = mode("chin")
    w = _ramp(y, 90.0, 118.0) * (y < 140.0) * (z > 30.0)
    d[:, 1], d[:, 2] = 4.0 * w, 3.0 * w
    mode("eye_size")[:, :2] = 0.08 * (v - centre)[:, :2] * eyes[:, None]
    d = mode("eye_spacing")
    d[:, 0] = 2.5 * sx * (eyes + 0.5 * brows)
    d[[76, 77], 0] = 1.2 * sx[[76, 77]]
    d = mode("eye_tilt")
    rel = (v - centre) * eyes[:, None]
    d[:, 0], d[:, 1] = 0.07 * sx * rel[:, 1], -0.07 * sx * rel[:, 0]
    mode("eye_opening")[:, 1] = 0.12 * (v - centre)[:, 1] * contour
    d = mode("eye_height")
    d[:, 1] = 2.5 * (eyes + 0.7 * brows)
    d[[76, 77], 1] = 1.0
    mode("brow_height")[:, 1] = -3.0 * brows
    arch = {17: 0.0, 18: 0.8, 19: 1.0, 20: 0.6, 21: 0.0}
    tilt = {17: 1.0, 18: 0.75, 19: 0.5, 20: 0.25, 21: 0.0}
    for name, weights, amp in (("brow_arch", arch, -2.5), ("brow_tilt", tilt, -2.5)):
        d = mode(name)
        for i, w in weights.items():
            d[i, 1] = d[LMK84.flip_permutation[i], 1] = amp * w
    d = mode("nose_length")
    d[[*NOSE_BOTTOM, 30], 1] = 4.0
    d[29, 1], d[28, 1] = 2.5, 1.0
    d[[80, 81], 1] = 2.0
    d[_aux_mask("nose_side"), 1] = 2.0
    d = mode("nose_width")
    for idx, amp in (((31, 35), 3.0), ((32, 34), 1.5), ((80, 81), 1.5)):
        d[list(idx), 0] = amp * sx[list(idx)]
    d[_aux_mask("nose_side"), 0] = 1.0 * sx[_aux_mask("nose_side")]
    d = mode("nose_protrusion")
    for idx, amp in (((30,), 6.0), ((29,), 4.5), ((28,), 3.0), ((32, 33, 34), 3.0)):
        d[list(idx), 2] = amp
    d[[31, 35, 27], 2] = 1.5, 1.5, 1.0
    d = mode("nose_bridge")
    d[[28, 29], 2], d[27, 2] = 2.0, 1.0
    mode("mouth_width")[:, 0] = 3.5 * sx * np.clip(ax / 25.0, 0.0, 1.0) * mouth
    d = mode("upper_lip")
    d[[50, 51, 52], 1], d[[49, 53], 1] = -1.5, -1.0
    d = mode("lower_lip")
    d[[56, 57, 58], 1], d[[55, 59], 1] = 2.0, 1.4
    mode("mouth_height")[:, 1] = 3.0 * mouth
    mode("lip_protrusion")[:, 2] = 3.0 * mouth
    d = mode("cheek_fullness")
    full = np.zeros(len(v))
    full[[76, 77]], full[[78, 79]], full[[1, 2, 3, 4, 5, 11, 12, 13, 14, 15]] = 0.5, 1.0, 0.6
    full[_aux_mask("cheek_low", "zygoma")] = 0.8
    d[:, 0], d[:, 2] = 3.0 * sx * full, 2.0 * full
    mode("face_depth")[:, 2] = 0.06 * z
    d = mode("ear_height")
    d[list(EARS), 1] = 3.0
    d = mode("hair_volume")
    radial = v - np.array([0.0, -20.0, -10.0])
    d[hair] = 6.0 * radial[hair] / np.linalg.norm(radial[hair], axis=1, keepdims=True)
    return modes


def _expression_modes(v: np.ndarray) -> dict[str, np.ndarray]:
    """Expression modes: name -> (V, 3) displacement in mm for a full expression (coef 1)."""
    x, y, z = v.T
    sx = np.sign(x)
    modes: dict[str, np.ndarray] = {}

    def mode(name: str) -> np.ndarray:
        modes[name] = np.zeros_like(v)
        return modes[name]

    def put(d, idx, dx=0.0, dy=0.0, dz=0.0):
        idx = list(idx)
        d[idx, 0] += dx * sx[idx]
        d[idx, 1] += dy
        d[idx, 2] += dz

    d = mode("smile")
    put(d, (48, 54, 60, 64), 4.0, -4.0, -2.0)
    put(d, (49, 53, 59, 55, 61, 63, 67, 65), 2.0, -2.0, -0.5)
    put(d, (50, 51, 52), 0.0, -0.5)
    put(d, (56, 57, 58, 65, 66, 67), 0.0, 1.5)
    put(d, (78, 79), 1.5, -3.0, 2.0)
    put(d, (76, 77), 0.0, -1.5, 1.0)
    put(d, (80, 81), 2.0, -1.0)
    put(d, (40, 41, 46, 47), 0.0, -1.0)
    put(d, np.flatnonzero(_aux_mask("cheek_low")), 1.5, -1.0, 1.0)
    d = mode("mouth_open")
    w = _ramp(y, 60.0, 110.0) * (y < 145.0)
    jaw = (z > 0.0) & (y > 76.0) & (np.abs(x) < 60.0)
    d[:, 1] = 11.0 * w * jaw
    d[:, 2] = -3.0 * w * jaw
    d[[55, 56, 57, 58, 59, 65, 66, 67], 1] = 10.0
    d[[48, 54, 60, 64], 1] = 4.0
    d = mode("brow_raise")
    put(d, LEFT_BROW + RIGHT_BROW, 0.0, -5.0)
    put(d, (37, 38, 43, 44), 0.0, -1.0)
    put(d, np.flatnonzero(_aux_mask("forehead_mid", "forehead_centre_low")), 0.0, -2.0)
    d = mode("frown")
    put(d, (20, 21, 22, 23), -2.0, 3.0)
    put(d, (19, 24), -1.0, 1.5)
    put(d, (75,), 0.0, 1.0)
    d = mode("squint")
    put(d, (37, 38, 43, 44), 0.0, 3.0)
    put(d, (40, 41, 46, 47), 0.0, -1.0)
    return modes


def _stack(modes: dict[str, np.ndarray]) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(modes)
    stacked = np.stack([modes[n] for n in names]).astype(np.float64)
    stacked.setflags(write=False)
    return names, stacked


IDENTITY_MODE_NAMES, IDENTITY_MODES = _stack(_identity_modes(MEAN_VERTICES))
EXPRESSION_MODE_NAMES, EXPRESSION_MODES = _stack(_expression_modes(MEAN_VERTICES))

#: Per-vertex standard deviation (mm) of the identity asymmetry at geometry_strength 1.
ASYMMETRY_MM = 0.7

#: Reference face height (mm): forehead centre (72) to chin (8) of the mean face.
REFERENCE_HEIGHT = float(MEAN_VERTICES[8, 1] - MEAN_VERTICES[72, 1])


def identity_shape(coefficients: np.ndarray, asymmetry: np.ndarray) -> np.ndarray:
    """Identity vertices (V, 3): mean + modes · coefficients + asymmetry.

    coefficients: (M,) identity mode coefficients (already scaled by geometry_strength).
    asymmetry: (V, 3) per-vertex offsets in mm (already scaled).
    """
    return MEAN_VERTICES + np.tensordot(coefficients, IDENTITY_MODES, 1) + asymmetry


def apply_expression(vertices: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(V, 3) vertices plus expression modes · coefficients (E,)."""
    return vertices + np.tensordot(coefficients, EXPRESSION_MODES, 1)


#: Radius (mm) of the cylinder the texture is unwrapped on.
UNWRAP_RADIUS = 80.0


def unwrap(vertices: np.ndarray) -> np.ndarray:
    """Cylindrical texture coordinates (..., V, 2) = (R·atan2(X, Z), Y) in mm."""
    u = UNWRAP_RADIUS * np.arctan2(vertices[..., 0], vertices[..., 2])
    return np.stack([u, vertices[..., 1]], -1)


@functools.cache
def layout_vertices() -> np.ndarray:
    """Vertices (V, 3) that define the texture layout: the mean face with the mouth part open,
    so the mouth interior has room in the texture."""
    idx = EXPRESSION_MODE_NAMES.index("mouth_open")
    out = MEAN_VERTICES + 0.6 * EXPRESSION_MODES[idx]
    out.setflags(write=False)
    return out


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) rotation R = Rz(roll) · Rx(pitch) · Ry(yaw), angles in degrees, model frame.

    Positive yaw moves the nose (+Z) towards +X (image right); positive pitch moves it up
    (towards -Y, the face looks up); positive roll turns the face clockwise in the image.
    Applied to column vectors: p' = R p.
    """
    a, b, c = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry
