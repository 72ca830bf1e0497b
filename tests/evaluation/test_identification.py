"""MegaFace identification vs numpy brute force, a hand-built set, memmaps and faiss."""

import faiss
import numpy as np
import pytest
import torch

from balanced_align.evaluation import distractor_topk, megaface_rank1


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _problem(n_ids=8, per_id=4, n_distr=300, dim=8, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per_id)
    probes = centres[labels] + noise * rng.normal(size=(labels.size, dim)) * np.sqrt(dim)
    distr = rng.normal(size=(n_distr, dim))
    return probes.astype(np.float32), labels, distr.astype(np.float32)


def _brute_ranks(probes, labels, distr):
    """Mate rank 1 + #{d : s(j, d) >= s(j, i)} of every ordered same-identity pair (i, j)."""
    p, d = _unit(probes.astype(np.float64)), _unit(distr.astype(np.float64))
    ranks = []
    for j in range(len(p)):
        sd = d @ p[j]
        for i in range(len(p)):
            if i != j and labels[i] == labels[j]:
                ranks.append(1 + int((sd >= p[j] @ p[i]).sum()))
    return np.array(ranks)


def test_hand_built_set_with_known_ranks():
    probes = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0], [-0.6, -0.8]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2])  # identity 2 has one image: no trials
    distr = np.array([[0.6, 0.8], [0, -1], [-0.8, 0.6]], dtype=np.float32)
    # trials (gallery -> probe): A0->A1 rank 2, A1->A0 rank 1, B0->B1 rank 3 (a tie at 0
    # counts against the mate), B1->B0 rank 3
    res = megaface_rank1(torch.from_numpy(probes), labels, distr, ranks=(2, 3))
    assert res.num_pairs == 4 and res.num_distractors == 3
    assert res.rank1 == 0.25
    assert res.cmc == {1: 0.25, 2: 0.5, 3: 1.0}


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_on_random_sets(seed):
    probes, labels, distr = _problem(seed=seed)
    ranks = _brute_ranks(probes, labels, distr)
    res = megaface_rank1(probes, labels, torch.from_numpy(distr), ranks=(1, 2, 5, 10))
    assert res.num_pairs == len(ranks) == 8 * 4 * 3
    assert 0.1 < res.rank1 < 0.9  # non-trivial
    for r in (1, 2, 5, 10):
        assert res.cmc[r] == pytest.approx((ranks <= r).mean(), abs=1e-12)


def test_chunk_size_does_not_change_the_result():
    probes, labels, distr = _problem(seed=2)
    ref = megaface_rank1(probes, labels, distr, chunk_size=10_000, ranks=(1, 3))
    for chunk in (1, 7, 64):
        res = megaface_rank1(probes, labels, distr, chunk_size=chunk, ranks=(1, 3))
        assert res.cmc == ref.cmc and res.num_pairs == ref.num_pairs


def test_memmap_source_gives_the_same_result(tmp_path):
    probes, labels, distr = _problem(seed=3)
    mm = np.memmap(tmp_path / "distr.f32", dtype=np.float32, mode="w+", shape=distr.shape)
    mm[:] = distr
    mm.flush()
    ro = np.memmap(tmp_path / "distr.f32", dtype=np.float32, mode="r", shape=distr.shape)
    ref = megaface_rank1(probes, labels, torch.from_numpy(distr), ranks=(1, 5))
    res = megaface_rank1(probes, labels, ro, chunk_size=50, ranks=(1, 5))
    assert res.cmc == ref.cmc
    # float16 storage is converted chunk by chunk
    half = megaface_rank1(probes, labels, distr.astype(np.float16), chunk_size=50)
    assert abs(half.rank1 - ref.rank1) <= 2 / ref.num_pairs


def test_faiss_flat_ip_gives_the_same_ranks():
    probes, labels, distr = _problem(n_ids=20, per_id=5, n_distr=5000, dim=32, noise=0.15, seed=4)
    res = megaface_rank1(probes, labels, distr, chunk_size=1000, ranks=(1, 5))
    p, d = _unit(probes).astype(np.float32), _unit(distr).astype(np.float32)
    index = faiss.IndexFlatIP(d.shape[1])
    index.add(d)
    top, _ = index.search(p, 5)  # (P, 5) descending
    mate = p @ p.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(p), dtype=bool)
    for r in (1, 5):
        hits = (mate > top[:, r - 1 : r]) & same  # row j = probe, column i = gallery
        assert res.cmc[r] == pytest.approx(hits.sum() / same.sum(), abs=1e-12)
    assert 0.1 < res.rank1 < 0.9


def test_distractor_topk_sorted_and_padded():
    probes, _, distr = _problem(seed=5)
    p = torch.nn.functional.normalize(torch.from_numpy(probes), dim=1)
    top = distractor_topk(p, distr[:3], k=5, chunk_size=2)
    assert torch.isinf(top[:, 3:]).all() and (top[:, 3:] < 0).all()
    ref = np.sort(_unit(probes) @ _unit(distr[:3]).T, axis=1)[:, ::-1]
    np.testing.assert_allclose(top[:, :3].numpy(), ref, atol=1e-6)
    # no distractors at all: every trial is a hit
    assert megaface_rank1(probes, np.repeat(np.arange(8), 4), distr[:0]).rank1 == 1.0


def test_bad_inputs_raise_clear_errors():
    probes, labels, distr = _problem()
    with pytest.raises(ValueError, match="distractor_emb: feature size"):
        megaface_rank1(probes, labels, distr[:, :4])
    bad = distr.copy()
    bad[17, 2] = np.inf
    with pytest.raises(ValueError, match=r"distractor_emb: rows 10\.\.19"):
        megaface_rank1(probes, labels, bad, chunk_size=10)
    with pytest.raises(ValueError, match="probe_labels"):
        megaface_rank1(probes, labels[:5], distr)
    with pytest.raises(ValueError, match="two or more"):
        megaface_rank1(probes, np.arange(len(probes)), distr)
    with pytest.raises(ValueError, match="ranks"):
        megaface_rank1(probes, labels, distr, ranks=(0,))
    with pytest.raises(TypeError, match="probe_labels"):
        megaface_rank1(probes, labels.astype(float), distr)
