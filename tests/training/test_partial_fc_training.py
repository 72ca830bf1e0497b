"""loss.head=partial_fc_*: the config, and training under ddp_spawn (2 gloo ranks) with a
checkpoint that holds the full centres and loads at any world size."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from balanced_align.callbacks import LastCheckpoint
from balanced_align.checkpoints import read_checkpoint
from balanced_align.config_schema import ModuleConfig
from balanced_align.models.partial_fc import shard_bounds
from balanced_align.module import BalancedAlignModule

CLASSES, SIZE, ITEMS = 5, 16, 16
MODEL = {"width": 0.125, "input_size": SIZE, "embedding_dim": 8, "channels_last": False}


def _module(**loss) -> BalancedAlignModule:
    return BalancedAlignModule(
        num_classes=CLASSES,
        model=MODEL,
        align={"method": "none"},
        loss={"lambda": 0.0, "head": "partial_fc_am", **loss},
        optim={"batch_size": 4, "lr": 0.05},
    )


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ({"head": "am_softmax", "sample_rate": 0.5}, r"loss\.sample_rate=0\.5 .*loss\.head=am_"),
        ({"head": "partial_fc_arc", "sample_rate": 0.0}, r"loss\.sample_rate must be in \(0, 1\]"),
        ({"head": "partial_fc_am", "sample_rate": 1.5}, r"loss\.sample_rate must be in \(0, 1\]"),
        ({"head": "partial_fc"}, r"loss\.head must be one of .*partial_fc_cos"),
    ],
)
def test_sample_rate_and_head_are_checked(loss, message):
    with pytest.raises(ValueError, match=message):
        ModuleConfig.from_mappings(loss={"lambda": 0.0, **loss}, align={"method": "none"})


def test_partial_fc_heads_build_with_their_margins():
    for head, margin in (
        ("partial_fc_am", "am"),
        ("partial_fc_cos", "cos"),
        ("partial_fc_arc", "arc"),
    ):
        module = _module(head=head, sample_rate=0.5, margin=0.3)
        assert (module.head.margin, module.head.m, module.head.sample_rate) == (margin, 0.3, 0.5)
        assert module._ddp_params_and_buffers_to_ignore == ["head.weight"]


def test_gradient_clipping_leaves_the_centres_alone():
    module = _module()
    for param in module.parameters():
        param.grad = torch.ones_like(param)
    module.configure_gradient_clipping(None, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    rest = [p.grad for n, p in module.named_parameters() if n != "head.weight"]
    assert float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in rest]))) == (
        pytest.approx(1.0, rel=1e-4)
    )
    assert bool((module.head.weight.grad == 1).all())


def test_a_full_checkpoint_loads_sharded_at_another_world_size():
    source = _module()
    full = source.head.weight.detach().clone()
    momentum = torch.randn_like(full)
    checkpoint = {
        "state_dict": source.state_dict(),
        "optimizer_states": [{"state": {7: {"momentum_buffer": momentum}}}],
        "partial_fc_slot": 7,
    }
    for world in (1, 2, 4):
        weights, buffers = [], []
        for rank in range(world):
            target = _module()
            if world > 1:
                target.head.shard(rank, world)
            loaded = copy.deepcopy(checkpoint)
            target.on_load_checkpoint(loaded)
            target.load_state_dict(loaded["state_dict"])
            start, stop = shard_bounds(CLASSES, rank, world)
            assert target.head.weight.shape[0] == stop - start
            weights.append(target.head.weight.detach())
            buffers.append(loaded["optimizer_states"][0]["state"][7]["momentum_buffer"])
        torch.testing.assert_close(torch.cat(weights), full, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat(buffers), momentum, rtol=0, atol=0)


class _Faces(Dataset):
    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> dict:
        gen = torch.Generator().manual_seed(index)
        return {"image": torch.rand(3, SIZE, SIZE, generator=gen) * 2 - 1, "label": index % CLASSES}


def _fit(module: BalancedAlignModule, tmp_path, **trainer) -> dict:
    """Train ``module`` on CPU without validation; the contents of its ``last.ckpt``."""
    L.Trainer(
        accelerator="cpu",
        limit_val_batches=0,
        logger=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[LastCheckpoint(tmp_path)],
        **trainer,
    ).fit(module, DataLoader(_Faces(), batch_size=4, drop_last=True))
    return read_checkpoint(tmp_path / "last.ckpt")


def test_ddp_spawn_trains_and_saves_the_full_centres(tmp_path):
    module = _module(sample_rate=0.5)
    before = module.head.weight.detach().clone()
    # 2 epochs of 2 steps: the second trains on after a save
    checkpoint = _fit(module, tmp_path, devices=2, strategy="ddp_spawn", max_steps=4)
    saved = checkpoint["state_dict"]["head.weight"]
    assert saved.shape == (CLASSES, MODEL["embedding_dim"])  # both ranks' shards
    assert not torch.allclose(saved, before)  # trained
    # ddp_spawn copied rank 0's (unsharded) state back into this process's module
    torch.testing.assert_close(module.head.weight.detach(), saved, rtol=0, atol=0)
    slot = checkpoint["partial_fc_slot"]
    momentum = checkpoint["optimizer_states"][0]["state"][slot]["momentum_buffer"]
    assert momentum.shape == saved.shape and bool(momentum[shard_bounds(CLASSES, 1, 2)[0] :].any())
    fresh = _module()  # one process loads it as it is
    fresh.load_state_dict(checkpoint["state_dict"])


def test_a_one_process_checkpoint_resumes_sharded_with_its_momentum(tmp_path):
    """Saved by one process (head not sharded), loaded by rank 1 of 2: the momentum of the
    centres must be cut to that rank's rows like the centres (SGD adds it to their grads)."""
    module = _module(sample_rate=0.5)
    checkpoint = _fit(module, tmp_path, devices=1, max_steps=2)
    slot = module._head_optimizer_slot()  # the centres' entry in the optimizer state
    target = _module(sample_rate=0.5)
    target.head.shard(1, 2)
    target.on_load_checkpoint(checkpoint)
    momentum = checkpoint["optimizer_states"][0]["state"][slot]["momentum_buffer"]
    assert momentum.shape == target.head.weight.shape == (2, MODEL["embedding_dim"])
