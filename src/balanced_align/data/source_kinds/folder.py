"""An identity-folder tree as a data source, its identities split into train / val / test.

The identities are shuffled with the seed; ``val_fraction_identities`` and
``test_fraction_identities`` of them become the evaluation splits (each split's own probes
and distractors, ``distractor_fraction``), the rest trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balanced_align.data.evaluation_sets import build_folder_evaluation
from balanced_align.data.source_kinds.base import BuildOptions, FaceSource, Splits
from balanced_align.data.source_kinds.tree import TreeOptions, check_min_images, training_subset


@dataclass(frozen=True)
class FolderSource(TreeOptions, FaceSource):
    """The tree options (:class:`TreeOptions`) and its split.

    val_fraction_identities, test_fraction_identities: the evaluation splits' shares of the
    identities (each >= 3 identities, training >= 1). distractor_fraction: the share of an
    evaluation split's identities that are distractors. val_num_pairs, test_num_pairs:
    verification pairs (fewer when the identities cannot give them).
    min_images_per_identity: training identities with fewer usable images are left out of
    training (not of val / test).
    """

    kind = "folder"

    val_fraction_identities: float = 0.1
    test_fraction_identities: float = 0.1
    distractor_fraction: float = 0.5
    val_num_pairs: int = 200
    test_num_pairs: int = 600
    min_images_per_identity: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_min_images(self, self.min_images_per_identity)

    def build(self, options: BuildOptions) -> Splits:
        source = self.open(options)
        identities = np.random.default_rng(options.seed).permutation(source.num_classes)
        n_val = round(float(self.val_fraction_identities) * len(identities))
        n_test = round(float(self.test_fraction_identities) * len(identities))
        if n_val < 3 or n_test < 3 or len(identities) - n_val - n_test < 1:
            raise ValueError(
                f"{source!r}: {len(identities)} identities split with "
                f"data.source.val_fraction_identities={self.val_fraction_identities}, "
                f"data.source.test_fraction_identities={self.test_fraction_identities} gives "
                f"{n_val} val / {n_test} test identities; each evaluation split needs >= 3 and "
                "training >= 1"
            )
        val_ids, test_ids = identities[:n_val], identities[n_val : n_val + n_test]
        train_ids = identities[n_val + n_test :]
        key = f"{self.config_key}.min_images_per_identity"
        train = training_subset(source, train_ids, self.min_images_per_identity, key)
        evaluation = {}
        for split, ids, seed in (("val", val_ids, 0), ("test", test_ids, 1)):
            evaluation[split] = build_folder_evaluation(
                source,
                int(getattr(self, f"{split}_num_pairs")),
                float(self.distractor_fraction),
                seed=options.seed + seed,
                identities=ids,
            )
        return Splits(
            train_records=train,
            val=evaluation["val"],
            test=evaluation["test"],
            records=source,
            schema=source.schema,
            has_landmarks=source.has_landmarks,
            skipped=source.skipped,
        )
