"""EvaluationProtocol.restricted: the protocol of the rows a limited evaluation saw."""

import numpy as np
import pytest
import torch

from balanced_align.core.protocol import EvaluationProtocol, contiguous_folds
from balanced_align.evaluation import evaluate_protocol
from tests.evaluation.test_protocol import _evaluation_set


def test_a_permutation_of_all_rows_gives_the_same_metrics():
    """Rows seen in another order: the restricted protocol on the reordered embeddings is the
    same evaluation (the default folds become explicit and stay those of the whole set)."""
    protocol, emb, labels, yaw = _evaluation_set()
    order = np.random.default_rng(1).permutation(len(labels))
    restricted = protocol.restricted(order, labels[order])
    full = evaluate_protocol(protocol, emb, labels=labels, yaw=yaw)
    moved = evaluate_protocol(restricted, emb[order], labels=labels[order], yaw=yaw[order])
    assert moved.keys() == full.keys()
    for key, value in full.items():
        assert moved[key] == pytest.approx(value, nan_ok=True), key


def test_kept_rows_and_pairs_are_exactly_those_seen():
    protocol, emb, labels, yaw = _evaluation_set()
    seen = np.sort(np.random.default_rng(2).choice(len(labels), size=50, replace=False))
    restricted = protocol.restricted(seen, labels[seen])
    seen_set = set(seen.tolist())
    pairs = [
        (a, b, s, f)
        for a, b, s, f in zip(
            protocol.pairs_a, protocol.pairs_b, protocol.issame, contiguous_folds(200, 10)
        )
        if a in seen_set and b in seen_set
    ]
    assert [(seen[a], seen[b]) for a, b in zip(restricted.pairs_a, restricted.pairs_b)] == [
        (a, b) for a, b, _, _ in pairs
    ]
    assert restricted.issame.tolist() == [bool(s) for _, _, s, _ in pairs]
    assert restricted.pair_folds.tolist() == [f for _, _, _, f in pairs]
    for name in ("probe_indices", "distractor_indices", "gallery_indices"):
        expected = [r for r in np.asarray(getattr(protocol, name)).tolist() if r in seen_set]
        assert seen[getattr(restricted, name)].tolist() == expected, name
    # per-pose probes: seen, and their identity's gallery image seen too
    gallery_ids = {int(labels[r]) for r in protocol.gallery_indices if r in seen_set}
    expected = [
        r for r in protocol.pose_probe_indices if r in seen_set and int(labels[r]) in gallery_ids
    ]
    assert 0 < len(expected) < len(protocol.pose_probe_indices)
    assert seen[restricted.pose_probe_indices].tolist() == expected
    restricted.validate(len(seen))
    metrics = evaluate_protocol(restricted, emb[seen], labels=labels[seen], yaw=yaw[seen])
    assert 0 <= metrics["rank1"] <= 1 and 0 <= metrics["verif_acc"] <= 1


def test_verification_is_switched_off_when_no_threshold_can_be_chosen():
    """All kept pairs in one fold: no held-out fold to pick a threshold on."""
    protocol = EvaluationProtocol(
        pairs_a=np.arange(20),
        pairs_b=np.arange(20) + 20,
        issame=np.arange(20) % 2 == 0,
        probe_indices=np.arange(4),
    )
    restricted = protocol.restricted(np.concatenate([[0, 1], [20, 21]]))  # pairs 0, 1: fold 0
    assert restricted.counts()["pairs_a"] == 0 and restricted.pair_folds is None
    metrics = evaluate_protocol(
        restricted, torch.randn(4, 8), labels=torch.tensor([0, 0, 1, 1]), yaw=torch.zeros(4)
    )
    assert "verif_acc" not in metrics and "rank1" in metrics


def test_seen_rows_must_be_distinct():
    with pytest.raises(ValueError, match="distinct rows"):
        EvaluationProtocol().restricted([0, 0, 1])


def test_without_labels_a_partly_seen_gallery_switches_per_pose_off():
    protocol, *_ = _evaluation_set()
    restricted = protocol.restricted(np.arange(30))  # 5 of the 12 gallery images
    assert restricted.counts()["pose_probe_indices"] == 0
    assert restricted.counts()["gallery_indices"] == 0
