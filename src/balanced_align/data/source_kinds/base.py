"""What every data source kind shares: the build options it is given and the splits it builds.

A source kind (:mod:`.synthfaces`, :mod:`.folder`, :mod:`.lfw`, :mod:`.shards`) is a frozen
dataclass that holds its own options (the ``data.source`` node of a ``conf/data`` file) and
builds a :class:`Splits` from the options common to every kind (:class:`BuildOptions`, the
loader-level keys of ``data``). :class:`~balanced_align.data.datamodule.FaceDataModule` turns
the splits into loaders. Errors name the config key: ``data.source.<field>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.core.schema import LandmarkSchema
from balanced_align.data.evaluation_sets import EvaluationItems
from balanced_align.data.validation import SkipReport


def plain(value):
    """Config containers (e.g. OmegaConf) to plain values: mappings → dict, lists → tuple."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    if hasattr(value, "items"):
        return {str(k): plain(v) for k, v in value.items()}
    return tuple(plain(v) for v in value)


@dataclass(frozen=True)
class BuildOptions:
    """The loader-level options a source builds with.

    image_size: model input size (square); sources of another size are resized.
    seed: every split and evaluation set derives from it.
    on_bad_sample: ``"raise"`` or ``"skip"`` for file sources.
    check_images: decode every file at setup (unreadable images, out-of-image landmarks).
    """

    image_size: int
    seed: int
    on_bad_sample: str = "raise"
    check_images: bool = True


@dataclass
class Splits:
    """What a source builds: training records and the val / test evaluation sets.

    train_records: a map-style data set of FaceRecords (labels 0 … num_classes − 1), or a
        shard stream read once in writing order (what T_fix reads).
    val, test: (items, protocol), row i of the items = dataset index i of that loader.
    records: the source that T_fix's landmark check names.
    schema: the landmark schema (None without landmarks). skipped: bad samples dropped.
    """

    train_records: Any
    val: tuple[EvaluationItems, EvaluationProtocol]
    test: tuple[EvaluationItems, EvaluationProtocol]
    records: Any
    schema: LandmarkSchema | None
    has_landmarks: bool
    skipped: SkipReport = dataclasses.field(default_factory=SkipReport)


class SourceKind:
    """Mixin of the source dataclasses: their name, their config as plain values.

    ``kind`` names the class in :data:`~.registry.SOURCES` (a checkpoint stores it);
    ``config_key`` is where the options live in the Hydra config, for error messages.
    """

    kind: ClassVar[str]
    config_key: ClassVar[str] = "data.source"

    def to_config(self) -> dict:
        """``{"kind": …, field: value, …}``: plain values only (what a checkpoint holds)."""
        config = {"kind": self.kind}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            config[field.name] = value.to_config() if isinstance(value, SourceKind) else value
        return config

    def error(self, key: str, problem: str) -> ValueError:
        """A ValueError naming the config key ``<config_key>.<key>``."""
        return ValueError(f"{self.config_key}.{key}: {problem} ({type(self).__name__})")


class FaceSource(SourceKind):
    """A data source: builds the splits, knows its class count when it can without them."""

    def build(self, options: BuildOptions) -> Splits:
        raise NotImplementedError

    def known_num_classes(self) -> int | None:
        """The number of training identities without building anything, or None."""
        return None

    def train_stream(self, transform, *, seed: int, batch_size: int, collate_fn):
        """A training set that batches itself (an IterableDataset), or None: the data module
        then samples ``Splits.train_records`` by epoch."""
        return None
