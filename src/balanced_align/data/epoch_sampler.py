"""EpochSampler: a training order that is a pure function of ``(seed, epoch)``.

Lightning calls ``sampler.set_epoch(e)`` before each training epoch, also in a run resumed
from a checkpoint, so epoch ``e`` visits the same items in the same order whether or not
the run was interrupted before it. Each item is yielded as the key ``(epoch, index)``:
:class:`~balanced_align.data.datamodule.FaceSampleDataset` passes both to its transform,
which draws that sample's augmentation from ``(seed, epoch, index)`` alone. Nothing
depends on the DataLoader's worker count, worker seeds, persistent workers or the
samples drawn before.

It is a ``DistributedSampler``: under DDP each rank takes its share of the epoch's
permutation (``rank::num_replicas``, padded to equal length as torch does), and Lightning
keeps it instead of inserting its own sampler.

:class:`EpochLoader` starts its workers at the first batch, not at ``iter()``. Lightning
creates a resumed run's first iterator while restoring (before ``set_epoch``), and worker
processes take keys from the sampler as soon as they start: they would replay epoch 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DataLoader, DistributedSampler


class EpochSampler(DistributedSampler):
    """Shuffled ``(epoch, index)`` keys of ``dataset`` for epoch ``set_epoch(epoch)``.

    The permutation is ``torch.randperm(len(dataset))`` of a generator seeded with
    ``seed + epoch`` (torch's ``DistributedSampler`` rule). ``num_replicas`` / ``rank``
    default to a single process.
    """

    def __init__(self, dataset: Sized, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed)
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = int(self.epoch)
        return ((epoch, int(index)) for index in super().__iter__())


class EpochLoader(DataLoader):
    """A ``DataLoader`` whose ``iter()`` defers the real iterator (and its workers' start:
    their first requests to the sampler, or a stream's reading of the epoch) to the first
    ``next()``, after Lightning's ``set_epoch``. The shard loader
    (:class:`~balanced_align.data.shards.ShardLoader`) is one too."""

    def __iter__(self) -> Iterator[Any]:
        return _FirstBatchIterator(self)


class _FirstBatchIterator:
    def __init__(self, loader: EpochLoader) -> None:
        self._loader = loader
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> _FirstBatchIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = DataLoader.__iter__(self._loader)
        return next(self._iterator)
