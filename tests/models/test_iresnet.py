"""IR-ResNet: shapes, stage-0 resolution, parameter counts against an independent formula."""

from __future__ import annotations

import math
import re

import pytest
import torch

from balanced_align.models import iresnet as iresnet_module
from balanced_align.models.iresnet import build_backbone, count_parameters

DEPTH_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}


def formula_parameter_count(blocks, width=1.0, size=112, emb=512) -> int:
    """Trainable parameters of IR-ResNet written out from the architecture description.

    conv k×k: k²·cin·cout (no bias); BN: 2c; PReLU: c; FC: in·out + out.
    """
    ch = [max(8, round(c * width)) for c in (64, 64, 128, 256, 512)]
    total = 9 * 3 * ch[0] + 2 * ch[0] + ch[0]  # stage 0
    cin = ch[0]
    spatial = size
    for n, cout in zip(blocks, ch[1:]):
        for b in range(n):
            c_in = cin if b == 0 else cout
            total += 2 * c_in + 9 * c_in * cout + 2 * cout + cout + 9 * cout * cout + 2 * cout
            if b == 0:  # stride 2 → projection shortcut
                total += c_in * cout + 2 * cout
        cin = cout
        spatial = math.ceil(spatial / 2)
    total += 2 * cin + cin * spatial * spatial * emb + emb + 2 * emb
    return total


@pytest.mark.parametrize("depth", [18, 34, 50, 100])
def test_full_width_parameter_count_matches_formula_and_docstring(depth):
    with torch.device("meta"):  # no memory, no init cost
        model = build_backbone(f"iresnet{depth}")
    expected = formula_parameter_count(DEPTH_BLOCKS[depth])
    assert count_parameters(model) == expected
    doc = iresnet_module.__doc__
    stated = re.search(rf"``iresnet{depth}``:\s+([\d,]+)", doc)
    assert stated is not None, f"iresnet{depth} count missing from the module docstring"
    assert int(stated.group(1).replace(",", "")) == expected


def test_formula_sanity_known_insightface_r50():
    # insightface's r50 (with a trainable feature BN) is commonly quoted as 43.59 M
    assert abs(formula_parameter_count(DEPTH_BLOCKS[50]) / 1e6 - 43.59) < 0.01


@pytest.mark.parametrize("depth", [18, 34, 50, 100])
def test_output_shape_each_depth_small_width(depth):
    torch.manual_seed(0)
    model = build_backbone(f"iresnet{depth}", width=0.125, input_size=48, embedding_dim=32)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 48, 48))
    assert out.shape == (2, 32)
    assert torch.isfinite(out).all()
    assert count_parameters(model) == formula_parameter_count(
        DEPTH_BLOCKS[depth], width=0.125, size=48, emb=32
    )


@pytest.mark.parametrize("size", [48, 56, 64, (64, 48)])
def test_stage0_keeps_input_resolution_and_body_shapes(size):
    model = build_backbone("iresnet18", width=0.125, input_size=size, embedding_dim=16).eval()
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        fmap = model.stem(x)
        assert fmap.shape == (2, model.stage0_channels, h, w)
        assert model.stage0_size == (h, w)
        emb = model.body(fmap)
        torch.testing.assert_close(emb, model(x))
    assert emb.shape == (2, 16)
    # FC input: C4 × ceil(h/16) × ceil(w/16)
    fc = model.output_layer[3]
    assert fc.in_features == 64 * math.ceil(h / 16) * math.ceil(w / 16)


def test_stage_resolutions_at_112():
    model = build_backbone("iresnet18", width=0.125).eval()
    x = torch.randn(1, 3, 112, 112)
    sizes = []
    with torch.no_grad():
        f = model.stem(x)
        sizes.append(f.shape[-1])
        for stage in (model.stage1, model.stage2, model.stage3, model.stage4):
            f = stage(f)
            sizes.append(f.shape[-1])
    assert sizes == [112, 56, 28, 14, 7]
    assert model.channels == (8, 8, 16, 32, 64)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_backbone("resnet34")
    with pytest.raises(ValueError, match="input_size"):
        build_backbone("iresnet18", input_size=8)
    with pytest.raises(ValueError, match="dropout"):
        build_backbone("iresnet18", dropout=1.5)
    model = build_backbone("iresnet18", width=0.125, input_size=48)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 48, 48\)"):
        model(torch.randn(1, 3, 64, 64))
