"""``ResumableOptunaSweeper``: hydra-optuna-sweeper's sweeper, resumable from its storage.

The stock ``OptunaSweeper`` loads an existing study (``load_if_exists``) but then runs
``n_trials`` *more* trials, numbers its jobs from 0 again (a re-launch into the same sweep
folder writes over the first jobs' folders) and leaves the trials of a killed launch
``RUNNING`` forever. This sweeper reads ``n_trials`` as the size of the whole search: before
the stock sweep it settles the storage (:func:`~._study.settle_study`) and runs only the
trials still missing, numbering each job by its trial. Like Hydra's basic sweeper (and unlike
the stock one) it saves the sweep's config as ``<sweep dir>/multirun.yaml``, from which
:mod:`balanced_align.sweeps` names the job folders by the searched keys.

Hydra imports every module of ``hydra_plugins`` at start-up, so this one imports nothing
heavier than Hydra: optuna and the stock sweeper load when a search is configured.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class ResumableOptunaSweeper(Sweeper):
    """Takes the stock sweeper's arguments (``hydra/sweeper: optuna``); ``n_trials`` counts
    the trials of the stored study that ended, ``storage`` must be set for a search to
    resume."""

    def __init__(self, **kwargs: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        self.optuna = OptunaSweeper(**kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from ._study import settle_study

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        impl = self.optuna.sweeper  # the stock implementation: its n_trials and job_idx
        if impl.storage is not None:
            progress = settle_study(impl.storage, impl.study_name, impl.n_trials)
            log.info(progress.describe())
            impl.n_trials = progress.to_run
            impl.job_idx = progress.next_number
        return self.optuna.sweep(arguments)
