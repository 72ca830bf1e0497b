"""Tables as markdown and for display: titles, number formats, mean ± std cells."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from balanced_align.report.tables import _YAW, COLUMN_TITLES, metric_columns


def _cell(value, digits: int | None = 4) -> str:
    """Text of one cell: floats with ``digits`` decimals (``None``: shortest form)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:g}" if digits is None else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


#: columns shown in their shortest form (not as 4-decimal metrics)
PLAIN_COLUMNS = ("lambda", "seed", "n_runs", "tps_grid_size")


def markdown_table(table: pd.DataFrame, titles: Mapping[str, str] | None = None) -> str:
    """A GitHub markdown table of ``table`` (cells formatted by hand; no tabulate needed)."""
    titles = dict(titles or {})
    header = [titles.get(c, _column_title(c)) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in table.iterrows():
        cells = [
            _cell(v, None if c in PLAIN_COLUMNS else 4) for c, v in zip(table.columns, row.tolist())
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _column_title(column: str) -> str:
    match = _YAW.match(column)
    if match:
        return f"rank-1 {match.group(1)}°"
    return COLUMN_TITLES.get(column, column)


def _has_setting(table: pd.DataFrame) -> bool:
    """Whether any row has a ``--by`` setting (an empty column reads back from CSV as NaN)."""
    return "setting" in table and table["setting"].fillna("").astype(str).ne("").any()


def summary_display(summary: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The summary with one "mean ± std" text column per metric (for markdown and W&B)."""
    columns = ["method_name", "location", "lambda", "alpha", "template", "setting"]
    if not _has_setting(summary):
        columns.remove("setting")
    out = summary[[*columns, "n_runs", "seeds"]].copy()
    for metric in metric_columns(c.removesuffix("_mean") for c in summary.columns):
        mean, std = summary[f"{metric}_mean"], summary[f"{metric}_std"]
        out[metric] = [
            "–" if pd.isna(m) else f"{m:.{digits}f}" + ("" if pd.isna(s) else f" ± {s:.{digits}f}")
            for m, s in zip(mean, std)
        ]
    return out
