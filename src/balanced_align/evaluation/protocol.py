"""Run an evaluation protocol: one call that computes every metric it names.

An evaluation set is a flat list of items (row i = dataset index i, as returned by
:class:`~balanced_align.evaluation.metrics.EmbeddingCollector` with ``num_items``). An
:class:`EvaluationProtocol` (defined in :mod:`balanced_align.core.protocol`, re-exported here)
names the rows of each protocol (verification pairs, MegaFace
probes and distractors, the per-pose gallery and probes, the ANME faces); empty index arrays
switch a protocol off. :func:`evaluate_protocol` runs them and returns flat metric names
(the LightningModule adds the ``val/`` or ``test/`` prefix).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.evaluation._inputs import as_tensor, float_matrix, label_vector, vector
from balanced_align.evaluation.anme import anme
from balanced_align.evaluation.identification import megaface_rank1
from balanced_align.evaluation.pose import per_pose_rank1
from balanced_align.evaluation.verification import DEFAULT_FARS, verification_accuracy

__all__ = ["EvaluationProtocol", "evaluate_protocol", "far_metric_name"]


def far_metric_name(far: float) -> str:
    exponent = round(math.log10(far)) if far > 0 else None
    if exponent is not None and math.isclose(far, 10.0**exponent):
        return f"tar@far=1e{exponent}"
    return f"tar@far={far:g}"


def evaluate_protocol(
    protocol: EvaluationProtocol,
    embeddings,
    labels=None,
    yaw=None,
    aligned_landmarks=None,
    schema=None,
    valid=None,
) -> dict[str, float]:
    """Run every protocol of ``protocol`` on one evaluation set's rows.

    Args:
        protocol: which rows feed which protocol.
        embeddings: (N, D) rows ordered by dataset index (flip-TTA'd; normalised inside).
        labels: (N,) integer identities (needed for identification and per-pose).
        yaw: (N,) degrees (needed for per-pose).
        aligned_landmarks: optional (N, S, 2) deformed landmarks for ANME (needs ``schema``).
        schema: landmark schema (or name) of ``aligned_landmarks``.
        valid: optional (N,) or (N, S) bool, False for faces or points left out of ANME
            (failed inverse warps); ignored without ``aligned_landmarks``.

    Returns:
        Flat metrics: ``verif_acc``, ``verif_acc_std``, ``verif_auc``, ``tar@far=1e-1`` …,
        ``rank1``, ``cmc@5``, ``rank1_yaw15`` … ``rank1_yaw90`` (NaN for empty bins),
        ``anme`` — each group only when its rows are given.
    """
    emb = float_matrix(embeddings, "embeddings")
    n = emb.shape[0]
    protocol.validate(n)
    device = emb.device

    def rows(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)

    def need_labels() -> torch.Tensor:
        if labels is None:
            raise ValueError("labels: required for identification and per-pose protocols")
        return label_vector(labels, "labels", n, device)

    out: dict[str, float] = {}
    if np.asarray(protocol.pairs_a).size:
        ver = verification_accuracy(
            emb[rows(protocol.pairs_a)],
            emb[rows(protocol.pairs_b)],
            np.asarray(protocol.issame).astype(bool),
            folds=protocol.pair_folds,
            fars=DEFAULT_FARS,
        )
        out["verif_acc"] = ver.accuracy_mean
        out["verif_acc_std"] = ver.accuracy_std
        out["verif_auc"] = ver.roc_auc
        for far, tar in ver.tar_at_far.items():
            out[far_metric_name(far)] = tar

    if np.asarray(protocol.probe_indices).size:
        lab = need_labels()
        probes, distractors = rows(protocol.probe_indices), rows(protocol.distractor_indices)
        clash = torch.isin(lab[distractors], lab[probes])
        if bool(clash.any()):
            raise ValueError(
                "EvaluationProtocol.distractor_indices: distractor identities must be disjoint "
                f"from the probes'; {int(clash.sum())} distractors share a probe label "
                f"(e.g. {int(lab[distractors][clash][0])})"
            )
        ranks = [r for r in protocol.cmc_ranks if r <= distractors.numel()]
        ident = megaface_rank1(emb[probes], lab[probes], emb[distractors], ranks=ranks)
        out["rank1"] = ident.rank1
        for r in ranks:
            if r != 1:
                out[f"cmc@{r}"] = ident.cmc[r]

    if np.asarray(protocol.gallery_indices).size and np.asarray(protocol.pose_probe_indices).size:
        lab = need_labels()
        if yaw is None:
            raise ValueError("yaw: required for the per-pose protocol")
        yaw_t = vector(yaw, "yaw", n).to(device)
        gal, probe = rows(protocol.gallery_indices), rows(protocol.pose_probe_indices)
        per_bin = per_pose_rank1(
            emb[gal],
            lab[gal],
            emb[probe],
            lab[probe],
            yaw_t[probe],
            bins=protocol.pose_bins,
            tolerance=protocol.pose_tolerance,
        )
        for b, res in per_bin.items():
            out[f"rank1_yaw{b:g}"] = res.rank1

    if aligned_landmarks is not None:
        if schema is None:
            raise ValueError("schema: required with aligned_landmarks")
        lmk = as_tensor(aligned_landmarks, "aligned_landmarks")
        if lmk.ndim != 3 or lmk.shape[0] != n:
            raise ValueError(
                f"aligned_landmarks: expected shape ({n}, S, 2), got {tuple(lmk.shape)}"
            )
        mask = None
        if valid is not None:  # (N,) per face or (N, S) per point
            mask = as_tensor(valid, "valid")
            if mask.shape[0] != n:
                raise ValueError(f"valid: expected {n} rows, got {tuple(mask.shape)}")
        if protocol.anme_indices is not None:
            sel = torch.as_tensor(np.asarray(protocol.anme_indices, dtype=np.int64))
            lmk = lmk[sel.to(lmk.device)]
            mask = None if mask is None else mask[sel.to(mask.device)]
        out["anme"] = anme(lmk, schema, valid=mask)
    return out
