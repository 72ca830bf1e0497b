"""Tiny end-to-end runs of the training job for every alignment method and location."""

import json
import math

import pytest
import torch

from balanced_align.training import run
from tests.data_paths import ASSET_ATT
from tests.training_helpers import TINY, compose_train

METHODS = ["stn_affine", "stn_proj", "stn_tps2", "stn_tps8"]
EXPECTED = {"rank1", "verif_acc", "verif_auc", "anme"}
#: the 12 AT&T identities in tests/assets, split 6 train / 3 val / 3 test
ATT_FOLDER = [
    "data=folder",
    f"data.source.root={ASSET_ATT}",
    "data.source.val_fraction_identities=0.25",
    "data.source.test_fraction_identities=0.25",
]
#: TINY's test split: 4 identities × 3 images = 24 (gallery, probe) trials
TRIALS = 4 * 3 * 2
#: an easy SynthFaces split: near-frontal, flat background and light, no expression, strong
#: identity texture; 8 test identities (48 trials) against 24 one-image distractors
EASY = [
    "+data.source.synth_knobs.yaw_range=[-5,5]",
    "+data.source.synth_knobs.pitch_range=[-5,5]",
    "+data.source.synth_knobs.roll_range=[0,0]",
    "+data.source.synth_knobs.background=flat",
    "+data.source.synth_knobs.lighting=0",
    "+data.source.synth_knobs.expression_strength=0",
    "+data.source.synth_knobs.texture_strength=2",
    "data.source.eval_yaw_range=[-5,5]",
    "data.source.test_identities=8",
    "data.source.test_distractor_identities=24",
]


def _is_trial_fraction(value, trials=TRIALS):
    """A rank-1 rate of ``trials`` trials is k / trials (NaN, a wrong count or scale is not)."""
    return value is not None and abs(value * trials - round(value * trials)) < 1e-4


def _run(tmp_path, overrides):
    cfg = compose_train(TINY + overrides, output_dir=tmp_path)
    metric = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    return metric, results


@pytest.mark.parametrize("lam", [0.0, 3.0])
@pytest.mark.parametrize("location", ["input", "fmap"])
@pytest.mark.parametrize("method", METHODS)
def test_fast_run_each_method_location_lambda(tmp_path, method, location, lam):
    metric, results = _run(
        tmp_path, [f"align={method}", f"align.location={location}", f"loss.lambda={lam}"]
    )
    assert results["location"] == location and results["lambda"] == lam
    assert EXPECTED <= set(results["val"]) and EXPECTED <= set(results["test"])
    assert _is_trial_fraction(results["test"]["rank1"]), results["test"]["rank1"]
    assert results["test"]["anme"] > 0
    assert metric == results["val"]["rank1"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("location", ["input", "fmap"])
@pytest.mark.parametrize("method", ["affine2d", "fullalign"])
def test_fast_run_preprocessing_baselines(tmp_path, method, location):
    _, results = _run(tmp_path, [f"align={method}", f"align.location={location}", "loss.lambda=0"])
    assert results["method"] == method and results["location"] == location
    assert EXPECTED <= set(results["test"])
    if method == "fullalign":  # every face lands on the template
        assert results["test"]["anme"] < 1e-4


def test_anme_exact_under_annotation_noise(tmp_path):
    """With noisy labels, ANME is measured against the labels and anme_exact against the true
    points through the same warp. Without a warp, anme_exact equals the noise-free run's ANME
    (same images, same true points); FullAlign puts the noisy labels exactly on the template
    (ANME 0) but not the true points."""
    noisy = ["test=false", "+data.source.synth_knobs.landmark_noise=4"]
    _, clean = _run(tmp_path / "clean", ["align=none", "loss.lambda=0", "test=false"])
    _, none = _run(tmp_path / "none", ["align=none", "loss.lambda=0", *noisy])
    _, full = _run(tmp_path / "full", ["align=fullalign", "loss.lambda=0", *noisy])
    assert "anme_exact" not in clean["val"]
    assert none["val"]["anme_exact"] == pytest.approx(clean["val"]["anme"], rel=1e-5)
    assert none["val"]["anme"] != pytest.approx(clean["val"]["anme"], rel=1e-3)
    assert full["val"]["anme"] < 1e-4
    assert full["val"]["anme_exact"] > 0.02


def test_fast_run_without_alignment(tmp_path):
    _, results = _run(tmp_path, ["align=none", "loss.lambda=0"])
    assert results["method"] == "none"
    # no warp: ANME is the spread of the raw landmarks, which is large on posed faces
    assert results["test"]["anme"] > 0.05


def test_bf16_mixed_cpu_run(tmp_path):
    _, results = _run(tmp_path, ["trainer.precision=bf16-mixed"])
    # results.json stores NaN / inf as None: every metric must have come out finite
    for stage in ("val", "test"):
        for key in EXPECTED:
            value = results[stage][key]
            assert value is not None and math.isfinite(value), (stage, key, value)
    assert _is_trial_fraction(results["test"]["rank1"])


def test_an_easy_split_is_identified_far_above_chance(tmp_path):
    """End to end (SynthFaces, training, flip-TTA embeddings, gathering, the protocol), an easy
    split must be identified far above chance: a mate beats 24 distractors by luck 1 time in 25.
    Labels paired with the wrong embeddings, or embeddings that ignore the face, stay near 0.04.
    Measured (seed 0 / 1 / 2, epoch-keyed augmentation): rank-1 0.23 / 0.15 / 0.31,
    verification 0.65 / 0.80 / 0.85. The bounds (3 × chance: 2.9 binomial sd above chance over
    the 48 trials; verification 0.6) sit below every seed."""
    _, results = _run(tmp_path, ["align=none", "loss.lambda=0", *EASY])
    chance = 1 / (24 + 1)
    assert _is_trial_fraction(results["test"]["rank1"], 8 * 3 * 2)
    assert results["test"]["rank1"] >= 3 * chance
    assert results["test"]["verif_acc"] >= 0.6


def test_landmarks_required_but_absent(tmp_path):
    overrides = [*ATT_FOLDER, "loss.lambda=3"]
    cfg = compose_train(TINY[:5] + overrides + TINY[-6:], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"has no landmarks, but loss\.lambda=3\.0 > 0"):
        run(cfg)


def test_landmark_baseline_on_a_source_without_landmarks(tmp_path):
    overrides = [*ATT_FOLDER, "align=fullalign"]
    cfg = compose_train([*TINY[:5], *overrides, "loss.lambda=0", *TINY[-6:]], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"has no landmarks, but align\.method=fullalign"):
        run(cfg)


def test_resume_from_checkpoint_continues_training(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _run(first, ["trainer.max_epochs=1"])
    last = first / "checkpoints" / "last.ckpt"
    _, results = _run(second, ["trainer.max_epochs=2", f"ckpt_path={last}"])
    assert results["epochs"] == 2
    state = torch.load(second / "checkpoints" / "last.ckpt", weights_only=False)
    assert (
        state["epoch"] == 1
        and state["global_step"] == 2 * torch.load(last, weights_only=False)["global_step"]
    )


def test_plain_stn_on_a_source_without_landmarks(tmp_path):
    """λ = 0 needs no landmarks: no template, no ANME, the run completes."""
    overrides = [*ATT_FOLDER, "loss.lambda=0"]
    cfg = compose_train([*TINY[:5], *overrides, *TINY[-6:]], output_dir=tmp_path)
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "anme" not in results["test"] and 0.0 <= results["test"]["verif_acc"] <= 1.0


def test_a_diverged_run_stops_with_a_clear_error(tmp_path):
    """An absurd lr makes every loss NaN: the run stops after 10 such steps, saying why."""
    overrides = [
        "optim.lr=1e30",
        "optim.align_lr_scale=1.0",
        "trainer.max_epochs=4",  # 4 steps per epoch; no validation before step 10
        "trainer.check_val_every_n_epoch=10",
        "test=false",
    ]
    cfg = compose_train([*TINY, *overrides], tmp_path / "run")
    with pytest.raises(FloatingPointError, match=r"training diverged.*10 consecutive steps"):
        run(cfg)


def test_divergence_needs_consecutive_nonfinite_steps():
    """9 NaN steps, a finite one, 9 more: no stop (a transient overflow); the 10th in a row."""
    from balanced_align.module import MAX_NONFINITE_STEPS
    from tests.viz.helpers import tiny_module

    module = tiny_module("none")
    nan, one = torch.tensor(float("nan")), torch.tensor(1.0)
    for _ in range(MAX_NONFINITE_STEPS - 1):
        module._check_finite({"train/loss": nan})
    module._check_finite({"train/loss": one})
    for _ in range(MAX_NONFINITE_STEPS - 1):
        module._check_finite({"train/loss": torch.tensor(float("inf"))})
    with pytest.raises(FloatingPointError, match=r"10 consecutive steps.*loss=nan"):
        module._check_finite({"train/loss": nan, "train/l_fr": one})


def test_undefined_anme_is_nan_with_a_warning_naming_the_metric(caplog):
    """No face whose eye landmarks inverted: the metric is NaN and the log says which one.
    Real errors (a landmark count that is not the schema's, a mask of the wrong shape) raise."""
    import logging

    import torch

    from balanced_align import BalancedAlignModule
    from tests.evaluation.anme_reference import numpy_anme

    module = BalancedAlignModule(num_classes=4, model={"width": 0.125, "input_size": 48})
    points = torch.rand(3, 84, 2) * 2 - 1
    valid = torch.ones(3, 84, dtype=torch.bool)
    schema = module.schema
    assert module._anme("anme", points, valid, "val") == pytest.approx(
        numpy_anme(points.numpy(), schema.left_eye, schema.right_eye), rel=1e-6
    )
    with pytest.raises(ValueError, match="aligned_landmarks"):
        module._anme("anme", points[:, :68], valid[:, :68], "val")
    with pytest.raises(ValueError, match=r"valid: expected shape"):
        module._anme("anme", points, valid[:, :5], "val")
    with caplog.at_level(logging.WARNING, logger="balanced_align.module"):
        value = module._anme("anme_exact", points, torch.zeros_like(valid), "test")
    assert value != value  # NaN
    assert "test/anme_exact is undefined" in caplog.text
