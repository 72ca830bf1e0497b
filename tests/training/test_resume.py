"""Kill and resume: last.ckpt is the last epoch boundary, a resumed run ends bit-identical to an
uninterrupted one (map-style data and tar shards), and a resumed checkpoint cannot make the run
open (unpickle) other files.

Tiny runs: 32 training faces in batches of 8, so an epoch is 4 optimizer steps.
"""

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback

from balanced_align.checkpoints import UnsafeCheckpointError, read_checkpoint
from balanced_align.data.shards import convert_to_shards
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.training import SIGTERM_STATUS, run
from tests.training_helpers import TINY, compose_train

STEPS_PER_EPOCH = 4
FAST = [*TINY, "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0", "figures=false"]
#: the best checkpoint is epoch 0's by construction (the smallest step), whatever val/rank1 does
BEST_IS_FIRST = ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=min"]
HERE = "tests.training.test_resume"


class Interrupted(Exception):
    """What the test 'kill' raises."""


class StopAt(Callback):
    """Raise :class:`Interrupted` before the batch of ``global_step == step`` runs."""

    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_start(self, trainer, *_):
        if trainer.global_step == self.step:
            raise Interrupted(f"killed at step {self.step}")


#: what the resumed run held when training (re)started, by StopAt-free RecordRestored
RESTORED: dict = {}


class RecordRestored(Callback):
    """Keep the module, optimizer and scheduler state at ``on_train_start``."""

    def on_train_start(self, trainer, pl_module):
        RESTORED.update(
            state_dict={k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            optimizer=copy.deepcopy(trainer.optimizers[0].state_dict()),
            scheduler=copy.deepcopy(trainer.lr_scheduler_configs[0].scheduler.state_dict()),
            global_step=trainer.global_step,
            epoch=trainer.current_epoch,
        )


def _train(out, *overrides, test=False, base=FAST):
    cfg = compose_train([*base, *BEST_IS_FIRST, f"test={test}", *overrides], output_dir=out)
    run(cfg)
    return out / "checkpoints"


def _stop_at(step):
    return [f"+callbacks.stop._target_={HERE}.StopAt", f"+callbacks.stop.step={step}"]


def _assert_same(a, b, where=""):
    """Nested dicts / lists of tensors and numbers, bit-identical."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Run A: 2 epochs without interruption."""
    return _train(tmp_path_factory.mktemp("uninterrupted"))


def test_last_ckpt_is_the_last_epoch_even_when_the_best_is_the_first(uninterrupted):
    best = read_checkpoint(uninterrupted / "best-epoch00.ckpt")
    last = read_checkpoint(uninterrupted / "last.ckpt")
    assert best["epoch"] == 0 and not (uninterrupted / "best-epoch01.ckpt").exists()
    assert last["epoch"] == 1 and last["global_step"] == 2 * STEPS_PER_EPOCH
    # this run's own best checkpoint is accepted as the one to test
    results = json.loads((uninterrupted.parent / "results.json").read_text())
    assert results["best_checkpoint"] == str((uninterrupted / "best-epoch00.ckpt").resolve())


@pytest.mark.parametrize(
    ("kill_step", "workers"),
    [(STEPS_PER_EPOCH, 0), (STEPS_PER_EPOCH + 2, 0), (STEPS_PER_EPOCH + 2, 2)],
)
def test_kill_and_resume_from_last_ckpt_ends_bit_identical(
    tmp_path, uninterrupted, kill_step, workers
):
    """Killed at the epoch boundary (step 4) or mid-epoch (step 6), resumed from last.ckpt
    (epoch 0's end) to 2 epochs: weights, optimizer (momentum), LR schedule and step counters
    equal run A's exactly (torch.equal: same ops on the same CPU in the same order). Also
    with 2 persistent DataLoader workers, against run A's 0."""
    loader = [f"data.num_workers={workers}", f"data.persistent_workers={workers > 0}"]
    with pytest.raises(Interrupted):
        _train(tmp_path / "killed", *loader, *_stop_at(kill_step))
    killed = tmp_path / "killed" / "checkpoints"
    boundary = read_checkpoint(killed / "last.ckpt")
    assert boundary["epoch"] == 0 and boundary["global_step"] == STEPS_PER_EPOCH
    interrupted = read_checkpoint(killed / "interrupted.ckpt")  # the state at the kill
    assert interrupted["global_step"] == kill_step

    RESTORED.clear()
    resumed = _train(
        tmp_path / "resumed",
        *loader,
        f"ckpt_path={killed / 'last.ckpt'}",
        f"+callbacks.record._target_={HERE}.RecordRestored",
    )
    # the resume restored everything: weights (α logits and template included), optimizer
    # momentum, LR scheduler, counters
    keys = set(boundary["state_dict"])
    assert {"align_loss.alpha_logit", "align_loss.template"} <= keys
    _assert_same(RESTORED["state_dict"], boundary["state_dict"], "restored state_dict")
    _assert_same(RESTORED["optimizer"], boundary["optimizer_states"][0], "restored optimizer")
    _assert_same(RESTORED["scheduler"], boundary["lr_schedulers"][0], "restored scheduler")
    assert RESTORED["optimizer"]["state"], "no momentum buffers were restored"
    assert (RESTORED["global_step"], RESTORED["epoch"]) == (STEPS_PER_EPOCH, 1)

    expected, got = (
        read_checkpoint(uninterrupted / "last.ckpt"),
        read_checkpoint(resumed / "last.ckpt"),
    )
    _assert_same(got["state_dict"], expected["state_dict"], "final state_dict")
    _assert_same(got["optimizer_states"], expected["optimizer_states"], "final optimizer")
    _assert_same(got["lr_schedulers"], expected["lr_schedulers"], "final scheduler")
    assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"])
    # and the epoch the kill interrupted was really trained differently from epoch 0
    assert not torch.equal(
        expected["state_dict"]["align_loss.template"], boundary["state_dict"]["align_loss.template"]
    )


#: FAST for data=shards: the training set is the shards (no SynthFaces training-set keys);
#: the SynthFaces evaluation keys are the shards' evaluation's
SHARDS_FAST = [
    o.replace("data.source.", "data.source.evaluation.")
    for o in FAST
    if not o.startswith(
        ("data.source.num_train_identities=", "data.source.train_images_per_identity=")
    )
]


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory):
    """The 32 training faces of FAST (8 identities x 4, 48 px) as 7 shards of <= 5."""
    out = tmp_path_factory.mktemp("shards") / "train"
    convert_to_shards(SynthFaces(8, 4, image_size=48, seed=0), out, samples_per_shard=5)
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_a_shards_run_killed_mid_epoch_resumes_bit_identical(tmp_path, tiny_shards, workers):
    """data=shards, killed mid-epoch 1 (step 6) and resumed from last.ckpt (epoch 0's end):
    the uninterrupted run's final weights and optimizer state exactly. The split, hence the
    batches, depends on the worker count, so both runs use the same one (2: persistent)."""
    data = [
        "data=shards",
        f"data.source.shards={tiny_shards}",
        "data.source.shuffle_buffer=6",
        f"data.num_workers={workers}",
        f"data.persistent_workers={workers > 0}",
    ]
    expected = read_checkpoint(_train(tmp_path / "a", *data, base=SHARDS_FAST) / "last.ckpt")
    assert (expected["epoch"], expected["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    with pytest.raises(Interrupted):
        _train(tmp_path / "killed", *data, *_stop_at(STEPS_PER_EPOCH + 2), base=SHARDS_FAST)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    boundary = read_checkpoint(last)
    assert (boundary["epoch"], boundary["global_step"]) == (0, STEPS_PER_EPOCH)

    resumed = _train(tmp_path / "resumed", *data, f"ckpt_path={last}", base=SHARDS_FAST)
    got = read_checkpoint(resumed / "last.ckpt")
    _assert_same(got["state_dict"], expected["state_dict"], "final state_dict")
    _assert_same(got["optimizer_states"], expected["optimizer_states"], "final optimizer")
    assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"])


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's code would do)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_resumed_checkpoint_cannot_name_a_file_to_unpickle(tmp_path, uninterrupted, caplog):
    """A weights-only-safe last.ckpt whose ModelCheckpoint state names an evil pickle as the
    best checkpoint: resume + test never opens it, a warning names it, the model in memory
    is tested."""
    evil, marker = tmp_path / "evil" / "best.ckpt", tmp_path / "PWNED"
    evil.parent.mkdir()  # a complete checkpoint of this model, plus the payload
    payload = torch.load(uninterrupted / "last.ckpt", weights_only=True)
    torch.save({**payload, "payload": Payload(marker)}, evil)
    control, control_marker = tmp_path / "control.ckpt", tmp_path / "control-ran"
    torch.save({"x": Payload(control_marker)}, control)
    torch.load(control, weights_only=False)  # the payload works when unpickled unsafely
    assert control_marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(evil)

    out = tmp_path / "resumed"
    cfg = compose_train([*FAST, "test=true"], output_dir=out)
    key = instantiate(cfg.callbacks.model_checkpoint).state_key
    state = torch.load(uninterrupted / "best-epoch00.ckpt", weights_only=True)  # epoch 0
    score = torch.tensor(2.0)  # above any rank-1: no later epoch replaces this "best"
    state["callbacks"] = {
        key: {
            "monitor": "val/rank1",
            "best_model_score": score,
            "best_model_path": str(evil),
            "current_score": score,
            "dirpath": str(out / "checkpoints"),
            "best_k_models": {str(evil): score},
            "kth_best_model_path": str(evil),
            "kth_value": score,
            "last_model_path": "",
        }
    }
    crafted = tmp_path / "last.ckpt"
    torch.save(state, crafted)
    read_checkpoint(crafted)  # weights-only safe: the resume itself is allowed

    cfg = compose_train([*FAST, "test=true", f"ckpt_path={crafted}"], output_dir=out)
    with caplog.at_level(logging.WARNING, logger="balanced_align.training"):
        run(cfg)
    assert not marker.exists()
    assert any(str(evil) in r.getMessage() for r in caplog.records), "no warning names it"
    results = json.loads((out / "results.json").read_text())
    assert results["best_checkpoint"] is None and "rank1" in results["test"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_train_py_resumes_to_the_uninterrupted_weights(
    tmp_path, repo_root, uninterrupted, signum
):
    """`python train.py` killed (kill -9, or SIGTERM as a scheduler sends) once epoch 0's
    last.ckpt exists, i.e. during epoch 1; resumed from that last.ckpt: run A's final state.
    SIGTERM also leaves interrupted.ckpt (the state at the signal). Same thread count as
    run A: with another, float sums run in another order and the weights drift apart."""
    killed = tmp_path / "killed"
    overrides = [*FAST, *BEST_IS_FIRST, "test=false", f"hydra.run.dir={killed}"]
    process = subprocess.Popen(
        [sys.executable, str(repo_root / "train.py"), *overrides],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # the thread count of this process: CPU reductions sum in an order set by it
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "train.py ended before it could be killed"
    process.send_signal(signum)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == (SIGTERM_STATUS if signum == signal.SIGTERM else -signal.SIGKILL)
    boundary = read_checkpoint(last)
    assert (boundary["epoch"], boundary["global_step"]) == (0, STEPS_PER_EPOCH)
    if signum == signal.SIGTERM:
        assert f"stopped by SIGTERM; resume it with ckpt_path={last}".encode() in output
        assert read_checkpoint(killed / "checkpoints" / "interrupted.ckpt")["global_step"] > 0

    resumed = _train(tmp_path / "resumed", f"ckpt_path={last}")
    expected = read_checkpoint(uninterrupted / "last.ckpt")
    got = read_checkpoint(resumed / "last.ckpt")
    _assert_same(got["state_dict"], expected["state_dict"], "final state_dict")
    _assert_same(got["optimizer_states"], expected["optimizer_states"], "final optimizer")
