"""Lines to watch a run by, in the style of arcface_torch's logs.

:class:`RunWatcher` writes, through :mod:`logging` (so to the console *and* Hydra's
``train.log``):

- one line per validation::

      [val e5] rank1 0.217  verif 0.810±0.03  anme 0.303  failed 16%  folded 6%

  (``e`` is the 0-based epoch, as in the checkpoint names; metrics absent from a run are left
  out, an undefined ANME reads ``nan``);
- every ``every_n_steps`` optimiser steps, when the standard output is not a terminal (nohup,
  SLURM: no progress bar to look at), a training line::

      [train e1 s120] loss 3.412  l_fr 3.201  l_align 0.0705  lr 0.0125  412 img/s

  The numbers are those of the last step (``lr``: the first parameter group's); ``img/s`` is
  the whole run's (rank 0's images × the number of ranks, as arcface_torch's speed).
"""

from __future__ import annotations

import logging
import math
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

#: (metric, label, format) of the training line, in order
TRAIN_FIELDS = (("loss", "loss", ".4g"), ("l_fr", "l_fr", ".4g"), ("l_align", "l_align", ".4g"))


def _value(metrics: dict, name: str) -> float | None:
    """``metrics[name]`` (or its ``_step`` form, logged with on_step and on_epoch) as a float."""
    for key in (name, f"{name}_step"):
        if key in metrics:
            return float(metrics[key])
    return None


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.0f}%"


def validation_line(metrics: dict, epoch: int, stage: str = "val") -> str:
    """``[val e5] rank1 0.217  verif 0.810±0.03  anme 0.303  failed 16%  folded 6%`` from
    logged metrics (``"val/rank1"``-style keys; absent metrics are left out)."""

    def get(name: str) -> float | None:
        return _value(metrics, f"{stage}/{name}")

    header, parts = f"[{stage} e{epoch}]", []
    if (rank1 := get("rank1")) is not None:
        parts.append(f"rank1 {rank1:.3f}")
    if (verif := get("verif_acc")) is not None:
        std = get("verif_acc_std")
        parts.append(f"verif {verif:.3f}" + ("" if std is None else f"±{std:.2f}"))
    if (value := get("anme")) is not None:
        parts.append(f"anme {value:.3f}")
    if (failed := get("anme_failed_frac")) is not None:
        parts.append(f"failed {_percent(failed)}")
    if (folded := get("folded_frac")) is not None:
        parts.append(f"folded {_percent(folded)}")
    return f"{header} " + "  ".join(parts)


def training_line(metrics: dict, epoch: int, step: int, images_per_s: float | None) -> str:
    """``[train e1 s120] loss 3.412  l_fr 3.201  l_align 0.0705  lr 0.0125  412 img/s``."""
    header, parts = f"[train e{epoch} s{step}]", []
    for name, label, fmt in TRAIN_FIELDS:
        if (value := _value(metrics, f"train/{name}")) is not None:
            parts.append(f"{label} {value:{fmt}}")
    if (lr := _value(metrics, "train/lr")) is not None:
        parts.append(f"lr {lr:.4g}")
    if images_per_s is not None:
        parts.append(f"{images_per_s:.0f} img/s")
    return f"{header} " + "  ".join(parts)


class RunWatcher(Callback):
    """Validation lines always; training lines every ``every_n_steps`` steps when
    ``training_lines`` is true, or (``"auto"``) when the standard output is not a terminal."""

    def __init__(self, every_n_steps: int = 50, training_lines: bool | str = "auto") -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(
                "callbacks.run_watcher.every_n_steps must be an integer >= 1, got "
                f"{every_n_steps!r}"
            )
        if training_lines not in (True, False, "auto"):
            raise ValueError(
                "callbacks.run_watcher.training_lines must be true, false or auto, got "
                f"{training_lines!r}"
            )
        self.every_n_steps = every_n_steps
        self.training_lines = training_lines
        self._images = 0
        self._since = time.perf_counter()
        self._last_step = -1

    def _training_lines_on(self) -> bool:
        if self.training_lines == "auto":
            return not sys.stdout.isatty()
        return bool(self.training_lines)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images, self._since, self._last_step = 0, time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        images = batch.get("image") if isinstance(batch, dict) else None
        self._images += 0 if images is None else len(images)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # the metrics of the last step reach callback_metrics after on_train_batch_end
        self._maybe_training_line(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_training_line(trainer)

    def _maybe_training_line(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if (
            step == self._last_step
            or step % self.every_n_steps
            or not trainer.is_global_zero
            or not self._training_lines_on()
        ):
            return
        elapsed = time.perf_counter() - self._since
        # every rank trains on batches of its own: the run's rate is this rank's × the ranks
        images = self._images * trainer.world_size
        rate = images / elapsed if images and elapsed > 0 else None
        log.info(training_line(trainer.callback_metrics, trainer.current_epoch, step, rate))
        self._images, self._since, self._last_step = 0, time.perf_counter(), step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        log.info(validation_line(trainer.callback_metrics, trainer.current_epoch))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info(validation_line(trainer.callback_metrics, trainer.current_epoch, "test"))
