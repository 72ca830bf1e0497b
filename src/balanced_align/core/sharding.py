"""Split rows over DDP ranks and put the gathered rows back in order (an evaluation set in
:mod:`balanced_align.bin_verification`, Partial FC's class centres in
:mod:`balanced_align.models.partial_fc`).

Each of ``world`` ranks embeds one contiguous shard (:func:`shard_range`; sizes differ by at
most one), pads its rows to the largest shard (:func:`pad_rows`) because a collective
all-gather needs equal shapes, and :func:`unshard` drops the padding of the gathered
(world, max shard, ...) tensor and concatenates the shards in rank order: row ``i`` of the
result is item ``i`` of the set, exactly once.
"""

from __future__ import annotations

import torch
from torch import Tensor


def shard_range(count: int, rank: int, world: int) -> range:
    """The items ``rank`` of ``world`` embeds: a contiguous range, the first ``count % world``
    ranks one item more."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard_range: rank {rank} of world {world}")
    if count < 0:
        raise ValueError(f"shard_range: count must be >= 0, got {count}")
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def max_shard(count: int, world: int) -> int:
    """The size of the largest shard (the padded length of every rank's rows)."""
    return -(-count // world)


def pad_rows(rows: Tensor, length: int) -> Tensor:
    """rows (n, ...) -> (length, ...) with zero rows appended (n <= length)."""
    if rows.shape[0] > length:
        raise ValueError(f"pad_rows: {rows.shape[0]} rows exceed the padded length {length}")
    pad = rows.new_zeros((length - rows.shape[0], *rows.shape[1:]))
    return torch.cat([rows, pad])


def unshard(gathered: Tensor, count: int) -> Tensor:
    """gathered (world, max shard, ...) padded shards in rank order -> (count, ...) rows."""
    world = gathered.shape[0]
    if gathered.shape[1] != max_shard(count, world):
        raise ValueError(
            f"unshard: shards of {gathered.shape[1]} rows, expected {max_shard(count, world)} "
            f"for {count} items over {world} ranks"
        )
    parts = [gathered[r, : len(shard_range(count, r, world))] for r in range(world)]
    return torch.cat(parts)
