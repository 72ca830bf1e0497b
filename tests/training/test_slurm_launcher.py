"""``hydra/launcher=slurm`` with ``trainer=slurm``: the launcher's GPUs and nodes are the DDP
trainer's, as Lightning's SLURM environment expects; submitit's local executor runs a job."""

from __future__ import annotations

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import open_dict

from balanced_align.run_result import RunResult
from tests.training_helpers import TINY, compose_train, multirun

SLURM = ["hydra/launcher=slurm", "trainer=slurm"]


@pytest.fixture
def slurm_config():
    """Compose with the launcher and make ``${hydra:…}`` resolvable, as inside a job."""

    def compose(*overrides):
        cfg = compose_train([*SLURM, *overrides], with_hydra=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield compose
    HydraConfig.instance().cfg = None


def test_slurm_launcher_keys_set_the_ddp_trainer(slurm_config):
    cfg = slurm_config(
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.nodes=2",
        "hydra.launcher.timeout_min=90",
    )
    launcher, trainer = cfg.hydra.launcher, cfg.trainer
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min) == ("gpu", 90)
    assert launcher.tasks_per_node == 4  # one process per GPU
    assert (trainer.devices, trainer.num_nodes, trainer.strategy) == (4, 2, "ddp")


def _srun_env(monkeypatch, ntasks_per_node, nnodes, procid):
    """What srun sets in each task of an sbatch with these sizes (task ``procid``)."""
    env = {
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": str(ntasks_per_node * nnodes),
        "SLURM_NTASKS_PER_NODE": str(ntasks_per_node),
        "SLURM_NNODES": str(nnodes),
        "SLURM_NODELIST": "node[1-2]",
        "SLURM_PROCID": str(procid),
        "SLURM_LOCALID": str(procid % ntasks_per_node),
        "SLURM_NODEID": str(procid // ntasks_per_node),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_lightning_takes_its_ranks_from_the_tasks_the_launcher_requests(
    slurm_config, monkeypatch, tmp_path
):
    cfg = slurm_config("hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2")
    launcher = cfg.hydra.launcher
    _srun_env(monkeypatch, launcher.tasks_per_node, launcher.nodes, procid=6)
    # the DDP strategy sets the process-wide rank (to 6 here): give the next test back rank 0
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    with open_dict(cfg):  # no GPU here: the same DDP layout on CPU processes
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.precision = "32-true"
        cfg.trainer.sync_batchnorm = False
        cfg.trainer.default_root_dir = str(tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.num_nodes) == (8, 2)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (6, 2, 1)
    # the check Lightning runs when fit launches: the trainer agrees with SLURM's sizes
    environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)

    # a launcher with one task per node (submitit's default) does not fit a 4-GPU trainer
    _srun_env(monkeypatch, 1, launcher.nodes, procid=0)
    with pytest.raises(ValueError, match="ntasks-per-node=1"):
        environment.validate_settings(trainer.num_devices, trainer.num_nodes)


@pytest.mark.slow
def test_submitit_local_executor_runs_a_tiny_job(tmp_path, repo_root):
    sweep = tmp_path / "sweep"
    done = multirun(
        repo_root,
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        *TINY,
        "align=none",
        "loss.lambda=0",
        "test=false",
        "figures=false",
        f"hydra.sweep.dir={sweep}",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = RunResult.from_json(sweep / "0" / "results.json")
    assert {"rank1", "verif_acc"} <= set(result.val)
    # the job ran in submitit's own process, which logged it under .submitit/<job id>/
    (log,) = sweep.glob(".submitit/*/*_0_log.out")
    text = log.read_text()
    assert f"results      {sweep / '0' / 'results.json'}" in text
    assert "Job completed successfully" in text
