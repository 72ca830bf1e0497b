"""SynthFaces as a data source: generated faces, 84 landmarks, known pose (docs/design.md §4.2).

Global identity ids: train ``[0, num_train_identities)``, then val probes, val distractors,
test probes, test distractors, each range after the previous. :class:`SynthFacesEvaluation`
alone builds the val / test sets from any offset (the shard kind evaluates with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from balanced_align.core.schema import get_schema
from balanced_align.data.evaluation_sets import build_synth_evaluation
from balanced_align.data.source_kinds.base import (
    BuildOptions,
    FaceSource,
    SourceKind,
    Splits,
    plain,
)
from balanced_align.data.synthfaces.params import Knobs
from balanced_align.data.validation import SkipReport


def _synth_factory():
    from balanced_align.data.synthfaces import SynthFaces

    return SynthFaces


@dataclass(frozen=True)
class SynthFacesEvaluation(SourceKind):
    """SynthFaces val and test sets: probe identities (verification pairs, MegaFace probes,
    per-pose probes with a frontal gallery) and distractor identities.

    val_identities, test_identities: probe identities; eval_images_per_identity: their
    images (yaw from ``eval_yaw_range``); val_distractor_identities,
    test_distractor_identities, eval_distractor_images: distractors; val_num_pairs,
    test_num_pairs: verification pairs (multiples of 20). synth_knobs: SynthFaces knobs
    (``yaw_range`` among them applies to training only).
    """

    kind = "synthfaces"
    config_key = "data.source.evaluation"

    val_identities: int = 20
    test_identities: int = 50
    eval_images_per_identity: int = 6
    val_distractor_identities: int = 50
    test_distractor_identities: int = 200
    eval_distractor_images: int = 1
    eval_yaw_range: tuple[float, float] = (-90.0, 90.0)
    val_num_pairs: int = 200
    test_num_pairs: int = 600
    synth_knobs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        knobs = plain(self.synth_knobs or {})
        object.__setattr__(self, "synth_knobs", knobs)
        object.__setattr__(self, "eval_yaw_range", tuple(plain(self.eval_yaw_range)))
        try:  # checked before any setup
            Knobs.from_mapping(knobs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.config_key}.synth_knobs: {error}") from None

    def build_evaluation(self, options: BuildOptions, offset: int):
        """((val items, protocol), (test items, protocol), skipped: empty) from global
        identity ``offset`` on."""
        splits = {}
        for split in ("val", "test"):
            identities = int(getattr(self, f"{split}_identities"))
            distractors = int(getattr(self, f"{split}_distractor_identities"))
            splits[split] = build_synth_evaluation(
                identities,
                int(self.eval_images_per_identity),
                distractors,
                int(self.eval_distractor_images),
                image_size=options.image_size,
                seed=options.seed,
                identity_offset=offset,
                num_pairs=int(getattr(self, f"{split}_num_pairs")),
                yaw_range=tuple(self.eval_yaw_range),
                knobs=self.synth_knobs,
                synth_factory=_synth_factory(),
            )
            offset += identities + distractors
        return splits["val"], splits["test"], SkipReport()


@dataclass(frozen=True)
class SynthFacesSource(SynthFacesEvaluation, FaceSource):
    """Generated training faces (``num_train_identities`` × ``train_images_per_identity``)
    and the SynthFaces evaluation sets after them (the fields of
    :class:`SynthFacesEvaluation`)."""

    kind = "synthfaces"
    config_key = "data.source"

    num_train_identities: int = 200
    train_images_per_identity: int = 20

    def known_num_classes(self) -> int:
        return int(self.num_train_identities)

    def build(self, options: BuildOptions) -> Splits:
        n_train = int(self.num_train_identities)
        train = _synth_factory()(
            n_train,
            int(self.train_images_per_identity),
            image_size=options.image_size,
            seed=options.seed,
            identity_offset=0,
            **self.synth_knobs,
        )
        val, test, _ = self.build_evaluation(options, offset=n_train)
        return Splits(
            train_records=train,
            val=val,
            test=test,
            records=train,
            schema=get_schema(getattr(train, "schema", None) or "lmk84"),
            has_landmarks=True,
        )
