"""Command line of ``annotate``::

python -m balanced_align.annotate ROOT --out landmarks68.csv [--workers 2]
    [--backend dlib] [--schema ibug68|five] [--fallback-box auto|X0,Y0,X1,Y1 | --no-fallback]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from balanced_align.annotate.backends import BACKENDS, MissingBackendError
from balanced_align.annotate.run import SCHEMAS, annotate, failures_path
from balanced_align.safe_paths import UnsafePathError


def _box(text: str) -> tuple[float, ...] | str:
    if text == "auto":
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x0,y0,x1,y1 fractions, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated fractions, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m balanced_align.annotate",
        description="Write a landmark table (path,x0,y0,…; corner-origin pixels) for every "
        "image under ROOT. Rerunning skips the paths already in the table.",
    )
    p.add_argument("root", metavar="ROOT", help="image tree; keys are paths relative to it")
    p.add_argument("--out", required=True, help="the CSV table to write or extend")
    p.add_argument("--backend", default="dlib", choices=sorted(BACKENDS))
    p.add_argument("--schema", default="ibug68", choices=SCHEMAS)
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument(
        "--upsample",
        type=int,
        default=None,
        help="dlib: detector upsampling (default: 0, then 1 when nothing is found)",
    )
    fallback = p.add_mutually_exclusive_group()
    fallback.add_argument(
        "--fallback-box",
        type=_box,
        default="auto",
        metavar="auto|X0,Y0,X1,Y1",
        help="face box when no face is detected, as fractions of the image width/height; "
        "auto (default): the median detected box over 64 sampled images (0,0,1,1: the whole "
        "image)",
    )
    fallback.add_argument(
        "--no-fallback",
        dest="fallback_box",
        action="store_const",
        const=None,
        help="images without a detected face fail (no row) instead",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = {} if args.upsample is None else {"upsample": args.upsample}
    try:
        summary = annotate(
            args.root,
            args.out,
            backend=args.backend,
            schema=args.schema,
            workers=args.workers,
            fallback=args.fallback_box,
            backend_options=options,
            progress=not args.no_progress,
        )
    except (MissingBackendError, UnsafePathError, FileNotFoundError, ValueError) as error:
        print(f"annotate: error: {error}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    if summary.failed or summary.fallback:
        print(f"failures and fallbacks: {failures_path(args.out)}")
    return 0
