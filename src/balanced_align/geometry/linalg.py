"""Small batched solves that never raise on singular matrices (inverses of learned warps)."""

from __future__ import annotations

import torch
from torch import Tensor

#: |det| below this (relative to the matrix's scale) counts as singular
_RELATIVE_EPS = 1e-12


def solve2x2(matrix: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``matrix @ x = rhs`` for (..., 2, 2) matrices and (..., 2) right-hand sides.

    Closed form (adjugate / determinant). Where the matrix is singular or not finite the
    solution is NaN and ``ok`` is False, instead of raising like ``torch.linalg.solve``.
    Returns (x (..., 2), ok (...,) bool).
    """
    a, b = matrix[..., 0, 0], matrix[..., 0, 1]
    c, d = matrix[..., 1, 0], matrix[..., 1, 1]
    det = a * d - b * c
    scale = matrix.abs().amax(dim=(-2, -1)) ** 2
    ok = torch.isfinite(det) & (det.abs() > _RELATIVE_EPS * scale)
    safe = torch.where(ok, det, torch.ones_like(det))
    x0 = (d * rhs[..., 0] - b * rhs[..., 1]) / safe
    x1 = (a * rhs[..., 1] - c * rhs[..., 0]) / safe
    solution = torch.stack([x0, x1], dim=-1)
    nan = torch.full_like(solution, float("nan"))
    return torch.where(ok.unsqueeze(-1), solution, nan), ok


def inverse_or_nan(matrix: Tensor) -> Tensor:
    """Batched inverse (..., n, n); NaN where singular (``torch.linalg.inv`` would raise)."""
    inverse, info = torch.linalg.inv_ex(matrix)
    bad = (info != 0) | ~torch.isfinite(inverse).flatten(-2).all(-1)
    return torch.where(bad[..., None, None], torch.full_like(inverse, float("nan")), inverse)
