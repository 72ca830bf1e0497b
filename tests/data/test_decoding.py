"""Large and half-broken images: refused before decoding, or decoded strictly, and named."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.decoding import (
    MAX_BYTES_VARIABLE,
    MAX_PIXELS_VARIABLE,
    ImageLimits,
    decode_problem,
    image_limits,
)
from balanced_align.data.formats._images import decode_image
from balanced_align.data.sources import ImageFolderSource
from balanced_align.data.validation import BadSampleError, image_problem, read_image
from tests.data.forged_images import png_claiming
from tests.data_paths import ASSET_HELEN


def _smooth(height=64, width=96, seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).random((height, width, 3)) * 255
    return cv2.GaussianBlur(noise.astype(np.uint8), (7, 7), 3)


def _jpeg(image: np.ndarray, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    return cv2.imencode(".jpg", image, params)[1].tobytes()


def _tree(root: Path) -> None:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "0.png"), _smooth(24, 20, seed=len(name)))


def test_sparse_2gib_file_is_refused_from_its_size_naming_it_under_raise_and_skip(tmp_path):
    root = tmp_path / "faces"
    _tree(root)
    big = root / "a" / "big.jpg"
    with open(big, "wb") as handle:  # sparse: no data blocks are written
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(2 * 2**30)
    assert big.stat().st_size == 2 * 2**30
    image, problem = image_problem(big)
    assert image is None and "file too large" in problem and str(2 * 2**30) in problem
    with pytest.raises(BadSampleError, match=r"big\.jpg.*file too large"):
        ImageFolderSource(root)
    source = ImageFolderSource(root, on_bad_sample="skip")
    assert [Path(p).name for p in source.skipped.paths()] == ["big.jpg"] and len(source) == 2


def test_png_header_claiming_20000_squared_is_refused_without_decoding(tmp_path):
    data = png_claiming(20000, 20000)
    assert len(data) < 500
    image, problem = decode_problem(data)
    assert image is None and "pixels" in problem
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(BadSampleError, match=r"bomb\.png.*pixels"):
        read_image(path)
    with pytest.raises(BadSampleError, match=r"record 7.*pixels"):
        decode_image(data, "record 7")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_is_width_times_height_from_the_header():
    limits = ImageLimits(max_pixels=20 * 30)
    exact = cv2.imencode(".png", _smooth(20, 30))[1].tobytes()
    image, problem = decode_problem(exact, limits)
    assert problem is None and image.shape == (20, 30, 3)
    over = cv2.imencode(".png", _smooth(21, 30))[1].tobytes()
    image, problem = decode_problem(over, limits)
    assert image is None and "30x21 = 630 pixels > limit 600" in problem
    # the default (64 MP) refuses the 12000 x 12000 PNG that took 826 MB to check
    image, problem = decode_problem(png_claiming(12000, 12000))
    assert image is None and "12000x12000" in problem


def test_limits_come_from_the_environment_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv(MAX_BYTES_VARIABLE, "1000")
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "5000")
    assert image_limits() == ImageLimits(max_bytes=1000, max_pixels=5000)
    data = cv2.imencode(".png", _smooth(40, 40))[1].tobytes()
    assert len(data) > 1000
    assert "file too large" in decode_problem(data)[1]
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "lots")
    with pytest.raises(ValueError, match=MAX_PIXELS_VARIABLE):
        image_limits()
    with pytest.raises(ValueError, match="max_bytes"):
        ImageLimits(max_bytes=0)


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_in_half_with_an_end_marker_appended_is_a_bad_sample(tmp_path, progressive):
    complete = _jpeg(_smooth(256, 256), progressive)
    forged = complete[: len(complete) // 2] + b"\xff\xd9"
    # OpenCV alone accepts it (the grey tail) and only warns on stderr
    assert cv2.imdecode(np.frombuffer(forged, np.uint8), cv2.IMREAD_COLOR) is not None
    image, problem = decode_problem(forged)
    assert image is None and "truncated JPEG" in problem
    # the complete file decodes to OpenCV's pixels (an independent decoder)
    image, problem = decode_problem(complete)
    reference = cv2.imdecode(np.frombuffer(complete, np.uint8), cv2.IMREAD_COLOR)
    assert problem is None and np.array_equal(image, reference[:, :, ::-1])


def test_truncated_jpeg_in_a_tree_is_named_under_raise_and_reported_under_skip(tmp_path):
    root = tmp_path / "faces"
    _tree(root)
    complete = _jpeg(_smooth())
    (root / "b" / "cut.jpg").write_bytes(complete[: len(complete) // 2] + b"\xff\xd9")
    with pytest.raises(BadSampleError, match=r"cut\.jpg.*truncated JPEG"):
        ImageFolderSource(root)
    source = ImageFolderSource(root, on_bad_sample="skip")
    ((path, reason),) = source.skipped
    assert path == str(root / "b" / "cut.jpg") and "truncated JPEG" in reason


def test_grey_jpeg_and_trailing_bytes_after_the_end_marker_are_accepted():
    grey = cv2.cvtColor(_smooth(), cv2.COLOR_BGR2GRAY)
    data = cv2.imencode(".jpg", grey)[1].tobytes()
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    for candidate in (data, data + b"trailing junk after EOI"):
        image, problem = decode_problem(candidate)
        assert problem is None and image.shape == (*grey.shape, 3)
        assert all(np.array_equal(image[:, :, c], reference) for c in range(3))


def test_helen_jpegs_have_no_false_positives():
    """Real in-the-wild JPEGs (the vendored HELEN faces) decode as OpenCV decodes them."""
    files = sorted(ASSET_HELEN.glob("*.jpg"))
    assert files, f"no HELEN images under {ASSET_HELEN}"
    for path in files:
        image, problem = image_problem(path)
        assert problem is None, (path, problem)
        reference = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert np.array_equal(image, reference[:, :, ::-1]), path


def test_a_fifo_named_like_an_image_is_not_read(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    image, problem = image_problem(path)  # opening a FIFO for reading would block
    assert image is None and problem == "not a regular file"
