"""Encoded image bytes <-> (H, W, 3) uint8 RGB arrays, for formats that store images inline."""

from __future__ import annotations

import cv2
import numpy as np

from balanced_align.data.decoding import decode_problem
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

    Grey images become three equal channels, alpha is dropped. The checks of
    :func:`~balanced_align.data.decoding.decode_problem` apply (size and pixel limits
    before decoding, truncated JPEG/PNG, strict JPEG scans); any problem raises
    :class:`BadSampleError`.
    """
    if not data:
        raise BadSampleError(f"{where}: empty image bytes")
    image, problem = decode_problem(bytes(data))
    if problem is not None:
        raise BadSampleError(f"{where}: {problem}")
    return image


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
