"""alpha_figure and template_figure: the drawn values are the module's α and T."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balanced_align.data.schema import LMK84
from balanced_align.viz import alpha_figure, template_figure
from tests.viz.helpers import SIZE, face_template, tiny_module


def gid(ax, name):
    (found,) = [c for c in ax.collections if c.get_gid() == name]
    return found


def test_alpha_dots_carry_alpha_at_the_template():
    module = tiny_module("tps")
    logits = torch.linspace(-1.0, 3.0, 84)
    with torch.no_grad():
        module.align_loss.alpha_logit.copy_(logits)
    fig = alpha_figure(module, annotate_lowest=2)
    assert len(fig.axes) == 2  # layout + colour bar
    dots = gid(fig.axes[0], "alpha")
    expected_alpha = 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))
    np.testing.assert_allclose(dots.get_array(), expected_alpha, rtol=1e-6)
    np.testing.assert_allclose(dots.get_offsets(), (face_template().numpy() + 1) * SIZE / 2)
    # the two lowest α (logits increase with the index) are points 0 and 1, named
    label = fig.axes[0].get_xlabel()
    assert f"1. {LMK84.point_names[0]}" in label and f"2. {LMK84.point_names[1]}" in label


def test_equal_alpha_names_no_lowest():
    fig = alpha_figure(tiny_module("affine"))
    assert "lowest" not in fig.axes[0].get_xlabel()


def test_template_figure_draws_start_and_learned():
    module = tiny_module("tps")
    g = torch.Generator().manual_seed(0)
    shift = 0.02 * torch.randn(84, 2, generator=g)
    with torch.no_grad():
        module.align_loss.template.add_(shift)
    fig = template_figure(module, magnify=3.0)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    start = (face_template().numpy() + 1) * SIZE / 2
    learned = start + 3.0 * shift.numpy() * SIZE / 2
    np.testing.assert_allclose(gid(ax, "initial").get_offsets(), start, atol=1e-4)
    np.testing.assert_allclose(gid(ax, "learned").get_offsets(), learned, atol=1e-4)
    segments = np.array(gid(ax, "displacement").get_segments())
    np.testing.assert_allclose(segments[:, 0], start, atol=1e-4)
    np.testing.assert_allclose(segments[:, 1], learned, atol=1e-4)
    drift = np.linalg.norm(shift.numpy() * SIZE / 2, axis=-1)
    assert f"mean {drift.mean():.2f} px" in ax.get_title()


@pytest.mark.parametrize("figure", [alpha_figure, template_figure])
def test_no_alignment_is_an_error(figure):
    with pytest.raises(ValueError, match="no alignment loss"):
        figure(tiny_module("none"))
