"""configure_optimizers against hand-computed values: lr scaled by the global batch, the
alignment subsystem's groups at lr × align_lr_scale, no weight decay on T / α / norms / biases,
milestones as fractions of the run, linear warm-up."""

from types import SimpleNamespace

import pytest
import torch

from tests.viz.helpers import tiny_module

OPTIM = {
    "lr": 0.2,
    "reference_batch_size": 256,
    "batch_size": 16,  # per device
    "weight_decay": 5e-4,
    "momentum": 0.9,
    "milestones": [0.5, 0.75],
    "gamma": 0.1,
    "warmup_fraction": 0.1,
    "align_lr_scale": 0.01,
}
# 16 per device × 2 devices × 2 accumulated batches = a global batch of 64: lr = 0.2 · 64/256
BASE_LR, ALIGN_LR = 0.05, 0.0005
STEPS = 40  # milestones at steps 20 and 30, warm-up over steps 0..3


def _configured(optim=OPTIM, learn_template=True):
    module = tiny_module("tps")
    module.hparams.optim.update(optim)
    module._trainer = SimpleNamespace(  # no datamodule: the module must not need one
        world_size=2,
        accumulate_grad_batches=2,
        estimated_stepping_batches=STEPS,
    )
    if not learn_template:
        template = module.align_loss.template.detach().clone()
        del module.align_loss.template
        module.align_loss.register_buffer("template", template)
    return module, module.configure_optimizers()


def _factor(step: int) -> float:
    """The schedule written out: warm-up (step+1)/4 for steps 0..3, ÷10 at 20 and at 30."""
    warm = (step + 1) / 4 if step < 4 else 1.0
    return warm * (1.0 if step < 20 else 0.1 if step < 30 else 0.01)


def test_groups_lrs_and_weight_decay():
    module, config = _configured()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"decay", "no_decay", "align_decay", "align_no_decay"}
    for name, group in groups.items():
        assert group["initial_lr"] == pytest.approx(ALIGN_LR if "align" in name else BASE_LR)
        assert group["weight_decay"] == (0.0 if name.endswith("no_decay") else 5e-4)
        assert group["momentum"] == 0.9 and group["nesterov"] is False
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    everything = [ids[name] for name in ids]
    assert sum(map(len, everything)) == len(set().union(*everything))  # no parameter twice
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert set().union(*everything) == trainable
    stn = module.recognizer.stn
    assert {id(p) for p in stn.parameters()} <= ids["align_decay"] | ids["align_no_decay"]
    assert id(module.align_loss.template) in ids["align_no_decay"]
    assert id(module.align_loss.alpha_logit) in ids["no_decay"]
    for name, param in module.named_parameters():
        if name.endswith(".bias") or param.ndim <= 1:
            assert id(param) in ids["no_decay"] | ids["align_no_decay"], name
        elif name.startswith(("recognizer.backbone", "head")) and "prelu" not in name.lower():
            assert id(param) in ids["decay"], name  # conv / linear / class weights


def test_a_fixed_template_is_not_optimised():
    module, config = _configured(learn_template=False)
    optimised = {id(p) for g in config["optimizer"].param_groups for p in g["params"]}
    assert not isinstance(module.align_loss.template, torch.nn.Parameter)
    assert {id(p) for p in module.recognizer.stn.parameters()} <= optimised


def test_schedule_warm_up_and_milestones_as_fractions():
    _, config = _configured()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    for step in range(STEPS):
        for group in optimizer.param_groups:
            base = ALIGN_LR if group["name"].startswith("align") else BASE_LR
            assert group["lr"] == pytest.approx(base * _factor(step), rel=1e-12), (step, group)
        optimizer.step()
        scheduler.step()


def test_no_warm_up_and_the_lr_follows_the_global_batch():
    optim = {**OPTIM, "warmup_fraction": 0.0, "lr": 0.4}
    _, config = _configured(optim)
    groups = {g["name"]: g for g in config["optimizer"].param_groups}
    assert groups["decay"]["lr"] == pytest.approx(0.4 * 64 / 256)
    assert groups["align_decay"]["lr"] == pytest.approx(0.4 * 64 / 256 * 0.01)


def test_the_lr_follows_optim_batch_size():
    """The per-device batch comes from optim.batch_size alone: doubling it doubles the lr."""
    _, config = _configured({**OPTIM, "warmup_fraction": 0.0, "batch_size": 32})
    groups = {g["name"]: g for g in config["optimizer"].param_groups}
    assert groups["decay"]["lr"] == pytest.approx(0.2 * 32 * 2 * 2 / 256)
