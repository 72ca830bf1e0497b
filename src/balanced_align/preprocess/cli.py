"""Command line of the preprocessing tools (one so far, ``affine2d``)::

    python -m balanced_align.preprocess affine2d --images ROOT --pts --out DIR --size 112
    python -m balanced_align.preprocess.affine2d --images ROOT --landmarks T.csv --out DIR

Both spellings take the same arguments (see :func:`affine2d_main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _affine2d_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--images", required=True, metavar="ROOT", help="image tree")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--pts", action="store_true", help="300-W .pts files beside the images")
    given.add_argument(
        "--landmarks", metavar="TABLE", help="CSV/Parquet table keyed by path relative to ROOT"
    )
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--size", type=int, default=112, help="crop side (default 112)")
    parser.add_argument(
        "--convention",
        default=None,
        choices=("corner", "one_based", "zero_based_centre"),
        help="input landmark convention (default: one_based for .pts, corner for a table)",
    )
    parser.add_argument("--schema", default=None, help="lmk84 | ibug68 | five (default: by count)")
    parser.add_argument(
        "--format",
        default=None,
        choices=("png", "jpg"),
        dest="image_format",
        help="output image format (default: keep each file's)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    parser.add_argument("--table-format", default="csv", choices=("csv", "parquet"))
    parser.add_argument("--workers", type=int, default=4, help="threads")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def _run_affine2d(args: argparse.Namespace) -> int:
    from balanced_align.preprocess.affine2d import preprocess_affine2d

    try:
        report = preprocess_affine2d(
            args.images,
            args.out,
            landmarks=args.landmarks,
            pts=args.pts,
            convention=args.convention,
            schema=args.schema,
            size=args.size,
            image_format=args.image_format,
            quality=args.quality,
            table_format=args.table_format,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.written else 1


def affine2d_main(argv: Sequence[str] | None = None) -> int:
    """``python -m balanced_align.preprocess.affine2d``: exit 0 if any crop was written,
    1 if none was, 2 on bad arguments or input."""
    parser = _affine2d_arguments(
        argparse.ArgumentParser(
            prog="python -m balanced_align.preprocess.affine2d",
            description="Affine2D: align faces to the 5-point ArcFace template.",
        )
    )
    return _run_affine2d(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m balanced_align.preprocess TOOL …`` (tools: affine2d)."""
    parser = argparse.ArgumentParser(
        prog="python -m balanced_align.preprocess", description="Face preprocessing tools."
    )
    tools = parser.add_subparsers(dest="tool", required=True)
    _affine2d_arguments(tools.add_parser("affine2d", help="align to the 5-point template"))
    args = parser.parse_args(argv)
    return _run_affine2d(args)
