"""FaceDataModule in shards mode: streams tar shards, evaluates on SynthFaces or a folder."""

import torch

from balanced_align.data.datamodule import FaceDataModule
from balanced_align.data.shards import ShardLoader, convert_to_shards
from balanced_align.data.source_kinds import (
    FolderHalvesEvaluation,
    ShardSource,
    SynthFacesEvaluation,
)
from balanced_align.data.synthfaces import SynthFaces
from tests.data_paths import ASSET_ATT as ATT

EVALUATION = SynthFacesEvaluation(
    val_identities=3,
    test_identities=3,
    eval_images_per_identity=4,
    val_distractor_identities=2,
    test_distractor_identities=2,
    val_num_pairs=20,
    test_num_pairs=20,
)


def _dm(tmp_path, evaluation=EVALUATION, **kw):
    convert_to_shards(SynthFaces(6, 5, image_size=32, seed=1), tmp_path / "s", samples_per_shard=7)
    source = ShardSource(shards=str(tmp_path / "s"), evaluation=evaluation)
    return FaceDataModule(
        source, **{**dict(image_size=32, seed=1, batch_size=8, num_workers=2), **kw}
    )


def test_shards_mode(tmp_path):
    dm = _dm(tmp_path)
    assert dm.num_classes == 6
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, ShardLoader)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    idx = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(idx) == list(range(30))
    assert batches[0]["image"].shape[1:] == (3, 32, 32) and batches[0]["landmarks"].shape[1:] == (
        84,
        2,
    )
    t = dm.mean_frontal_landmarks()
    assert t.shape == (84, 2)
    assert len(dm.val_dataloader()) > 0 and dm.schema.name == "lmk84"
    ev = dm.evaluation_items("val")
    assert min(ev[i].meta["identity"] for i in range(len(ev))) >= 6


def test_shards_mode_folder_eval(tmp_path):
    dm = _dm(tmp_path, FolderHalvesEvaluation(root=str(ATT)))
    dm.setup("fit")
    assert len(dm.evaluation_items("val")) + len(dm.evaluation_items("test")) == 120


def _images_by_index(loader, epoch):
    loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
    return {int(i): image for b in loader for i, image in zip(b["index"], b["image"])}


def test_augmentation_is_keyed_by_seed_epoch_and_sample_not_by_reader(tmp_path):
    """Epoch 1 read after epoch 0 by the main process equals, sample by sample, epoch 1
    read first by 2 workers (other batches, other readers): a resumed run's augmentations."""
    running = _dm(tmp_path / "a", num_workers=0)
    running.setup("fit")
    loader = running.train_dataloader()
    epoch0, epoch1 = _images_by_index(loader, 0), _images_by_index(loader, 1)
    fresh = _dm(tmp_path / "b", num_workers=2)  # the same shards, written again
    fresh.setup("fit")
    resumed = _images_by_index(fresh.train_dataloader(), 1)
    assert sorted(resumed) == sorted(epoch1) == list(range(30))
    assert all(torch.equal(resumed[i], epoch1[i]) for i in range(30))
    assert not any(torch.equal(epoch0[i], epoch1[i]) for i in range(30))
