"""The training job's experiment loggers (``conf/logger/``): built, named, given the run's
flat config and, at the end, its final metrics.

- Every logger gets the flat config (``{"loss.lambda": 3.0, …}``) and nothing else: the module
  saves its hyperparameters with ``logger=False``.
- W&B runs are named from the overrides a multirun sweeps (else method, location, λ and data
  set) and tagged ``method=…``, ``location=…``, ``lambda=…``, ``data=…``. At the end the
  summary gets the final metrics without NaN (a NaN key is removed; ``anme_failed_frac``
  stands beside ``anme`` and says why it may be missing), and the run logs a table and a
  scatter plot of ANME vs rank-1 (``anme_vs_rank1``).
- TensorBoard gets the flat config *with* the final metrics at the end
  (``log_hyperparams(config, metrics)``, ``default_hp_metric: false``), so the HParams
  dashboard plots ANME against rank-1. :class:`TensorBoardLogger` keeps fit, test and these
  in one event file (Lightning's closes its writer after fit; the next write opens another).

Final metrics are named ``best/val/…`` (the validation of the best checkpoint's weights, else
the last validation) and ``best/test/…`` (the test of the same weights), see
:func:`final_metrics`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from balanced_align.run_result import RunResult
from balanced_align.sweeps import job_dirname, swept_keys

log = logging.getLogger(__name__)

#: the metrics of the final summaries and of the ANME vs rank-1 table
FINAL_METRICS = ("rank1", "verif_acc", "anme", "anme_failed_frac", "folded_frac")
#: the W&B key of the ANME vs rank-1 scatter plot (its table is ``<key>_table``)
SCATTER_KEY = "anme_vs_rank1"


def _is(logger, name: str) -> bool:
    return type(logger).__name__ == name


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, but ``finalize`` (after fit, after test) only flushes:
    the writer stays open, so fit, test and the final hparams share one event file.
    :func:`log_final` closes it."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._experiment.flush()
        if status == "success":
            self.save()

    @rank_zero_only
    def close(self) -> None:
        if self._experiment is not None:
            self._experiment.close()


def build_loggers(cfg: DictConfig) -> list:
    """The loggers of ``cfg.logger`` (entries without ``_target_`` are skipped)."""
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        if conf is None or "_target_" not in conf:
            continue
        kwargs = _wandb_kwargs(cfg, conf) if conf._target_.endswith("WandbLogger") else {}
        loggers.append(instantiate(conf, **kwargs))
        log.info("logger %s: %s", name, conf._target_)
    return loggers


def _multirun() -> bool:
    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode is not None and mode.name == "MULTIRUN"


def run_name(cfg: DictConfig) -> str:
    """``loss.lambda=3,align=stn_tps2`` (the overrides a multirun sweeps), else
    ``tps@fmap λ=3.0 synthfaces``."""
    if _multirun():
        hydra = HydraConfig.get()
        swept = swept_keys(hydra.sweep.dir) or set()
        exclude = list(hydra.job.config.override_dirname.exclude_keys or [])
        name = job_dirname(hydra.job.num, list(hydra.overrides.task), swept, exclude)
        _, _, overrides = name.partition("_")
        if overrides:
            return overrides
    return f"{cfg.align.method}@{cfg.align.location} λ={float(cfg.loss['lambda'])} {_dataset(cfg)}"


def run_tags(cfg: DictConfig) -> list[str]:
    """``method=tps``, ``location=fmap``, ``lambda=3.0``, ``data=synthfaces``."""
    return [
        f"method={cfg.align.method}",
        f"location={cfg.align.location}",
        f"lambda={float(cfg.loss['lambda'])}",
        f"data={_dataset(cfg)}",
    ]


def _dataset(cfg: DictConfig) -> str:
    """The data config chosen (``synthfaces``), else the source's name."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("data")
        if choice:
            return str(choice)
    node = cfg.data.get("source") or cfg.data
    name = node.get("dataset") or str(node.get("_target_", "data")).rsplit(".", 1)[-1]
    return str(name).removesuffix("Source").lower()


def _wandb_kwargs(cfg: DictConfig, conf: DictConfig) -> dict:
    """Offline without an API key; a training run's name and tags; the runs of one multirun
    share a group."""
    kwargs = {}
    if all(group in cfg for group in ("align", "loss", "data")):  # a training run
        kwargs["tags"] = sorted({*run_tags(cfg), *(conf.get("tags") or [])})
        if conf.get("name") is None:
            kwargs["name"] = run_name(cfg)
    if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") not in ("online",):
        kwargs["offline"] = True
        os.environ.setdefault("WANDB_MODE", "offline")
    if conf.get("group") is None and _multirun():
        kwargs["group"] = Path(HydraConfig.get().sweep.dir).name
    return kwargs


def log_config(loggers: list, flat_config: dict) -> None:
    """The flat config to every logger but TensorBoard (which gets it with the final metrics,
    :func:`log_final`: the HParams dashboard keeps the first hparams it is given)."""
    for logger in loggers:
        if not isinstance(logger, LightningTensorBoardLogger):
            logger.log_hyperparams(flat_config)


def final_metrics(result: RunResult) -> dict[str, float]:
    """``best/val/<m>`` and ``best/test/<m>`` for the finite :data:`FINAL_METRICS`: the
    validation of the tested weights (``val_best``; the last validation when no best checkpoint
    was kept) and their test."""
    val = result.val_best or result.val
    return {
        f"best/{stage}/{name}": float(metrics[name])
        for stage, metrics in (("val", val), ("test", result.test))
        for name in FINAL_METRICS
        if metrics.get(name) is not None and math.isfinite(metrics[name])
    }


def anme_rank1_rows(result: RunResult) -> list[list]:
    """Rows ``[run, weights, anme, rank1, anme_failed_frac]`` of the ANME vs rank-1 table: one
    per stage (``val``, ``test``) where both are defined."""
    rows = []
    for stage, metrics in (("val", result.val_best or result.val), ("test", result.test)):
        anme, rank1 = metrics.get("anme"), metrics.get("rank1")
        if anme is not None and rank1 is not None and math.isfinite(anme + rank1):
            rows.append([result.run, stage, anme, rank1, metrics.get("anme_failed_frac")])
    return rows


@rank_zero_only
def log_final(loggers: list, flat_config: dict, result: RunResult) -> None:
    """Final metrics to every logger that keeps them apart from the curves, then close W&B.

    Global rank 0 only: under ``ddp`` every rank runs the job, and the other ranks' W&B
    loggers hold Lightning's dummy experiment (no ``summary``)."""
    metrics = final_metrics(result)
    for logger in loggers:
        if isinstance(logger, LightningTensorBoardLogger):
            logger.log_hyperparams(flat_config, metrics)
            if isinstance(logger, TensorBoardLogger):
                logger.close()
        elif _is(logger, "WandbLogger"):
            _finish_wandb(logger.experiment, result, metrics)


def _finish_wandb(run, result: RunResult, metrics: dict) -> None:
    import wandb

    summary = {
        f"{stage}/{key}": value
        for stage, values in (("val", result.val), ("test", result.test))
        for key, value in values.items()
    }
    for key, value in summary.items():  # the curves' last value may be NaN: keep NaN out
        if value is None or not math.isfinite(value):
            try:
                del run.summary[key]
            except KeyError:
                pass
    run.summary.update({k: v for k, v in summary.items() if v is not None and math.isfinite(v)})
    run.summary.update(metrics)
    rows = anme_rank1_rows(result)
    if rows:
        table = wandb.Table(
            columns=["run", "stage", "anme", "rank1", "anme_failed_frac"], data=rows
        )
        run.log({SCATTER_KEY: wandb.plot.scatter(table, "anme", "rank1", title="ANME vs rank-1")})
    wandb.finish()
