"""The data module's output is pinned: records, splits, protocols and first batches, per source.

Each case composes ``conf/train.yaml`` (so the ``conf/data`` files are covered too),
instantiates ``cfg.data`` and hashes what a run sees: the number of classes, the training
labels, the val / test labels, roles and every :class:`EvaluationProtocol` array, the first
training, val and test batches (every tensor, bit for bit), T_fix from a few faces, the schema
and the landmark flag.

``EXPECTED`` was recorded from the data module *before* per-source options were split out
(``FaceDataModule(dataset=…)`` with 33 flat arguments, commit f655f69): the refactor had to
give the same data for the same seed, bit for bit. Only the override spellings of ``CASES``
changed with it (``data.root`` → ``data.source.root`` …). A digest depends on the pinned
packages (OpenCV renders and decodes the images): after an upgrade that changes pixels,
check the data by other means, then record the new digests (``python -m
tests.data.test_datamodule_digest`` prints them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tests.data_paths import ASSET_ATT
from tests.training_helpers import compose_train

#: loader options every case shares: the main process reads, nothing is pinned
LOADER = ["data.num_workers=0", "data.persistent_workers=false"]


def _synth_default(tmp_path: Path) -> list[str]:
    return []  # conf/data/synthfaces.yaml as it stands (64², 160 identities × 32 images)


def _synth_noisy(tmp_path: Path) -> list[str]:
    return [
        "seed=3",
        "model.input_size=32",
        "data.source.num_train_identities=5",
        "data.source.train_images_per_identity=3",
        "data.source.val_identities=3",
        "data.source.test_identities=3",
        "data.source.eval_images_per_identity=4",
        "data.source.val_distractor_identities=2",
        "data.source.test_distractor_identities=2",
        "data.source.val_num_pairs=20",
        "data.source.test_num_pairs=20",
        "data.source.eval_yaw_range=[-30,30]",
        "+data.source.synth_knobs.landmark_noise=2.0",
        "data.batch_size=4",
    ]


def _folder(tmp_path: Path) -> list[str]:
    return [
        "data=folder",
        f"data.source.root={ASSET_ATT}",
        "data.source.val_fraction_identities=0.25",
        "data.source.test_fraction_identities=0.25",
        "model.input_size=48",
        "data.batch_size=8",
    ]


def _lfw(tmp_path: Path) -> list[str]:
    from tests.data.lfw_tree import write_lfw_tree

    write_lfw_tree(tmp_path / "lfw")
    os.environ["LFW_DEV"] = str(tmp_path / "lfw")  # restored by the test
    return [
        "experiment=lfw",
        "data.source.test_set=2",
        "data.source.min_images_per_identity=2",
        "model.input_size=48",
        "data.batch_size=8",
    ]


def _lfw_per_seed(tmp_path: Path) -> list[str]:
    return [*_lfw(tmp_path), "data.source.test_set=null", "seed=1"]


def _shards(tmp_path: Path, evaluation: list[str] = ()) -> list[str]:
    from balanced_align.data.shards import convert_to_shards
    from balanced_align.data.synthfaces import SynthFaces

    convert_to_shards(SynthFaces(6, 5, image_size=32, seed=1), tmp_path / "s", samples_per_shard=7)
    return [
        "data=shards",
        f"data.source.shards={tmp_path / 's'}",
        "data.source.shuffle_buffer=6",
        "model.input_size=32",
        "data.batch_size=8",
        *evaluation,
    ]


def _shards_synth_eval(tmp_path: Path) -> list[str]:
    return _shards(
        tmp_path,
        [
            "data.source.evaluation.val_identities=3",
            "data.source.evaluation.test_identities=3",
            "data.source.evaluation.eval_images_per_identity=4",
            "data.source.evaluation.val_distractor_identities=2",
            "data.source.evaluation.test_distractor_identities=2",
            "data.source.evaluation.val_num_pairs=20",
            "data.source.evaluation.test_num_pairs=20",
        ],
    )


def _shards_folder_eval(tmp_path: Path) -> list[str]:
    return _shards(
        tmp_path,
        [
            "data/source/evaluation=folder_halves",
            f"data.source.evaluation.root={ASSET_ATT}",
        ],
    )


CASES = {
    "synth_default": _synth_default,
    "synth_noisy": _synth_noisy,
    "folder": _folder,
    "lfw": _lfw,
    "lfw_per_seed": _lfw_per_seed,
    "shards_synth_eval": _shards_synth_eval,
    "shards_folder_eval": _shards_folder_eval,
}


class _Digest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, name: str, value) -> None:
        self._hash.update(name.encode())
        if value is None:
            self._hash.update(b"<None>")
        elif torch.is_tensor(value):
            self.add(name, value.detach().cpu().numpy())
        elif isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            self._hash.update(f"{value.dtype.str}{value.shape}".encode())
            self._hash.update(value.tobytes() if value.dtype != object else repr(value).encode())
        else:
            self._hash.update(repr(value).encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:16]


def _add_batch(digest: _Digest, name: str, batch: dict) -> None:
    for key in sorted(batch):
        digest.add(f"{name}.{key}", batch[key])


def datamodule_digest(datamodule) -> str:
    """A short hash of everything a run reads from ``datamodule`` (see the module docstring)."""
    digest = _Digest()
    datamodule.setup("fit")
    digest.add("num_classes", datamodule.num_classes)
    records = datamodule.train_records
    labels = getattr(records, "labels", None)
    digest.add("train_labels", None if labels is None else np.asarray(labels))
    for split in ("val", "test"):
        items = datamodule.evaluation_items(split)
        digest.add(f"{split}.labels", items.labels)
        digest.add(f"{split}.roles", items.roles.astype(str))
        protocol = getattr(datamodule, f"{split}_protocol")
        for field in dataclasses.fields(protocol):
            value = getattr(protocol, field.name)
            digest.add(f"{split}.protocol.{field.name}", value)
    digest.add("schema", None if datamodule.schema is None else datamodule.schema.name)
    digest.add("has_landmarks", datamodule.has_landmarks)
    loader = datamodule.train_dataloader()
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(0)
    batches = iter(loader)
    for step in range(2):
        _add_batch(digest, f"train{step}", next(batches))
    _add_batch(digest, "val0", next(iter(datamodule.val_dataloader())))
    _add_batch(digest, "test0", next(iter(datamodule.test_dataloader())))
    if datamodule.has_landmarks:
        digest.add("t_fix", datamodule.mean_frontal_landmarks(max_images=8))
    return digest.hexdigest()


def case_digest(name: str, tmp_path: Path) -> str:
    overrides = CASES[name](tmp_path)
    cfg = compose_train([*overrides, *LOADER])
    return datamodule_digest(instantiate(cfg.data))


#: recorded from the flat-argument data module (commit f655f69), see the module docstring
EXPECTED = {
    "folder": "e210462f03a0be9d",
    "lfw": "80232dbbdb5a8103",
    "lfw_per_seed": "90ad0f2bd0a87fde",
    "shards_folder_eval": "0cfd1861ec4d1724",
    "shards_synth_eval": "75d436937659463b",
    "synth_default": "35a6fd000d7070bd",
    "synth_noisy": "ceb9e3525e3d7d63",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_data_matches_the_recorded_digest(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LFW_DEV", str(tmp_path / "lfw"))  # the lfw cases set it, this restores
    assert case_digest(name, tmp_path) == EXPECTED[name]


def _flat(tmp_path: Path, name: str) -> dict:
    """Case ``name`` as the former flat arguments (an old checkpoint's hyperparameters, with
    options of other kinds beside, as those held them)."""
    loader = dict(seed=0, num_workers=0, pin_memory=False, persistent_workers=False)
    unused = dict(num_train_identities=200, lfw_pairs=None, lfw_test_set=1, check_images=True)
    if name == "folder":
        args = dict(dataset="folder", root=str(ASSET_ATT), val_fraction_identities=0.25)
        args.update(test_fraction_identities=0.25, image_size=48, batch_size=8, shards=None)
    else:
        _shards(tmp_path)
        args = dict(dataset="shards", shards=str(tmp_path / "s"), shuffle_buffer=6)
        args.update(root=str(ASSET_ATT), landmarks=None, image_size=32, batch_size=8)
    return {**unused, **loader, **args}


@pytest.mark.parametrize("name", ["folder", "shards_folder_eval"])
def test_the_former_flat_arguments_give_the_recorded_data(name, tmp_path):
    """What ``report --faces`` rebuilds from a checkpoint written before ``data.source``."""
    from balanced_align.data import FaceDataModule

    datamodule = FaceDataModule.from_hyperparameters(_flat(tmp_path, name))
    assert datamodule_digest(datamodule) == EXPECTED[name]


if __name__ == "__main__":
    import tempfile

    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as folder:
            print(f"    {case!r}: {case_digest(case, Path(folder))!r},")
