"""EmbeddingCollector: ordered unique rows, in one process and gathered over 2 gloo ranks."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from balanced_align.evaluation import EmbeddingCollector

EXTRAS = ("labels", "yaw", "aligned_landmarks", "valid")
N_ITEMS = 11


def _item_rows(idx):
    """Deterministic per-item rows: embedding, label, yaw, landmarks as functions of the index."""
    idx = torch.as_tensor(idx)
    emb = torch.stack([idx * 1.0, idx**2 * 0.5, -idx * 2.0], 1)
    return emb, {
        "labels": idx // 3,
        "yaw": idx * 7.5 - 40.0,
        "aligned_landmarks": idx[:, None, None] * torch.ones(1, 5, 2)
        + torch.arange(10.0).view(5, 2),
        "valid": idx % 4 != 1,  # bool states must gather too
    }


def _feed(collector, order, batch=3):
    for start in range(0, len(order), batch):
        idx = torch.as_tensor(order[start : start + batch])
        emb, extras = _item_rows(idx)
        collector.update(idx, emb, **extras)


def _expected():
    idx = torch.arange(N_ITEMS)
    emb, extras = _item_rows(idx)
    return {"indices": idx, "embeddings": emb, **extras}


def _assert_rows_equal(out, ref):
    assert set(out) == set(ref)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)


def test_shuffled_and_duplicated_indices_give_ordered_unique_rows():
    order = [7, 3, 10, 0, 3, 1, 2, 9, 8, 4, 5, 6, 7, 10]
    collector = EmbeddingCollector(extras=EXTRAS, num_items=N_ITEMS)
    _feed(collector, order)
    _assert_rows_equal(collector.compute(), _expected())


def test_calling_the_collector_only_updates():
    collector = EmbeddingCollector(extras=EXTRAS, num_items=N_ITEMS)
    for start in range(0, N_ITEMS, 4):  # a per-batch compute would fail the num_items check
        idx = torch.arange(start, min(start + 4, N_ITEMS))
        emb, extras = _item_rows(idx)
        assert collector(idx, emb, **extras) is None
    _assert_rows_equal(collector.compute(), _expected())
    collector.reset()
    _feed(collector, list(range(N_ITEMS)))
    _assert_rows_equal(collector.compute(), _expected())


def test_first_occurrence_wins_and_conflicting_duplicates_are_caught():
    collector = EmbeddingCollector(extras=("labels",), check_duplicates=False)
    collector.update(
        torch.tensor([4, 2]), torch.tensor([[1.0], [2.0]]), labels=torch.tensor([0, 1])
    )
    collector.update(torch.tensor([2]), torch.tensor([[9.0]]), labels=torch.tensor([1]))
    out = collector.compute()
    assert out["indices"].tolist() == [2, 4] and out["embeddings"].flatten().tolist() == [2.0, 1.0]

    checked = EmbeddingCollector(extras=("labels",))
    checked.update(torch.tensor([4, 2]), torch.tensor([[1.0], [2.0]]), labels=torch.tensor([0, 1]))
    checked.update(torch.tensor([2]), torch.tensor([[2.0]]), labels=torch.tensor([3]))
    with pytest.raises(ValueError, match="index 2 was collected twice with different labels"):
        checked.compute()


def test_bad_use_raises_clear_errors():
    with pytest.raises(ValueError, match="reserved"):
        EmbeddingCollector(extras=("embeddings",))
    collector = EmbeddingCollector(extras=("labels",), num_items=5)
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="before any update"):
        collector.compute()
    with pytest.raises(ValueError, match="missing \\['labels'\\]"):
        collector.update(torch.tensor([0]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="unknown \\['yaw'\\]"):
        collector.update(
            torch.tensor([0]), torch.zeros(1, 3), labels=torch.zeros(1), yaw=torch.zeros(1)
        )
    with pytest.raises(ValueError, match="embeddings"):
        collector.update(torch.tensor([0, 1]), torch.zeros(1, 3), labels=torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        collector.update(torch.tensor([0, 1]), torch.zeros(2, 3), labels=torch.zeros(3))
    collector.update(torch.tensor([0, 1, 3]), torch.zeros(3, 3), labels=torch.zeros(3))
    with pytest.raises(ValueError, match=r"expected indices 0\.\.4"):
        collector.compute()


def _ddp_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        # DistributedSampler pads 11 items to 12 with a repeated sample, shuffled per rank
        order = list(DistributedSampler(range(N_ITEMS), num_replicas=world_size, rank=rank, seed=3))
        collector = EmbeddingCollector(extras=EXTRAS, num_items=N_ITEMS)
        _feed(collector, order, batch=2)
        torch.save({"order": order, "out": collector.compute()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_gather_the_single_process_result(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    orders = [r["order"] for r in ranks]
    assert len(orders[0]) == len(orders[1]) == 6
    assert set(orders[0]) & set(orders[1])  # padding really duplicated a sample
    assert set(orders[0]) | set(orders[1]) == set(range(N_ITEMS))

    single = EmbeddingCollector(extras=EXTRAS, num_items=N_ITEMS)
    _feed(single, np.concatenate(orders).tolist())
    ref = single.compute()
    _assert_rows_equal(ref, _expected())
    for r in ranks:
        _assert_rows_equal(r["out"], ref)
