"""Projective (8 dof) and affine (6 dof) warps, aligned -> source in normalised coordinates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import InversePoints, TransformFamily, expand_points
from .coords import normalized_meshgrid
from .linalg import inverse_or_nan, solve2x2
from .precision import full_precision

# A point whose homogeneous w is this close to 0 maps to infinity: reported as not converged.
_MIN_W = 1e-8
# The forward warp (grid, warp_points) divides by w with |w| held at least this far from 0: a
# point near the horizon of a learned homography then maps to numerator / _MIN_FORWARD_W (on
# the exact side; outside the image unless the numerator is below 1e-2) instead of to ±inf,
# and its gradient through w is cut rather than exploding. Exact wherever |w| >= 1e-2. The
# exact inverse (inverse_points, for ANME) is not clamped.
_MIN_FORWARD_W = 1e-2


def _homogeneous_apply(matrix: Tensor, points: Tensor, min_w: float = 0.0) -> tuple[Tensor, Tensor]:
    """Apply (B, 3, 3) to (B, P, 2): returns the dehomogenised points and w (B, P).

    ``min_w > 0`` divides by w with its magnitude clamped to at least ``min_w`` (sign kept;
    w = 0 counts as positive).
    """
    ones = torch.ones_like(points[..., :1])
    mapped = torch.cat([points, ones], dim=-1) @ matrix.transpose(1, 2)
    w = mapped[..., 2]
    divisor = w
    if min_w > 0:
        divisor = torch.where(w >= 0, w.clamp(min=min_w), w.clamp(max=-min_w))
    return mapped[..., :2] / divisor.unsqueeze(-1), w


class Projective(TransformFamily):
    """Homography with h₃₃ = 1: params (8,) = [h₁₁ h₁₂ h₁₃ h₂₁ h₂₂ h₂₃ h₃₁ h₃₂]."""

    param_shape = (8,)

    def identity_params(self) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def matrix(self, params: Tensor) -> Tensor:
        """(B, 8) -> (B, 3, 3)."""
        if params.dim() != 2 or params.shape[1] != 8:
            raise ValueError(f"projective params must be (B, 8), got {tuple(params.shape)}")
        one = torch.ones_like(params[:, :1])
        return torch.cat([params, one], dim=1).view(-1, 3, 3)

    @full_precision
    def grid(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        height, width = size
        pixels = normalized_meshgrid(size, device=params.device, dtype=params.dtype)
        mapped, _ = _homogeneous_apply(self.matrix(params), pixels.view(1, -1, 2), _MIN_FORWARD_W)
        return mapped.view(-1, height, width, 2)

    @full_precision
    def warp_points(self, params: Tensor, points: Tensor) -> Tensor:
        points = expand_points(points, params.shape[0]).to(params.dtype)
        return _homogeneous_apply(self.matrix(params), points, _MIN_FORWARD_W)[0]

    @torch.no_grad()
    @full_precision
    def inverse_points(
        self, params: Tensor, points: Tensor, initial: Tensor | None = None
    ) -> InversePoints:
        """Exact inverse through the inverse matrix (float64); ``initial`` is not needed."""
        inverse = inverse_or_nan(self.matrix(params.double()))
        points = expand_points(points, params.shape[0]).double()
        mapped, w = _homogeneous_apply(inverse, points)
        converged = (w.abs() > _MIN_W) & torch.isfinite(mapped).all(-1)
        return InversePoints(points=mapped.to(params.dtype), converged=converged)


class Affine(TransformFamily):
    """Affine map p ↦ M p + t with params (2, 3) = [M | t]."""

    param_shape = (2, 3)

    def identity_params(self) -> Tensor:
        return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    @staticmethod
    def _check(params: Tensor) -> None:
        if params.dim() != 3 or tuple(params.shape[1:]) != (2, 3):
            raise ValueError(f"affine params must be (B, 2, 3), got {tuple(params.shape)}")

    @full_precision
    def grid(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        # affine_grid with align_corners=False uses exactly the frame of docs/design.md §2.
        self._check(params)
        return F.affine_grid(params, [params.shape[0], 1, *size], align_corners=False)

    @full_precision
    def warp_points(self, params: Tensor, points: Tensor) -> Tensor:
        self._check(params)
        points = expand_points(points, params.shape[0]).to(params.dtype)
        return points @ params[:, :, :2].transpose(1, 2) + params[:, :, 2].unsqueeze(1)

    @torch.no_grad()
    @full_precision
    def inverse_points(
        self, params: Tensor, points: Tensor, initial: Tensor | None = None
    ) -> InversePoints:
        """Exact inverse x ↦ M⁻¹ (x − t), in float64; ``initial`` is not needed."""
        self._check(params)
        params64 = params.double()
        points = expand_points(points, params.shape[0]).double()
        shifted = points - params64[:, :, 2].unsqueeze(1)
        mapped, _ = solve2x2(params64[:, None, :, :2], shifted)
        converged = torch.isfinite(mapped).all(-1)
        return InversePoints(points=mapped.to(params.dtype), converged=converged)
