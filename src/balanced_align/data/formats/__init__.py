"""Real benchmark and training-data formats (docs/design.md §4–5), one module per format.

- :mod:`.lfw`: LFW ``pairs.txt`` + image tree -> :class:`LFWPairs`.
- :mod:`.insightface_bin`: verification ``.bin`` (restricted unpickler) -> :class:`BinPairs`.
- :mod:`.recordio`: MXNet ``train.rec``/``.idx`` without mxnet -> :class:`RecordIOSource`.
- :mod:`.video`: YouTube-Faces-style frame folders + splits -> :class:`VideoPairs`,
  :func:`video_embeddings`.
- :mod:`.ijb`: IJB-B/C meta files + loose crops -> :class:`IJBSet`.
- :mod:`.lists`: MegaFace probe/distractor lists, Multi-PIE-style pose lists,
  :func:`write_embeddings_memmap`.

Every reader names the file (and line, key or offset) in its errors; every format has a
writer, used by the tests to build files in the genuine layout.
"""

from balanced_align.data.formats.ijb import IJBSet, read_ijb, write_ijb
from balanced_align.data.formats.insightface_bin import (
    BinPairs,
    EncodedImages,
    RestrictedUnpickler,
    UnsafePickleError,
    read_bin,
    safe_load,
    write_bin,
)
from balanced_align.data.formats.lfw import (
    LFWPairs,
    lfw_image_path,
    read_lfw_pairs,
    write_lfw_pairs,
)
from balanced_align.data.formats.lists import (
    MULTIPIE_CAMERA_YAW,
    IdentityList,
    read_distractor_list,
    read_pose_list,
    read_probe_list,
    write_distractor_list,
    write_embeddings_memmap,
    write_pose_list,
    write_probe_list,
)
from balanced_align.data.formats.recordio import (
    RECORDIO_MAGIC,
    IRHeader,
    RecordFile,
    RecordIOSource,
    frame_record,
    pack_payload,
    read_idx,
    unpack_payload,
    write_recordio,
)
from balanced_align.data.formats.video import (
    VideoPairs,
    natural_key,
    read_video_pairs,
    video_embeddings,
    write_video_pairs,
)

__all__ = [
    "MULTIPIE_CAMERA_YAW",
    "RECORDIO_MAGIC",
    "BinPairs",
    "EncodedImages",
    "IJBSet",
    "IRHeader",
    "IdentityList",
    "LFWPairs",
    "RecordFile",
    "RecordIOSource",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "VideoPairs",
    "frame_record",
    "lfw_image_path",
    "natural_key",
    "pack_payload",
    "read_bin",
    "read_distractor_list",
    "read_idx",
    "read_ijb",
    "read_lfw_pairs",
    "read_pose_list",
    "read_probe_list",
    "read_video_pairs",
    "safe_load",
    "unpack_payload",
    "video_embeddings",
    "write_bin",
    "write_distractor_list",
    "write_embeddings_memmap",
    "write_ijb",
    "write_lfw_pairs",
    "write_pose_list",
    "write_probe_list",
    "write_recordio",
    "write_video_pairs",
]
