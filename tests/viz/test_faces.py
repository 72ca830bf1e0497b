"""aligned_faces_figure: layout per method and the drawn warp against a closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balanced_align.viz import aligned_faces_figure
from tests.viz.helpers import SIZE, batch, tiny_module


def by_gid(ax, gid):
    (found,) = [c for c in ax.collections if c.get_gid() == gid]
    return found


MIRROR = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # affine u -> -u


@pytest.mark.parametrize(
    ("method", "location", "rows"),
    [("tps", "fmap", 2), ("affine", "input", 2), ("projective", "fmap", 2), ("none", "fmap", 1)],
)
def test_axes_per_method(method, location, rows):
    module = tiny_module(method, location)
    data = batch(3)
    fig = aligned_faces_figure(module, data["image"], data["landmarks"], titles=["a", "b", "c"])
    assert len(fig.axes) == rows * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    # every panel shows an image of the input's size
    for ax in fig.axes:
        assert ax.images[0].get_array().shape == (SIZE, SIZE, 3)


def test_max_faces_limits_columns():
    module = tiny_module("tps")
    data = batch(3)
    fig = aligned_faces_figure(module, data["image"], max_faces=2)
    assert len(fig.axes) == 4


@pytest.mark.parametrize("location", ["input", "fmap"])
def test_mirror_warp_shows_mirrored_face_and_landmarks(location):
    """An affine u -> -u warp: the aligned image is the flipped image (exact at pixel
    centres with align_corners=False) and y = f⁻¹(x) mirrors the landmarks: x_px -> W - x_px."""
    module = tiny_module("affine", location)
    data = batch(2)
    params = MIRROR.expand(2, 2, 3)
    fig = aligned_faces_figure(module, data["image"], data["landmarks"], params=params)
    axes = np.array(fig.axes).reshape(2, 2)
    expected = ((torch.flip(data["image"], dims=[3]) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    for i in range(2):
        shown = np.asarray(axes[1, i].images[0].get_array())
        np.testing.assert_allclose(shown, expected[i].numpy(), atol=1e-5)
        source_px = (data["landmarks"][i].numpy() + 1) * SIZE / 2
        drawn = by_gid(axes[1, i], "aligned_landmarks").get_offsets()
        np.testing.assert_allclose(drawn[:, 0], SIZE - source_px[:, 0], atol=1e-4)
        np.testing.assert_allclose(drawn[:, 1], source_px[:, 1], atol=1e-4)
        original = by_gid(axes[0, i], "landmarks").get_offsets()
        np.testing.assert_allclose(original, source_px, atol=1e-4)


def test_module_mode_restored_and_no_grad_leak():
    module = tiny_module("tps").train()
    data = batch(2)
    aligned_faces_figure(module, data["image"], data["landmarks"])
    assert module.training
    assert all(p.grad is None for p in module.parameters())


def test_bad_inputs_name_the_argument():
    module = tiny_module("tps")
    with pytest.raises(ValueError, match="images"):
        aligned_faces_figure(module, torch.zeros(3, SIZE, SIZE))
    with pytest.raises(ValueError, match="landmarks"):
        aligned_faces_figure(module, torch.zeros(2, 3, SIZE, SIZE), torch.zeros(3, 84, 2))
    with pytest.raises(ValueError, match="params"):
        aligned_faces_figure(module, torch.zeros(2, 3, SIZE, SIZE), params=torch.zeros(2, 3))


def test_aligned_landmarks_are_the_inverse_warp():
    """f(p) = 0.5 p + t zooms in: the aligned frame shows y = f⁻¹(x) = (x − t) / 0.5."""
    module = tiny_module("affine", "fmap")
    data = batch(1)
    shift = torch.tensor([0.1, -0.2])
    params = torch.tensor([[[0.5, 0.0, 0.1], [0.0, 0.5, -0.2]]])
    fig = aligned_faces_figure(module, data["image"], data["landmarks"], params=params)
    expected = ((data["landmarks"][0] - shift) / 0.5 + 1).numpy() * SIZE / 2
    inside = ((expected >= 0) & (expected <= SIZE)).all(1)
    drawn = by_gid(fig.axes[1], "aligned_landmarks").get_offsets()
    np.testing.assert_allclose(drawn, expected, atol=1e-4)
    assert inside.sum() > 20  # most of them are on the picture
