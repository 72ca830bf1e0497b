"""What the STN costs: one training step with it / without it, per model size, side by side.

A step is what ``training_step`` does to the recognizer: forward (channels-last, as trained),
AM-Softmax cross-entropy plus, with an STN, a stand-in for the alignment loss (a function of
the warp parameters only, as the real one is), backward, SGD with momentum. Models come from
the project's ``build_recognizer``; the STN variants are STN-TPS-8 at the stage-0 feature map
with the LocNet of ``conf/align`` (``locnet_input_size``, ``locnet_width``) or cheaper ones.
Variants run interleaved round-robin, so load on a shared machine hits all alike; the table
gives the median ms per step and the ratio to the plain step of the same size. With several
``--threads`` counts, every variant runs at each (``torch.set_num_threads`` before each call,
interleaved too) and the ratio is to the plain step at the first count: what a second core buys
a run that has the machine to itself (``experiment=lfw``'s sizes are ir18_64 and its wider
variants ir18_64_w0.375 / ir18_64_w0.5).

``--breakdown`` also times the STN's parts in isolation, for the first STN variant (median ms,
and % of the plain step): the LocNet's input resize, LocNet forward and forward + backward,
the TPS grid forward + backward, ``grid_sample`` forward and forward + backward, and one
NCHW → channels-last copy of the feature map.

    python benchmarks/bench_step.py [--sizes ir18_64 ir34_112] [--variants plain tps8 ...]
        [--repeats 7] [--threads 1 [2 ...]] [--breakdown]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from balanced_align.config_schema import AlignConfig
from balanced_align.models import AlignedRecognizer, build_head, build_recognizer

#: model size -> build_recognizer arguments and batch size
SIZES = {
    "ir18_64": {  # the default CPU run
        "backbone": "iresnet18",
        "width": 0.25,
        "input_size": 64,
        "embedding_dim": 128,
        "batch": 64,
    },
    "ir34_112": {
        "backbone": "iresnet34",
        "width": 0.5,
        "input_size": 112,
        "embedding_dim": 512,
        "batch": 16,
    },
}

# the default CPU run made wider (the LFW recipe's width experiments)
SIZES.update({f"ir18_64_w{w}": {**SIZES["ir18_64"], "width": w} for w in (0.375, 0.5)})

_ALIGN = AlignConfig()
#: variant -> alignment arguments of build_recognizer ("tps8": the conf/align default LocNet)
VARIANTS = {
    "plain": {"align_method": "none"},
    "tps8": {
        "align_method": "tps",
        "locnet_input_size": _ALIGN.locnet_input_size,
        "locnet_width": _ALIGN.locnet_width,
    },
    "tps8_loc16": {"align_method": "tps", "locnet_input_size": 16, "locnet_width": 1.0},
    "tps8_loc32_w0.5": {"align_method": "tps", "locnet_input_size": 32, "locnet_width": 0.5},
    "tps8_loc16_w0.5": {"align_method": "tps", "locnet_input_size": 16, "locnet_width": 0.5},
}

NUM_CLASSES = 100


class Step:
    """A recognizer, an AM-Softmax head and SGD; ``__call__`` runs one training step."""

    def __init__(self, size: dict, variant: dict) -> None:
        torch.manual_seed(0)
        self.recognizer: AlignedRecognizer = build_recognizer(
            backbone=size["backbone"],
            width=size["width"],
            input_size=size["input_size"],
            embedding_dim=size["embedding_dim"],
            tps_grid_size=8,
            location="fmap",
            **variant,
        ).to(memory_format=torch.channels_last)
        self.head = build_head("am_softmax", size["embedding_dim"], NUM_CLASSES, s=64.0, m=0.35)
        params = list(self.recognizer.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        batch, side = size["batch"], size["input_size"]
        generator = torch.Generator().manual_seed(0)
        self.images = (torch.rand(batch, 3, side, side, generator=generator) * 2 - 1).contiguous(
            memory_format=torch.channels_last
        )
        self.labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)

    def __call__(self) -> None:
        out = self.recognizer(self.images)
        loss = F.cross_entropy(self.head(out.embedding, self.labels), self.labels)
        if out.params is not None:
            identity = out.family.identity_params().to(out.params)
            loss = loss + 3.0 * (out.params - identity).square().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def _at_threads(step: Callable[[], object], threads: int) -> Callable[[], None]:
    """``step`` run with ``threads`` intra-op threads."""

    def run() -> None:
        torch.set_num_threads(threads)
        step()

    return run


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run round-robin ``repeats`` times after one warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def breakdown(step: Step) -> dict[str, Callable[[], object]]:
    """The STN's parts of ``step`` as separate functions (each forward, or forward + backward)."""
    recognizer = step.recognizer
    stn = recognizer.stn
    locnet, family = stn.locnet, stn.family
    images = step.images
    with torch.no_grad():
        fmap = recognizer.backbone.stem(images)
        small = F.interpolate(
            images, size=locnet.input_size, mode="bilinear", align_corners=False, antialias=False
        )
        params = stn.predict_params(images)
        params = params + 0.01 * torch.randn_like(params)
        grid = family.grid(params, tuple(fmap.shape[-2:]))

    def resize():
        F.interpolate(
            images, size=locnet.input_size, mode="bilinear", align_corners=False, antialias=False
        )

    def locnet_forward():
        with torch.no_grad():
            locnet(small)

    def locnet_forward_backward():
        locnet(small).sum().backward()

    def tps_grid():
        p = params.clone().requires_grad_()
        family.grid(p, tuple(fmap.shape[-2:])).sum().backward()

    def sample_forward():
        F.grid_sample(fmap, grid, align_corners=False)

    def sample_forward_backward():
        f, g = fmap.clone().requires_grad_(), grid.clone().requires_grad_()
        F.grid_sample(f, g, align_corners=False).sum().backward()

    plain_layout = fmap.contiguous()

    def to_channels_last():
        plain_layout.contiguous(memory_format=torch.channels_last)

    return {
        "LocNet input resize": resize,
        "LocNet forward": locnet_forward,
        "LocNet forward + backward": locnet_forward_backward,
        "TPS grid forward + backward": tps_grid,
        "grid_sample forward": sample_forward,
        "grid_sample forward + backward": sample_forward_backward,
        "fmap NCHW → channels-last copy": to_channels_last,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--variants", nargs="+", default=["plain", "tps8"], choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=7)
    # one thread by default: on a shared, loaded machine an OpenMP team stalls on the busiest
    # core, which measures the machine rather than the model
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    variants = list(dict.fromkeys(["plain", *args.variants]))
    counts = list(dict.fromkeys(args.threads))
    runs = list(itertools.product(counts, variants))
    rows = [f"{name} @{n}t" if len(counts) > 1 else name for n, name in runs]
    baseline = rows[0]
    torch.set_num_threads(counts[0])
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {counts} thread(s), median of {args.repeats}")
    results: dict[str, dict[str, float]] = {}
    parts: dict[str, dict[str, float]] = {}
    for size_name in args.sizes:
        size = SIZES[size_name]
        steps = {name: Step(size, VARIANTS[name]) for name in variants}
        fns = {row: _at_threads(steps[name], n) for row, (n, name) in zip(rows, runs)}
        results[size_name] = interleaved(fns, args.repeats)
        torch.set_num_threads(counts[0])
        stn_names = [name for name in variants if name != "plain"]
        if args.breakdown and stn_names:
            parts[size_name] = interleaved(breakdown(steps[stn_names[0]]), args.repeats)
    print(f"load average (1 min): {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(
        "| variant | "
        + " | ".join(f"{s} ms/step | {s} img/s | {s} / {baseline}" for s in args.sizes)
        + " |"
    )
    print("|---|" + "---|---|---|" * len(args.sizes))
    for row in rows:
        cells = []
        for size_name in args.sizes:
            seconds = results[size_name][row]
            images = SIZES[size_name]["batch"] / seconds
            ratio = seconds / results[size_name][baseline]
            cells.append(f"{seconds * 1e3:.0f} | {images:.0f} | {ratio:.3f}×")
        print(f"| {row} | " + " | ".join(cells) + " |")
    if parts:
        first = next(name for name in variants if name != "plain")
        print(f"\nparts of the {first} step, in isolation (ms, % of the plain step):")
        print("| part | " + " | ".join(f"{s} ms | {s} %" for s in parts) + " |")
        print("|---|" + "---|---|" * len(parts))
        for part in next(iter(parts.values())):
            cells = [
                f"{parts[s][part] * 1e3:.1f} | {100 * parts[s][part] / results[s][baseline]:.1f}"
                for s in parts
            ]
            print(f"| {part} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
