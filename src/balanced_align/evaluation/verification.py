"""Pair verification: k-fold accuracy with a learned threshold, ROC AUC and TAR@FAR.

See docs/design.md §5.2.

Protocol (LFW / insightface ``.bin`` style): both embeddings of a pair are L2-normalised, the
score is the squared Euclidean distance d ∈ [0, 4], and a pair is predicted "same" iff
d < threshold. For each fold, the threshold with the best accuracy on the other folds is picked
from a grid (0, 0.01, …, 4; the first one wins ties, like ``np.argmax``) and the accuracy on
the held-out fold is reported. Default folds are contiguous in file order, exactly
``sklearn.model_selection.KFold(n_splits=n_folds, shuffle=False)``; LFW's ``pairs.txt`` sets can
be given as explicit fold ids instead.

Distances are computed in float64 on the CPU (pairs are few; this keeps threshold decisions
independent of the device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import rankdata

from balanced_align.core.protocol import contiguous_folds
from balanced_align.evaluation._inputs import float_matrix, vector

#: The default threshold grid on the squared distance: 0, 0.01, …, 4.
DEFAULT_THRESHOLDS = np.round(np.arange(401) * 0.01, 2)

#: False accept rates at which TAR is reported.
DEFAULT_FARS = (1e-1, 1e-2, 1e-3)


@dataclass
class VerificationResult:
    """Outcome of :func:`verification_accuracy`.

    accuracy_mean, accuracy_std: mean and (population, ``np.std``) standard deviation of the
        held-out fold accuracies.
    thresholds: the threshold chosen for each fold (fold order = sorted fold ids).
    fold_accuracies: held-out accuracy of each fold.
    roc_auc: area under the ROC curve of the score −d on all pairs (ties count one half);
        NaN if only one class is present.
    tar_at_far: far -> true accept rate on all pairs at the largest threshold whose false
        accept rate is <= far (NaN if there are no same or no different pairs).
    """

    accuracy_mean: float
    accuracy_std: float
    thresholds: list[float]
    fold_accuracies: list[float]
    roc_auc: float
    tar_at_far: dict[float, float] = field(default_factory=dict)


def pair_distances(emb_a, emb_b) -> np.ndarray:
    """Squared Euclidean distance of L2-normalised pairs. (N, D), (N, D) -> (N,) float64."""
    a = float_matrix(emb_a, "emb_a").cpu().double()
    b = float_matrix(emb_b, "emb_b").cpu().double()
    if a.shape != b.shape:
        raise ValueError(f"emb_a and emb_b must have the same shape, got {a.shape} and {b.shape}")
    a = torch.nn.functional.normalize(a, dim=1)
    b = torch.nn.functional.normalize(b, dim=1)
    return ((a - b) ** 2).sum(1).numpy()


def _correct_counts(dist: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of correctly predicted pairs at each threshold ("same" iff dist < t). -> (T,)."""
    same_sorted = np.sort(dist[same])
    diff_sorted = np.sort(dist[~same])
    same_accepted = np.searchsorted(same_sorted, thresholds, side="left")
    diff_accepted = np.searchsorted(diff_sorted, thresholds, side="left")
    return same_accepted + (diff_sorted.size - diff_accepted)


def roc_auc(dist: np.ndarray, same: np.ndarray) -> float:
    """ROC AUC of the score −dist (Mann–Whitney statistic, ties count one half)."""
    n_pos = int(same.sum())
    n_neg = same.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(-dist)  # average ranks of the score, ascending
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(dist: np.ndarray, same: np.ndarray, far: float) -> float:
    """TAR at the largest threshold t with FAR(t) <= far, "same" iff dist < t.

    With k = floor(far · n_diff), the best threshold is the (k+1)-th smallest distance of the
    different pairs (at most k different pairs fall strictly below it), or +inf if k >= n_diff.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must lie in [0, 1], got {far}")
    same_d = dist[same]
    diff_d = np.sort(dist[~same])
    if same_d.size == 0 or diff_d.size == 0:
        return float("nan")
    k = math.floor(far * diff_d.size + 1e-9)
    if k >= diff_d.size:
        return 1.0
    return float((same_d < diff_d[k]).mean())


def verification_accuracy(
    emb_a,
    emb_b,
    issame,
    n_folds: int = 10,
    thresholds=None,
    folds=None,
    fars=DEFAULT_FARS,
) -> VerificationResult:
    """K-fold verification accuracy of embedding pairs.

    Args:
        emb_a, emb_b: (N, D) embeddings of the two sides of each pair (tensor or array, any
            device); L2-normalised here.
        issame: (N,) bool, True for pairs of the same identity.
        n_folds: number of contiguous folds in file order (ignored when ``folds`` is given).
        thresholds: 1-D grid of squared-distance thresholds; default 0, 0.01, …, 4.
        folds: optional (N,) integer fold id per pair (e.g. LFW ``pairs.txt`` sets); folds are
            taken in sorted id order.
        fars: false accept rates for ``tar_at_far``.

    Returns:
        :class:`VerificationResult`.
    """
    dist = pair_distances(emb_a, emb_b)
    n = dist.size
    same_t = vector(issame, "issame", n)
    if same_t.dtype != torch.bool:
        if same_t.is_floating_point() or not bool(((same_t == 0) | (same_t == 1)).all()):
            raise ValueError("issame: expected booleans (or 0/1 integers)")
        same_t = same_t.bool()
    same = same_t.cpu().numpy()

    if thresholds is None:
        thr = DEFAULT_THRESHOLDS
    else:
        thr = np.asarray(thresholds, dtype=np.float64)
        if thr.ndim != 1 or thr.size == 0 or not np.isfinite(thr).all():
            raise ValueError("thresholds: expected a non-empty 1-D array of finite values")

    if folds is None:
        fold_ids = contiguous_folds(n, n_folds)
    else:
        fold_ids = vector(folds, "folds", n).cpu().numpy()
        if fold_ids.dtype.kind not in "iu":
            raise TypeError(f"folds: expected integer fold ids, got {fold_ids.dtype}")
    fold_values = np.unique(fold_ids)
    if fold_values.size < 2:
        raise ValueError(f"need at least 2 folds, got {fold_values.size}")

    per_fold = np.stack(
        [_correct_counts(dist[fold_ids == f], same[fold_ids == f], thr) for f in fold_values]
    )  # (K, T)
    sizes = np.array([(fold_ids == f).sum() for f in fold_values])
    total = per_fold.sum(0)
    chosen, accs = [], []
    for k in range(fold_values.size):
        train_acc = (total - per_fold[k]) / (n - sizes[k])
        best = int(np.argmax(train_acc))
        chosen.append(float(thr[best]))
        accs.append(float(per_fold[k, best] / sizes[k]))

    return VerificationResult(
        accuracy_mean=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        thresholds=chosen,
        fold_accuracies=accs,
        roc_auc=roc_auc(dist, same),
        tar_at_far={float(f): tar_at_far(dist, same, float(f)) for f in fars},
    )
