"""IJB-B / IJB-C 1:1 verification files, in the layout insightface publishes them.

Under a root ``ROOT`` (e.g. ``IJBC/``), for a set named ``NAME`` (``ijbb`` or ``ijbc``)::

    ROOT/meta/NAME_face_tid_mid.txt         image name, template id, media id (per face)
    ROOT/meta/NAME_template_pair_label.txt  template id 1, template id 2, label (1 = same)
    ROOT/meta/NAME_name_5pts_score.txt      image name, x1 y1 … x5 y5, detector score
    ROOT/loose_crop/<image name>            the loosely cropped face images

Fields are separated by spaces. The five points are the left eye, right eye, nose tip and
the left and right mouth corners, in 0-based pixel-centre coordinates of the loose crop
(OpenCV's frame, insightface's convention): :func:`read_ijb` converts them to this
project's corner-origin pixels (docs/design.md §2.1) with ``landmark_convention``.

Rows are joined by image name: every face of the template file needs exactly one landmark
row. Errors name the file and line. :func:`write_ijb` writes the same layout (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balanced_align.data.formats.lists import read_list_lines
from balanced_align.data.sources import from_corner, to_corner

META = "meta"
IMAGES = "loose_crop"
#: pixel convention of the insightface IJB release's 5-point files (0-based pixel centres)
LANDMARK_CONVENTION = "zero_based_centre"


def meta_paths(root: str | Path, name: str) -> dict[str, Path]:
    """The three meta files of set ``name`` under ``root``: keys faces, pairs, landmarks."""
    meta = Path(root) / META
    return {
        "faces": meta / f"{name}_face_tid_mid.txt",
        "pairs": meta / f"{name}_template_pair_label.txt",
        "landmarks": meta / f"{name}_name_5pts_score.txt",
    }


@dataclass
class IJBSet:
    """A parsed IJB-B/C 1:1 protocol.

    names: (N,) image names under ``image_root``; templates, media: (N,) int64 ids of each
    face; landmarks: (N, 5, 2) float32 corner-origin pixels of each loose crop; scores:
    (N,) float32 detector scores; pairs: (P, 2) int64 template ids; labels: (P,) bool.
    """

    name: str
    image_root: Path
    names: list[str]
    templates: np.ndarray
    media: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def media_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces grouped by (template, media): ``(group of each face (N,), template of each
        group (G,), media of each group (G,))``, groups sorted by (template, media)."""
        keys = np.stack([self.templates, self.media], axis=1)
        unique, group = np.unique(keys, axis=0, return_inverse=True)
        return group.reshape(-1).astype(np.int64), unique[:, 0], unique[:, 1]


def _rows(path: Path, what: str, fields: int) -> list[tuple[int, list[str]]]:
    where, lines = read_list_lines(path, f"IJB {what}")
    rows = [(number, line.split()) for number, line in lines]
    for number, parts in rows:
        if len(parts) != fields:
            raise ValueError(f"{where} line {number}: expected {fields} fields, got {len(parts)}")
    return rows


def _numbers(rows, columns: slice, kind, path: Path, what: str) -> np.ndarray:
    """The fields ``columns`` of every row as ``kind`` (int | float); errors name the line."""
    values = []
    for number, parts in rows:
        try:
            values.append([kind(v) for v in parts[columns]])
        except ValueError:
            raise ValueError(
                f"IJB {what} {str(path)!r} line {number}: not a number in {parts[columns]}"
            ) from None
    return np.array(values)


def _faces(path: Path):
    rows = _rows(path, "face/template/media file", 3)
    ids = _numbers(rows, slice(1, 3), int, path, "face/template/media file").astype(np.int64)
    names = [parts[0] for _, parts in rows]
    seen: dict[str, int] = {}
    for (number, _), name in zip(rows, names):
        if name in seen:
            raise ValueError(
                f"IJB face/template/media file {str(path)!r} line {number}: image {name!r} "
                f"already listed on line {seen[name]}"
            )
        seen[name] = number
    return names, ids[:, 0], ids[:, 1]


def _pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = _rows(path, "template pair file", 3)
    values = _numbers(rows, slice(0, 3), int, path, "template pair file").astype(np.int64)
    bad = ~np.isin(values[:, 2], (0, 1))
    if bad.any():
        number = rows[int(np.argmax(bad))][0]
        raise ValueError(
            f"IJB template pair file {str(path)!r} line {number}: label must be 0 or 1"
        )
    labels = values[:, 2].astype(bool)
    if labels.all() or not labels.any():
        raise ValueError(
            f"IJB template pair file {str(path)!r}: every pair has label {int(labels[0])}; "
            "a ROC needs both genuine (1) and impostor (0) pairs"
        )
    return values[:, :2], labels


def _landmarks(path: Path, names: list[str], convention: str):
    rows = _rows(path, "5-point landmark file", 12)
    values = _numbers(rows, slice(1, 12), float, path, "5-point landmark file")
    row_of = {parts[0]: i for i, (_, parts) in enumerate(rows)}
    missing = [n for n in names if n not in row_of]
    if missing:
        raise ValueError(
            f"IJB 5-point landmark file {str(path)!r}: no row for {len(missing)} of the "
            f"{len(names)} faces, e.g. {missing[:3]}"
        )
    picked = values[[row_of[n] for n in names]]
    bad = ~np.isfinite(picked).all(axis=1)
    if bad.any():
        number = rows[row_of[names[int(np.argmax(bad))]]][0]
        raise ValueError(
            f"IJB 5-point landmark file {str(path)!r} line {number}: non-finite values"
        )
    points = to_corner(picked[:, :10].reshape(-1, 5, 2), convention)
    return points, picked[:, 10].astype(np.float32)


def read_ijb(root: str | Path, name: str, landmark_convention: str = LANDMARK_CONVENTION) -> IJBSet:
    """Read set ``name`` (``ijbb`` | ``ijbc``) under ``root`` (layout: module docstring).

    Every template of the pair file must have faces. ``landmark_convention``: of the
    5-point file (``zero_based_centre`` as published; ``corner`` | ``one_based``).
    Image files are not opened here (the caller checks them).
    """
    paths = meta_paths(root, name)
    image_root = Path(root) / IMAGES
    if not image_root.is_dir():
        raise FileNotFoundError(f"IJB image folder {str(image_root)!r} does not exist")
    names, templates, media = _faces(paths["faces"])
    pairs, labels = _pairs(paths["pairs"])
    unknown = np.setdiff1d(np.unique(pairs), templates)
    if unknown.size:
        raise ValueError(
            f"IJB template pair file {str(paths['pairs'])!r}: {unknown.size} template id(s) "
            f"have no faces in {str(paths['faces'])!r}, e.g. {unknown[:3].tolist()}"
        )
    points, scores = _landmarks(paths["landmarks"], names, landmark_convention)
    return IJBSet(name, image_root, names, templates, media, points, scores, pairs, labels)


def write_ijb(
    root: str | Path,
    name: str,
    faces: Sequence[tuple[str, int, int]],
    landmarks: np.ndarray,
    pairs: Sequence[tuple[int, int, int]],
    scores: Sequence[float] | None = None,
    landmark_convention: str = LANDMARK_CONVENTION,
) -> dict[str, Path]:
    """Write the meta files of set ``name`` under ``root`` (images are the caller's).

    faces: ``(image name, template id, media id)`` rows; landmarks: (N, 5, 2) corner-origin
    pixels of those images (written in ``landmark_convention``); pairs: ``(template 1,
    template 2, label)`` rows; scores: detector scores (default 1). Returns the paths.
    """
    paths = meta_paths(root, name)
    paths["faces"].parent.mkdir(parents=True, exist_ok=True)
    (Path(root) / IMAGES).mkdir(parents=True, exist_ok=True)
    points = from_corner(np.asarray(landmarks, np.float64), landmark_convention).reshape(-1, 10)
    if len(points) != len(faces):
        raise ValueError(f"write_ijb: {len(points)} landmark rows for {len(faces)} faces")
    scores = [1.0] * len(faces) if scores is None else list(scores)
    paths["faces"].write_text("".join(f"{n} {t} {m}\n" for n, t, m in faces))
    paths["pairs"].write_text("".join(f"{a} {b} {int(s)}\n" for a, b, s in pairs))
    lines = [
        " ".join([n, *(f"{v:.4f}" for v in p), f"{s:.6f}"])
        for (n, _, _), p, s in zip(faces, points, scores)
    ]
    paths["landmarks"].write_text("\n".join(lines) + "\n")
    return paths
