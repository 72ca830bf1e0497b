"""Hostile inputs to ``train.py``: a bad config value or file is one line naming the key or
the file, found before any data is read (balanced_align.input_errors)."""

import logging
import logging.config
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from balanced_align.input_errors import InputError, report
from balanced_align.training import validate
from tests.training_helpers import compose_train


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.head=partial_fc_am", "loss.sample_rate=0"], r"loss\.sample_rate must be in"),
        (["loss.head=partial_fc_am", "loss.sample_rate=nan"], r"loss\.sample_rate .*nan"),
        (["loss.head=am_softmax", "loss.sample_rate=0.5"], r"loss\.head=am_softmax needs 1\.0"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        validate(compose_train(overrides))


def test_model_pretrained_is_checked_with_the_config(tmp_path):
    """A folder or a missing file fails in validate, before the data are prepared."""
    with pytest.raises(IsADirectoryError, match=r"model\.pretrained '.*' is a directory"):
        validate(compose_train([f"model.pretrained={tmp_path}"]))
    with pytest.raises(FileNotFoundError, match=r"model\.pretrained '.*nope\.pth' does not"):
        validate(compose_train([f"model.pretrained={tmp_path / 'nope.pth'}"]))


def test_only_input_errors_lose_their_traceback(caplog):
    log = logging.getLogger("test_input_errors")
    with caplog.at_level(logging.ERROR):
        report(InputError("loss.sample_rate must be in (0, 1], got 0.0"), log)  # not a run
        report(RuntimeError("a bug"), log)
    first, second = caplog.records
    assert first.getMessage() == "the job failed: loss.sample_rate must be in (0, 1], got 0.0"
    assert first.exc_info is None
    assert second.exc_info is not None  # a bug keeps its traceback


def test_the_command_line_prints_one_line_and_exits_1(repo_root, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(repo_root / "train.py"),
            "loss.head=partial_fc_am",
            "loss.sample_rate=1.5",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "the job failed: loss.sample_rate must be in (0, 1], got 1.5" in output
    assert "the job failed: loss.sample_rate" in (tmp_path / "train.log").read_text()


def test_debug_presets_keep_third_party_loggers_at_info():
    """``debug=…`` logs balanced_align at DEBUG, not PIL's line per PNG chunk decoded."""
    cfg = compose_train(["debug=limit"], with_hydra=True)
    job_logging = cfg.hydra.job_logging  # its levels (the handlers need a run dir)
    logging_config = {
        "version": 1,
        "root": {"level": job_logging.root.level},
        "loggers": OmegaConf.to_container(job_logging.loggers),
    }
    saved = {name: logging.getLogger(name).level for name in ("", "PIL", "matplotlib")}
    try:
        logging.config.dictConfig({**logging_config, "disable_existing_loggers": False})
        assert logging.getLogger("balanced_align.training").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("PIL.PngImagePlugin").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("matplotlib.font_manager").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
