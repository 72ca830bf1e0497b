"""Watching a run (issue 14): lines in a redirected log, debug presets, W&B and TensorBoard.

W&B has no server here: runs are offline and their ``.wandb`` transaction logs are read back.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from balanced_align.training import run
from tests.training.test_sweep_wandb_ddp import _finished_wandb_records
from tests.training_helpers import TINY, compose_train

#: TINY without its logger choice (each test picks one)
SMALL = [o for o in TINY if not o.startswith("logger=")] + ["figures=false"]


def test_a_redirected_run_logs_val_lines_once_and_tensorboard_holds_the_final_metrics(
    tmp_path, repo_root
):
    """stdout to a file (nohup, SLURM): the val and training lines are in it and in train.log,
    no line twice, no known noise; the paths at the end; TensorBoard's HParams hold the final
    metrics, in the same event file as the training and test curves."""
    out = tmp_path / "run"
    overrides = [
        o
        for o in SMALL
        if not o.startswith("~")  # hydra's command line: keep the callbacks
    ] + [
        "callbacks.rich_progress_bar=null",
        "callbacks.run_watcher.every_n_steps=2",
        "logger=tensorboard",
        f"hydra.run.dir={out}",
    ]
    stdout = tmp_path / "stdout.txt"
    with stdout.open("w") as file:
        done = subprocess.run(
            [sys.executable, str(repo_root / "train.py"), *overrides],
            stdout=file,
            stderr=subprocess.STDOUT,
            cwd=repo_root,
            timeout=900,
        )
    text = stdout.read_text()
    assert done.returncode == 0, text[-3000:]
    log = (out / "train.log").read_text()
    for where in (text, log):
        assert "[val e0] rank1 " in where and "anme " in where and "failed " in where
        assert "[train e0 s2] loss " in where and "img/s" in where
        assert "[test e" in where
    assert text.count("Seed set to 0") == 1  # Lightning's handler and Hydra's: one kept
    assert "litlogger" not in text and "Total FLOPs" not in text and "LeafSpec" not in text
    results = json.loads((out / "results.json").read_text())
    assert f"results      {out / 'results.json'}" in text and "config tree " in text
    assert "lambda: 3.0" in (out / "config_tree.log").read_text()
    # one validation: the best checkpoint's validation is the last one
    assert results["tested"] == "best_checkpoint"
    assert results["val_best"] == results["val"] and results["val"]["rank1"] is not None

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    (events,) = (out / "tensorboard").rglob("events.out.tfevents.*")  # fit and test: one file
    acc = EventAccumulator(str(events))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss_epoch", "val/rank1", "test/rank1", "best/val/anme"} <= scalars
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"best/val/rank1", "best/val/anme", "best/test/rank1", "best/test/anme"} <= metric_tags
    assert "hp_metric" not in metric_tags
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["loss.lambda"].number_value == 3.0
    assert start.hparams["align.location"].string_value == "fmap"
    (best_rank1,) = acc.Scalars("best/val/rank1")
    assert best_rank1.value == pytest.approx(results["val_best"]["rank1"])


@pytest.mark.parametrize("preset", ["fdr", "limit", "overfit", "profiler"])
def test_every_debug_preset_composes_to_a_valid_trainer(tmp_path, preset):
    from hydra.utils import instantiate

    from balanced_align.training import validate

    cfg = compose_train([f"debug={preset}"], output_dir=tmp_path)
    validate(cfg)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    assert cfg.task_name == "debug" and cfg.logger is None and not cfg.figures
    assert trainer.num_devices == 1 and cfg.data.num_workers == 0
    expected = {
        "fdr": lambda t: t.fast_dev_run == 1,
        "limit": lambda t: t.limit_train_batches == 2 and t.limit_val_batches == 0.5,
        "overfit": lambda t: t.overfit_batches == 2 and t.checkpoint_callback is None,
        # anomaly mode (the other presets' NaN check) would be what the profile times
        "profiler": lambda t: (
            type(t.profiler).__name__ == "SimpleProfiler" and not t._detect_anomaly
        ),
    }
    assert expected[preset](trainer)


@pytest.mark.parametrize(
    ("preset", "extra"),
    [("fdr", []), ("overfit", ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1"])],
)
def test_debug_presets_run_on_part_of_the_evaluation_set(tmp_path, caplog, preset, extra):
    cfg = compose_train([*TINY, f"debug={preset}", "print_config=false", *extra], tmp_path)
    assert cfg.task_name == "debug" and cfg.logger is None
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["tested"] == "last" and results["best_checkpoint"] is None
    assert 0 <= results["val"]["rank1"] <= 1 and 0 <= results["test"]["rank1"] <= 1
    # fewer rows than the set: the protocol was restricted, and said so
    assert any("its protocol is restricted" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def _items(items) -> dict:
    """W&B record items as ``{"a/b": value}`` (an item names its key or its nested path)."""
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def test_wandb_offline_holds_flat_config_named_tagged_run_and_the_scatter(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose_train([*SMALL, "logger=wandb", "test=false"], output_dir=tmp_path)
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    config, summary, history, runs, panels = {}, {}, {}, [], {}
    for record in _finished_wandb_records(next(offline.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                if item.key:
                    config[item.key] = json.loads(item.value_json)
                else:  # W&B's own nested keys: the scatter plot's panel
                    panels[tuple(item.nested_key)] = json.loads(item.value_json)
        elif kind == "summary":
            summary.update(_items(record.summary.update))
            for item in record.summary.remove:
                summary.pop(item.key or "/".join(item.nested_key), None)
        elif kind == "history":
            history.update(_items(record.history.item))
        elif kind == "run":
            runs.append(record.run)
    config.pop("_wandb", None)
    # only the run's flat config: no nested groups, no template_init from the module
    assert set(config) == set(results["config"])
    assert not any(isinstance(v, dict) for v in config.values())
    # named and tagged from the run
    assert runs[0].display_name == "tps@fmap λ=3.0 synthfaces"
    assert {"method=tps", "location=fmap", "lambda=3.0", "data=synthfaces"} <= set(runs[0].tags)
    # the summary: the best checkpoint's validation, no NaN
    assert summary["best/val/rank1"] == pytest.approx(results["val_best"]["rank1"])
    assert summary["best/val/anme_failed_frac"] == pytest.approx(
        results["val_best"]["anme_failed_frac"]
    )
    numbers = [v for v in summary.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    # the ANME vs rank-1 table behind the scatter plot
    assert history["anme_vs_rank1_table/_type"] == "table-file"
    table = json.loads((offline / "files" / history["anme_vs_rank1_table/path"]).read_text())
    assert table["columns"] == ["run", "stage", "anme", "rank1", "anme_failed_frac"]
    val_best = results["val_best"]
    assert table["data"] == [
        [results["run"], "val", val_best["anme"], val_best["rank1"], val_best["anme_failed_frac"]]
    ]
    panel = panels[("_wandb", "visualize", "anme_vs_rank1")]
    assert panel["panel_config"]["fieldSettings"] == {"x": "anme", "y": "rank1"}


def test_what_a_run_prints_does_not_make_a_finished_sweep_job_run_again(tmp_path):
    """resume_sweep compares configs: a job finished before the run lines existed (no
    print_config, no run_watcher) is still complete; a changed λ is still refused."""
    from balanced_align.run_result import RunResult
    from balanced_align.training import completed_result

    before = {"loss.lambda": 3.0, "seed": 0, "callbacks.rich_model_summary._target_": "x.Old"}
    path = RunResult(method="tps", location="fmap", lambda_=3.0, seed=0, config=before).to_json(
        tmp_path / "results.json"
    )
    now = {
        **before,
        "print_config": True,
        "callbacks.run_watcher.every_n_steps": 50,
        "callbacks.rich_model_summary._target_": "balanced_align.quiet.ModelSummary",
    }
    assert completed_result(path, now) is not None
    with pytest.raises(ValueError, match=r"loss\.lambda"):
        completed_result(path, {**now, "loss.lambda": 1.0})
