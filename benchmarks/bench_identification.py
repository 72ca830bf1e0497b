"""MegaFace-style rank-1: our chunked ``megaface_rank1`` vs an exact faiss ``IndexFlatIP`` search.

Builds random L2-normalised float32 distractor features in a memmap under a temporary
directory, and probes drawn around ``--identities`` identity centres. Each method runs in its
own subprocess so that memory peaks do not mix, and reports:

- time_s: wall time of the search (ours: the ``megaface_rank1`` call reading the memmap;
  faiss: filling the index from the memmap + the k=1 search + the same hit rule);
- peak_rss_MB: the process's peak resident set (``ru_maxrss``), which also counts the pages of
  the memmap file that were read (page cache, reclaimable);
- peak_anon_MB: peak of the private, anonymous memory (``RssAnon`` sampled every 2 ms);
- added_anon_MB: that peak minus the anonymous memory just before the search (imports and
  probes excluded), i.e. what the method itself allocates: ~4·probes·chunk bytes for ours,
  ~4·N·dim bytes for faiss.

The rank-1 of both must agree. The two compute the same float32 similarities with different
kernels, so a trial whose mate similarity is within 1e-5 of the probe's best distractor
similarity may flip; the benchmark asserts that the hit counts differ by at most the number of
such near-ties (and prints it, usually 0).

Run: ``python benchmarks/bench_identification.py --distractors 200000``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TIE_EPS = 1e-5


class AnonPeak:
    """Sample RssAnon from /proc/self/status in a thread; ``peak_mb`` is the maximum seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read_kb() -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.read_kb())
            time.sleep(self.interval)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.read_kb())

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


def make_data(data_dir: Path, args) -> None:
    rng = np.random.default_rng(args.seed)
    mm = np.memmap(
        data_dir / "distractors.f32",
        dtype=np.float32,
        mode="w+",
        shape=(args.distractors, args.dim),
    )
    step = 50_000
    for start in range(0, args.distractors, step):
        block = rng.standard_normal((min(step, args.distractors - start), args.dim), np.float32)
        mm[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    mm.flush()
    del mm
    centres = rng.standard_normal((args.identities, args.dim), np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.arange(args.probes) % args.identities
    noise = rng.standard_normal((args.probes, args.dim), np.float32) * (args.noise / args.dim**0.5)
    probes = centres[labels] + noise
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    np.save(data_dir / "probes.npy", probes.astype(np.float32))
    np.save(data_dir / "labels.npy", labels)


def worker(args) -> None:
    data_dir = Path(args.data_dir)
    probes = np.load(data_dir / "probes.npy")
    labels = np.load(data_dir / "labels.npy")
    distr = np.memmap(
        data_dir / "distractors.f32", dtype=np.float32, mode="r", shape=(args.distractors, args.dim)
    )
    if args.worker == "ours":
        import torch

        from balanced_align.evaluation import megaface_rank1

        torch.set_num_threads(args.threads)
        base_kb = AnonPeak.read_kb()
        with AnonPeak() as anon:
            t0 = time.perf_counter()
            res = megaface_rank1(torch.from_numpy(probes), labels, distr, chunk_size=args.chunk)
            elapsed = time.perf_counter() - t0
        out = {"hits": round(res.rank1 * res.num_pairs), "num_pairs": res.num_pairs}
    else:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        base_kb = AnonPeak.read_kb()
        with AnonPeak() as anon:
            t0 = time.perf_counter()
            index = faiss.IndexFlatIP(args.dim)
            for start in range(0, args.distractors, 65536):
                index.add(np.ascontiguousarray(distr[start : start + 65536]))
            best, _ = index.search(probes, 1)  # (P, 1): largest distractor similarity
            mate = probes @ probes.T  # row j = probe, column i = gallery
            same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
            hits = int(((mate > best) & same).sum())
            elapsed = time.perf_counter() - t0
        near = int(((np.abs(mate - best) < TIE_EPS) & same).sum())
        out = {"hits": hits, "num_pairs": int(same.sum()), "near_ties": near}
    out.update(
        time_s=elapsed,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_anon_mb=anon.peak_mb,
        added_anon_mb=anon.peak_mb - base_kb / 1024,
    )
    print(json.dumps(out))


def run_worker(args, method: str, chunk: int, data_dir: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker", method,
        "--data-dir", str(data_dir),
        "--distractors", str(args.distractors),
        "--dim", str(args.dim),
        "--chunk", str(chunk),
        "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--distractors", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--probes", type=int, default=3530)
    p.add_argument("--identities", type=int, default=80)
    p.add_argument("--chunk-size", type=int, nargs="+", default=[65536])
    p.add_argument("--noise", type=float, default=2.0, help="probe noise / centre norm")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp-dir", default=None, help="where the memmap goes (default: system tmp)")
    # internal: run one method in a subprocess
    p.add_argument("--worker", choices=("ours", "faiss"), help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=65536, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        make_data(data_dir, args)
        size_mb = args.distractors * args.dim * 4 / 2**20
        print(
            f"distractors {args.distractors} x {args.dim} float32 memmap ({size_mb:.0f} MB), "
            f"{args.probes} probes of {args.identities} identities, {args.threads} threads; "
            f"data built in {time.perf_counter() - t0:.1f} s"
        )
        rows = [("faiss IndexFlatIP", "-", run_worker(args, "faiss", 0, data_dir))]
        for chunk in args.chunk_size:
            rows.append(("megaface_rank1", str(chunk), run_worker(args, "ours", chunk, data_dir)))

    ref = rows[0][2]
    print(
        f"\n{'method':<18} {'chunk':>7} {'time_s':>8} {'peak_rss_MB':>12} {'peak_anon_MB':>13} "
        f"{'added_anon_MB':>14} {'rank1':>8} {'hits/pairs':>15} {'time/faiss':>10}"
    )
    for name, chunk, r in rows:
        print(
            f"{name:<18} {chunk:>7} {r['time_s']:>8.2f} {r['peak_rss_mb']:>12.0f} "
            f"{r['peak_anon_mb']:>13.0f} {r['added_anon_mb']:>14.0f} "
            f"{r['hits'] / r['num_pairs']:>8.4f} "
            f"{r['hits']:>7}/{r['num_pairs']:<7} {r['time_s'] / ref['time_s']:>10.2f}"
        )
    print(f"near-ties (|mate - best distractor| < {TIE_EPS}): {ref['near_ties']}")
    for name, chunk, r in rows[1:]:
        assert r["num_pairs"] == ref["num_pairs"], (name, chunk)
        assert abs(r["hits"] - ref["hits"]) <= ref["near_ties"], (name, chunk, r, ref)
    same = all(r["hits"] == ref["hits"] for _, _, r in rows)
    print("rank-1 equal to faiss" + ("" if same else " up to near-ties"))


if __name__ == "__main__":
    main()
