"""LFW held-out-set protocol: person-disjoint split, balanced folds, config, a tiny run."""

import json
from dataclasses import replace

import numpy as np
import pytest

from balanced_align.data import FaceDataModule
from balanced_align.data.formats.lfw import read_lfw_pairs
from balanced_align.data.lfw_protocol import balanced_folds, held_out_split
from balanced_align.data.source_kinds import LFWSource
from balanced_align.data.sources import ImageFolderSource
from balanced_align.evaluation.verification import contiguous_folds
from tests.data.lfw_tree import PER_PERSON, SET_PEOPLE, UNPAIRED, write_lfw_tree
from tests.training_helpers import TINY, compose_train


@pytest.fixture
def lfw_tree(tmp_path):
    return write_lfw_tree(tmp_path / "lfw")


def _names(source, items, rows):
    subset = items.parts[0]
    return [source.classes[source.labels[subset.indices[int(r)]]] for r in rows]


@pytest.mark.parametrize("test_set", [1, 2])
def test_held_out_set_is_person_disjoint_from_training_and_validation(lfw_tree, test_set):
    images, table, pairs_path = lfw_tree
    source = ImageFolderSource(images, landmarks=table)
    split = held_out_split(source, pairs_path, test_set=test_set)
    train = {source.classes[i] for i in split.train_identities}
    val_set = 3 - test_set
    assert split.val_set == val_set
    assert train == set(UNPAIRED)  # everyone in neither set's pairs, nobody else
    for (items, protocol), people in (
        (split.test, SET_PEOPLE[test_set - 1]),
        (split.val, SET_PEOPLE[val_set - 1]),
    ):
        everyone = set(_names(source, items, range(len(items))))
        assert everyone == set(people) and not everyone & train
        assert len(items) == len(people) * PER_PERSON  # every image of the set's people
        # rank-1 on a folder split of those people: probes and distractors disjoint
        probes = set(_names(source, items, protocol.probe_indices))
        distractors = set(_names(source, items, protocol.distractor_indices))
        assert probes and distractors and not probes & distractors


def test_test_pairs_are_the_files_pairs_of_that_set(lfw_tree):
    images, table, pairs_path = lfw_tree
    source = ImageFolderSource(images, landmarks=table)
    items, protocol = held_out_split(source, pairs_path, test_set=2).test
    pairs = read_lfw_pairs(pairs_path, images)
    file_rows = np.flatnonzero(pairs.folds == 1)
    subset = items.parts[0]
    for side, ours in (("pairs_a", protocol.pairs_a), ("pairs_b", protocol.pairs_b)):
        expected = [pairs.paths[i].relative_to(images).as_posix() for i in getattr(pairs, side)]
        got = [source.paths[subset.indices[r]] for r in ours]
        assert got == [expected[i] for i in file_rows]
    assert np.array_equal(protocol.issame, pairs.issame[file_rows])
    names = np.array(_names(source, items, range(len(items))))
    assert np.array_equal(names[protocol.pairs_a] == names[protocol.pairs_b], protocol.issame)


def test_folds_are_balanced_where_contiguous_folds_are_one_sided():
    issame = np.repeat([True, False], 300)  # one LFW set: 300 matched, then 300 mismatched
    folds = balanced_folds(issame, 10)
    for f in range(10):
        assert (issame[folds == f]).sum() == 30 and (~issame[folds == f]).sum() == 30
    contiguous = contiguous_folds(600, 10)
    assert {issame[contiguous == f].mean() for f in range(10)} == {0.0, 1.0}
    # odd counts: every fold within one pair of the others, per class
    ragged = balanced_folds(np.array([True] * 23 + [False] * 21), 4)
    for flag in (True, False):
        sizes = np.bincount(ragged[np.array([True] * 23 + [False] * 21) == flag])
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == (23 if flag else 21)


def test_a_test_set_that_does_not_exist_or_equals_validation_is_refused(lfw_tree):
    images, table, pairs_path = lfw_tree
    source = ImageFolderSource(images, landmarks=table)
    with pytest.raises(ValueError, match=r"LFW set 3 does not exist .*sets 1\.\.2"):
        held_out_split(source, pairs_path, test_set=3)
    with pytest.raises(ValueError, match=r"val_set=1 equals data\.source\.test_set"):
        held_out_split(source, pairs_path, test_set=1, val_set=1)


def test_min_images_per_identity_leaves_small_identities_out_of_training(lfw_tree):
    images, _, pairs_path = lfw_tree
    (images / UNPAIRED[0] / f"{UNPAIRED[0]}_0002.jpg").unlink()  # 3 images left
    source = LFWSource(root=str(images), pairs=str(pairs_path), landmarks=None, test_set=1)
    every = FaceDataModule(source, num_workers=0)
    kept = FaceDataModule(replace(source, min_images_per_identity=PER_PERSON), num_workers=0)
    assert every.num_classes == len(UNPAIRED)
    assert kept.num_classes == len(UNPAIRED) - 1
    assert len(kept.train_records) == (len(UNPAIRED) - 1) * PER_PERSON
    with pytest.raises(ValueError, match=r"data\.source\.min_images_per_identity: must be >= 1"):
        replace(source, min_images_per_identity=0)


def test_experiment_lfw_composes_without_the_shared_data(monkeypatch, tmp_path):
    monkeypatch.setenv("LFW_DEV", str(tmp_path / "nowhere"))
    cfg = compose_train(["experiment=lfw", "data.source.test_set=4"])
    assert cfg.data.source._target_.endswith(".LFWSource") and cfg.data.source.test_set == 4
    assert cfg.data.source.root == str(tmp_path / "nowhere" / "images")
    assert cfg.data.source.pairs == str(tmp_path / "nowhere" / "pairs.txt")
    assert cfg.callbacks.model_checkpoint.monitor == "val/verif_acc"
    monkeypatch.delenv("LFW_DEV")
    # without $LFW_DEV: the shared folder beside the repository (CI's copy)
    assert compose_train(["experiment=lfw"]).data.source.root.endswith("/data/lfw_dev/images")


def test_tiny_lfw_run_end_to_end(lfw_tree, monkeypatch, tmp_path):
    from balanced_align.training import run

    images, _, _ = lfw_tree
    monkeypatch.setenv("LFW_DEV", str(images.parent))
    overrides = [
        *TINY[:5],
        "experiment=lfw",
        "data.source.test_set=2",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "figures=false",
        *TINY[-6:],
    ]
    out = tmp_path / "run"
    run(compose_train(overrides, output_dir=out))
    results = json.loads((out / "results.json").read_text())
    for split in ("val", "test"):
        assert 0.0 <= results[split]["verif_acc"] <= 1.0 and 0.0 <= results[split]["rank1"] <= 1.0
    assert results["config"]["data.source.test_set"] == 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_without_a_test_set_each_seed_holds_out_its_own_set(lfw_tree, seed):
    images, table, pairs_path = lfw_tree
    source = ImageFolderSource(images, landmarks=table)
    split = held_out_split(source, pairs_path, test_set=None, seed=seed)
    assert (split.test_set, split.val_set) == ((1, 2) if seed % 2 == 0 else (2, 1))
    test_people = set(_names(source, split.test[0], range(len(split.test[0]))))
    assert test_people == set(SET_PEOPLE[split.test_set - 1])


@pytest.mark.parametrize(
    ("experiment", "swept"),
    [
        ("lfw_lambda_sweep", {"loss.lambda": "0,1,3,5,7", "seed": "0,1,2"}),
        ("lfw_methods_input", {"align": "none,affine2d,fullalign", "seed": "0,1,2"}),
        ("lfw_input_vs_fmap", {"align.location": "input,fmap", "seed": "0,1,2"}),
    ],
)
def test_the_real_photograph_study_sweeps_pin_the_studys_settings(experiment, swept):
    """The §4 sweeps reproduce docs/results.md's study whatever the recipe (experiment=lfw)
    becomes: 6 epochs, weight decay 5e-4, CosFace s = 30, m = 0.2, 5 % warm-up."""
    cfg = compose_train([f"experiment={experiment}"], with_hydra=True)
    assert dict(cfg.hydra.sweeper.params) == swept
    source = cfg.data.source
    assert source._target_.endswith(".LFWSource") and source.test_set is None  # one per seed
    assert source.min_images_per_identity == 2 and cfg.data.on_bad_sample == "skip"
    assert cfg.trainer.max_epochs == 6
    assert (cfg.loss.head, cfg.loss.scale, cfg.loss.margin) == ("cosface", 30.0, 0.2)
    assert (cfg.optim.weight_decay, cfg.optim.warmup_fraction) == (5e-4, 0.05)
    assert cfg.optim.lr == 0.2 and cfg.optim.milestones == compose_train([]).optim.milestones


def test_the_study_base_and_its_sweeps_align_as_the_study_ran():
    study = compose_train(["experiment=lfw_study"])
    assert (study.align.method, study.align.location, study.loss["lambda"]) == (
        "affine2d",
        "input",
        0.0,
    )
    for experiment, method, location in [
        ("lfw_lambda_sweep", "tps", "fmap"),
        ("lfw_input_vs_fmap", "tps", "fmap"),  # the sweep sets align.location
        ("lfw_methods_input", "affine2d", "input"),  # the sweep sets align
    ]:
        cfg = compose_train([f"experiment={experiment}"])
        assert (cfg.align.method, cfg.align.location) == (method, location), experiment
    swept = compose_train(["experiment=lfw_methods_input", "align=none"])
    assert swept.align.method == "none"  # the command line (the sweeper) beats the base
