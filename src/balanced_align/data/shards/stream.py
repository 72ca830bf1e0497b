"""Streaming a shard set: the per-epoch split over DDP ranks and DataLoader workers.

:class:`ShardStream` is an ``IterableDataset`` that reads each sample exactly once per epoch
across (rank, worker) pairs and, given a ``batch_size``, keeps ranks in step with equal batch
counts (the split is described in the package docstring, :mod:`balanced_align.data.shards`);
:class:`ShardLoader` is a ``DataLoader`` whose sampler (:class:`_EpochRelay`) forwards
Lightning's ``set_epoch`` call to the stream, and which starts its workers at the first batch
(an :class:`~balanced_align.data.epoch_sampler.EpochLoader`), after that call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, Sampler, get_worker_info

from balanced_align.data.epoch_sampler import EpochLoader
from balanced_align.data.shards.reader import ShardIndex, decode_sample, iter_shard


def _part(total: int, parts: int, part: int) -> tuple[int, int]:
    """Bounds of part ``part`` of ``parts`` balanced contiguous parts of range(total)."""
    return total * part // parts, total * (part + 1) // parts


def _resolve(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _part_of(
    part: int | None, parts: int | None, part_name: str, parts_name: str
) -> tuple[int | None, int | None]:
    """(part, parts) checked as a pair: both None, or integers with 0 <= part < parts."""
    part, parts = _resolve(part, part_name), _resolve(parts, parts_name)
    if (part is None) != (parts is None):
        raise ValueError(f"give {part_name} and {parts_name} together (or neither)")
    if parts is not None and not 0 <= part < parts:
        raise ValueError(f"{part_name} {part} is not in [0, {parts_name}={parts})")
    return part, parts


class ShardStream(IterableDataset):
    """Stream a shard set: each sample exactly once per epoch across ranks and workers.

    See the package docstring (:mod:`balanced_align.data.shards`) for the split and for
    how ranks stay in step.

    Args:
        index_json_or_dir: ``index.json`` or the folder holding it.
        transform: ``transform(record, index=global_index, epoch=epoch)`` (e.g. a
            ``FaceTransform``, whose augmentation is then a pure function of ``(seed,
            epoch, global_index)``); None yields the :class:`FaceRecord` itself.
            ``global_index`` is the sample's position in writing order (stable across
            epochs, ranks and workers).
        shuffle_shards: draw the shard order from ``(seed, epoch)``; else index order.
        shuffle_buffer: each worker shuffles its samples through a buffer of this many
            encoded samples (0 or 1: no shuffling within a worker).
        seed, epoch: the epoch's order (shard order, buffer) derives from both (and from
            the reader's rank and worker).
        batch_size: yield batches (see the package docstring), collated by ``collate_fn``
            (default: ``torch.utils.data.default_collate`` with a transform, a list of
            records without); use with ``DataLoader(batch_size=None)`` or
            :class:`ShardLoader`. None: yield samples.
        rank, world_size: default from ``torch.distributed`` when initialised, else 0, 1.
        worker_id, num_workers: default from ``get_worker_info()`` (0, 1 in the main
            process). Give them to simulate workers in tests.

    ``len(stream)``: this rank's number of samples, or of batches when ``batch_size`` is set.
    """

    def __init__(
        self,
        index_json_or_dir: str | Path,
        transform: Callable | None = None,
        shuffle_shards: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        epoch: int = 0,
        batch_size: int | None = None,
        collate_fn: Callable | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        worker_id: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__()
        self.index = ShardIndex.load(index_json_or_dir)
        self.transform = transform
        self.shuffle_shards = bool(shuffle_shards)
        self.shuffle_buffer = int(shuffle_buffer)
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.seed = _resolve(seed, "seed")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.batch_size = _resolve(batch_size, "batch_size")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.collate_fn = collate_fn
        self._rank, self._world_size = _part_of(rank, world_size, "rank", "world_size")
        self._worker_id, self._num_workers = _part_of(
            worker_id, num_workers, "worker_id", "num_workers"
        )
        # Shared memory: set_epoch in the main process reaches (persistent) workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.set_epoch(epoch)

    # -- configuration ------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s shard order and buffer randomness from the next iteration."""
        epoch = _resolve(epoch, "epoch")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch[0] = epoch

    def rank_and_world(self) -> tuple[int, int]:
        """(rank, world_size): the given ones, else ``torch.distributed``'s, else (0, 1)."""
        if self._world_size is not None:
            return self._rank, self._world_size
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def worker_and_count(self) -> tuple[int, int]:
        """(worker_id, num_workers): the given ones, else the DataLoader worker's, else (0, 1)."""
        if self._num_workers is not None:
            return self._worker_id, self._num_workers
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def __getstate__(self) -> dict:
        # A DataLoader that spawns workers pickles the stream inside an initialised rank:
        # freeze rank/world there, since a spawned worker has no process group.
        state = self.__dict__.copy()
        dist = torch.distributed
        if state["_world_size"] is None and dist.is_available() and dist.is_initialized():
            state["_rank"], state["_world_size"] = dist.get_rank(), dist.get_world_size()
        return state

    # -- the split ------------------------------------------------------------------------
    def shard_order(self, epoch: int | None = None) -> np.ndarray:
        """Shard indices in epoch ``epoch``'s reading order (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        count = len(self.index.shards)
        if not self.shuffle_shards:
            return np.arange(count)
        return np.random.default_rng([self.seed, epoch]).permutation(count)

    def _rank_range(self) -> tuple[int, int, int]:
        rank, world = self.rank_and_world()
        start, stop = _part(self.index.total, world, rank)
        return start, stop, world

    def num_batches(self) -> int:
        """Batches per rank (the same on every rank); needs ``batch_size``."""
        if self.batch_size is None:
            raise ValueError("num_batches: this stream has no batch_size")
        start, stop, world = self._rank_range()
        batches = math.ceil(math.ceil(self.index.total / world) / self.batch_size)
        if stop - start < batches:
            raise ValueError(
                f"{self!r}: {self.index.total} samples over {world} ranks leave {stop - start} "
                f"on this rank, fewer than the {batches} batches every rank must yield; "
                "use a larger batch_size or fewer ranks"
            )
        return batches

    @property
    def num_samples(self) -> int:
        """This rank's number of samples per epoch."""
        start, stop, _ = self._rank_range()
        return stop - start

    def __len__(self) -> int:
        return self.num_samples if self.batch_size is None else self.num_batches()

    def worker_plan(self) -> tuple[tuple[int, int], list[int]]:
        """This (rank, worker)'s slice [a, b) of the epoch's global order, and batch sizes.

        The batch sizes are empty without ``batch_size``.
        """
        start, stop, _ = self._rank_range()
        worker, workers = self.worker_and_count()
        count = stop - start
        if self.batch_size is None:
            a, b = _part(count, workers, worker)
            return (start + a, start + b), []
        batches = self.num_batches()
        first, last = _part(batches, workers, worker)
        bounds = [count * j // batches for j in range(first, last + 1)]
        sizes = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
        return (start + bounds[0], start + bounds[-1]), sizes

    def _pieces(self, a: int, b: int, order: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(shard, first, stop) sample ranges covering [a, b) of the ordered concatenation."""
        counts = np.asarray(self.index.counts)[order]
        ends = np.cumsum(counts)
        begins = ends - counts
        for shard, begin, end in zip(order, begins, ends):
            lo, hi = max(a, int(begin)), min(b, int(end))
            if lo < hi:
                yield int(shard), lo - int(begin), hi - int(begin)

    def _raw(self, a: int, b: int, order: np.ndarray) -> Iterator[tuple[int, str, dict, str]]:
        offsets = self.index.offsets
        for shard, first, stop in self._pieces(a, b, order):
            path = self.index.shards[shard]
            expected = self.index.counts[shard]
            for position, key, files in iter_shard(path, first, stop, expected):
                yield int(offsets[shard]) + position, key, files, f"shard {str(path)!r}"

    def _shuffled(self, items: Iterator, rng: np.random.Generator) -> Iterator:
        size = self.shuffle_buffer
        if size <= 1:
            yield from items
            return
        buffer: list = []
        for item in items:
            if len(buffer) < size:
                buffer.append(item)
                continue
            j = int(rng.integers(size))
            buffer[j], item = item, buffer[j]
            yield item
        rng.shuffle(buffer)
        yield from buffer

    def _sample(self, epoch: int, global_index: int, key: str, files: dict, where: str):
        record = decode_sample(key, files, where, self.index.num_points)
        if self.transform is None:
            return record
        return self.transform(record, index=global_index, epoch=epoch)

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        order = self.shard_order(epoch)
        (a, b), sizes = self.worker_plan()
        rank, _ = self.rank_and_world()
        worker, _ = self.worker_and_count()
        rng = np.random.default_rng([self.seed, epoch, rank, worker, 1])
        items = self._shuffled(self._raw(a, b, order), rng)
        samples = (self._sample(epoch, *item) for item in items)
        if self.batch_size is None:
            yield from samples
            return
        collate = self.collate_fn
        if collate is None:
            collate = torch.utils.data.default_collate if self.transform is not None else list
        for size in sizes:
            yield collate([next(samples) for _ in range(size)])

    def __repr__(self) -> str:
        return (
            f"ShardStream({str(self.index.path)!r}, {self.index.total} samples in "
            f"{len(self.index.shards)} shards, batch_size={self.batch_size})"
        )


class _EpochRelay(Sampler):
    """Stands in for an IterableDataset loader's sampler: infinite ``None`` indices, and
    ``set_epoch`` forwarded to the stream (Lightning calls it at every epoch's start)."""

    def __init__(self, stream: ShardStream) -> None:
        self.stream = stream

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class ShardLoader(EpochLoader):
    """``DataLoader`` over a :class:`ShardStream` whose ``sampler.set_epoch`` sets the epoch.

    Lightning (and any loop that follows the ``DistributedSampler`` habit) calls
    ``loader.sampler.set_epoch(epoch)`` before each epoch's first batch; here that reaches
    the stream, through shared memory into the workers. Workers read the epoch when they
    start an iteration, so, as an :class:`EpochLoader`, ``iter(loader)`` starts them only at
    the first batch: a resumed run's first iterator, which Lightning creates before its
    ``set_epoch``, still reads the resumed epoch. With a batching stream
    (``batch_size`` set) the loader does no batching of its own (``batch_size=None``) and
    ``len(loader)`` is the stream's batch count, the same on every rank.
    ``shuffle``/``sampler``/``batch_sampler`` are not accepted (the stream shuffles).
    """

    def __init__(self, stream: ShardStream, **kwargs) -> None:
        if not isinstance(stream, ShardStream):
            raise TypeError(f"ShardLoader needs a ShardStream, got {type(stream).__name__}")
        for name in ("shuffle", "sampler", "batch_sampler"):
            if kwargs.get(name):
                raise ValueError(f"ShardLoader: {name} is not accepted (the stream shuffles)")
        if stream.batch_size is not None:
            if kwargs.get("batch_size") is not None:
                raise ValueError(
                    "ShardLoader: the stream batches (stream.batch_size); leave batch_size out"
                )
            kwargs["batch_size"] = None
        super().__init__(stream, **kwargs)
        # DataLoader refuses to re-assign ``sampler`` after __init__ and an IterableDataset
        # loader refuses a sampler argument; the relay only adds set_epoch to what the
        # default (_InfiniteConstantSampler) does, so it is installed directly.
        object.__setattr__(self, "sampler", _EpochRelay(stream))
