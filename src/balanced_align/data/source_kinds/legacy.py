"""The data module's arguments as they were before per-source options (one flat list).

Checkpoints written then store ``datamodule_hyper_parameters`` with a ``dataset`` string and
every option beside it; :func:`from_flat_arguments` turns them into today's arguments (the
loader-level ones plus a ``source`` config), so such a checkpoint's data can be rebuilt
(``report --faces``). The same seed gives the same data.
"""

from __future__ import annotations

from collections.abc import Mapping

#: the loader-level options of :class:`~balanced_align.data.datamodule.FaceDataModule`
LOADER_KEYS = (
    "image_size",
    "seed",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "augment",
    "jitter",
    "on_bad_sample",
    "check_images",
)
_SYNTH_EVALUATION = (
    "val_identities",
    "test_identities",
    "eval_images_per_identity",
    "val_distractor_identities",
    "test_distractor_identities",
    "eval_distractor_images",
    "eval_yaw_range",
    "val_num_pairs",
    "test_num_pairs",
    "synth_knobs",
)
_TREE = ("root", "landmarks", "landmark_convention", "schema")
#: per kind: the flat name of each option (new name → old name)
_FLAT_NAMES: dict[str, dict[str, str]] = {
    "synthfaces": {
        k: k for k in ("num_train_identities", "train_images_per_identity", *_SYNTH_EVALUATION)
    },
    "folder": {
        k: k
        for k in (
            *_TREE,
            "val_fraction_identities",
            "test_fraction_identities",
            "distractor_fraction",
            "val_num_pairs",
            "test_num_pairs",
            "min_images_per_identity",
        )
    },
    "lfw": {
        **{k: k for k in (*_TREE, "distractor_fraction", "min_images_per_identity")},
        "pairs": "lfw_pairs",  # the three options renamed (report.tables.equivalent_keys too)
        "test_set": "lfw_test_set",
        "val_set": "lfw_val_set",
    },
    "shards": {"shards": "shards", "shuffle_buffer": "shuffle_buffer"},
}


def from_flat_arguments(flat: Mapping) -> dict:
    """Today's ``FaceDataModule`` keyword arguments from the flat ones (``dataset=…``).

    Options the flat list held but the kind does not use are dropped; an option the flat
    list lacks keeps the kind's default.
    """
    flat = dict(flat)
    kind = flat.get("dataset", "synthfaces")
    if kind not in _FLAT_NAMES:
        raise ValueError(f"dataset must be one of {sorted(_FLAT_NAMES)}, got {kind!r}")
    arguments = {key: flat[key] for key in LOADER_KEYS if key in flat}
    source = {"kind": kind}
    source.update({new: flat[old] for new, old in _FLAT_NAMES[kind].items() if old in flat})
    if kind == "shards":
        if flat.get("root") is None:
            names = {k: k for k in _SYNTH_EVALUATION}
            evaluation = {"kind": "synthfaces"}
        else:
            names = {
                k: k for k in (*_TREE, "distractor_fraction", "val_num_pairs", "test_num_pairs")
            }
            evaluation = {"kind": "folder_halves"}
        evaluation.update({new: flat[old] for new, old in names.items() if old in flat})
        source["evaluation"] = evaluation
    arguments["source"] = source
    return arguments
