"""Batched least-squares estimation of similarity and affine transforms from point pairs.

Both return (B, 2, 3) matrices [M | t] mapping ``source`` points to ``target`` points,
minimising Σₚ wₚ ‖M sₚ + t − tₚ‖². Points are (B, P, 2) or (P, 2), any frame.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import expand_points
from .precision import full_precision


def _prepare(source: Tensor, target: Tensor, weights: Tensor | None):
    if source.shape[-2:] != target.shape[-2:] or source.shape[-1] != 2:
        raise ValueError(
            f"source and target must both be (B, P, 2) or (P, 2), got "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    batch = max(
        source.shape[0] if source.dim() == 3 else 1, target.shape[0] if target.dim() == 3 else 1
    )
    source = expand_points(source, batch).double()
    target = expand_points(target, batch).double()
    if weights is None:
        weights = torch.ones(source.shape[:2], dtype=torch.float64, device=source.device)
    else:
        weights = weights.double().expand(source.shape[:2])
    weights = weights / weights.sum(-1, keepdim=True)
    return source, target, weights


@full_precision
def estimate_similarity(source: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Rotation, uniform scale and translation (4 dof, no reflection) by Umeyama's method.

    Needs P ≥ 2 non-coincident points. Returns (B, 2, 3) in the dtype of ``source``.
    """
    dtype = source.dtype
    source, target, w = _prepare(source, target, weights)
    if source.shape[1] < 2:
        raise ValueError("estimate_similarity needs at least 2 point pairs")
    mu_s = (w.unsqueeze(-1) * source).sum(1)
    mu_t = (w.unsqueeze(-1) * target).sum(1)
    src = source - mu_s.unsqueeze(1)
    tgt = target - mu_t.unsqueeze(1)
    covariance = (w.unsqueeze(-1) * tgt).transpose(1, 2) @ src  # (B, 2, 2)
    u, singular, vh = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.stack([torch.ones_like(sign), sign], dim=-1)
    rotation = u @ torch.diag_embed(d) @ vh
    variance = (w * (src * src).sum(-1)).sum(-1)
    scale = (singular * d).sum(-1) / variance
    linear = scale.view(-1, 1, 1) * rotation
    translation = mu_t - (linear @ mu_s.unsqueeze(-1)).squeeze(-1)
    return torch.cat([linear, translation.unsqueeze(-1)], dim=-1).to(dtype)


@full_precision
def estimate_affine(source: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """General affine (6 dof) by weighted linear least squares. Needs P ≥ 3 non-collinear points."""
    dtype = source.dtype
    source, target, w = _prepare(source, target, weights)
    if source.shape[1] < 3:
        raise ValueError("estimate_affine needs at least 3 point pairs")
    design = torch.cat([source, torch.ones_like(source[..., :1])], dim=-1)  # (B, P, 3)
    root_w = w.sqrt().unsqueeze(-1)
    solution = torch.linalg.lstsq(root_w * design, root_w * target).solution  # (B, 3, 2)
    return solution.transpose(1, 2).to(dtype)


def apply_affine(matrix: Tensor, points: Tensor) -> Tensor:
    """Apply (B, 2, 3) matrices to points (B, P, 2) or (P, 2) -> (B, P, 2)."""
    points = expand_points(points, matrix.shape[0]).to(matrix.dtype)
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, :, 2].unsqueeze(1)
