"""Knobs of SynthFaces and the random parameters of identities and images.

Determinism: every random draw comes from ``numpy.random.default_rng([seed, identity,
<tag>])`` (identity) or ``default_rng([seed, identity, image, <tag>])`` (image), never from
global state. Each stream makes the same draws whatever the knobs are; knobs only map the
draws to values. So identity parameters do not depend on pose knobs, and an image's pose
does not depend on its background or lighting knobs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .shape import ASYMMETRY_MM, EXPRESSION_MODE_NAMES, IDENTITY_MODE_NAMES, NUM_VERTICES

# Stream tags (arbitrary constants; changing one changes the data set).
TAG_SHAPE = 0x5A1
TAG_TEXTURE = 0x7E8
TAG_SCENE = 0x5CE
TAG_PIXELS = 0x91C
TAG_ANNOTATION = 0xA77

BACKGROUNDS = ("noise", "gradient", "flat")
POSE_DISTRIBUTIONS = ("uniform", "normal")
_NORMAL = NormalDist()


def _number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return value


def _range(name: str, value, limit: float) -> tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of degrees, got {value!r}") from None
    lo, hi = _number(name, lo, -limit, limit), _number(name, hi, -limit, limit)
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class Knobs:
    """What SynthFaces varies, and how much (validated on construction).

    geometry_strength: scale of the identity shape modes and asymmetry (0 = mean shape).
    texture_strength: scale of the identity texture variation (0 = one shared texture), <= 2.
    yaw_range / pitch_range / roll_range: pose limits in degrees (|yaw| <= 90,
        |pitch| <= 45, |roll| <= 90).
    pose_distribution: "uniform" in the ranges, or "normal": a normal centred in the range with
        sd = a quarter of its width, truncated to the range.
    expression_strength: scale of the expression coefficients (0 = neutral).
    scale_jitter: sd of the relative face scale (<= 0.3).
    shift_jitter: sd of the face centre's shift as a fraction of the image size (<= 0.3).
    lighting: strength of the directional light and colour cast, 0 (flat, white) .. 1.
    background: "noise" (smooth colour clutter), "gradient" or "flat".
    blur: largest Gaussian blur sd in pixels of a 112-pixel image (scaled with the size).
    noise: largest pixel noise sd as a fraction of 255.
    landmark_noise: sd, in pixels of a 112-pixel image (scaled with the size), of an
        annotation error added to each landmark coordinate (0 = the exact projections). The
        image is unchanged: this simulates a landmark detector's error on the labels only.
    """

    geometry_strength: float = 1.0
    texture_strength: float = 1.0
    yaw_range: tuple[float, float] = (-60.0, 60.0)
    pitch_range: tuple[float, float] = (-20.0, 20.0)
    roll_range: tuple[float, float] = (-10.0, 10.0)
    pose_distribution: str = "uniform"
    expression_strength: float = 1.0
    scale_jitter: float = 0.05
    shift_jitter: float = 0.03
    lighting: float = 0.7
    background: str = "noise"
    blur: float = 0.8
    noise: float = 0.02
    landmark_noise: float = 0.0

    @classmethod
    def from_mapping(cls, knobs: Mapping) -> Knobs:
        """Knobs from a mapping of names to values; unknown names raise ``ValueError``."""
        unknown = set(knobs) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown SynthFaces knob(s) {sorted(unknown)}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**knobs)

    def __post_init__(self) -> None:
        num = {
            "geometry_strength": (0.0, 3.0),
            "texture_strength": (0.0, 2.0),
            "expression_strength": (0.0, 2.0),
            "scale_jitter": (0.0, 0.3),
            "shift_jitter": (0.0, 0.3),
            "lighting": (0.0, 1.0),
            "blur": (0.0, 5.0),
            "noise": (0.0, 0.5),
            "landmark_noise": (0.0, 10.0),
        }
        for name, (lo, hi) in num.items():
            object.__setattr__(self, name, _number(name, getattr(self, name), lo, hi))
        for name, limit in (("yaw_range", 90.0), ("pitch_range", 45.0), ("roll_range", 90.0)):
            object.__setattr__(self, name, _range(name, getattr(self, name), limit))
        if self.pose_distribution not in POSE_DISTRIBUTIONS:
            raise ValueError(
                f"pose_distribution must be one of {POSE_DISTRIBUTIONS}, "
                f"got {self.pose_distribution!r}"
            )
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")


@dataclass(frozen=True)
class ShapeParams:
    """Identity geometry: mode coefficients (M,) and per-vertex asymmetry (V, 3) in mm,
    both already scaled by ``geometry_strength``."""

    coefficients: np.ndarray
    asymmetry: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"coefficients": self.coefficients, "asymmetry": self.asymmetry}


def sample_shape_params(seed: int, identity: int, strength: float) -> ShapeParams:
    """Identity shape parameters; a pure function of (seed, identity) and the strength."""
    rng = np.random.default_rng([seed, identity, TAG_SHAPE])
    z = np.clip(rng.standard_normal(len(IDENTITY_MODE_NAMES)), -2.5, 2.5)
    asym = np.clip(rng.standard_normal((NUM_VERTICES, 3)), -2.5, 2.5) * ASYMMETRY_MM
    return ShapeParams(coefficients=strength * z, asymmetry=strength * asym)


@dataclass(frozen=True)
class SceneParams:
    """Everything an image draws besides its identity.

    yaw, pitch, roll: degrees (see :func:`~.shape.rotation_matrix`).
    expression: (E,) coefficients of ``EXPRESSION_MODE_NAMES``.
    scale: relative face scale (1 = reference framing). shift: (2,) centre shift in pixels.
    light: (3,) unit vector towards the light in the camera frame (x right, y down, z to
        the camera); ambient, diffuse: shading = ambient + diffuse * max(0, n · light).
    tint: (3,) RGB gain of the light.
    background: kind; colours: (3, 3) RGB colours used by the background; angle: gradient
        direction in radians.
    blur_sigma: Gaussian blur sd in pixels; noise_sigma: pixel noise sd in 0..255 units.
    """

    yaw: float
    pitch: float
    roll: float
    expression: np.ndarray
    scale: float
    shift: np.ndarray
    light: np.ndarray
    ambient: float
    diffuse: float
    tint: np.ndarray
    background: str
    colours: np.ndarray
    angle: float
    blur_sigma: float
    noise_sigma: float


def _pose(u: float, lo: float, hi: float, distribution: str) -> float:
    if hi == lo:
        return lo
    if distribution == "uniform":
        return lo + u * (hi - lo)
    mid, sd = 0.5 * (lo + hi), 0.25 * (hi - lo)
    a, b = _NORMAL.cdf((lo - mid) / sd), _NORMAL.cdf((hi - mid) / sd)
    p = min(max(a + u * (b - a), 1e-12), 1 - 1e-12)
    return float(np.clip(mid + sd * _NORMAL.inv_cdf(p), lo, hi))


def sample_scene(seed: int, identity: int, image: int, knobs: Knobs, image_size: int):
    """Image parameters; a pure function of (seed, identity, image), the knobs and the size."""
    rng = np.random.default_rng([seed, identity, image, TAG_SCENE])
    u = rng.random(16)
    z = rng.standard_normal(12)
    yaw = _pose(u[0], *knobs.yaw_range, knobs.pose_distribution)
    pitch = _pose(u[1], *knobs.pitch_range, knobs.pose_distribution)
    roll = _pose(u[2], *knobs.roll_range, knobs.pose_distribution)
    e = knobs.expression_strength
    raw = {
        "smile": np.clip(0.1 + 0.45 * z[0], -0.3, 1.2),
        "mouth_open": np.clip(-0.15 + 0.4 * z[1], 0.0, 1.0),
        "brow_raise": np.clip(0.4 * z[2], -0.6, 1.0),
        "frown": np.clip(0.35 * z[3], 0.0, 1.0),
        "squint": np.clip(0.3 * z[4], 0.0, 0.8),
    }
    expression = e * np.array([raw[n] for n in EXPRESSION_MODE_NAMES])
    scale = float(np.exp(knobs.scale_jitter * np.clip(z[5], -2.5, 2.5)))
    shift = knobs.shift_jitter * image_size * np.clip(z[6:8], -2.5, 2.5)
    azimuth = np.deg2rad(-70.0 + 140.0 * u[3])
    elevation = np.deg2rad(-15.0 + 65.0 * u[4])
    flat = np.cos(elevation)
    light = np.array([np.sin(azimuth) * flat, -np.sin(elevation), np.cos(azimuth) * flat])
    lighting = knobs.lighting
    diffuse = lighting * (0.45 + 0.4 * u[5])
    ambient = 1.0 - 0.55 * diffuse
    gain = 1.0 + lighting * 0.12 * np.clip(z[8], -2.5, 2.5)
    tint = gain * (1.0 + lighting * 0.05 * np.clip(z[9:12], -2.5, 2.5))
    grey = 25.0 + 200.0 * rng.random((3, 1))
    colours = np.clip(grey + 28.0 * rng.standard_normal((3, 3)), 0.0, 255.0).astype(np.float32)
    return SceneParams(
        yaw=float(yaw),
        pitch=float(pitch),
        roll=float(roll),
        expression=expression,
        scale=scale,
        shift=shift,
        light=light,
        ambient=float(ambient),
        diffuse=float(diffuse),
        tint=tint.astype(np.float32),
        background=knobs.background,
        colours=colours,
        angle=float(2.0 * np.pi * u[6]),
        blur_sigma=float(knobs.blur * (0.25 + 0.75 * u[7]) * image_size / 112.0),
        noise_sigma=float(knobs.noise * 255.0 * (0.25 + 0.75 * u[8])),
    )


def pixel_rng(seed: int, identity: int, image: int) -> np.random.Generator:
    """The stream for per-pixel randomness (background clutter, sensor noise)."""
    return np.random.default_rng([seed, identity, image, TAG_PIXELS])


def annotation_error(
    seed: int, identity: int, image: int, knobs: Knobs, image_size: int, num_landmarks: int
) -> np.ndarray:
    """(num_landmarks, 2) float32 error, in pixels, added to an image's landmark labels:
    i.i.d. normal with sd ``knobs.landmark_noise * image_size / 112`` (zeros at 0)."""
    sd = knobs.landmark_noise * image_size / 112.0
    if sd == 0:
        return np.zeros((num_landmarks, 2), np.float32)
    rng = np.random.default_rng([seed, identity, image, TAG_ANNOTATION])
    return rng.normal(0.0, sd, (num_landmarks, 2)).astype(np.float32)
