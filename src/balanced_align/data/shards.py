"""Streaming tar shards for multi-node training (DESIGN §4): writer, reader, IterableDataset.

Format (WebDataset layout, written with the standard library's :mod:`tarfile`)::

    out_dir/index.json
    out_dir/shard-000000.tar   000000000.jpg  000000000.json  000000001.jpg  000000001.json …
    out_dir/shard-000001.tar   …

Each sample is two consecutive tar members sharing a key (the member name up to its first
dot): ``KEY.jpg`` or ``KEY.png`` (the RGB image, encoded) and ``KEY.json``::

    {"label": 3, "landmarks": [[x0, y0], …] or null, "yaw": 12.5 or null, "pitch": …,
     "roll": …, "source": "…", "meta": {…}}

Landmarks are corner-origin pixels of the stored image (DESIGN §2), the float32 values of the
record written as JSON numbers (they read back bit-exact); an unknown pose is ``null``
(NaN on reading); ``meta`` keeps the record's JSON-serialisable meta entries. Keys are the
sample's 9-digit position in writing order. ``index.json`` lists the shards in order with
their sample counts, the total, ``num_classes``, the landmark schema's name (or null),
``num_points``, ``has_landmarks`` and ``image_format``; it is written last, so a directory
with an ``index.json`` holds a complete set.

Why plain tar and no new dependency: a shard is a file any tool can list (``tar tf``),
copy or stream, and the ``webdataset`` package reads these shards as they are. But
``webdataset`` splits work at shard granularity, while :class:`ShardStream` needs a split at
the *sample* level (below) and a per-sample index; the reader for that is a few dozen lines
over :mod:`tarfile` (random access over local or network-mounted files: headers are read,
the data of skipped members is seeked over). ``litdata`` declares torchvision, which cannot
be installed beside this project's torch. So nothing is added to the dependencies.

Splitting (:class:`ShardStream`): in an epoch the shards are put in an order drawn from
``(seed, epoch)`` and their samples concatenated into one global sequence of ``total``
samples. Rank r of ``world_size`` reads the contiguous slice ``[r·total//world,
(r+1)·total//world)`` of that sequence (so ranks differ by at most one sample) and each of
its DataLoader workers a contiguous part of that slice. A slice may start or end inside a
shard; the reader then skips to the sample it needs. Every sample is thus read exactly
once per epoch by exactly one (rank, worker) pair, whatever the number of shards.

Keeping DDP ranks in step (``batch_size`` given; what :class:`ShardLoader` uses): every rank
yields the same number of batches, ``K = ceil(ceil(total/world) / batch_size)``, and its
``n_r`` samples are spread over these K batches as evenly as possible (sizes
``floor(n_r/K)`` or ``ceil(n_r/K)``, never above ``batch_size``). So no rank waits for a batch
that another rank does not have, and no sample is repeated or dropped: a rank with one
sample fewer has one batch one sample smaller. Workers own whole batches (batch j of the
rank belongs to worker ``j·W//K``). Without ``batch_size`` the stream yields samples, and
``len`` is this rank's sample count; fine for one process, but under DDP let the stream
batch (a DataLoader that batches per worker would give ranks different batch counts).

Epochs: :meth:`ShardStream.set_epoch` writes the epoch into a one-element tensor in shared
memory, so DataLoader workers, persistent ones included, read the new value when the next
epoch's iteration starts. :class:`ShardLoader`'s sampler relays Lightning's per-epoch
``sampler.set_epoch`` call to the stream, so a Lightning run needs no callback.

CLI::

    python -m balanced_align.data.shards --from-folder ROOT --landmarks TABLE --out DIR
    python -m balanced_align.data.shards --from-pts ROOT --out DIR
    python -m balanced_align.data.shards --from-synthfaces 100 20 --image-size 112 --out DIR
"""

from __future__ import annotations

import argparse
import io
import json
import math
import posixpath
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, get_worker_info

from balanced_align.data.record import FaceRecord
from balanced_align.data.schema import LandmarkSchema, get_schema, schema_for_count
from balanced_align.data.validation import is_rgb_uint8

INDEX_NAME = "index.json"
FORMAT_NAME = "balanced-align-shards"
FORMAT_VERSION = 1
IMAGE_FORMATS = ("jpg", "png")
_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm")
_KEY_DIGITS = 9


class ShardError(ValueError):
    """A shard set or shard that cannot be read as written; the message names the file."""


# ------------------------------------------------------------------------------- writing


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
    if not (is_rgb_uint8(image) and image.size > 0):
        raise ValueError(
            f"{where}: image must be (H, W, 3) uint8 RGB, got "
            f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}"
        )
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
    threads (OpenCV releases the GIL) and written in order.
    """
    image_format = _check_format(image_format, quality, samples_per_shard)
    if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
        raise TypeError(f"convert_to_shards: source {source!r} must support len() and [i]")
    count = len(source)
    if count == 0:
        raise ValueError(f"convert_to_shards: source {source!r} is empty")
    out_dir = Path(out_dir)
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


# ------------------------------------------------------------------------------- reading


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
    image = cv2.imdecode(np.frombuffer(files[image_ext], np.uint8), cv2.IMREAD_COLOR)
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


# ------------------------------------------------------------------------------- streaming


def _part(total: int, parts: int, part: int) -> tuple[int, int]:
    """Bounds of part ``part`` of ``parts`` balanced contiguous parts of range(total)."""
    return total * part // parts, total * (part + 1) // parts


def _resolve(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


class ShardStream(IterableDataset):
    """Stream a shard set: each sample exactly once per epoch across ranks and workers.

    See the module docstring for the split and for how ranks stay in step.

    Args:
        index_json_or_dir: ``index.json`` or the folder holding it.
        transform: ``transform(record, index=global_index)`` (e.g. a ``FaceTransform``);
            None yields the :class:`FaceRecord` itself. ``global_index`` is the sample's
            position in writing order (stable across epochs).
        shuffle_shards: draw the shard order from ``(seed, epoch)``; else index order.
        shuffle_buffer: each worker shuffles its samples through a buffer of this many
            encoded samples (0 or 1: no shuffling within a worker).
        seed, epoch: the epoch's randomness (shard order, buffer) derives from both.
        batch_size: yield batches (see module docstring), collated by ``collate_fn``
            (default: ``torch.utils.data.default_collate`` with a transform, a list of
            records without); use with ``DataLoader(batch_size=None)`` or
            :class:`ShardLoader`. None: yield samples.
        rank, world_size: default from ``torch.distributed`` when initialised, else 0, 1.
        worker_id, num_workers: default from ``get_worker_info()`` (0, 1 in the main
            process). Give them to simulate workers in tests.

    ``len(stream)``: this rank's number of samples, or of batches when ``batch_size`` is set.
    """

    def __init__(
        self,
        index_json_or_dir: str | Path,
        transform: Callable | None = None,
        shuffle_shards: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        epoch: int = 0,
        batch_size: int | None = None,
        collate_fn: Callable | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        worker_id: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__()
        self.index = ShardIndex.load(index_json_or_dir)
        self.transform = transform
        self.shuffle_shards = bool(shuffle_shards)
        self.shuffle_buffer = int(shuffle_buffer)
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.seed = _resolve(seed, "seed")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.batch_size = _resolve(batch_size, "batch_size")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.collate_fn = collate_fn
        self._rank = _resolve(rank, "rank")
        self._world_size = _resolve(world_size, "world_size")
        if (self._rank is None) != (self._world_size is None):
            raise ValueError("give rank and world_size together (or neither)")
        if self._world_size is not None and not 0 <= self._rank < self._world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self._worker_id = _resolve(worker_id, "worker_id")
        self._num_workers = _resolve(num_workers, "num_workers")
        if (self._worker_id is None) != (self._num_workers is None):
            raise ValueError("give worker_id and num_workers together (or neither)")
        if self._num_workers is not None and not 0 <= self._worker_id < self._num_workers:
            raise ValueError(f"worker_id {worker_id} is not in [0, num_workers={num_workers})")
        # Shared memory: set_epoch in the main process reaches (persistent) workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.set_epoch(epoch)

    # -- configuration ------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s shard order and buffer randomness from the next iteration."""
        epoch = _resolve(epoch, "epoch")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch[0] = epoch

    def reseed(self, seed: int) -> None:
        """Re-seed the transform's augmentation (``datamodule.seed_worker`` calls this)."""
        if hasattr(self.transform, "reseed"):
            self.transform.reseed(seed)

    def rank_and_world(self) -> tuple[int, int]:
        """(rank, world_size): the given ones, else ``torch.distributed``'s, else (0, 1)."""
        if self._world_size is not None:
            return self._rank, self._world_size
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def worker_and_count(self) -> tuple[int, int]:
        """(worker_id, num_workers): the given ones, else the DataLoader worker's, else (0, 1)."""
        if self._num_workers is not None:
            return self._worker_id, self._num_workers
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def __getstate__(self) -> dict:
        # A DataLoader that spawns workers pickles the stream inside an initialised rank:
        # freeze rank/world there, since a spawned worker has no process group.
        state = self.__dict__.copy()
        dist = torch.distributed
        if state["_world_size"] is None and dist.is_available() and dist.is_initialized():
            state["_rank"], state["_world_size"] = dist.get_rank(), dist.get_world_size()
        return state

    # -- the split ------------------------------------------------------------------------
    def shard_order(self, epoch: int | None = None) -> np.ndarray:
        """Shard indices in epoch ``epoch``'s reading order (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        count = len(self.index.shards)
        if not self.shuffle_shards:
            return np.arange(count)
        return np.random.default_rng([self.seed, epoch]).permutation(count)

    def _rank_range(self) -> tuple[int, int, int]:
        rank, world = self.rank_and_world()
        start, stop = _part(self.index.total, world, rank)
        return start, stop, world

    def num_batches(self) -> int:
        """Batches per rank (the same on every rank); needs ``batch_size``."""
        if self.batch_size is None:
            raise ValueError("num_batches: this stream has no batch_size")
        start, stop, world = self._rank_range()
        batches = math.ceil(math.ceil(self.index.total / world) / self.batch_size)
        if stop - start < batches:
            raise ValueError(
                f"{self!r}: {self.index.total} samples over {world} ranks leave {stop - start} "
                f"on this rank, fewer than the {batches} batches every rank must yield; "
                "use a larger batch_size or fewer ranks"
            )
        return batches

    @property
    def num_samples(self) -> int:
        """This rank's number of samples per epoch."""
        start, stop, _ = self._rank_range()
        return stop - start

    def __len__(self) -> int:
        return self.num_samples if self.batch_size is None else self.num_batches()

    def worker_plan(self) -> tuple[tuple[int, int], list[int]]:
        """This (rank, worker)'s slice [a, b) of the epoch's global order, and batch sizes.

        The batch sizes are empty without ``batch_size``.
        """
        start, stop, _ = self._rank_range()
        worker, workers = self.worker_and_count()
        count = stop - start
        if self.batch_size is None:
            a, b = _part(count, workers, worker)
            return (start + a, start + b), []
        batches = self.num_batches()
        first, last = _part(batches, workers, worker)
        bounds = [count * j // batches for j in range(first, last + 1)]
        sizes = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
        return (start + bounds[0], start + bounds[-1]), sizes

    def _pieces(self, a: int, b: int, order: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(shard, first, stop) sample ranges covering [a, b) of the ordered concatenation."""
        counts = np.asarray(self.index.counts)[order]
        ends = np.cumsum(counts)
        begins = ends - counts
        for shard, begin, end in zip(order, begins, ends):
            lo, hi = max(a, int(begin)), min(b, int(end))
            if lo < hi:
                yield int(shard), lo - int(begin), hi - int(begin)

    def _raw(self, a: int, b: int, order: np.ndarray) -> Iterator[tuple[int, str, dict, str]]:
        offsets = self.index.offsets
        for shard, first, stop in self._pieces(a, b, order):
            path = self.index.shards[shard]
            expected = self.index.counts[shard]
            for position, key, files in iter_shard(path, first, stop, expected):
                yield int(offsets[shard]) + position, key, files, f"shard {str(path)!r}"

    def _shuffled(self, items: Iterator, rng: np.random.Generator) -> Iterator:
        size = self.shuffle_buffer
        if size <= 1:
            yield from items
            return
        buffer: list = []
        for item in items:
            if len(buffer) < size:
                buffer.append(item)
                continue
            j = int(rng.integers(size))
            buffer[j], item = item, buffer[j]
            yield item
        rng.shuffle(buffer)
        yield from buffer

    def _sample(self, global_index: int, key: str, files: dict, where: str):
        record = decode_sample(key, files, where, self.index.num_points)
        if self.transform is None:
            return record
        return self.transform(record, index=global_index)

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        order = self.shard_order(epoch)
        (a, b), sizes = self.worker_plan()
        rank, _ = self.rank_and_world()
        worker, _ = self.worker_and_count()
        rng = np.random.default_rng([self.seed, epoch, rank, worker, 1])
        samples = (self._sample(*raw) for raw in self._shuffled(self._raw(a, b, order), rng))
        if self.batch_size is None:
            yield from samples
            return
        collate = self.collate_fn
        if collate is None:
            collate = torch.utils.data.default_collate if self.transform is not None else list
        for size in sizes:
            yield collate([next(samples) for _ in range(size)])

    def __repr__(self) -> str:
        return (
            f"ShardStream({str(self.index.path)!r}, {self.index.total} samples in "
            f"{len(self.index.shards)} shards, batch_size={self.batch_size})"
        )


class _EpochRelay(Sampler):
    """Stands in for an IterableDataset loader's sampler: infinite ``None`` indices, and
    ``set_epoch`` forwarded to the stream (Lightning calls it at every epoch's start)."""

    def __init__(self, stream: ShardStream) -> None:
        self.stream = stream

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class ShardLoader(DataLoader):
    """``DataLoader`` over a :class:`ShardStream` whose ``sampler.set_epoch`` sets the epoch.

    Lightning (and any loop that follows the ``DistributedSampler`` habit) calls
    ``loader.sampler.set_epoch(epoch)`` before each epoch's iterator is created; here that
    reaches the stream, through shared memory into the workers. With a batching stream
    (``batch_size`` set) the loader does no batching of its own (``batch_size=None``) and
    ``len(loader)`` is the stream's batch count, the same on every rank.
    ``shuffle``/``sampler``/``batch_sampler`` are not accepted (the stream shuffles).
    """

    def __init__(self, stream: ShardStream, **kwargs) -> None:
        if not isinstance(stream, ShardStream):
            raise TypeError(f"ShardLoader needs a ShardStream, got {type(stream).__name__}")
        for name in ("shuffle", "sampler", "batch_sampler"):
            if kwargs.get(name):
                raise ValueError(f"ShardLoader: {name} is not accepted (the stream shuffles)")
        if stream.batch_size is not None:
            if kwargs.get("batch_size") is not None:
                raise ValueError(
                    "ShardLoader: the stream batches (stream.batch_size); leave batch_size out"
                )
            kwargs["batch_size"] = None
        super().__init__(stream, **kwargs)
        # DataLoader refuses to re-assign ``sampler`` after __init__ and an IterableDataset
        # loader refuses a sampler argument; the relay only adds set_epoch to what the
        # default (_InfiniteConstantSampler) does, so it is installed directly.
        object.__setattr__(self, "sampler", _EpochRelay(stream))


# ----------------------------------------------------------------------------------- CLI


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


if __name__ == "__main__":
    sys.exit(main())
