"""The configuration schema: one home for the defaults, typed at composition, checked by key.

``balanced_align.config_schema`` holds the defaults of model, align, loss and optim; Hydra's
``train_schema`` (``balanced_align.config_store``) types ``conf/train.yaml`` with them, and
``BalancedAlignModule`` merges plain dicts over them.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

from balanced_align import BalancedAlignModule
from balanced_align.config_schema import (
    GROUPS,
    AlignMethod,
    Backbone,
    Head,
    Location,
    LossConfig,
    ModuleConfig,
    PaddingMode,
    Reduction,
    Units,
    build_group,
    to_plain,
)
from balanced_align.config_store import register_configs
from balanced_align.training import plain, validate
from tests.training_helpers import CONF_DIR, compose_train

#: the keys of the four groups that the default run's files set to something else than the
#: schema: the per-device batch comes from the data, and the paper's milestones are written
#: as decimals (17/24 = 0.70833…)
DEFAULT_RUN_OVERRIDES = {"optim.batch_size", "optim.milestones"}
#: a small model, so that building a module takes a fraction of a second
TINY_MODEL = {"width": 0.125, "input_size": 32, "embedding_dim": 16}
TINY_ALIGN = {"locnet_input_size": 16, "locnet_width": 0.5}


def _composition_error(overrides, conf_dir=CONF_DIR) -> str:
    """The message (with its causes) of composing train.yaml with ``overrides``."""
    GlobalHydra.instance().clear()
    register_configs()
    with pytest.raises(ConfigCompositionException) as info:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            compose(config_name="train", overrides=list(overrides))
    error, parts = info.value, []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__
    return "\n".join(parts)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


# -- composition -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key", "listed"),
    [
        ("align.location=fmapp", "align.location", "[fmap, input]"),
        ("align.method=warp", "align.method", "affine2d, fullalign"),
        ("loss.head=arc", "loss.head", "am_softmax, cosface, arcface, softmax"),
        ("model.backbone=resnet50", "model.backbone", "iresnet50"),
        ("align.padding_mode=wrap", "align.padding_mode", "reflection"),
    ],
)
def test_a_value_outside_a_closed_choice_fails_at_composition(override, key, listed):
    message = _composition_error([override])
    assert f"full_key: {key}" in message and listed in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("loss.lambda=abc", "loss.lambda"),
        ("align.tps_grid_size=2.5", "align.tps_grid_size"),
        ("model.channels_last=maybe", "model.channels_last"),
        ("optim.milestones=[0.5,x]", "optim.milestones[1]"),
        ("seed=abc", "seed"),
        ("test=sometimes", "test"),
    ],
)
def test_a_value_of_the_wrong_type_fails_at_composition(override, key):
    assert f"full_key: {key}" in _composition_error([override])


@pytest.mark.parametrize("key", ["align.tps_grid_sizee", "loss.lamda", "optim.lr_scale", "sed"])
def test_an_unknown_key_fails_at_composition(key):
    message = _composition_error([f"{key}=3"])
    assert f"full_key: {key}" in message and "not in struct" in message


def test_an_unknown_key_in_a_group_file_fails_at_composition(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "align" / "typo.yaml").write_text("method: tps\ntps_grid_sizee: 3\n")
    message = _composition_error(["align=typo"], conf_dir=conf)
    assert "align.tps_grid_sizee" in message


def test_the_command_line_names_the_key_and_the_choices(repo_root):
    """``--cfg job`` composes only; it fails (exit status 1) on the bad value."""
    done = subprocess.run(
        [sys.executable, str(repo_root / "train.py"), "align.location=fmapp", "--cfg", "job"],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=120,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "full_key: align.location" in output and "expected one of [fmap, input]" in output


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("model", "align", "loss", "optim") for o in _options(g)]
    + [f"experiment={o}" for o in _options("experiment")],
)
def test_every_group_file_and_experiment_composes_typed(override):
    unlearned = override in ("align=none", "align=affine2d", "align=fullalign")
    cfg = compose_train([override] + (["loss.lambda=0"] if unlearned else []))
    config = validate(cfg)
    for group, cls in GROUPS.items():
        assert isinstance(getattr(config, group), cls)
        # composed values are already the schema's types: validation changes none of them
        assert plain(cfg[group]) == to_plain(getattr(config, group))
    assert isinstance(cfg.align.method, AlignMethod) and isinstance(cfg.loss["lambda"], float)


def test_the_default_run_takes_the_schema_defaults():
    """The defaults have one home: the default run's groups are the dataclasses' defaults,
    except the keys of :data:`DEFAULT_RUN_OVERRIDES`."""
    cfg = compose_train()
    for group, cls in GROUPS.items():
        composed, schema = plain(cfg[group]), to_plain(cls())
        assert list(composed) == list(schema)
        differ = {f"{group}.{k}" for k in schema if composed[k] != schema[k]}
        assert differ <= DEFAULT_RUN_OVERRIDES, differ
    assert cfg.optim.batch_size == cfg.data.batch_size
    schema_milestones = to_plain(GROUPS["optim"]())["milestones"]
    assert list(cfg.optim.milestones) == pytest.approx(schema_milestones, abs=1e-9)


# -- the schema in Python --------------------------------------------------------------------
CHOICES = [Backbone, AlignMethod, Location, PaddingMode, Head, Units, Reduction]


@pytest.mark.parametrize("choice", CHOICES)
def test_choices_are_named_by_their_values_and_print_as_strings(choice):
    for member in choice:
        assert member.name == member.value  # OmegaConf reads a string by member name
        assert member == member.value and f"{member}" == str(member) == member.value
        assert json.loads(json.dumps({"k": member})) == {"k": member.value}


def test_choices_are_what_the_models_and_losses_accept():
    from balanced_align.losses.alignment import REDUCTIONS, UNITS
    from balanced_align.models import (
        ALIGN_METHODS,
        BACKBONES,
        HEADS,
        LANDMARK_METHODS,
        LOCATIONS,
        build_head,
    )

    assert AlignMethod.choices() == list(ALIGN_METHODS)
    assert {m.value for m in AlignMethod if m.learned} == set(ALIGN_METHODS) - {
        "none",
        *LANDMARK_METHODS,
    }
    assert set(Location.choices()) <= set(LOCATIONS)
    assert set(Backbone.choices()) == set(BACKBONES)
    assert {type(build_head(h, 8, 4, **({} if h == "softmax" else {"s": 30.0, "m": 0.2})))
            for h in Head.choices()} == set(HEADS.values())  # fmt: skip
    assert Units.choices() == list(UNITS) and Reduction.choices() == list(REDUCTIONS)
    image, grid = torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2, 2)
    for mode in PaddingMode.choices():
        torch.nn.functional.grid_sample(image, grid, padding_mode=mode, align_corners=False)


@pytest.mark.parametrize(
    ("group", "values", "message"),
    [
        ("align", {"tps_grid_sizee": 3}, r"unknown config key 'align\.tps_grid_sizee'"),
        ("align", {"location": "fmapp"}, r"align\.location must be one of \['fmap', 'input'\]"),
        ("align", {"tps_grid_size": 2.5}, r"align\.tps_grid_size must be an integer"),
        ("model", {"channels_last": "yes"}, r"model\.channels_last must be true or false"),
        ("loss", {"lambda": "3"}, r"loss\.lambda must be a number"),
        ("optim", {"milestones": [0.5, "x"]}, r"optim\.milestones\[1\] must be a number"),
    ],
)
def test_build_group_names_the_key(group, values, message):
    with pytest.raises(ValueError, match=message):
        build_group(GROUPS[group], values, group)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"loss": {"lambda": float("inf")}}, r"loss\.lambda must be a finite number >= 0"),
        ({"align": {"method": "none"}}, r"loss\.lambda > 0 needs a learned alignment"),
        ({"align": {"tps_grid_size": 1}}, r"align\.tps_grid_size must be an integer >= 2"),
        ({"optim": {"lr": 0}}, r"optim\.lr must be a finite number > 0"),
        ({"optim": {"reference_batch_size": 0}}, r"optim\.reference_batch_size must be"),
        ({"optim": {"warmup_fraction": 1.0}}, r"optim\.warmup_fraction must be in \[0, 1\)"),
        ({"loss": {"alpha_init": 1.0}}, r"loss\.alpha_init must be strictly between 0 and 1"),
        ({"model": {"dropout": 1.0}}, r"model\.dropout must be in \[0, 1\)"),
        ({"model": {"width": 0}}, r"model\.width must be a finite number > 0"),
    ],
)
def test_a_range_error_names_its_key(groups, message):
    with pytest.raises(ValueError, match=message):
        ModuleConfig.from_mappings(**groups)


def test_lambda_zero_allows_every_method():
    for method in AlignMethod:
        ModuleConfig.from_mappings(align={"method": method.value}, loss={"lambda": 0})


# -- the module ------------------------------------------------------------------------------
def test_module_merges_plain_dicts_and_stores_plain_values():
    module = BalancedAlignModule(
        num_classes=4,
        model=TINY_MODEL,
        align={**TINY_ALIGN, "location": "input"},
        loss={"lambda": 1, "head": "AM-Softmax"},  # an older spelling, as build_head reads it
    )
    hp = module.hparams
    assert hp.align["location"] == "input" and type(hp.align["location"]) is str
    assert hp.loss["head"] == "am_softmax" and type(hp.loss["head"]) is str
    assert hp.loss["lambda"] == 1.0 and type(hp.loss["lambda"]) is float
    assert hp.optim == to_plain(ModuleConfig().optim)  # untouched groups: the defaults
    # a checkpoint's hyperparameters hold plain containers only: weights_only loading reads them
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": dict(hp)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["hyper_parameters"]
    assert loaded["loss"] == hp.loss and loaded["align"] == hp.align


def test_module_rebuilds_from_the_hparams_of_an_earlier_version():
    """Hyperparameters as the module stored them before the schema (plain strings and
    numbers, int λ) build the same module."""
    old = {
        "model": {**TINY_MODEL, "backbone": "iresnet18", "dropout": 0.0, "channels_last": True},
        "align": {"method": "tps", "tps_grid_size": 2, "location": "fmap", **TINY_ALIGN},
        "loss": {"lambda": 0, "head": "am_softmax", "units": "pixels", "reduction": "mean"},
        "optim": {"lr": 0.2, "batch_size": 8, "milestones": [12 / 24, 17 / 24, 22 / 24]},
    }
    torch.manual_seed(0)
    first = BalancedAlignModule(num_classes=4, **old)
    torch.manual_seed(0)
    again = BalancedAlignModule(**dict(first.hparams))
    assert dict(again.hparams) == dict(first.hparams)
    state, rebuilt = first.state_dict(), again.state_dict()
    assert state.keys() == rebuilt.keys()
    assert all(torch.equal(state[k], rebuilt[k]) for k in state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": {"lamda": 3}}, r"unknown config key 'loss\.lamda'"),
        ({"optim": {"lr": -1}}, r"optim\.lr must be a finite number > 0"),
        ({"align": {"location": "middle"}}, r"align\.location must be one of"),
    ],
)
def test_module_refuses_bad_groups_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BalancedAlignModule(num_classes=4, **kwargs)


def test_loss_lambda_is_the_config_key():
    assert to_plain(LossConfig())["lambda"] == LossConfig().lambda_
    assert "lambda_" not in to_plain(LossConfig())
