"""+dry_run=true: the memory accounting against closed forms, and the fail-if-too-big path."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from balanced_align.config_schema import ModuleConfig
from balanced_align.dry_run import (
    GIB,
    PAPER_BATCH_PER_CARD,
    PAPER_CARD_BYTES,
    RESERVED,
    DoesNotFitError,
    build,
    dry_run,
    estimate,
    saved_tensor_bytes,
)
from balanced_align.training import run, validate
from tests.training_helpers import compose_train

#: a tiny recogniser: IR-ResNet-18 at ⅛ width (channels 8, 8, 16, 32, 64), 16², D = 8
MODEL = {"width": 0.125, "input_size": 16, "embedding_dim": 8, "channels_last": False}
CHANNELS, BLOCKS, DIM = (8, 8, 16, 32, 64), (2, 2, 2, 2), 8


def _config(**loss) -> ModuleConfig:
    return ModuleConfig.from_mappings(
        model=MODEL, align={"method": "none"}, loss={"lambda": 0.0, **loss}
    )


def iresnet_parameters() -> int:
    """IR-ResNet parameter count, by hand: conv k²·in·out, BN 2c, PReLU c, FC in·out + out."""

    def block(cin: int, cout: int, stride: int) -> int:
        count = 2 * cin + 9 * cin * cout + 2 * cout + cout + 9 * cout * cout + 2 * cout
        return count + (cin * cout + 2 * cout if stride != 1 or cin != cout else 0)

    total = 9 * 3 * CHANNELS[0] + 2 * CHANNELS[0] + CHANNELS[0]
    for blocks, cin, cout in zip(BLOCKS, CHANNELS[:-1], CHANNELS[1:]):
        total += block(cin, cout, 2) + (blocks - 1) * block(cout, cout, 1)
    fmap = math.ceil(16 / 2**4) ** 2  # four stride-2 stages: 16 -> 1
    return total + 2 * CHANNELS[-1] + CHANNELS[-1] * fmap * DIM + DIM + 2 * DIM


def test_saved_tensors_of_a_linear_relu_are_counted_per_image():
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU())
    x = torch.randn(3, 5)
    per_item, _ = saved_tensor_bytes(lambda: net(x), batch=3)
    # Linear keeps its input (3 × 5), ReLU its output (3 × 7), float32
    assert per_item == 4 * 3 * (5 + 7)
    twice, _ = saved_tensor_bytes(lambda: net(torch.randn(6, 5)), batch=6)
    assert twice == 2 * per_item


def test_parameter_and_head_bytes_follow_the_closed_form():
    config = _config(head="partial_fc_am", sample_rate=0.5)
    module, optimizer = build(config)
    result = estimate(module, config, num_classes=10, cards=4, amp=True)
    params = iresnet_parameters()
    assert result.parameters == params
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == params + 2 * DIM
    assert result.weights_bytes == params * (4 + 4 + 4 + 2)  # fp32 w, grad, momentum; fp16 copy
    assert result.head_rows == 3 and result.scored_centres == 2  # ⌈10/4⌉, ⌈0.5·3⌉
    assert result.head_bytes == 3 * DIM * 4 * 3
    assert result.logit_rows_per_image == 4  # the gathered batch
    assert result.centre_copies_bytes == 2 * 2 * DIM * 4
    assert result.fixed_bytes == (
        result.weights_bytes + result.head_bytes + result.centre_copies_bytes + RESERVED
    )
    per_image = result.activations_per_image + result.logit_bytes * 2 * 4
    assert result.total(32) == pytest.approx(result.fixed_bytes + 32 * per_image)
    assert result.largest_batch(24 * GIB) == math.floor((24 * GIB - result.fixed_bytes) / per_image)
    full = estimate(module, _config(), num_classes=10, cards=4, amp=False)
    assert (full.head_rows, full.scored_centres, full.logit_rows_per_image) == (10, 10, 1)
    assert full.weights_bytes == params * 12
    # AMP keeps 2-byte activations: about half of float32's
    assert 0.4 < result.activations_per_image / full.activations_per_image < 0.75


def test_too_many_identities_fail_naming_the_card(capsys):
    config = _config()
    # the full head's centres, grads and momentum alone exceed 11 GB
    classes = math.ceil(PAPER_CARD_BYTES / (DIM * 12)) + 1
    with pytest.raises(DoesNotFitError, match=r"does not fit .*32 images per card .*RTX 2080 Ti"):
        dry_run(config, classes, cards=8, amp=True)
    assert "| parameters (besides the head) |" in capsys.readouterr().out
    fits = dry_run(config, 1000, cards=8, amp=True)
    assert fits.total(PAPER_BATCH_PER_CARD) < PAPER_CARD_BYTES


def test_the_configs_own_batch_is_checked_too(capsys):
    """An absurd data.batch_size fails naming the key, though the paper's 32 fit."""

    def config(batch: int) -> ModuleConfig:
        return ModuleConfig.from_mappings(
            model=MODEL, align={"method": "none"}, loss={"lambda": 0.0}, optim={"batch_size": batch}
        )

    small = dry_run(config(PAPER_BATCH_PER_CARD), 1000, cards=8, amp=True)
    assert "data.batch_size" not in capsys.readouterr().out  # the paper's batch: one row
    huge = small.largest_batch(PAPER_CARD_BYTES) + 1
    with pytest.raises(DoesNotFitError, match=rf"data\.batch_size={huge} does not fit"):
        dry_run(config(huge), 1000, cards=8, amp=True)
    assert f"per card at data.batch_size={huge}" in capsys.readouterr().out


@pytest.mark.parametrize(("classes", "fits"), [(1000, True), (400_000_000, False)])
def test_train_py_dry_run(tmp_path, capsys, classes, fits):
    overrides = [f"model.{k}={str(v).lower()}" for k, v in MODEL.items()]
    overrides += ["align=none", "loss.lambda=0", "+dry_run=true", f"+paper.num_classes={classes}"]
    cfg = compose_train(overrides, output_dir=tmp_path)
    if fits:
        assert run(cfg) is None
        assert "largest batch per card, 80 GB" in capsys.readouterr().out
        assert not (tmp_path / "results.json").exists()  # nothing trained
    else:
        with pytest.raises(DoesNotFitError, match="experiment train does not fit"):
            run(cfg)


def test_without_the_identity_count_the_error_names_a_key_the_job_takes(tmp_path):
    overrides = [f"model.{k}={str(v).lower()}" for k, v in MODEL.items()]
    overrides += ["align=none", "loss.lambda=0", "+dry_run=true"]
    with pytest.raises(ValueError, match=r"num_classes") as error:
        run(compose_train(overrides, output_dir=tmp_path))
    keys = sorted(set(re.findall(r"\b(\w+\.num_classes)\b", str(error.value))))
    assert keys
    for key in keys:  # each key the message suggests passes the job's checks
        validate(compose_train([*overrides, f"+{key}=1000"], output_dir=tmp_path))


def test_the_dry_run_reads_no_pretrained_weights(tmp_path):
    """It measures memory only: model.pretrained (a file on the cluster, maybe not here) is
    neither needed nor read."""
    config = ModuleConfig.from_mappings(
        model={**MODEL, "pretrained": str(tmp_path / "not_here" / "backbone.pth")},
        align={"method": "none"},
        loss={"lambda": 0.0},
    )
    assert dry_run(config, 1000, cards=8, amp=True).parameters == iresnet_parameters()
