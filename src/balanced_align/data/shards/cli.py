"""Command line: convert a face data source into a shard set.

``python -m balanced_align.data.shards --from-folder ROOT | --from-pts ROOT |
--from-synthfaces N K --out DIR`` builds the source (an ``ImageFolderSource``, a
``PtsFolderSource`` or ``SynthFaces``), writes it with :func:`convert_to_shards` and prints
a summary of the written index; :func:`main` returns the exit status (2 on bad input).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from balanced_align.data.shards.format import IMAGE_FORMATS
from balanced_align.data.shards.reader import ShardIndex
from balanced_align.data.shards.writer import convert_to_shards


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m balanced_align.data.shards",
        description="Convert a face data source into WebDataset-style tar shards.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-folder", metavar="ROOT", help="identity-per-folder tree")
    source.add_argument("--from-pts", metavar="ROOT", help="images with .pts files beside them")
    source.add_argument(
        "--from-synthfaces",
        nargs=2,
        type=int,
        metavar=("IDENTITIES", "IMAGES_PER_IDENTITY"),
        help="render SynthFaces",
    )
    parser.add_argument("--landmarks", metavar="TABLE", help="CSV/Parquet table (--from-folder)")
    parser.add_argument(
        "--landmark-convention",
        default=None,
        help="corner | one_based | zero_based_centre (default: corner for a table, "
        "one_based for .pts)",
    )
    parser.add_argument("--schema", default=None, help="lmk84 | ibug68 | five")
    parser.add_argument("--on-bad-sample", default="raise", choices=("raise", "skip"))
    parser.add_argument("--image-size", type=int, default=112, help="SynthFaces image size")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--format", default="jpg", choices=IMAGE_FORMATS, dest="image_format")
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--no-shuffle", action="store_true", help="keep the source's order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--overwrite", action="store_true")
    return parser


def _source_from_args(args: argparse.Namespace):
    from balanced_align.data.sources import ImageFolderSource, PtsFolderSource

    if args.from_folder is not None:
        return ImageFolderSource(
            args.from_folder,
            landmarks=args.landmarks,
            landmark_convention=args.landmark_convention or "corner",
            schema=args.schema,
            on_bad_sample=args.on_bad_sample,
        )
    if args.landmarks is not None:
        raise ValueError("--landmarks goes with --from-folder")
    if args.from_pts is not None:
        return PtsFolderSource(
            args.from_pts,
            convention=args.landmark_convention or "one_based",
            schema=args.schema,
            on_bad_sample=args.on_bad_sample,
        )
    from balanced_align.data.synthfaces import SynthFaces

    identities, per_identity = args.from_synthfaces
    return SynthFaces(identities, per_identity, image_size=args.image_size, seed=args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 with a message on bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        source = _source_from_args(args)
        paths = convert_to_shards(
            source,
            args.out,
            samples_per_shard=args.samples_per_shard,
            image_format=args.image_format,
            quality=args.quality,
            shuffle=not args.no_shuffle,
            seed=args.seed,
            num_threads=args.threads,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    index = ShardIndex.load(args.out)
    skipped = getattr(source, "skipped", None)
    print(
        f"wrote {index.total} samples ({index.num_classes} classes, schema {index.schema}) "
        f"in {len(paths)} shard(s) to {index.path}"
    )
    if skipped is not None and len(skipped):
        print(str(skipped), file=sys.stderr)
    return 0
