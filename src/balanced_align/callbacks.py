"""Training callbacks that make a run resumable to the same result.

- :class:`LastCheckpoint` writes ``last.ckpt`` at the end of every training epoch (after
  that epoch's validation), whatever a monitored ``ModelCheckpoint`` decides, and the state
  at an exception (or SIGTERM, which Lightning turns into an exception at the next batch)
  to ``interrupted.ckpt``. ``last.ckpt`` is therefore always an epoch boundary: resuming
  from it (``ckpt_path=…/last.ckpt``) continues exactly as the uninterrupted run would.
- :class:`EpochSeed` re-seeds the global RNGs (torch, numpy, random) of the training
  process at the start of every epoch from ``(seed, epoch)``, so anything in the model
  that draws from them (dropout) is the same in a resumed run.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """``dirpath/last.ckpt`` at every epoch end; ``dirpath/interrupted.ckpt`` on an exception.

    Files are written to a temporary name and renamed, so a kill while saving leaves the
    previous ``last.ckpt`` intact. ``interrupted.ckpt`` holds the mid-epoch state for
    inspection; resuming from it is not exact (Lightning warns that the loader is not
    resumable), so the exact resume point stays ``last.ckpt``.
    """

    LAST = "last.ckpt"
    INTERRUPTED = "interrupted.ckpt"

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)

    @property
    def last_path(self) -> Path:
        return self.dirpath / self.LAST

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and not trainer.fast_dev_run:
            self._save(trainer, self.last_path)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        if (
            not fitting
            or trainer.sanity_checking
            or trainer.fast_dev_run
            or not trainer.global_step
        ):
            return
        path = self.dirpath / self.INTERRUPTED
        self._save(trainer, path)
        log.warning(
            "training stopped by %s at epoch %d, step %d: state saved to %s; resume exactly "
            "from the last epoch boundary with ckpt_path=%s",
            type(exception).__name__,
            trainer.current_epoch,
            trainer.global_step,
            path,
            self.last_path,
        )

    def _save(self, trainer: L.Trainer, path: Path) -> None:
        partial = path.with_name(f".{path.name}.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # all ranks call it; rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, path)
        trainer.strategy.barrier("LastCheckpoint")


class EpochSeed(Callback):
    """Seed torch, numpy and random from ``(seed, epoch)`` at each training epoch's start."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = np.random.SeedSequence([self.seed, int(trainer.current_epoch)]).generate_state(2)
        torch.manual_seed(int(state[0]))
        np.random.seed(int(state[1]))  # noqa: NPY002 (the global state is what is seeded)
        random.seed(int(state[1]))
