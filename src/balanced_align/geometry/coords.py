"""Coordinate frames (docs/design.md §2).

Pixel frame: the image's top-left *corner* is (0, 0); pixel (j, i) has its centre at
(j + 0.5, i + 0.5); x to the right, y down.
Normalised frame: u = 2x/W - 1, v = 2y/H - 1, which is the frame of
``grid_sample(..., align_corners=False)``: u = -1 is the left edge of the left pixel.

All functions take points as (..., P, 2) ordered (x, y) and sizes as (H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _scale(size: tuple[int, int], like: Tensor) -> Tensor:
    height, width = size
    return torch.tensor([width, height], dtype=like.dtype, device=like.device)


def pixel_to_normalized(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Map pixel coordinates (..., P, 2) of an image of ``size`` = (H, W) to [-1, 1]."""
    return points * (2.0 / _scale(size, points)) - 1.0


def normalized_to_pixel(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`pixel_to_normalized`."""
    return (points + 1.0) * (_scale(size, points) / 2.0)


def normalized_meshgrid(
    size: tuple[int, int], device=None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Normalised coordinates of every pixel centre of an (H, W) image, shape (H, W, 2)."""
    height, width = size
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (2.0 / width) - 1.0
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (2.0 / height) - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)
