"""The small shared core (docs/design.md §6): landmark schemas and the plain evaluation protocol.

Both ``data`` (which builds records and protocols) and ``evaluation``, ``models`` and the rest
(which use them) import these; the core imports nothing of the project but ``geometry``.
"""

from balanced_align.core.protocol import DEFAULT_YAW_BINS, EvaluationProtocol, contiguous_folds
from balanced_align.core.schema import (
    FIVE,
    IBUG68,
    LMK84,
    SCHEMAS,
    LandmarkSchema,
    get_schema,
    lmk84_to_ibug68,
    schema_for_count,
    to_five,
)

__all__ = [
    "DEFAULT_YAW_BINS",
    "FIVE",
    "IBUG68",
    "LMK84",
    "SCHEMAS",
    "EvaluationProtocol",
    "LandmarkSchema",
    "contiguous_folds",
    "get_schema",
    "lmk84_to_ibug68",
    "schema_for_count",
    "to_five",
]
