"""A tiny LFW-shaped tree (identity folders, official-layout pairs.txt, 68-point table).

Built from the vendored HELEN faces (resized to 48², their hand labels scaled along), so a
test gets real faces with landmarks without ../shared.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from balanced_align.data.formats.lfw import write_lfw_pairs
from balanced_align.data.sources import read_pts, write_landmark_table
from tests.data_paths import ASSET_HELEN

SIZE = 48
PER_PERSON = 4
#: two LFW sets of four people each, and four people in no pair (training only)
SET_PEOPLE = (("Ann_A", "Bob_B", "Cid_C", "Dee_D"), ("Eve_E", "Fay_F", "Gus_G", "Hal_H"))
UNPAIRED = ("Ian_I", "Jon_J", "Kim_K", "Lou_L")
PAIRS_PER_CLASS = 10


def write_lfw_tree(root: Path, size: int = SIZE) -> tuple[Path, Path, Path]:
    """Write ``root/images/<name>/<name>_000N.jpg`` (``size``² crops), ``root/landmarks68.csv``
    and ``root/pairs.txt`` (2 sets × 10 matched + 10 mismatched); return (images, table, pairs).
    """
    faces = sorted(ASSET_HELEN.glob("*.jpg"))
    images, table = root / "images", {}
    people = [name for group in SET_PEOPLE for name in group] + list(UNPAIRED)
    for p, name in enumerate(people):
        (images / name).mkdir(parents=True)
        for n in range(1, PER_PERSON + 1):
            face = faces[(p * PER_PERSON + n) % len(faces)]
            image = cv2.imread(str(face))
            scale = size / image.shape[1]
            key = f"{name}/{name}_{n:04d}.jpg"
            cv2.imwrite(str(images / key), cv2.resize(image, (size, size)))
            table[key] = (read_pts(face.with_suffix(".pts")) - 0.5) * scale
    write_landmark_table(root / "landmarks68.csv", table)
    sets = []
    for group in SET_PEOPLE:
        within = [(a, b) for a in range(1, PER_PERSON + 1) for b in range(a + 1, PER_PERSON + 1)]
        matched = [
            (group[k % len(group)], *within[k % len(within)]) for k in range(PAIRS_PER_CLASS)
        ]
        mismatched = [
            (group[k % len(group)], 1 + k % PER_PERSON, group[(k + 1) % len(group)], 1)
            for k in range(PAIRS_PER_CLASS)
        ]
        sets.append((matched, mismatched))
    write_lfw_pairs(root / "pairs.txt", sets)
    return images, root / "landmarks68.csv", root / "pairs.txt"
