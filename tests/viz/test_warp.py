"""warp_grid_figure: the identity STN draws the identity grid; an affine warp its closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balanced_align.viz import warp_grid_figure, warp_grid_lines
from tests.viz.helpers import SIZE, batch, tiny_module

LINES, POINTS = 5, 17


def identity_lines(size: int) -> np.ndarray:
    """(2·LINES, POINTS, 2) pixel coordinates of the regular grid over [−1, 1]², by numpy."""
    ticks = (np.linspace(-1, 1, LINES) + 1) * size / 2
    along = (np.linspace(-1, 1, POINTS) + 1) * size / 2
    horizontal = [np.stack([along, np.full(POINTS, t)], -1) for t in ticks]
    vertical = [np.stack([np.full(POINTS, t), along], -1) for t in ticks]
    return np.array(horizontal + vertical)


@pytest.mark.parametrize(
    ("method", "grid"), [("tps", 4), ("tps", 2), ("affine", 4), ("projective", 4)]
)
def test_identity_stn_draws_straight_evenly_spaced_lines(method, grid):
    module = tiny_module(method, "fmap", grid)
    data = batch(2)
    fig = warp_grid_figure(module, data["image"], num_lines=LINES, points_per_line=POINTS)
    assert len(fig.axes) == 2
    expected = identity_lines(SIZE)
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 2 * LINES
        drawn = np.array([line.get_xydata() for line in lines])
        np.testing.assert_allclose(drawn, expected, atol=1e-4)
        # straight: zero second differences; evenly spaced: constant gaps between lines
        assert np.abs(np.diff(drawn, n=2, axis=1)).max() < 1e-4
        gaps = np.diff(drawn[:LINES, 0, 1])
        np.testing.assert_allclose(gaps, SIZE / (LINES - 1), atol=1e-4)


def test_affine_warp_draws_its_closed_form():
    """Lines of f(p) = M p + t for given params, against numpy."""
    module = tiny_module("affine", "input")
    data = batch(1)
    matrix = np.array([[0.8, 0.2, 0.1], [-0.1, 0.7, -0.05]], dtype=np.float32)
    fig = warp_grid_figure(
        module,
        data["image"],
        params=torch.from_numpy(matrix)[None],
        num_lines=LINES,
        points_per_line=POINTS,
    )
    grid = identity_lines(SIZE) * 2 / SIZE - 1  # back to normalised aligned-frame points
    source = grid @ matrix[:, :2].T + matrix[:, 2]
    expected = (source + 1) * SIZE / 2
    drawn = np.array([line.get_xydata() for line in fig.axes[0].get_lines()])
    np.testing.assert_allclose(drawn, expected, atol=1e-4)


def test_tps_lines_agree_with_the_sampling_grid():
    """At pixel-centre positions the drawn TPS lines pass through ``family.grid``."""
    module = tiny_module("tps", "fmap", 4)
    family = module.family
    g = torch.Generator().manual_seed(3)
    params = family.identity_params()[None] + 0.1 * torch.randn(1, 16, 2, generator=g)
    n = 4  # a 4×4 output grid: pixel centres at u = -0.75, -0.25, 0.25, 0.75
    grid = family.grid(params, (n, n))[0].numpy()  # (4, 4, 2) normalised source points
    # 9 lines of 9 points over [-1, 1] (step 0.25): indices 1, 3, 5, 7 are the centres
    lines = warp_grid_lines(family, params, (SIZE, SIZE), num_lines=9, points_per_line=9)[0]
    centres = [1, 3, 5, 7]
    horizontal = lines[:9][np.ix_(centres, centres)]  # (row v_i, point u_j, 2)
    np.testing.assert_allclose(horizontal, (grid + 1) * SIZE / 2, atol=1e-3)


def test_no_stn_is_an_error():
    with pytest.raises(ValueError, match="no STN"):
        warp_grid_figure(tiny_module("none"), batch(1)["image"])
