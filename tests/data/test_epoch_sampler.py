"""Training order and augmentation are pure functions of (seed, epoch, index).

That is what makes a resumed run see the batches an uninterrupted one sees, with any number
of DataLoader workers (the end-to-end check is tests/training/test_resume.py, at 0 workers).
"""

import numpy as np
import pytest
import torch

from balanced_align.data.datamodule import FaceDataModule
from balanced_align.data.epoch_sampler import EpochSampler
from balanced_align.data.record import FaceRecord
from balanced_align.data.schema import LMK84
from balanced_align.data.transforms import FaceTransform
from tests.data.test_datamodule import SYNTH


def _keys(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    data = range(50)
    first, fresh = EpochSampler(data, seed=3), EpochSampler(data, seed=3)
    for epoch in (0, 1, 2):
        keys = _keys(first, epoch)
        assert {e for e, _ in keys} == {epoch}
        assert sorted(i for _, i in keys) == list(range(50))
    # a fresh sampler (a resumed run) told epoch 2 gives epoch 2's order, not epoch 0's
    assert _keys(fresh, 2) == _keys(first, 2)
    orders = [[i for _, i in _keys(first, e)] for e in (0, 1)]
    assert orders[0] != orders[1]
    assert _keys(EpochSampler(data, seed=4), 0) != _keys(EpochSampler(data, seed=3), 0)


def test_ranks_share_an_epoch_without_overlap():
    data = range(40)
    shares = [_keys(EpochSampler(data, seed=0, num_replicas=4, rank=r), 5) for r in range(4)]
    indices = [i for share in shares for _, i in share]
    assert sorted(indices) == list(range(40)) and {len(s) for s in shares} == {10}


def test_keyed_augmentation_ignores_history_and_worker_reseeding():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    record = FaceRecord(image, rng.uniform(4, 28, (84, 2)).astype(np.float32), 0)
    a, b = FaceTransform(True, 32, LMK84, seed=5), FaceTransform(True, 32, LMK84, seed=5)
    for _ in range(3):  # a has drawn other samples and been re-seeded like a worker
        a(record, index=9, epoch=0)
    a.reseed(1234)
    x, y = a(record, index=7, epoch=2), b(record, index=7, epoch=2)
    assert torch.equal(x["image"], y["image"]) and torch.equal(x["landmarks"], y["landmarks"])
    others = [b(record, index=7, epoch=3), b(record, index=8, epoch=2)]
    assert all(not torch.equal(o["image"], x["image"]) for o in others)
    seeded = FaceTransform(True, 32, LMK84, seed=6)(record, index=7, epoch=2)
    assert not torch.equal(seeded["image"], x["image"])
    with pytest.raises(ValueError, match="index >= 0"):
        b(record, index=-1, epoch=0)


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
    return list(loader)


def _assert_same_batches(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.keys() == y.keys()
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0, equal_nan=True)


def test_training_epoch_batches_do_not_depend_on_workers_or_on_earlier_epochs():
    """Epoch 1 from a loader that already ran epoch 0 (0 workers) equals epoch 1 from a fresh
    data module with 2 workers, persistent or not: what a resumed run on any machine sees."""
    running = FaceDataModule(**SYNTH).train_dataloader()
    epoch0, epoch1 = _epoch(running, 0), _epoch(running, 1)
    for persistent in (False, True):
        fresh = FaceDataModule(**{**SYNTH, "num_workers": 2, "persistent_workers": persistent})
        loader = fresh.train_dataloader()
        if persistent:  # the workers outlive epoch 0 and must still follow set_epoch
            _assert_same_batches(_epoch(loader, 0), epoch0)
        _assert_same_batches(_epoch(loader, 1), epoch1)
    assert not torch.equal(epoch0[0]["index"], epoch1[0]["index"])
    first = {int(i): img for b in epoch0 for i, img in zip(b["index"], b["image"])}
    second = {int(i): img for b in epoch1 for i, img in zip(b["index"], b["image"])}
    common = sorted(first.keys() & second.keys())
    assert common and not any(torch.equal(first[i], second[i]) for i in common)


def test_a_resumed_runs_first_iterator_follows_the_later_set_epoch():
    """Lightning creates a resumed run's first iterator, then calls set_epoch(e): with 2
    persistent workers the batches are still epoch e's."""
    running = FaceDataModule(**SYNTH).train_dataloader()
    _epoch(running, 0)
    epoch1 = _epoch(running, 1)
    resumed = FaceDataModule(**{**SYNTH, "num_workers": 2, "persistent_workers": True})
    loader = resumed.train_dataloader()
    iterator = iter(loader)  # while restoring: the sampler is still at epoch 0
    loader.sampler.set_epoch(1)
    _assert_same_batches(list(iterator), epoch1)
