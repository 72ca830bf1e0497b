"""Partial FC against the full margin heads: one process, and 2 gloo ranks (spawned)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F

from balanced_align.models.heads import AMSoftmax, ArcFace, CosFace
from balanced_align.models.partial_fc import PartialFC, reshard, sample_centres, shard_bounds

FULL_HEADS = {"am": AMSoftmax, "cos": CosFace, "arc": ArcFace}
DIM, CLASSES = 6, 7
#: rows of each rank (unequal: the all-gather pads)
ROWS = (5, 3)


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rows = sum(ROWS)
    embeddings = torch.randn(rows, DIM, generator=gen, dtype=torch.float64).float()
    labels = torch.randint(0, CLASSES, (rows,), generator=gen)
    weight = torch.randn(CLASSES, DIM, generator=gen, dtype=torch.float64).float()
    return embeddings, labels, weight


def _full_head_reference(margin: str, embeddings, labels, weight):
    """The full head's mean cross-entropy and its gradients (the independent reference)."""
    head = FULL_HEADS[margin](DIM, CLASSES, s=16.0)
    head.weight.data.copy_(weight)
    emb = embeddings.clone().requires_grad_(True)
    loss = F.cross_entropy(head(emb, labels), labels)
    loss.backward()
    return loss.detach(), emb.grad, head.weight.grad


@pytest.mark.parametrize("margin", ["am", "cos", "arc"])
def test_one_process_equals_the_full_head(margin):
    embeddings, labels, weight = _inputs(1)
    expected_loss, expected_emb, expected_w = _full_head_reference(
        margin, embeddings, labels, weight
    )
    head = PartialFC(DIM, CLASSES, margin=margin, s=16.0)
    head.weight.data.copy_(weight)
    emb = embeddings.clone().requires_grad_(True)
    out = head(emb, labels)
    out.loss.backward()
    torch.testing.assert_close(out.loss.detach(), expected_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb.grad, expected_emb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head.weight.grad, expected_w, atol=1e-5, rtol=1e-5)
    logits = FULL_HEADS[margin](DIM, CLASSES, s=16.0)
    logits.weight.data.copy_(weight)
    accuracy = (logits(embeddings, labels).argmax(1) == labels).float().mean()
    assert float(out.accuracy) == pytest.approx(float(accuracy))


def test_labels_outside_the_classes_are_refused():
    head = PartialFC(DIM, CLASSES)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 7\), got 0\.\.7"):
        head(torch.randn(2, DIM), torch.tensor([0, CLASSES]))


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.99])
def test_sampling_keeps_every_positive(rate):
    gen = torch.Generator().manual_seed(int(rate * 100))
    num_local = 50
    local = torch.randint(-1, num_local, (20,), generator=gen)
    index, columns = sample_centres(local, num_local, rate, generator=gen)
    positives = set(local[local >= 0].tolist())
    assert positives <= set(index.tolist())
    assert len(index) == max(math.ceil(rate * num_local), len(positives))
    assert torch.equal(index, index.sort().values) and len(set(index.tolist())) == len(index)
    inside = local >= 0
    assert torch.equal(index[columns[inside]], local[inside])  # columns point at the label
    assert bool((columns[~inside] == -1).all())


def test_shards_cover_the_classes_and_reshard():
    for classes, world in ((7, 2), (10, 4), (9, 1), (5, 5)):
        bounds = [shard_bounds(classes, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == classes
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        sizes = [b - a for a, b in bounds]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="num_classes=3"):
        shard_bounds(3, 0, 4)
    full = torch.randn(CLASSES, DIM)
    at_two = reshard([full], 2)
    assert [len(s) for s in at_two] == [4, 3]
    for world in (1, 4):
        shards = reshard(at_two, world)
        assert len(shards) == world
        torch.testing.assert_close(torch.cat(shards), full, rtol=0, atol=0)


#: (margin, sample_rate) run by the spawned ranks, all in one process group
CASES = (("am", 1.0), ("arc", 1.0), ("am", 0.25))


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        embeddings, labels, weight = _inputs(1)
        begin = sum(ROWS[:rank])
        rows = slice(begin, begin + ROWS[rank])
        results = {}
        for margin, rate in CASES:
            head = PartialFC(DIM, CLASSES, margin=margin, s=16.0, sample_rate=rate)
            head.weight.data.copy_(weight)
            head.shard(rank, world)
            emb = embeddings[rows].clone().requires_grad_(True)
            torch.manual_seed(rank)
            out = head(emb, labels[rows])
            out.loss.backward()
            results[margin, rate] = {
                "loss": out.loss.detach(),
                "emb_grad": emb.grad,
                "w_grad": head.weight.grad,
                "num_sampled": out.num_sampled,
                "full": head.gather_full(),
            }
        torch.save(results, f"{out_dir}/rank{rank}.pt")
        # both ranks done before teardown: a rank destroying its group while the other is still
        # in gloo's last exchange can abort ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Each case's per-rank results from 2 spawned gloo ranks."""
    folder = tmp_path_factory.mktemp("partial_fc")
    world = len(ROWS)
    mp.spawn(_worker, args=(world, str(folder / "init"), str(folder)), nprocs=world)
    return [torch.load(folder / f"rank{r}.pt") for r in range(world)]


@pytest.mark.parametrize("margin", ["am", "arc"])
def test_two_gloo_ranks_equal_the_full_head(two_ranks, margin):
    embeddings, labels, weight = _inputs(1)
    expected_loss, expected_emb, expected_w = _full_head_reference(
        margin, embeddings, labels, weight
    )
    ranks = [results[margin, 1.0] for results in two_ranks]
    world = len(ROWS)
    for rank, out in enumerate(ranks):
        torch.testing.assert_close(out["loss"], expected_loss, atol=1e-5, rtol=1e-5)
        begin = sum(ROWS[:rank])
        # DDP's convention: rank r's rows get world × ∂L/∂e (DDP averages the backbone)
        torch.testing.assert_close(
            out["emb_grad"], world * expected_emb[begin : begin + ROWS[rank]], atol=1e-5, rtol=1e-5
        )
        start, stop = shard_bounds(CLASSES, rank, world)
        torch.testing.assert_close(out["w_grad"], expected_w[start:stop], atol=1e-5, rtol=1e-5)
        assert out["num_sampled"] == stop - start
    # the checkpoint's full matrix, on rank 0; re-shardable for any world size
    torch.testing.assert_close(ranks[0]["full"], weight, rtol=0, atol=0)
    assert ranks[1]["full"] is None
    for world_after in (1, 4):
        torch.testing.assert_close(torch.cat(reshard([ranks[0]["full"]], world_after)), weight)


def test_two_gloo_ranks_sampling_keeps_positives(two_ranks):
    _, labels, _ = _inputs(1)
    ranks = [results["am", 0.25] for results in two_ranks]
    for rank, out in enumerate(ranks):
        start, stop = shard_bounds(CLASSES, rank, len(ROWS))
        positives = {int(c) - start for c in labels if start <= c < stop}
        assert out["num_sampled"] == max(math.ceil(0.25 * (stop - start)), len(positives))
        touched = set(torch.nonzero(out["w_grad"].abs().sum(1)).flatten().tolist())
        assert positives <= touched  # every positive centre took part (and got a gradient)
        assert torch.isfinite(out["loss"]) and out["loss"] > 0
    assert ranks[0]["loss"] == ranks[1]["loss"]
