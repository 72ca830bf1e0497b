"""Log a report's tables and figures to a W&B run."""

from __future__ import annotations

import pandas as pd

from balanced_align.report.document import Report
from balanced_align.report.markdown import summary_display
from balanced_align.viz.export import figure_to_array


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
    run.log(payload)
    return True
