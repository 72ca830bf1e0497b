"""Identification lists (MegaFace style), per-pose lists (Multi-PIE style), streamed features.

Text lists, one item per line; blank lines and lines starting with ``#`` are skipped;
paths are returned as written (relative to whatever root the caller uses) and may contain
spaces, because the last field(s) are split off from the right:

- probe list: ``path identity`` (MegaFace's FaceScrub probes: several images per identity);
- distractor list: ``path`` (the whole line);
- pose list: ``path identity yaw`` (yaw in degrees, signed).

Identities are strings (names or numbers); readers return ``labels`` as int64 indices into
``identities = sorted(set(names))``.

Multi-PIE names poses by camera; :data:`MULTIPIE_CAMERA_YAW` gives the yaw of the 13
cameras of the horizontal ring as the data set's documentation lists them (15° steps; the
sign is the data set's, not checked against this project's convention, so use |yaw| bins).

:func:`write_embeddings_memmap` writes distractor features chunk by chunk into a ``.npy``
file opened as a memory map, so a million features never sit in memory at once;
``np.load(path, mmap_mode="r")`` gives them back for
:func:`~balanced_align.evaluation.megaface_rank1`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Multi-PIE camera label -> yaw in degrees (horizontal ring, as commonly listed).
MULTIPIE_CAMERA_YAW = {
    "11_0": -90.0,
    "12_0": -75.0,
    "09_0": -60.0,
    "08_0": -45.0,
    "13_0": -30.0,
    "14_0": -15.0,
    "05_1": 0.0,
    "05_0": 15.0,
    "04_1": 30.0,
    "19_0": 45.0,
    "20_0": 60.0,
    "01_0": 75.0,
    "24_0": 90.0,
}


@dataclass
class IdentityList:
    """paths: (N,) as written; labels: (N,) int64 into ``identities``; yaws: (N,) float32
    degrees for pose lists, else None."""

    source: Path
    paths: list[str]
    labels: np.ndarray
    identities: list[str]
    yaws: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        """Identity name of each row."""
        return [self.identities[i] for i in self.labels.tolist()]


def read_list_lines(path: Path, what: str) -> tuple[str, list[tuple[int, str]]]:
    """``(where, rows)`` of a UTF-8 text list: ``rows`` are ``(line number, stripped line)``
    of its non-blank, non-``#`` lines; ``where`` (``"<what> '<path>'"``) prefixes the errors.
    A missing, unreadable or empty file is an error naming it."""
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as error:
        raise ValueError(f"{where}: not a readable text file ({error})") from None
    rows = [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise ValueError(f"{where}: no entries")
    return where, rows


def _split(line: str, fields: int, where: str, number: int, layout: str) -> list[str]:
    parts = line.rsplit(None, fields - 1)
    if len(parts) != fields:
        raise ValueError(f"{where}, line {number}: expected '{layout}', got {line!r}")
    return parts


def _labelled(source: Path, paths: list[str], names: list[str], yaws=None) -> IdentityList:
    identities = sorted(set(names))
    index = {name: i for i, name in enumerate(identities)}
    return IdentityList(
        source=source,
        paths=paths,
        labels=np.array([index[n] for n in names], np.int64),
        identities=identities,
        yaws=yaws,
    )


def read_probe_list(path: str | Path) -> IdentityList:
    """Read ``path identity`` lines (MegaFace probe list)."""
    path = Path(path)
    where, rows = read_list_lines(path, "probe list")
    parts = [_split(line, 2, where, n, "path identity") for n, line in rows]
    return _labelled(path, [p for p, _ in parts], [i for _, i in parts])


def read_distractor_list(path: str | Path) -> list[str]:
    """Read ``path`` lines (MegaFace distractor list)."""
    path = Path(path)
    _, rows = read_list_lines(path, "distractor list")
    return [line for _, line in rows]


def read_pose_list(path: str | Path) -> IdentityList:
    """Read ``path identity yaw`` lines (Multi-PIE-style per-pose list), yaw in degrees."""
    path = Path(path)
    where, rows = read_list_lines(path, "pose list")
    paths, names, yaws = [], [], []
    for number, line in rows:
        file, identity, yaw = _split(line, 3, where, number, "path identity yaw")
        try:
            value = float(yaw)
            if not np.isfinite(value) or abs(value) > 180:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{where}, line {number}: yaw {yaw!r} is not a number of degrees in [-180, 180]"
            ) from None
        paths.append(file)
        names.append(identity)
        yaws.append(value)
    return _labelled(path, paths, names, np.array(yaws, np.float32))


def _check_fields(path: Path, values: Iterable[str], what: str) -> None:
    for value in values:
        text = str(value)
        if not text.strip() or "\n" in text or text != text.strip():
            raise ValueError(f"writing {str(path)!r}: bad {what} {text!r}")


def write_probe_list(path: str | Path, paths: Sequence[str], identities: Sequence) -> None:
    """Write ``path identity`` lines; identities must not contain whitespace."""
    path = Path(path)
    if len(paths) != len(identities):
        raise ValueError(f"writing {str(path)!r}: {len(paths)} paths, {len(identities)} ids")
    _check_fields(path, paths, "path")
    _check_fields(path, identities, "identity")
    if any(len(str(i).split()) != 1 for i in identities):
        raise ValueError(f"writing {str(path)!r}: identities must not contain whitespace")
    path.write_text("".join(f"{p} {i}\n" for p, i in zip(paths, identities)), encoding="utf-8")


def write_distractor_list(path: str | Path, paths: Sequence[str]) -> None:
    """Write one path per line."""
    path = Path(path)
    _check_fields(path, paths, "path")
    path.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")


def write_pose_list(
    path: str | Path, paths: Sequence[str], identities: Sequence, yaws: Sequence[float]
) -> None:
    """Write ``path identity yaw`` lines (yaw with 6 significant digits)."""
    path = Path(path)
    if not len(paths) == len(identities) == len(yaws):
        raise ValueError(f"writing {str(path)!r}: paths, identities and yaws differ in length")
    _check_fields(path, paths, "path")
    if any(len(str(i).split()) != 1 for i in identities):
        raise ValueError(f"writing {str(path)!r}: identities must not contain whitespace")
    lines = [f"{p} {i} {float(y):g}\n" for p, i, y in zip(paths, identities, yaws)]
    path.write_text("".join(lines), encoding="utf-8")


def write_embeddings_memmap(
    path: str | Path, embed_iter: Iterable, dim: int, count: int, dtype=np.float32
) -> np.memmap:
    """Write ``count`` embeddings of size ``dim``, arriving in chunks, to a memory map.

    embed_iter: iterable of (c, dim) arrays or tensors (any c >= 1), consumed once, in
    order; only one chunk is held at a time. ``path`` ending in ``.npy`` gets a standard
    ``.npy`` (``np.lib.format.open_memmap``; read back with ``np.load(path,
    mmap_mode="r")``); any other suffix a raw C-order ``dtype`` array without header.
    Raises ValueError naming the file if the chunks hold more or fewer than ``count``
    rows, a chunk has the wrong width or non-finite values; the partial file is removed.
    Returns the written map, opened read-only.
    """
    path = Path(path)
    if dim < 1 or count < 1:
        raise ValueError(f"write_embeddings_memmap({str(path)!r}): dim and count must be >= 1")
    npy = path.suffix == ".npy"
    if npy:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(count, dim))
    else:
        out = np.memmap(path, mode="w+", dtype=dtype, shape=(count, dim))
    written = 0
    try:
        for chunk in embed_iter:
            if hasattr(chunk, "detach"):
                chunk = chunk.detach().cpu().numpy()
            chunk = np.asarray(chunk)
            if chunk.ndim != 2 or chunk.shape[1] != dim:
                raise ValueError(f"chunk of shape {chunk.shape}, expected (c, {dim})")
            if not np.isfinite(chunk).all():
                raise ValueError(f"rows {written}…{written + len(chunk) - 1} hold NaN or inf")
            if written + len(chunk) > count:
                raise ValueError(f"the chunks hold more than count={count} rows")
            out[written : written + len(chunk)] = chunk
            written += len(chunk)
        if written != count:
            raise ValueError(f"the chunks hold {written} rows, expected count={count}")
        out.flush()
    except Exception as error:
        del out
        path.unlink(missing_ok=True)
        if isinstance(error, ValueError):
            raise ValueError(f"write_embeddings_memmap({str(path)!r}): {error}") from None
        raise
    del out
    if npy:
        return np.load(path, mmap_mode="r")
    return np.memmap(path, mode="r", dtype=dtype, shape=(count, dim))
