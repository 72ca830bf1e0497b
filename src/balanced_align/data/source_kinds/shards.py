"""Tar shards as a data source: training streams the shards, evaluation is composed.

Training streams the shards at ``shards`` (``index.json`` or its folder; see
:mod:`balanced_align.data.shards`) with a :class:`ShardStream` that batches itself, so every
sample is read exactly once per epoch across DDP ranks and workers and every rank yields the
same number of batches; ``shuffle_buffer`` samples are shuffled per worker. ``evaluation``
builds the val / test sets: :class:`SynthFacesEvaluation` (identities after the shards'
``num_classes``) or :class:`FolderHalvesEvaluation` (an identity-folder tree split in halves).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from balanced_align.core.schema import get_schema
from balanced_align.data.shards import ShardIndex, ShardStream
from balanced_align.data.source_kinds.base import BuildOptions, FaceSource, Splits
from balanced_align.data.source_kinds.folder_halves import FolderHalvesEvaluation
from balanced_align.data.source_kinds.synthfaces import SynthFacesEvaluation


@dataclass(frozen=True)
class ShardSource(FaceSource):
    """shards: ``index.json`` or its folder. shuffle_buffer: samples shuffled per worker.
    evaluation: the val / test sets (see the module docstring)."""

    kind = "shards"

    shards: str | None = None
    shuffle_buffer: int = 1000
    evaluation: SynthFacesEvaluation | FolderHalvesEvaluation = field(
        default_factory=SynthFacesEvaluation
    )

    def __post_init__(self) -> None:
        if self.shards is None:
            raise self.error("shards", "needs the shards (index.json or its folder)")
        if not isinstance(self.evaluation, (SynthFacesEvaluation, FolderHalvesEvaluation)):
            raise self.error(
                "evaluation",
                "must be a SynthFacesEvaluation or FolderHalvesEvaluation, got "
                f"{type(self.evaluation).__name__}",
            )

    def known_num_classes(self) -> int:
        return ShardIndex.load(self.shards).num_classes

    def build(self, options: BuildOptions) -> Splits:
        index = ShardIndex.load(self.shards)
        # Every record once, in writing order (shards are written shuffled), in this
        # process: what mean_frontal_landmarks reads.
        records = ShardStream(
            index.path,
            None,
            shuffle_shards=False,
            shuffle_buffer=0,
            rank=0,
            world_size=1,
            worker_id=0,
            num_workers=1,
        )
        val, test, skipped = self.evaluation.build_evaluation(options, offset=index.num_classes)
        return Splits(
            train_records=records,
            val=val,
            test=test,
            records=records,
            schema=None if index.schema is None else get_schema(index.schema),
            has_landmarks=index.has_landmarks,
            skipped=skipped,
        )

    def train_stream(self, transform, *, seed: int, batch_size: int, collate_fn) -> ShardStream:
        return ShardStream(
            ShardIndex.load(self.shards).path,
            transform,
            shuffle_buffer=int(self.shuffle_buffer),
            seed=seed,
            batch_size=batch_size,
            collate_fn=collate_fn,
        )
