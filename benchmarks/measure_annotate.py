"""NME of ``annotate`` against reference landmarks (docs/annotate.md).

    python benchmarks/measure_annotate.py helen TABLE.csv [HELEN_DIR]
    python benchmarks/measure_annotate.py table TABLE.csv REFERENCE.csv
    python benchmarks/measure_annotate.py fallback X0,Y0,X1,Y1 [HELEN_DIR]

``fallback``: every HELEN face annotated from the given fallback box (fractions of the
image), detector unused: what the fallback costs where the detector would have succeeded.

NME of an image: mean point-to-point error over the 68 points divided by the distance of
the reference's outer eye corners (points 36 and 45), both in corner-origin pixels. HELEN's
300-W ``.pts`` files are 1-based (0.5 is subtracted, DATA README). Prints the mean, median,
90th percentile and max NME, the mean bias (x, y) in pixels, and, with the failures file
beside TABLE, the same split by detected / fallback images, and NME by a pose proxy: the
nose-tip asymmetry |d_l − d_r| / (d_l + d_r) of the reference, d being the horizontal distances
of point 30 from points 36 and 45 (0 frontal, about sin(yaw) for a rigid face).
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np

from balanced_align.annotate.run import OUTER_EYE_CORNERS, failures_path
from balanced_align.data.sources import read_landmark_table, read_pts

HELEN = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "landmarks68" / "helen_test"
)


def nme(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) NME of (N, 68, 2) points against (N, 68, 2) reference points."""
    error = np.linalg.norm(points - reference, axis=-1).mean(axis=-1)
    left, right = OUTER_EYE_CORNERS
    return error / np.linalg.norm(reference[:, right] - reference[:, left], axis=-1)


def helen_reference(folder: Path) -> dict[str, np.ndarray]:
    return {p.with_suffix(".jpg").name: read_pts(p) - 0.5 for p in sorted(folder.glob("*.pts"))}


def fallbacks(table: Path) -> set[str]:
    path = failures_path(table)
    if not path.is_file():
        return set()
    with open(path, newline="") as f:
        return {row["path"] for row in csv.DictReader(f) if row["outcome"] == "fallback"}


def describe(name: str, points: np.ndarray, reference: np.ndarray) -> None:
    if len(points) == 0:
        print(f"{name:>10}: no images")
        return
    e = nme(points, reference)
    bias = (points - reference).reshape(-1, 2).mean(axis=0)
    print(
        f"{name:>10}: n={len(e)} NME mean {e.mean():.4f} median {np.median(e):.4f} "
        f"p90 {np.percentile(e, 90):.4f} max {e.max():.4f}; "
        f"bias x {bias[0]:+.2f} y {bias[1]:+.2f} px"
    )


def forced_fallback(box: str, folder: Path) -> None:
    from balanced_align.annotate.backends import make_backend
    from balanced_align.annotate.run import fallback_box
    from balanced_align.data.validation import read_image

    fractions = [float(v) for v in box.split(",")]
    backend = make_backend("dlib")
    reference = helen_reference(folder)
    keys = sorted(reference)
    points = []
    for key in keys:
        image = read_image(folder / key)
        points.append(backend.landmarks(image, fallback_box(image.shape[:2], fractions)))
    describe(f"box {box}", np.stack(points), np.stack([reference[k] for k in keys]))


ASYMMETRY_BINS = (0.0, 0.1, 0.2, 0.35, 1.01)


def asymmetry(reference: np.ndarray) -> np.ndarray:
    """(N,) nose-tip asymmetry of (N, 68, 2) points (see module docstring)."""
    left = np.abs(reference[:, 30, 0] - reference[:, 36, 0])
    right = np.abs(reference[:, 45, 0] - reference[:, 30, 0])
    return np.abs(left - right) / np.maximum(left + right, 1e-9)


def by_pose(points: np.ndarray, reference: np.ndarray) -> None:
    a, e = asymmetry(reference), nme(points, reference)
    for low, high in itertools.pairwise(ASYMMETRY_BINS):
        inside = (a >= low) & (a < high)
        if inside.any():
            print(
                f"  asymmetry [{low:.2f}, {min(high, 1):.2f}): n={int(inside.sum())} "
                f"NME mean {e[inside].mean():.4f} median {np.median(e[inside]):.4f}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("helen", "table", "fallback"))
    p.add_argument("table", help="the table (helen, table) or the box (fallback)")
    p.add_argument("reference", nargs="?", type=Path)
    args = p.parse_args()
    if args.kind == "fallback":
        forced_fallback(args.table, args.reference or HELEN)
        return
    args.table = Path(args.table)
    if args.kind == "helen":
        reference = helen_reference(args.reference or HELEN)
    else:
        reference = read_landmark_table(args.reference)
    table = read_landmark_table(args.table)
    keys = sorted(k for k in table if k in reference)
    print(f"{len(table)} rows, {len(reference)} references, {len(keys)} in both")
    marked = fallbacks(args.table)
    for name, subset in (
        ("all", keys),
        ("detected", [k for k in keys if k not in marked]),
        ("fallback", [k for k in keys if k in marked]),
    ):
        pts = np.stack([table[k] for k in subset]) if subset else np.zeros((0, 68, 2))
        ref = np.stack([reference[k] for k in subset]) if subset else np.zeros((0, 68, 2))
        describe(name, pts, ref)
        if name == "all":
            by_pose(pts, ref)


if __name__ == "__main__":
    main()
