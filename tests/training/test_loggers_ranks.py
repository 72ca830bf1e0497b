"""loggers.log_final under DDP: only global rank 0 finishes the experiment loggers.

Under ``ddp`` (torchrun, SLURM) every rank runs the whole training job, and a W&B logger of a
rank other than 0 hands out Lightning's dummy experiment, which has no ``summary``.
"""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from balanced_align.loggers import log_final
from balanced_align.run_result import RunResult


@pytest.fixture
def rank_one():
    before = rank_zero_only.rank
    rank_zero_only.rank = 1
    yield
    rank_zero_only.rank = before


def test_a_wandb_logger_of_another_rank_is_left_alone(tmp_path, monkeypatch, rank_one):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    result = RunResult(
        method="tps",
        location="fmap",
        lambda_=3.0,
        seed=0,
        val={"rank1": 0.5, "anme": float("nan")},
        test={"rank1": 0.4, "anme": 0.3},
    )
    log_final([logger], {"loss.lambda": 3.0}, result)  # raised TypeError on rank 1 (no summary)
    assert not list(tmp_path.glob("wandb/offline-run-*"))  # and no run was started


def test_the_config_tree_is_printed_and_saved_by_rank_zero_only(tmp_path, capsys, rank_one):
    from omegaconf import OmegaConf

    from balanced_align.config_tree import TREE_FILE
    from balanced_align.training import _print_config

    _print_config(OmegaConf.create({"loss": {"lambda": 3.0}}), tmp_path)
    assert not (tmp_path / TREE_FILE).exists()
    assert "lambda" not in capsys.readouterr().out
