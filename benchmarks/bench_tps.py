"""TPS warp speed and accuracy, side by side in one run.

Compares, on the same images and control points:
  * ``grid_sample``  – bare bilinear sampling with a precomputed grid (the floor);
  * ``ours``         – ThinPlateSpline.grid (one cached matmul) + grid_sample;
  * ``kornia``       – kornia's get_tps_transform + warp_image_tps, composed as its docs say.
Each is timed forward and forward+backward (gradients to the image and the control points),
interleaved round-robin so machine noise hits all alike; the table shows medians and the
ratio to bare grid_sample. Accuracy: max |warped − reference| where the reference is a
float64 textbook TPS (numpy solve of the Bookstein system) sampled in float64.

    python benchmarks/bench_tps.py [--batch 64 --channels 64 --sizes 56 112 --grid-size 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from kornia.geometry.transform import get_tps_transform, warp_image_tps

from balanced_align.geometry import ThinPlateSpline, normalized_meshgrid, sample


def textbook_grid(centres: np.ndarray, source: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float64 Bookstein TPS, solved from scratch with numpy: (K,2),(K,2) -> (H,W,2)."""

    def phi(q):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(q > 0, q * np.log(q), 0.0)

    k = len(centres)
    q = ((centres[:, None] - centres[None]) ** 2).sum(-1)
    system = np.zeros((k + 3, k + 3))
    system[:k, :k] = phi(q)
    system[:k, k] = system[k, :k] = 1
    system[:k, k + 1 :] = centres
    system[k + 1 :, :k] = centres.T
    coefficients = np.linalg.solve(system, np.vstack([source, np.zeros((3, 2))]))
    pixels = normalized_meshgrid(size, dtype=torch.float64).reshape(-1, 2).numpy()
    basis = np.hstack(
        [phi(((pixels[:, None] - centres[None]) ** 2).sum(-1)), np.ones((len(pixels), 1)), pixels]
    )
    return (basis @ coefficients).reshape(*size, 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[56, 112])
    parser.add_argument("--grid-size", type=int, default=8)
    parser.add_argument("--displacement", type=float, default=0.5, help="in grid spacings")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.manual_seed(0)
    tps = ThinPlateSpline(args.grid_size)
    spacing = 2.0 / (args.grid_size - 1)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={args.batch}, "
        f"C={args.channels}, TPS {args.grid_size}x{args.grid_size}, displacement "
        f"±{args.displacement} spacing"
    )
    print()
    header = (
        f"{'size':>5} {'method':>12} {'fwd ms':>9} {'x gs':>6} {'fwd+bwd ms':>11} {'x gs':>6} "
        f"{'max dev':>10}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        hw = (size, size)
        image = torch.rand(args.batch, args.channels, size, size)
        source = tps.identity_params() + args.displacement * spacing * (
            torch.rand(args.batch, *tps.param_shape) * 2 - 1
        )
        centres = tps.control_points.expand(args.batch, -1, -1)
        fixed_grid = tps.grid(source, hw).detach()

        def run_grid_sample(backward: bool):
            img = image.requires_grad_(backward)
            out = sample(img, fixed_grid)
            if backward:
                out.sum().backward()
            return out

        def run_ours(backward: bool):
            img = image.requires_grad_(backward)
            src = source.clone().requires_grad_(backward)
            out = sample(img, tps.grid(src, hw))
            if backward:
                out.sum().backward()
            return out

        def run_kornia(backward: bool):
            img = image.requires_grad_(backward)
            src = source.clone().requires_grad_(backward)
            kernel_w, affine_w = get_tps_transform(centres, src)
            out = warp_image_tps(img, src, kernel_w, affine_w, align_corners=False)
            if backward:
                out.sum().backward()
            return out

        methods = {"grid_sample": run_grid_sample, "ours": run_ours, "kornia": run_kornia}
        # accuracy against the float64 textbook reference (first 4 images to keep it quick)
        n_ref = 4
        reference_grid = torch.from_numpy(
            np.stack(
                [
                    textbook_grid(
                        tps.control_points.double().numpy(), source[b].double().numpy(), hw
                    )
                    for b in range(n_ref)
                ]
            )
        )
        reference = sample(image[:n_ref].double(), reference_grid)
        deviation = {}
        with torch.no_grad():
            for name, fn in methods.items():
                deviation[name] = (fn(False)[:n_ref].double() - reference).abs().max().item()

        timings = {(name, bwd): [] for name in methods for bwd in (False, True)}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                for bwd in (False, True):
                    image.grad = None
                    start = time.perf_counter()
                    if bwd:
                        fn(True)
                    else:
                        with torch.no_grad():
                            fn(False)
                    timings[(name, bwd)].append(time.perf_counter() - start)
        med = {key: statistics.median(v) * 1000 for key, v in timings.items()}
        for name in methods:
            f, fb = med[(name, False)], med[(name, True)]
            print(
                f"{size:>5} {name:>12} {f:>9.2f} {f / med[('grid_sample', False)]:>6.2f} "
                f"{fb:>11.2f} {fb / med[('grid_sample', True)]:>6.2f} {deviation[name]:>10.2e}"
            )
        speedup = med[("kornia", False)] / med[("ours", False)]
        print(f"{'':>5} ours vs kornia forward: {speedup:.1f}x faster")
    print()
    print(
        "max dev: max |warped - float64 textbook TPS warp| on images in [0, 1]; "
        "grid_sample uses our grid."
    )


if __name__ == "__main__":
    main()
