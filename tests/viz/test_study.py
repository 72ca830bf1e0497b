"""Study figures from a hand-made summary table: the plotted values are the table's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balanced_align.viz import anme_rank1_figure, location_bars_figure, yaw_curves_figure


def summary(locations=("input", "fmap")) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for name in ("STN-Affine", "STN-TPS-Grid-8"):
        for location in locations:
            for lam in (0.0, 1.0, 3.0):
                row = {"method_name": name, "location": location, "lambda": lam, "n_runs": 2}
                for metric in ("anme", "rank1", "rank1_yaw15", "rank1_yaw45", "rank1_yaw30"):
                    row[f"{metric}_mean"] = rng.uniform(0.1, 0.9)
                    row[f"{metric}_std"] = rng.uniform(0.0, 0.05)
                rows.append(row)
    return pd.DataFrame(rows)


def test_anme_rank1_one_curve_per_method_location():
    table = summary()
    fig = anme_rank1_figure(table)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.containers) == 4
    for container in ax.containers:
        line = container.lines[0]
        name, location = line.get_gid().split("@")
        rows = table[(table.method_name == name) & (table.location == location)]
        rows = rows.sort_values("lambda")
        expected = rows[["anme_mean", "rank1_mean"]].to_numpy()
        np.testing.assert_allclose(line.get_xydata(), expected)
    labels = {t.get_text() for t in ax.texts}
    assert {"λ=0", "λ=1", "λ=3"} <= labels


def test_location_bars_heights_and_absence():
    table = summary()
    fig = location_bars_figure(table, metrics=("rank1", "anme"))
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    fmap = [p.get_height() for p in ax.patches if p.get_gid() == "fmap"]
    expected = table[table.location == "fmap"].groupby(["method_name", "lambda"], sort=False)
    np.testing.assert_allclose(fmap, [g["rank1_mean"].iloc[0] for _, g in expected])
    assert location_bars_figure(summary(locations=("fmap",))) is None


def test_yaw_curves_sorted_by_angle():
    table = summary()
    fig = yaw_curves_figure(table)
    lines = fig.axes[0].get_lines()
    assert len(lines) == len(table)
    first = lines[0]
    np.testing.assert_allclose(first.get_xdata(), [15, 30, 45])
    row = table.iloc[0]
    gid = f"{row.method_name}@{row.location} λ={row['lambda']:g}"
    (line,) = [ln for ln in lines if ln.get_gid() == gid]
    np.testing.assert_allclose(
        line.get_ydata(),
        row[["rank1_yaw15_mean", "rank1_yaw30_mean", "rank1_yaw45_mean"]].to_numpy(float),
    )
    assert yaw_curves_figure(table.drop(columns=[c for c in table if "yaw" in c])) is None


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="anme_mean"):
        anme_rank1_figure(summary().drop(columns="anme_mean"))
