"""The options of an identity-folder tree, shared by the folder, LFW and shard-evaluation kinds.

A tree is one folder per identity under ``root``, optionally with a landmark table
(``landmarks``, CSV or Parquet keyed by the path relative to ``root``) in one of the pixel
conventions of docs/design.md §2.1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from balanced_align.data.source_kinds.base import BuildOptions, SourceKind
from balanced_align.data.sources import ImageFolderSource, RecordSubset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreeOptions(SourceKind):
    """root: the identity-folder tree. landmarks: optional table. landmark_convention:
    ``corner`` | ``one_based`` | ``zero_based_centre``. schema: ``lmk84`` | ``ibug68`` |
    ``five`` (None: from the landmark count)."""

    root: str | None = None
    landmarks: str | None = None
    landmark_convention: str = "corner"
    schema: str | None = None

    def __post_init__(self) -> None:
        if self.root is None:
            raise self.error("root", "needs the identity-folder tree")

    def open(self, options: BuildOptions) -> ImageFolderSource:
        """The :class:`ImageFolderSource` of ``root`` with the bad-sample options."""
        return ImageFolderSource(
            self.root,
            landmarks=self.landmarks,
            landmark_convention=self.landmark_convention,
            schema=self.schema,
            on_bad_sample=options.on_bad_sample,
            check_images=bool(options.check_images),
        )


def check_min_images(kind: SourceKind, minimum: int) -> None:
    """``min_images_per_identity`` must be >= 1 (named as ``kind``'s key)."""
    if int(minimum) < 1:
        raise kind.error("min_images_per_identity", f"must be >= 1, got {minimum}")


def training_subset(source, identities, minimum: int, key: str) -> RecordSubset:
    """Training records: the images of ``identities`` (source labels) that have at least
    ``minimum`` usable images, relabelled 0…C−1 (``key``: the option, for messages)."""
    labels = np.asarray(source.labels)
    identities = np.asarray(identities)
    minimum = int(minimum)
    if minimum > 1:
        counts = np.bincount(labels[labels >= 0], minlength=int(source.num_classes))
        kept = identities[counts[identities] >= minimum]
        logger.info(
            "min_images_per_identity=%d: %d of %d training identities kept",
            minimum,
            len(kept),
            len(identities),
        )
        identities = kept
    rows = np.flatnonzero(np.isin(labels, identities))
    if np.unique(labels[rows]).size < 2:
        raise ValueError(
            f"{source!r}: fewer than 2 training identities with >= {minimum} images ({key})"
        )
    return RecordSubset(source, rows)
