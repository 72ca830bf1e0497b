"""LocNet, SpatialTransformer and AlignedRecognizer: identity start, locations, precision."""

from __future__ import annotations

import pytest
import torch

from balanced_align.geometry import build_family
from balanced_align.models import (
    AlignedRecognizer,
    LocNet,
    SpatialTransformer,
    build_backbone,
    build_recognizer,
)

SIZE = 48
FAMILIES = [
    ("affine", {}),
    ("projective", {}),
    ("tps", {"grid_size": 2}),
    ("tps", {"grid_size": 4}),
]


def family_id(item):
    name, kw = item
    return name + "".join(f"{v}" for v in kw.values())


def tiny_backbone(seed=0):
    torch.manual_seed(seed)
    return build_backbone("iresnet18", width=0.125, input_size=SIZE, embedding_dim=16)


def images(batch=2, seed=1):
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("item", FAMILIES, ids=family_id)
def test_locnet_starts_at_identity(item):
    family = build_family(item[0], **item[1])
    locnet = LocNet(family.identity_params(), input_size=32, width=0.25)
    out = locnet(images(3))
    assert out.shape == (3, family.num_params)
    assert out.dtype == torch.float32
    expected = family.identity_params().flatten().expand(3, -1)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("item", FAMILIES, ids=family_id)
@pytest.mark.parametrize("location", ["fmap", "input"])
def test_identity_stn_equals_plain_backbone(item, location):
    """A fresh STN leaves features unchanged: same weights, with vs. without STN."""
    backbone = tiny_backbone().eval()
    plain = AlignedRecognizer(backbone, None).eval()
    aligned = AlignedRecognizer(
        backbone, build_family(item[0], **item[1]), location=location, locnet_width=0.25
    ).eval()
    x = images()
    with torch.no_grad():
        out_plain = plain(x)
        out_aligned = aligned(x)
    assert out_plain.params is None and out_plain.family is None
    assert out_aligned.params.shape == (2, *aligned.family.param_shape)
    assert out_aligned.family is aligned.family
    # ~1e-5 relative to the feature scale: grid_sample's own float32 unnormalisation of an
    # exact identity grid is already off by ~1e-6 px, and the embeddings here reach ~50
    scale = out_plain.embedding.abs().max()
    torch.testing.assert_close(
        out_aligned.embedding, out_plain.embedding, atol=1e-5 * scale, rtol=0
    )
    with torch.no_grad():
        fmap = backbone.stem(x)
        warped = aligned.stn.warp(fmap, out_aligned.params)
    torch.testing.assert_close(warped, fmap, atol=1e-5 * fmap.abs().max(), rtol=0)


def test_input_and_fmap_give_same_embedding_shape():
    x = images()
    shapes = []
    for location in ("input", "fmap", "none"):
        model = build_recognizer(
            "iresnet18",
            width=0.125,
            input_size=SIZE,
            align_method="tps",
            tps_grid_size=2,
            location=location,
            locnet_input_size=32,
            locnet_width=0.25,
            embedding_dim=16,
        )
        out = model(x)
        shapes.append(tuple(out.embedding.shape))
        assert (out.params is None) == (location == "none")
        assert model.stage0_size == (SIZE, SIZE)
    assert shapes == [(2, 16)] * 3


def test_fmap_warp_uses_the_image_grid_and_aligned_image_shifts():
    """A 2-pixel affine translation: the aligned image and the warped stage-0 map both shift."""
    backbone = tiny_backbone().eval()
    model = AlignedRecognizer(backbone, build_family("affine"), location="fmap", locnet_width=0.25)
    model.eval()
    shift = 2
    params = torch.tensor([[[1.0, 0.0, 2.0 * shift / SIZE], [0.0, 1.0, 0.0]]]).expand(2, -1, -1)
    with torch.no_grad():
        model.stn.locnet.fc.bias.copy_(params[0].flatten())
        x = images()
        aligned = model.aligned_image(x)
        # output pixel j reads source pixel j + shift; the last `shift` columns fall outside
        tol = 1e-5 * x.abs().max()
        torch.testing.assert_close(aligned[..., :-shift], x[..., shift:], atol=tol, rtol=0)
        assert aligned[..., -shift:].abs().max() == 0
        fmap = backbone.stem(x)
        warped = model.stn.warp(fmap, model.stn.predict_params(x))
        tol = 1e-5 * fmap.abs().max()
        torch.testing.assert_close(warped[..., :-shift], fmap[..., shift:], atol=tol, rtol=0)
        expected = backbone.body(warped)
        torch.testing.assert_close(model(x).embedding, expected)


def test_stn_forward_returns_warped_and_params():
    family = build_family("projective")
    stn = SpatialTransformer(family, locnet_input_size=32, locnet_width=0.25)
    target = torch.randn(2, 5, 20, 24)
    warped, params = stn(images(), target)
    assert warped.shape == target.shape and params.shape == (2, 8)
    torch.testing.assert_close(warped, target, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("item", FAMILIES, ids=family_id)
def test_bf16_autocast_keeps_geometry_float32(item):
    family = build_family(item[0], **item[1])
    stn = SpatialTransformer(family, locnet_input_size=32, locnet_width=0.25).eval()
    with torch.no_grad():  # move away from the identity so the warp does something
        stn.locnet.fc.bias.add_(0.05 * torch.randn_like(stn.locnet.fc.bias))
        stn.locnet.fc.weight.normal_(0.0, 1e-3)
    seen = []
    original_grid = family.grid

    def recording_grid(params, size):
        grid = original_grid(params, size)
        seen.append((params.dtype, grid.dtype, torch.is_autocast_enabled("cpu")))
        return grid

    family.grid = recording_grid
    x = images()
    target = torch.randn(2, 4, SIZE, SIZE)
    with torch.no_grad():
        ref_warped, ref_params = stn(x, target)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            warped, params = stn(x, target.bfloat16())
    assert params.dtype == torch.float32
    assert seen[-1] == (torch.float32, torch.float32, False)
    assert warped.dtype == torch.bfloat16
    assert torch.isfinite(warped.float()).all()
    # LocNet's convs run in bf16, so params differ slightly; the warp itself is float32
    torch.testing.assert_close(params, ref_params, atol=2e-3, rtol=0)
    torch.testing.assert_close(warped.float(), ref_warped, atol=0.1, rtol=0.02)


def test_recognizer_under_autocast_runs_and_is_close():
    model = build_recognizer(
        "iresnet18",
        width=0.125,
        input_size=SIZE,
        align_method="affine",
        locnet_input_size=32,
        locnet_width=0.25,
        embedding_dim=16,
    ).eval()
    x = images()
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.params.dtype == torch.float32
    assert torch.isfinite(out.embedding.float()).all()
    torch.testing.assert_close(out.params, ref.params)  # identity, exact in float32
    cos = torch.nn.functional.cosine_similarity(out.embedding.float(), ref.embedding, dim=1)
    assert (cos > 0.98).all()


def test_bad_arguments():
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match="location must be one of"):
        AlignedRecognizer(backbone, build_family("affine"), location="stage1")
    with pytest.raises(ValueError, match="align_method must be one of"):
        build_recognizer(align_method="similarity")
    with pytest.raises(TypeError, match="lacks `stem`"):
        AlignedRecognizer(torch.nn.Linear(2, 2), None)
    with pytest.raises(ValueError, match="locnet_input_size"):
        SpatialTransformer(build_family("affine"), locnet_input_size=4)
    model = AlignedRecognizer(backbone, build_family("affine"), location="none")
    assert model.stn is None and model.location == "none"
