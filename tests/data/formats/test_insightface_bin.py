"""insightface verification .bin: round trips, the Python 2 layout, refusal of unsafe pickles."""

import builtins
import codecs
import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.model_selection import KFold

from balanced_align.data.formats import (
    EncodedImages,
    UnsafePickleError,
    read_bin,
    write_bin,
)
from tests.data_paths import ASSET_HELEN as HELEN


def _jpeg_bytes(count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted(HELEN.glob("*.jpg"))[:count]]


def _rgb_of(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_png_round_trip_is_pixel_exact(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (12 + i, 10, 3), dtype=np.uint8) for i in range(6)]
    issame = [True, False, True]
    path = tmp_path / "lfw.bin"
    write_bin(path, images, issame, ext=".png")
    pairs = read_bin(path)
    assert isinstance(pairs.images, EncodedImages) and len(pairs.images) == 6
    for written, read in zip(images, pairs.images):
        np.testing.assert_array_equal(read, written)
    np.testing.assert_array_equal(pairs.issame, issame)
    np.testing.assert_array_equal(pairs.pairs_a, [0, 2, 4])
    np.testing.assert_array_equal(pairs.pairs_b, [1, 3, 5])
    eager = read_bin(path, decode=True)
    assert isinstance(eager.images, list)
    np.testing.assert_array_equal(eager.images[5], images[5])
    assert pairs.record(4).meta == {"pair": 2, "side": "a"}


@pytest.mark.parametrize("protocol", [2, 4])
def test_jpeg_bytes_round_trip_as_stored(tmp_path, protocol):
    """Python 3 protocol 2 stores bytes via _codecs.encode: the one global allowed."""
    data = _jpeg_bytes(4)
    path = tmp_path / "cfp_fp.bin"
    write_bin(path, data, [False, True], protocol=protocol)
    if protocol == 2:
        assert b"_codecs" in path.read_bytes()
    pairs = read_bin(path)
    for i, raw in enumerate(data):
        assert pairs.images.encoded(i) == raw
        np.testing.assert_array_equal(pairs.images[i], _rgb_of(raw))
    np.testing.assert_array_equal(pairs.issame, [False, True])


def _python2_pickle(bins: list[bytes], issame: list[bool]) -> bytes:
    """The byte layout Python 2's pickle.dump(..., protocol=2) writes for (bins, issame)."""
    out = bytearray(b"\x80\x02")  # PROTO 2
    out += b"]("  # EMPTY_LIST, MARK
    for data in bins:
        if len(data) < 256:
            out += b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING (a py2 str)
        else:
            out += b"T" + struct.pack("<i", len(data)) + data  # BINSTRING
    out += b"e"  # APPENDS
    out += b"]("
    out += b"".join(b"\x88" if same else b"\x89" for same in issame)  # NEWTRUE / NEWFALSE
    out += b"e\x86."  # APPENDS, TUPLE2, STOP
    return bytes(out)


def test_python2_layout_of_the_published_files(tmp_path):
    rng = np.random.default_rng(2)
    tiny = cv2.imencode(".png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))[1].tobytes()
    data = [*_jpeg_bytes(3), tiny]
    assert len(tiny) < 256 < len(data[0])
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(_python2_pickle(data, [True, False]))
    with pytest.raises(UnicodeDecodeError):  # why encoding="bytes" is needed
        pickle.loads(path.read_bytes())
    pairs = read_bin(path)
    for i, raw in enumerate(data):
        assert pairs.images.encoded(i) == raw
        np.testing.assert_array_equal(pairs.images[i], _rgb_of(raw))
    np.testing.assert_array_equal(pairs.issame, [True, False])


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Open:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


class _Zlib:
    def __reduce__(self):
        return codecs.encode, (b"x" * 8, "zlib")


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("payload", ["system", "open", "nested"])
def test_malicious_pickle_is_refused_without_side_effects(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    evil = {"system": _System, "open": _Open, "nested": _System}[payload](marker)
    content = ([b"\xff\xd8", evil], [True]) if payload == "nested" else evil
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        read_bin(path)
    message = str(info.value)
    assert "evil.bin" in message
    called = builtins.open if payload == "open" else os.system
    assert f"{called.__module__}.{called.__name__}" in message, message  # io.open, posix.system
    assert not marker.exists()
    assert isinstance(info.value, ValueError)


def test_codecs_encode_only_rebuilds_latin1_bytes(tmp_path):
    path = tmp_path / "zlib.bin"
    path.write_bytes(pickle.dumps(([_Zlib()], []), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"zlib\.bin.*_codecs\.encode"):
        read_bin(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (([b"\xff\xd8\xff"], [True]), "1 images for 1 pairs"),
        (([b"a", b"b"], [2]), r"issame_list\[0\]"),
        (([b"a", ""], [True]), r"bins\[1\]"),
        ({"bins": []}, "expected a pickled"),
        (([], []), "no pairs"),
    ],
)
def test_wrong_structure_names_the_file(tmp_path, content, message):
    path = tmp_path / "broken.bin"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(ValueError, match=message) as info:
        read_bin(path)
    assert "broken.bin" in str(info.value)
    path.write_bytes(pickle.dumps(([b"a", b"b"], [True]))[:-5])
    with pytest.raises(ValueError, match=r"broken\.bin.*not a readable pickle"):
        read_bin(path)


def test_a_folder_or_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'[^']*nope\.bin' does not exist"):
        read_bin(tmp_path / "nope.bin")
    (tmp_path / "sets.bin").mkdir()
    with pytest.raises(IsADirectoryError, match=r"sets\.bin' is a directory"):
        read_bin(tmp_path / "sets.bin")


def test_undecodable_image_names_file_and_index(tmp_path):
    path = tmp_path / "lfw.bin"
    good = _jpeg_bytes(1)[0]
    write_bin(path, [good, good[: len(good) // 2]], [True])
    pairs = read_bin(path)
    np.testing.assert_array_equal(pairs.images[0], _rgb_of(good))
    with pytest.raises(ValueError, match=r"lfw\.bin.*image 1.*truncated"):
        pairs.images[1]
    with pytest.raises(ValueError, match=r"lfw\.bin.*image 1"):
        read_bin(path, decode=True)


def test_folds_are_kfold_contiguous(tmp_path):
    path = tmp_path / "lfw.bin"
    image = np.zeros((4, 4, 3), np.uint8)
    write_bin(path, [image] * 46, [True] * 23, ext=".png")
    pairs = read_bin(path)
    folds = pairs.folds(10)
    for fold, (_, test) in enumerate(KFold(10, shuffle=False).split(np.zeros(23))):
        np.testing.assert_array_equal(np.flatnonzero(folds == fold), test)
    pairs.protocol().validate(len(pairs.images))
