"""The landmark schemas' former home: they live in :mod:`balanced_align.core.schema` (shared by
``data``, ``models`` and ``evaluation``, docs/design.md §6). Re-exported here for code that
imports ``balanced_align.data.schema``; new code imports ``balanced_align.core.schema``."""

from balanced_align.core.schema import (
    FIVE,
    IBUG68,
    IBUG68_NAMES,
    LMK84,
    LMK84_EXTRA,
    SCHEMAS,
    LandmarkSchema,
    get_schema,
    lmk84_to_ibug68,
    schema_for_count,
    to_five,
)

__all__ = [
    "FIVE",
    "IBUG68",
    "IBUG68_NAMES",
    "LMK84",
    "LMK84_EXTRA",
    "SCHEMAS",
    "LandmarkSchema",
    "get_schema",
    "lmk84_to_ibug68",
    "schema_for_count",
    "to_five",
]
