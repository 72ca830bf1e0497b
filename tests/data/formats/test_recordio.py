"""MXNet RecordIO without mxnet: files built by hand from the format spec, round trips."""

import pickle
import struct

import cv2
import numpy as np
import pytest

from balanced_align.data.formats import (
    RECORDIO_MAGIC,
    RecordFile,
    RecordIOSource,
    frame_record,
    pack_payload,
    read_idx,
    unpack_payload,
    write_recordio,
)
from balanced_align.data.record import FaceRecord
from balanced_align.data.schema import IBUG68
from balanced_align.data.sources import read_pts, to_corner
from tests.data_paths import ASSET_ATT as ATT
from tests.data_paths import ASSET_HELEN as HELEN

MAGIC = struct.pack("<I", RECORDIO_MAGIC)


def _rgb_of(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def _spec_record(payload: bytes) -> bytes:
    """One single-part record exactly as dmlc-core frames it (payload without aligned magic)."""
    padding = b"\0" * (-len(payload) % 4)
    return MAGIC + struct.pack("<I", len(payload)) + payload + padding


def _spec_payload(label: float, image: bytes, id_: int = 0) -> bytes:
    return struct.pack("<IfQQ", 0, label, id_, 0) + image


@pytest.fixture(scope="module")
def helen_records() -> list[FaceRecord]:
    """5 real HELEN JPEGs with their 68 landmarks, labels in contiguous groups 0,0,1,2,2."""
    records = []
    for i, jpg in enumerate(sorted(HELEN.glob("*.jpg"))[:5]):
        data = jpg.read_bytes()
        records.append(
            FaceRecord(
                image=_rgb_of(data),
                landmarks=to_corner(read_pts(jpg.with_suffix(".pts")), "one_based"),
                label=(0, 0, 1, 2, 2)[i],
                source=str(jpg),
                meta={"encoded": data},
            )
        )
    return records


def test_plain_file_built_from_the_spec(tmp_path):
    """A .rec/.idx written with struct from the documented layout, no project writer."""
    images = [p.read_bytes() for p in sorted(HELEN.glob("*.jpg"))[:3]]
    labels = [7.0, 3.0, 7.0]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    blob, lines = b"", []
    for key, (image, label) in enumerate(zip(images, labels)):
        lines.append(f"{key}\t{len(blob)}\n")
        blob += _spec_record(_spec_payload(label, image + b"\x01", key))  # odd length: padding
    rec.write_bytes(blob)
    idx.write_text("".join(lines))
    source = RecordIOSource(rec)
    assert source.layout == "plain" and source.idx_path == idx and len(source) == 3
    np.testing.assert_array_equal(source.labels, [7, 3, 7])
    assert source.num_classes == 8 and not source.has_landmarks
    for i, image in enumerate(images):
        record = source[i]
        assert source.encoded(i) == image + b"\x01"
        np.testing.assert_array_equal(record.image, _rgb_of(image))
        assert record.label == labels[i] and record.meta["key"] == i and record.meta["id"] == i
    # no .idx: the .rec is scanned, keys 0, 1, … in file order
    idx.unlink()
    scanned = RecordIOSource(rec)
    assert scanned.idx_path is None
    np.testing.assert_array_equal(scanned.keys, [0, 1, 2])
    np.testing.assert_array_equal(scanned.offsets, [int(line.split()[1]) for line in lines])


def test_insightface_round_trip_with_landmarks(tmp_path, helen_records):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    assert write_recordio(rec, idx, iter(helen_records)) == 5
    keys, offsets = read_idx(idx)
    np.testing.assert_array_equal(keys, np.arange(9))  # header, 5 images, 3 identities
    file = RecordFile(rec)
    header, image = unpack_payload(file.read(int(offsets[0]))[0], "key 0")
    assert header.flag == 2 and image == b""
    np.testing.assert_array_equal(header.labels, [6, 9])
    ranges = [unpack_payload(file.read(int(o))[0], "")[0].labels for o in offsets[6:]]
    np.testing.assert_array_equal(ranges, [[1, 3], [3, 4], [4, 6]])

    source = RecordIOSource(rec, idx, landmarks="header")
    assert source.layout == "insightface" and source.schema is IBUG68
    np.testing.assert_array_equal(source.keys, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(source.labels, [0, 0, 1, 2, 2])
    for i, written in enumerate(helen_records):
        record = source[i]
        assert source.encoded(i) == written.meta["encoded"]
        np.testing.assert_array_equal(record.image, written.image)
        np.testing.assert_array_equal(record.landmarks, written.landmarks)
        assert record.label == written.label
        assert source.header(i).labels[0] == written.label
    # without landmarks requested, the same file is a plain labelled source
    assert not RecordIOSource(rec, idx).has_landmarks
    # external landmarks, one row per image in order, in the 300-W convention
    table = np.stack([r.landmarks + 0.5 for r in helen_records])
    np.save(tmp_path / "lmk.npy", table)
    external = RecordIOSource(rec, landmarks=tmp_path / "lmk.npy", landmark_convention="one_based")
    np.testing.assert_allclose(external.landmarks_of(4), helen_records[4].landmarks, atol=1e-5)
    # forcing the wrong layout on a plain file is refused
    plain = tmp_path / "plain.rec"
    write_recordio(plain, tmp_path / "plain.idx", helen_records, insightface_header=False)
    with pytest.raises(ValueError, match=r"plain\.rec.*header"):
        RecordIOSource(plain, layout="insightface")


def test_plain_png_round_trip_is_pixel_exact_and_picklable(tmp_path):
    files = [ATT / f"s{i}" / f"{k}.pgm" for i in (1, 2) for k in (1, 2)]
    grey = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    records = [
        FaceRecord(image=np.repeat(g[:, :, None], 3, axis=2), landmarks=None, label=5 - i)
        for i, g in enumerate(grey)
    ]
    rec = tmp_path / "att.rec"
    write_recordio(rec, tmp_path / "att.idx", records, insightface_header=False, ext=".png")
    source = RecordIOSource(rec)
    assert source.layout == "plain" and source.encoded(0)[:4] == b"\x89PNG"
    np.testing.assert_array_equal(source.labels, [5, 4, 3, 2])
    for i, g in enumerate(grey):
        np.testing.assert_array_equal(source[i].image, np.stack([g] * 3, axis=2))
        assert source.header(i).flag == 0  # scalar label, no label vector
    copy = pickle.loads(pickle.dumps(source))  # DataLoader workers
    np.testing.assert_array_equal(copy[3].image, source[3].image)


def test_multi_part_records_match_the_spec_and_are_joined(tmp_path):
    data = b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij" + MAGIC[:2]
    assert data[1:5] != MAGIC  # only aligned occurrences split
    # dmlc-core: parts at each aligned magic, the magic dropped; padding after the last only
    expected = (
        MAGIC + struct.pack("<I", (1 << 29) | 4) + b"abcd"
        + MAGIC + struct.pack("<I", (2 << 29) | 4) + b"efgh"
        + MAGIC + struct.pack("<I", (3 << 29) | 4) + b"ij" + MAGIC[:2]
    )  # fmt: skip
    assert frame_record(data) == expected
    unaligned = b"x" + MAGIC + b"yyy"
    assert frame_record(unaligned) == _spec_record(unaligned)
    both = unaligned + MAGIC  # unaligned at 1, aligned at 8: empty last part
    assert frame_record(both) == (
        MAGIC + struct.pack("<I", (1 << 29) | 8) + both[:8] + MAGIC + struct.pack("<I", 3 << 29)
    )

    # an image record whose header id is the magic number: split at payload offset 8
    image = (HELEN / sorted(p.name for p in HELEN.glob("*.jpg"))[0]).read_bytes()
    payload = pack_payload(4.0, image, id=RECORDIO_MAGIC)
    assert payload[8:12] == MAGIC
    rec, idx = tmp_path / "multi.rec", tmp_path / "multi.idx"
    first = _spec_record(_spec_payload(1.0, image))
    rec.write_bytes(first + frame_record(payload) + _spec_record(_spec_payload(2.0, image)))
    idx.write_text(f"10\t0\n11\t{len(first)}\n12\t{len(first) + len(frame_record(payload))}\n")
    assert struct.unpack_from("<I", rec.read_bytes(), len(first) + 4)[0] >> 29 == 1
    source = RecordIOSource(rec)
    np.testing.assert_array_equal(source.labels, [1, 4, 2])
    assert source.header(1).id == RECORDIO_MAGIC and source.encoded(1) == image
    np.testing.assert_array_equal(source[1].image, _rgb_of(image))
    assert len(RecordFile(rec).scan()) == 3


def test_truncated_file_names_file_and_offset(tmp_path, helen_records):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, helen_records[:3], insightface_header=False)
    _, offsets = read_idx(idx)
    data = rec.read_bytes()
    rec.write_bytes(data[:-100])
    with pytest.raises(ValueError) as info:
        RecordIOSource(rec, idx)
    message = str(info.value)
    assert "train.rec" in message and f"offset {offsets[2]}" in message
    assert "truncated" in message
    idx.unlink()  # scanning hits the same cut
    with pytest.raises(ValueError, match=rf"train\.rec.*offset {offsets[2]}.*truncated"):
        RecordIOSource(rec)
    rec.write_bytes(data[: offsets[2] + 5])  # cut inside the part header
    with pytest.raises(ValueError, match=rf"train\.rec.*offset {offsets[2]}.*truncated"):
        RecordIOSource(rec)


def test_bad_index_offsets_and_lines(tmp_path, helen_records):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, helen_records[:2], insightface_header=False)
    _, offsets = read_idx(idx)
    idx.write_text(f"0\t{offsets[0]}\n1\t{offsets[1] + 4}\n")
    with pytest.raises(ValueError, match=rf"train\.rec.*offset {offsets[1] + 4}.*magic"):
        RecordIOSource(rec, idx)
    idx.write_text("0\t0\n1 x\n")
    with pytest.raises(ValueError, match=r"train\.idx', line 2"):
        RecordIOSource(rec, idx)
    idx.write_text(f"0\t0\n0\t{offsets[1]}\n")
    with pytest.raises(ValueError, match=r"train\.idx.*duplicate keys \[0\]"):
        RecordIOSource(rec, idx)
    idx.write_text(f"0\t0\n1\t{rec.stat().st_size}\n")
    with pytest.raises(ValueError, match=r"train\.idx', line 2.*beyond"):
        RecordIOSource(rec, idx)


def test_bad_labels_raise_or_are_skipped_with_a_report(tmp_path):
    image = sorted(HELEN.glob("*.jpg"))[0].read_bytes()
    rec = tmp_path / "labels.rec"
    rec.write_bytes(
        _spec_record(_spec_payload(1.0, image))
        + _spec_record(_spec_payload(-1.0, image))
        + _spec_record(_spec_payload(2.5, image))
        + _spec_record(_spec_payload(3.0, b""))
    )
    with pytest.raises(ValueError, match=r"labels\.rec#1.*-1\.0.*non-negative integer"):
        RecordIOSource(rec)
    source = RecordIOSource(rec, on_bad_sample="skip")
    np.testing.assert_array_equal(source.keys, [0])
    assert source.skipped.paths() == [f"{rec}#{k}" for k in (1, 2, 3)]
    assert "no image bytes" in source.skipped.entries[2][1]


def test_writer_refuses_interleaved_identities(tmp_path, helen_records):
    shuffled = [helen_records[i] for i in (0, 2, 1)]  # labels 0, 1, 0
    with pytest.raises(ValueError, match=r"label 0 of record 2 reappears"):
        write_recordio(tmp_path / "x.rec", tmp_path / "x.idx", shuffled)
    write_recordio(tmp_path / "y.rec", None, shuffled, insightface_header=False)
    np.testing.assert_array_equal(RecordIOSource(tmp_path / "y.rec").labels, [0, 1, 0])
