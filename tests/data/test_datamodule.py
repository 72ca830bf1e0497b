"""FaceDataModule: batch layout, disjoint identities, worker-independent evaluation, T_fix,
source options named in errors."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from balanced_align.data.datamodule import FaceDataModule, collate_samples
from balanced_align.data.schema import LMK84
from balanced_align.data.source_kinds import (
    FolderSource,
    LFWSource,
    ShardSource,
    SynthFacesEvaluation,
    SynthFacesSource,
)
from balanced_align.data.validation import DataConfigurationError
from tests.data_paths import ASSET_ATT as ATT

SOURCE = SynthFacesSource(
    num_train_identities=6,
    train_images_per_identity=4,
    val_identities=3,
    test_identities=3,
    eval_images_per_identity=4,
    val_distractor_identities=2,
    test_distractor_identities=2,
    eval_distractor_images=1,
    val_num_pairs=20,
    test_num_pairs=20,
)
LOADER = dict(image_size=32, seed=1, batch_size=8, num_workers=0)
#: FaceDataModule(**SYNTH): the tiny SynthFaces data module other tests share
SYNTH = dict(source=SOURCE, **LOADER)


def synth(source=SOURCE, **loader) -> FaceDataModule:
    return FaceDataModule(source, **{**LOADER, **loader})


@pytest.fixture(scope="module")
def synth_dm():
    dm = synth()
    dm.setup("fit")
    return dm


def _batches(loader):
    return list(loader)


def test_train_batch_has_the_documented_layout(synth_dm):
    batch = next(iter(synth_dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert batch["landmarks"].shape == (8, 84, 2) and batch["landmarks"].dtype == torch.float32
    assert batch["has_landmarks"].all()
    assert batch["label"].dtype == torch.int64 and batch["index"].dtype == torch.int64
    assert ((batch["label"] >= 0) & (batch["label"] < synth_dm.num_classes)).all()
    assert batch["yaw"].shape == (8,)
    assert synth_dm.num_classes == 6 and synth_dm.schema is LMK84 and synth_dm.has_landmarks
    loader = synth_dm.train_dataloader()
    assert loader.pin_memory == torch.cuda.is_available()
    assert len(loader) == 24 // 8


def _identities(records, rows=None):
    rows = range(len(records)) if rows is None else rows
    return {records[int(i)].meta["identity"] for i in rows}


def test_train_val_test_identities_are_disjoint(synth_dm):
    k = SOURCE.train_images_per_identity
    train = _identities(synth_dm.train_records, range(0, len(synth_dm.train_records), k))
    val = _identities(synth_dm.evaluation_items("val"))
    test = _identities(synth_dm.evaluation_items("test"))
    assert len(train) == 6 and len(val) == 5 and len(test) == 5
    assert not train & val and not train & test and not val & test
    for split, protocol in (("val", synth_dm.val_protocol), ("test", synth_dm.test_protocol)):
        protocol.validate(len(synth_dm.evaluation_items(split)))


def test_evaluation_batches_do_not_depend_on_worker_count(synth_dm):
    two = synth(num_workers=2)
    for split in ("val", "test"):
        ref = _batches(getattr(synth_dm, f"{split}_dataloader")())
        got = _batches(getattr(two, f"{split}_dataloader")())
        assert len(ref) == len(got)
        for x, y in zip(ref, got):
            assert x.keys() == y.keys()
            for key in x:
                torch.testing.assert_close(x[key], y[key], equal_nan=True, rtol=0, atol=0)
    indices = torch.cat([b["index"] for b in ref])
    torch.testing.assert_close(indices, torch.arange(len(synth_dm.test_items)))


def test_training_batches_are_reproducible_from_the_seed(synth_dm):
    for workers in (0, 2):
        runs = []
        for seed in (1, 1, 2):
            dm = synth(seed=seed, num_workers=workers)
            runs.append(next(iter(dm.train_dataloader())))
        torch.testing.assert_close(runs[0]["image"], runs[1]["image"])
        torch.testing.assert_close(runs[0]["landmarks"], runs[1]["landmarks"])
        assert not torch.equal(runs[0]["image"], runs[2]["image"])


def test_mean_frontal_landmarks_matches_a_direct_average(synth_dm):
    records = synth_dm.train_records
    chosen = [records[i] for i in range(len(records)) if abs(records[i].yaw) < 15]
    assert chosen, "no frontal training face to average"
    expected = np.mean(
        [2.0 * r.landmarks / np.array([r.image.shape[1], r.image.shape[0]]) - 1.0 for r in chosen],
        axis=0,
    )
    got = synth_dm.mean_frontal_landmarks(max_abs_yaw=15, max_images=10_000)
    assert got.shape == (84, 2) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    one = synth_dm.mean_frontal_landmarks(max_images=1)
    torch.testing.assert_close(one, synth_dm.mean_frontal_landmarks(max_images=1))


def test_folder_datamodule_on_att_faces():
    source = FolderSource(
        root=str(ATT),
        val_fraction_identities=0.25,
        test_fraction_identities=0.25,
        val_num_pairs=100,
        test_num_pairs=100,
    )
    dm = FaceDataModule(source, image_size=64, batch_size=16, num_workers=0)
    assert dm.num_classes == 6 and not dm.has_landmarks and dm.schema is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 3, 64, 64) and not batch["has_landmarks"].any()
    train = {dm.train_records[i].meta["identity"] for i in range(len(dm.train_records))}
    val = _identities(dm.evaluation_items("val"))
    test = _identities(dm.evaluation_items("test"))
    assert (len(train), len(val), len(test)) == (6, 3, 3)
    assert not train & val and not train & test and not val & test
    with pytest.raises(DataConfigurationError, match=r"ImageFolderSource\(.*has no landmarks"):
        dm.mean_frontal_landmarks()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"data\.source\.pairs: needs LFW's pairs\.txt"):
        LFWSource(root=str(ATT))
    with pytest.raises(ValueError, match=r"data\.source\.root: .*\(FolderSource\)"):
        FolderSource()
    with pytest.raises(ValueError, match=r"data\.source\.shards"):
        ShardSource()
    with pytest.raises(ValueError, match=r"val_fraction_identities=0\.05.*>= 3"):
        FaceDataModule(FolderSource(root=str(ATT), val_fraction_identities=0.05)).setup()
    with pytest.raises(ValueError, match=r"data\.batch_size must be positive"):
        synth(batch_size=0)
    with pytest.raises(ValueError, match="keys"):
        collate_samples([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    # SynthFaces knobs are checked on construction, before any rendering
    with pytest.raises(
        ValueError, match=r"data\.source\.synth_knobs: unknown SynthFaces knob.*lmk_noise"
    ):
        replace(SOURCE, synth_knobs={"lmk_noise": 1.0})
    with pytest.raises(ValueError, match=r"data\.source\.synth_knobs: landmark_noise"):
        replace(SOURCE, synth_knobs={"landmark_noise": -1.0})
    with pytest.raises(ValueError, match=r"data\.source\.evaluation\.synth_knobs: landmark_n"):
        SynthFacesEvaluation(synth_knobs={"landmark_noise": -1.0})


def test_a_source_config_names_its_unknown_kind_or_option():
    """The plain form a checkpoint stores: {"kind": …, option: value}."""
    config = SOURCE.to_config()
    assert config["kind"] == "synthfaces" and config["val_num_pairs"] == 20
    assert FaceDataModule(config).source == SOURCE
    assert synth().hparams["source"] == config
    with pytest.raises(ValueError, match=r"data\.source\.kind must be one of .*'synthfaces'"):
        FaceDataModule({**config, "kind": "synthface"})
    with pytest.raises(ValueError, match=r"data\.source\.rooot: not an option of FolderSource"):
        FaceDataModule({"kind": "folder", "rooot": str(ATT)})
    shards = {"kind": "shards", "shards": "s", "evaluation": {"kind": "folder_halves"}}
    with pytest.raises(ValueError, match=r"data\.source\.evaluation\.root: "):
        FaceDataModule(shards)


def test_landmark_noise_reaches_training_and_evaluation_labels():
    """The knob perturbs the labels of every split (training targets and the landmarks ANME is
    measured against), never the images."""
    exact = synth()
    noisy = synth(replace(SOURCE, synth_knobs={"landmark_noise": 2.0}))
    for dm in (exact, noisy):
        dm.setup("fit")
    for split in ("train_records", "val_items"):
        a, b = getattr(exact, split)[0], getattr(noisy, split)[0]
        np.testing.assert_array_equal(a.image, b.image)
        assert not np.allclose(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(b.meta["landmarks_exact"], a.landmarks)
