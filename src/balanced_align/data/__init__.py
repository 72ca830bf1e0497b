"""Face data: records, landmark schemas, sources, transforms, evaluation sets (docs/design.md §4).

Some names load on first access: ``SynthFaces`` (the generated data set),
``FaceDataModule`` (Lightning) and the evaluation-set builders (they import
``balanced_align.evaluation``, which imports ``balanced_align.data.schema``: an eager
import here would be circular). So ``import balanced_align.data`` stays light and
Lightning-free.
"""

from balanced_align.data.record import FaceRecord
from balanced_align.data.schema import (
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

_LAZY = {
    "EvaluationItems": "balanced_align.data.evaluation_sets",
    "build_folder_evaluation": "balanced_align.data.evaluation_sets",
    "build_synth_evaluation": "balanced_align.data.evaluation_sets",
    "make_verification_pairs": "balanced_align.data.evaluation_sets",
    "SynthFaces": "balanced_align.data.synthfaces",
    "FaceDataModule": "balanced_align.data.datamodule",
    "FaceSampleDataset": "balanced_align.data.datamodule",
    "collate_samples": "balanced_align.data.datamodule",
    "seed_worker": "balanced_align.data.datamodule",
}

__all__ = [
    "FIVE",
    "IBUG68",
    "IMAGE_EXTENSIONS",
    "LANDMARK_CONVENTIONS",
    "LMK84",
    "SCHEMAS",
    "BadSampleError",
    "DataConfigurationError",
    "FaceRecord",
    "FaceTransform",
    "ImageFolderSource",
    "JitterConfig",
    "LandmarkSchema",
    "PtsFolderSource",
    "RecordSubset",
    "SkipReport",
    "from_corner",
    "get_schema",
    "hflip_face",
    "lmk84_to_ibug68",
    "read_image",
    "read_landmark_table",
    "read_pts",
    "require_landmarks",
    "resize_face",
    "schema_for_count",
    "to_corner",
    "to_five",
    "to_tensor",
    "write_landmark_table",
    "write_pts",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'balanced_align.data' has no attribute {name!r}")
