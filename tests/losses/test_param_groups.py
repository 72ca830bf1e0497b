"""build_param_groups: T, α, norm layers, PReLU and biases take no weight decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balanced_align.losses import AlignmentLoss, build_param_groups, mark_no_weight_decay
from balanced_align.models import AMSoftmax, build_recognizer


def make_modules():
    torch.manual_seed(0)
    model = build_recognizer(
        "iresnet18",
        width=0.125,
        input_size=48,
        align_method="tps",
        tps_grid_size=2,
        locnet_input_size=32,
        locnet_width=0.25,
        embedding_dim=16,
    )
    head = AMSoftmax(16, 5)
    loss = AlignmentLoss(torch.rand(7, 2) - 0.5)
    return model, head, loss


def expected_split(modules):
    """Independent classification by module type."""
    decay, no_decay = set(), set()
    for module in modules:
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if isinstance(sub, (nn.Conv2d, nn.Linear)) and name == "weight":
                    decay.add(id(param))
                elif isinstance(sub, AMSoftmax):
                    decay.add(id(param))
                else:
                    no_decay.add(id(param))
    return decay, no_decay


def test_groups_split_by_module_type():
    model, head, loss = make_modules()
    groups = build_param_groups([model, head, loss], weight_decay=5e-4)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    expected_decay, expected_no_decay = expected_split([model, head, loss])
    assert decay == expected_decay
    assert no_decay == expected_no_decay
    assert id(loss.template) in no_decay and id(loss.alpha_logit) in no_decay
    assert id(head.weight) in decay
    assert id(model.stn.locnet.fc.bias) in no_decay and id(model.stn.locnet.fc.weight) in decay
    prelus = [m.weight for m in model.modules() if isinstance(m, nn.PReLU)]
    assert prelus and all(id(p) in no_decay for p in prelus)
    bns = [
        p
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters()
    ]
    assert bns and all(id(p) in no_decay for p in bns)
    total = sum(1 for m in (model, head, loss) for _ in m.parameters())
    assert len(decay) + len(no_decay) == total


def test_named_parameters_input_gives_same_split():
    model, head, loss = make_modules()
    named = [
        *model.named_parameters(),
        *head.named_parameters(),
        *(("align_loss." + n, p) for n, p in loss.named_parameters()),
    ]
    by_name = build_param_groups(named, 1e-4)
    by_module = build_param_groups({"model": model, "head": head, "align_loss": loss}, 1e-4)
    for a, b in zip(by_name, by_module):
        assert {id(p) for p in a["params"]} == {id(p) for p in b["params"]}
    assert "align_loss.template" in by_name[1]["param_names"]


def test_sgd_step_decays_weights_but_not_template():
    """Behaviour: with zero gradients, SGD+decay shrinks conv weights and leaves T, α, BN alone."""
    model, head, loss = make_modules()
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.bias.fill_(0.5)
    groups = build_param_groups([model, head, loss], weight_decay=0.1)
    optimizer = torch.optim.SGD(groups, lr=1.0)
    before = {id(p): p.detach().clone() for g in groups for p in g["params"]}
    for g in groups:
        for p in g["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    conv = model.backbone.stage0[0].weight
    torch.testing.assert_close(conv, before[id(conv)] * 0.9)
    for p in (loss.template, loss.alpha_logit, model.backbone.stage0[1].bias):
        assert torch.equal(p, before[id(p)])


def test_marker_frozen_and_shared_parameters():
    shared = nn.Linear(3, 3)
    custom = nn.Module()
    custom.matrix = mark_no_weight_decay(nn.Parameter(torch.ones(2, 2)))
    custom.frozen = nn.Parameter(torch.ones(2, 2), requires_grad=False)
    groups = build_param_groups(nn.ModuleList([shared, shared, custom]), 1e-3)
    decay_ids = [id(p) for p in groups[0]["params"]]
    no_decay_ids = [id(p) for p in groups[1]["params"]]
    assert decay_ids == [id(shared.weight)]
    assert set(no_decay_ids) == {id(shared.bias), id(custom.matrix)}
    with pytest.raises(ValueError, match="weight_decay must be non-negative"):
        build_param_groups(shared, -1.0)
    with pytest.raises(TypeError, match="modules_or_named_params"):
        build_param_groups([3], 1e-3)
