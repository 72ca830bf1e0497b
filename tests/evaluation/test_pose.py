"""Per-pose rank-1: a constructed set with known answers and a numpy brute force."""

import math

import numpy as np
import pytest
import torch

from balanced_align.evaluation import assign_yaw_bins, per_pose_rank1


def test_constructed_set_with_known_answers():
    gallery = np.eye(4, dtype=np.float32)[:3]  # identities 10, 11, 12 on orthogonal axes
    g_labels = np.array([10, 11, 12])
    e = np.eye(4, dtype=np.float32)
    # (embedding, label, yaw): hit iff the embedding is nearest to its own gallery axis
    probes = [
        (e[0] + 0.1 * e[1], 10, 14.0),  # bin 15, hit
        (e[1], 10, -16.0),  # bin 15 (sign ignored), miss
        (e[1] + 0.2 * e[3], 11, 22.5),  # equidistant from 15 and 30 -> 15, hit
        (e[2], 12, 31.0),  # bin 30, hit
        (e[2], 11, -44.0),  # bin 45, miss
        (e[0], 10, 3.0),  # near-frontal: only in bin 0
        (e[0], 10, 100.0),  # beyond every bin: ignored
        (e[0], 10, math.nan),  # unknown yaw: ignored
    ]
    p_emb = np.stack([p[0] for p in probes])
    p_lab = np.array([p[1] for p in probes])
    p_yaw = np.array([p[2] for p in probes])
    res = per_pose_rank1(gallery, g_labels, torch.from_numpy(p_emb), p_lab, p_yaw)
    assert list(res) == [15, 30, 45, 60, 75, 90]
    assert res[15] == (2 / 3, 3)
    assert res[30] == (1.0, 1)
    assert res[45] == (0.0, 1)
    for b in (60, 75, 90):
        assert math.isnan(res[b].rank1) and res[b].count == 0
    frontal = per_pose_rank1(gallery, g_labels, p_emb, p_lab, p_yaw, include_frontal=True)
    assert next(iter(frontal)) == 0 and frontal[0] == (1.0, 1)
    narrow = per_pose_rank1(gallery, g_labels, p_emb, p_lab, p_yaw, tolerance=1.0)
    assert narrow[15].count == 2 and narrow[30].count == 1 and narrow[45].count == 1


def test_matches_numpy_brute_force_on_random_multipie_like_set():
    rng = np.random.default_rng(0)
    n_ids, dim = 30, 16
    centres = rng.normal(size=(n_ids, dim))
    gallery = centres + 0.3 * rng.normal(size=centres.shape)
    labels = rng.integers(0, n_ids, size=600)
    yaw = rng.choice(np.arange(-90, 91, 15), size=600) + rng.uniform(-5, 5, size=600)
    noise = 0.3 + np.abs(yaw)[:, None] / 60  # harder at large yaw
    probes = centres[labels] + noise * rng.normal(size=(600, dim))
    res = per_pose_rank1(gallery, np.arange(n_ids), probes, labels, yaw)

    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    hit = np.argmax(p @ g.T, axis=1) == labels
    nominal = np.round(np.abs(yaw) / 15) * 15
    for b in (15, 30, 45, 60, 75, 90):
        members = nominal == b
        assert res[b].count == members.sum() > 0
        assert res[b].rank1 == pytest.approx(hit[members].mean(), abs=1e-12)
    assert res[15].rank1 > res[90].rank1


def test_assign_yaw_bins_nearest_within_tolerance():
    yaw = torch.tensor([0.0, 7.5, 7.6, -29.0, 37.5, 200.0, float("nan")])
    out = assign_yaw_bins(yaw, bins=(30, 0, 45), tolerance=7.5)
    # 37.5 is equidistant from 30 and 45 -> the smaller bin (index 0 = 30)
    assert out.tolist() == [1, 1, -1, 0, 0, -1, -1]


def test_bad_inputs_raise_clear_errors():
    g = np.eye(3, dtype=np.float32)
    p = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="one image per identity"):
        per_pose_rank1(g, [0, 0, 1], p, [0, 1, 1], [15, 15, 15])
    with pytest.raises(ValueError, match="no gallery image"):
        per_pose_rank1(g, [0, 1, 2], p, [0, 1, 5], [15, 15, 15])
    with pytest.raises(ValueError, match="probe_yaw"):
        per_pose_rank1(g, [0, 1, 2], p, [0, 1, 2], [15, 15])
    with pytest.raises(ValueError, match="feature size"):
        per_pose_rank1(g[:, :2], [0, 1, 2], p, [0, 1, 2], [15, 15, 15])
