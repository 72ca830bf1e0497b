"""Reading shard sets: the checked ``index.json``, one shard's samples, sample decoding.

:class:`ShardIndex` loads and validates an index (every listed shard must exist);
:func:`iter_shard` walks one tar shard with :mod:`tarfile`, grouping members by their
WebDataset key and seeking over the data of samples before ``start``; :func:`decode_sample`
turns a sample's members back into a :class:`FaceRecord`. Errors name the file.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from balanced_align.core.schema import get_schema
from balanced_align.data.decoding import bounds_problem
from balanced_align.data.record import FaceRecord
from balanced_align.data.shards.format import (
    _IMAGE_EXTENSIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_NAME,
    ShardError,
)


@dataclass(frozen=True)
class ShardIndex:
    """A shard set's ``index.json``: shard paths and counts, and what the samples hold.

    ``offsets[i]`` is the global position (writing order) of shard i's first sample.
    """

    path: Path
    shards: tuple[Path, ...]
    counts: tuple[int, ...]
    total: int
    num_classes: int
    schema: str | None
    num_points: int | None
    has_landmarks: bool
    image_format: str

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    @classmethod
    def load(cls, index_json_or_dir: str | Path) -> ShardIndex:
        """Read and check ``index.json`` (or ``DIR/index.json``); every shard must exist."""
        path = Path(index_json_or_dir)
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise FileNotFoundError(f"shard index {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ShardError(f"shard index {str(path)!r} is not valid JSON ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ShardError(f"shard index {str(path)!r}: not a '{FORMAT_NAME}' index")
        if data.get("version") != FORMAT_VERSION:
            raise ShardError(
                f"shard index {str(path)!r}: version {data.get('version')!r}, "
                f"this reader knows {FORMAT_VERSION}"
            )
        try:
            entries = data["shards"]
            names = [str(e["name"]) for e in entries]
            counts = [int(e["count"]) for e in entries]
            total = int(data["total"])
        except (KeyError, TypeError, ValueError) as error:
            raise ShardError(f"shard index {str(path)!r}: malformed ({error!r})") from None
        if not names or min(counts) < 1 or sum(counts) != total:
            raise ShardError(
                f"shard index {str(path)!r}: needs >= 1 shard, positive counts summing to "
                f"total ({sum(counts)} != {total})"
            )
        shards = tuple(path.parent / name for name in names)
        missing = [str(p) for p in shards if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"shard index {str(path)!r} lists {len(missing)} missing shard(s), e.g. "
                f"{missing[0]!r}"
            )
        schema = data.get("schema")
        if schema is not None:
            get_schema(schema)
        return cls(
            path=path,
            shards=shards,
            counts=tuple(counts),
            total=total,
            num_classes=int(data.get("num_classes", 0)),
            schema=schema,
            num_points=data.get("num_points"),
            has_landmarks=bool(data.get("has_landmarks", False)),
            image_format=str(data.get("image_format", "")),
        )


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset key and extension: ``dir/abc.seg.png`` -> (``dir/abc``, ``seg.png``)."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return posixpath.join(folder, stem), ext.lower() if dot else ""


def iter_shard(
    path: str | Path, start: int = 0, stop: int | None = None, expected: int | None = None
) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """Samples ``start``…``stop − 1`` of one shard as ``(position, key, {ext: bytes})``.

    Members before ``start`` are skipped without reading their data. ``expected`` (the
    index's count) turns a shorter or (when reading to the end) longer shard into a
    :class:`ShardError` naming the file.
    """
    path = Path(path)
    stop = expected if stop is None else stop
    position, key, files = -1, None, {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_key, ext = _split_key(member.name)
                if member_key != key:
                    if key is not None and position >= start:
                        yield position, key, files
                    position, key, files = position + 1, member_key, {}
                    if stop is not None and position >= stop:
                        if expected is not None and stop == expected:
                            raise ShardError(
                                f"shard {str(path)!r} holds more than the {expected} samples "
                                "its index lists"
                            )
                        return
                if position >= start:
                    handle = tar.extractfile(member)
                    files[ext] = handle.read() if handle is not None else b""
    except tarfile.TarError as error:
        raise ShardError(f"shard {str(path)!r} is not a readable tar file ({error})") from None
    except OSError as error:
        raise ShardError(f"shard {str(path)!r} cannot be read ({error})") from None
    if key is not None and position >= start:
        yield position, key, files
    found = position + 1
    if stop is not None and found < stop:
        raise ShardError(
            f"shard {str(path)!r} holds {found} samples, its index lists {expected} "
            "(truncated or rewritten shard?)"
        )


def decode_sample(
    key: str, files: dict[str, bytes], where: str, num_points: int | None = None
) -> FaceRecord:
    """A sample's members -> FaceRecord (image RGB uint8, landmarks float32 or None).

    ``meta`` gets the sample's stored meta plus ``key``. ``where`` names the shard in errors.
    """
    image_ext = next((e for e in _IMAGE_EXTENSIONS if e in files), None)
    if image_ext is None or "json" not in files:
        raise ShardError(
            f"{where}: sample {key!r} needs an image and a .json member, has {sorted(files)}"
        )
    _, problem = bounds_problem(files[image_ext])
    if problem is not None:
        raise ShardError(f"{where}: sample {key!r}: the .{image_ext} member: {problem}")
    try:
        image = cv2.imdecode(np.frombuffer(files[image_ext], np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise ShardError(
            f"{where}: sample {key!r}: the .{image_ext} member does not decode ({error})"
        ) from None
    if image is None:
        raise ShardError(f"{where}: sample {key!r}: the .{image_ext} member does not decode")
    try:
        info = json.loads(files["json"].decode("utf-8"))
        label = int(info["label"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ShardError(f"{where}: sample {key!r}: bad .json member ({error!r})") from None
    landmarks = info.get("landmarks")
    if landmarks is not None:
        landmarks = np.asarray(landmarks, np.float32)
        if landmarks.ndim != 2 or landmarks.shape[1] != 2:
            raise ShardError(f"{where}: sample {key!r}: landmarks are not (S, 2)")
        if num_points is not None and len(landmarks) != num_points:
            raise ShardError(
                f"{where}: sample {key!r}: {len(landmarks)} landmarks, index says {num_points}"
            )

    def pose(name: str) -> float:
        value = info.get(name)
        return float("nan") if value is None else float(value)

    meta = dict(info.get("meta") or {})
    meta["key"] = key
    return FaceRecord(
        image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
        landmarks=landmarks,
        label=label,
        yaw=pose("yaw"),
        pitch=pose("pitch"),
        roll=pose("roll"),
        source=str(info.get("source", "")),
        meta=meta,
    )
