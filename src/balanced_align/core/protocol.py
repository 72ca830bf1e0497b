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
from dataclasses import dataclass, field, replace

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

    def counts(self) -> dict[str, int]:
        """Number of rows (pairs for ``pairs_a``) each protocol field refers to."""
        counts = {name: int(np.asarray(getattr(self, name)).size) for name in self._INDEX_FIELDS}
        counts.pop("pairs_b")
        if self.anme_indices is not None:
            counts["anme_indices"] = int(np.asarray(self.anme_indices).size)
        return counts

    def restricted(
        self, seen: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray | None = None
    ) -> EvaluationProtocol:
        """The protocol on the subset ``seen`` of the rows, renumbered: row ``seen[j]`` of this
        protocol is row j of the result.

        For an evaluation of part of a set (``limit_val_batches``, ``fast_dev_run``,
        ``overfit_batches``): a pair is kept when both its rows were seen, an index row when
        it was seen. Kept pairs keep their fold ids (the contiguous default folds of the whole
        set are made explicit); verification is switched off when the kept pairs span fewer
        than two folds or lack same or different pairs (no threshold could be chosen).
        ``labels`` (identities of the seen rows, in the order of ``seen``) also drops the
        per-pose probes whose identity's gallery image was not seen; without them the per-pose
        protocol is kept only when its whole gallery was seen.
        """
        seen = np.asarray(seen, dtype=np.int64)
        if seen.ndim != 1 or np.unique(seen).size != seen.size or (seen.size and seen.min() < 0):
            raise ValueError("EvaluationProtocol.restricted: seen must be distinct rows >= 0")
        size = max(int(seen.max(initial=-1)) + 1, self.max_row() + 1)
        position = np.full(size, -1, dtype=np.int64)
        position[seen] = np.arange(seen.size)

        def keep(name: str) -> np.ndarray:
            rows = np.asarray(getattr(self, name), dtype=np.int64)
            return position[rows][position[rows] >= 0]

        pairs_a = np.asarray(self.pairs_a, dtype=np.int64)
        pairs_b = np.asarray(self.pairs_b, dtype=np.int64)
        kept = (position[pairs_a] >= 0) & (position[pairs_b] >= 0)
        folds = self.pair_folds
        if folds is None:
            folds = contiguous_folds(pairs_a.size, 10) if pairs_a.size >= 10 else None
        folds = None if folds is None else np.asarray(folds)[kept]
        issame = np.asarray(self.issame).astype(bool)[kept]
        if folds is None or np.unique(folds).size < 2 or np.unique(issame).size < 2:
            kept = np.zeros_like(kept)
            folds, issame = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        gallery, pose_probes = keep("gallery_indices"), keep("pose_probe_indices")
        if labels is not None:
            labels = np.asarray(labels)
            pose_probes = pose_probes[np.isin(labels[pose_probes], labels[gallery])]
        elif gallery.size < np.asarray(self.gallery_indices).size:
            pose_probes = np.zeros(0, dtype=np.int64)
        return replace(
            self,
            pairs_a=position[pairs_a[kept]],
            pairs_b=position[pairs_b[kept]],
            issame=issame,
            pair_folds=folds if kept.any() else None,
            probe_indices=keep("probe_indices"),
            distractor_indices=keep("distractor_indices"),
            gallery_indices=gallery if pose_probes.size else np.zeros(0, dtype=np.int64),
            pose_probe_indices=pose_probes,
            anme_indices=None if self.anme_indices is None else keep("anme_indices"),
        )

    def max_row(self) -> int:
        """The largest row any protocol field refers to (-1 when none)."""
        names = [*self._INDEX_FIELDS] + (["anme_indices"] if self.anme_indices is not None else [])
        return max((int(np.max(getattr(self, n), initial=-1)) for n in names), default=-1)
