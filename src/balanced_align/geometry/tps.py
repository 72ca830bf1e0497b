"""Thin-plate spline over fixed control points (an n×n grid), the fast way (docs/design.md §3).

The spline maps aligned (output) coordinates p to source coordinates:

    f(p) = a₀ + A p + Σₖ wₖ φ(‖p − cₖ‖²),   φ(q) = q log q  (= r² log r², φ(0) = 0)

with fixed control points cₖ on a regular n×n grid spanning [−1, 1]² (normalised
coordinates, docs/design.md §2) and predicted source positions sₖ = f(cₖ). Because c is fixed,
the spline coefficients are linear in s: [w; a] = L⁻¹ [s; 0] with
L = [[Φ, P], [Pᵀ, 0]], Φₖₗ = φ(‖cₖ − cₗ‖²), P = [1, cₖ]. L⁻¹ is computed once in
float64, and a sampling grid is one matmul ``G @ s`` with a design matrix
G = B_grid · L⁻¹[:, :K] cached per output size.

Parameters of one warp: ``source_points`` of shape (K, 2), K = n². The identity warp is
``source_points = control_points``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import InversePoints, TransformFamily, expand_points
from .coords import normalized_meshgrid
from .linalg import solve2x2
from .precision import full_precision

_EPS = 1e-12


def tps_kernel(points: Tensor, centres: Tensor) -> Tensor:
    """φ(‖p − c‖²) = q log q for points (..., P, 2) and centres (K, 2) -> (..., P, K).

    Safe at q = 0: value 0 and gradient 0 (the true limit of 2(p − c)(log q + 1)).
    """
    diff = points.unsqueeze(-2) - centres
    q = (diff * diff).sum(-1)
    positive = q > _EPS
    q_safe = torch.where(positive, q, torch.ones_like(q))
    return torch.where(positive, q_safe * torch.log(q_safe), torch.zeros_like(q))


def _design(points: Tensor, centres: Tensor) -> Tensor:
    """Rows [φ(‖p − c₁‖²) … φ(‖p − c_K‖²), 1, x, y] for points (..., P, 2) -> (..., P, K+3)."""
    ones = torch.ones_like(points[..., :1])
    return torch.cat([tps_kernel(points, centres), ones, points], dim=-1)


def regular_grid(grid_size: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """n×n control points on [−1, 1]², row-major (y outer, x inner), shape (n², 2) as (x, y)."""
    ticks = torch.linspace(-1.0, 1.0, grid_size, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)


class ThinPlateSpline(TransformFamily):
    """Bookstein TPS from aligned to source coordinates over fixed control points.

    Args:
        grid_size: n ≥ 2 for the regular n×n control grid on [−1, 1]² (K = n²); the paper's
            STN-TPS-Grid-n uses n = 2 and n = 8.
        control_points: instead of a grid, any K ≥ 3 fixed, distinct, non-collinear points
            (K, 2) in the aligned frame, e.g. a landmark template (FullAlign warps every face's
            landmarks exactly onto it).
    """

    def __init__(self, grid_size: int | None = None, control_points: Tensor | None = None) -> None:
        super().__init__()
        if (grid_size is None) == (control_points is None):
            raise ValueError("ThinPlateSpline needs exactly one of grid_size or control_points")
        if control_points is None:
            if not isinstance(grid_size, int) or grid_size < 2:
                raise ValueError(
                    f"ThinPlateSpline grid_size must be an integer >= 2, got {grid_size!r}"
                )
            centres = regular_grid(grid_size)
        else:
            centres = torch.as_tensor(control_points, dtype=torch.float64).detach().cpu()
            if centres.dim() != 2 or centres.shape[1] != 2 or centres.shape[0] < 3:
                raise ValueError(
                    f"control_points must be (K, 2) with K >= 3, got {tuple(centres.shape)}"
                )
            if not bool(torch.isfinite(centres).all()):
                raise ValueError("control_points contain NaN or infinite values")
        self.grid_size = grid_size
        k = centres.shape[0]
        system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
        system[:k, :k] = tps_kernel(centres, centres)
        system[:k, k] = 1.0
        system[:k, k + 1 :] = centres
        system[k, :k] = 1.0
        system[k + 1 :, :k] = centres.T
        if torch.linalg.matrix_rank(system) < k + 3:
            raise ValueError(
                "control_points are degenerate (coincident or all collinear): the TPS system "
                "is singular"
            )
        # Only the first K columns are ever used: the right-hand side is [s; 0].
        inverse = torch.linalg.inv(system)[:, :k].contiguous()
        self.register_buffer("control_points", centres.float(), persistent=False)
        self.register_buffer("_centres64", centres, persistent=False)
        self.register_buffer("_inverse64", inverse, persistent=False)
        self._design_cache: dict[tuple, Tensor] = {}
        self.param_shape = (k, 2)

    @property
    def num_control_points(self) -> int:
        return self.param_shape[0]

    def identity_params(self) -> Tensor:
        return self.control_points.clone()

    def _check(self, source_points: Tensor) -> None:
        if source_points.dim() != 3 or tuple(source_points.shape[1:]) != self.param_shape:
            raise ValueError(
                f"TPS source_points must be (B, {self.param_shape[0]}, 2), "
                f"got {tuple(source_points.shape)}"
            )

    def coefficients(self, source_points: Tensor) -> Tensor:
        """[w; a₀; aₓ; a_y] of shape (B, K+3, 2) for source points (B, K, 2)."""
        self._check(source_points)
        return self._inverse64.to(source_points.dtype) @ source_points

    def design_matrix(self, size: tuple[int, int], device, dtype: torch.dtype) -> Tensor:
        """G = B_grid · L⁻¹[:, :K] of shape (H·W, K) for an output of ``size``; cached."""
        key = (tuple(size), str(device), dtype)
        cached = self._design_cache.get(key)
        if cached is None:
            pixels = normalized_meshgrid(size, dtype=torch.float64).reshape(-1, 2)
            centres = self._centres64.cpu()
            cached = (_design(pixels, centres) @ self._inverse64.cpu()).to(device, dtype)
            self._design_cache[key] = cached
        return cached

    @full_precision
    def grid(self, source_points: Tensor, size: tuple[int, int]) -> Tensor:
        """Sampling grid (B, H, W, 2): one matmul of the cached design matrix with (B, K, 2).

        The batch is folded into the columns, (H·W, K) @ (K, B·2), so forward and backward are
        single matrix products; a broadcast ``design @ source_points`` would expand the design
        matrix to (B, H·W, K) and run a batched product (~50× slower on CPU at B = 64, 64²).
        """
        self._check(source_points)
        height, width = size
        batch, k, _ = source_points.shape
        design = self.design_matrix(size, source_points.device, source_points.dtype)
        columns = source_points.transpose(0, 1).reshape(k, batch * 2)
        grid = (design @ columns).view(height, width, batch, 2)
        return grid.permute(2, 0, 1, 3).contiguous()

    @full_precision
    def warp_points(self, source_points: Tensor, points: Tensor) -> Tensor:
        """f(points) for points (B, P, 2) or (P, 2) -> (B, P, 2); differentiable in both.

        ``source_points`` are the predicted source positions of the control points (B, K, 2).
        """
        # The kernel weights are large and cancel, so this evaluates in float64 (a few
        # hundred points per image: negligible cost) and returns the input dtype.
        dtype = source_points.dtype
        coefficients = self.coefficients(source_points.double())
        points = expand_points(points, source_points.shape[0]).double()
        return (_design(points, self._centres64) @ coefficients).to(dtype)

    @torch.no_grad()
    @full_precision
    def inverse_points(
        self,
        source_points: Tensor,
        points: Tensor,
        initial: Tensor | None = None,
        max_iterations: int = 50,
        tolerance: float = 1e-6,
    ) -> InversePoints:
        """Solve f(y) = x for y by damped Newton with the analytic Jacobian.

        Runs in float64. Each Newton step is halved (up to 10 times) until it lowers the
        residual, so the iteration cannot run away on strongly bent warps. A point counts as
        converged when ‖f(y) − x‖ < ``tolerance`` (normalised units). Where the warp folds
        over, x can have several preimages; the one found is reported with ``folded`` True
        (det ∂f/∂y ≤ 0 there).

        Args:
            source_points: (B, K, 2).
            points: (B, P, 2) or (P, 2) source-frame points x.
            initial: optional (B, P, 2) or (P, 2) starting points (e.g. the template points
                that the landmarks correspond to); default: the inverse of the affine part.
        Returns:
            InversePoints with points (B, P, 2) in the input dtype, converged and folded (B, P).
        """
        out_dtype = source_points.dtype
        coefficients = self.coefficients(source_points.double())
        k = self.num_control_points
        weights, offset, linear = coefficients[:, :k], coefficients[:, k], coefficients[:, k + 1 :]
        # linear[:, j, i] = ∂fᵢ/∂pⱼ of the affine part, so the matrix A (rows i) is its transpose.
        affine = linear.transpose(1, 2)
        batch = source_points.shape[0]
        target = expand_points(points, batch).double()
        parts = (weights, offset, affine)

        if initial is None:
            y, _ = solve2x2(affine.unsqueeze(1), target - offset.unsqueeze(1))
        else:
            y = expand_points(initial, batch).double()
        y = torch.nan_to_num(y.contiguous(), nan=0.0, posinf=0.0, neginf=0.0)
        # Newton runs per point (each point's trajectory depends on its own residual only),
        # so the points are flattened to N = B·P rows of one point each, and every
        # iteration works on the live rows alone: a row leaves when it has converged, or
        # when its line search failed (it keeps its y, so every later step would be the same
        # step and fail again).
        n_points = y.shape[1]
        rows = torch.arange(batch, device=y.device).repeat_interleave(n_points)
        y = y.reshape(-1, 1, 2)
        target = target.reshape(-1, 1, 2)
        residual, jacobian = self._residual_and_jacobian(y, target, *(p[rows] for p in parts))
        norm = residual.norm(dim=-1)
        live = (norm >= tolerance * 1e-3).squeeze(1)
        for _ in range(max_iterations):
            index = live.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            y_live, target_live, norm_live = y[index], target[index], norm[index]
            parts_live = tuple(part[rows[index]] for part in parts)  # each row's warp
            step, _ = solve2x2(jacobian[index], residual[index])  # NaN where singular: no step
            step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
            accepted = torch.zeros_like(norm_live, dtype=torch.bool)
            scale = 1.0
            for _ in range(11):
                candidate = y_live - scale * step
                cand_residual = self._residual_and_jacobian(
                    candidate, target_live, *parts_live, False
                )
                better = (cand_residual.norm(dim=-1) < norm_live) & ~accepted
                y_live = torch.where(better.unsqueeze(-1), candidate, y_live)
                accepted |= better
                if bool(accepted.all()):
                    break
                scale *= 0.5
            residual_live, jacobian_live = self._residual_and_jacobian(
                y_live, target_live, *parts_live
            )
            y[index], residual[index], jacobian[index] = y_live, residual_live, jacobian_live
            norm[index] = residual_live.norm(dim=-1)
            live[index] = (accepted & (norm[index] >= tolerance * 1e-3)).squeeze(1)
        y = y.reshape(batch, n_points, 2)
        norm = norm.reshape(batch, n_points)
        jacobian = jacobian.reshape(batch, n_points, 2, 2)
        converged = (norm < tolerance) & torch.isfinite(y).all(-1)
        folded = ~(torch.linalg.det(jacobian) > 0)
        return InversePoints(points=y.to(out_dtype), converged=converged, folded=folded)

    def _residual_and_jacobian(self, y, target, weights, offset, affine, with_jacobian=True):
        """f(y) − x (B, P, 2) and ∂f/∂y (B, P, 2, 2) in float64 (only f(y) − x if not
        ``with_jacobian``)."""
        centres = self._centres64
        diff = y.unsqueeze(-2) - centres  # (B, P, K, 2)
        q = (diff * diff).sum(-1)
        positive = q > _EPS
        log_q = torch.log(torch.where(positive, q, torch.ones_like(q)))
        phi = torch.where(positive, q * log_q, torch.zeros_like(q))  # (B, P, K)
        value = phi @ weights + offset.unsqueeze(1) + y @ affine.transpose(1, 2)
        if not with_jacobian:
            return value - target
        # ∇ₚφ = 2(p − c)(log q + 1), zero at q = 0.
        dphi = torch.where(positive, 2.0 * (log_q + 1.0), torch.zeros_like(q)).unsqueeze(-1) * diff
        # jacobian[b, p, i, j] = A[b, i, j] + Σₖ w[b, k, i] dφ[b, p, k, j]
        jacobian = affine.unsqueeze(1) + torch.einsum("bki,bpkj->bpij", weights, dphi)
        return value - target, jacobian
