"""AlignmentLoss: closed-form α, hand computations, masks, gradients, λ, checkpoints, autocast."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from balanced_align.geometry import build_family
from balanced_align.losses import AlignmentLoss
from balanced_align.models import AlignedRecognizer, AMSoftmax, build_backbone
from balanced_align.models.safe_load import UnsafeCheckpointError

S = 6


def random_template(num=S, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(num, 2, generator=gen) * 1.2 - 0.6


def identity_params(family, batch):
    return family.identity_params().expand(batch, *family.param_shape).clone()


@pytest.mark.parametrize(
    "units,reduction,image_size",
    [("pixels", "mean", (112, 96)), ("normalized", "sum", (112, 112))],
)
def test_alpha_converges_to_closed_form(units, reduction, image_size):
    """Identity warp, frozen template, fixed errors: optimising α alone gives 1 − ē/(2|S|)."""
    family = build_family("affine")
    template = random_template()
    batch = 4
    gen = torch.Generator().manual_seed(1)
    # per-image, per-landmark offsets in pixels (or normalised units), chosen so α* ∈ (0.1, 0.9)
    if units == "pixels":
        magnitudes = torch.rand(batch, S, generator=gen) * 8 + 1.0  # 1..9 px → ē/12 ≤ 0.75
    else:
        magnitudes = torch.rand(batch, S, generator=gen) * 1.2 + 0.3  # ē/2 ∈ (0.15, 0.75)
    angles = torch.rand(batch, S, generator=gen) * 2 * np.pi
    direction = torch.stack([angles.cos(), angles.sin()], -1)
    offsets = magnitudes[..., None] * direction
    if units == "pixels":
        h, w = image_size
        offsets = offsets / torch.tensor([w / 2, h / 2])  # pixels → normalised
    landmarks = template + offsets
    loss = AlignmentLoss(
        template,
        learn_template=False,
        learn_alpha=True,
        alpha_init=0.5,
        image_size=image_size,
        units=units,
        reduction=reduction,
    )
    assert [n for n, _ in loss.named_parameters()] == ["alpha_logit"]
    params = identity_params(family, batch)
    optimizer = torch.optim.LBFGS(
        loss.parameters(),
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        value = loss(family, params, landmarks).total
        value.backward()
        return value

    for _ in range(3):
        optimizer.step(closure)
    mean_error = magnitudes.double().mean(0).numpy()
    denominator = 2 * S if reduction == "mean" else 2.0
    expected = 1.0 - mean_error / denominator
    assert ((expected > 0.1) & (expected < 0.95)).all()
    got = loss.alpha.detach().double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)
    out = loss(family, params, landmarks)
    np.testing.assert_allclose(out.per_landmark_error.numpy(), mean_error, rtol=1e-5)
    np.testing.assert_allclose(
        loss.closed_form_alpha(out.per_landmark_error).numpy(), expected, atol=1e-5
    )


def test_value_matches_numpy_for_an_affine_warp_in_pixels():
    family = build_family("affine")
    template = random_template(seed=2)
    gen = torch.Generator().manual_seed(3)
    batch, (h, w) = 3, (96, 80)
    params = identity_params(family, batch) + 0.1 * torch.randn(batch, 2, 3, generator=gen)
    landmarks = torch.rand(batch, S, 2, generator=gen) * 2 - 1
    alpha = torch.linspace(0.2, 0.9, S)
    loss = AlignmentLoss(template, alpha_init=alpha, image_size=(h, w))
    out = loss(family, params, landmarks)

    p, t, x, a = (v.double().numpy() for v in (params, template, landmarks, alpha))
    predicted = np.einsum("bij,sj->bsi", p[:, :, :2], t) + p[:, None, :, 2]
    delta = (predicted - x) * np.array([w / 2, h / 2])
    errors = np.linalg.norm(delta, axis=-1)
    lmk = (errors * a).sum() / (batch * S)
    reg = ((1 - a) ** 2).sum()
    np.testing.assert_allclose(out.lmk.item(), lmk, rtol=1e-5)
    np.testing.assert_allclose(out.reg.item(), reg, rtol=1e-5)
    np.testing.assert_allclose(out.total.item(), lmk + reg, rtol=1e-5)
    np.testing.assert_allclose(out.per_landmark_error.numpy(), errors.mean(0), rtol=1e-5)
    np.testing.assert_allclose(out.alpha.numpy(), a, rtol=1e-6)
    summed = AlignmentLoss(template, alpha_init=alpha, image_size=(h, w), reduction="sum")
    np.testing.assert_allclose(summed(family, params, landmarks).lmk.item(), lmk * S, rtol=1e-5)


def test_valid_mask_ignores_nan_landmarks():
    family = build_family("tps", grid_size=2)
    template = random_template(seed=4)
    gen = torch.Generator().manual_seed(5)
    batch = 4
    params = identity_params(family, batch) + 0.05 * torch.randn(batch, 4, 2, generator=gen)
    params.requires_grad_(True)
    landmarks = torch.rand(batch, S, 2, generator=gen) * 2 - 1
    valid = torch.ones(batch, S, dtype=torch.bool)
    valid[1] = False  # whole image invalid
    valid[2, :3] = False  # some landmarks invalid
    corrupted = landmarks.clone()
    corrupted[~valid] = float("nan")
    loss = AlignmentLoss(template, alpha_init=0.7)
    out = loss(family, params, corrupted, valid)
    out.total.backward()
    assert torch.isfinite(out.total) and torch.isfinite(params.grad).all()
    assert params.grad[1].abs().max() == 0  # nothing flows to an image without valid landmarks

    # reference: mean over valid (i, s) terms, computed directly
    with torch.no_grad():
        predicted = family.warp_points(params, template)
        errors = ((predicted - landmarks) * 56.0).norm(dim=-1)
        expected = (errors * 0.7)[valid].sum() / valid.sum()
    torch.testing.assert_close(out.lmk, expected)
    expected_per = torch.stack([errors[:, s][valid[:, s]].mean() for s in range(S)])
    torch.testing.assert_close(out.per_landmark_error, expected_per)
    # a per-image (B,) mask means the same as a full row mask
    image_valid = torch.tensor([True, False, True, True])
    out_b = loss(family, params, corrupted.nan_to_num(0.0), image_valid)
    out_bs = loss(family, params, corrupted.nan_to_num(0.0), image_valid[:, None].expand(-1, S))
    torch.testing.assert_close(out_b.total, out_bs.total)


def test_template_gradient_through_warp_points_matches_numpy():
    family = build_family("affine")
    template = random_template(seed=6)
    gen = torch.Generator().manual_seed(7)
    batch = 3
    landmarks = template + 0.2 * torch.randn(batch, S, 2, generator=gen)
    loss = AlignmentLoss(template, alpha_init=0.6, units="normalized")
    assert isinstance(loss.template, torch.nn.Parameter)
    loss(family, identity_params(family, batch), landmarks).total.backward()
    t, x = template.double().numpy(), landmarks.double().numpy()
    diff = t[None] - x
    expected = 0.6 * (diff / np.linalg.norm(diff, axis=-1, keepdims=True)).sum(0) / (batch * S)
    np.testing.assert_allclose(loss.template.grad.double().numpy(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name,kw", [("tps", {"grid_size": 4}), ("projective", {})])
def test_template_gradient_nonzero_for_other_families(name, kw):
    family = build_family(name, **kw)
    template = random_template(seed=8)
    batch = 2
    params = identity_params(family, batch)
    params = params + 0.02 * torch.randn(params.shape, generator=torch.Generator().manual_seed(9))
    landmarks = (template + 0.1).expand(batch, -1, -1)
    loss = AlignmentLoss(template)
    loss(family, params, landmarks).total.backward()
    grad = loss.template.grad
    assert torch.isfinite(grad).all() and (grad.abs().sum(-1) > 0).all()


def tiny_recognizer():
    torch.manual_seed(0)
    backbone = build_backbone("iresnet18", width=0.125, input_size=48, embedding_dim=16)
    return AlignedRecognizer(backbone, build_family("tps", grid_size=2), "fmap", 32, 0.25)


def locnet_grads(model, head, loss, images, labels, landmarks, lam):
    model.zero_grad(set_to_none=True)
    out = model(images)
    l_fr = torch.nn.functional.cross_entropy(head(out.embedding, labels), labels)
    total = l_fr if lam is None else l_fr + lam * loss(out.family, out.params, landmarks).total
    total.backward()
    return [p.grad.clone() for p in model.stn.locnet.parameters()]


def test_lambda_zero_gives_no_alignment_gradient_to_locnet():
    model = tiny_recognizer().eval()  # eval: BN statistics do not change between passes
    head = AMSoftmax(16, 4)
    loss = AlignmentLoss(random_template(seed=10), image_size=(48, 48))
    gen = torch.Generator().manual_seed(11)
    images = torch.randn(3, 3, 48, 48, generator=gen)
    labels = torch.tensor([0, 1, 3])
    landmarks = random_template(seed=10) + 0.3 * torch.randn(3, S, 2, generator=gen)

    fr_only = locnet_grads(model, head, loss, images, labels, landmarks, None)
    lam0 = locnet_grads(model, head, loss, images, labels, landmarks, 0.0)
    lam3 = locnet_grads(model, head, loss, images, labels, landmarks, 3.0)
    assert all(torch.equal(a, b) for a, b in zip(fr_only, lam0))
    difference = sum((a - b).abs().sum() for a, b in zip(fr_only, lam3))
    assert difference > 1e-3

    # L_align alone, scaled by 0: exactly zero LocNet gradient; by 3: nonzero
    for lam, nonzero in ((0.0, False), (3.0, True)):
        model.zero_grad(set_to_none=True)
        out = model(images)
        (lam * loss(out.family, out.params, landmarks).total).backward()
        total = sum(p.grad.abs().sum() for p in model.stn.locnet.parameters())
        assert (total > 0) == nonzero


def test_bf16_autocast_computes_in_float32():
    family = build_family("tps", grid_size=2)
    template = random_template(seed=12)
    gen = torch.Generator().manual_seed(13)
    params = identity_params(family, 2) + 0.05 * torch.randn(2, 4, 2, generator=gen)
    landmarks = torch.rand(2, S, 2, generator=gen) * 2 - 1
    params = params.bfloat16().float()  # exactly representable in bf16
    loss = AlignmentLoss(template)
    reference = loss(family, params, landmarks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(family, params.bfloat16(), landmarks)
    assert out.total.dtype == torch.float32 and out.lmk.dtype == torch.float32
    torch.testing.assert_close(out.total, reference.total)


def test_template_from_state_dict_and_checkpoint(tmp_path):
    learned = random_template(seed=14) + 0.01
    state = {"model.backbone.weight": torch.zeros(3), "align_loss.template": learned}
    loss = AlignmentLoss(random_template(seed=15))
    loss.load_template_from_state_dict(state)
    assert not loss.learn_template
    assert "template" not in dict(loss.named_parameters())
    torch.testing.assert_close(loss.template, learned)
    assert "template" in loss.state_dict()

    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    frozen = AlignmentLoss.from_checkpoint(path, alpha_init=0.8, learn_alpha=False)
    torch.testing.assert_close(frozen.template, learned)
    assert list(frozen.parameters()) == []
    torch.testing.assert_close(frozen.alpha, torch.full((S,), 0.8))

    with pytest.raises(KeyError, match="no key matching 'tmpl'"):
        AlignmentLoss.from_checkpoint(path, key="tmpl")
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        AlignmentLoss.from_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="expected \\(7, 2\\)"):
        AlignmentLoss(random_template(num=7)).load_template_from_state_dict(state)


def test_bad_arguments():
    with pytest.raises(ValueError, match="template_init must have shape"):
        AlignmentLoss(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="alpha_init must lie strictly"):
        AlignmentLoss(torch.zeros(5, 2), alpha_init=1.0)
    with pytest.raises(ValueError, match="units must be one of"):
        AlignmentLoss(torch.zeros(5, 2), units="mm")
    with pytest.raises(ValueError, match="reduction must be one of"):
        AlignmentLoss(torch.zeros(5, 2), reduction="none")
    loss = AlignmentLoss(torch.zeros(5, 2))
    family = build_family("affine")
    with pytest.raises(ValueError, match=r"landmarks must have shape \(B, 5, 2\)"):
        loss(family, identity_params(family, 2), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="valid must have shape"):
        loss(family, identity_params(family, 2), torch.zeros(2, 5, 2), torch.ones(3, dtype=bool))


def test_a_template_checkpoint_is_read_by_the_one_safe_loader(tmp_path):
    """A file that needs a pickle global is refused as every other checkpoint is
    (:class:`UnsafeCheckpointError`, naming the key), not as an unreadable file."""
    path = tmp_path / "pickled.ckpt"
    state = {"align_loss.template": random_template(seed=16)}
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"loss\.template_checkpoint .*pickled\.ckpt"):
        AlignmentLoss.from_checkpoint(path)
