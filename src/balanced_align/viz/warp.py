"""The STN's sampling grid drawn over the source face.

An STN warp f maps aligned → source (docs/design.md §2): the aligned image's pixel p is read at f(p)
in the source. Drawing f along the lines of a regular grid of the aligned frame shows where
each aligned-frame grid line comes from in the face: an identity warp draws the straight,
evenly spaced grid; a warp that zooms onto the face draws a smaller grid inside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from balanced_align.geometry.base import TransformFamily
from balanced_align.viz.common import (
    LANDMARK_COLOUR,
    alignment_name,
    check_images,
    check_landmarks,
    device_of,
    evaluating,
    new_figure,
    recognizer_of,
    show_image,
    to_display,
    to_pixels,
)
from balanced_align.viz.faces import predict_params

HORIZONTAL_COLOUR = "#00e5ff"
VERTICAL_COLOUR = "#ffd60a"


def aligned_grid_lines(num_lines: int = 9, points_per_line: int = 64) -> Tensor:
    """Points along a regular grid of the aligned frame, (2·num_lines, points_per_line, 2).

    Lines 0 … num_lines − 1 are horizontal (v = const, from v = −1 at the top to +1 at the
    bottom), the next num_lines vertical (u = const, left to right); each runs over [−1, 1].
    """
    if int(num_lines) < 2 or int(points_per_line) < 2:
        raise ValueError(
            f"num_lines and points_per_line must be >= 2, got {num_lines} and {points_per_line}"
        )
    ticks = torch.linspace(-1.0, 1.0, int(num_lines))
    along = torch.linspace(-1.0, 1.0, int(points_per_line))
    fixed = ticks[:, None].expand(-1, along.numel())
    running = along[None, :].expand(ticks.numel(), -1)
    horizontal = torch.stack([running, fixed], dim=-1)
    vertical = torch.stack([fixed, running], dim=-1)
    return torch.cat([horizontal, vertical], dim=0)


def warp_grid_lines(
    family: TransformFamily,
    params: Tensor,
    size: tuple[int, int],
    num_lines: int = 9,
    points_per_line: int = 64,
) -> np.ndarray:
    """Where the aligned-frame grid lines come from: (B, 2·num_lines, points_per_line, 2).

    ``params`` (B, *param_shape) of ``family``; the result is in pixel coordinates of a
    source image of ``size`` = (H, W) (corner origin), lines ordered as in
    :func:`aligned_grid_lines`.
    """
    lines = aligned_grid_lines(num_lines, points_per_line).to(params.device)
    flat = lines.reshape(-1, 2)
    with torch.no_grad():
        source = family.warp_points(params.float(), flat)
    source = source.reshape(params.shape[0], *lines.shape)
    return to_pixels(source, size)


def warp_grid_figure(
    module: nn.Module,
    images: Tensor,
    landmarks: Tensor | None = None,
    *,
    params: Tensor | None = None,
    num_lines: int = 9,
    points_per_line: int = 64,
    titles: Sequence[str] | None = None,
    max_faces: int = 8,
) -> Figure:
    """The STN's sampling grid over each source face.

    Args:
        module: a BalancedAlignModule (or an AlignedRecognizer) with an STN.
        images: (B, 3, H, W) in [−1, 1]; the first ``max_faces`` are drawn.
        landmarks: optional (B, S, 2) normalised source landmarks, drawn as dots.
        params: optional (B, *param_shape) warp parameters instead of LocNet's.
        num_lines, points_per_line: the aligned-frame grid (see :func:`aligned_grid_lines`).

    Returns a Figure with one row of n = min(B, max_faces) axes; axis i holds exactly
    2·num_lines ``Line2D`` objects, the warped grid lines in source pixel coordinates.
    """
    images = check_images(images)
    landmarks = check_landmarks(landmarks, images.shape[0])
    recognizer = recognizer_of(module)
    if recognizer.warper is None:
        raise ValueError(
            "warp_grid_figure: the model has no STN or landmark alignment (align.method=none)"
        )
    count = min(int(images.shape[0]), int(max_faces))
    images = images[:count]
    size = (int(images.shape[-2]), int(images.shape[-1]))
    with evaluating(module):
        x = images.to(device_of(module), torch.float32)
        lmk = None if landmarks is None else landmarks[:count].to(x.device).float()
        warp = predict_params(module, x, None if params is None else params[:count], lmk)
        lines = warp_grid_lines(recognizer.family, warp, size, num_lines, points_per_line)

    fig, axes = new_figure(1, count, panel=(2.0, 2.15))
    faces = to_display(images)
    height, width = size
    for i in range(count):
        ax = axes[0, i]
        show_image(ax, faces[i])
        for k, line in enumerate(lines[i]):
            horizontal = k < num_lines
            edge = k % num_lines in (0, num_lines - 1)
            ax.plot(
                line[:, 0],
                line[:, 1],
                color=HORIZONTAL_COLOUR if horizontal else VERTICAL_COLOUR,
                lw=1.4 if edge else 0.8,
                alpha=0.9,
            )
        if landmarks is not None:
            xy = to_pixels(landmarks[i], size)
            ax.scatter(xy[:, 0], xy[:, 1], s=4, c=LANDMARK_COLOUR, linewidths=0, zorder=3)
        # show the whole grid, but at most one image size beyond each edge (diverged warps)
        extent = np.array([width, height], dtype=np.float64)
        low = np.clip(lines[i].reshape(-1, 2).min(0), -extent, 0.0)
        high = np.clip(lines[i].reshape(-1, 2).max(0), extent, 2 * extent)
        pad = 0.03 * max(width, height)
        ax.set_xlim(low[0] - pad, high[0] + pad)
        ax.set_ylim(high[1] + pad, low[1] - pad)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=9)
    fig.suptitle(f"sampling grid of {alignment_name(module)} over the source face", fontsize=10)
    return fig


__all__ = ["aligned_grid_lines", "warp_grid_figure", "warp_grid_lines"]
