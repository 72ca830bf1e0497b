"""YouTube-Faces-style video verification: frame folders, a splits file, video embeddings.

Tree: ``root/<identity>/<video id>/<frame image>`` (YTF: ``frame_images_DB`` or
``aligned_images_DB``). A video is named ``<identity>/<video id>`` (its folder relative to
``root``); its frames are the image files in that folder, in natural order (numbers
inside names compare as numbers: ``aligned_detect_0.9.jpg`` < ``aligned_detect_0.10.jpg``).

Splits file (YTF ``splits.txt``): comma-separated with one header row; spaces around
fields are ignored. Columns are found by their header names (case-insensitive):

- ``split number``: the fold of the pair (kept as written, e.g. 1…10);
- ``first name``, ``second name``: the two videos, ``<identity>/<video id>``;
- the label, the first present of ``is same``, ``is same person``, ``same``, ``label``:
  ``1``/``0`` (or ``true``/``false``).

Other columns (e.g. ``pair number``) are ignored. So both the 4-column layout
``split number, first name, second name, is same`` and wider files with extra columns
are read.

Video sets are scored with one embedding per video: :func:`video_embeddings` averages the
frame embeddings of each video and L2-normalises the mean (docs/design.md §5).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.data.sources import is_image_file

SPLIT_COLUMN = "split number"
NAME_COLUMNS = ("first name", "second name")
LABEL_COLUMNS = ("is same", "is same person", "same", "label")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as integers (``f2`` < ``f10``)."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


@dataclass
class VideoPairs:
    """Parsed video verification pairs.

    videos: unique video names ``<identity>/<video id>``, in order of first appearance.
    frames: per video, its frame files (natural order, at most ``max_frames``).
    names: identity of each video; labels: int64 index into ``sorted(set(names))``.
    pairs_a, pairs_b: (P,) int64 indices into ``videos``; issame: (P,) bool;
    folds: (P,) int64 split number of each pair, as written.
    """

    source: Path
    root: Path
    videos: list[str]
    frames: list[list[Path]]
    names: list[str]
    labels: np.ndarray
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    issame: np.ndarray
    folds: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)

    @property
    def frame_paths(self) -> list[Path]:
        """All frames, video after video: (F,) paths."""
        return [path for frames in self.frames for path in frames]

    @property
    def video_index(self) -> np.ndarray:
        """(F,) int64 video of each entry of ``frame_paths``."""
        counts = [len(frames) for frames in self.frames]
        return np.repeat(np.arange(len(self.frames), dtype=np.int64), counts)

    def protocol(self) -> EvaluationProtocol:
        """An :class:`~balanced_align.core.protocol.EvaluationProtocol` whose rows are videos
        (feed it :func:`video_embeddings`)."""
        return EvaluationProtocol(
            pairs_a=self.pairs_a, pairs_b=self.pairs_b, issame=self.issame, pair_folds=self.folds
        )


def _column(header: list[str], names: tuple[str, ...], where: str) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise ValueError(f"{where}: the header has no {' / '.join(repr(n) for n in names)} column")


def _frames_of(folder: Path, max_frames: int | None) -> list[Path]:
    frames = sorted(
        (p for p in folder.iterdir() if p.is_file() and is_image_file(p)),
        key=lambda p: natural_key(p.name),
    )
    if max_frames is not None and len(frames) > max_frames:
        picks = np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
        frames = [frames[i] for i in picks]
    return frames


def read_video_pairs(
    splits_path: str | Path, root: str | Path, max_frames: int | None = None
) -> VideoPairs:
    """Parse a YTF-style splits file over the frame tree ``root`` (see module docstring).

    ``max_frames``: keep at most this many evenly spaced frames per video.
    Raises ValueError naming the file and line for malformed rows, FileNotFoundError
    naming missing video folders, ValueError naming videos without frames.
    """
    splits_path, root = Path(splits_path), Path(root)
    where = f"video splits file {str(splits_path)!r}"
    if not splits_path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"video root {str(root)!r} is not a folder")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    with open(splits_path, newline="", encoding="utf-8") as handle:
        rows = [
            (n, row)
            for n, row in enumerate(csv.reader(handle, skipinitialspace=True), 1)
            if any(cell.strip() for cell in row)
        ]
    if not rows:
        raise ValueError(f"{where}: empty file")
    header = [" ".join(cell.split()).lower() for cell in rows[0][1]]
    split_col = _column(header, (SPLIT_COLUMN,), where)
    first_col = _column(header, NAME_COLUMNS[:1], where)
    second_col = _column(header, NAME_COLUMNS[1:], where)
    label_col = _column(header, LABEL_COLUMNS, where)
    needed = max(split_col, first_col, second_col, label_col) + 1

    index: dict[str, int] = {}
    videos: list[str] = []
    pairs_a, pairs_b, issame, folds = [], [], [], []
    for number, row in rows[1:]:
        cells = [cell.strip() for cell in row]
        try:
            if len(cells) < needed:
                raise ValueError(f"{len(cells)} fields, expected at least {needed}")
            fold = int(cells[split_col])
            label = cells[label_col].lower()
            if label not in _TRUE + _FALSE:
                raise ValueError(f"label {cells[label_col]!r} is not 0/1")
            pair = []
            for col in (first_col, second_col):
                name = cells[col].strip("/").replace("\\", "/")
                if name.count("/") != 1 or not all(name.split("/")):
                    raise ValueError(f"video {cells[col]!r} is not '<identity>/<video id>'")
                if name not in index:
                    index[name] = len(videos)
                    videos.append(name)
                pair.append(index[name])
        except ValueError as error:
            raise ValueError(f"{where}, line {number}: {error}: {', '.join(row)!r}") from None
        pairs_a.append(pair[0])
        pairs_b.append(pair[1])
        issame.append(label in _TRUE)
        folds.append(fold)
    if not videos:
        raise ValueError(f"{where}: no pairs")

    missing = [v for v in videos if not (root / v).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{where}: {len(missing)} video folder(s) missing under {str(root)!r}, e.g. "
            f"{missing[:5]}"
        )
    frames = [_frames_of(root / v, max_frames) for v in videos]
    empty = [v for v, f in zip(videos, frames) if not f]
    if empty:
        raise ValueError(
            f"{where}: {len(empty)} video folder(s) under {str(root)!r} hold no frame images, "
            f"e.g. {empty[:5]}"
        )
    names = [v.split("/")[0] for v in videos]
    classes = {name: i for i, name in enumerate(sorted(set(names)))}
    return VideoPairs(
        source=splits_path,
        root=root,
        videos=videos,
        frames=frames,
        names=names,
        labels=np.array([classes[n] for n in names], np.int64),
        pairs_a=np.array(pairs_a, np.int64),
        pairs_b=np.array(pairs_b, np.int64),
        issame=np.array(issame, bool),
        folds=np.array(folds, np.int64),
    )


def write_video_pairs(path: str | Path, rows: Iterable[tuple[int, str, str, bool]]) -> None:
    """Write a splits file: header ``split number, first name, second name, is same`` and
    one ``split, first video, second video, 0|1`` row per pair."""
    lines = [", ".join((SPLIT_COLUMN, *NAME_COLUMNS, LABEL_COLUMNS[0]))]
    for split, first, second, same in rows:
        for name in (first, second):
            if "," in name:
                raise ValueError(f"write_video_pairs({str(path)!r}): comma in video {name!r}")
        lines.append(f"{int(split)}, {first}, {second}, {int(bool(same))}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def video_embeddings(
    frame_embeddings,
    video_index,
    num_videos: int | None = None,
    normalize_frames: bool = False,
):
    """One embedding per video: the mean of its frames' embeddings, L2-normalised.

    frame_embeddings: (F, D) array or tensor; video_index: (F,) int video of each frame,
    in [0, V); V = ``num_videos`` (default ``max + 1``); every video needs a frame.
    ``normalize_frames``: L2-normalise each frame before averaging.
    Returns (V, D) float32, a tensor if ``frame_embeddings`` is one, else a numpy array.
    """
    is_tensor = torch.is_tensor(frame_embeddings)
    emb = (
        frame_embeddings.detach().float()
        if is_tensor
        else torch.from_numpy(np.asarray(frame_embeddings, np.float32))
    )
    index = torch.as_tensor(np.asarray(video_index), dtype=torch.int64, device=emb.device)
    if emb.ndim != 2:
        raise ValueError(f"frame_embeddings: expected (F, D), got shape {tuple(emb.shape)}")
    if index.shape != (emb.shape[0],):
        raise ValueError(f"video_index: expected shape ({emb.shape[0]},), got {tuple(index.shape)}")
    if not bool(torch.isfinite(emb).all()):
        raise ValueError("frame_embeddings contain NaN or inf")
    if num_videos is not None:
        count = int(num_videos)
    else:
        count = int(index.max()) + 1 if index.numel() else 0
    if count < 1:
        raise ValueError("video_embeddings: no videos (empty video_index and no num_videos)")
    low, high = (int(index.min()), int(index.max())) if index.numel() else (0, 0)
    if low < 0 or high >= count:
        raise ValueError(f"video_index must lie in [0, {count}), got [{low}, {high}]")
    if normalize_frames:
        emb = torch.nn.functional.normalize(emb, dim=1)
    sums = torch.zeros(count, emb.shape[1], dtype=torch.float32, device=emb.device)
    sums.index_add_(0, index, emb)
    frames = torch.bincount(index, minlength=count)
    if bool((frames == 0).any()):
        empty = torch.nonzero(frames == 0).flatten()[:5].tolist()
        raise ValueError(f"video_embeddings: videos {empty} have no frames")
    means = torch.nn.functional.normalize(sums / frames[:, None], dim=1)
    return means if is_tensor else means.numpy()
