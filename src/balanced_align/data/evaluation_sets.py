"""Deterministic evaluation sets: one item list plus an :class:`EvaluationProtocol`.

See docs/design.md §5.

An evaluation set is a flat list of FaceRecords (row i = item i) whose labels number the
identities *of this set* (probe identities first, then distractor identities), so that
identification and per-pose protocols can compare labels directly. The protocol names
the rows of each protocol:

- verification pairs: balanced same / different pairs, drawn with
  ``np.random.default_rng(seed)``, split into ``num_folds`` folds with half same and
  half different pairs each (LFW style: each fold's same pairs, then its different ones);
- MegaFace probes (several images per probe identity) and distractors (other identities);
- per-pose gallery (one frontal image per probe identity) and pose probes (the probe
  images, whose yaw is known) — synthetic sets only.

Everything is a pure function of the arguments (seed included).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.data.record import FaceRecord
from balanced_align.data.sources import RecordSubset

logger = logging.getLogger(__name__)

ROLES = ("probe", "gallery", "distractor")


class EvaluationItems:
    """Concatenation of record data sets with labels and roles fixed per row.

    parts: data sets of FaceRecord, concatenated in order. labels: (N,) int64 label of
    every row (overrides the record's). roles: (N,) str, one of ``ROLES``. Each record's
    ``meta`` gains ``role`` and ``source_label`` (the label its part gave it).
    """

    def __init__(self, parts: Sequence, labels: np.ndarray, roles: np.ndarray, schema=None) -> None:
        self.parts = list(parts)
        self._ends = np.cumsum([len(p) for p in self.parts])
        total = int(self._ends[-1]) if len(self._ends) else 0
        self.labels = np.asarray(labels, np.int64)
        self.roles = np.asarray(roles)
        if self.labels.shape != (total,) or self.roles.shape != (total,):
            raise ValueError(
                f"EvaluationItems: labels {self.labels.shape} and roles {self.roles.shape} "
                f"must be ({total},) like the parts' total length"
            )
        self.schema = schema
        self.has_landmarks = all(getattr(p, "has_landmarks", True) for p in self.parts)

    @property
    def num_identities(self) -> int:
        return int(np.unique(self.labels).size)

    def rows(self, role: str) -> np.ndarray:
        """(R,) int64 rows with ``role``."""
        return np.flatnonzero(self.roles == role).astype(np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int) -> FaceRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"EvaluationItems: index {index} out of range for {len(self)}")
        part = int(np.searchsorted(self._ends, index, side="right"))
        local = index - (int(self._ends[part - 1]) if part else 0)
        record = self.parts[part][local]
        record.meta = dict(record.meta)
        record.meta["role"] = str(self.roles[index])
        record.meta["source_label"] = record.label
        record.label = int(self.labels[index])
        return record

    def __repr__(self) -> str:
        counts = {r: int((self.roles == r).sum()) for r in ROLES}
        return f"EvaluationItems({len(self)} items, {self.num_identities} identities, {counts})"


def max_balanced_pairs(labels: np.ndarray, num_folds: int = 10) -> int:
    """Largest num_pairs :func:`make_verification_pairs` can draw among rows of ``labels``."""
    _, sizes = np.unique(np.asarray(labels), return_counts=True)
    same = int((sizes * (sizes - 1) // 2).sum())
    different = (int(sizes.sum()) ** 2 - int((sizes**2).sum())) // 2
    per_fold = min(same, different) // num_folds
    return 2 * num_folds * per_fold


def _unique_pairs(rows, labels, count, same, rng, what) -> np.ndarray:
    """(count, 2) distinct unordered row pairs, same-identity or different-identity."""
    rows = np.asarray(rows, np.int64)
    labels = np.asarray(labels)
    if same:
        groups = [rows[labels == c] for c in np.unique(labels)]
        groups = [g for g in groups if len(g) >= 2]
        possible = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    else:
        _, sizes = np.unique(labels, return_counts=True)
        possible = (len(rows) ** 2 - int((sizes**2).sum())) // 2
    if count > possible:
        kind = "same-identity" if same else "different-identity"
        raise ValueError(
            f"{what}: {count} {kind} pairs requested but only {possible} exist; "
            "lower num_pairs or use more identities/images"
        )
    if same and count > possible // 2:  # dense: enumerate, then choose
        every = [(g[i], g[j]) for g in groups for i in range(len(g)) for j in range(i + 1, len(g))]
        chosen = rng.choice(len(every), size=count, replace=False)
        return np.asarray([every[k] for k in chosen], np.int64).reshape(-1, 2)
    if not same and count > possible // 2:
        every = [
            (rows[i], rows[j])
            for i in range(len(rows))
            for j in range(i + 1, len(rows))
            if labels[i] != labels[j]
        ]
        chosen = rng.choice(len(every), size=count, replace=False)
        return np.asarray([every[k] for k in chosen], np.int64).reshape(-1, 2)
    seen: set[tuple[int, int]] = set()
    out = []
    weights = np.array([len(g) * (len(g) - 1) for g in groups], float) if same else None
    while len(out) < count:
        if same:
            g = groups[rng.choice(len(groups), p=weights / weights.sum())]
            i, j = rng.choice(len(g), size=2, replace=False)
            a, b = int(g[i]), int(g[j])
        else:
            i, j = rng.choice(len(rows), size=2, replace=False)
            if labels[i] == labels[j]:
                continue
            a, b = int(rows[i]), int(rows[j])
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return np.asarray(out, np.int64).reshape(-1, 2)


def make_verification_pairs(
    rows: np.ndarray, labels: np.ndarray, num_pairs: int, seed: int, num_folds: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Balanced verification pairs among ``rows`` (with identity ``labels``).

    Returns pairs_a, pairs_b (P,) int64 rows, issame (P,) bool, folds (P,) int64, ordered
    fold by fold, each fold holding num_pairs / (2·num_folds) same then as many different
    pairs. Drawn with ``np.random.default_rng(seed)``; no pair repeats.
    """
    if num_pairs <= 0 or num_pairs % (2 * num_folds):
        raise ValueError(
            f"num_pairs must be a positive multiple of 2·num_folds = {2 * num_folds}, "
            f"got {num_pairs}"
        )
    rng = np.random.default_rng(seed)
    half = num_pairs // 2
    same = _unique_pairs(rows, labels, half, True, rng, "verification pairs")
    diff = _unique_pairs(rows, labels, half, False, rng, "verification pairs")
    per_fold = half // num_folds
    a, b, issame, folds = [], [], [], []
    for f in range(num_folds):
        for pairs, flag in ((same, True), (diff, False)):
            chunk = pairs[f * per_fold : (f + 1) * per_fold]
            a.append(chunk[:, 0])
            b.append(chunk[:, 1])
            issame.append(np.full(len(chunk), flag))
            folds.append(np.full(len(chunk), f, np.int64))
    return np.concatenate(a), np.concatenate(b), np.concatenate(issame), np.concatenate(folds)


def _default_synth_factory():
    from balanced_align.data.synthfaces import SynthFaces

    return SynthFaces


def build_synth_evaluation(
    num_identities: int,
    images_per_identity: int,
    num_distractor_identities: int,
    distractor_images: int = 1,
    image_size: int = 112,
    seed: int = 0,
    identity_offset: int = 0,
    num_pairs: int = 600,
    yaw_range: tuple[float, float] = (-90.0, 90.0),
    num_folds: int = 10,
    gallery_image_offset: int | None = None,
    knobs: dict | None = None,
    synth_factory: Callable | None = None,
) -> tuple[EvaluationItems, EvaluationProtocol]:
    """A SynthFaces evaluation set: probes at varied pose, frontal gallery, distractors.

    Global identities (SynthFaces' identity ids): probes ``identity_offset + [0, n)``,
    distractors ``identity_offset + n + [0, num_distractor_identities)``; keep them
    disjoint from training identities by the offset. Rows: probe images
    (``images_per_identity`` per identity, yaw drawn from ``yaw_range``), then one frontal
    gallery image per probe identity (a second SynthFaces with ``yaw_range=(0, 0)`` and
    image ids from ``gallery_image_offset``, default ``images_per_identity``, so never a
    probe image), then distractors. Labels: probe identity c → c, distractor d → n + d.

    Returns (items, protocol); ``protocol.validate(len(items))`` holds.
    """
    if num_identities < 2 or images_per_identity < 2:
        raise ValueError(
            "build_synth_evaluation: need num_identities >= 2 and images_per_identity >= 2, "
            f"got {num_identities}, {images_per_identity}"
        )
    if num_distractor_identities < 1 or distractor_images < 1:
        raise ValueError(
            "build_synth_evaluation: need num_distractor_identities >= 1 and "
            f"distractor_images >= 1, got {num_distractor_identities}, {distractor_images}"
        )
    factory = synth_factory or _default_synth_factory()
    knobs = dict(knobs or {})
    knobs.pop("yaw_range", None)
    common = dict(image_size=image_size, seed=seed, **knobs)
    n, k = num_identities, images_per_identity
    probes = factory(n, k, identity_offset=identity_offset, yaw_range=tuple(yaw_range), **common)
    gallery = factory(
        n,
        1,
        identity_offset=identity_offset,
        image_offset=k if gallery_image_offset is None else gallery_image_offset,
        yaw_range=(0.0, 0.0),
        **common,
    )
    distractors = factory(
        num_distractor_identities,
        distractor_images,
        identity_offset=identity_offset + n,
        yaw_range=tuple(yaw_range),
        **common,
    )
    labels = np.concatenate(
        [
            np.repeat(np.arange(n), k),
            np.arange(n),
            n + np.repeat(np.arange(num_distractor_identities), distractor_images),
        ]
    )
    roles = np.array(
        ["probe"] * (n * k)
        + ["gallery"] * n
        + ["distractor"] * (num_distractor_identities * distractor_images)
    )
    items = EvaluationItems(
        [probes, gallery, distractors], labels, roles, schema=getattr(probes, "schema", None)
    )
    probe_rows = items.rows("probe")
    a, b, same, folds = make_verification_pairs(
        probe_rows, labels[probe_rows], num_pairs, seed, num_folds
    )
    protocol = EvaluationProtocol(
        pairs_a=a,
        pairs_b=b,
        issame=same,
        pair_folds=folds,
        probe_indices=probe_rows,
        distractor_indices=items.rows("distractor"),
        gallery_indices=items.rows("gallery"),
        pose_probe_indices=probe_rows,
    )
    protocol.validate(len(items))
    return items, protocol


def build_folder_evaluation(
    source,
    num_pairs: int = 600,
    distractor_fraction: float = 0.5,
    seed: int = 0,
    num_folds: int = 10,
    identities: Sequence[int] | None = None,
    allow_fewer_pairs: bool = True,
) -> tuple[EvaluationItems, EvaluationProtocol]:
    """An evaluation set from an identity-folder source by splitting its identities.

    ``identities`` (source labels; default: all labels >= 0) are shuffled with
    ``np.random.default_rng(seed)``; a ``distractor_fraction`` of them (at least one)
    become MegaFace distractors, the rest probe identities. Rows: probe identities' images,
    then distractors' (each in source order); labels renumbered 0… in that order.
    Verification pairs are drawn among all rows; when the identities cannot supply
    ``num_pairs`` distinct balanced pairs, ``allow_fewer_pairs`` draws the largest
    possible number instead (with a logged warning), else ValueError. No per-pose
    protocol (empty gallery and pose-probe arrays).
    """
    labels = np.asarray(source.labels)
    chosen = np.unique(labels[labels >= 0]) if identities is None else np.unique(identities)
    if not 0.0 < distractor_fraction < 1.0:
        raise ValueError(f"distractor_fraction must lie in (0, 1), got {distractor_fraction}")
    if len(chosen) < 3:
        raise ValueError(
            f"build_folder_evaluation: {source!r} gives {len(chosen)} identities; need >= 3"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(chosen)
    num_distractors = min(len(order) - 2, max(1, round(distractor_fraction * len(order))))
    probe_ids = np.sort(order[num_distractors:])
    distractor_ids = np.sort(order[:num_distractors])
    probe_rows = np.flatnonzero(np.isin(labels, probe_ids))
    distractor_rows = np.flatnonzero(np.isin(labels, distractor_ids))
    subset = RecordSubset(source, np.concatenate([probe_rows, distractor_rows]), relabel=False)
    remap = {int(c): i for i, c in enumerate(np.concatenate([probe_ids, distractor_ids]))}
    new_labels = np.array([remap[int(c)] for c in subset.labels], np.int64)
    roles = np.array(["probe"] * len(probe_rows) + ["distractor"] * len(distractor_rows))
    items = EvaluationItems([subset], new_labels, roles, schema=getattr(source, "schema", None))
    items.has_landmarks = bool(getattr(source, "has_landmarks", False))
    possible = max_balanced_pairs(new_labels, num_folds)
    if allow_fewer_pairs and 0 < possible < num_pairs:
        logger.warning(
            "build_folder_evaluation(%r): %d identities give at most %d balanced verification "
            "pairs; using %d instead of num_pairs=%d",
            source,
            len(chosen),
            possible,
            possible,
            num_pairs,
        )
        num_pairs = possible
    a, b, same, folds = make_verification_pairs(
        np.arange(len(items)), new_labels, num_pairs, seed, num_folds
    )
    protocol = EvaluationProtocol(
        pairs_a=a,
        pairs_b=b,
        issame=same,
        pair_folds=folds,
        probe_indices=items.rows("probe"),
        distractor_indices=items.rows("distractor"),
    )
    protocol.validate(len(items))
    return items, protocol
