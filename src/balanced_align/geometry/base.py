"""The interface shared by every transform family an STN can drive.

A family maps points of the *aligned* (output) frame to the *source* (input) frame,
f: aligned -> source, all in normalised coordinates (docs/design.md §2). This is the direction
``grid_sample`` needs: the sampling grid holds, for each output pixel p, the source point f(p).

Parameters of one transform have shape ``family.param_shape``; a batch has shape
(B, *param_shape). LocNet predicts ``family.num_params`` numbers per image which are
reshaped to (B, *param_shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class InversePoints:
    """Result of inverting a warp at given source points.

    points: (B, P, 2) aligned-frame points y with f(y) ≈ x.
    converged: (B, P) bool; False where the solver did not reach its tolerance
        (always True for the exact inverses of affine and projective maps, except where a
        projective map sends the point to infinity).
    folded: (B, P) bool or None; True where the warp folds over at the solution
        (det ∂f/∂y ≤ 0), so the point may have other preimages. None for families that
        cannot fold.
    """

    points: Tensor
    converged: Tensor
    folded: Tensor | None = None

    @property
    def num_failed(self) -> int:
        return int((~self.converged).sum())

    @property
    def num_folded(self) -> int:
        return 0 if self.folded is None else int(self.folded.sum())


class TransformFamily(nn.Module):
    """Abstract base of :class:`Affine`, :class:`Projective` and :class:`ThinPlateSpline`."""

    #: shape of one transform's parameters
    param_shape: tuple[int, ...]

    @property
    def num_params(self) -> int:
        n = 1
        for d in self.param_shape:
            n *= d
        return n

    def identity_params(self) -> Tensor:
        """Parameters of the identity warp, shape ``param_shape`` (float32)."""
        raise NotImplementedError

    def grid(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        """Sampling grid (B, H, W, 2) in normalised (x, y) for an output of ``size`` = (H, W)."""
        raise NotImplementedError

    def warp_points(self, params: Tensor, points: Tensor) -> Tensor:
        """f(points): aligned -> source. points (B, P, 2) or (P, 2) -> (B, P, 2)."""
        raise NotImplementedError

    def inverse_points(
        self, params: Tensor, points: Tensor, initial: Tensor | None = None
    ) -> InversePoints:
        """f⁻¹(points): source -> aligned. points (B, P, 2) or (P, 2).

        ``initial`` (same shape) is a starting guess for iterative inverses.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"param_shape={self.param_shape}"


def expand_points(points: Tensor, batch: int) -> Tensor:
    """Broadcast (P, 2) points to (B, P, 2); pass (B, P, 2) through."""
    if points.dim() == 2:
        return points.unsqueeze(0).expand(batch, -1, -1)
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (P, 2) or (B, P, 2), got {tuple(points.shape)}")
    return points


def sample(tensor: Tensor, grid: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Bilinear ``grid_sample`` with the project's convention (align_corners=False).

    Samples in at least float32 (a bf16 grid is off by ~0.2 px at 112) and returns the
    tensor's dtype and memory format: ``grid_sample`` always returns NCHW, so a channels-last
    (B, C, H, W) tensor gets a channels-last result, which the next channels-last convolution
    would otherwise convert itself, more slowly (benchmarks/bench_step.py).
    """
    dtype = torch.promote_types(tensor.dtype, torch.float32)
    out = nn.functional.grid_sample(
        tensor.to(dtype),
        grid.to(dtype),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=False,
    )
    if tensor.dim() == 4 and _is_channels_last(tensor):
        out = out.contiguous(memory_format=torch.channels_last)
    return out.to(tensor.dtype)


def _is_channels_last(tensor: Tensor) -> bool:
    """Strictly channels-last (B, C, H, W): not also plain contiguous (e.g. C = 1 or 1 × 1)."""
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


__all__ = ["InversePoints", "TransformFamily", "expand_points", "sample"]
