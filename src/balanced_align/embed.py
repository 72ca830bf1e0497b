"""Embed every image under a folder: ``python -m balanced_align.embed``.

::

    python -m balanced_align.embed ROOT --ckpt last.ckpt --out embeddings.npy
    python -m balanced_align.embed ROOT --ckpt fullalign.ckpt --landmarks table.csv --out e.npy
    python -m balanced_align.embed ROOT --onnx model.onnx --out embeddings.npy

Writes ``--out``, an (N, D) float32 ``.npy`` of L2-normalised (flip-TTA unless ``--no-flip``)
embeddings, and ``--paths`` (default ``paths.txt`` beside it): the N image paths relative to
ROOT, one per line, row-aligned with the array. Images (any extension in
``IMAGE_EXTENSIONS``, found recursively, sorted) are read, embedded and written batch by
batch into a ``.npy`` memory map, so memory does not grow with the number of images.

``--landmarks`` (CSV / Parquet, columns ``path, x0, y0, …`` keyed by the path relative to ROOT,
as for training) gives the landmark-driven methods (``align=affine2d|fullalign``) each image's
landmarks; ``--landmark-convention`` as ``data.source.landmark_convention``. Table keys are resolved
inside ROOT (absolute keys and ``..`` escapes are refused), every image needs a row, and the
outputs may be neither an input file nor inside ROOT.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from balanced_align.data.sources import is_image_file, read_landmark_table, to_corner
from balanced_align.data.validation import read_image
from balanced_align.inference import FaceEmbedder
from balanced_align.safe_paths import check_output_root, refuse_overwriting_inputs, resolve_inside

log = logging.getLogger(__name__)


def list_images(root: str | Path) -> list[Path]:
    """Image files below ``root`` (recursive, sorted, hidden files skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ROOT {str(root)!r} is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not paths:
        raise FileNotFoundError(f"ROOT {str(root)!r} holds no image files")
    return paths


def landmarks_by_path(
    table_path: str | Path, root: str | Path, convention: str = "corner"
) -> dict[Path, np.ndarray]:
    """``{resolved image path: (S, 2) corner-origin pixels}`` of a landmark table, every key
    resolved inside ``root`` (:func:`~balanced_align.safe_paths.resolve_inside`)."""
    table = read_landmark_table(table_path)
    return {
        resolve_inside(root, key, what=f"landmark table {str(table_path)!r} row {key!r}"): (
            to_corner(points, convention)
        )
        for key, points in table.items()
    }


def embed_folder(
    embedder: FaceEmbedder,
    root: str | Path,
    out: str | Path,
    paths_out: str | Path,
    landmarks: dict[Path, np.ndarray] | None = None,
    progress: bool = True,
) -> int:
    """Embed the images of ``root`` into the ``.npy`` ``out`` and list them in ``paths_out``
    (module docstring); returns the number of images."""
    from numpy.lib.format import open_memmap
    from rich.progress import Progress

    root = Path(root)
    images = list_images(root)
    if embedder.needs_landmarks:
        if landmarks is None:
            raise ValueError(
                f"align.method={embedder.info.method} aligns each face by its landmarks: "
                "give --landmarks table.csv"
            )
        missing = [str(p.relative_to(root)) for p in images if p.resolve() not in landmarks]
        if missing:
            raise ValueError(
                f"--landmarks: no row for {len(missing)} image(s) under {str(root)!r}, e.g. "
                f"{missing[:5]}"
            )
    array = open_memmap(
        out, mode="w+", dtype=np.float32, shape=(len(images), embedder.info.embedding_dim)
    )
    batch_size = embedder.batch_size
    with open(paths_out, "w", encoding="utf-8") as listing, Progress(disable=not progress) as bar:
        task = bar.add_task("embedding", total=len(images))
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            pixels = None
            if embedder.needs_landmarks:
                pixels = [landmarks[p.resolve()] for p in batch]
            rows = embedder([read_image(p) for p in batch], pixels)
            array[start : start + len(batch)] = rows.numpy()
            listing.writelines(f"{p.relative_to(root).as_posix()}\n" for p in batch)
            bar.advance(task, len(batch))
    array.flush()
    del array
    return len(images)


def build_embedder(args: argparse.Namespace) -> FaceEmbedder:
    """The embedder of ``--ckpt`` or ``--onnx`` (shared by ``embed`` and ``compare``)."""
    if args.onnx:
        return FaceEmbedder.from_onnx(args.onnx, flip=not args.no_flip, batch_size=args.batch_size)
    return FaceEmbedder.from_checkpoint(
        args.ckpt,
        device=args.device,
        precision=args.precision,
        flip=not args.no_flip,
        batch_size=args.batch_size,
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt`` / ``--onnx``, ``--device``, ``--precision``, ``--batch-size``, ``--no-flip``."""
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="Lightning checkpoint (.ckpt), read safely")
    model.add_argument("--onnx", help="ONNX file written by balanced_align.export")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (checkpoints)")
    parser.add_argument("--precision", default="32", help="32 | bf16 | 16 (checkpoints)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-flip", action="store_true", help="no flip TTA")
    parser.add_argument("--landmarks", help="landmark table (.csv / .parquet), path, x0, y0, …")
    parser.add_argument(
        "--landmark-convention",
        default="corner",
        help="corner | one_based | zero_based_centre (as data.source.landmark_convention)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m balanced_align.embed",
        description="Embed every image under ROOT into an .npy (row-aligned paths.txt).",
    )
    parser.add_argument("root", help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="embeddings .npy to write")
    parser.add_argument("--paths", help="row-aligned list to write (default: paths.txt by --out)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    out = Path(args.out)
    if out.suffix != ".npy":
        parser.error(f"--out {args.out!r}: expected a .npy file name")
    paths_out = Path(args.paths) if args.paths else out.with_name("paths.txt")
    inputs = [p for p in (args.ckpt, args.onnx, args.landmarks) if p]
    refuse_overwriting_inputs([out, paths_out], inputs, what="output")
    for path, flag in ((out, "--out"), (paths_out, "--paths")):
        check_output_root(path, args.root, what=flag)
    if out.resolve() == paths_out.resolve():
        parser.error("--out and --paths name the same file")
    embedder = build_embedder(args)
    table = None
    if args.landmarks and not embedder.needs_landmarks:
        log.warning(
            "--landmarks is not used: align.method=%s does not align by landmarks",
            embedder.info.method,
        )
    elif args.landmarks:
        table = landmarks_by_path(args.landmarks, args.root, args.landmark_convention)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths_out.parent.mkdir(parents=True, exist_ok=True)
    count = embed_folder(embedder, args.root, out, paths_out, table, progress=not args.quiet)
    log.info("wrote %d embeddings to %s and their paths to %s", count, out, paths_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
