"""Compare faces: ``python -m balanced_align.compare``.

::

    python -m balanced_align.compare a.jpg b.jpg --onnx model.onnx      # threshold from export
    python -m balanced_align.compare a.jpg b.jpg --ckpt last.ckpt --threshold 0.31
    python -m balanced_align.compare folder_a/ folder_b/ --ckpt last.ckpt --out scores.csv

Two images: prints their cosine similarity (of L2-normalised flip-TTA embeddings) and the
decision "same" (≥ threshold) or "different". Two folders: every image of the first against
every image of the second, as CSV rows ``a, b, cosine, decision`` (to ``--out`` or stdout).

The threshold is ``--threshold``, else the one stored in the ONNX file by
``python -m balanced_align.export --calibrate-lfw …`` (or ``--threshold``); without either
only the similarity is reported. Landmark-driven models (``align=affine2d|fullalign``) take
``--landmarks`` (for ``a``) and ``--landmarks-b`` tables keyed by the path relative to the
folder (for a single image: its folder).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from balanced_align.embed import add_model_arguments, build_embedder, landmarks_by_path, list_images
from balanced_align.inference import FaceEmbedder


def _side(embedder: FaceEmbedder, target: Path, table: str | None, convention: str, flag: str):
    """(paths, (N, D) embeddings) of one side: an image file or a folder of images."""
    root = target if target.is_dir() else target.parent
    if target.is_dir():
        paths = list_images(target)
    elif target.is_file():
        paths = [target]
    else:
        raise FileNotFoundError(f"{str(target)!r} is neither an image file nor a folder")
    points = None
    if embedder.needs_landmarks:
        if table is None:
            raise ValueError(
                f"align.method={embedder.info.method} aligns each face by its landmarks: give "
                f"{flag} table.csv (keys relative to {str(root)!r})"
            )
        by_path = landmarks_by_path(table, root, convention)
        missing = [str(p) for p in paths if p.resolve() not in by_path]
        if missing:
            raise ValueError(f"{flag} {table!r}: no row for {missing[:5]}")
        points = [by_path[p.resolve()] for p in paths]
    rows = [
        embedder(
            [str(p) for p in paths[i : i + embedder.batch_size]],
            None if points is None else points[i : i + embedder.batch_size],
        )
        for i in range(0, len(paths), embedder.batch_size)
    ]
    return paths, torch.cat(rows)


def decide(similarity: float, threshold: float | None) -> str:
    """ "same" / "different" at ``threshold`` (cosine ≥ threshold is the same person), or ""."""
    if threshold is None:
        return ""
    return "same" if similarity >= threshold else "different"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m balanced_align.compare",
        description="Cosine similarity of two faces (or two folders) and a same/different call.",
    )
    parser.add_argument("a", help="image file or folder")
    parser.add_argument("b", help="image file or folder")
    parser.add_argument("--threshold", type=float, help="cosine threshold (default: the export's)")
    parser.add_argument("--out", help="CSV of the scores (folders; default: stdout)")
    parser.add_argument("--landmarks-b", help="landmark table of b (landmark-driven methods)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)

    embedder = build_embedder(args)
    threshold = args.threshold if args.threshold is not None else embedder.threshold
    a, b = Path(args.a), Path(args.b)
    conv = args.landmark_convention
    paths_a, emb_a = _side(embedder, a, args.landmarks, conv, "--landmarks")
    paths_b, emb_b = _side(embedder, b, args.landmarks_b, conv, "--landmarks-b")
    scores = (emb_a @ emb_b.T).numpy().astype(np.float64)
    if a.is_file() and b.is_file():
        similarity = float(scores[0, 0])
        verdict = decide(similarity, threshold)
        if threshold is None:
            print(
                f"cosine {similarity:.4f} (no threshold: give --threshold or an export "
                "calibrated with --calibrate-lfw)"
            )
        else:
            print(f"cosine {similarity:.4f}: {verdict} (threshold {threshold:.4f})")
        return 0
    if args.out:
        from balanced_align.safe_paths import refuse_overwriting_inputs

        refuse_overwriting_inputs([args.out], [*paths_a, *paths_b], what="--out")
    handle = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "cosine", "decision"])
        for i, path_a in enumerate(paths_a):
            for j, path_b in enumerate(paths_b):
                score = float(scores[i, j])
                writer.writerow([path_a, path_b, f"{score:.6f}", decide(score, threshold)])
    finally:
        if args.out:
            handle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
