"""SynthFaces generation speed on one core, at the sizes we train at.

For each image size, on one thread (OpenCV, BLAS/OpenMP and torch limited to 1):
  * ``in order``    – items 0..N-1 of a set with ``--images-per-identity`` images per identity,
                      fresh instance: each identity's texture is painted once and reused;
  * ``render only`` – the same items again, identities cached: the per-image cost;
  * ``no cache``    – the same items with ``cache_identities=0``: every image paints its
                      identity's texture (the worst case of random access over many identities);
  * ``identity``    – milliseconds to build one identity (shape + texture).
Repeats are interleaved and the table shows medians (the machine is shared and noisy).

    python benchmarks/bench_synthfaces.py [--sizes 64 112 --identities 40 --repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from balanced_align.data.synthfaces import SynthFaces  # noqa: E402


def _rate(ds: SynthFaces, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        ds[i]
    return count / (time.perf_counter() - start)


def measure(size: int, identities: int, per_identity: int) -> dict[str, float]:
    count = identities * per_identity
    ds = SynthFaces(identities, per_identity, image_size=size, seed=1)
    in_order = _rate(ds, count)
    warm = _rate(ds, count)
    cold = _rate(SynthFaces(identities, per_identity, size, seed=1, cache_identities=0), count)
    builder = SynthFaces(identities, 1, size, seed=2, cache_identities=0)
    builder.identity(0)
    start = time.perf_counter()
    for c in range(identities):
        builder.identity(c)
    build_ms = 1e3 * (time.perf_counter() - start) / identities
    return {"in order": in_order, "render only": warm, "no cache": cold, "identity ms": build_ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112])
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--images-per-identity", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency, but not needed here
        pass
    for size in args.sizes:  # warm-up: mesh, canvases, imports
        SynthFaces(1, 1, size)[0]
    runs: dict[int, list[dict[str, float]]] = {s: [] for s in args.sizes}
    for _ in range(args.repeats):
        for size in args.sizes:
            runs[size].append(measure(size, args.identities, args.images_per_identity))
    keys = ["in order", "render only", "no cache", "identity ms"]
    print(f"SynthFaces, 1 thread, {args.images_per_identity} images/identity, "
          f"median of {args.repeats} (images/s unless noted)")  # fmt: skip
    print(f"{'size':>6} " + " ".join(f"{k:>12}" for k in keys))
    for size in args.sizes:
        row = [statistics.median(r[k] for r in runs[size]) for k in keys]
        print(f"{size:>6} " + " ".join(f"{v:12.1f}" for v in row))


if __name__ == "__main__":
    main()
