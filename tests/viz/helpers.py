"""Tiny models and inputs for the figure tests."""

from __future__ import annotations

import math

import torch

from balanced_align.module import BalancedAlignModule

SIZE = 32


def face_template(num_points: int = 84) -> torch.Tensor:
    """(S, 2) distinct points inside [−0.7, 0.7]² (a spiral), normalised."""
    k = torch.arange(num_points, dtype=torch.float32)
    radius = 0.15 + 0.55 * k / num_points
    angle = k * (2 * math.pi * 0.382)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def tiny_module(method: str = "tps", location: str = "fmap", grid: int = 4) -> BalancedAlignModule:
    """A fresh (identity-initialised) BalancedAlignModule at 32×32."""
    torch.manual_seed(0)
    align = {
        "method": method,
        "tps_grid_size": grid,
        "location": location,
        "locnet_input_size": 16,
        "locnet_width": 0.25,
    }
    return BalancedAlignModule(
        num_classes=4,
        model={"width": 0.125, "input_size": SIZE, "embedding_dim": 16},
        align=align,
        loss={"lambda": 0.0 if method == "none" else 3.0},
        template_init=None if method == "none" else face_template(),
    )


def batch(n: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images in [−1, 1], landmarks near the template, yaw; like a data-module batch."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1
    landmarks = face_template() + 0.05 * torch.randn(n, 84, 2, generator=g)
    return {
        "image": images,
        "landmarks": landmarks,
        "has_landmarks": torch.ones(n, dtype=torch.bool),
        "yaw": torch.tensor([0.0, 30.0, -60.0][:n]),
    }
