"""The LFW tree as a data source, split by LFW's official person-disjoint sets.

Test on the pairs of set ``test_set``, validate (checkpoint selection) on set ``val_set``'s
(None: the next set), train on everyone in neither set (:mod:`..lfw_protocol`);
``test_set=None`` holds out set ``seed % num_sets + 1`` (one set per seed).
"""

from __future__ import annotations

from dataclasses import dataclass

from balanced_align.data.lfw_protocol import held_out_split
from balanced_align.data.source_kinds.base import BuildOptions, FaceSource, Splits
from balanced_align.data.source_kinds.tree import TreeOptions, check_min_images, training_subset


@dataclass(frozen=True)
class LFWSource(TreeOptions, FaceSource):
    """The tree options (:class:`TreeOptions`: ``root`` holds the identity folders) and:

    pairs: LFW's ``pairs.txt``. test_set, val_set: the held-out sets (1-based).
    distractor_fraction: the share of a held-out set's people that are MegaFace
    distractors. min_images_per_identity: training identities with fewer usable images are
    left out of training.
    """

    kind = "lfw"

    pairs: str | None = None
    test_set: int | None = 1
    val_set: int | None = None
    distractor_fraction: float = 0.5
    min_images_per_identity: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs is None:
            raise self.error("pairs", "needs LFW's pairs.txt")
        check_min_images(self, self.min_images_per_identity)

    def build(self, options: BuildOptions) -> Splits:
        source = self.open(options)
        split = held_out_split(
            source,
            self.pairs,
            test_set=self.test_set,
            val_set=self.val_set,
            distractor_fraction=float(self.distractor_fraction),
            seed=options.seed,
        )
        key = f"{self.config_key}.min_images_per_identity"
        train = training_subset(source, split.train_identities, self.min_images_per_identity, key)
        return Splits(
            train_records=train,
            val=split.val,
            test=split.test,
            records=source,
            schema=source.schema,
            has_landmarks=source.has_landmarks,
            skipped=source.skipped,
        )
