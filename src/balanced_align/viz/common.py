"""Shared drawing helpers: headless figures, tensors to pixels, the landmark layout.

Figures are built as bare :class:`matplotlib.figure.Figure` objects (no pyplot state), so
they render with the Agg canvas anywhere (``savefig``), display in notebooks, and never open
a window. Images are (B, C, H, W) tensors in [−1, 1]; points are normalised (x, y)
coordinates u = 2x/W − 1 (docs/design.md §2) and are drawn in pixel coordinates of the image with
its top-left *corner* at (0, 0), matching ``imshow(extent=(0, W, H, 0))``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

from balanced_align.core.schema import LandmarkSchema, get_schema, schema_for_count

#: colours used across the figures
LANDMARK_COLOUR = "#39ff14"
TEMPLATE_COLOUR = "#ff2d55"
FAILED_COLOUR = "#ffb000"

#: paper-style display names of the alignment methods
METHOD_NAMES = {
    "none": "None",
    "affine2d": "Affine2D",
    "fullalign": "FullAlign",
    "affine": "STN-Affine",
    "projective": "STN-Proj",
    "tps": "STN-TPS-Grid-{n}",
}


def method_name(method: str, tps_grid_size=None) -> str:
    """Display name of an alignment method: ``tps`` + 8 → ``STN-TPS-Grid-8``."""
    name = METHOD_NAMES.get(str(method), str(method))
    if "{n}" in name:
        n = "?" if tps_grid_size is None else int(tps_grid_size)
        name = name.format(n=n)
    return name


def new_figure(
    nrows: int, ncols: int, panel: tuple[float, float] = (2.0, 2.0), **subplot_kw
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with an (nrows, ncols) array of axes."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, subplot_kw=subplot_kw or None)
    return fig, axes


def to_display(images: Tensor) -> np.ndarray:
    """(B, C, H, W) in [−1, 1] → (B, H, W, 3) float in [0, 1] for ``imshow`` (C = 1 or 3)."""
    images = images.detach().float().cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return ((images.permute(0, 2, 3, 1).numpy() + 1.0) / 2.0).clip(0.0, 1.0)


def to_pixels(points: Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised (..., 2) points → pixel coordinates of an image of ``size`` = (H, W)."""
    height, width = size
    points = points.detach().float().cpu().numpy() if torch.is_tensor(points) else points
    return (np.asarray(points, dtype=np.float64) + 1.0) * np.array([width / 2.0, height / 2.0])


def show_image(ax: Axes, image: np.ndarray) -> None:
    """``imshow`` an (H, W, 3) image in the corner-origin pixel frame, without ticks."""
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def check_images(images, name: str = "images") -> Tensor:
    """Validate (B, C, H, W) images with C in {1, 3}; returns the tensor."""
    if not torch.is_tensor(images):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (B, 3, H, W) with B >= 1, got {tuple(images.shape)}"
        )
    return images


def check_landmarks(landmarks, batch: int, name: str = "landmarks") -> Tensor | None:
    """Validate optional (B, S, 2) normalised landmarks."""
    if landmarks is None:
        return None
    landmarks = torch.as_tensor(landmarks)
    if landmarks.dim() != 3 or landmarks.shape[-1] != 2 or landmarks.shape[0] != batch:
        raise ValueError(
            f"{name} must have shape ({batch}, S, 2) (normalised x, y), "
            f"got {tuple(landmarks.shape)}"
        )
    return landmarks


def recognizer_of(module: nn.Module):
    """The :class:`AlignedRecognizer` of a BalancedAlignModule (or the recognizer itself)."""
    recognizer = getattr(module, "recognizer", module)
    if not hasattr(recognizer, "aligned_image") or not hasattr(recognizer, "stn"):
        raise TypeError(
            f"module must be a BalancedAlignModule or an AlignedRecognizer, "
            f"got {type(module).__name__}"
        )
    return recognizer


def device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode and no grad for the duration; the previous mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def schema_of(module: nn.Module, num_points: int) -> LandmarkSchema | None:
    """The module's landmark schema (``module.schema``), else the one with ``num_points``."""
    schema = getattr(module, "schema", None)
    if schema is not None:
        schema = get_schema(schema)
        if schema.num_points == num_points:
            return schema
    try:
        return schema_for_count(num_points)
    except ValueError:
        return None


_GROUP = re.compile(r"^(.*)_(\d+)$")


def layout_groups(schema: LandmarkSchema | None) -> list[tuple[list[int], bool]]:
    """Polylines of the landmark layout: runs of points named ``<part>_<i>``.

    Returns (indices, closed) pairs, e.g. the jaw (open) and each eye (closed); points
    without a numbered name (pupils, the 84-point extras) belong to no line.
    """
    if schema is None or not schema.point_names:
        return []
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(schema.point_names):
        match = _GROUP.match(name)
        if match:
            groups.setdefault(match.group(1), []).append(index)
    return [
        (indices, "eye" in part or "mouth" in part)
        for part, indices in groups.items()
        if len(indices) >= 2
    ]


def draw_layout(ax: Axes, points: np.ndarray, schema, **line_kw) -> None:
    """Draw the layout polylines of (S, 2) ``points`` as thin lines (collections, not lines)."""
    from matplotlib.collections import LineCollection

    segments = []
    for indices, closed in layout_groups(schema):
        if max(indices) >= len(points):
            continue
        path = points[indices + indices[:1]] if closed else points[indices]
        segments.append(path)
    if segments:
        style = {"colors": "0.6", "linewidths": 0.8, "zorder": 1} | line_kw
        ax.add_collection(LineCollection(segments, **style))


def alignment_name(module: nn.Module) -> str:
    """``STN-TPS-Grid-8@fmap``-style name of the module's alignment (``None`` without one)."""
    recognizer = recognizer_of(module)
    aligner = getattr(recognizer, "aligner", None)
    if aligner is not None:  # a landmark baseline (Affine2D, FullAlign), not an STN
        return f"{method_name(aligner.method)}@{recognizer.location}"
    family = recognizer.family
    if family is None:
        return method_name("none")
    kind = type(family).__name__
    method = {"Affine": "affine", "Projective": "projective", "ThinPlateSpline": "tps"}.get(
        kind, kind
    )
    return f"{method_name(method, getattr(family, 'grid_size', None))}@{recognizer.location}"


__all__ = [
    "METHOD_NAMES",
    "alignment_name",
    "check_images",
    "check_landmarks",
    "device_of",
    "draw_layout",
    "evaluating",
    "layout_groups",
    "method_name",
    "new_figure",
    "recognizer_of",
    "schema_of",
    "show_image",
    "to_display",
    "to_pixels",
]
