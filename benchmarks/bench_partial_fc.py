"""Partial FC: memory per rank for C = 100k and 1M identities on 1, 2, 4 and 8 ranks (CPU).

One rank of ``world`` holds ⌈C / world⌉ centres and scores the gathered batch (B = 32 per
rank × world rows) against its sampled centres. This measures exactly that on one process:
the allocated shard (D = 512, float32), and the tensors the head's forward keeps for
backward (the sampled centres and the (B, S) logits: ``saved_tensors_hooks``, each storage
once). Training adds the shard's gradient and momentum (2 × the shard) and the logits'
gradient (one (B, S) float32). Run: ``python benchmarks/bench_partial_fc.py``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from balanced_align.dry_run import saved_tensor_bytes
from balanced_align.models.partial_fc import PartialFC, shard_bounds

DIM, PER_RANK = 512, 32
MIB = 2**20


def measure(classes: int, world: int, rate: float) -> dict:
    """Rank 0 of ``world``: bytes of its shard and of what its forward saves."""
    start, stop = shard_bounds(classes, 0, world)
    head = PartialFC(DIM, 1, margin="am", sample_rate=rate)
    head.num_classes = stop - start  # the shard alone, never the full matrix
    head.weight = torch.nn.Parameter(torch.empty(stop - start, DIM).normal_(std=0.01))
    rows = PER_RANK * world  # the gathered batch
    gen = torch.Generator().manual_seed(0)
    # which rows' classes lie on this rank changes the margin, not the memory
    labels = torch.randint(0, stop - start, (rows,), generator=gen)
    embeddings = torch.randn(rows, DIM, generator=gen, requires_grad=True)
    out = {}

    def forward() -> None:
        out["result"] = head(embeddings, labels)

    begin = time.perf_counter()
    per_row, other = saved_tensor_bytes(forward, rows)
    seconds = time.perf_counter() - begin
    shard = head.weight.numel() * head.weight.element_size()
    sampled = out["result"].num_sampled
    return {
        "shard": shard,
        "saved": per_row + other,
        "train": 3 * shard + per_row + other + 4 * rows * sampled,
        "sampled": sampled,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument(
        "--max-logits-gib", type=float, default=2.0, help="skip cases with larger (B, S) logits"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"D = {DIM}, {PER_RANK} images per rank, float32; MiB per rank (rank 0)")
    print(
        "| C | rate | world | centres | scored | shard | saved by forward | training total |"
        " vs first row | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for classes in args.classes:
        for rate in args.rates:
            first = None
            for world in args.worlds:
                rows = PER_RANK * world
                scored = math.ceil(rate * math.ceil(classes / world))
                if rows * scored * 4 / 2**30 > args.max_logits_gib:
                    print(f"| {classes:,} | {rate} | {world} | skipped: logits > "
                          f"{args.max_logits_gib} GiB here | | | | | | |")  # fmt: skip
                    continue
                m = measure(classes, world, rate)
                first = first or m["train"]
                print(
                    f"| {classes:,} | {rate} | {world} | {math.ceil(classes / world):,} | "
                    f"{m['sampled']:,} | {m['shard'] / MIB:.0f} | {m['saved'] / MIB:.0f} | "
                    f"{m['train'] / MIB:.0f} | {m['train'] / first:.2f} | {m['seconds']:.1f} |"
                )


if __name__ == "__main__":
    main()
