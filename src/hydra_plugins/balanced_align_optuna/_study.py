"""Settle a stored Optuna study before a (re-)launch: what ended, what was cut off, what to run.

A trial still ``RUNNING`` when a search is launched again belongs to a launch that was killed:
it is told ``FAIL``, its number joins the study's user attribute ``interrupted_trials`` and its
parameters are enqueued, so the next trial tries the same point. The trials that ended
(complete, pruned or failed on their own) count towards ``n_trials``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

#: the study's user attribute: numbers of the trials that a killed launch left running
INTERRUPTED = "interrupted_trials"
_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class StudyProgress:
    """Where a stored search stands when it is (re-)launched."""

    study_name: str | None
    #: trials that ended, interrupted ones left out
    ended: int
    #: trials of a killed launch, enqueued again
    interrupted: int
    #: trials this launch runs: n_trials − ended, at least 0
    to_run: int
    #: number of the next trial (= its job's number)
    next_number: int

    def describe(self) -> str:
        if self.next_number == 0:
            return f"optuna study {self.study_name!r}: new, {self.to_run} trials to run"
        return (
            f"optuna study {self.study_name!r}: resuming, {self.ended} trials ended, "
            f"{self.interrupted} interrupted (their parameters run again), "
            f"{self.to_run} to run, numbered from {self.next_number}"
        )


def sqlite_folder(storage: str) -> Path | None:
    """The folder of an SQLite storage URL's file (None for other storages or in memory)."""
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).parent


def settle_study(storage: str, study_name: str | None, n_trials: int) -> StudyProgress:
    """Mark the interrupted trials of ``study_name`` in ``storage`` (enqueueing their
    parameters again) and say how many of ``n_trials`` are left; a missing study is new.

    The folder of an SQLite file is created (Optuna creates the file, not its folder). A
    storage that cannot be opened (an unwritable folder, a file that is not a database, a bad
    URL) is a ValueError naming ``hydra.sweeper.storage``, before any trial runs.
    """
    try:
        folder = sqlite_folder(storage)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        names = {s.study_name for s in optuna.get_all_study_summaries(storage=storage)}
    except Exception as error:  # OSError, sqlalchemy's errors, ImportError of a DB driver
        reason = (str(error).splitlines() or [""])[0]
        raise ValueError(
            f"hydra.sweeper.storage={storage!r} cannot be opened ({type(error).__name__}: {reason})"
        ) from None
    if study_name not in names:
        return StudyProgress(study_name, 0, 0, n_trials, 0)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    interrupted = [t for t in trials if t.state == TrialState.RUNNING]
    before = set(study.user_attrs.get(INTERRUPTED, []))
    for trial in interrupted:
        study.tell(trial.number, state=TrialState.FAIL)
        with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(trial.params)
    if interrupted:
        study.set_user_attr(INTERRUPTED, sorted(before | {t.number for t in interrupted}))
    ended = sum(1 for t in trials if t.state in _ENDED and t.number not in before)
    return StudyProgress(
        study_name,
        ended=ended,
        interrupted=len(interrupted),
        to_run=max(0, n_trials - ended),
        next_number=len(trials),
    )
