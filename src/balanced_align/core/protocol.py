"""The plain evaluation protocol: which rows of an evaluation set feed which protocol.

This is the small shared core of docs/design.md §6: the data side builds an
:class:`EvaluationProtocol` (the formats' ``protocol()``, the evaluation-set builders), the
evaluation side runs it (:func:`balanced_align.evaluation.evaluate_protocol`); neither needs
the other. Only numpy here.

An evaluation set is a flat list of items (row i = dataset index i); empty index arrays
switch a protocol off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: centres of the |yaw| bins (degrees) of the per-pose protocol
DEFAULT_YAW_BINS = (15, 30, 45, 60, 75, 90)


def contiguous_folds(num_pairs: int, n_folds: int) -> np.ndarray:
    """Fold id per pair, contiguous in order, sizes as ``KFold(n_folds, shuffle=False)``."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if num_pairs < n_folds:
        raise ValueError(f"need at least n_folds={n_folds} pairs, got {num_pairs}")
    sizes = np.full(n_folds, num_pairs // n_folds)
    sizes[: num_pairs % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


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
