"""RunResult: the results.json schema shared by the training job and the report."""

from __future__ import annotations

import json
import math
import os

import pytest

from balanced_align import run_result
from balanced_align.run_result import SCHEMA_VERSION, RunResult, RunResultError


def _result(**fields) -> RunResult:
    values = dict(
        run="tps@fmap λ=3.0 seed=1",
        method="tps",
        tps_grid_size=8,
        location="fmap",
        lambda_=3.0,
        seed=1,
        val={"rank1": 0.5, "anme": math.nan},
        test={"rank1": 0.25, "verif_acc": math.inf},
        best_checkpoint="/x/checkpoints/best-epoch01.ckpt",
        epochs=2,
        global_step=8,
        wall_time_s=1.5,
        config={"loss.lambda": 3.0, "align.method": "tps", "trainer.devices": [0, 1]},
        results_path="/x/results.json",
    )
    values.update(fields)
    return RunResult(**values)


def test_round_trip_writes_version_and_nulls_for_non_finite_metrics(tmp_path):
    path = _result().to_json(tmp_path / "results.json")
    raw = json.loads(path.read_text())  # plain JSON: no NaN / Infinity tokens
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["lambda"] == 3.0 and "lambda_" not in raw
    assert raw["val"] == {"rank1": 0.5, "anme": None}
    assert raw["test"] == {"rank1": 0.25, "verif_acc": None}
    back = RunResult.from_json(path)
    expected = _result(val={"rank1": 0.5, "anme": None}, test={"rank1": 0.25, "verif_acc": None})
    assert back == expected
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


class _Killed(BaseException):
    """Stands for the job being stopped (SIGTERM, Ctrl-C) in the middle of a write."""


class _OsThatDiesInFsync:
    """``os`` for run_result only, stopping once the new text is written, before the rename."""

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd):
        raise _Killed


def test_a_write_that_dies_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = _result(seed=0).to_json(tmp_path / "results.json")
    before = path.read_bytes()
    monkeypatch.setattr(run_result, "os", _OsThatDiesInFsync())
    with pytest.raises(_Killed):
        _result(seed=1).to_json(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    monkeypatch.undo()
    _result(seed=1).to_json(path)
    assert RunResult.from_json(path).seed == 1


def test_truncated_file_names_the_file(tmp_path):
    (tmp_path / "job").mkdir()
    path = _result().to_json(tmp_path / "job" / "results.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RunResultError, match=r"job/results\.json: not valid JSON"):
        RunResult.from_json(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("seed"), r"missing key\(s\) \['seed'\]"),
        (lambda d: d.pop("best_checkpoint"), r"missing key\(s\) \['best_checkpoint'\]"),
        (lambda d: d.update(seed="0"), r"'seed' must be int, got '0'"),
        (lambda d: d.update(epochs=True), r"'epochs' must be int"),
        (lambda d: d.update(val=[0.5]), r"'val' must be a dict of metrics"),
        (lambda d: d["test"].update(rank1="high"), r"test metric 'rank1' must be a number"),
        (lambda d: d.update(config=[1]), r"'config' must be a JSON object"),
        (lambda d: d.update(rnak1=1), r"unknown key\(s\) \['rnak1'\]"),
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this balanced-align"),
        (lambda d: d.update(schema_version="1"), "schema_version must be an integer"),
    ],
)
def test_bad_files_are_refused_naming_file_and_key(tmp_path, edit, message):
    path = _result().to_json(tmp_path / "results.json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RunResultError, match=message) as err:
        RunResult.from_json(path)
    assert str(path) in str(err.value)


def test_not_an_object_and_unreadable(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("[1, 2]")
    with pytest.raises(RunResultError, match="expected a JSON object, got list"):
        RunResult.from_json(path)
    with pytest.raises(RunResultError, match="cannot be read"):
        RunResult.from_json(tmp_path / "missing.json")


def test_files_from_before_the_schema_read_with_keys_from_the_config(tmp_path):
    path = tmp_path / "results.json"
    legacy = {
        "run": "old",
        "val": {"rank1": 0.5},
        "config": {"align.method": "tps", "align.location": "input", "loss.lambda": 1, "seed": 2},
    }
    path.write_text(json.dumps(legacy))
    result = RunResult.from_json(path)
    assert (result.method, result.location, result.lambda_, result.seed) == ("tps", "input", 1, 2)
    assert result.schema_version == 0 and result.test == {} and result.epochs is None
    del legacy["config"]["seed"]
    path.write_text(json.dumps(legacy))
    with pytest.raises(RunResultError, match=r"missing key\(s\) \['seed'\]"):
        RunResult.from_json(path)


def test_the_best_checkpoints_val_metrics_are_kept_apart_from_the_last_validation(tmp_path):
    result = _result(val_best={"rank1": 0.75, "anme": math.nan}, tested="best_checkpoint")
    raw = json.loads(result.to_json(tmp_path / "results.json").read_text())
    assert raw["val"] == {"rank1": 0.5, "anme": None}  # the last validation
    assert raw["val_best"] == {"rank1": 0.75, "anme": None}  # the tested weights' validation
    assert raw["tested"] == "best_checkpoint"
    back = RunResult.from_json(tmp_path / "results.json")
    assert back.val_best == {"rank1": 0.75, "anme": None} and back.tested == "best_checkpoint"


def test_version_1_files_read_without_val_best_and_tested(tmp_path):
    data = _result().to_dict()
    del data["val_best"], data["tested"]
    data["schema_version"] = 1
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    back = RunResult.from_json(path)
    assert back.schema_version == 1 and back.val_best == {} and back.tested is None
    assert back.val == {"rank1": 0.5, "anme": None}
    data["schema_version"] = 2  # the same keys are incomplete for version 2
    path.write_text(json.dumps(data))
    with pytest.raises(RunResultError, match=r"missing key\(s\) \['val_best', 'tested'\]"):
        RunResult.from_json(path)


def test_tested_names_one_of_the_known_weights(tmp_path):
    data = _result(tested="best_checkpoint").to_dict()
    data["tested"] = "final"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RunResultError, match="'tested' must be one of"):
        RunResult.from_json(path)
