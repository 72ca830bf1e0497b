"""``report --wandb``: the ANME vs rank-1 scatter across runs (W&B offline)."""

import json
import math
from pathlib import Path

import pandas as pd

from balanced_align.report import build_report, log_report_to_wandb
from balanced_align.report.wandb_logging import anme_rank1_points
from tests.test_report import multirun  # noqa: F401  (the fixture)


def test_points_keep_runs_with_both_metrics():
    runs = pd.DataFrame(
        {"method_name": ["a", "b", "c"], "anme": [0.3, math.nan, 0.1], "rank1": [0.5, 0.6, None]}
    )
    points = anme_rank1_points(runs)
    assert points.to_dict("list") == {"method_name": ["a"], "anme": [0.3], "rank1": [0.5]}
    assert anme_rank1_points(pd.DataFrame({"rank1": [0.5]})).empty


def test_report_logs_one_scatter_point_per_run(multirun, tmp_path, monkeypatch):  # noqa: F811
    import wandb

    root, _ = multirun
    report = build_report(root)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(project="balanced-align-test", dir=str(tmp_path), mode="offline")
    try:
        log_report_to_wandb(report, run)
        entry = dict(run.summary)["report/anme_vs_rank1_points_table"]
        files = Path(run.dir)
    finally:
        run.finish()
    table = json.loads((files / entry["path"]).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    expected = [r for r in report.runs.to_dict("records") if not pd.isna(r.get("anme"))]
    assert len(rows) == len(expected) > 0
    assert sorted((r["anme"], r["rank1"]) for r in rows) == sorted(
        (r["anme"], r["rank1"]) for r in expected
    )
