"""Least-squares similarity / affine estimation against known transforms and numpy lstsq."""

import math

import numpy as np
import pytest
import torch

from balanced_align.geometry import apply_affine, estimate_affine, estimate_similarity


def _similarity(scale, angle, tx, ty):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def test_similarity_recovers_known_transform():
    truth = torch.stack([_similarity(1.3, 0.4, 5.0, -2.0), _similarity(0.7, -1.1, -3.0, 8.0)])
    source = torch.randn(2, 7, 2, dtype=torch.float64) * 10
    estimated = estimate_similarity(source, apply_affine(truth, source))
    torch.testing.assert_close(estimated, truth, atol=1e-9, rtol=0)


def test_similarity_never_reflects():
    source = torch.randn(1, 6, 2, dtype=torch.float64)
    mirrored = source * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    matrix = estimate_similarity(source, mirrored)
    assert torch.linalg.det(matrix[0, :, :2]) > 0


def test_affine_recovers_known_transform_and_matches_numpy_with_noise():
    truth = torch.tensor([[[1.2, 0.3, 4.0], [-0.2, 0.9, -1.0]]], dtype=torch.float64)
    rng = np.random.default_rng(0)
    source = rng.normal(size=(1, 12, 2)) * 20
    target = apply_affine(truth, torch.from_numpy(source)).numpy()
    torch.testing.assert_close(
        estimate_affine(torch.from_numpy(source), torch.from_numpy(target)),
        truth,
        atol=1e-9,
        rtol=0,
    )
    noisy = target + rng.normal(size=target.shape)
    design = np.c_[source[0], np.ones(12)]
    reference = np.linalg.lstsq(design, noisy[0], rcond=None)[0].T
    ours = estimate_affine(torch.from_numpy(source), torch.from_numpy(noisy))[0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_similarity_matches_brute_force_optimum_with_noise():
    """Least squares over (a, b, tx, ty) with M = [[a, -b], [b, a]] is linear: solve with numpy."""
    rng = np.random.default_rng(2)
    source = rng.normal(size=(9, 2)) * 5
    target = source @ np.array([[0.8, -0.5], [0.5, 0.8]]).T + [3, 1] + rng.normal(size=(9, 2)) * 0.3
    rows = []
    for x, y in source:
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), target.reshape(-1), rcond=None)[0]
    expected = np.array([[a, -b, tx], [b, a, ty]])
    ours = estimate_similarity(torch.from_numpy(source), torch.from_numpy(target))[0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 3"):
        estimate_affine(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="source and target"):
        estimate_similarity(torch.zeros(1, 4, 2), torch.zeros(1, 5, 2))
