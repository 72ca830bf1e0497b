"""Preview pictures of SynthFaces: an identities × poses grid and the LMK84 layout figure.

    python -m balanced_align.data.synthfaces.preview --out docs/synthfaces_preview.png \
        --layout docs/lmk84_layout.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from balanced_align.core.schema import LMK84

from .dataset import SynthFaces

_IBUG_COLOUR = (40, 230, 60)
_EXTRA_COLOUR = (255, 70, 200)
_MAX_PNG_BYTES = 300_000


def _draw_points(image: np.ndarray, landmarks: np.ndarray, radius: float = 0.7) -> None:
    for i, (x, y) in enumerate(landmarks):
        colour = _IBUG_COLOUR if i < 68 else _EXTRA_COLOUR
        centre = (round((x - 0.5) * 16), round((y - 0.5) * 16))
        cv2.circle(image, centre, round(radius * 16), colour, -1, cv2.LINE_AA, 4)


def _save_png(path: str | Path, image: np.ndarray) -> Path:
    """Save RGB uint8 as an optimised PNG; fall back to a 256-colour palette if too large."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(image)
    pil.save(path, optimize=True)
    if path.stat().st_size > _MAX_PNG_BYTES:
        pil.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def preview_grid(
    num_identities: int = 6,
    yaws: Sequence[float] = (-75, -45, -20, 0, 20, 45, 75),
    image_size: int = 112,
    seed: int = 0,
    draw_landmarks: bool = True,
    **knobs,
) -> np.ndarray:
    """(rows·S, cols·S, 3) uint8 RGB grid: identity c in row c, image c·len(yaws)+j at yaw j.

    Everything but the yaw (pitch, roll, expression, light, background) is drawn as usual.
    """
    rows = []
    for c in range(num_identities):
        tiles = []
        for j, yaw in enumerate(yaws):
            ds = SynthFaces(num_identities, 1, image_size, seed, yaw_range=(yaw, yaw), **knobs)
            rec = ds.render(c, j)
            tile = rec.image.copy()
            if draw_landmarks:
                _draw_points(tile, rec.landmarks)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)


def save_preview(
    path: str | Path,
    num_identities: int = 6,
    yaws: Sequence[float] = (-75, -45, -20, 0, 20, 45, 75),
    image_size: int = 112,
    seed: int = 0,
    draw_landmarks: bool = True,
    **knobs,
) -> Path:
    """Save :func:`preview_grid` as a PNG (identities in rows, yaws in columns)."""
    grid = preview_grid(num_identities, yaws, image_size, seed, draw_landmarks, **knobs)
    return _save_png(path, grid)


def layout_figure(image_size: int = 640, seed: int = 0) -> np.ndarray:
    """The 84-point layout: a frontal mean face with every index, plus the extra points' names."""
    ds = SynthFaces(
        1, 1, image_size, seed, geometry_strength=0.0, texture_strength=0.0, yaw_range=(0, 0),
        pitch_range=(0, 0), roll_range=(0, 0), expression_strength=0.0, scale_jitter=0.0,
        shift_jitter=0.0, lighting=0.5, background="flat", blur=0.0, noise=0.0,
    )  # fmt: skip
    rec = ds[0]
    face = (0.55 * rec.image + 0.45 * 255).astype(np.uint8)  # paler, so labels stand out
    _draw_points(face, rec.landmarks, radius=2)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = image_size / 1900
    for i, (x, y) in enumerate(rec.landmarks):
        colour = (0, 90, 0) if i < 68 else (150, 0, 110)
        org = (int(x + 3), int(y - 3))
        cv2.putText(face, str(i), org, font, scale, colour, 1, cv2.LINE_AA)
    panel = np.full((image_size, int(image_size * 0.5), 3), 255, np.uint8)
    lines = ["LMK84 = iBUG-68 (0-67, green)", "+ 16 extra points (pink):", ""]
    lines += [f"{68 + i}: {name}" for i, name in enumerate(LMK84.point_names[68:])]
    lines += ["", "left/right = smaller/larger x", "in the image of a frontal face"]
    step = image_size / (len(lines) + 2)
    for k, text in enumerate(lines):
        org = (10, int(step * (k + 1.5)))
        cv2.putText(panel, text, org, font, image_size / 1500, (30, 30, 30), 1, cv2.LINE_AA)
    return np.concatenate([face, panel], 1)


def save_layout(path: str | Path, image_size: int = 640, seed: int = 0) -> Path:
    """Save :func:`layout_figure` as a PNG."""
    return _save_png(path, layout_figure(image_size, seed))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write SynthFaces preview pictures.")
    parser.add_argument("--out", default="docs/synthfaces_preview.png", help="preview grid PNG")
    parser.add_argument("--layout", default=None, help="also write the LMK84 layout PNG here")
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--yaws", type=float, nargs="+", default=[-75, -45, -20, 0, 20, 45, 75])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-landmarks", action="store_true")
    args = parser.parse_args(argv)
    out = save_preview(
        args.out, args.identities, args.yaws, args.size, args.seed, not args.no_landmarks
    )
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    if args.layout:
        lay = save_layout(args.layout, seed=args.seed)
        print(f"wrote {lay} ({lay.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
