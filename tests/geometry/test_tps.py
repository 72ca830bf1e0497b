"""ThinPlateSpline against closed forms, properties and scipy's RBFInterpolator."""

import numpy as np
import pytest
import torch
from scipy.interpolate import RBFInterpolator

from balanced_align.geometry import ThinPlateSpline, normalized_meshgrid, sample


def _displaced(tps: ThinPlateSpline, amplitude: float, batch: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    spacing = 2.0 / (tps.grid_size - 1)
    noise = torch.rand(batch, *tps.param_shape, generator=generator, dtype=torch.float64) * 2 - 1
    return tps.identity_params().double().expand(batch, -1, -1) + amplitude * spacing * noise


@pytest.mark.parametrize("grid_size", [2, 4, 8])
def test_interpolates_control_points(grid_size):
    tps = ThinPlateSpline(grid_size)
    source = _displaced(tps, 0.5)
    warped = tps.warp_points(source, tps.control_points.double())
    torch.testing.assert_close(warped, source, atol=1e-7, rtol=0)
    # float32 path too, at float32 tolerance
    warped32 = tps.warp_points(source.float(), tps.control_points)
    torch.testing.assert_close(warped32, source.float(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("grid_size", [2, 8])
def test_identity_grid_samples_input_exactly(grid_size):
    tps = ThinPlateSpline(grid_size)
    params = tps.identity_params().expand(2, -1, -1)
    grid = tps.grid(params, (23, 31))
    torch.testing.assert_close(
        grid, normalized_meshgrid((23, 31)).expand(2, -1, -1, -1), atol=1e-5, rtol=0
    )
    image = torch.randn(2, 5, 23, 31)
    torch.testing.assert_close(sample(image, grid), image, atol=1e-4, rtol=0)


@pytest.mark.parametrize("amplitude", [0.25, 0.5, 1.5])
@pytest.mark.parametrize("grid_size", [2, 3, 8])
def test_matches_scipy_rbf_interpolator(grid_size, amplitude):
    """scipy's thin_plate_spline kernel is r² log r (half of ours): the same interpolant."""
    tps = ThinPlateSpline(grid_size)
    source = _displaced(tps, amplitude, batch=2, seed=grid_size)
    rng = np.random.default_rng(1)
    queries = rng.uniform(-1.2, 1.2, size=(500, 2))
    ours64 = tps.warp_points(source, torch.from_numpy(queries))
    ours32 = tps.warp_points(source.float(), torch.from_numpy(queries).float())
    grid = tps.grid(source.float(), (16, 16)).reshape(2, -1, 2)
    pixels = normalized_meshgrid((16, 16), dtype=torch.float64).reshape(-1, 2).numpy()
    centres = tps.control_points.double().numpy()
    for b in range(2):
        reference = RBFInterpolator(
            centres, source[b].numpy(), kernel="thin_plate_spline", degree=1
        )
        np.testing.assert_allclose(ours64[b].numpy(), reference(queries), atol=1e-7)
        np.testing.assert_allclose(ours32[b].numpy(), reference(queries), atol=1e-4)
        np.testing.assert_allclose(grid[b].numpy(), reference(pixels), atol=1e-4)


def test_grid_equals_warp_points_at_pixel_centres():
    tps = ThinPlateSpline(8)
    source = _displaced(tps, 0.4).float()
    grid = tps.grid(source, (12, 9))
    points = tps.warp_points(source, normalized_meshgrid((12, 9)).reshape(-1, 2))
    torch.testing.assert_close(grid.reshape(3, -1, 2), points, atol=2e-5, rtol=0)


@pytest.mark.parametrize("grid_size", [2, 8])
def test_inverse_of_smooth_warp(grid_size):
    tps = ThinPlateSpline(grid_size)
    source = _displaced(tps, 0.2, seed=3)
    points = torch.rand(3, 200, 2, dtype=torch.float64) * 1.8 - 0.9
    result = tps.inverse_points(source, tps.warp_points(source, points))
    assert result.num_failed == 0
    torch.testing.assert_close(result.points, points, atol=1e-7, rtol=0)


def test_inverse_reports_fold_over():
    tps = ThinPlateSpline(2)
    # Swap two corners: the warp folds the square over itself.
    source = tps.identity_params().double().clone()
    source[[0, 1]] = source[[1, 0]]
    points = torch.rand(1, 100, 2, dtype=torch.float64) * 1.6 - 0.8
    result = tps.inverse_points(source.unsqueeze(0), points)
    assert result.num_folded > 0
    # whatever it reports as converged really solves f(y) = x
    ok = result.converged[0]
    solved = tps.warp_points(source.unsqueeze(0), result.points)[0]
    torch.testing.assert_close(solved[ok], points[0][ok], atol=1e-6, rtol=0)


def test_inverse_from_initial_points_on_a_bent_warp():
    """Started near the answer (as ANME starts from the template), damped Newton finds it."""
    tps = ThinPlateSpline(8)
    source = _displaced(tps, 1.0, batch=4, seed=7)  # strong displacements: folds somewhere
    points = torch.rand(4, 300, 2, dtype=torch.float64) * 1.6 - 0.8
    targets = tps.warp_points(source, points)
    start = points + 0.02 * torch.randn_like(points)
    result = tps.inverse_points(source, targets, initial=start)
    # a few points next to a fold line (det ∂f/∂y ≈ 0) may stall: they must be reported
    assert result.num_failed <= 0.01 * targets.shape[0] * targets.shape[1]
    ok = result.converged
    solved = tps.warp_points(source, result.points)
    torch.testing.assert_close(solved[ok], targets[ok], atol=1e-6, rtol=0)
    assert bool(((solved - targets).norm(dim=-1) >= 1e-6)[~ok].all())
    # with the default start the residual of every converged point is just as small
    default = tps.inverse_points(source, targets)
    ok = default.converged
    torch.testing.assert_close(
        tps.warp_points(source, default.points)[ok], targets[ok], atol=1e-6, rtol=0
    )


def test_inverse_of_a_batch_is_the_inverse_of_each_point_alone():
    """Newton is per point: solving many points of many warps at once (where most converge
    early and some stall) gives each point what solving it on its own gives."""
    tps = ThinPlateSpline(8)
    source = _displaced(tps, 1.0, batch=3, seed=11)  # strong: some points stall
    points = torch.rand(3, 40, 2, dtype=torch.float64) * 1.8 - 0.9
    together = tps.inverse_points(source, points)
    assert 0 < together.num_failed < points.shape[0] * points.shape[1]  # a mix of both
    for b in range(3):
        for p in range(0, 40, 7):
            alone = tps.inverse_points(source[b : b + 1], points[b : b + 1, p : p + 1])
            assert bool(alone.converged[0, 0]) == bool(together.converged[b, p])
            if together.converged[b, p]:
                torch.testing.assert_close(
                    alone.points[0, 0], together.points[b, p], atol=1e-9, rtol=0
                )


def test_gradcheck_grid_and_warp_points():
    tps = ThinPlateSpline(3)
    source = _displaced(tps, 0.3, batch=2).requires_grad_(True)
    points = (torch.rand(2, 4, 2, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: tps.grid(s, (4, 5)), (source,))
    assert torch.autograd.gradcheck(tps.warp_points, (source, points))
    # gradient w.r.t. a point that sits exactly on a control point stays finite
    on_centre = tps.control_points.double()[None, :2].expand(2, -1, -1).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(tps.warp_points, (source, on_centre))


def test_float32_under_autocast():
    tps = ThinPlateSpline(8)
    source = _displaced(tps, 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grid = tps.grid(source.bfloat16(), (8, 8))
        points = tps.warp_points(source, tps.control_points)
    assert grid.dtype == torch.float32 and points.dtype == torch.float32


def test_custom_control_points_interpolate_and_match_scipy():
    """FullAlign's TPS: kernels on a landmark template instead of a grid."""
    rng = np.random.default_rng(4)
    template = rng.uniform(-0.8, 0.8, size=(30, 2))
    tps = ThinPlateSpline(control_points=torch.from_numpy(template))
    assert tps.param_shape == (30, 2)
    source = torch.from_numpy(template + rng.normal(scale=0.05, size=(2, 30, 2)))
    torch.testing.assert_close(
        tps.warp_points(source, torch.from_numpy(template)), source, atol=1e-9, rtol=0
    )
    queries = rng.uniform(-1, 1, size=(100, 2))
    ours = tps.warp_points(source, torch.from_numpy(queries))
    for b in range(2):
        reference = RBFInterpolator(template, source[b].numpy(), kernel="thin_plate_spline")
        np.testing.assert_allclose(ours[b].numpy(), reference(queries), atol=1e-8)
    inverse = tps.inverse_points(source, source, initial=torch.from_numpy(template))
    torch.testing.assert_close(inverse.points, torch.from_numpy(template).expand(2, -1, -1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="grid_size"):
        ThinPlateSpline(1)
    with pytest.raises(ValueError, match="exactly one"):
        ThinPlateSpline()
    with pytest.raises(ValueError, match="degenerate"):
        ThinPlateSpline(control_points=torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]))
    tps = ThinPlateSpline(2)
    with pytest.raises(ValueError, match="source_points"):
        tps.grid(torch.zeros(1, 9, 2), (4, 4))


def test_collapsed_tps_reports_failure_instead_of_raising():
    tps = ThinPlateSpline(3)
    source = tps.identity_params().double().expand(2, -1, -1).clone()
    source[1] = 0.0  # every control point sent to the origin: singular everywhere
    points = torch.rand(2, 7, 2, dtype=torch.float64) - 0.5
    result = tps.inverse_points(source, points)
    assert bool(result.converged[0].all()) and not bool(result.converged[1].any())
