"""EvaluationProtocol validation and evaluate_protocol's flat metrics."""

import math

import numpy as np
import pytest
import torch

from balanced_align.data.schema import FIVE
from balanced_align.evaluation import (
    EvaluationProtocol,
    evaluate_protocol,
    megaface_rank1,
    per_pose_rank1,
    verification_accuracy,
)


def _evaluation_set(seed=0, n_ids=12, per_id=6, n_distr=40, dim=16, noise=0.6):
    """Rows: per_id images of each of n_ids identities, then n_distr distractor identities."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(n_ids), per_id), 100 + np.arange(n_distr)])
    centres = rng.normal(size=(labels.max() + 1, dim))
    emb = centres[labels] + noise * rng.normal(size=(labels.size, dim))
    yaw = np.where(
        np.arange(labels.size) % per_id == 0, 0.0, rng.choice([15, 30, 45, 90], labels.size)
    )
    n_id_rows = n_ids * per_id
    first = np.arange(0, n_id_rows, per_id)
    others = np.setdiff1d(np.arange(n_id_rows), first)
    pa = rng.integers(0, n_id_rows, 200)
    same = rng.random(200) < 0.5
    pb = np.where(same, first[labels[pa]] + (pa + 1) % per_id, rng.integers(0, n_id_rows, 200))
    protocol = EvaluationProtocol(
        pairs_a=pa,
        pairs_b=pb,
        issame=labels[pa] == labels[pb],
        pair_folds=None,
        probe_indices=np.arange(n_id_rows),
        distractor_indices=np.arange(n_id_rows, labels.size),
        gallery_indices=first,
        pose_probe_indices=others,
    )
    return protocol, torch.from_numpy(emb).float(), torch.from_numpy(labels), torch.from_numpy(yaw)


def test_metrics_equal_the_direct_protocol_calls():
    protocol, emb, labels, yaw = _evaluation_set()
    out = evaluate_protocol(protocol, emb, labels, yaw)
    ver = verification_accuracy(emb[protocol.pairs_a], emb[protocol.pairs_b], protocol.issame)
    ident = megaface_rank1(
        emb[protocol.probe_indices],
        labels[protocol.probe_indices],
        emb[protocol.distractor_indices],
        ranks=(5,),
    )
    pose = per_pose_rank1(
        emb[protocol.gallery_indices],
        labels[protocol.gallery_indices],
        emb[protocol.pose_probe_indices],
        labels[protocol.pose_probe_indices],
        yaw[protocol.pose_probe_indices],
    )
    expected = {
        "verif_acc": ver.accuracy_mean,
        "verif_acc_std": ver.accuracy_std,
        "verif_auc": ver.roc_auc,
        "tar@far=1e-1": ver.tar_at_far[0.1],
        "tar@far=1e-2": ver.tar_at_far[0.01],
        "tar@far=1e-3": ver.tar_at_far[0.001],
        "rank1": ident.rank1,
        "cmc@5": ident.cmc[5],
        **{f"rank1_yaw{b}": pose[b].rank1 for b in (15, 30, 45, 60, 75, 90)},
    }
    assert out.keys() == expected.keys()
    for key, value in expected.items():
        assert (math.isnan(value) and math.isnan(out[key])) or out[key] == value, key
    assert math.isnan(out["rank1_yaw60"])  # no probe at 60°
    assert 0.0 < out["rank1"] < 1.0 and 0.5 < out["verif_acc"] < 1.0


def test_separable_set_scores_perfectly_and_anme_of_a_template_is_zero():
    protocol, emb, labels, yaw = _evaluation_set(noise=0.01)
    template = np.array([[30.0, 40], [70, 40], [50, 60], [35, 80], [65, 80]])
    lmk = np.repeat(template[None], len(emb), axis=0)
    out = evaluate_protocol(protocol, emb, labels, yaw, aligned_landmarks=lmk, schema=FIVE)
    assert out["verif_acc"] == 1.0 and out["rank1"] == 1.0 and out["rank1_yaw90"] == 1.0
    assert out["anme"] == pytest.approx(0.0, abs=1e-12)
    lmk[3, 0, 0] += 8.0  # one face's left eye 8 px to the right: pupils 32 px apart, not 40
    valid = np.ones(len(emb), dtype=bool)
    only = EvaluationProtocol(anme_indices=np.array([1, 2, 3]))
    got = evaluate_protocol(only, emb, aligned_landmarks=lmk, schema=FIVE, valid=valid)
    # rows 1, 2, 3: point 0 spread (8/3 + 8/3 + 16/3)/3, others 0; pupils (40 + 40 + 32)/3 apart
    assert got == {"anme": pytest.approx((32 / 9) / 5 / (112 / 3), rel=1e-12)}
    valid[3] = False
    assert evaluate_protocol(only, emb, aligned_landmarks=lmk, schema=FIVE, valid=valid)[
        "anme"
    ] == (pytest.approx(0.0, abs=1e-12))


def test_empty_groups_are_skipped_and_cmc_needs_enough_distractors():
    protocol, emb, labels, _ = _evaluation_set()
    small = EvaluationProtocol(
        probe_indices=protocol.probe_indices, distractor_indices=protocol.distractor_indices[:3]
    )
    assert set(evaluate_protocol(small, emb, labels)) == {"rank1"}


def test_validate_reports_bad_rows():
    protocol, emb, labels, _ = _evaluation_set()
    n = len(emb)
    protocol.validate(n)
    with pytest.raises(ValueError, match=r"pairs_a: rows must lie in \[0, 10\)"):
        protocol.validate(10)
    with pytest.raises(ValueError, match="pairs_b: expected shape"):
        EvaluationProtocol(
            pairs_a=np.arange(4), pairs_b=np.arange(3), issame=np.ones(4, bool)
        ).validate(n)
    with pytest.raises(ValueError, match="probe_indices and distractor_indices share 1 rows"):
        EvaluationProtocol(probe_indices=np.arange(5), distractor_indices=np.arange(4, 9)).validate(
            n
        )
    with pytest.raises(ValueError, match="gallery_indices: contains repeated rows"):
        EvaluationProtocol(gallery_indices=np.array([1, 1])).validate(n)
    with pytest.raises(ValueError, match="pose_probe_indices: expected integers"):
        EvaluationProtocol(pose_probe_indices=np.array([1.0])).validate(n)
    # rows 8..11 are images of identity 1, which also has probes (rows 6, 7)
    clash = EvaluationProtocol(probe_indices=np.arange(8), distractor_indices=np.arange(8, 20))
    with pytest.raises(ValueError, match="disjoint"):
        evaluate_protocol(clash, emb, labels)
    with pytest.raises(ValueError, match="yaw: required"):
        evaluate_protocol(protocol, emb, labels)
    # valid without aligned landmarks is ignored (nothing to measure ANME on)
    assert evaluate_protocol(EvaluationProtocol(), emb, valid=np.ones(n, dtype=bool)) == {}
    with pytest.raises(ValueError, match="schema: required"):
        evaluate_protocol(EvaluationProtocol(), emb, aligned_landmarks=np.zeros((n, 5, 2)))
