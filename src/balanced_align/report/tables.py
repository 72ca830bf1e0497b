"""The runs table (one row per run) and the summary table (mean ± std over seeds of each group)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from balanced_align.report.runs import read_runs
from balanced_align.run_result import RunResult
from balanced_align.viz.common import method_name
from balanced_align.viz.study import (
    variant_suffix,
)

STAGES = ("auto", "test", "val")
#: the columns a summary groups by ("setting": the ``--by`` config values, "" without)
GROUP_KEYS = ("method", "tps_grid_size", "location", "lambda", "alpha", "template", "setting")
#: alignment families whose warp is learned by an STN (α and T exist only for these, at λ > 0)
STN_METHODS = ("affine", "projective", "tps")
#: what the alpha / template columns hold where the run has no α or T (no STN, or λ = 0)
NOT_APPLICABLE = "–"
#: template label of a learned template loaded from a checkpoint and frozen (paper's T_fix†)
FIXED_LEARNED_TEMPLATE = "T_fix†"
#: metrics of the tables, in order; per-yaw rank-1 columns go between these two groups
HEAD_METRICS = ("anme", "rank1", "verif_acc")
TAIL_METRICS = ("anme_exact", "anme_failed_frac", "folded_frac")
METHOD_ORDER = {"none": 0, "affine2d": 1, "affine": 2, "projective": 3, "tps": 4, "fullalign": 5}
_YAW = re.compile(r"^rank1_yaw(\d+(?:\.\d+)?)$")
COLUMN_TITLES = {
    "method_name": "method",
    "location": "location",
    "lambda": "λ",
    "alpha": "α",
    "template": "template",
    "seed": "seed",
    "stage": "split",
    "n_runs": "runs",
    "anme": "ANME",
    "rank1": "rank-1",
    "verif_acc": "verif. acc",
    "anme_exact": "ANME (exact)",
    "anme_failed_frac": "ANME failed",
    "folded_frac": "folded",
    "run_dir": "run",
}


def _number(value) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def alignment_variant(result: RunResult) -> tuple[str, str]:
    """(alpha, template) of a run: how its α and template T were set (paper §5.3).

    alpha: "learned", or "fixed <α₀>" (``loss.learn_alpha=false`` at ``loss.alpha_init``).
    template: "learned" (``T``),
    "T_fix" (the mean frontal landmarks, frozen) or "T_fix†" (a learned template loaded from
    ``loss.template_checkpoint``, frozen). Both are "–" where the run has no alignment loss:
    no STN, or λ = 0. Keys missing from the run's flat config take the library's defaults
    (both learned).
    """
    if result.method not in STN_METHODS or result.lambda_ == 0:
        return NOT_APPLICABLE, NOT_APPLICABLE
    config = result.config
    alpha = "learned"
    if not config.get("loss.learn_alpha", True):
        from balanced_align.config_schema import LossConfig

        alpha_init = config.get("loss.alpha_init", LossConfig().alpha_init)
        alpha = f"fixed {float(alpha_init):g}"
    if config.get("loss.template_checkpoint"):
        template = FIXED_LEARNED_TEMPLATE
    elif config.get("loss.learn_template", True):
        template = "learned"
    else:
        template = "T_fix"
    return alpha, template


def parse_by(specs: Iterable[str]) -> list[tuple[str, str | None]]:
    """``["KEY", "KEY=DEFAULT", …]`` → [(key, default or None)]: flat config keys (as in
    ``results.json``'s ``config``) that also split the groups, e.g.
    ``data.source.synth_knobs.landmark_noise=0`` (0 for runs whose config lacks the key). A
    run written before per-source options matches under its spelling of the key
    (``data.synth_knobs.…``, see :func:`equivalent_keys`)."""
    parsed = []
    for spec in specs:
        key, sep, default = str(spec).partition("=")
        if not key.strip():
            raise ValueError(f"--by {spec!r}: expected KEY or KEY=DEFAULT")
        parsed.append((key.strip(), default if sep else None))
    return parsed


#: data options renamed when they moved into ``data.source`` (today's name → the flat name)
RENAMED_DATA_KEYS = {"pairs": "lfw_pairs", "test_set": "lfw_test_set", "val_set": "lfw_val_set"}


def equivalent_keys(key: str) -> tuple[str, ...]:
    """The other spellings of a flat config key across the move of the data options into
    ``data.source`` (``balanced_align.data.source_kinds``): ``data.source.test_set`` →
    ``data.lfw_test_set``, ``data.source.evaluation.X`` and ``data.source.X`` → ``data.X``;
    ``data.X`` → ``data.source.X`` and ``data.source.evaluation.X``. So one report groups
    runs of either era."""
    parts = key.split(".")
    if parts[0] != "data" or parts[1:] in ([], ["source"]):
        return ()
    if parts[1:3] == ["source", "evaluation"]:
        return (".".join(["data", *parts[3:]]),) if len(parts) > 3 else ()
    if parts[1] == "source":
        return (".".join(["data", RENAMED_DATA_KEYS.get(parts[2], parts[2]), *parts[3:]]),)
    former = {old: new for new, old in RENAMED_DATA_KEYS.items()}
    option = [former.get(parts[1], parts[1]), *parts[2:]]
    return tuple(
        ".".join(["data", *prefix, *option]) for prefix in (["source"], ["source", "evaluation"])
    )


def _setting_names(by: Sequence[tuple[str, str | None]]) -> list[str]:
    """Short names of the ``by`` keys (the last dotted part, unless two keys share it)."""
    short = [key.rsplit(".", 1)[-1] for key, _ in by]
    return [s if short.count(s) == 1 else key for s, (key, _) in zip(short, by)]


def setting(result: RunResult, by: Sequence[tuple[str, str | None]], path="") -> str:
    """``"landmark_noise=4"``-style text of a run's values of the ``by`` config keys."""
    config = result.config
    parts = []
    for name, (key, default) in zip(_setting_names(by), by):
        found = [k for k in (key, *equivalent_keys(key)) if k in config]
        if found:
            value = config[found[0]]
        elif default is not None:
            value = _parse_scalar(default)
        else:
            raise ValueError(
                f"{path}: config has no {key!r} (give a default for such runs: --by {key}=VALUE)"
            )
        parts.append(f"{name}={_value_text(value)}")
    return ", ".join(parts)


def _parse_scalar(text: str):
    """A ``--by`` default as the config would hold it: a JSON number / bool / null, else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _value_text(value) -> str:
    """One text per value: 0, 0.0 and "0" from different sources must group together."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, (int, float)):
        return f"{float(value):.12g}"
    return str(value)


def _natural_key(column: pd.Series) -> pd.Series:
    """Sort key of a text column with its numbers compared as numbers (``x=2`` < ``x=10``)."""

    def pad(text) -> str:
        return re.sub(r"\d+(?:\.\d+)?", lambda m: f"{float(m.group()):024.9f}", str(text))

    return column.map(pad)


def run_row(
    result: RunResult,
    path: str | os.PathLike,
    stage: str = "auto",
    by: Sequence[tuple[str, str | None]] = (),
) -> dict:
    """One runs-table row from a read ``results.json`` (``by``: see :func:`parse_by`).

    ``val`` metrics are those of the best checkpoint (``val_best``, the weights that were
    tested) where the file has them, else the run's last validation (older files)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    test, val = result.test, result.val_best or result.val
    chosen = stage if stage != "auto" else ("test" if test else "val")
    metrics = test if chosen == "test" else val
    if not metrics:
        what = "neither test nor val metrics" if stage == "auto" else f"no {stage} metrics"
        raise ValueError(f"{path}: {what}")
    method = result.method
    grid = result.tps_grid_size if method == "tps" else None
    row = {
        "method": method,
        "tps_grid_size": grid,
        "location": "none" if method == "none" else result.location,
        "lambda": result.lambda_,
        **dict(zip(("alpha", "template"), alignment_variant(result))),
        "setting": setting(result, by, path),
        "method_name": method_name(method, grid),
        "seed": result.seed,
        "stage": chosen,
    }
    if row["template"] == FIXED_LEARNED_TEMPLATE:
        row["template_checkpoint"] = str(result.config["loss.template_checkpoint"])
    for name, value in metrics.items():
        row[name] = _number(value)
    row["run_dir"] = str(Path(path).parent)
    return row


# -- tables ----------------------------------------------------------------------------------
def metric_columns(columns: Iterable[str]) -> list[str]:
    """The report's metric columns among ``columns``, in table order (yaw bins by angle)."""
    columns = list(columns)
    yaw = sorted((float(m.group(1)), c) for c in columns if (m := _YAW.match(c)))
    return list(HEAD_METRICS) + [c for _, c in yaw] + [c for c in TAIL_METRICS if c in columns]


def runs_table(paths, stage: str = "auto", by: Iterable[str] = ()) -> pd.DataFrame:
    """One row per readable run found under ``paths`` (see :func:`read_runs`, which warns
    about the unreadable ones); the columns are :func:`table_of_runs`'."""
    return table_of_runs(read_runs(paths)[0], stage, by)


def table_of_runs(
    runs: Sequence[tuple[Path, RunResult]], stage: str = "auto", by: Iterable[str] = ()
) -> pd.DataFrame:
    """One row per (path, result) of ``runs``.

    Columns: method, tps_grid_size (nullable int), location ("none" without alignment),
    lambda, alpha, template (see :func:`alignment_variant`; numbered ``T_fix†1``, ``T_fix†2``,
    … when the runs load templates from several checkpoints), setting (the values of the
    ``by`` config keys, see :func:`parse_by`; "" without), method_name, seed, stage (the
    split the metrics come from), the metric columns of :func:`metric_columns` (NaN where a
    run lacks one), template_checkpoint (T_fix† runs; else None / NaN), run_dir. Sorted by
    method, grid size, location, λ, α and template (each with the default first), setting
    (numbers as numbers), seed.
    """
    by = parse_by(by)
    rows = [run_row(result, path, stage, by) for path, result in runs]
    table = pd.DataFrame(rows)
    for metric in HEAD_METRICS:
        if metric not in table:
            table[metric] = np.nan
    metrics = metric_columns(table.columns)
    if "template_checkpoint" not in table:
        table["template_checkpoint"] = None
    keys = [*GROUP_KEYS, "method_name", "seed", "stage"]
    table = table[[*keys, *metrics, "template_checkpoint", "run_dir"]]
    table["tps_grid_size"] = table["tps_grid_size"].astype("Int64")
    table = _number_fixed_templates(table)
    default_first = {NOT_APPLICABLE: 0, "learned": 0}  # then the variants, alphabetically
    ranks = {
        "_order": table["method"].map(METHOD_ORDER).fillna(len(METHOD_ORDER)),
        "_alpha": table["alpha"].map(default_first).fillna(1),
        "_template": table["template"].map(default_first).fillna(1),
    }
    ranks.update(
        _template_text=_natural_key(table["template"]), _setting=_natural_key(table["setting"])
    )
    order = [*GROUP_KEYS[:4], "_alpha", "alpha", "_template", "_template_text", "_setting"]
    table = (
        table.assign(**ranks)
        .sort_values(["_order", *order, "seed"])
        .drop(columns=list(ranks))
        .reset_index(drop=True)
    )
    return table


def _number_fixed_templates(table: pd.DataFrame) -> pd.DataFrame:
    """Label T_fix† runs ``T_fix†1``, ``T_fix†2``, ... (checkpoint paths in sorted order) when
    they load more than one checkpoint, so that different templates are not pooled. Paths are
    compared normalised (``a/./b`` and ``a/b`` are one checkpoint)."""
    fixed = table["template"] == FIXED_LEARNED_TEMPLATE
    table.loc[fixed, "template_checkpoint"] = [
        os.path.normpath(path) for path in table.loc[fixed, "template_checkpoint"]
    ]
    checkpoints = sorted(set(table.loc[fixed, "template_checkpoint"]))
    if len(checkpoints) > 1:
        number = {path: i + 1 for i, path in enumerate(checkpoints)}
        table.loc[fixed, "template"] = [
            f"{FIXED_LEARNED_TEMPLATE}{number[path]}"
            for path in table.loc[fixed, "template_checkpoint"]
        ]
    return table


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof = 1) over the runs of each group of :data:`GROUP_KEYS`
    (method, grid, location, λ, α, T and the ``--by`` setting).

    Columns: the group keys, method_name, n_runs, seeds (comma-separated), then
    ``<metric>_mean`` and ``<metric>_std`` per metric (std NaN for a single run; NaN metric
    values are left out of both).
    """
    if "setting" not in runs:  # a runs.csv written before --by existed
        runs = runs.assign(setting="")
    runs = runs.assign(setting=runs["setting"].fillna("").astype(str))
    missing = [c for c in (*GROUP_KEYS, "seed", "method_name") if c not in runs]
    if missing:
        raise ValueError(f"summary_table: the runs table lacks columns {missing}")
    metrics = metric_columns(runs.columns)
    groups = runs.groupby(list(GROUP_KEYS), dropna=False, sort=False)
    rows = []
    for keys, group in groups:
        row = dict(zip(GROUP_KEYS, keys))
        row["method_name"] = group["method_name"].iloc[0]
        row["n_runs"] = len(group)
        row["seeds"] = ",".join(str(s) for s in sorted(group["seed"]))
        for metric in metrics:
            values = group[metric].to_numpy(float)
            values = values[~np.isnan(values)]
            row[f"{metric}_mean"] = values.mean() if values.size else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if values.size > 1 else np.nan
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["tps_grid_size"] = summary["tps_grid_size"].astype("Int64")
    return summary


def group_label(row) -> str:
    """``STN-TPS-Grid-8@fmap λ=3 α fixed 0.9``-style label of a runs / summary row."""
    where = "" if row["location"] == "none" else f"@{row['location']}"
    lam = f" λ={row['lambda']:g}" if row["method"] in STN_METHODS else ""
    suffix = variant_suffix(row["alpha"], row["template"], row.get("setting", ""))
    return f"{row['method_name']}{where}{lam}{suffix}"
