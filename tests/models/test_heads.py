"""Margin heads against numpy hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balanced_align.models.heads import AMSoftmax, ArcFace, CosFace, SoftmaxHead, build_head


def numpy_cosines(emb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    w = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    return e @ w.T


def make_inputs(batch=6, dim=8, classes=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(batch, dim, generator=gen, dtype=torch.float64).float()
    labels = torch.randint(0, classes, (batch,), generator=gen)
    return emb, labels


@pytest.mark.parametrize("cls,m_default", [(AMSoftmax, 0.35), (CosFace, 0.4)])
def test_additive_cosine_margin_matches_numpy(cls, m_default):
    emb, labels = make_inputs()
    head = cls(8, 5)
    assert head.m == m_default and head.s == 64.0
    cos = numpy_cosines(emb.double().numpy(), head.weight.detach().double().numpy())
    onehot = np.eye(5)[labels.numpy()]
    expected = 64.0 * (cos - m_default * onehot)
    np.testing.assert_allclose(head(emb, labels).detach().numpy(), expected, atol=2e-4)
    np.testing.assert_allclose(head(emb).detach().numpy(), 64.0 * cos, atol=2e-4)


def test_amsoftmax_custom_scale_margin():
    emb, labels = make_inputs(seed=3)
    head = AMSoftmax(8, 5, s=30.0, m=0.2)
    cos = numpy_cosines(emb.double().numpy(), head.weight.detach().double().numpy())
    expected = 30.0 * (cos - 0.2 * np.eye(5)[labels.numpy()])
    np.testing.assert_allclose(head(emb, labels).detach().numpy(), expected, atol=1e-4)


def test_arcface_matches_numpy_with_fallback():
    torch.manual_seed(0)
    head = ArcFace(8, 5, s=64.0, m=0.5)
    emb, labels = make_inputs(batch=40, seed=1)
    # half the embeddings point almost opposite their class: θ + m > π there
    w = head.weight.detach()
    emb[::2] = -w[labels[::2]] / w[labels[::2]].norm(dim=1, keepdim=True) + 0.05 * emb[::2]
    w = w.double().numpy()
    cos = numpy_cosines(emb.double().numpy(), w)
    logits = head(emb, labels).detach().double().numpy()
    rows = np.arange(len(labels))
    c = cos[rows, labels.numpy()]
    theta = np.arccos(c)
    m = 0.5
    expected_target = np.where(theta + m <= np.pi, np.cos(theta + m), c - m * np.sin(m))
    assert (theta + m > np.pi).any() and (theta + m <= np.pi).any()
    np.testing.assert_allclose(logits[rows, labels.numpy()], 64 * expected_target, atol=1e-3)
    other = np.ones_like(cos, dtype=bool)
    other[rows, labels.numpy()] = False
    np.testing.assert_allclose(logits[other], 64 * cos[other], atol=1e-3)


def test_arcface_target_equals_cos_theta_plus_m():
    # a pure check of the main branch: unit class vectors at known angles
    head = ArcFace(2, 3, s=10.0, m=0.3)
    angles = np.array([0.0, 0.7, 1.9])
    with torch.no_grad():
        head.weight.copy_(torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1)))
    emb = torch.tensor([[1.0, 0.0]] * 3)
    labels = torch.tensor([0, 1, 2])
    logits = head(emb, labels).detach().double().numpy()
    np.testing.assert_allclose(np.diag(logits), 10 * np.cos(angles + 0.3), atol=1e-4)


def test_arcface_easy_margin():
    head = ArcFace(8, 5, m=0.5, easy_margin=True)
    emb, labels = make_inputs(batch=30, seed=2)
    cos = numpy_cosines(emb.double().numpy(), head.weight.detach().double().numpy())
    rows = np.arange(30)
    c = cos[rows, labels.numpy()]
    expected = np.where(c > 0, np.cos(np.arccos(c) + 0.5), c)
    got = head(emb, labels).detach().double().numpy()[rows, labels.numpy()]
    np.testing.assert_allclose(got, 64 * expected, atol=1e-3)


def test_softmax_head_is_linear_with_bias():
    head = SoftmaxHead(8, 5)
    emb, labels = make_inputs()
    expected = emb.numpy() @ head.fc.weight.detach().numpy().T + head.fc.bias.detach().numpy()
    np.testing.assert_allclose(head(emb, labels).detach().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["amsoftmax", "cosface", "arcface", "softmax"])
def test_heads_float32_under_bf16_autocast_and_trainable(name):
    head = build_head(name, 8, 5)
    emb, labels = make_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(emb.bfloat16(), labels)
    assert logits.dtype == torch.float32
    reference = head(emb.bfloat16().float(), labels)
    torch.testing.assert_close(logits, reference)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_head_errors():
    with pytest.raises(ValueError, match="head must be one of"):
        build_head("sphereface", 8, 5)
    head = AMSoftmax(8, 5)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        head(torch.randn(2, 7))
    with pytest.raises(ValueError, match="labels must have shape"):
        head(torch.randn(2, 8), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must be int64"):
        head(torch.randn(2, 8), torch.tensor([0.0, 1.0]))
