"""Log a report's tables and figures to a W&B run."""

from __future__ import annotations

import pandas as pd

from balanced_align.report.document import Report
from balanced_align.report.markdown import summary_display
from balanced_align.viz.export import figure_to_array

#: the key (under the prefix) of the ANME vs rank-1 scatter plot across runs
SCATTER = "anme_vs_rank1_points"
#: the columns of its table
POINT_COLUMNS = (
    "method_name",
    "location",
    "lambda",
    "seed",
    "stage",
    "anme",
    "rank1",
    "anme_failed_frac",
    "run_dir",
)


def _wandb_table(table: pd.DataFrame):
    import wandb

    plain = table.astype(object).where(table.notna(), None)
    return wandb.Table(columns=[str(c) for c in table.columns], data=plain.values.tolist())


def log_report_to_wandb(report: Report, run=None, prefix: str = "report") -> bool:
    """Log the runs and summary tables and the figures to a W&B run.

    ``run`` defaults to the active ``wandb.run``; without one nothing is logged and False is
    returned (no server needed: offline and disabled runs work as usual).
    """
    import wandb

    run = run if run is not None else wandb.run
    if run is None:
        return False
    payload = {
        f"{prefix}/runs": _wandb_table(report.runs),
        f"{prefix}/summary": _wandb_table(summary_display(report.summary)),
    }
    for name, fig in report.figures.items():
        payload[f"{prefix}/{name}"] = wandb.Image(figure_to_array(fig, dpi=110), caption=name)
    points = anme_rank1_points(report.runs)
    if len(points):
        payload[f"{prefix}/{SCATTER}"] = wandb.plot.scatter(
            _wandb_table(points), "anme", "rank1", title="ANME vs rank-1, one point per run"
        )
    run.log(payload)
    return True


def anme_rank1_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with both ANME and rank-1: :data:`POINT_COLUMNS` that the table has."""
    if not {"anme", "rank1"} <= set(runs.columns):
        return runs.iloc[0:0]
    kept = runs.dropna(subset=["anme", "rank1"])
    return kept[[c for c in POINT_COLUMNS if c in kept.columns]].reset_index(drop=True)
