"""Verification on insightface ``.bin`` sets during training (like arcface_torch's
``CallBackVerification``).

:class:`BinVerification` reads the given ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``,
``agedb_30.bin``, any list) when fitting starts, and every ``every_n_steps`` optimiser steps
evaluates each of them as ``eval.py benchmark=bin`` does (docs/design.md §5.2): flip-TTA
unit embeddings, squared distances, ``n_folds`` contiguous folds with the threshold chosen on
the other folds. It logs ``<prefix>/<file stem>/acc`` (mean held-out accuracy) and
``<prefix>/<file stem>/best`` (the best so far, kept in checkpoints), ``prefix`` =
``val_bin`` by default, to the trainer's loggers at that step and to
``trainer.callback_metrics`` (so a ``ModelCheckpoint`` can monitor them).

Under DDP each rank embeds one contiguous shard of the images
(:mod:`balanced_align.core.sharding`) with rank 0's buffers (BatchNorm statistics,
broadcast first: each rank's last batch moved its own); the shards are all-gathered, so every
rank scores the whole set with the weights a checkpoint would hold, and logs the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from balanced_align.core.errors import naming
from balanced_align.core.sharding import max_shard, pad_rows, shard_range, unshard
from balanced_align.data.formats import BinPairs, read_bin
from balanced_align.evaluation.benchmarks import EmbedOptions, embed_batches
from balanced_align.evaluation.verification import verification_accuracy


def sync_buffers(module: torch.nn.Module, world: int) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): each rank updated
    them with its own last batch, and DDP only broadcasts them at the next forward. Rank 0's
    are the ones a checkpoint saves."""
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


class BinVerification(Callback):
    """Evaluate ``.bin`` verification sets every ``every_n_steps`` training steps.

    paths: the ``.bin`` files (a set is named by its file stem; stems must differ).
    every_n_steps: steps between evaluations (at global steps n, 2n, …).
    batch_size: images per forward pass (two passes per batch with ``flip``).
    n_folds: contiguous folds in file order. flip: flip TTA. num_workers: decoding threads.
    prefix: the metric prefix. Files are read at the start of fitting (errors name them).
    """

    def __init__(
        self,
        paths: Sequence[str],
        every_n_steps: int = 2000,
        batch_size: int = 64,
        n_folds: int = 10,
        flip: bool = True,
        num_workers: int = 0,
        prefix: str = "val_bin",
    ) -> None:
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise ValueError("BinVerification.paths: give at least one .bin file")
        stems = [Path(p).stem for p in paths]
        if len(set(stems)) != len(stems):
            raise ValueError(f"BinVerification.paths: two files share a name: {paths}")
        if int(every_n_steps) < 1:
            raise ValueError(f"BinVerification.every_n_steps must be >= 1, got {every_n_steps}")
        self.paths = [Path(p) for p in paths]
        self.every_n_steps = int(every_n_steps)
        self.batch_size = int(batch_size)
        self.n_folds = int(n_folds)
        self.flip = bool(flip)
        self.num_workers = int(num_workers)
        self.prefix = prefix
        self.sets: dict[str, BinPairs] = {}
        self.best: dict[str, float] = {}
        self._last_step: int | None = None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = dict(state_dict.get("best", {}))

    # -- hooks ----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if getattr(pl_module, "landmark_aligned", False):
            raise ValueError(
                "BinVerification: this model aligns each image by its landmarks, and .bin "
                f"sets have none ({[str(p) for p in self.paths]}); remove callbacks.verification"
            )
        try:
            self.sets = {path.stem: read_bin(path) for path in self.paths}
        except (ValueError, OSError) as error:
            raise naming(error, "callbacks.verification.paths") from None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or trainer.sanity_checking:
            return
        if self._last_step == step:  # gradient accumulation: once per step
            return
        self._last_step = step
        metrics = {}
        for name, acc in self.evaluate(trainer, pl_module).items():
            self.best[name] = max(self.best.get(name, -math.inf), acc)
            metrics[f"{self.prefix}/{name}/acc"] = acc
            metrics[f"{self.prefix}/{name}/best"] = self.best[name]
        # every rank scored the gathered set: the same numbers everywhere, no reduction.
        # Sent to the loggers now (Lightning's own step logging only flushes every
        # log_every_n_steps) and kept in callback_metrics for monitors (ModelCheckpoint).
        for key, value in metrics.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """{set name: mean held-out accuracy} of the current model (eval mode, restored)."""
        training = pl_module.training
        pl_module.eval()
        sync_buffers(pl_module, trainer.world_size)
        try:
            out = {}
            for name, data in self.sets.items():
                emb = self.embeddings(trainer, pl_module, data.images).cpu()
                result = verification_accuracy(
                    emb[data.pairs_a],
                    emb[data.pairs_b],
                    data.issame,
                    folds=data.folds(self.n_folds),
                )
                out[name] = result.accuracy_mean
            return out
        finally:
            pl_module.train(training)

    def local_embeddings(
        self, pl_module: L.LightningModule, images: Sequence, rank: int, world: int
    ) -> torch.Tensor:
        """(shard size, D) flip-TTA unit embeddings of this rank's contiguous shard."""
        shard = shard_range(len(images), rank, world)
        options = EmbedOptions(
            image_size=pl_module.image_size,
            batch_size=self.batch_size,
            flip=self.flip,
            num_workers=self.num_workers,
        )

        def embed(batch: torch.Tensor) -> torch.Tensor:
            return pl_module(batch.to(pl_module.device))

        chunks = list(embed_batches(embed, len(shard), lambda i: images[shard.start + i], options))
        if not chunks:
            dim = int(pl_module.hparams.model["embedding_dim"])
            return torch.zeros((0, dim), device=pl_module.device)
        return torch.from_numpy(np.concatenate(chunks)).to(pl_module.device)

    def embeddings(
        self, trainer: L.Trainer, pl_module: L.LightningModule, images: Sequence
    ) -> torch.Tensor:
        """(N, D) embeddings of all ``images``, each rank embedding its shard, gathered."""
        world, rank = trainer.world_size, trainer.global_rank
        local = self.local_embeddings(pl_module, images, rank, world)
        if world == 1:
            return local
        gathered = trainer.strategy.all_gather(pad_rows(local, max_shard(len(images), world)))
        return unshard(gathered, len(images))
