"""Every experiment config composes, and a fast version of its first job runs to the end."""

import json
from pathlib import Path

import pytest

from balanced_align.training import run, validate
from tests.training_helpers import CONF_DIR, TINY, compose_train

#: the LFW experiments train on an LFW tree, not SynthFaces: composed, swept and run end to end
#: on a tiny LFW-shaped tree in tests/data/test_lfw_protocol.py
EXPERIMENTS = sorted(
    p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml") if not p.stem.startswith("lfw")
)
#: what a user must supply, and what makes a paper-scale config run here on synthetic data
EXTRA = {
    "template_learned_fixed": ["loss.template_checkpoint=CHECKPOINT"],
    "paper_ms1m": [
        "data=synthfaces",
        "trainer=cpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
    ],
    "paper_vggface2": [
        "data=synthfaces",
        "trainer=cpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
    ],
    "paper_partialfc_1m": [
        "data=synthfaces",
        "trainer=cpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
    ],
}


def _first_job(experiment: str) -> list[str]:
    """Overrides selecting the first value of every parameter the experiment sweeps."""
    cfg = compose_train([f"experiment={experiment}"], with_hydra=True)
    params = cfg.hydra.sweeper.params or {}
    return [f"{key}={str(value).split(',')[0]}" for key, value in params.items()]


def test_experiments_exist():
    assert {"methods_input", "input_vs_fmap", "lambda_sweep", "table2", "alpha"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_runs_fast(experiment, tmp_path):
    overrides = [f"experiment={experiment}", *_first_job(experiment)]
    extra = [
        e.replace("CHECKPOINT", str(tmp_path / "learned.ckpt")) for e in EXTRA.get(experiment, [])
    ]
    if experiment == "template_learned_fixed":  # T_fix† needs a run that learned a template
        first = compose_train([*TINY, "test=false"], output_dir=tmp_path / "learned")
        run(first)
        (tmp_path / "learned" / "checkpoints" / "last.ckpt").rename(tmp_path / "learned.ckpt")
    cfg = compose_train([*overrides, *extra, *TINY, "test=false"], output_dir=tmp_path / "job")
    validate(cfg)
    run(cfg)
    results = json.loads((tmp_path / "job" / "results.json").read_text())
    # the job ran what the experiment's first job asks for, and its metrics are numbers
    assert results["method"] == cfg.align.method and results["location"] == cfg.align.location
    assert results["lambda"] == float(cfg.loss["lambda"]) and results["seed"] == cfg.seed
    assert all(results["val"][key] is not None for key in ("rank1", "verif_acc"))


def test_learned_template_loaded_as_fixed_template_exactly(tmp_path):
    """T_fix†: the module built with loss.template_checkpoint holds the learned T, frozen."""
    import torch

    from balanced_align import BalancedAlignModule

    learned_dir = tmp_path / "learned"
    run(compose_train([*TINY, "test=false"], output_dir=learned_dir))
    checkpoint = learned_dir / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    learned = state["align_loss.template"]
    assert not torch.equal(learned, state["template_start"])  # it did move while training
    module = BalancedAlignModule(
        num_classes=8,
        model={"width": 0.125, "input_size": 48, "embedding_dim": 32},
        loss={"template_checkpoint": str(checkpoint), "learn_template": False},
    )
    assert torch.equal(module.template, learned)
    assert not module.template.requires_grad
    assert "align_loss.template" not in dict(module.named_parameters())
