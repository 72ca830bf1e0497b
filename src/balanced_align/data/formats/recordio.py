"""MXNet RecordIO (``train.rec`` + ``train.idx``, the insightface training layout), no mxnet.

Record framing (dmlc-core ``recordio``), all integers little-endian uint32::

    magic  = 0xced7230a
    lrecord: upper 3 bits cflag, lower 29 bits length
    length bytes of data, then zero padding to a multiple of 4 bytes

``cflag`` 0 is a whole record. The writer splits a record wherever the magic number
occurs in the data at a 4-byte aligned position: the parts carry cflag 1 (first),
2 (middle), 3 (last), the aligned magic itself is dropped, and the reader puts it back
between parts. Padding follows only the last part (the others are aligned).

Payload (``mxnet.recordio.pack``): an ``IRHeader`` struct ``<IfQQ`` = (flag, label, id,
id2), 24 bytes; if ``flag > 0``, ``flag`` float32 labels follow (and the struct's label
is 0); the rest is the encoded image (JPEG/PNG file bytes).

``.idx``: a text line ``key<TAB>offset`` per record (byte offset of its first part).

insightface layout: record 0 is a header with ``flag = 2``, labels ``[end, id_end]`` and no
image; the images are keys ``1 … end−1``; keys ``end … id_end−1`` are one record per
identity whose labels are that identity's image-key range ``[first, last + 1)``. An
image's label is its header label (or the first of its float labels). A *plain* file has
no header record: every key in the ``.idx`` is an image.

Landmarks: this module's writer stores a record's landmarks after its label in the float
label vector, ``[label, x0, y0, …, x{S-1}, y{S-1}]`` (corner-origin pixels); insightface
readers take ``label[0]`` and ignore the rest.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balanced_align.core.schema import LandmarkSchema, get_schema, schema_for_count
from balanced_align.data.formats._images import decode_image, encode_image
from balanced_align.data.record import FaceRecord
from balanced_align.data.sources import to_corner
from balanced_align.data.validation import BadSampleHandler, landmark_problem

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
_HEAD_LABELS = 256  # label-vector sizes parsed from one short read
_HEAD_READ = IR_SIZE + 4 * _HEAD_LABELS + 4  # bytes read to parse a header, not the image
_FLOAT32_EXACT = 1 << 24  # integers stored as float32 labels are exact below this
LAYOUTS = ("auto", "insightface", "plain")


@dataclass(frozen=True)
class IRHeader:
    """The image-record header: ``labels`` is the float32 label vector (``flag`` values) or
    None when ``flag == 0`` (then ``label`` is the scalar label)."""

    flag: int
    label: float
    id: int
    id2: int
    labels: np.ndarray | None = None

    @property
    def first_label(self) -> float:
        return float(self.labels[0]) if self.labels is not None and self.flag else self.label


def pack_payload(label, image: bytes, id: int = 0, id2: int = 0) -> bytes:
    """``mxnet.recordio.pack``: a scalar label (flag 0) or a label vector (flag = size)."""
    vector = np.asarray(label, np.float32)
    if vector.ndim == 0:
        return struct.pack(IR_FORMAT, 0, float(vector), id, id2) + image
    vector = vector.reshape(-1)
    return struct.pack(IR_FORMAT, vector.size, 0.0, id, id2) + vector.tobytes() + image


def unpack_payload(payload: bytes, where: str) -> tuple[IRHeader, bytes]:
    """Split a payload into its :class:`IRHeader` and the image bytes."""
    if len(payload) < IR_SIZE:
        raise ValueError(f"{where}: payload of {len(payload)} bytes is shorter than IRHeader")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, payload)
    labels = None
    if flag > 0:
        end = IR_SIZE + 4 * flag
        if len(payload) < end:
            raise ValueError(
                f"{where}: IRHeader flag {flag} needs {4 * flag} label bytes, payload has "
                f"{len(payload) - IR_SIZE}"
            )
        labels = np.frombuffer(payload, np.float32, flag, IR_SIZE).copy()
        return IRHeader(flag, label, id_, id2, labels), payload[end:]
    return IRHeader(flag, label, id_, id2, labels), payload[IR_SIZE:]


def frame_record(data: bytes) -> bytes:
    """dmlc RecordIO framing of ``data``, split at aligned magic numbers (cflag 1/2/3)."""
    if len(data) >= 1 << _LENGTH_BITS:
        raise ValueError(f"RecordIO records must be < 2^29 bytes, got {len(data)}")
    out = bytearray()
    start = 0
    i = data.find(_MAGIC_BYTES)
    while i != -1:
        if i % 4:  # only aligned occurrences split the record
            i = data.find(_MAGIC_BYTES, i + 1)
            continue
        flag = 1 if start == 0 else 2
        out += _MAGIC_BYTES + struct.pack("<I", (flag << _LENGTH_BITS) | (i - start))
        out += data[start:i]
        start = i + 4
        i = data.find(_MAGIC_BYTES, start)
    flag = 3 if start else 0
    out += _MAGIC_BYTES + struct.pack("<I", (flag << _LENGTH_BITS) | (len(data) - start))
    out += data[start:]
    out += b"\0" * (-len(data) % 4)
    return bytes(out)


class RecordFile:
    """Random access to the records of one ``.rec`` file (safe across fork and threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"RecordIO file {str(self.path)!r} does not exist")
        self.size = self.path.stat().st_size
        self.where = f"RecordIO file {str(self.path)!r}"
        self._handle = None
        self._pid = None
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_handle=None, _pid=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _read(self, offset: int, size: int) -> bytes:
        if self._pid != os.getpid():
            self._handle = open(self.path, "rb")  # kept open for reuse
            self._pid = os.getpid()
        if hasattr(os, "pread"):
            return os.pread(self._handle.fileno(), size, offset)
        with self._lock:
            self._handle.seek(offset)
            return self._handle.read(size)

    def _part(self, offset: int, start: int) -> tuple[int, int, int]:
        """(cflag, length, padded length) of the part at ``offset`` of the record at ``start``."""
        head = self._read(offset, 8)
        if len(head) < 8:
            raise ValueError(
                f"{self.where}: record at offset {start} is truncated: the file ends at byte "
                f"{self.size}, inside the 8-byte part header at offset {offset}"
            )
        magic, lrecord = struct.unpack("<II", head)
        if magic != RECORDIO_MAGIC:
            raise ValueError(
                f"{self.where}: no record at offset {offset} (magic 0x{magic:08x}, expected "
                f"0x{RECORDIO_MAGIC:08x}); the .idx offset is wrong or the file is corrupt"
            )
        length = lrecord & _LENGTH_MASK
        padded = (length + 3) & ~3
        if offset + 8 + padded > self.size:
            raise ValueError(
                f"{self.where}: record at offset {start} is truncated: its part at offset "
                f"{offset} needs {8 + padded} bytes, the file ends at byte {self.size}"
            )
        return lrecord >> _LENGTH_BITS, length, padded

    def read(self, offset: int, limit: int | None = None) -> tuple[bytes, int]:
        """(payload, end offset) of the record at ``offset``; multi-part records are joined.

        ``limit``: return at most this many leading bytes of a single-part record (its
        framing is still checked against the file size).
        """
        flag, length, padded = self._part(offset, offset)
        if flag == 0:
            size = length if limit is None else min(length, limit)
            return self._read(offset + 8, size), offset + 8 + padded
        if flag != 1:
            raise ValueError(
                f"{self.where}: record at offset {offset} starts with continuation flag "
                f"{flag} (expected 0 or 1); the .idx offset points inside a record"
            )
        parts = [self._read(offset + 8, length)]
        position = offset + 8 + padded
        while True:
            if position >= self.size:
                raise ValueError(
                    f"{self.where}: record at offset {offset} is truncated: multi-part record "
                    f"has no last part before the end of the file (byte {self.size})"
                )
            flag, length, padded = self._part(position, offset)
            if flag not in (2, 3):
                raise ValueError(
                    f"{self.where}: record at offset {offset}: part at offset {position} has "
                    f"flag {flag}, expected a continuation (2 or 3)"
                )
            parts.append(_MAGIC_BYTES)
            parts.append(self._read(position + 8, length))
            position += 8 + padded
            if flag == 3:
                return b"".join(parts), position

    def scan(self) -> list[int]:
        """Offsets of every record, in file order (what a missing ``.idx`` would list)."""
        offsets, position = [], 0
        while position < self.size:
            offsets.append(position)
            flag, _, padded = self._part(position, position)
            if flag == 0:
                position += 8 + padded
            else:
                position = self.read(position)[1]
        return offsets


def read_idx(path: str | Path, rec_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``.idx`` file: (keys, offsets) int64 arrays in file order."""
    path = Path(path)
    where = f"RecordIO index {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    keys, offsets = [], []
    for number, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
            if offset < 0:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{where}, line {number}: expected 'key<TAB>offset', got {line!r}"
            ) from None
        if rec_size is not None and offset >= rec_size:
            raise ValueError(
                f"{where}, line {number}: offset {offset} lies beyond the end of the .rec file "
                f"({rec_size} bytes)"
            )
        keys.append(key)
        offsets.append(offset)
    if not keys:
        raise ValueError(f"{where}: no records")
    keys_array = np.array(keys, np.int64)
    unique, counts = np.unique(keys_array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{where}: duplicate keys {unique[counts > 1][:5].tolist()}")
    return keys_array, np.array(offsets, np.int64)


def _load_landmark_array(landmarks, count: int, where: str) -> np.ndarray:
    if isinstance(landmarks, (str, Path)):
        path = Path(landmarks)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: landmark array {str(path)!r} does not exist")
        landmarks = np.load(path, allow_pickle=False)
    array = np.asarray(landmarks, np.float32)
    if array.ndim != 3 or array.shape[0] != count or array.shape[2] != 2:
        raise ValueError(
            f"{where}: landmarks must be ({count}, S, 2) (one row per image, in order), got "
            f"{array.shape}"
        )
    return array


class RecordIOSource:
    """Indexable face data set over a RecordIO file: ``source[i]`` is a FaceRecord.

    Args:
        rec_path: the ``.rec`` file.
        idx_path: its ``.idx``; default: the ``.idx`` beside ``rec_path`` if it exists, else
            the ``.rec`` is scanned and records get keys 0, 1, … in file order.
        landmarks: None; ``"header"`` (each record's label vector is ``[label, x0, y0, …]``);
            or an (N, S, 2) array / ``.npy`` path, one row per image in source order.
        landmark_convention: the landmarks' pixel convention (``corner``, ``one_based``,
            ``zero_based_centre``), converted to corner-origin pixels.
        schema: landmark schema; default by point count.
        layout: ``"auto"`` (insightface if record 0 is a header: flag > 0 and no image),
            ``"insightface"`` or ``"plain"``.
        on_bad_sample: ``"raise"`` or ``"skip"`` for per-image problems (a label that is
            not a non-negative integer, no image bytes, bad landmarks, an undecodable image
            when ``check_images``). Broken framing (bad magic, truncation) always raises.
        check_images: decode every image now (slow for large files).

    Building reads every image's header (not its image): labels, landmarks and the
    framing of every record are known and checked before training starts.
    """

    def __init__(
        self,
        rec_path: str | Path,
        idx_path: str | Path | None = None,
        landmarks=None,
        landmark_convention: str = "corner",
        schema: str | LandmarkSchema | None = None,
        layout: str = "auto",
        on_bad_sample: str = "raise",
        check_images: bool = False,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.file = RecordFile(rec_path)
        self.rec_path = self.file.path
        where = self.file.where
        handler = BadSampleHandler(on_bad_sample, repr(self))
        if idx_path is None and self.rec_path.with_suffix(".idx").is_file():
            idx_path = self.rec_path.with_suffix(".idx")
        self.idx_path = None if idx_path is None else Path(idx_path)
        if self.idx_path is None:
            offsets = np.array(self.file.scan(), np.int64)
            keys = np.arange(len(offsets), dtype=np.int64)
        else:
            keys, offsets = read_idx(self.idx_path, self.file.size)
        if len(keys) == 0:
            raise ValueError(f"{where}: no records")
        offset_of = dict(zip(keys.tolist(), offsets.tolist()))

        self.layout = self._detect_layout(layout, offset_of)
        if self.layout == "insightface":
            header, _ = unpack_payload(self.file.read(offset_of[0])[0], f"{where}, key 0")
            end = int(header.labels[0])
            image_keys = np.arange(1, end, dtype=np.int64)
            missing = [k for k in image_keys.tolist() if k not in offset_of]
            if missing:
                raise ValueError(
                    f"{where}: the insightface header (key 0) lists image keys 1…{end - 1}, "
                    f"but the index has no {missing[:5]} ({len(missing)} missing)"
                )
        else:
            image_keys = keys
        from_header = isinstance(landmarks, str) and landmarks == "header"

        kept_keys, kept_offsets, labels, header_points = [], [], [], []
        for key in image_keys.tolist():
            offset = offset_of[key]
            name = f"{self.rec_path}#{key}"
            payload, _ = self.file.read(offset, limit=_HEAD_READ)
            if len(payload) >= 4 and struct.unpack_from("<I", payload)[0] > _HEAD_LABELS:
                payload, _ = self.file.read(offset)
            problem = points = None
            try:
                header, image = unpack_payload(payload, "record")
            except ValueError as error:
                problem = str(error).removeprefix("record: ")
            else:
                label = header.first_label
                if not np.isfinite(label) or label < 0 or label != int(label):
                    problem = f"label {label!r} is not a non-negative integer"
                elif not image:
                    problem = "record has no image bytes"
            if problem is None and from_header:
                if header.labels is None or header.flag < 3 or header.flag % 2 == 0:
                    problem = (
                        f"landmarks='header' needs a label vector [label, x0, y0, …], got "
                        f"flag {header.flag}"
                    )
                else:
                    points = header.labels[1:].reshape(-1, 2)
            if problem is not None:
                handler.bad(name, problem)
                continue
            kept_keys.append(key)
            kept_offsets.append(offset)
            labels.append(int(label))
            header_points.append(points)
        self.keys = np.array(kept_keys, np.int64)
        self.offsets = np.array(kept_offsets, np.int64)
        self.labels = np.array(labels, np.int64)

        if landmarks is None:
            self._landmarks = None
        else:
            if from_header:
                counts = {len(p) for p in header_points}
                if len(counts) > 1:
                    raise ValueError(
                        f"{where}: landmark counts differ between records: {sorted(counts)}"
                    )
                array = np.stack(header_points) if header_points else np.zeros((0, 0, 2))
            else:
                array = _load_landmark_array(landmarks, len(image_keys), where)
                array = array[np.isin(image_keys, self.keys)]
            self._landmarks = to_corner(array, landmark_convention)
        self.schema = None
        if self._landmarks is not None:
            num_points = self._landmarks.shape[1]
            self.schema = get_schema(schema) if schema is not None else None
            if self.schema is None:
                try:
                    self.schema = schema_for_count(num_points)
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from None
            keep = np.ones(len(self.keys), bool)
            for i, points in enumerate(self._landmarks):
                problem = landmark_problem(points, self.schema.num_points)
                if problem is not None:
                    handler.bad(f"{self.rec_path}#{self.keys[i]}", problem)
                    keep[i] = False
            self._subset(keep)
        if check_images:
            keep = np.ones(len(self.keys), bool)
            for i in range(len(self.keys)):
                try:
                    self._decode(i)
                except ValueError as error:
                    handler.bad(f"{self.rec_path}#{self.keys[i]}", str(error))
                    keep[i] = False
            self._subset(keep)
        self.skipped = handler.finish()
        if len(self.keys) == 0:
            raise ValueError(f"{where}: no usable image records (skipped {self.skipped.count})")

    def _subset(self, keep: np.ndarray) -> None:
        self.keys, self.offsets = self.keys[keep], self.offsets[keep]
        self.labels = self.labels[keep]
        if self._landmarks is not None:
            self._landmarks = self._landmarks[keep]

    def _detect_layout(self, layout: str, offset_of: dict[int, int]) -> str:
        if layout == "plain":
            return layout
        where = self.file.where
        header = image = None
        if 0 in offset_of:
            payload = self.file.read(offset_of[0])[0]
            header, image = unpack_payload(payload, f"{where}, key 0")
        is_header = (
            header is not None
            and header.flag >= 1
            and not image
            and np.isfinite(header.labels[0])
            and header.labels[0] >= 1
        )
        if layout == "insightface" and not is_header:
            raise ValueError(
                f"{where}: layout='insightface' needs record 0 to be a header (flag > 0, label "
                "vector [end, …], no image)"
            )
        return "insightface" if is_header else "plain"

    # -------------------------------------------------------------- data set interface

    @property
    def has_landmarks(self) -> bool:
        return self._landmarks is not None

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def yaws(self) -> np.ndarray:
        return np.full(len(self), np.nan, np.float32)

    @property
    def paths(self) -> list[str]:
        return [f"{self.rec_path.name}#{k}" for k in self.keys.tolist()]

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"RecordIOSource({str(self.rec_path)!r})"

    def _payload(self, index: int) -> tuple[IRHeader, bytes]:
        key, offset = int(self.keys[index]), int(self.offsets[index])
        return unpack_payload(
            self.file.read(offset)[0], f"{self.file.where}, key {key} (offset {offset})"
        )

    def _decode(self, index: int) -> np.ndarray:
        _, image = self._payload(index)
        return decode_image(image, f"{self.file.where}, key {int(self.keys[index])}")

    def header(self, index: int) -> IRHeader:
        """The IRHeader of item ``index``."""
        return self._payload(index)[0]

    def encoded(self, index: int) -> bytes:
        """The stored image bytes of item ``index`` (a JPEG/PNG file's contents)."""
        return self._payload(index)[1]

    def landmarks_of(self, index: int) -> np.ndarray | None:
        return None if self._landmarks is None else self._landmarks[index].copy()

    def __getitem__(self, index: int) -> FaceRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self!r}: index {index} out of range for {len(self)} items")
        index %= len(self)
        header, image = self._payload(index)
        key = int(self.keys[index])
        return FaceRecord(
            image=decode_image(image, f"{self.file.where}, key {key}"),
            landmarks=self.landmarks_of(index),
            label=int(self.labels[index]),
            source=f"{self.rec_path}#{key}",
            meta={"key": key, "id": header.id, "id2": header.id2, "labels": header.labels},
        )


def write_recordio(
    rec_path: str | Path,
    idx_path: str | Path | None,
    records: Iterable[FaceRecord],
    insightface_header: bool = True,
    ext: str = ".jpg",
    quality: int = 95,
    store_landmarks: bool = True,
) -> int:
    """Write FaceRecords to ``rec_path`` (+ ``idx_path``); returns the number of images.

    Streams: records are encoded and written one by one. ``insightface_header``: key 0
    is the header, images are keys 1…N, then one identity record per label with its
    image-key range; the records' labels must then come in contiguous groups. Otherwise
    images are keys 0…N−1. ``store_landmarks``: a record's landmarks (corner-origin) go
    after its label in the float label vector; without landmarks the label is a scalar
    (flag 0). ``record.meta["encoded"]`` (bytes), when present, is stored instead of
    encoding ``record.image``.
    """
    rec_path = Path(rec_path)
    entries: list[tuple[int, int]] = []
    groups: list[tuple[int, int, int]] = []  # (label, first key, end key)
    count = 0
    with open(rec_path, "wb") as out:

        def put(key: int, payload: bytes) -> None:
            entries.append((key, out.tell()))
            out.write(frame_record(payload))

        if insightface_header:
            put(0, pack_payload([0.0, 0.0], b""))  # placeholder, rewritten at the end
        first_key = 1 if insightface_header else 0
        for record in records:
            key = first_key + count
            label = int(record.label)
            if not 0 <= label < _FLOAT32_EXACT or key >= _FLOAT32_EXACT:
                raise ValueError(
                    f"write_recordio({str(rec_path)!r}): record {count}: labels and keys are "
                    f"stored as float32 and must lie in [0, 2^24); got label {label}, key {key}"
                )
            if insightface_header:
                if groups and groups[-1][0] == label:
                    groups[-1] = (label, groups[-1][1], key + 1)
                elif any(g[0] == label for g in groups):
                    raise ValueError(
                        f"write_recordio({str(rec_path)!r}): label {label} of record {count} "
                        "reappears after other labels; the insightface layout needs each "
                        "identity's images to be contiguous"
                    )
                else:
                    groups.append((label, key, key + 1))
            image = record.meta.get("encoded") if record.meta else None
            if image is None:
                image = encode_image(record.image, ext, quality)
            if store_landmarks and record.landmarks is not None:
                points = np.asarray(record.landmarks, np.float32).reshape(-1)
                label_field = np.concatenate([[np.float32(label)], points])
            else:
                label_field = float(label)
            put(key, pack_payload(label_field, bytes(image), id=key))
            count += 1
        if insightface_header:
            end = first_key + count
            for i, (_, start, stop) in enumerate(groups):
                put(end + i, pack_payload([float(start), float(stop)], b"", id=end + i))
            out.seek(0)
            out.write(frame_record(pack_payload([float(end), float(end + len(groups))], b"")))
    if idx_path is not None:
        lines = [f"{key}\t{offset}\n" for key, offset in entries]
        Path(idx_path).write_text("".join(lines), encoding="ascii")
    return count
