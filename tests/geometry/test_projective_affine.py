"""Projective and affine families: closed forms, exact inverses, grids."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from balanced_align.geometry import Affine, Projective, build_family, normalized_meshgrid, sample


def _random_params(family, batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, *family.param_shape, generator=generator, dtype=torch.float64)
    scale = 0.1 if isinstance(family, Affine) else torch.tensor([0.1] * 6 + [0.05] * 2)
    return family.identity_params().double() + noise * scale


@pytest.mark.parametrize("family", [Affine(), Projective()])
def test_identity_grid_is_identity(family):
    params = family.identity_params().expand(2, *family.param_shape)
    grid = family.grid(params, (7, 9))
    torch.testing.assert_close(grid[0], normalized_meshgrid((7, 9)), atol=1e-6, rtol=0)
    image = torch.randn(2, 3, 7, 9)
    torch.testing.assert_close(sample(image, grid), image, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", [Affine(), Projective()])
def test_inverse_is_exact(family):
    params = _random_params(family)
    points = torch.rand(4, 50, 2, dtype=torch.float64) * 2 - 1
    inverse = family.inverse_points(params, family.warp_points(params, points))
    assert inverse.num_failed == 0
    torch.testing.assert_close(inverse.points, points, atol=1e-10, rtol=0)


def test_projective_matches_numpy_homography():
    family = Projective()
    params = _random_params(family, batch=1)
    matrix = np.append(params[0].numpy(), 1.0).reshape(3, 3)
    points = np.random.default_rng(0).uniform(-1, 1, size=(20, 2))
    homogeneous = np.c_[points, np.ones(20)] @ matrix.T
    expected = homogeneous[:, :2] / homogeneous[:, 2:]
    ours = family.warp_points(params, torch.from_numpy(points))[0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_homography_with_its_horizon_in_the_image_stays_finite():
    """A learned homography whose line w = 0 crosses the image: finite grid and gradients.

    Where |w| >= 1e-2 the grid is the exact homography (numpy); nearer the horizon points
    land far outside the image (>= 1/1e-2 · |numerator| away), on the same side as exact.
    """
    family = Projective()
    # w = 1 + 2u: zero on the vertical line u = −0.5, inside [−1, 1]²
    params = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0]], requires_grad=True)
    size = (32, 34)  # W = 34 puts a column of pixel centres exactly on u = −0.5 (w = 0)
    grid = family.grid(params, size)
    assert torch.isfinite(grid).all()
    pixels = normalized_meshgrid(size, dtype=torch.float64).reshape(-1, 2).numpy()
    homogeneous = np.c_[pixels, np.ones(len(pixels))] @ np.append(
        params.detach()[0].numpy(), 1.0
    ).reshape(3, 3).T.astype(np.float64)
    w = homogeneous[:, 2]
    far = np.abs(w) < 1e-2
    assert far.any() and (w == 0).any()
    ours = grid.detach().reshape(-1, 2).double().numpy()
    exact = homogeneous[~far, :2] / w[~far, None]
    np.testing.assert_allclose(ours[~far], exact, rtol=1e-5, atol=1e-5)
    numerators = homogeneous[far, :2]
    assert (np.abs(ours[far]) >= np.abs(numerators) / 1e-2 - 1e-3).all()
    side = np.sign(numerators) * np.where(w[far] >= 0, 1.0, -1.0)[:, None]
    np.testing.assert_array_equal(np.sign(ours[far]), side)
    # sampling through it and back-propagating gives finite values and gradients
    image = torch.rand(1, 3, *size)
    F.grid_sample(image, grid, align_corners=False).sum().backward()
    assert torch.isfinite(params.grad).all()
    # a landmark exactly on the horizon warps to a finite point too
    horizon = torch.tensor([[[-0.5, 0.3]]])
    assert torch.isfinite(family.warp_points(params.detach(), horizon)).all()


@pytest.mark.parametrize("family", [Affine(), Projective()])
def test_grid_equals_warp_points_at_pixel_centres(family):
    params = _random_params(family).float()
    grid = family.grid(params, (6, 5))
    points = family.warp_points(params, normalized_meshgrid((6, 5)).reshape(-1, 2))
    torch.testing.assert_close(grid.reshape(4, -1, 2), points, atol=1e-5, rtol=0)


def test_affine_grid_matches_torch_affine_grid():
    family = Affine()
    params = _random_params(family).float()
    expected = F.affine_grid(params, [4, 1, 5, 8], align_corners=False)
    torch.testing.assert_close(family.grid(params, (5, 8)), expected)


@pytest.mark.parametrize("family", [Affine(), Projective()])
def test_gradcheck(family):
    params = _random_params(family, batch=2).requires_grad_(True)
    points = (torch.rand(2, 3, 2, dtype=torch.float64) - 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(family.warp_points, (params, points))
    assert torch.autograd.gradcheck(lambda p: family.grid(p, (3, 4)), (params,))


def test_build_family():
    assert isinstance(build_family("affine"), Affine)
    assert build_family("tps", grid_size=2).num_params == 8
    assert build_family("projective").num_params == 8
    with pytest.raises(ValueError, match="unknown transform family 'tpss'"):
        build_family("tpss")


@pytest.mark.parametrize("family", [Affine(), Projective()])
def test_singular_warp_reports_failure_instead_of_raising(family):
    params = family.identity_params().double().expand(2, *family.param_shape).clone()
    params[1] = 0.0  # a learned warp can collapse; its inverse must not crash evaluation
    if isinstance(family, Projective):
        params[1, 8 - 1] = 0.0
    points = torch.rand(2, 5, 2, dtype=torch.float64) - 0.5
    result = family.inverse_points(params, points)
    assert bool(result.converged[0].all()) and not bool(result.converged[1].any())
    torch.testing.assert_close(result.points[0], points[0])
