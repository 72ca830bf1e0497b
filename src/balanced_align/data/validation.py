"""Bad-input checks for data sources and the skip policy (docs/design.md §4).

Every file-backed source runs these checks when it is built, which the DataModule does in
``setup`` (before any training step), so that a broken file is reported at once and not
at step 40 000.

Policy (``on_bad_sample``):

- ``"raise"`` (default): the first problem raises ``FileNotFoundError`` (a missing file)
  or :class:`BadSampleError` (a ``ValueError``: everything else); the message names the
  file and the problem.
- ``"skip"``: the sample is dropped and recorded as ``(path, reason)`` in a
  :class:`SkipReport`; the source exposes it as ``source.skipped`` and logs it at
  warning level. Nothing is dropped silently.

Landmark checks work in the corner-origin pixel frame of docs/design.md §2.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from balanced_align.data.decoding import ImageLimits, decode_problem, read_image_bytes

logger = logging.getLogger(__name__)

BAD_SAMPLE_POLICIES = ("raise", "skip")

#: Default tolerance: a landmark may lie outside the image by up to this fraction of the
#: image's width (x) or height (y) before it counts as "far outside".
DEFAULT_OUTSIDE_MARGIN = 0.5


class BadSampleError(ValueError):
    """A sample (file or table row) that cannot be used; the message names it."""


class DataConfigurationError(ValueError):
    """A data set that does not provide what the configuration needs."""


def check_policy(on_bad_sample: str) -> str:
    """Return ``on_bad_sample`` if it is a known policy, else raise ValueError."""
    if on_bad_sample not in BAD_SAMPLE_POLICIES:
        raise ValueError(
            f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {on_bad_sample!r}"
        )
    return on_bad_sample


@dataclass
class SkipReport:
    """Samples a source dropped under ``on_bad_sample="skip"``: ``(path, reason)`` pairs."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.entries)

    def paths(self) -> list[str]:
        return [path for path, _ in self.entries]

    def __str__(self) -> str:
        lines = [f"{self.count} bad sample(s) skipped"]
        lines += [f"  {path}: {reason}" for path, reason in self.entries]
        return "\n".join(lines)


class BadSampleHandler:
    """Applies the policy to each problem found while building a source.

    ``handler.bad(path, reason)`` raises under ``"raise"``; under ``"skip"`` it records
    the problem in ``handler.report``. Call :meth:`finish` once at the end to log.
    """

    def __init__(self, on_bad_sample: str, owner: str) -> None:
        self.policy = check_policy(on_bad_sample)
        self.owner = owner
        self.report = SkipReport()

    def bad(self, path: str | Path, reason: str, missing: bool = False) -> None:
        """Report a problem with ``path``; ``missing=True`` raises FileNotFoundError."""
        if self.policy == "raise":
            error = FileNotFoundError if missing else BadSampleError
            raise error(
                f"{self.owner}: bad sample {str(path)!r}: {reason} "
                "(use on_bad_sample='skip' to drop such samples with a report)"
            )
        self.report.entries.append((str(path), reason))

    def finish(self, max_listed: int = 20) -> SkipReport:
        """Log the skipped samples (warning level) and return the report."""
        if self.report.count:
            shown = self.report.entries[:max_listed]
            listing = "\n".join(f"  {path}: {reason}" for path, reason in shown)
            more = self.report.count - len(shown)
            tail = f"\n  ... and {more} more (see source.skipped)" if more > 0 else ""
            logger.warning(
                "%s: skipped %d bad sample(s):\n%s%s",
                self.owner,
                self.report.count,
                listing,
                tail,
            )
        return self.report


def image_problem(
    path: str | Path, limits: ImageLimits | None = None
) -> tuple[np.ndarray | None, str | None]:
    """Decode ``path`` as an RGB image; return ``(image, None)`` or ``(None, reason)``.

    Missing files are not handled here (callers check existence first, because they
    raise FileNotFoundError for them). image: (H, W, 3) uint8 RGB; grey images are
    replicated to three channels, alpha is dropped, 16-bit images are scaled to 8 bits.
    File size and pixel count are checked before decoding, JPEG scans strictly
    (:mod:`.decoding`; ``limits`` default: :func:`~.decoding.image_limits`).
    """
    data, problem = read_image_bytes(path, limits)
    if problem is not None:
        return None, problem
    return decode_problem(data, limits)


def require_rgb_uint8(image, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``image`` is a non-empty (H, W, 3) uint8
    numpy array (a decoded RGB image)."""
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.size > 0
    ):
        raise ValueError(
            f"{where}: image must be (H, W, 3) uint8 RGB, got "
            f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}"
        )


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB, raising with the file name on any problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    image, problem = image_problem(path)
    if problem is not None:
        raise BadSampleError(f"image file {str(path)!r}: {problem}")
    return image


def landmark_problem(
    points: np.ndarray,
    num_points: int | None = None,
    image_size: tuple[int, int] | None = None,
    margin: float = DEFAULT_OUTSIDE_MARGIN,
) -> str | None:
    """Return why ``points`` are unusable, or None.

    points: (S, 2) pixel coordinates (corner origin). ``num_points``: expected S.
    ``image_size``: (H, W); a point counts as far outside when x < -margin·W,
    x > (1 + margin)·W (same for y with H).
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        return f"landmarks must be (S, 2), got shape {points.shape}"
    if num_points is not None and points.shape[0] != num_points:
        return f"wrong landmark count: {points.shape[0]}, expected {num_points}"
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        return f"landmarks {np.flatnonzero(bad).tolist()} are NaN or infinite"
    if image_size is not None:
        height, width = image_size
        low = -margin * np.array([width, height])
        high = (1.0 + margin) * np.array([width, height])
        outside = ((points < low) | (points > high)).any(axis=1)
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            return (
                f"{int(outside.sum())} landmark(s) far outside the {width}x{height} image "
                f"(e.g. point {first} at {points[first].tolist()}; tolerance {margin:g} of "
                "the image size)"
            )
    return None


def require_landmarks(source, why: str) -> None:
    """Raise :class:`DataConfigurationError` if ``source`` has no landmarks.

    ``why`` names what needs them, e.g. ``"align.lambda > 0"``; a source without
    landmarks is accepted only where none are needed.
    """
    if not getattr(source, "has_landmarks", False):
        raise DataConfigurationError(
            f"data source {source!r} has no landmarks, but {why} needs them"
        )
