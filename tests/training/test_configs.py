"""Every config group composes and instantiates; bad values fail early with their key."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from balanced_align import BalancedAlignModule
from balanced_align.training import plain, validate
from tests.training_helpers import CONF_DIR, TINY, compose_train


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_default_config_is_the_papers_model_family():
    cfg = compose_train()
    assert cfg.align.method == "tps" and cfg.align.tps_grid_size == 8
    assert cfg.align.location == "fmap"
    assert cfg.loss["lambda"] == 3.0 and cfg.loss.head == "am_softmax"
    assert cfg.loss.margin == 0.35 and cfg.loss.scale == 64.0
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 5e-4
    validate(cfg)


@pytest.mark.parametrize("option", _options("align"))
def test_align_options_build_a_module(option):
    unlearned = option in ("none", "affine2d", "fullalign")
    overrides = [f"align={option}"] + (["loss.lambda=0"] if unlearned else [])
    cfg = compose_train(overrides + TINY)
    validate(cfg)
    module = BalancedAlignModule(
        num_classes=5,
        model=plain(cfg.model),
        align=plain(cfg.align),
        loss=plain(cfg.loss),
        optim=plain(cfg.optim),
        template_init=torch.rand(84, 2) * 1.6 - 0.8,
    )
    assert (module.family is None) == (option == "none")
    assert (module.align_loss is None) == unlearned


@pytest.mark.parametrize("option", _options("model"))
def test_model_options_compose(option):
    cfg = compose_train([f"model={option}"])
    validate(cfg)
    assert cfg.data.image_size == cfg.model.input_size


@pytest.mark.parametrize("option", _options("trainer"))
def test_trainer_options_compose(option, tmp_path):
    cfg = compose_train([f"trainer={option}"], output_dir=tmp_path)
    if cfg.trainer.accelerator == "cpu":
        trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs
    else:  # no GPU here: check the preset's settings instead
        assert cfg.trainer.precision in ("16-mixed", "bf16-mixed")


@pytest.mark.parametrize("option", _options("logger"))
def test_logger_options_instantiate(option, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train([f"logger={option}"], output_dir=tmp_path)
    for conf in (cfg.logger or {}).values():
        logger = instantiate(conf, **({"offline": True} if "Wandb" in conf._target_ else {}))
        assert logger.save_dir is not None or logger.log_dir is not None


@pytest.mark.parametrize("option", _options("callbacks") + _options("optim") + _options("loss"))
def test_other_groups_compose(option, tmp_path):
    group = next(g for g in ("callbacks", "optim", "loss") if option in _options(g))
    cfg = compose_train([f"{group}={option}"], output_dir=tmp_path)
    if group == "callbacks":
        for conf in cfg.callbacks.values():
            instantiate(conf)
    validate(cfg)


def test_data_config_instantiates(tmp_path):
    cfg = compose_train(TINY, output_dir=tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert datamodule.num_classes == 8
    assert datamodule.has_landmarks


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.lambda=-1"], "loss.lambda must be a finite number >= 0"),
        (["align.tps_grid_size=1"], "align.tps_grid_size must be an integer >= 2"),
        (["align=none"], "loss.lambda > 0 needs a learned alignment"),
        (["align=fullalign"], "align.method=fullalign has no learned warp"),
        # Hydra adds a key given with + (composition cannot refuse it); the job does
        (["+loss.lamda=3"], "unknown config key 'loss.lamda'"),
        (["optim.lr=-0.1"], "optim.lr must be a finite number > 0"),
        (["optim.lr=nan"], "optim.lr must be a finite number > 0"),
        (["optim.milestones=[0.7,0.5]"], r"optim\.milestones must be increasing fractions"),
        # Lightning would fit nothing and the job would exit 0 with empty metrics
        (["trainer.max_epochs=0"], r"trainer\.max_epochs must be >= 1"),
        (["trainer.max_epochs=-2"], r"trainer\.max_epochs must be >= 1"),
        (["+trainer.max_steps=0"], r"trainer\.max_steps must be >= 1"),
        (["trainer.max_epochs=1.5"], r"trainer\.max_epochs must be an integer"),
        # SynthFaces never reads files, so no data source would ever check the policy
        (["data.on_bad_sample=ignore"], r"data\.on_bad_sample must be one of \['raise', 'skip'\]"),
        # a misspelt source option added with + would only fail inside instantiate
        (["+data.root=/x"], r"data\.root: not an option of FaceDataModule.*data\.source\.root"),
        (["+data.source.num_train_identites=8"], r"data\.source\.num_train_identites: not an "),
        (
            ["data=shards", "data.source.shards=s", "+data.source.evaluation.val_pairs=20"],
            r"data\.source\.evaluation\.val_pairs: not an option of SynthFacesEvaluation",
        ),
        # a misspelt augmentation key would only fail inside the data module
        (["+data.jitter.blurp=0.3"], r"data\.jitter\.blurp: not an option of JitterConfig"),
        # the lr is scaled by optim.batch_size: it must be the batch that is trained
        (["optim.batch_size=32"], r"optim\.batch_size=32 must equal data\.batch_size=64"),
    ],
)
def test_bad_config_values_fail_with_their_key(overrides, message):
    cfg = compose_train(overrides)
    with pytest.raises(ValueError, match=message):
        validate(cfg)


@pytest.mark.parametrize("experiment", ["paper_ms1m", "paper_vggface2", "paper_partialfc_1m"])
def test_paper_experiments_train_on_nearly_every_identity(experiment):
    """The paper trains on the whole set and tests on external benchmarks: the held-out
    checkpoint-selection splits stay small (the plain folder config holds out 20 %)."""
    source = compose_train([f"experiment={experiment}"]).data.source
    held_out = source.val_fraction_identities + source.test_fraction_identities
    assert source._target_.endswith("FolderSource") and held_out <= 0.01
