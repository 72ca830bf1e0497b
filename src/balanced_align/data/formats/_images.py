"""Encoded image bytes <-> (H, W, 3) uint8 RGB arrays, for formats that store images inline."""

from __future__ import annotations

import cv2
import numpy as np

from balanced_align.data.validation import BadSampleError

_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"BM": "BMP",
}


def image_kind(data: bytes) -> str | None:
    """The container of encoded image bytes by signature (``JPEG``, ``PNG``, ``BMP``) or None."""
    for signature, name in _SIGNATURES.items():
        if data[: len(signature)] == signature:
            return name
    return None


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode encoded bytes to (H, W, 3) uint8 RGB; ``where`` names the sample in errors.

    Grey images become three equal channels, alpha is dropped. A JPEG without its
    end-of-image marker or a PNG without its IEND chunk counts as truncated (OpenCV may
    otherwise decode a cut-off file with a grey tail).
    """
    if not data:
        raise BadSampleError(f"{where}: empty image bytes")
    tail = data[-1024:]
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        raise BadSampleError(f"{where}: truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        raise BadSampleError(f"{where}: truncated PNG (no IEND chunk)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadSampleError(f"{where}: image bytes do not decode (corrupt or not an image)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadSampleError(f"{where}: unsupported pixel type {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        raise BadSampleError(f"{where}: unsupported image layout {image.shape}")
    return np.ascontiguousarray(image)


def encode_image(image: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """Encode (H, W, 3) uint8 RGB (or (H, W) grey) as ``ext`` (``.jpg``, ``.png``, …) bytes."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise ValueError(
            f"encode_image: expected (H, W, 3) or (H, W) uint8, got {image.shape} {image.dtype}"
        )
    ext = ext if ext.startswith(".") else "." + ext
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ValueError(f"encode_image: OpenCV cannot encode {ext!r}")
    return buffer.tobytes()
