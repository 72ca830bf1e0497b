"""Untrained yardstick for the LFW recipe: HOG features of each held-out set's pairs.

Verification accuracy of cosine similarity between HOG descriptors (64² grey, 8-px cells)
under the project's LFW protocol (:mod:`balanced_align.data.lfw_protocol`: the official pairs
of one set, balanced 10-fold thresholds), for the raw 110² detector crops resized to 64²,
their central 80² resized to 64², and Affine2D crops (five points of the landmark table onto
the ArcFace template at 64²).
No learning: it shows how much the input framing alone is worth on these photographs.

    PYTHONPATH=src python benchmarks/lfw_handcrafted.py ../shared/data/lfw_dev 1 2 3
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from balanced_align.data.lfw_protocol import held_out_split
from balanced_align.data.sources import ImageFolderSource
from balanced_align.evaluation.protocol import evaluate_protocol
from balanced_align.preprocess.affine2d import affine2d_align

SIZE = 64
CELL = 8
BINS = 9
CENTRE = 80


def descriptor(image: np.ndarray) -> np.ndarray:
    """HOG: unsigned gradient orientation histograms of 8-px cells (9 bins, magnitude
    weighted), each 2×2-cell block L2-normalised; (7·7·36,) for a 64² image."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    bins = ((np.arctan2(gy, gx) % np.pi) / np.pi * BINS).astype(int) % BINS
    n = SIZE // CELL
    cells = np.zeros((n, n, BINS), np.float32)
    rows, cols = np.indices(grey.shape) // CELL
    np.add.at(cells, (rows, cols, bins), magnitude)
    blocks = np.concatenate(
        [cells[:-1, :-1], cells[1:, :-1], cells[:-1, 1:], cells[1:, 1:]], axis=-1
    )
    blocks /= np.linalg.norm(blocks, axis=-1, keepdims=True) + 1e-6
    return blocks.reshape(-1)


def main(lfw_dir: str, sets: list[int]) -> None:
    root = Path(lfw_dir)
    source = ImageFolderSource(
        root / "images",
        landmarks=root / "landmarks68.csv",
        on_bad_sample="skip",
        check_images=False,
    )
    for test_set in sets:
        items, protocol = held_out_split(source, root / "pairs.txt", test_set=test_set).test
        framings = {"raw 110² → 64²": [], "centre 80² → 64²": [], "Affine2D 64²": []}
        for i in range(len(items)):
            record = items[i]
            framings["raw 110² → 64²"].append(
                descriptor(cv2.resize(record.image, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
            )
            h, w = record.image.shape[:2]
            top, left = (h - CENTRE) // 2, (w - CENTRE) // 2
            centre = record.image[top : top + CENTRE, left : left + CENTRE]
            framings["centre 80² → 64²"].append(
                descriptor(cv2.resize(centre, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
            )
            crop, _, _ = affine2d_align(record.image, record.landmarks, size=SIZE)
            framings["Affine2D 64²"].append(descriptor(crop))
        for name, rows in framings.items():
            metrics = evaluate_protocol(protocol, np.stack(rows), labels=items.labels)
            print(
                f"set {test_set} {name}: verif_acc {metrics['verif_acc']:.3f} "
                f"± {metrics['verif_acc_std']:.3f}, AUC {metrics['verif_auc']:.3f} "
                f"({len(protocol.issame)} pairs); rank-1 {metrics['rank1']:.3f}"
            )


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2:]] or [1])
