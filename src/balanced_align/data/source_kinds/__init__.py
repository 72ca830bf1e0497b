"""Data source kinds: each holds its own options and builds train / val / test sets.

The ``data.source`` node of a ``conf/data`` file (``_target_``: one of these classes);
:class:`~balanced_align.data.datamodule.FaceDataModule` takes one beside the loader-level
options. Kinds: :class:`SynthFacesSource` (generated faces), :class:`FolderSource` (an
identity-folder tree split by identity), :class:`LFWSource` (LFW by its official sets),
:class:`ShardSource` (tar shards, evaluated by :class:`SynthFacesEvaluation` or
:class:`FolderHalvesEvaluation`).
"""

from balanced_align.data.source_kinds.base import (
    BuildOptions,
    FaceSource,
    SourceKind,
    Splits,
    plain,
)
from balanced_align.data.source_kinds.folder import FolderSource
from balanced_align.data.source_kinds.folder_halves import FolderHalvesEvaluation
from balanced_align.data.source_kinds.legacy import LOADER_KEYS, from_flat_arguments
from balanced_align.data.source_kinds.lfw import LFWSource
from balanced_align.data.source_kinds.registry import (
    EVALUATIONS,
    SOURCES,
    require_options,
    source_from_config,
)
from balanced_align.data.source_kinds.shards import ShardSource
from balanced_align.data.source_kinds.synthfaces import SynthFacesEvaluation, SynthFacesSource
from balanced_align.data.source_kinds.tree import TreeOptions

__all__ = [
    "EVALUATIONS",
    "LOADER_KEYS",
    "SOURCES",
    "BuildOptions",
    "FaceSource",
    "FolderHalvesEvaluation",
    "FolderSource",
    "LFWSource",
    "ShardSource",
    "SourceKind",
    "Splits",
    "SynthFacesEvaluation",
    "SynthFacesSource",
    "TreeOptions",
    "from_flat_arguments",
    "plain",
    "require_options",
    "source_from_config",
]
