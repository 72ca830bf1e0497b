"""Figures of the alignment-strength study from a summary table (mean ± std over seeds).

The summary is :func:`balanced_align.report.summary_table`'s DataFrame: one row per
(method, tps_grid_size, location, λ, alpha, template) with ``method_name``, ``n_runs`` and,
for each metric m, the columns ``m_mean`` and ``m_std``. The ``alpha`` / ``template``
columns (optional) tell apart runs with fixed α or a fixed template from the default (both
learned, or "–" where there is no alignment loss); such variants get their own series.

- :func:`anme_rank1_figure`: ANME against rank-1, one curve per method@location through its
  λ values (paper Fig. 3 / Fig. 7); lower ANME = stronger alignment.
- :func:`location_bars_figure`: input vs feature-map alignment per method and λ (Fig. 4).
- :func:`yaw_curves_figure`: rank-1 per |yaw| bin (Multi-PIE style), one curve per group.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from balanced_align.viz.common import new_figure

LOCATION_MARKERS = {"fmap": "o", "input": "s", "none": "D"}
METRIC_LABELS = {
    "rank1": "rank-1",
    "verif_acc": "verification accuracy",
    "anme": "ANME",
    "anme_failed_frac": "ANME failed fraction",
    "folded_frac": "folded fraction",
}
_YAW = re.compile(r"^rank1_yaw(\d+(?:\.\d+)?)_mean$")


def _require(summary: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    if not isinstance(summary, pd.DataFrame):
        raise TypeError(f"{where}: summary must be a pandas DataFrame, got {type(summary)}")
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(f"{where}: summary lacks columns {missing}")


def variant_suffix(alpha, template, setting="") -> str:
    """ " α fixed", " T_fix", " landmark_noise=4", …: what a series changes from the default
    (α and T learned; ``setting``: the report's ``--by`` values)."""
    parts = []
    if isinstance(alpha, str) and alpha.startswith("fixed"):
        parts.append(f"α {alpha}")
    if template not in ("learned", "–") and not pd.isna(template):
        parts.append(str(template))
    if isinstance(setting, str) and setting:
        parts.append(setting)
    return "".join(f" {p}" for p in parts)


def _variants(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's alpha / template ("learned" where it has none) and setting ("")
    columns."""
    variants = pd.DataFrame(
        {c: summary[c] if c in summary else "learned" for c in ("alpha", "template")},
        index=summary.index,
    ).fillna("learned")
    setting = summary["setting"] if "setting" in summary else pd.Series("", summary.index)
    variants["setting"] = setting.astype(object).fillna("").astype(str)
    return variants


def _series(summary: pd.DataFrame):
    """(label, location, rows sorted by λ) per method@location and α/T variant, in order.

    Rows at λ = 0 (α and T "–") join the default series of their method@location, so a λ
    sweep is one curve.
    """
    variants = _variants(summary)
    suffix = [
        variant_suffix(a, t, s)
        for a, t, s in zip(variants["alpha"], variants["template"], variants["setting"])
    ]
    keys = pd.Series(list(zip(summary["method_name"], summary["location"], suffix)))
    keys.index = summary.index
    for name, location, extra in dict.fromkeys(keys):
        rows = summary[[k == (name, location, extra) for k in keys]]
        label = (name if location == "none" else f"{name}@{location}") + extra
        yield label, location, rows.sort_values("lambda")


def _colour(index: int):
    from matplotlib import colormaps

    return colormaps["tab10"](index % 10)


def anme_rank1_figure(summary: pd.DataFrame, metric: str = "rank1") -> Figure:
    """ANME (x) against ``metric`` (y), error bars = std over seeds, points labelled by λ.

    One errorbar container per method@location (its data line has that label as ``gid``).
    """
    columns = ["method_name", "location", "lambda", "anme_mean", f"{metric}_mean"]
    _require(summary, columns, "anme_rank1_figure")
    fig, axes = new_figure(1, 1, panel=(6.4, 4.6))
    ax = axes[0, 0]
    for index, (label, location, rows) in enumerate(_series(summary)):
        rows = rows.dropna(subset=["anme_mean", f"{metric}_mean"])
        if rows.empty:
            continue
        x, y = rows["anme_mean"].to_numpy(float), rows[f"{metric}_mean"].to_numpy(float)
        container = ax.errorbar(
            x,
            y,
            xerr=_std(rows, "anme"),
            yerr=_std(rows, metric),
            marker=LOCATION_MARKERS.get(location, "o"),
            ms=6,
            lw=1.2,
            capsize=2.5,
            color=_colour(index),
            label=label,
        )
        container.lines[0].set_gid(label)
        for xi, yi, lam in zip(x, y, rows["lambda"]):
            ax.annotate(
                f"λ={lam:g}", (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=7
            )
    ax.set_xlabel("ANME (lower = stronger alignment)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"alignment strength vs {METRIC_LABELS.get(metric, metric)}", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.containers:
        ax.legend(fontsize=8, loc="best")
    return fig


def _std(rows: pd.DataFrame, metric: str):
    column = f"{metric}_std"
    if column not in rows:
        return None
    values = rows[column].to_numpy(float)
    return None if np.isnan(values).all() else np.nan_to_num(values)


def location_bars_figure(
    summary: pd.DataFrame, metrics: Sequence[str] = ("rank1", "anme")
) -> Figure | None:
    """Bars of input vs fmap alignment for each method and λ that has both (paper Fig. 4).

    One axes per metric of ``metrics`` present in the summary; bars carry ``gid``
    "input" / "fmap" on their containers' patches. Returns None when no (method, λ) was run
    at both locations.
    """
    _require(summary, ["method_name", "location", "lambda"], "location_bars_figure")
    metrics = [m for m in metrics if f"{m}_mean" in summary.columns]
    if not metrics:
        raise ValueError(f"location_bars_figure: none of the metrics {metrics} in the summary")
    variants = _variants(summary)
    keyed = summary.assign(**{c: variants[c] for c in ("alpha", "template", "setting")})
    both = []
    for (name, lam, alpha, template, setting), rows in keyed.groupby(
        ["method_name", "lambda", "alpha", "template", "setting"], sort=False
    ):
        if {"input", "fmap"} <= set(rows["location"]):
            both.append((name + variant_suffix(alpha, template, setting), lam, rows))
    if not both:
        return None
    fig, axes = new_figure(1, len(metrics), panel=(max(3.2, 1.1 * len(both) + 1.2), 3.8))
    positions = np.arange(len(both))
    width = 0.38
    for ax, metric in zip(axes[0], metrics):
        for offset, location, colour in (
            (-width / 2, "input", "#8da0cb"),
            (width / 2, "fmap", "#fc8d62"),
        ):
            means, stds = [], []
            for _, _, rows in both:
                row = rows[rows["location"] == location].iloc[0]
                means.append(float(row[f"{metric}_mean"]))
                std = row.get(f"{metric}_std", np.nan)
                stds.append(0.0 if pd.isna(std) else float(std))
            bars = ax.bar(
                positions + offset,
                means,
                width,
                yerr=stds,
                capsize=2.5,
                color=colour,
                label=f"align@{location}",
            )
            for patch in bars.patches:
                patch.set_gid(location)
        _zoom(ax)
        ax.set_xticks(positions)
        ax.set_xticklabels([f"{name}\nλ={lam:g}" for name, lam, _ in both], fontsize=7.5)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle("alignment at the input vs at the stage-0 feature map", fontsize=10)
    return fig


def _zoom(ax) -> None:
    """Start the bars' y axis near the data (a note says so) when they differ little."""
    tops = [p.get_height() for p in ax.patches]
    if not tops or min(tops) <= 0:
        return
    low, high = min(tops), max(tops)
    bottom = low - max(high - low, 0.05 * high)
    if bottom > 0.2 * high:
        ax.set_ylim(bottom=bottom)
        ax.annotate(
            f"y axis from {bottom:.3g}",
            (0.01, 0.01),
            xycoords="axes fraction",
            fontsize=6.5,
            color="0.4",
        )


def yaw_bins(summary: pd.DataFrame) -> list[tuple[float, str]]:
    """(yaw in degrees, column) of the summary's ``rank1_yaw<b>_mean`` columns, by angle."""
    found = [(float(m.group(1)), c) for c in summary.columns if (m := _YAW.match(str(c)))]
    return sorted(found)


def yaw_curves_figure(summary: pd.DataFrame) -> Figure | None:
    """Rank-1 per |yaw| bin, one line per summary row (its label as the line's ``gid``).

    Returns None when the summary has no per-yaw rank-1 values.
    """
    _require(summary, ["method_name", "location", "lambda"], "yaw_curves_figure")
    bins = yaw_bins(summary)
    if not bins or summary[[c for _, c in bins]].isna().all().all():
        return None
    angles = np.array([b for b, _ in bins])
    fig, axes = new_figure(1, 1, panel=(6.8, 4.2))
    ax = axes[0, 0]
    styles = ["-", "--", ":", "-."]
    for index, (label, location, rows) in enumerate(_series(summary)):
        for k, (_, row) in enumerate(rows.iterrows()):
            values = row[[c for _, c in bins]].to_numpy(float)
            name = f"{label} λ={row['lambda']:g}"
            ax.plot(
                angles,
                values,
                marker=LOCATION_MARKERS.get(location, "o"),
                ms=4,
                ls=styles[k % len(styles)],
                color=_colour(index),
                label=name,
                gid=name,
            )
    ax.set_xticks(angles)
    ax.set_xlabel("|yaw| bin (degrees)")
    ax.set_ylabel("rank-1")
    ax.set_title("rank-1 per pose (frontal gallery)", fontsize=10)
    ax.grid(alpha=0.3)
    if len(ax.lines) > 6:  # many curves: the legend goes beside the axes
        fig.legend(loc="outside right upper", fontsize=7)
    else:
        ax.legend(fontsize=7, loc="best")
    return fig


__all__ = [
    "anme_rank1_figure",
    "location_bars_figure",
    "yaw_bins",
    "yaw_curves_figure",
]
