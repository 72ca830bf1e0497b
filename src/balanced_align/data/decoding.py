"""Bounded, strict image decoding: sizes are checked before a pixel is decoded.

Every image the project reads from a file or from inline bytes (image trees, ``.pts``
folders, RecordIO, insightface ``.bin``) goes through :func:`decode_problem`, in this order:

1. Bytes: a file must be a regular file of at most ``max_bytes`` (checked with ``stat``
   before reading, and again while reading); inline bytes the same length.
2. End markers: a JPEG without its end-of-image marker or a PNG without ``IEND`` is
   truncated.
3. Header: the width and height come from the header alone (Pillow's ``Image.open`` is
   lazy: it parses the header and decodes nothing); more than ``max_pixels`` pixels is
   refused (a decompression-bomb guard: a few kB of PNG can claim 20000 × 20000 pixels,
   1.2 GB decoded). A header Pillow does not recognise is not an image.
4. JPEG entropy data: libjpeg decodes a JPEG whose scan was cut short and then closed
   with an end marker by filling the missing data with zeros (a grey tail), and only
   warns on stderr. So a JPEG is decoded twice with Pillow (libjpeg-turbo, the same
   pixels as OpenCV's decoder), once as it is and once with filler bytes inserted before
   the final end marker: a complete scan ignores them (libjpeg skips bytes between the
   scan and the marker), a cut one consumes them, so the two decodes differ exactly when
   the decoder ran out of data. The first decode is the image returned. Cost: about
   3 × one OpenCV decode (1.3 ms of CPU against 0.43 ms for a 256² JPEG).
5. Pixels (other formats): OpenCV decodes (``IMREAD_UNCHANGED``); 16-bit is scaled to 8
   bits. An OpenCV error is a problem like any other. Grey becomes RGB, alpha is dropped.

Limits (:class:`ImageLimits`): by default 256 MiB and 64 MP (8192 × 8192). Set them per
call, or for a whole run (DataLoader workers included: they inherit the environment)
with ``BALANCED_ALIGN_MAX_IMAGE_BYTES`` and ``BALANCED_ALIGN_MAX_IMAGE_PIXELS``. Pillow has
its own bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89 MP warns, 179 MP refuses): a
``max_pixels`` above it also needs that one raised.

Problems are returned as text (``(None, reason)``), never raised, so that callers apply
their bad-sample policy (docs/design.md §4) and name the file.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_MAX_IMAGE_BYTES = 256 * 2**20
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
MAX_BYTES_VARIABLE = "BALANCED_ALIGN_MAX_IMAGE_BYTES"
MAX_PIXELS_VARIABLE = "BALANCED_ALIGN_MAX_IMAGE_PIXELS"

_JPEG_END = b"\xff\xd9"
_FILLER = b"\x5a" * 16  # no 0xFF: cannot form a marker; not zeros: differs from libjpeg's fill


@dataclass(frozen=True)
class ImageLimits:
    """Largest accepted image: ``max_bytes`` encoded, ``max_pixels`` = width × height."""

    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ImageLimits.{name} must be a positive integer, got {value!r}")


def _from_environment(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"environment variable {variable}={text!r}: expected a positive integer")
    return value


def image_limits() -> ImageLimits:
    """The limits in force: the defaults, overridden by the environment variables."""
    return ImageLimits(
        max_bytes=_from_environment(MAX_BYTES_VARIABLE, DEFAULT_MAX_IMAGE_BYTES),
        max_pixels=_from_environment(MAX_PIXELS_VARIABLE, DEFAULT_MAX_IMAGE_PIXELS),
    )


def read_image_bytes(
    path: str | Path, limits: ImageLimits | None = None
) -> tuple[bytes | None, str | None]:
    """The bytes of an image file, or ``(None, reason)``: not a regular file, too large
    (from ``stat``, before reading), unreadable. Symlinks are followed; a dangling one or
    a loop is "cannot read"."""
    limits = limits or image_limits()
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"
        if info.st_size > limits.max_bytes:
            return None, _too_many_bytes(info.st_size, limits)
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as error:
        return None, f"cannot read file ({error})"
    if len(data) > limits.max_bytes:  # grew, or stat does not know (special file systems)
        return None, _too_many_bytes(len(data), limits)
    return data, None


def _too_many_bytes(size: int, limits: ImageLimits) -> str:
    return (
        f"file too large: {size} bytes > limit {limits.max_bytes} "
        f"(raise it with {MAX_BYTES_VARIABLE})"
    )


def _truncation_problem(data: bytes) -> str | None:
    """Cheap end-marker checks for formats whose decoders may accept a cut-off file."""
    tail = data[-1024:]
    if data[:2] == b"\xff\xd8" and _JPEG_END not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def _header_problem(data: bytes, limits: ImageLimits) -> tuple[str | None, str | None]:
    """``(format, None)`` if the header is readable and within the pixel limit."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            kind = image.format
    except Image.DecompressionBombError as error:
        return None, f"more than {limits.max_pixels} pixels ({error})"
    except UnidentifiedImageError:
        return None, "not a readable image (unrecognised header)"
    except (OSError, SyntaxError, ValueError) as error:
        return None, f"not a readable image (bad header: {error})"
    if width < 1 or height < 1:
        return None, f"not a readable image (header says {width}x{height})"
    if width * height > limits.max_pixels:
        return None, (
            f"image too large: {width}x{height} = {width * height} pixels > limit "
            f"{limits.max_pixels} (raise it with {MAX_PIXELS_VARIABLE})"
        )
    return kind, None


def _pillow_decode(data: bytes) -> np.ndarray | None:
    """Pillow's decode of ``data``: (H, W) for grey, (H, W, 3) RGB otherwise; None if it fails."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError):
        return None


def decode_jpeg_strictly(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """A JPEG as (H, W) grey or (H, W, 3) RGB uint8, or ``(None, reason)`` when it does not
    decode or its entropy-coded data is incomplete (see the module docstring).

    ``data`` is a JPEG that ends with an end-of-image marker (maybe followed by other
    bytes). Costs two Pillow decodes.
    """
    end = data.rfind(_JPEG_END)
    if end < 0:
        return None, "truncated JPEG (no end-of-image marker)"
    while end > 0 and data[end - 1] == 0xFF:  # fill bytes belong to the marker
        end -= 1
    as_is = _pillow_decode(data)
    if as_is is None:
        return None, "not a readable image (JPEG does not decode)"
    padded = _pillow_decode(data[:end] + _FILLER + data[end:])
    if padded is None or padded.shape != as_is.shape or not np.array_equal(padded, as_is):
        return None, (
            "truncated JPEG (its scan data ends early; decoders would fill the rest with grey)"
        )
    return as_is, None


def bounds_problem(data: bytes, limits: ImageLimits | None = None) -> tuple[str | None, str | None]:
    """Steps 1–3 of the module docstring, without decoding a pixel: ``(format, None)``
    (Pillow's format name, e.g. ``"JPEG"``) or ``(None, reason)``."""
    limits = limits or image_limits()
    if not data:
        return None, "empty file"
    if len(data) > limits.max_bytes:
        return None, _too_many_bytes(len(data), limits)
    problem = _truncation_problem(data)
    if problem is not None:
        return None, problem
    return _header_problem(data, limits)


def decode_problem(
    data: bytes, limits: ImageLimits | None = None
) -> tuple[np.ndarray | None, str | None]:
    """Decode encoded bytes to (H, W, 3) uint8 RGB: ``(image, None)`` or ``(None, reason)``.

    Checks in the order of the module docstring; nothing is decoded before the size checks.
    """
    kind, problem = bounds_problem(data, limits)
    if problem is not None:
        return None, problem
    if kind == "JPEG":
        image, problem = decode_jpeg_strictly(data)
        if problem is not None:
            return None, problem
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        return np.ascontiguousarray(image), None
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        return None, f"not a readable image (OpenCV: {str(error).strip()})"
    if image is None or image.size == 0:
        return None, "not a readable image (decoding failed: corrupt, truncated or not an image)"
    return _to_rgb_uint8(image)


def _to_rgb_uint8(image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """An OpenCV-decoded array (BGR[A] or grey, 8 or 16 bits) as (H, W, 3) uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None, f"unsupported pixel type {image.dtype}"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        return None, f"unsupported image layout {image.shape}"
    return np.ascontiguousarray(image), None
