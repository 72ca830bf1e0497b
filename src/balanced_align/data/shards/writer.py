"""Writing shard sets: FaceRecords (or an indexable source of them) -> tar shards + index.

:func:`write_shards` encodes an iterable of :class:`FaceRecord` and :func:`convert_to_shards`
an indexable source (loaded and encoded by a thread pool, optionally in a shuffled order);
both check each record, write each shard as ``*.partial`` and rename it when complete, and
write ``index.json`` last, so a folder with an index holds a complete set.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from balanced_align.core.schema import LandmarkSchema, get_schema, schema_for_count
from balanced_align.data.record import FaceRecord
from balanced_align.data.shards.format import (
    _KEY_DIGITS,
    FORMAT_NAME,
    FORMAT_VERSION,
    IMAGE_FORMATS,
    INDEX_NAME,
)
from balanced_align.data.validation import require_rgb_uint8
from balanced_align.safe_paths import check_output_root


def _jsonable(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _pose(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class _Encoded:
    """One sample ready for the tar: encoded image, JSON bytes, and what the index needs."""

    image: bytes
    payload: bytes
    label: int
    num_points: int | None


def _encode(record: FaceRecord, where: str, image_format: str, quality: int) -> _Encoded:
    """FaceRecord -> encoded image + JSON; ValueError naming ``where`` on bad content."""
    image = record.image
    require_rgb_uint8(image, where)
    landmarks = None
    if record.landmarks is not None:
        points = np.asarray(record.landmarks, np.float32)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"{where}: landmarks must be (S, 2), got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError(f"{where}: landmarks contain NaN or infinite values")
        landmarks = points.tolist()
    if isinstance(record.label, (bool, np.bool_)) or not isinstance(
        record.label, (int, np.integer)
    ):
        raise ValueError(f"{where}: label must be an integer, got {record.label!r}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image_format == "jpg":
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"{where}: OpenCV could not encode the image as {image_format}")
    meta = {k: v for k, v in (record.meta or {}).items() if isinstance(k, str) and _jsonable(v)}
    payload = {
        "label": int(record.label),
        "landmarks": landmarks,
        "yaw": _pose(record.yaw),
        "pitch": _pose(record.pitch),
        "roll": _pose(record.roll),
        "source": str(record.source),
        "meta": meta,
    }
    return _Encoded(
        image=data.tobytes(),
        payload=json.dumps(payload, allow_nan=False).encode("utf-8"),
        label=int(record.label),
        num_points=None if landmarks is None else len(landmarks),
    )


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible bytes: same records, same shards
    tar.addfile(info, io.BytesIO(data))


def _check_format(image_format: str, quality: int, samples_per_shard: int) -> str:
    image_format = {"jpeg": "jpg"}.get(str(image_format).lower(), str(image_format).lower())
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must lie in 1..100, got {quality}")
    if int(samples_per_shard) < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    return image_format


def _prepare_out_dir(out_dir: Path, prefix: str, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [out_dir / INDEX_NAME, *sorted(out_dir.glob(f"{prefix}-*.tar"))]
    existing = [p for p in existing if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"out_dir {str(out_dir)!r} already holds shards ({existing[0].name}); "
            "pass overwrite=True (--overwrite) to replace them"
        )
    for path in existing:
        path.unlink()


def _write_encoded(
    samples: Iterable[tuple[str, _Encoded]],
    out_dir: Path,
    samples_per_shard: int,
    image_format: str,
    num_classes: int | None,
    schema: LandmarkSchema | None,
    prefix: str,
) -> list[Path]:
    """Write (where, encoded sample) pairs into shards, then ``index.json``."""
    shards: list[dict] = []
    paths: list[Path] = []
    tar = None
    temporary = None
    total, max_label = 0, -1
    num_points: int | None = None
    has_landmarks: bool | None = None
    try:
        for where, sample in samples:
            with_points = sample.num_points is not None
            if has_landmarks is None:
                has_landmarks, num_points = with_points, sample.num_points
            elif with_points != has_landmarks or sample.num_points != num_points:
                raise ValueError(
                    f"{where}: has {sample.num_points or 'no'} landmarks, but the first "
                    f"sample has {num_points or 'no'}; a shard set needs one layout"
                )
            if tar is None:
                name = f"{prefix}-{len(shards):06d}.tar"
                temporary = out_dir / (name + ".partial")
                tar = tarfile.open(temporary, "w", format=tarfile.GNU_FORMAT)
                shards.append({"name": name, "count": 0})
            key = f"{total:0{_KEY_DIGITS}d}"
            _add_member(tar, f"{key}.{image_format}", sample.image)
            _add_member(tar, f"{key}.json", sample.payload)
            shards[-1]["count"] += 1
            total += 1
            max_label = max(max_label, sample.label)
            if shards[-1]["count"] == samples_per_shard:
                tar.close()
                tar = None
                paths.append(temporary.replace(out_dir / shards[-1]["name"]))
        if tar is not None:
            tar.close()
            tar = None
            paths.append(temporary.replace(out_dir / shards[-1]["name"]))
    finally:
        if tar is not None:
            tar.close()
            temporary.unlink(missing_ok=True)
    if total == 0:
        raise ValueError("write_shards: no records to write")
    if schema is None and has_landmarks:
        try:
            schema = schema_for_count(num_points)
        except ValueError:
            schema = None
    if schema is not None and has_landmarks and schema.num_points != num_points:
        raise ValueError(
            f"write_shards: schema '{schema.name}' has {schema.num_points} points, "
            f"the records have {num_points}"
        )
    index = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "shards": shards,
        "total": total,
        "num_classes": int(max_label + 1 if num_classes is None else num_classes),
        "schema": schema.name if (schema is not None and has_landmarks) else None,
        "num_points": num_points if has_landmarks else None,
        "has_landmarks": bool(has_landmarks),
        "image_format": image_format,
    }
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return paths


def write_shards(
    records: Iterable[FaceRecord],
    out_dir: str | Path,
    samples_per_shard: int = 1000,
    image_format: str = "jpg",
    quality: int = 95,
    num_classes: int | None = None,
    schema: str | LandmarkSchema | None = None,
    prefix: str = "shard",
    overwrite: bool = False,
) -> list[Path]:
    """Write FaceRecords into tar shards of ``samples_per_shard`` samples plus ``index.json``.

    Args:
        records: any iterable of :class:`FaceRecord` (image (H, W, 3) uint8 RGB, landmarks
            (S, 2) corner-origin pixels or None for all of them, integer label).
        out_dir: created if needed; existing shards there need ``overwrite=True``.
        image_format: ``"jpg"`` (``quality`` 1–100) or ``"png"`` (lossless).
        num_classes: stored in the index; default: largest label + 1.
        schema: landmark schema (name or object) stored in the index; default: the one
            matching the landmark count, if any.
        prefix: shard names are ``{prefix}-000000.tar``, …

    Returns the shard paths in order. Shards are written as ``*.partial`` and renamed when
    complete; ``index.json`` last.
    """
    image_format = _check_format(image_format, quality, samples_per_shard)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, prefix, overwrite)
    schema = None if schema is None else get_schema(schema)
    encoded = (
        (f"record {i} ({r.source})", _encode(r, f"record {i} ({r.source})", image_format, quality))
        for i, r in enumerate(records)
    )
    return _write_encoded(
        encoded, out_dir, int(samples_per_shard), image_format, num_classes, schema, prefix
    )


def convert_to_shards(
    source,
    out_dir: str | Path,
    samples_per_shard: int = 1000,
    image_format: str = "jpg",
    quality: int = 95,
    shuffle: bool = True,
    seed: int = 0,
    num_threads: int = 4,
    prefix: str = "shard",
    overwrite: bool = False,
) -> list[Path]:
    """Write an indexable FaceRecord source (``len`` + ``source[i]``) as shards.

    Works for :class:`~balanced_align.data.sources.ImageFolderSource`,
    :class:`~balanced_align.data.sources.PtsFolderSource`, ``SynthFaces``,
    :class:`~balanced_align.data.sources.RecordSubset`, a RecordIO source, … ; the
    source's ``num_classes`` and ``schema`` (where it has them) go to the index.
    ``shuffle`` writes the items in the order of a permutation drawn from ``seed``, so each
    shard mixes identities (folder sources list them identity by identity, and a stream
    reads contiguous runs of samples). Items are loaded and encoded by ``num_threads``
    threads (OpenCV releases the GIL) and written in order. A source with a ``root`` folder
    (the file-backed sources) cannot be written inside it: ``out_dir`` there raises
    :class:`~balanced_align.safe_paths.UnsafePathError` (shards would mix with the inputs).
    """
    image_format = _check_format(image_format, quality, samples_per_shard)
    if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
        raise TypeError(f"convert_to_shards: source {source!r} must support len() and [i]")
    count = len(source)
    if count == 0:
        raise ValueError(f"convert_to_shards: source {source!r} is empty")
    out_dir = Path(out_dir)
    root = getattr(source, "root", None)
    if isinstance(root, (str, Path)) and Path(root).is_dir():
        check_output_root(out_dir, root, what="out_dir")
    _prepare_out_dir(out_dir, prefix, overwrite)
    order = np.random.default_rng(seed).permutation(count) if shuffle else np.arange(count)
    schema = getattr(source, "schema", None)
    num_classes = getattr(source, "num_classes", None)

    def one(index: int) -> tuple[str, _Encoded]:
        record = source[int(index)]
        where = f"item {int(index)} of {source!r} ({record.source})"
        return where, _encode(record, where, image_format, quality)

    def produce() -> Iterator[tuple[str, _Encoded]]:
        threads = max(1, int(num_threads))
        if threads == 1:
            yield from (one(i) for i in order)
            return
        chunk = 16 * threads  # bounded memory: at most one chunk of encoded images in flight
        with ThreadPoolExecutor(threads) as pool:
            for start in range(0, count, chunk):
                yield from pool.map(one, order[start : start + chunk])

    return _write_encoded(
        produce(),
        out_dir,
        int(samples_per_shard),
        image_format,
        None if num_classes is None else int(num_classes),
        None if schema is None else get_schema(schema),
        prefix,
    )
