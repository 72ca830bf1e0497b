"""The one ``torch.load``: ``weights_only=True``, never more (docs/design.md §4.4).

Lightning checkpoints (:mod:`balanced_align.checkpoints`), T_fix† templates
(:meth:`balanced_align.losses.AlignmentLoss.from_checkpoint`) and published backbone weights
(:mod:`balanced_align.models.insightface`) are all read by :func:`load_weights_only`: a file
that needs any pickle global beyond tensors and plain containers raises
:class:`UnsafeCheckpointError` and nothing in it runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


class UnsafeCheckpointError(ValueError):
    """A file that ``torch.load(weights_only=True)`` refuses; never loaded unsafely."""


def check_file(path: str | Path, what: str) -> Path:
    """``path`` if it is a file, else IsADirectoryError / FileNotFoundError naming ``what``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory; give the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    return path


def load_weights_only(path: str | Path, map_location="cpu", what: str = "checkpoint"):
    """The contents of torch file ``path`` (tensors, plain containers, numbers only).

    ``what`` names the file in errors (``"checkpoint"``, ``"model.pretrained"``). A missing
    file is a FileNotFoundError, a refused global an :class:`UnsafeCheckpointError`, anything
    else unreadable (truncated, not a torch file) a ValueError.
    """
    path = check_file(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"{what} {str(path)!r} cannot be loaded safely: torch.load(weights_only=True) "
            f"refused it ({_reason(error)}). balanced-align never falls back to unsafe loading; "
            "save a file that holds only tensors and plain containers"
        ) from None
    except Exception as error:  # truncated or not a torch file: KeyError, EOFError, …
        raise ValueError(
            f"{what} {str(path)!r} is not a readable torch file ({type(error).__name__}: {error})"
        ) from None


def _reason(error: Exception) -> str:
    """The part of torch's weights_only error that names the refused global or opcode
    (the text after ``WeightsUnpickler error:``, on its line or the next)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].split(" was not an allowed global")[0] if lines else type(error).__name__


__all__ = ["UnsafeCheckpointError", "check_file", "load_weights_only"]
