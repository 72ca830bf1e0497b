"""Evaluation sets: deterministic, identity-disjoint, balanced, and valid protocols."""

import numpy as np
import pytest
import torch

from balanced_align.data.evaluation_sets import (
    build_folder_evaluation,
    build_synth_evaluation,
    make_verification_pairs,
    max_balanced_pairs,
)
from balanced_align.data.sources import ImageFolderSource
from balanced_align.evaluation.protocol import evaluate_protocol
from tests.data_paths import ASSET_ATT as ATT

SMALL = dict(
    num_identities=6,
    images_per_identity=4,
    num_distractor_identities=5,
    distractor_images=2,
    image_size=32,
    seed=3,
    identity_offset=100,
    num_pairs=40,
    yaw_range=(-60.0, 60.0),
)


def _protocol_arrays(protocol):
    return [
        protocol.pairs_a,
        protocol.pairs_b,
        protocol.issame,
        protocol.pair_folds,
        protocol.probe_indices,
        protocol.distractor_indices,
        protocol.gallery_indices,
        protocol.pose_probe_indices,
    ]


def _oracle_embeddings(labels, dim=64, seed=0):
    """Embeddings that identify the label exactly: one random direction per label."""
    directions = torch.randn(
        int(labels.max()) + 1, dim, generator=torch.Generator().manual_seed(seed)
    )
    return directions[torch.as_tensor(labels)]


def check_pairs(protocol, labels, num_pairs, num_folds=10):
    a, b, same = protocol.pairs_a, protocol.pairs_b, protocol.issame
    assert len(a) == num_pairs and same.sum() == num_pairs // 2
    np.testing.assert_array_equal(labels[a] == labels[b], same)
    assert (a != b).all()
    keys = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist())}
    assert len(keys) == num_pairs
    for fold in range(num_folds):
        in_fold = protocol.pair_folds == fold
        assert same[in_fold].sum() == (~same[in_fold]).sum() == num_pairs // (2 * num_folds)


@pytest.fixture(scope="module")
def synth_eval():
    return build_synth_evaluation(**SMALL)


def test_synth_evaluation_layout_and_disjoint_identities(synth_eval):
    items, protocol = synth_eval
    n, k, d, m = 6, 4, 5, 2
    assert len(items) == n * k + n + d * m
    protocol.validate(len(items))
    records = [items[i] for i in range(len(items))]
    identity = np.array([r.meta["identity"] for r in records])
    labels = np.array([r.label for r in records])
    np.testing.assert_array_equal(labels, items.labels)
    probe, gallery = protocol.probe_indices, protocol.gallery_indices
    distractor = protocol.distractor_indices
    assert set(identity[probe]) == set(identity[gallery]) == set(range(100, 106))
    assert set(identity[distractor]) == set(range(106, 111))
    # one frontal gallery image per probe identity, never one of the probe images
    assert sorted(labels[gallery].tolist()) == list(range(n))
    assert all(records[g].yaw == 0.0 for g in gallery)
    probe_images = {(r.meta["identity"], r.meta["image"]) for r in (records[i] for i in probe)}
    assert not probe_images & {
        (records[g].meta["identity"], records[g].meta["image"]) for g in gallery
    }
    yaws = np.array([records[i].yaw for i in protocol.pose_probe_indices])
    assert (np.abs(yaws) <= 60.0 + 1e-6).all() and np.std(yaws) > 5.0
    check_pairs(protocol, labels, 40)
    assert np.isin(protocol.pairs_a, probe).all() and np.isin(protocol.pairs_b, probe).all()


def test_synth_evaluation_is_deterministic_from_the_seed(synth_eval):
    items, protocol = synth_eval
    items2, protocol2 = build_synth_evaluation(**SMALL)
    for x, y in zip(_protocol_arrays(protocol), _protocol_arrays(protocol2)):
        np.testing.assert_array_equal(x, y)
    for i in (0, 7, len(items) - 1):
        np.testing.assert_array_equal(items[i].image, items2[i].image)
    other = build_synth_evaluation(**{**SMALL, "seed": 4})[1]
    assert not np.array_equal(other.pairs_a, protocol.pairs_a)


def test_synth_protocol_runs_and_an_oracle_scores_perfectly(synth_eval):
    items, protocol = synth_eval
    yaw = torch.tensor([items[i].yaw for i in range(len(items))])
    metrics = evaluate_protocol(protocol, _oracle_embeddings(items.labels), items.labels, yaw)
    assert metrics["verif_acc"] == 1.0 and metrics["rank1"] == 1.0
    assert any(key.startswith("rank1_yaw") for key in metrics)


def test_folder_evaluation_on_att_faces():
    source = ImageFolderSource(ATT)
    ids = np.arange(2, 12)
    items, protocol = build_folder_evaluation(source, num_pairs=200, seed=1, identities=ids)
    protocol.validate(len(items))
    assert len(items) == 100 and protocol.gallery_indices.size == 0
    assert protocol.pose_probe_indices.size == 0
    folders = np.array([items[i].meta["identity"] for i in range(len(items))])
    probe_folders = set(folders[protocol.probe_indices])
    distractor_folders = set(folders[protocol.distractor_indices])
    assert not probe_folders & distractor_folders
    assert probe_folders | distractor_folders == {source.classes[i] for i in ids}
    check_pairs(protocol, items.labels, 200)
    again = build_folder_evaluation(source, num_pairs=200, seed=1, identities=ids)[1]
    for x, y in zip(_protocol_arrays(protocol), _protocol_arrays(again)):
        np.testing.assert_array_equal(x, y)
    metrics = evaluate_protocol(protocol, _oracle_embeddings(items.labels), items.labels)
    assert metrics["verif_acc"] == 1.0 and metrics["rank1"] == 1.0


def test_pairs_refuse_impossible_requests():
    labels = np.repeat(np.arange(3), 2)  # only 3 same pairs exist
    with pytest.raises(ValueError, match="only 3 exist"):
        make_verification_pairs(np.arange(6), labels, 20, seed=0)
    with pytest.raises(ValueError, match="multiple"):
        make_verification_pairs(np.arange(6), labels, 30, seed=0)


def test_dense_and_sparse_pair_draws_cover_the_space():
    labels = np.repeat(np.arange(4), 3)  # 12 same pairs, 54 different pairs
    a, b, same, _ = make_verification_pairs(np.arange(12), labels, 20, seed=2, num_folds=1)
    assert same.sum() == 10 and len({(x, y) for x, y in zip(a, b)}) == 20
    assert (labels[a[same]] == labels[b[same]]).all()
    assert (labels[a[~same]] != labels[b[~same]]).all()


def test_folder_evaluation_caps_pairs_with_a_warning(caplog):
    source = ImageFolderSource(ATT)
    ids = [0, 1, 2, 3]  # 4 x 10 images: 180 same pairs at most -> 360 balanced pairs
    with caplog.at_level("WARNING", logger="balanced_align.data.evaluation_sets"):
        items, protocol = build_folder_evaluation(source, num_pairs=600, identities=ids)
    assert len(protocol.pairs_a) == 360 and "using 360 instead of num_pairs=600" in caplog.text
    check_pairs(protocol, items.labels, 360)
    with pytest.raises(ValueError, match="only 180 exist"):
        build_folder_evaluation(source, num_pairs=600, identities=ids, allow_fewer_pairs=False)


@pytest.mark.parametrize("sizes", [(2, 2, 2), (5, 1, 3, 2), (10, 10, 10, 10)])
def test_max_balanced_pairs_is_the_largest_drawable(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rows = np.arange(len(labels))
    best = max_balanced_pairs(labels, num_folds=2)
    if best:
        make_verification_pairs(rows, labels, best, seed=0, num_folds=2)
    with pytest.raises(ValueError):
        make_verification_pairs(rows, labels, best + 4, seed=0, num_folds=2)
