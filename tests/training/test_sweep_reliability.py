"""Sweeps that start with many overrides, keep going past a failing job, and resume.

The multirun runs ``train.py`` in a subprocess with Hydra's default job directory names and
the two dozen overrides of ``TINY`` (their ``override_dirname`` alone is longer than a file
name may be).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from balanced_align.run_result import RunResult
from balanced_align.training import flatten, plain, run
from tests.training_helpers import TINY, compose_train

#: the fastest tiny run: no alignment to learn, no test split, no figures
FAST = [*TINY, "align=none", "test=false", "figures=false"]


def _sweep(repo_root, cwd, sweep_dir, *extra):
    command = [
        sys.executable,
        str(repo_root / "train.py"),
        "-m",
        *FAST,
        "loss.lambda=0,-1",  # -1: the bad value; its jobs fail, the others go on
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_long_sweep_names_jobs_by_swept_keys_survives_a_failing_job_and_resumes(
    tmp_path, repo_root
):
    sweep = tmp_path / "sweep"
    done = _sweep(repo_root, tmp_path, sweep)
    assert "File name too long" not in done.stderr
    assert done.returncode != 0  # Hydra reports the failed jobs after running all of them
    assert "loss.lambda must be a finite number >= 0" in done.stdout + done.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == [
        "0_loss.lambda=0,seed=0",
        "1_loss.lambda=0,seed=1",
        "2_loss.lambda=-1,seed=0",
        "3_loss.lambda=-1,seed=1",
    ]
    # the failing jobs did not stop the others, which wrote complete results
    for name, seed in (("0_loss.lambda=0,seed=0", 0), ("1_loss.lambda=0,seed=1", 1)):
        result = RunResult.from_json(sweep / name / "results.json")
        assert (result.lambda_, result.seed) == (0.0, seed)
        assert {"rank1", "verif_acc"} <= set(result.val)
    assert not list(sweep.glob("[23]_*/results.json"))
    overrides = (sweep / "0_loss.lambda=0,seed=0" / ".hydra" / "overrides.yaml").read_text()
    assert "model.width=0.125" in overrides  # every override is kept there

    # job 1 was "killed while writing": re-launching with resume_sweep=true runs it again
    # and skips job 0, whose results.json is complete
    kept = (sweep / "0_loss.lambda=0,seed=0" / "results.json").read_bytes()
    truncated = sweep / "1_loss.lambda=0,seed=1" / "results.json"
    truncated.write_bytes(truncated.read_bytes()[:100])
    again = _sweep(repo_root, tmp_path, sweep, "resume_sweep=true")
    log = again.stdout + again.stderr
    assert again.returncode != 0  # λ = -1 still fails
    assert (sweep / "0_loss.lambda=0,seed=0" / "results.json").read_bytes() == kept
    assert "0_loss.lambda=0,seed=0/results.json is complete; this job is skipped" in log
    assert "1_loss.lambda=0,seed=1/results.json: not valid JSON" in log
    assert RunResult.from_json(truncated).seed == 1
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == jobs


def _complete_result(cfg, output_dir) -> RunResult:
    """A finished run's results.json for ``cfg`` (no training: the job must not train)."""
    result = RunResult(
        method="none",
        location=cfg.align.location,
        lambda_=0.0,
        seed=cfg.seed,
        val={"rank1": 0.5},
        val_best={"rank1": 0.625},
        config=json.loads(json.dumps(flatten(plain(cfg)), default=str)),
    )
    result.to_json(output_dir / "results.json")
    return result


def test_resume_sweep_skips_a_complete_job_without_training(tmp_path):
    cfg = compose_train([*FAST, "loss.lambda=0", "resume_sweep=true"], output_dir=tmp_path)
    before = _complete_result(
        compose_train([*FAST, "loss.lambda=0"], output_dir=tmp_path), tmp_path
    )
    assert run(cfg) == 0.625  # optimized_metric val/rank1 of the best checkpoint, read back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # nothing trained
    assert RunResult.from_json(tmp_path / "results.json") == before


def test_resume_sweep_refuses_a_result_of_another_config(tmp_path):
    _complete_result(
        compose_train([*FAST, "loss.lambda=0", "seed=1"], output_dir=tmp_path), tmp_path
    )
    cfg = compose_train([*FAST, "loss.lambda=0", "resume_sweep=true"], output_dir=tmp_path)
    with pytest.raises(
        ValueError, match=r"results\.json was written by another config \(.*\bseed: 1 -> 0"
    ):
        run(cfg)
