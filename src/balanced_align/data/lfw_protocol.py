"""LFW held-out-set protocol over an identity-folder tree (train / val / test by LFW sets).

LFW's official View 2 sets are person-disjoint. Holding out set ``k`` means:

- **test**: set ``k``'s pairs (``per_class`` matched then as many mismatched, file order),
  verified with ``num_folds`` folds dealt round-robin *within* the matched and *within* the
  mismatched pairs, so every fold is balanced (the file lists a set's matched pairs before its
  mismatched ones: contiguous folds would be one-sided). The test items are all images of
  set ``k``'s people in the tree, so a folder split of those people (probes / distractors,
  :func:`~balanced_align.data.evaluation_sets.build_folder_evaluation`) gives rank-1 as well;
- **val** (checkpoint selection, never set ``k``): the same for another set ``k'``;
- **train**: every identity of the tree that appears in neither set's pairs (people of the
  other sets and people in no pair).

Images are matched to the tree by path (``name/name_NNNN.jpg`` relative to the tree's root).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.data.evaluation_sets import EvaluationItems, build_folder_evaluation
from balanced_align.data.formats.lfw import LFWPairs, read_lfw_pairs

logger = logging.getLogger(__name__)


def balanced_folds(issame: np.ndarray, num_folds: int = 10) -> np.ndarray:
    """(P,) int64 fold per pair: matched pairs dealt round-robin in order, mismatched likewise.

    Each fold gets ``⌊n/num_folds⌋`` or one more of each class, whatever the order of the
    pairs. Raises ValueError if either class has fewer than ``num_folds`` pairs.
    """
    issame = np.asarray(issame, bool)
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    folds = np.empty(issame.shape, np.int64)
    for flag in (True, False):
        rows = np.flatnonzero(issame == flag)
        if len(rows) < num_folds:
            kind = "matched" if flag else "mismatched"
            raise ValueError(
                f"balanced_folds: {len(rows)} {kind} pairs cannot fill {num_folds} folds"
            )
        folds[rows] = np.arange(len(rows)) % num_folds
    return folds


def set_pairs(pairs: LFWPairs, set_number: int) -> np.ndarray:
    """(P_k,) int64 indices of the pairs of set ``set_number`` (1-based, as LFW numbers them)."""
    num_sets = int(pairs.folds.max()) + 1 if len(pairs) else 0
    if not 1 <= int(set_number) <= num_sets:
        raise ValueError(
            f"LFW set {set_number} does not exist in {str(pairs.source)!r}: it has sets "
            f"1..{num_sets}"
        )
    return np.flatnonzero(pairs.folds == int(set_number) - 1)


def set_people(pairs: LFWPairs, set_number: int) -> set[str]:
    """Names of everyone appearing in a pair of set ``set_number`` (1-based)."""
    chosen = set_pairs(pairs, set_number)
    rows = np.concatenate([pairs.pairs_a[chosen], pairs.pairs_b[chosen]])
    return {pairs.names[int(i)] for i in rows}


def _identity(source, name: str) -> int | None:
    classes = list(source.classes)
    lo = int(np.searchsorted(classes, name))
    return lo if lo < len(classes) and classes[lo] == name else None


def set_evaluation(
    source,
    pairs: LFWPairs,
    set_number: int,
    num_folds: int = 10,
    distractor_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[EvaluationItems, EvaluationProtocol]:
    """Evaluation items and protocol of LFW set ``set_number`` over ``source``.

    source: an :class:`~balanced_align.data.sources.ImageFolderSource` (``classes``,
    ``paths`` relative to its root, ``labels``) holding the LFW tree of ``pairs``.
    Items: every image of the set's people (probes then distractors, as
    :func:`build_folder_evaluation`); verification: the set's official pairs with
    :func:`balanced_folds`. A pair whose image is not in ``source`` (skipped as a bad sample)
    (and a person with no image left) is left out with a warning; ValueError if no pair is
    left.
    """
    people = sorted(set_people(pairs, set_number))
    identities = [_identity(source, name) for name in people]
    absent = [name for name, i in zip(people, identities, strict=True) if i is None]
    if absent:
        logger.warning(
            "LFW set %d: %d people have no usable image in %r (their pairs are left out): %s",
            set_number,
            len(absent),
            source,
            absent,
        )
    identities = [i for i in identities if i is not None]
    items, folder_protocol = build_folder_evaluation(
        source,
        num_pairs=20 * num_folds,
        distractor_fraction=distractor_fraction,
        seed=seed,
        num_folds=num_folds,
        identities=identities,
    )
    subset = items.parts[0]
    root = Path(pairs.root)
    row_of = {source.paths[int(s)]: r for r, s in enumerate(subset.indices)}
    chosen = set_pairs(pairs, set_number)
    keys = [Path(p).relative_to(root).as_posix() for p in pairs.paths]
    keep, lost = [], set()
    for k in chosen:
        a, b = keys[int(pairs.pairs_a[k])], keys[int(pairs.pairs_b[k])]
        missing = [key for key in (a, b) if key not in row_of]
        lost.update(missing)
        if not missing:
            keep.append(int(k))
    if lost:
        logger.warning(
            "LFW set %d: %d of %d pairs left out, their images are not in %r: %s",
            set_number,
            len(chosen) - len(keep),
            len(chosen),
            source,
            sorted(lost),
        )
    if not keep:
        raise ValueError(f"LFW set {set_number}: no pair has both images in {source!r}")
    keep = np.asarray(keep, np.int64)
    issame = pairs.issame[keep]
    protocol = EvaluationProtocol(
        pairs_a=np.array([row_of[keys[int(i)]] for i in pairs.pairs_a[keep]], np.int64),
        pairs_b=np.array([row_of[keys[int(i)]] for i in pairs.pairs_b[keep]], np.int64),
        issame=issame,
        pair_folds=balanced_folds(issame, num_folds),
        probe_indices=folder_protocol.probe_indices,
        distractor_indices=folder_protocol.distractor_indices,
    )
    protocol.validate(len(items))
    return items, protocol


@dataclass
class HeldOutSplit:
    """Train identities (source labels) and the val / test evaluation sets of one split."""

    train_identities: np.ndarray
    val: tuple[EvaluationItems, EvaluationProtocol]
    test: tuple[EvaluationItems, EvaluationProtocol]
    test_set: int
    val_set: int


def held_out_split(
    source,
    pairs_path: str | Path,
    test_set: int | None,
    val_set: int | None = None,
    num_folds: int = 10,
    distractor_fraction: float = 0.5,
    seed: int = 0,
) -> HeldOutSplit:
    """Split ``source`` (the LFW tree) by LFW sets: test on ``test_set``, validate on
    ``val_set`` (default: the next set, cyclically), train on everyone else.

    ``test_set=None``: set ``seed % num_sets + 1``, so that a sweep over seeds holds out a
    different set per seed (seed 0 → set 1, seed 1 → set 2, …).

    ValueError if the two sets are equal or share people (LFW's sets do not).
    """
    pairs = read_lfw_pairs(pairs_path, source.root, check_images=False)
    num_sets = int(pairs.folds.max()) + 1
    test_set = int(seed) % num_sets + 1 if test_set is None else int(test_set)
    set_pairs(pairs, test_set)  # checks the number
    val_set = test_set % num_sets + 1 if val_set is None else int(val_set)
    if val_set == test_set:
        raise ValueError(
            f"data.source.val_set={val_set} equals data.source.test_set: validation must not see "
            "the test set"
        )
    test_people, val_people = set_people(pairs, test_set), set_people(pairs, val_set)
    shared = test_people & val_people
    if shared:
        raise ValueError(
            f"LFW sets {test_set} and {val_set} of {str(pairs_path)!r} share "
            f"{len(shared)} people (e.g. {sorted(shared)[:3]}); LFW's sets are person-disjoint"
        )
    logger.info("LFW sets: test %d, validation %d (%s)", test_set, val_set, pairs_path)
    held_out = test_people | val_people
    train = np.array([i for i, name in enumerate(source.classes) if name not in held_out], np.int64)
    return HeldOutSplit(
        train_identities=train,
        val=set_evaluation(source, pairs, val_set, num_folds, distractor_fraction, seed),
        test=set_evaluation(source, pairs, test_set, num_folds, distractor_fraction, seed + 1),
        test_set=test_set,
        val_set=val_set,
    )
