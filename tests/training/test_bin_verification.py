"""Verification on ``.bin`` sets during training: sharding, gathering, logging.

The callback's accuracy is compared with ``eval.py``'s ``.bin`` benchmark (the LFW-style
k-fold protocol) run on the trained checkpoint, and its DDP path with one in which each
"rank" embeds its own shard and a stand-in all-gather stacks the padded shards.
"""

import os
import pickle

import numpy as np
import pytest
import torch

from balanced_align.bin_verification import BinVerification
from balanced_align.core.sharding import max_shard, pad_rows, shard_range, unshard
from balanced_align.data.formats import UnsafePickleError, read_bin, write_bin
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.evaluating import load_checkpoint, make_embed
from balanced_align.evaluation import benchmarks as bm
from balanced_align.input_errors import InputError
from balanced_align.module import BalancedAlignModule
from balanced_align.training import run as train
from tests.training.test_eval_entry import SMALL
from tests.training_helpers import TINY, compose_train


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_every_item_once_in_order(world):
    for count in range(0, 14):
        shards = [shard_range(count, r, world) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(count))
        assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
        rows = torch.arange(count * 3, dtype=torch.float32).reshape(count, 3)
        padded = [pad_rows(rows[s.start : s.stop], max_shard(count, world)) for s in shards]
        assert torch.equal(unshard(torch.stack(padded), count), rows)


def write_bins(root, size: int = 32):
    """Two .bin files of SynthFaces pairs (4 identities); returns their paths."""
    faces = SynthFaces(4, 4, image_size=size, seed=5)
    paths = []
    for stem, offset in (("tiny_a", 0), ("tiny_b", 1)):
        images, same = [], []
        for k in range(6):
            c = (k + offset) % 4
            other = c if k % 2 == 0 else (c + 1) % 4
            images += [faces[4 * c + k % 4].image, faces[4 * other + (k + 1) % 4].image]
            same.append(k % 2 == 0)
        write_bin(root / f"{stem}.bin", images, same, ext=".png")
        paths.append(root / f"{stem}.bin")
    return paths


class FakeTrainer:
    """world_size, global_rank and a strategy whose all_gather stacks given shards."""

    def __init__(self, world: int, rank: int, shards=None) -> None:
        self.world_size, self.global_rank = world, rank
        self.strategy = self
        self.shards = shards

    def all_gather(self, tensor):
        assert tensor.shape == self.shards[self.global_rank].shape
        return torch.stack(self.shards)


def test_sharded_embeddings_equal_the_single_process_ones(tmp_path):
    torch.manual_seed(0)
    module = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "none"}, loss={"lambda": 0.0}
    ).eval()
    (path, _) = write_bins(tmp_path)
    images = read_bin(path).images
    callback = BinVerification([path], batch_size=5)
    single = callback.embeddings(FakeTrainer(1, 0), module, images)
    world = 3
    local = [callback.local_embeddings(module, images, r, world) for r in range(world)]
    assert [len(x) for x in local] == [4, 4, 4]
    padded = [pad_rows(x, max_shard(len(images), world)) for x in local]
    for rank in range(world):
        gathered = callback.embeddings(FakeTrainer(world, rank, padded), module, images)
        torch.testing.assert_close(gathered, single, atol=1e-5, rtol=0)


def test_callback_logs_during_a_tiny_run_and_matches_eval(tmp_path):
    paths = write_bins(tmp_path, size=48)
    out = tmp_path / "run"
    overrides = [
        *TINY,
        "logger=csv",
        "test=false",
        "figures=false",
        "callbacks=verification",
        f"callbacks.verification.paths=[{paths[0]},{paths[1]}]",
        "callbacks.verification.every_n_steps=2",
        "callbacks.verification.n_folds=3",
        "callbacks.verification.batch_size=5",
    ]
    train(compose_train(overrides, output_dir=out))
    (metrics_file,) = out.rglob("metrics.csv")
    header, *rows = metrics_file.read_text().splitlines()
    columns = header.split(",")
    table = [dict(zip(columns, row.split(","))) for row in rows]
    for stem in ("tiny_a", "tiny_b"):
        acc = [float(r[f"val_bin/{stem}/acc"]) for r in table if r.get(f"val_bin/{stem}/acc")]
        best = [float(r[f"val_bin/{stem}/best"]) for r in table if r.get(f"val_bin/{stem}/best")]
        assert len(acc) == 2  # 4 steps (32 images, batch 8), every 2 steps
        assert best == [acc[0], max(acc)]
        # the last evaluation ran on the final weights: eval.py's .bin protocol agrees
        model = load_checkpoint(out / "checkpoints" / "last.ckpt")
        options = bm.EmbedOptions(image_size=model.image_size, batch_size=7)
        embed = make_embed(model, torch.device("cpu"), None)
        data = read_bin(tmp_path / f"{stem}.bin")
        expected = bm.bin_benchmark(embed, data, options, n_folds=3)["verif_acc"]
        assert acc[-1] == pytest.approx(expected, abs=1e-6)
        assert np.isfinite(acc).all()


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_bad_paths_and_landmark_models_are_refused(tmp_path):
    with pytest.raises(ValueError, match="share a name"):
        BinVerification([tmp_path / "a" / "lfw.bin", tmp_path / "b" / "lfw.bin"])
    callback = BinVerification([tmp_path / "missing.bin"])
    module = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "none"}, loss={"lambda": 0.0}
    )
    with pytest.raises(FileNotFoundError, match=r"callbacks\.verification\.paths: .*missing\.bin"):
        callback.setup(None, module, "fit")
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)))
    with pytest.raises(InputError, match=r"verification\.paths: .*garbage\.bin.*not a readable"):
        BinVerification([tmp_path / "garbage.bin"]).setup(None, module, "fit")
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(Evil(tmp_path / "ran")))
    with pytest.raises(UnsafePickleError, match=r"evil\.bin.*posix\.system"):
        BinVerification([tmp_path / "evil.bin"]).setup(None, module, "fit")
    assert not (tmp_path / "ran").exists()
    landmark = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "affine2d"}, loss={"lambda": 0.0}
    )
    with pytest.raises(ValueError, match="landmarks"):
        callback.setup(None, landmark, "fit")


class SavingVerification(BinVerification):
    """Also saves each rank's gathered embeddings (to compare them after a spawned run)."""

    def __init__(self, *args, out_dir: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.out_dir = out_dir

    def embeddings(self, trainer, pl_module, images):
        emb = super().embeddings(trainer, pl_module, images)
        torch.save(emb.cpu(), f"{self.out_dir}/rank{trainer.global_rank}.pt")
        return emb


@pytest.mark.slow
def test_ddp_spawn_ranks_gather_the_whole_set(tmp_path):
    """2 gloo ranks: each embeds half, both end with every embedding, in file order, equal to
    one process embedding the whole set with the final weights."""
    import lightning as L
    from hydra.utils import instantiate

    (path, _) = write_bins(tmp_path, size=32)
    cfg = compose_train(TINY, output_dir=tmp_path)
    datamodule = instantiate(cfg.data)
    torch.manual_seed(0)
    module = BalancedAlignModule(
        num_classes=8,
        model={**SMALL, "input_size": 48},
        align={"method": "none"},
        loss={"lambda": 0.0},
        optim={"batch_size": 8},
    )
    callback = SavingVerification(
        [path], every_n_steps=2, batch_size=5, n_folds=3, out_dir=str(tmp_path)
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[callback],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    module.eval()  # ddp_spawn copied rank 0's final weights back
    images = read_bin(path).images
    single = callback.embeddings(FakeTrainer(1, 0), module, images)
    for rank in (0, 1):
        gathered = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(gathered, single, atol=1e-5, rtol=0)
    callback.setup(None, module, "fit")
    expected = callback.evaluate(FakeTrainer(1, 0), module)["tiny_a"]
    assert float(trainer.callback_metrics["val_bin/tiny_a/acc"]) == pytest.approx(expected)
