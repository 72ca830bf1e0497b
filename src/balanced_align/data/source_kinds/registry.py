"""Source kinds by name: a source from plain values (a checkpoint's ``source`` entry).

Hydra builds sources from their ``_target_``; a checkpoint stores
:meth:`~.base.SourceKind.to_config` instead (``{"kind": …, field: value}``, plain values
only), and :func:`source_from_config` rebuilds it from this closed list, never from an
import path read from a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from balanced_align.data.source_kinds.base import FaceSource, SourceKind
from balanced_align.data.source_kinds.folder import FolderSource
from balanced_align.data.source_kinds.folder_halves import FolderHalvesEvaluation
from balanced_align.data.source_kinds.lfw import LFWSource
from balanced_align.data.source_kinds.shards import ShardSource
from balanced_align.data.source_kinds.synthfaces import SynthFacesEvaluation, SynthFacesSource

#: ``data.source`` kinds
SOURCES: dict[str, type[FaceSource]] = {
    cls.kind: cls for cls in (SynthFacesSource, FolderSource, LFWSource, ShardSource)
}
#: ``data.source.evaluation`` kinds (the shard kind's evaluation sets)
EVALUATIONS: dict[str, type[SourceKind]] = {
    cls.kind: cls for cls in (SynthFacesEvaluation, FolderHalvesEvaluation)
}


def require_options(cls: type, keys, key: str, kind: str | None = None) -> None:
    """Raise ``ValueError`` naming ``key.<name>`` for the first of ``keys`` that is not a
    field of dataclass ``cls`` (its options listed): one rule for source kinds read from a
    checkpoint's dict (``kind`` named) and for Hydra nodes (training.py)."""
    names = sorted(field.name for field in dataclasses.fields(cls))
    unknown = sorted(str(name) for name in keys if name not in names)
    if unknown:
        which = f"kind {kind!r}; " if kind is not None else ""
        raise ValueError(
            f"{key}.{unknown[0]}: not an option of {cls.__name__} ({which}its options: "
            f"{', '.join(names)})"
        )


def _from_config(config: Mapping, kinds: Mapping[str, type], key: str):
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in kinds:
        raise ValueError(f"{key}.kind must be one of {sorted(kinds)}, got {kind!r}")
    cls = kinds[kind]
    require_options(cls, config, key, kind)
    if isinstance(config.get("evaluation"), Mapping):
        config["evaluation"] = _from_config(config["evaluation"], EVALUATIONS, f"{key}.evaluation")
    return cls(**config)


def source_from_config(config: Mapping | FaceSource) -> FaceSource:
    """A source from ``{"kind": …, option: value, …}`` (a source is returned as it is).

    An unknown kind or option raises ValueError naming its key (``data.source.…``).
    """
    if isinstance(config, FaceSource):
        return config
    if not isinstance(config, Mapping):
        raise TypeError(
            f"data.source must be a source or a mapping with a kind, got {type(config).__name__}"
        )
    return _from_config(config, SOURCES, "data.source")
