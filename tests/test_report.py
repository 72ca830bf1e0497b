"""report: tables over a synthetic multirun (against numpy), files, CLI, W&B offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from balanced_align.report import (
    build_report,
    log_report_to_wandb,
    main,
    make_report,
    markdown_table,
    runs_table,
    summary_display,
    summary_table,
)
from balanced_align.run_result import RunResult

METHODS = (("tps", 8), ("affine", None))
LOCATIONS = ("input", "fmap")
LAMBDAS = (0.0, 3.0)
SEEDS = (0, 1)
YAWS = (15, 30, 45, 60, 75, 90)


def _metrics(rng, lam, location) -> dict:
    test = {
        "rank1": 0.7 + 0.02 * lam + rng.normal(0, 0.01),
        "verif_acc": 0.9 + rng.normal(0, 0.01),
        "anme": 0.2 - 0.03 * lam + (0.02 if location == "input" else 0.0) + rng.normal(0, 0.005),
        "anme_failed_frac": rng.uniform(0, 0.02),
        "folded_frac": rng.uniform(0, 0.01),
        "verif_auc": 0.95,
    }
    for k, yaw in enumerate(YAWS):
        test[f"rank1_yaw{yaw}"] = 0.9 - 0.1 * k + rng.normal(0, 0.01)
    test["rank1_yaw30"] = None  # an empty bin (NaN in training is written as null)
    return test


@pytest.fixture
def multirun(tmp_path) -> tuple[Path, list[dict]]:
    """A Hydra-like multirun dir: 2 methods × 2 locations × 2 λ × 2 seeds = 16 jobs."""
    root = tmp_path / "multiruns" / "2024-01-01_00-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    rng = np.random.default_rng(0)
    records, job = [], 0
    for method, grid in METHODS:
        for location in LOCATIONS:
            for lam in LAMBDAS:
                for seed in SEEDS:
                    job_dir = root / f"{job}_align={method},loss.lambda={lam}"
                    (job_dir / ".hydra").mkdir(parents=True)
                    test = _metrics(rng, lam, location)
                    result = RunResult(
                        run=f"{method}@{location} λ={lam} seed={seed}",
                        method=method,
                        tps_grid_size=grid,
                        location=location,
                        lambda_=lam,
                        seed=seed,
                        val={k: (None if v is None else v + 0.5) for k, v in test.items()},
                        test=test,
                        wall_time_s=1.0,
                        config={"align.method": method, "loss.lambda": lam},
                    )
                    result.to_json(job_dir / "results.json")
                    records.append(json.loads((job_dir / "results.json").read_text()))
                    job += 1
    return root, records


def test_runs_table_has_one_row_per_run(multirun):
    root, records = multirun
    table = runs_table(root)
    assert len(table) == 16
    grids = [None if pd.isna(g) else int(g) for g in table.tps_grid_size]
    got = set(zip(table.method, grids, table.location, table["lambda"]))
    expected = {(m, g, loc, lam) for m, g in METHODS for loc in LOCATIONS for lam in LAMBDAS}
    assert got == expected
    assert set(table.stage) == {"test"}
    assert set(table.method_name) == {"STN-TPS-Grid-8", "STN-Affine"}
    # metric values are copied from each file's test metrics
    for record in records:
        row = table[
            (table.method == record["method"])
            & (table.location == record["location"])
            & (table["lambda"] == record["lambda"])
            & (table.seed == record["seed"])
        ]
        assert len(row) == 1
        for metric in ("rank1", "anme", "verif_acc", "rank1_yaw90", "folded_frac"):
            assert row[metric].iloc[0] == pytest.approx(record["test"][metric])
        assert np.isnan(row["rank1_yaw30"].iloc[0])
    yaw_columns = [c for c in table.columns if c.startswith("rank1_yaw")]
    assert yaw_columns == [f"rank1_yaw{y}" for y in YAWS]


def test_summary_mean_and_std_match_numpy(multirun):
    root, records = multirun
    summary = summary_table(runs_table(root))
    assert len(summary) == 8
    assert (summary.n_runs == 2).all()
    for _, row in summary.iterrows():
        group = [
            r
            for r in records
            if r["method"] == row.method
            and r["location"] == row.location
            and r["lambda"] == row["lambda"]
        ]
        assert len(group) == 2
        for metric in ("anme", "rank1", "verif_acc", "rank1_yaw15", "anme_failed_frac"):
            values = np.array([r["test"][metric] for r in group])
            assert row[f"{metric}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert row[f"{metric}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
        assert np.isnan(row["rank1_yaw30_mean"])


def test_stage_selection(multirun, tmp_path):
    root, records = multirun
    val = runs_table(root, stage="val")
    assert set(val.stage) == {"val"}
    assert sorted(val.rank1) == pytest.approx(sorted(r["val"]["rank1"] for r in records))
    # a run without test metrics: auto falls back to val; stage="test" names the file
    job = next(root.glob("0_*")) / "results.json"
    data = json.loads(job.read_text())
    data["test"] = {}
    job.write_text(json.dumps(data))
    auto = runs_table(root)
    assert (auto.stage == "val").sum() == 1
    with pytest.raises(ValueError, match=r"0_align.*no test metrics"):
        runs_table(root, stage="test")


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert min(pixels.shape) > 200
    assert pixels.std() > 10  # not blank
    assert len(np.unique(pixels)) > 20  # drawn content, not a flat fill


def test_make_report_writes_markdown_and_figures(multirun, tmp_path):
    root, records = multirun
    out = tmp_path / "report"
    report = make_report([root], out)
    for name in ("anme_vs_rank1", "anme_vs_verif", "input_vs_fmap", "rank1_per_yaw"):
        _check_png(out / f"{name}.png")
    text = (out / "report.md").read_text(encoding="utf-8")
    group = [
        r["test"]["rank1"]
        for r in records
        if r["method"] == "tps" and r["location"] == "fmap" and r["lambda"] == 3.0
    ]
    cell = f"{np.mean(group):.4f} ± {np.std(group, ddof=1):.4f}"
    assert cell in text
    assert "![anme_vs_rank1](anme_vs_rank1.png)" in text
    assert text.count("\n| STN-") == 8 + 16  # summary rows + run rows
    assert (out / "summary.csv").is_file() and (out / "runs.csv").is_file()
    assert len(report.runs) == 16
    # the verification figure plots each series' mean verification against its mean ANME
    rows = report.summary[(report.summary.method == "tps") & (report.summary.location == "fmap")]
    line = next(
        line
        for line in report.figures["anme_vs_verif"].axes[0].lines
        if line.get_gid() == "STN-TPS-Grid-8@fmap"
    )
    np.testing.assert_allclose(sorted(line.get_ydata()), sorted(rows["verif_acc_mean"]))
    np.testing.assert_allclose(sorted(line.get_xdata()), sorted(rows["anme_mean"]))


def test_no_bars_without_both_locations(multirun, tmp_path):
    root, _ = multirun
    for path in root.glob("*/results.json"):
        if json.loads(path.read_text())["location"] == "input":
            path.unlink()
    report = make_report(root, tmp_path / "out")
    assert set(report.figures) == {"anme_vs_rank1", "anme_vs_verif", "rank1_per_yaw"}
    assert not (tmp_path / "out" / "input_vs_fmap.png").exists()


def test_single_run_dir_and_file(multirun):
    root, _ = multirun
    job = next(root.glob("3_*"))
    assert len(runs_table(job)) == 1
    assert len(runs_table([job / "results.json", job])) == 1  # the same file once


def test_no_alignment_run_and_repeated_seed_note(multirun, tmp_path):
    root, records = multirun
    extra = tmp_path / "none_run"
    extra.mkdir()
    plain = dict(records[0], method="none", tps_grid_size=None, location="fmap", seed=0)
    (extra / "results.json").write_text(json.dumps(plain))
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "results.json").write_text(json.dumps(records[0]))  # same group and seed again
    report = build_report([root, extra, twin])
    row = report.runs[report.runs.method == "none"].iloc[0]
    assert (row.method_name, row.location) == ("None", "none")
    text = report.markdown()
    assert text.count("repeat a seed") == 1 and "STN-TPS-Grid-8@input λ=0" in text


def test_alpha_and_template_variants_are_separate_groups(multirun, tmp_path):
    """Fixed α, T_fix and T_fix† runs (paper §5.3) are not pooled with the default runs."""
    root, records = multirun
    variants = {
        "alpha_fixed": ({"loss.learn_alpha": False}, ("fixed 0.9", "learned")),
        "alpha_fixed_half": (
            {"loss.learn_alpha": False, "loss.alpha_init": 0.5},
            ("fixed 0.5", "learned"),
        ),
        "t_fix": ({"loss.learn_template": False}, ("learned", "T_fix")),
        "t_fix_dagger": (
            {"loss.learn_template": False, "loss.template_checkpoint": "/ckpt/last.ckpt"},
            ("learned", "T_fix†"),
        ),
    }
    base = [r for r in records if (r["method"], r["location"]) == ("tps", "fmap")]
    for name, (config, _) in variants.items():
        for record in base:  # λ 0 and 3, seeds 0 and 1
            job = tmp_path / "variants" / f"{name}_{record['lambda']}_{record['seed']}"
            job.mkdir(parents=True)
            data = dict(record, config={**record["config"], **config})
            (job / "results.json").write_text(json.dumps(data))
    report = build_report([root, tmp_path / "variants"])
    runs, summary = report.runs, report.summary
    # λ = 0 has no alignment loss: α and T are "–", and those runs pool over the variants
    assert set(zip(runs[runs["lambda"] == 0].alpha, runs[runs["lambda"] == 0].template)) == {
        ("–", "–")
    }
    tps3 = summary[(summary.method == "tps") & (summary["lambda"] == 3.0)]
    fmap3 = tps3[tps3.location == "fmap"]
    got = {(r.alpha, r.template): r.n_runs for r in fmap3.itertuples()}
    assert got == {("learned", "learned"): 2, **{v: 2 for _, v in variants.values()}}
    assert set(
        zip(tps3[tps3.location == "input"].alpha, tps3[tps3.location == "input"].template)
    ) == {("learned", "learned")}
    # each variant is its own series of the ANME-vs-rank-1 figure; λ = 0 joins the default one
    labels = {line.get_gid() for line in report.figures["anme_vs_rank1"].axes[0].lines}
    expected = {
        "STN-TPS-Grid-8@fmap",
        "STN-TPS-Grid-8@fmap α fixed 0.9",
        "STN-TPS-Grid-8@fmap α fixed 0.5",
        "STN-TPS-Grid-8@fmap T_fix",
        "STN-TPS-Grid-8@fmap T_fix†",
    }
    assert expected <= labels
    text = report.markdown()
    assert "repeat a seed" in text  # only the λ = 0 runs pool (their α/T do not apply)
    assert "| α | template |" in text
    assert "Templates loaded from checkpoints: T_fix†: `/ckpt/last.ckpt`" in text


def test_variants_sort_after_the_default_and_fixed_templates_are_numbered(multirun, tmp_path):
    """Within a λ the default (α and T learned) comes first; T_fix† runs loading different
    checkpoints form different groups, labelled and listed by checkpoint."""
    root, records = multirun
    base = [r for r in records if (r["method"], r["location"], r["lambda"]) == ("tps", "fmap", 3.0)]
    variants = {
        "alpha_fixed": {"loss.learn_alpha": False},
        "dagger_b": {"loss.learn_template": False, "loss.template_checkpoint": "/b/last.ckpt"},
        "dagger_a": {"loss.learn_template": False, "loss.template_checkpoint": "/a/last.ckpt"},
        "t_fix": {"loss.learn_template": False},
    }
    for name, config in variants.items():
        for record in base:
            job = tmp_path / "variants" / f"{name}_{record['seed']}"
            job.mkdir(parents=True)
            data = dict(record, config={**record["config"], **config})
            (job / "results.json").write_text(json.dumps(data))
    report = build_report([root, tmp_path / "variants"])
    runs = report.runs
    fmap3 = runs[(runs.method == "tps") & (runs.location == "fmap") & (runs["lambda"] == 3.0)]
    order = list(dict.fromkeys(zip(fmap3.alpha, fmap3.template)))
    assert order == [
        ("learned", "learned"),
        ("learned", "T_fix"),
        ("learned", "T_fix†1"),
        ("learned", "T_fix†2"),
        ("fixed 0.9", "learned"),
    ]
    dagger = fmap3[fmap3.template.str.startswith("T_fix†")]
    assert dict(zip(dagger.template, dagger.template_checkpoint)) == {
        "T_fix†1": "/a/last.ckpt",
        "T_fix†2": "/b/last.ckpt",
    }
    summary = report.summary
    groups = summary[summary.template.str.startswith("T_fix†")]
    assert sorted(groups.template) == ["T_fix†1", "T_fix†2"]
    assert set(groups.n_runs) == {len(base)}
    text = report.markdown()
    assert "T_fix†1: `/a/last.ckpt`; T_fix†2: `/b/last.ckpt`" in text


def test_by_finds_a_data_key_under_either_spelling():
    """Runs written before the data options moved into ``data.source`` (flat ``data.X``)
    and after it group by the same --by key, whichever spelling it is given in."""
    from types import SimpleNamespace

    from balanced_align.report.tables import equivalent_keys, parse_by, setting

    before = SimpleNamespace(config={"data.synth_knobs.landmark_noise": 4, "data.lfw_test_set": 2})
    after = SimpleNamespace(
        config={"data.source.synth_knobs.landmark_noise": 4, "data.source.test_set": 2}
    )
    shards = SimpleNamespace(config={"data.source.evaluation.val_identities": 9})
    for key in ("data.synth_knobs.landmark_noise", "data.source.synth_knobs.landmark_noise"):
        for run in (before, after):
            assert setting(run, parse_by([key])) == "landmark_noise=4"
    for key in ("data.lfw_test_set", "data.source.test_set"):  # renamed as it moved
        for run in (before, after):
            assert setting(run, parse_by([key])).endswith("test_set=2")
    assert setting(shards, parse_by(["data.val_identities"])) == "val_identities=9"
    assert equivalent_keys("data.batch_size") == (
        "data.source.batch_size",
        "data.source.evaluation.batch_size",
    )  # never in a config: a loader-level key has one spelling
    assert equivalent_keys("loss.lambda") == () == equivalent_keys("data.source")


def test_by_splits_groups_by_a_config_key(multirun, tmp_path):
    """--by KEY[=DEFAULT] separates runs that differ only in a config key; without it they
    pool (and the note says how to separate them)."""
    root, records = multirun
    key = "data.synth_knobs.landmark_noise"
    for record in records:  # the same grid again, with noisy landmarks
        job = tmp_path / "noisy" / f"{record['run']}".replace(" ", "_")
        job.mkdir(parents=True)
        data = dict(record, config={**record["config"], key: 4.0})
        data["test"] = {k: (v if v is None else v - 0.1) for k, v in record["test"].items()}
        (job / "results.json").write_text(json.dumps(data))
    paths = [root, tmp_path / "noisy"]
    # one run that sets the key to 0 (an int) and one at 10: 0 joins the default's group,
    # and 10 sorts after 4 (numbers compared as numbers)
    first = records[0]
    for value, seed in ((0, 7), (10.0, 0)):
        job = tmp_path / "extra" / f"{value}"
        job.mkdir(parents=True)
        data = dict(first, seed=seed, config={**first["config"], key: value})
        (job / "results.json").write_text(json.dumps(data))
    extra = build_report([*paths, tmp_path / "extra"], by=[f"{key}=0.0"])
    group = extra.runs[
        (extra.runs.method == first["method"])
        & (extra.runs.location == first["location"])
        & (extra.runs["lambda"] == first["lambda"])
    ]
    assert list(dict.fromkeys(group.setting)) == [
        "landmark_noise=0",
        "landmark_noise=4",
        "landmark_noise=10",
    ]
    assert (group.setting == "landmark_noise=0").sum() == 3
    pooled = build_report(paths)
    assert set(pooled.summary.n_runs) == {4} and set(pooled.summary.setting) == {""}
    assert "`--by KEY`" in pooled.markdown()
    with pytest.raises(ValueError, match=rf"results\.json: config has no '{key}'"):
        build_report(paths, by=[key])
    report = build_report(paths, by=[f"{key}=0"])
    summary = report.summary
    assert set(summary.n_runs) == {2}
    assert set(summary.setting) == {"landmark_noise=0", "landmark_noise=4"}
    for (method, location, lam), group in summary.groupby(["method", "location", "lambda"]):
        means = dict(zip(group.setting, group.rank1_mean))
        exact = [
            r["test"]["rank1"]
            for r in records
            if (r["method"], r["location"], r["lambda"]) == (method, location, lam)
        ]
        assert means["landmark_noise=0"] == pytest.approx(np.mean(exact))
        assert means["landmark_noise=4"] == pytest.approx(np.mean(exact) - 0.1)
    labels = {line.get_gid() for line in report.figures["anme_vs_rank1"].axes[0].lines}
    assert {
        "STN-TPS-Grid-8@fmap landmark_noise=0",
        "STN-TPS-Grid-8@fmap landmark_noise=4",
    } <= labels
    text = report.markdown()
    assert "repeat a seed" not in text and "| landmark_noise=4 |" in text
    out = tmp_path / "cli"
    assert main([*map(str, paths), "--out", str(out), "--by", f"{key}=0"]) == 0
    assert set(pd.read_csv(out / "summary.csv").setting) == {"landmark_noise=0", "landmark_noise=4"}
    assert main([*map(str, paths), "--out", str(out), "--by", "=1"]) == 2


def test_tables_read_back_from_csv(multirun, tmp_path):
    """runs.csv and summary.csv written without --by (an empty setting column, NaN on
    reading) still summarise and display like the report itself."""
    report = make_report(multirun[0], tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    again = summary_table(runs.drop(columns="setting"))  # a runs.csv from before --by
    pd.testing.assert_series_equal(again.rank1_mean, report.summary.rank1_mean)
    shown = summary_display(pd.read_csv(tmp_path / "out" / "summary.csv"))
    assert list(shown.columns) == list(summary_display(report.summary).columns)
    assert "setting" not in shown.columns


def _checkpointed_run(root: Path, name: str, module, datamodule, **fields) -> Path:
    """A run dir whose results.json names a checkpoint holding ``module`` and the data."""
    import torch

    job = root / name
    job.mkdir(parents=True)
    checkpoint = job / "best.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "datamodule_hyper_parameters": dict(datamodule.hparams),
        },
        checkpoint,
    )
    results = {"seed": 0, "test": {"rank1": 0.5, "anme": 0.3}, "best_checkpoint": str(checkpoint)}
    (job / "results.json").write_text(json.dumps({**results, **fields}))
    return job


def test_faces_figure_draws_each_groups_checkpoint(tmp_path):
    import torch

    from balanced_align.data.datamodule import FaceDataModule
    from balanced_align.data.source_kinds import SynthFacesSource
    from balanced_align.viz.common import to_display
    from tests.viz.helpers import tiny_module

    source = SynthFacesSource(
        num_train_identities=4,
        train_images_per_identity=2,
        val_identities=2,
        test_identities=4,
        eval_images_per_identity=4,
        val_distractor_identities=2,
        test_distractor_identities=2,
        val_num_pairs=20,
        test_num_pairs=20,
    )
    datamodule = FaceDataModule(source, image_size=32, num_workers=0)
    root = tmp_path / "runs"
    plain = {"method": "none", "location": "fmap", "lambda": 0.0}
    _checkpointed_run(root, "0_none", tiny_module("none"), datamodule, **plain)
    tps = {"method": "tps", "tps_grid_size": 4, "location": "fmap", "lambda": 3.0}
    warped = tiny_module("tps")
    with torch.no_grad():  # a visible, non-identity warp: the row must show this model's
        warped.recognizer.stn.locnet.fc.bias.add_(0.15)
    _checkpointed_run(root, "1_tps", warped, datamodule, **tps)
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out), "--faces", "4"]) == 0
    _check_png(out / "aligned_by_method.png")
    figure = build_report(root, faces=4).figures["aligned_by_method"]
    axes = np.array(figure.axes).reshape(3, 4)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["input", "None", "STN-TPS-Grid-4@fmap λ=3"]
    titles = [float(ax.get_title().split()[1].rstrip("°")) for ax in axes[0]]
    assert titles == sorted(titles)  # faces spread over yaw, in order
    inputs = np.stack([np.asarray(ax.images[0].get_array()) for ax in axes[0]])
    images = torch.from_numpy(inputs).permute(0, 3, 1, 2).float() * 2 - 1
    with torch.no_grad():
        params = warped.recognizer.predict_params(images)
        expected = to_display(warped.recognizer.aligned_image(images, params))
    shown = np.stack([np.asarray(ax.images[0].get_array()) for ax in axes[2]])
    np.testing.assert_allclose(shown, expected, atol=1e-4)
    assert np.abs(shown - inputs).max() > 0.1  # the loaded warp, not the identity
    # a group whose checkpoint is gone is named, not skipped
    (root / "1_tps" / "best.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"1_tps/results\.json: best_checkpoint"):
        build_report(root, faces=4)
    # the first group's checkpoint, which also gives the faces, is only ever read safely
    import argparse

    from balanced_align.evaluating import UnsafeCheckpointError

    torch.save(
        {"state_dict": {}, "hyper_parameters": argparse.Namespace()}, root / "0_none/best.ckpt"
    )
    with pytest.raises(UnsafeCheckpointError, match=r"0_none/best\.ckpt"):
        build_report(root / "0_none", faces=4)


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        runs_table(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no results\.json"):
        runs_table(tmp_path)
    bad = tmp_path / "a" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with (
        pytest.warns(UserWarning, match=r"skipping an unreadable run: .*a/results\.json"),
        pytest.raises(ValueError, match=r"no readable results\.json: .*a/results\.json: not valid"),
    ):
        runs_table(tmp_path)
    bad.write_text(json.dumps({"method": "tps", "location": "fmap", "test": {"rank1": 1}}))
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=r"missing key\(s\) \['lambda', 'seed'\]"),
    ):
        runs_table(tmp_path)


def test_a_truncated_results_json_is_skipped_named_and_counted(multirun, tmp_path, capsys):
    root, _ = multirun
    victim = next(root.glob("3_*")) / "results.json"
    text = victim.read_text()
    intact = build_report(root)
    victim.write_text(text[: len(text) // 2])  # a job killed while writing (before atomic writes)
    with pytest.warns(UserWarning, match=rf"{victim}: not valid JSON"):
        report = build_report(root)
    assert [run.path for run in report.skipped] == [victim.resolve()]
    assert len(report.runs) == len(intact.runs) - 1
    # the other 15 runs give what they give without the broken file
    victim.rename(tmp_path / "moved.json")
    alone = build_report(root)
    pd.testing.assert_frame_equal(report.summary, alone.summary)
    (tmp_path / "moved.json").rename(victim)
    markdown = report.markdown()
    assert "**1 unreadable run(s) skipped:**" in markdown and str(victim) in markdown
    with pytest.warns(UserWarning):
        assert main([str(root), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "15 runs, 1 unreadable run(s) skipped" in out and str(victim) in out
    assert str(victim) in (tmp_path / "cli" / "report.md").read_text()


def test_report_of_a_real_tiny_training_run(tmp_path):
    """The report reads what the training job writes: the same schema on both sides."""
    from balanced_align.training import run
    from tests.training_helpers import TINY, compose_train

    fast = ["align=none", "loss.lambda=0", "test=false", "figures=false", "seed=3"]
    run(compose_train([*TINY, *fast], output_dir=tmp_path / "job"))
    written = RunResult.from_json(tmp_path / "job" / "results.json")
    raw = json.loads((tmp_path / "job" / "results.json").read_text())
    assert raw["schema_version"] == 2 and set(raw) == set(written.to_dict())
    report = make_report(tmp_path, tmp_path / "out")
    assert not report.skipped and len(report.runs) == 1
    row = report.runs.iloc[0]
    assert (row.method, row.location, row["lambda"], row.seed) == ("none", "none", 0.0, 3)
    assert row.stage == "val" and row.run_dir == str((tmp_path / "job").resolve())
    for metric in ("rank1", "verif_acc"):
        assert row[metric] == pytest.approx(raw["val_best"][metric])
    assert report.summary.n_runs.tolist() == [1]
    assert (tmp_path / "out" / "report.md").is_file()


def test_cli(multirun, tmp_path, capsys):
    root, _ = multirun
    out = tmp_path / "cli"
    assert main([str(root), "--out", str(out), "--stage", "val"]) == 0
    assert (out / "report.md").is_file()
    assert "STN-TPS-Grid-8" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing does not exist" in capsys.readouterr().err


def test_markdown_table_by_hand():
    table = pd.DataFrame({"method_name": ["A|B"], "lambda": [3.0], "rank1": [0.5], "x": [None]})
    assert markdown_table(table) == (
        "| method | λ | rank-1 | x |\n|---|---|---|---|\n| A\\|B | 3 | 0.5000 | – |"
    )


def test_log_report_to_wandb_offline(multirun, tmp_path, monkeypatch):
    import wandb

    root, _ = multirun
    report = build_report(root)
    assert log_report_to_wandb(report) is False  # no active run: nothing to do
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(project="balanced-align-test", dir=str(tmp_path), mode="offline")
    try:
        assert log_report_to_wandb(report, run) is True
        summary = dict(run.summary)
    finally:
        run.finish()
    assert summary["report/runs"]["_type"] == "table-file"
    assert summary["report/summary"]["_type"] == "table-file"
    assert summary["report/anme_vs_rank1"]["_type"] == "image-file"
    images = list(Path(run.dir).rglob("*.png"))
    assert len(images) == len(report.figures)
