"""Face data: records, landmark schemas, sources, transforms, evaluation sets (docs/design.md §4).

The landmark schemas live in :mod:`balanced_align.core.schema` and are re-exported here.
``data`` imports nothing of the project but ``core`` and ``geometry`` (docs/design.md §6), so
every name below is imported eagerly; ``FaceDataModule`` brings Lightning with it.
"""

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
from balanced_align.data.datamodule import (
    FaceDataModule,
    FaceSampleDataset,
    collate_samples,
    seed_worker,
)
from balanced_align.data.evaluation_sets import (
    EvaluationItems,
    build_folder_evaluation,
    build_synth_evaluation,
    make_verification_pairs,
)
from balanced_align.data.record import FaceRecord
from balanced_align.data.sources import (
    IMAGE_EXTENSIONS,
    LANDMARK_CONVENTIONS,
    ImageFolderSource,
    PtsFolderSource,
    RecordSubset,
    from_corner,
    read_landmark_table,
    read_pts,
    to_corner,
    write_landmark_table,
    write_pts,
)
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.data.transforms import (
    FaceTransform,
    JitterConfig,
    hflip_face,
    resize_face,
    to_tensor,
)
from balanced_align.data.validation import (
    BadSampleError,
    DataConfigurationError,
    SkipReport,
    read_image,
    require_landmarks,
)

__all__ = [
    "FIVE",
    "IBUG68",
    "IMAGE_EXTENSIONS",
    "LANDMARK_CONVENTIONS",
    "LMK84",
    "SCHEMAS",
    "BadSampleError",
    "DataConfigurationError",
    "EvaluationItems",
    "FaceDataModule",
    "FaceRecord",
    "FaceSampleDataset",
    "FaceTransform",
    "ImageFolderSource",
    "JitterConfig",
    "LandmarkSchema",
    "PtsFolderSource",
    "RecordSubset",
    "SkipReport",
    "SynthFaces",
    "build_folder_evaluation",
    "build_synth_evaluation",
    "collate_samples",
    "from_corner",
    "get_schema",
    "hflip_face",
    "lmk84_to_ibug68",
    "make_verification_pairs",
    "read_image",
    "read_landmark_table",
    "read_pts",
    "require_landmarks",
    "resize_face",
    "schema_for_count",
    "seed_worker",
    "to_corner",
    "to_five",
    "to_tensor",
    "write_landmark_table",
    "write_pts",
]
