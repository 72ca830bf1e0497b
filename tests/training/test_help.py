"""``train.py --help`` and ``eval.py --help``: Hydra's help templates (conf/hydra/help/)."""

import subprocess
import sys

from tests.training_helpers import CONF_DIR


def _help(repo_root, script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(repo_root / script), "--help"],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=300,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stdout


def _options(group: str) -> list[str]:
    from pathlib import Path

    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_train_help_names_every_training_group_option_and_tab_completion(repo_root):
    text = _help(repo_root, "train.py")
    groups = ("data", "model", "align", "loss", "optim", "trainer", "logger", "callbacks")
    groups += ("paths", "experiment", "hparams_search", "debug")
    for group in groups:
        line_start = f"\n{group} "
        assert line_start in text, group
        for option in _options(group):
            assert option in text, f"{group}={option} is missing from conf/hydra/help/train.yaml"
    assert "\nbenchmark " not in text  # eval.py's group
    assert "loss.lambda" in text and "align.location" in text
    assert "-sc install=bash" in text


def test_eval_help_without_a_benchmark_prints_no_traceback(repo_root):
    text = _help(repo_root, "eval.py")
    for option in _options("benchmark"):
        assert option in text
    assert "ckpt_path" in text and "-sc install=bash" in text
