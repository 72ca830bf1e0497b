"""What a run prints: the validation and training lines, the config tree, the known noise."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

from omegaconf import OmegaConf
from rich.console import Console

from balanced_align import watch
from balanced_align.config_tree import print_config_tree
from balanced_align.quiet import ModelSummary, silence_known_noise
from balanced_align.watch import training_line, validation_line

VAL = {
    "val/rank1": 0.217,
    "val/verif_acc": 0.81,
    "val/verif_acc_std": 0.03,
    "val/anme": 0.303,
    "val/anme_failed_frac": 0.16,
    "val/folded_frac": 0.06,
    "train/loss": 9.0,
}


def test_the_validation_line_is_the_issues_example():
    expected = "[val e5] rank1 0.217  verif 0.810±0.03  anme 0.303  failed 16%  folded 6%"
    assert validation_line(VAL, 5) == expected


def test_absent_metrics_are_left_out_and_an_undefined_anme_reads_nan():
    metrics = {"val/rank1": 0.5, "val/anme": math.nan, "val/anme_failed_frac": 1.0}
    assert validation_line(metrics, 0) == "[val e0] rank1 0.500  anme nan  failed 100%"
    assert validation_line({"test/rank1": 0.25}, 2, "test") == "[test e2] rank1 0.250"


def test_the_training_line_reads_step_metrics_of_either_name():
    metrics = {"train/loss_step": 3.4121, "train/l_fr": 3.2, "train/lr": 0.0125}
    line = training_line(metrics, epoch=1, step=120, images_per_s=411.6)
    assert line == "[train e1 s120] loss 3.412  l_fr 3.2  lr 0.0125  412 img/s"


def test_the_litlogger_tip_is_dropped_and_other_lines_kept(caplog):
    silence_known_noise()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=rank_zero.name):
        rank_zero.info("💡 Tip: For seamless cloud logging and experiment tracking, try litlogger")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_the_model_summary_has_no_flops(monkeypatch):
    console = Console(record=True, width=120)
    monkeypatch.setattr("rich.get_console", lambda: console)
    data = [
        (" ", ["0", "1"]),
        ("Name", ["recognizer", "head"]),
        ("Type", ["AlignedRecognizer", "AMSoftmax"]),
        ("Params", ["281 K", "256"]),
        ("Mode", ["train", "train"]),
        ("FLOPs", ["0", "0"]),
    ]
    ModelSummary.summarize(data, 281_512, 281_512, 1.129, {"train": 154, "eval": 0}, 0)
    text = console.export_text()
    assert "recognizer" in text and "AMSoftmax" in text
    assert "Trainable params: 281 K, non-trainable: 0," in text and "154/0" in text
    assert "FLOPs" not in text


def test_the_config_tree_is_printed_and_saved_resolved(tmp_path, capsys):
    cfg = OmegaConf.create(
        {"seed": 3, "loss": {"lambda": "${seed}"}, "model": {"width": 0.5}, "task_name": "t"}
    )
    path = print_config_tree(cfg, tmp_path)
    saved = path.read_text()
    assert path == tmp_path / "config_tree.log"
    assert "lambda: 3" in saved and "width: 0.5" in saved  # resolved values
    assert saved.index("model") < saved.index("loss")  # groups in the documented order
    assert "lambda: 3" in capsys.readouterr().out


def test_lightnings_own_console_handler_goes_when_the_root_logger_has_handlers(monkeypatch):
    """Under Hydra the root logger writes the console and train.log: Lightning's handler would
    print every line a second time."""
    import lightning  # noqa: F401  (adds its handler at import)

    root, own = logging.getLogger(), logging.getLogger("lightning")
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
    monkeypatch.setattr(own, "handlers", [logging.StreamHandler(), logging.NullHandler()])
    silence_known_noise()
    assert [type(h) for h in own.handlers] == [logging.NullHandler] and own.propagate


def test_the_training_line_counts_the_images_of_every_rank(monkeypatch, caplog):
    """Under DDP each rank trains on its own batches: 2 ranks × 3 steps × 4 images in 2 s."""
    clock = iter([0.0, 0.0, 2.0, 2.0])  # built, train start, the line, its reset
    monkeypatch.setattr(watch.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(
        global_step=0,
        is_global_zero=True,
        world_size=2,
        current_epoch=0,
        callback_metrics={"train/loss": 1.0},
    )
    watcher = watch.RunWatcher(every_n_steps=3, training_lines=True)
    watcher.on_train_start(trainer, None)
    for step in range(3):
        watcher.on_train_batch_start(trainer, None, None, step)
        watcher.on_train_batch_end(trainer, None, None, {"image": [0] * 4}, step)
        trainer.global_step = step + 1
    with caplog.at_level(logging.INFO, logger="balanced_align.watch"):
        watcher.on_train_batch_start(trainer, None, None, 3)
    assert caplog.messages == ["[train e0 s3] loss 1  12 img/s"]
