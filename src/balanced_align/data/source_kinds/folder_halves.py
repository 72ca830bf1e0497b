"""Evaluation on an identity-folder tree whose identities are split into val / test halves.

The shard kind's alternative to the SynthFaces evaluation sets: every identity of the tree
evaluates (none trains), so the tree may be small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balanced_align.data.evaluation_sets import build_folder_evaluation
from balanced_align.data.source_kinds.base import BuildOptions
from balanced_align.data.source_kinds.tree import TreeOptions


@dataclass(frozen=True)
class FolderHalvesEvaluation(TreeOptions):
    """The tree options (:class:`TreeOptions`); its identities, shuffled with the seed, split
    into halves (each >= 3 identities): val, then test. distractor_fraction, val_num_pairs,
    test_num_pairs: as for the folder kind."""

    kind = "folder_halves"
    config_key = "data.source.evaluation"

    distractor_fraction: float = 0.5
    val_num_pairs: int = 200
    test_num_pairs: int = 600

    def build_evaluation(self, options: BuildOptions, offset: int):
        """((val items, protocol), (test items, protocol), skipped); ``offset`` is unused
        (the tree's identities are other people than the training set's)."""
        source = self.open(options)
        identities = np.random.default_rng(options.seed).permutation(source.num_classes)
        half = len(identities) // 2
        if half < 3:
            raise ValueError(
                f"{source!r}: {len(identities)} identities cannot give val and test sets of "
                f">= 3 identities each ({self.config_key}.root)"
            )
        val = build_folder_evaluation(
            source,
            int(self.val_num_pairs),
            float(self.distractor_fraction),
            seed=options.seed,
            identities=identities[:half],
        )
        test = build_folder_evaluation(
            source,
            int(self.test_num_pairs),
            float(self.distractor_fraction),
            seed=options.seed + 1,
            identities=identities[half:],
        )
        return val, test, source.skipped
