"""Device and inference precision from user-facing names (``eval.py``, :class:`FaceEmbedder`).

Free of Lightning and Hydra: both the evaluation job and the inference API use it.
"""

from __future__ import annotations

import torch

#: autocast dtype per precision name (None: float32, no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "bf16": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
    "16": torch.float16,
    "16-mixed": torch.float16,
}


def resolve_device(name: str | None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without CUDA → ValueError."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}, but CUDA is not available")
    return device


def resolve_precision(value, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision=value`` on ``device`` (None: float32).

    ValueError naming ``precision`` for unknown names, and for float16 off CUDA.
    """
    key = str(value)
    if key not in PRECISIONS:
        raise ValueError(f"precision must be one of 32, bf16, 16; got {value!r}")
    dtype = PRECISIONS[key]
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError("precision=16 needs a CUDA device; use bf16 on CPU")
    return dtype
