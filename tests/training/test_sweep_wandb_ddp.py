"""Hydra multirun in a subprocess, W&B offline, and DDP gathering on CPU."""

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from balanced_align import BalancedAlignModule
from balanced_align.training import plain, run
from tests.training_helpers import TINY, compose_train


def test_multirun_lambda_sweep_writes_one_results_json_per_job(tmp_path, repo_root):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(repo_root / "train.py"),
        "-m",
        "loss.lambda=0,1",
        *TINY,
        "test=false",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=job${hydra.job.num}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(sweep.glob("job*/results.json"))
    assert [p.parent.name for p in jobs] == ["job0", "job1"]
    lambdas = [json.loads(p.read_text())["lambda"] for p in jobs]
    assert lambdas == [0.0, 1.0]
    for path in jobs:
        results = json.loads(path.read_text())
        assert {"rank1", "anme", "verif_acc"} <= set(results["val"])
        assert results["config"]["loss.lambda"] in (0, 1)


def _wandb_records(path: Path):
    """Records of an offline run's ``.wandb`` file (LevelDB-style log of protobuf records:
    a 7-byte header, then chunks of crc32 (4), length (2), type (1: full, 2–4: split)).
    Stops at a chunk that is not fully written yet."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, block, buffer = 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # block trailer padding
            position += left
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        if position + 7 + length > len(data):
            return
        buffer += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buffer)
            buffer = b""
            yield record


def _finished_wandb_records(path: Path, timeout_s: float = 60.0) -> list:
    """All records of an offline run once its ``exit`` record is on disk. ``wandb.finish``
    can return while W&B's service process is still flushing the file (seen under load)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(_wandb_records(path))
        kinds = [record.WhichOneof("record_type") for record in records]
        if "exit" in kinds:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout_s} s: {kinds[-20:]}")
        time.sleep(0.2)


def test_wandb_offline_run_logs_flat_config_and_final_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose_train([*TINY, "logger=wandb", "test=false"], output_dir=tmp_path)
    run(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    summary, config = {}, {}
    for record in _finished_wandb_records(next(runs[0].glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            summary.update(
                {item.key: json.loads(item.value_json) for item in record.summary.update}
            )
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    results = json.loads((tmp_path / "results.json").read_text())
    assert "val/anme" in summary, sorted(summary)
    assert summary["val/anme"] == pytest.approx(results["val"]["anme"])
    assert summary["val/rank1"] == pytest.approx(results["val"]["rank1"])
    assert config["loss.lambda"] == 3.0
    assert config["align.method"] == "tps" and config["align.location"] == "fmap"


def _module_and_data(tmp_path):
    cfg = compose_train(TINY, output_dir=tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    L.seed_everything(0)
    module = BalancedAlignModule(
        num_classes=datamodule.num_classes,
        model=plain(cfg.model),
        align=plain(cfg.align),
        loss=plain(cfg.loss),
        optim=plain(cfg.optim),
        template_init=datamodule.mean_frontal_landmarks(),
    )
    return module, datamodule


@pytest.mark.slow
def test_ddp_spawn_gathered_metrics_equal_single_process(tmp_path):
    module, datamodule = _module_and_data(tmp_path)
    kwargs = dict(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    single = L.Trainer(accelerator="cpu", devices=1, **kwargs).validate(
        module, datamodule=datamodule
    )[0]
    # 2 ranks: the sampler splits (and pads) the evaluation set; the collector gathers it back
    double = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", **kwargs).validate(
        module, datamodule=datamodule
    )[0]
    assert set(single) == set(double)
    for key, value in single.items():
        assert double[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key


@pytest.mark.slow
def test_ddp_spawn_training_with_lambda_zero(tmp_path):
    """λ = 0: T and α are frozen, so DDP's reducer does not wait for their gradients."""
    cfg = compose_train([*TINY, "loss.lambda=0"], output_dir=tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = BalancedAlignModule(
        num_classes=datamodule.num_classes,
        model=plain(cfg.model),
        align=plain(cfg.align),
        loss=plain(cfg.loss),
        optim=plain(cfg.optim),
        template_init=datamodule.mean_frontal_landmarks(),
    )
    assert not any(p.requires_grad for p in module.align_loss.parameters())
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    before = {k: v.clone() for k, v in module.recognizer.state_dict().items()}
    trainer.fit(module, datamodule=datamodule)  # raised "Expected to have finished reduction"
    assert trainer.state.finished
    after = module.recognizer.state_dict()  # ddp_spawn copies rank 0's weights back
    assert any(not torch.equal(before[k], after[k]) for k in before)
