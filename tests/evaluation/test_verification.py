"""Verification protocol vs a brute-force numpy implementation with sklearn folds."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from balanced_align.evaluation import DEFAULT_THRESHOLDS, tar_at_far, verification_accuracy


def _pairs(n, dim=16, noise=0.9, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))
    issame = rng.random(n) < 0.5
    b = np.where(issame[:, None], a + noise * rng.normal(size=(n, dim)), rng.normal(size=(n, dim)))
    return a.astype(np.float32), b.astype(np.float32), issame


def _np_dist(a, b):
    a = a.astype(np.float64) / np.linalg.norm(a, axis=1, keepdims=True)
    b = b.astype(np.float64) / np.linalg.norm(b, axis=1, keepdims=True)
    return ((a - b) ** 2).sum(1)


def _brute_force(dist, issame, splits, thresholds):
    accs, chosen = [], []
    for train, test in splits:
        train_acc = [np.mean((dist[train] < t) == issame[train]) for t in thresholds]
        best = int(np.argmax(train_acc))
        chosen.append(thresholds[best])
        accs.append(np.mean((dist[test] < thresholds[best]) == issame[test]))
    return np.array(accs), np.array(chosen)


def test_default_folds_match_sklearn_kfold_and_brute_force():
    a, b, issame = _pairs(603)  # not a multiple of 10: uneven folds like KFold
    res = verification_accuracy(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(issame))
    dist = _np_dist(a, b)
    splits = KFold(n_splits=10, shuffle=False).split(dist)
    ref_acc, ref_thr = _brute_force(dist, issame, splits, np.linspace(0, 4, 401))
    assert 0.6 < res.accuracy_mean < 0.99  # a non-trivial problem
    np.testing.assert_allclose(res.fold_accuracies, ref_acc, atol=1e-12)
    np.testing.assert_allclose(res.thresholds, ref_thr, atol=1e-9)
    assert res.accuracy_mean == pytest.approx(ref_acc.mean())
    assert res.accuracy_std == pytest.approx(ref_acc.std())


def test_explicit_fold_ids_and_custom_thresholds():
    a, b, issame = _pairs(400, seed=1)
    rng = np.random.default_rng(5)
    folds = rng.permutation(np.repeat(np.arange(3, 8), 80))  # 5 interleaved sets, ids 3..7
    thr = np.linspace(0.5, 3.5, 61)
    res = verification_accuracy(a, b, issame, thresholds=thr, folds=folds)
    dist = _np_dist(a, b)
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(3, 8)]
    ref_acc, ref_thr = _brute_force(dist, issame, splits, thr)
    np.testing.assert_allclose(res.fold_accuracies, ref_acc, atol=1e-12)
    np.testing.assert_allclose(res.thresholds, ref_thr)


def test_roc_auc_matches_sklearn_with_ties():
    a, b, issame = _pairs(300, seed=2)
    # duplicate some pairs with the opposite label: exact score ties across classes
    a = np.concatenate([a, a[:40]])
    b = np.concatenate([b, b[:40]])
    issame = np.concatenate([issame, ~issame[:40]])
    res = verification_accuracy(a, b, issame)
    ref = roc_auc_score(issame, -_np_dist(a, b))
    assert res.roc_auc == pytest.approx(ref, abs=1e-12)


def test_tar_at_far_is_the_best_tar_under_the_far_budget():
    a, b, issame = _pairs(2400, noise=1.2, seed=3)
    dist = _np_dist(a, b)
    res = verification_accuracy(a, b, issame)
    candidates = np.append(np.unique(dist), np.inf)
    tar = np.array([(dist[issame] < t).mean() for t in candidates])
    far = np.array([(dist[~issame] < t).mean() for t in candidates])
    for f in (1e-1, 1e-2, 1e-3):
        assert res.tar_at_far[f] == pytest.approx(tar[far <= f].max(), abs=1e-12)
    assert 0 < res.tar_at_far[1e-3] < res.tar_at_far[1e-1] < 1
    assert tar_at_far(dist, issame, 1.0) == 1.0


def test_pair_at_the_threshold_counts_as_different():
    # orthogonal unit vectors: squared distance exactly 2
    a = np.tile([1.0, 0.0], (20, 1))
    b = np.tile([0.0, 1.0], (20, 1))
    same = np.ones(20, dtype=bool)
    assert verification_accuracy(a, b, same, thresholds=[2.0]).accuracy_mean == 0.0
    res = verification_accuracy(a, b, same, thresholds=[2.0, 2.5])
    assert res.accuracy_mean == 1.0
    assert res.thresholds == [2.5] * 10


def test_separable_pairs_and_embedding_scale_invariance():
    a, b, issame = _pairs(200, noise=0.05, seed=4)
    res = verification_accuracy(a, b, issame)
    assert res.accuracy_mean == 1.0 and res.accuracy_std == 0.0 and res.roc_auc == 1.0
    scaled = verification_accuracy(3 * a, 0.5 * b, issame)
    assert scaled.fold_accuracies == res.fold_accuracies
    assert (
        DEFAULT_THRESHOLDS[0] == 0
        and DEFAULT_THRESHOLDS[-1] == 4
        and DEFAULT_THRESHOLDS.size == 401
    )


def test_bad_inputs_raise_clear_errors():
    a, b, issame = _pairs(50)
    with pytest.raises(ValueError, match="emb_a and emb_b"):
        verification_accuracy(a, b[:, :8], issame)
    with pytest.raises(ValueError, match="issame"):
        verification_accuracy(a, b, issame[:10])
    with pytest.raises(ValueError, match="n_folds"):
        verification_accuracy(a[:5], b[:5], issame[:5])
    bad = a.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="emb_a"):
        verification_accuracy(bad, b, issame)
    with pytest.raises(ValueError, match="at least 2 folds"):
        verification_accuracy(a, b, issame, folds=np.zeros(50, dtype=int))
