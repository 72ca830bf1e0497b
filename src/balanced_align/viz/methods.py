"""The same faces aligned by several models, one row per model (paper Fig. 1 / 2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from balanced_align.viz.common import (
    LANDMARK_COLOUR,
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
from balanced_align.viz.faces import aligned_points, predict_params


def aligned_by_method_figure(
    modules: Mapping[str, nn.Module] | Iterable[tuple[str, nn.Module]],
    images: Tensor,
    landmarks: Tensor | None = None,
    *,
    titles: Sequence[str] | None = None,
    max_faces: int = 6,
) -> Figure:
    """Each face (first row) and its aligned version under each model (one row per model).

    Args:
        modules: row label → BalancedAlignModule (or AlignedRecognizer), in row order; a
            mapping or an iterable of (label, model) pairs. An iterable is consumed one model
            at a time (only the drawn arrays are kept), so a generator that loads checkpoints
            holds one model in memory at once. A model without alignment shows the input
            again. Each model's input size must be the images' size.
        images: (B, 3, H, W) in [−1, 1]; the first ``max_faces`` are drawn.
        landmarks: optional (B, S, 2) normalised source-frame landmarks: drawn on the inputs,
            and their aligned positions y = f⁻¹(x) (converged points only) on each aligned
            face. The Affine2D / FullAlign baselines need them to align at all.
        titles: optional per-face column titles (e.g. the yaw).

    Returns a Figure with (1 + number of models) × n axes, n = min(B, max_faces). Landmark
    scatters carry the gid "landmarks" (input row) and "aligned_landmarks" (model rows).
    """
    images = check_images(images)
    landmarks = check_landmarks(landmarks, images.shape[0])
    count = min(int(images.shape[0]), int(max_faces))
    images = images[:count]
    landmarks = None if landmarks is None else landmarks[:count].float()
    size = (int(images.shape[-2]), int(images.shape[-1]))

    pairs = modules.items() if isinstance(modules, Mapping) else modules
    rows = [("input", to_display(images), landmarks, None)]
    for name, module in pairs:
        rows.append((name, *_aligned_row(name, module, images, landmarks, size)))
    if len(rows) == 1:
        raise ValueError("modules: give at least one model")

    fig, axes = new_figure(len(rows), count, panel=(1.7, 1.75))
    for r, (name, shown, points, converged) in enumerate(rows):
        for i in range(count):
            ax = axes[r, i]
            show_image(ax, shown[i])
            if points is not None:
                xy = to_pixels(points[i], size)
                if converged is not None:
                    xy = xy[converged[i].cpu().numpy()]
                ax.scatter(
                    xy[:, 0],
                    xy[:, 1],
                    s=3,
                    c=LANDMARK_COLOUR,
                    linewidths=0,
                    gid="landmarks" if r == 0 else "aligned_landmarks",
                )
            ax.set_xlim(0, size[1])
            ax.set_ylim(size[0], 0)
            if r == 0 and titles is not None and i < len(titles):
                ax.set_title(str(titles[i]), fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig


def _aligned_row(name: str, module: nn.Module, images: Tensor, landmarks, size):
    """(display images, aligned landmarks or None, converged mask or None) of one model."""
    recognizer = recognizer_of(module)
    expected = tuple(int(v) for v in recognizer.stage0_size)
    if expected != size:
        raise ValueError(
            f"modules[{name!r}]: the model takes {expected[0]}×{expected[1]} images, the faces "
            f"are {size[0]}×{size[1]}"
        )
    with evaluating(module):
        device = device_of(module)
        x = images.to(device, torch.float32)
        lmk = None if landmarks is None else landmarks.to(device)
        warp = predict_params(module, x, None, lmk)
        if warp is None:  # no alignment: the input, its landmarks where they are
            return to_display(images), landmarks, None
        aligned = to_display(recognizer.aligned_image(x, warp))
        if lmk is None:
            return aligned, None, None
        points, converged = aligned_points(module, warp, lmk)
        return aligned, points.cpu(), converged.cpu()


__all__ = ["aligned_by_method_figure"]
