"""aligned_by_method_figure: rows per model, checked against the identity and FullAlign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balanced_align import BalancedAlignModule
from balanced_align.viz import aligned_by_method_figure
from balanced_align.viz.common import to_display, to_pixels
from tests.viz.helpers import SIZE, batch, face_template, tiny_module


def _fullalign() -> BalancedAlignModule:
    return BalancedAlignModule(
        num_classes=4,
        model={"width": 0.125, "input_size": SIZE, "embedding_dim": 16},
        align={"method": "fullalign", "location": "input"},
        loss={"lambda": 0.0},
        template_init=face_template(),
    )


def test_rows_identity_and_fullalign():
    data = batch(3)
    modules = {"None": tiny_module("none"), "TPS": tiny_module("tps"), "FullAlign": _fullalign()}
    fig = aligned_by_method_figure(
        modules, data["image"], data["landmarks"], titles=["a", "b", "c"], max_faces=2
    )
    axes = np.array(fig.axes).reshape(4, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["input", "None", "TPS", "FullAlign"]
    assert [ax.get_title() for ax in axes[0]] == ["a", "b"]
    inputs = to_display(data["image"][:2])
    for i in range(2):
        shown = [np.asarray(ax.images[0].get_array()) for ax in axes[:, i]]
        # no alignment shows the input; an identity-initialised STN reproduces it exactly
        np.testing.assert_array_equal(shown[0], inputs[i])
        np.testing.assert_array_equal(shown[1], inputs[i])
        np.testing.assert_allclose(shown[2], inputs[i], atol=1e-5)
        # FullAlign moves every landmark exactly onto the template (ANME = 0)
        (scatter,) = [c for c in axes[3, i].collections if c.get_gid() == "aligned_landmarks"]
        expected = to_pixels(face_template(), (SIZE, SIZE))
        np.testing.assert_allclose(scatter.get_offsets(), expected, atol=1e-3)
        # the identity STN leaves the landmarks where they were
        (scatter,) = [c for c in axes[2, i].collections if c.get_gid() == "aligned_landmarks"]
        source = to_pixels(data["landmarks"][i], (SIZE, SIZE))
        np.testing.assert_allclose(scatter.get_offsets(), source, atol=1e-3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one model"):
        aligned_by_method_figure({}, torch.zeros(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="landmarks"):
        aligned_by_method_figure(
            {"None": tiny_module("none")}, torch.zeros(2, 3, SIZE, SIZE), torch.zeros(3, 84, 2)
        )
