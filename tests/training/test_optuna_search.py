"""``hparams_search=lambda_optuna``: a TPE search over λ that resumes from its SQLite storage.

The end-to-end test runs ``train.py -m`` in a subprocess (as a user would), reads the study
back with Optuna and the runs with ``report``, and checks the two agree.
"""

from __future__ import annotations

import ast

import optuna
import pytest
from optuna.trial import TrialState

from balanced_align.report.cli import main as report_main
from balanced_align.run_result import RunResult
from hydra_plugins.balanced_align_optuna._study import INTERRUPTED, settle_study, sqlite_folder
from tests.training_helpers import TINY, compose_train, multirun

#: a tiny run with a learned warp (λ > 0 needs one), no test split, no figures
FAST_STN = [*TINY, "align=stn_affine", "test=false", "figures=false"]


def _study(path, name="lambda"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


def _search(repo_root, cwd, sweep_dir, n_trials):
    done = multirun(
        repo_root,
        cwd,
        "hparams_search=lambda_optuna",
        *FAST_STN,
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _jobs(sweep_dir) -> dict[int, RunResult]:
    return {
        int(p.parent.name.split("_")[0]): RunResult.from_json(p)
        for p in sweep_dir.glob("*/results.json")
    }


@pytest.mark.slow
def test_a_search_resumes_from_its_storage_and_reaches_the_report(tmp_path, repo_root):
    sweep = tmp_path / "search"
    _search(repo_root, tmp_path, sweep, n_trials=3)
    study = _study(sweep / "optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    jobs = _jobs(sweep)
    assert sorted(jobs) == [0, 1, 2]
    # job n is trial n: its λ and its val/rank1 (optimized_metric) are the trial's
    for trial in study.trials:
        result = jobs[trial.number]
        assert result.lambda_ == pytest.approx(trial.params["loss.lambda"])
        assert 0 <= result.lambda_ <= 8
        # the sweeper is told the best checkpoint's validation (the model the run delivers)
        assert (result.val_best or result.val)["rank1"] == pytest.approx(trial.value)
    assert sorted(p.name.split("=")[0] for p in sweep.glob("[0-9]*")) == [
        "0_loss.lambda",
        "1_loss.lambda",
        "2_loss.lambda",
    ]
    finished = {p: p.read_bytes() for p in sweep.glob("*/results.json")}

    # a launch killed during its 4th trial leaves it RUNNING in the storage
    cut = study.ask()
    cut_lambda = cut.suggest_float("loss.lambda", 0.0, 8.0)
    log = _search(repo_root, tmp_path, sweep, n_trials=4)
    assert "resuming, 3 trials ended, 1 interrupted" in log
    study = _study(sweep / "optuna.db")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL, TrialState.COMPLETE]
    assert study.user_attrs[INTERRUPTED] == [3]
    # the finished trials did not run again; the cut one ran as trial 4, at its λ
    assert {p: p.read_bytes() for p in finished} == finished
    jobs = _jobs(sweep)
    assert sorted(jobs) == [0, 1, 2, 4]
    assert jobs[4].lambda_ == pytest.approx(cut_lambda)
    assert jobs[4].val["rank1"] == pytest.approx(study.trials[4].value)

    # a complete search launched again runs nothing
    _search(repo_root, tmp_path, sweep, n_trials=4)
    assert len(_study(sweep / "optuna.db").trials) == 5

    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out)]) == 0
    runs = (out / "runs.csv").read_text()
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            assert f"{trial.params['loss.lambda']}" in runs


def test_settle_study_counts_the_ended_trials_and_requeues_the_interrupted(tmp_path):
    storage = f"sqlite:///{tmp_path}/new/folder/s.db"
    fresh = settle_study(storage, "s", n_trials=5)
    assert (fresh.ended, fresh.to_run, fresh.next_number) == (0, 5, 0)
    assert (tmp_path / "new" / "folder").is_dir()

    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (0.5, 0.25):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1) * 0 + value)
    failed = study.ask()
    failed.suggest_float("x", 0, 1)
    study.tell(failed, state=TrialState.FAIL)  # failed on its own: counts
    running = study.ask()
    x = running.suggest_float("x", 0, 1)

    progress = settle_study(storage, "s", n_trials=5)
    assert (progress.ended, progress.interrupted, progress.to_run) == (3, 1, 2)
    assert progress.next_number == 4
    # read afresh (the study object caches the trial it asked for as running)
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.trials[3].state == TrialState.FAIL
    retried = study.ask()
    assert retried.suggest_float("x", 0, 1) == x  # the interrupted point comes back first
    study.tell(retried, 1.0)
    # settled again, the interrupted trial still does not count as ended
    again = settle_study(storage, "s", n_trials=5)
    assert (again.ended, again.interrupted, again.to_run, again.next_number) == (4, 0, 1, 5)
    assert study.user_attrs[INTERRUPTED] == [3]


def test_sqlite_folder_of_storage_urls(tmp_path):
    assert sqlite_folder(f"sqlite:///{tmp_path}/a/b.db") == tmp_path / "a"
    assert str(sqlite_folder("sqlite:///rel/b.db")) == "rel"
    assert sqlite_folder("sqlite:///:memory:") is None
    assert sqlite_folder("postgresql://u@h/db") is None


@pytest.mark.parametrize("kind", ["a file as folder", "not a database", "not a URL"])
def test_a_storage_that_cannot_be_opened_names_the_key(tmp_path, kind):
    (tmp_path / "file").write_bytes(b"not sqlite " * 100)
    storage = {
        "a file as folder": f"sqlite:///{tmp_path}/file/optuna.db",
        "not a database": f"sqlite:///{tmp_path}/file",
        "not a URL": "optuna.db",
    }[kind]
    with pytest.raises(ValueError, match=r"hydra\.sweeper\.storage=.* cannot be opened") as info:
        settle_study(storage, "s", n_trials=2)
    assert storage in str(info.value)


def test_the_search_config_composes_with_a_resumable_sqlite_storage():
    cfg = compose_train(["hparams_search=lambda_alpha_lr_optuna"], with_hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("ResumableOptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/rank1"
    assert sweeper.storage.startswith("sqlite:///") and sweeper.storage.endswith("/optuna.db")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    # the searched keys exist in the composed job config
    for key in sweeper.params:
        group, _, name = key.partition(".")
        assert name in cfg[group], key


def test_the_plugin_imports_no_project_code_and_only_hydra_at_start_up(repo_root):
    """Hydra imports every module of ``hydra_plugins`` when it starts (private ``_*`` modules
    only when used): the sweeper module must load without optuna, and no plugin module may
    pull the project in (docs/design.md §6)."""
    plugin = repo_root / "src" / "hydra_plugins" / "balanced_align_optuna"
    for path in plugin.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            assert not [n for n in names if n.split(".")[0] == "balanced_align"], path.name
    top_level = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.parse((plugin / "resumable_sweeper.py").read_text()).body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert {name.split(".")[0] for name in top_level} <= {
        "__future__",
        "logging",
        "pathlib",
        "typing",
        "hydra",
        "omegaconf",
    }
