"""loggers.log_final under DDP: only global rank 0 writes the final metrics."""

from __future__ import annotations

import math

import pytest
from lightning.pytorch.loggers import WandbLogger
from lightning_utilities.core.rank_zero import rank_zero_only

from balanced_align.loggers import log_final
from balanced_align.run_result import RunResult


def _result() -> RunResult:
    return RunResult(
        run="tps@fmap λ=3.0 seed=0",
        method="tps",
        tps_grid_size=8,
        location="fmap",
        lambda_=3.0,
        seed=0,
        val={"rank1": 0.5, "anme": math.nan},
        test={"rank1": 0.25, "anme": 0.3},
        best_checkpoint=None,
        epochs=1,
        global_step=4,
        wall_time_s=1.0,
        config={"loss.lambda": 3.0},
        results_path="/x/results.json",
    )


@pytest.mark.parametrize("rank", [1, 3])
def test_other_ranks_leave_the_wandb_run_alone(rank, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    # on a rank > 0 Lightning hands out a stand-in run whose `summary` is a no-op method
    assert callable(logger.experiment.summary)
    log_final([logger], {"loss.lambda": 3.0}, _result())  # must not touch it
    assert not list(tmp_path.rglob("*.wandb"))  # and no run was started
