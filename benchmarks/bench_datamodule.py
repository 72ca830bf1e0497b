"""Throughput of FaceDataModule loaders (batches/s and images/s), measured side by side.

Default settings: SynthFaces, image_size 64, batch 64, 2 workers, training augmentation on.
Also reports the same loader with 0 workers and the evaluation loader, so ratios can be read
off one run on a shared, noisy machine.

    .venv/bin/python benchmarks/bench_datamodule.py [--batches 30] [--workers 2] [--image-size 64]
"""

from __future__ import annotations

import argparse
import time

from balanced_align.data.datamodule import FaceDataModule


def measure(loader, batches: int, warmup: int = 2) -> tuple[float, float]:
    """(batches per second, images per second) over ``batches`` batches after ``warmup``.

    An exhausted loader is restarted (as at an epoch boundary; worker start-up included).
    """
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    images = 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        images += len(batch["image"])
    elapsed = time.perf_counter() - start
    return batches / elapsed, images / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    rows = []
    for label, workers, split in (
        (f"train, {args.workers} workers", args.workers, "train"),
        ("train, 0 workers", 0, "train"),
        (f"val, {args.workers} workers", args.workers, "val"),
    ):
        dm = FaceDataModule(
            image_size=args.image_size, batch_size=args.batch_size, num_workers=workers
        )
        dm.setup("fit")
        loader = getattr(dm, f"{split}_dataloader")()
        rows.append((label, *measure(loader, args.batches)))
        print(f"measured {label}", flush=True)
    base = rows[0][1]
    print(f"image_size={args.image_size} batch_size={args.batch_size}")
    for label, rate, images in rows:
        print(f"{label:>22}: {rate:7.2f} batches/s  {images:8.1f} images/s  ({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
