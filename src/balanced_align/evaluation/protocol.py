"""Which rows of an evaluation set feed which protocol, and one call that runs them all.

An evaluation set is a flat list of items (row i = dataset index i, as returned by
:class:`~balanced_align.evaluation.metrics.EmbeddingCollector` with ``num_items``). An
:class:`EvaluationProtocol` names the rows of each protocol (verification pairs, MegaFace
probes and distractors, the per-pose gallery and probes, the ANME faces); empty index arrays
switch a protocol off. :func:`evaluate_protocol` runs them and returns flat metric names
(the LightningModule adds the ``val/`` or ``test/`` prefix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from balanced_align.evaluation._inputs import as_tensor, float_matrix, label_vector, vector
from balanced_align.evaluation.anme import anme
from balanced_align.evaluation.identification import megaface_rank1
from balanced_align.evaluation.pose import DEFAULT_YAW_BINS, per_pose_rank1
from balanced_align.evaluation.verification import DEFAULT_FARS, verification_accuracy


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class EvaluationProtocol:
    """Row indices of each evaluation protocol within one evaluation set.

    pairs_a, pairs_b: (P,) rows of the two sides of each verification pair.
    issame: (P,) bool. pair_folds: optional (P,) fold id per pair (None: 10 contiguous folds).
    probe_indices: MegaFace probe rows (labels = identities; >= 2 images per identity count).
    distractor_indices: MegaFace distractor rows, identities disjoint from the probes'.
    gallery_indices: per-pose gallery rows, one frontal image per identity.
    pose_probe_indices: per-pose probe rows (binned by their yaw).
    pose_bins, pose_tolerance: yaw bin centres and half-width in degrees.
    cmc_ranks: CMC ranks reported besides rank-1 (each only if there are at least that many
        distractors).
    anme_indices: rows whose aligned landmarks enter ANME (None: all rows).
    """

    pairs_a: np.ndarray = field(default_factory=_empty)
    pairs_b: np.ndarray = field(default_factory=_empty)
    issame: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    pair_folds: np.ndarray | None = None
    probe_indices: np.ndarray = field(default_factory=_empty)
    distractor_indices: np.ndarray = field(default_factory=_empty)
    gallery_indices: np.ndarray = field(default_factory=_empty)
    pose_probe_indices: np.ndarray = field(default_factory=_empty)
    pose_bins: Sequence[float] = DEFAULT_YAW_BINS
    pose_tolerance: float = 7.5
    cmc_ranks: Sequence[int] = (5,)
    anme_indices: np.ndarray | None = None

    _INDEX_FIELDS = (
        "pairs_a",
        "pairs_b",
        "probe_indices",
        "distractor_indices",
        "gallery_indices",
        "pose_probe_indices",
    )

    def validate(self, num_items: int) -> None:
        """Raise ValueError naming the field for bad shapes, out-of-range or overlapping rows."""
        names = list(self._INDEX_FIELDS) + (
            ["anme_indices"] if self.anme_indices is not None else []
        )
        for name in names:
            a = np.asarray(getattr(self, name))
            if a.ndim != 1:
                raise ValueError(f"EvaluationProtocol.{name}: expected 1-D, got shape {a.shape}")
            if a.size and a.dtype.kind not in "iu":
                raise ValueError(f"EvaluationProtocol.{name}: expected integers, got {a.dtype}")
            if a.size and (a.min() < 0 or a.max() >= num_items):
                raise ValueError(
                    f"EvaluationProtocol.{name}: rows must lie in [0, {num_items}), "
                    f"got [{a.min()}, {a.max()}]"
                )
        n_pairs = np.asarray(self.pairs_a).size
        for name in ("pairs_b", "issame") + (
            ("pair_folds",) if self.pair_folds is not None else ()
        ):
            a = np.asarray(getattr(self, name))
            if a.shape != (n_pairs,):
                raise ValueError(
                    f"EvaluationProtocol.{name}: expected shape ({n_pairs},) like pairs_a, "
                    f"got {a.shape}"
                )
        same = np.asarray(self.issame)
        if same.size and not (same.dtype == bool or np.isin(same, (0, 1)).all()):
            raise ValueError("EvaluationProtocol.issame: expected booleans")
        for name in (
            "probe_indices",
            "distractor_indices",
            "gallery_indices",
            "pose_probe_indices",
        ):
            a = np.asarray(getattr(self, name))
            if np.unique(a).size != a.size:
                raise ValueError(f"EvaluationProtocol.{name}: contains repeated rows")
        for a_name, b_name in (
            ("probe_indices", "distractor_indices"),
            ("gallery_indices", "pose_probe_indices"),
        ):
            both = np.intersect1d(getattr(self, a_name), getattr(self, b_name))
            if both.size:
                raise ValueError(
                    f"EvaluationProtocol: {a_name} and {b_name} share {both.size} rows "
                    f"(e.g. {both[0]})"
                )
        if self.pose_tolerance < 0:
            raise ValueError("EvaluationProtocol.pose_tolerance must be >= 0")


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
