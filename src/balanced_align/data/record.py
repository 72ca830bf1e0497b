"""One face sample as every data source returns it (docs/design.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FaceRecord:
    """A face image with its annotations.

    image: (H, W, 3) uint8 RGB.
    landmarks: (S, 2) float32 in continuous pixel coordinates (corner origin, docs/design.md §2),
        or None for sources without landmarks.
    label: identity index (int, >= 0).
    yaw, pitch, roll: head pose in degrees where known (NaN otherwise). Positive yaw turns
        the face towards the image's right (the nose moves to larger x).
    source: where it came from (file path, or ``synthfaces:seed/identity/index``).
    meta: anything else a source wants to keep.
    """

    image: np.ndarray
    landmarks: np.ndarray | None
    label: int
    yaw: float = float("nan")
    pitch: float = float("nan")
    roll: float = float("nan")
    source: str = ""
    meta: dict = field(default_factory=dict)
