"""Report over training results: per-run and mean ± std tables, the study's figures, report.md.

Every job of ``python train.py -m …`` writes ``results.json``, one
:class:`~balanced_align.run_result.RunResult` (see :mod:`balanced_align.training`). This
module gathers them from one or more multirun directories (searched recursively) or single
run directories / files; a file that cannot be read as a RunResult (e.g. truncated by a
killed job) is skipped with a warning naming it and listed in ``report.md`` and the CLI's
output. It builds

- the **runs** table: one row per run (method, TPS grid size, location, λ, whether α and
  the template were learned or fixed (T_fix, or T_fix† from a checkpoint), seed, which
  split the metrics come from, ANME, rank-1, verification accuracy, rank-1 per |yaw| bin,
  the failed / folded fractions of ANME's inverse warps);
- the **summary** table: mean and sample std (ddof = 1) over the runs of each
  (method, grid size, location, λ, α, template) group, i.e. over seeds;
- the figures: ANME vs rank-1 (paper Fig. 3 / 7), input vs fmap bars (Fig. 4; only when
  some method and λ were run at both locations), rank-1 per yaw curves; with ``faces > 0``
  (``--faces N``) also the same N test faces aligned by each group's model (Fig. 1 / 2),
  which loads checkpoints and rebuilds the first run's data module;
- ``report.md`` (markdown tables and the figures), ``runs.csv`` and ``summary.csv``.

Metrics are the test split's when a run has them, else validation's (``stage="auto"``);
``stage="test"`` or ``"val"`` insists on one split.

CLI::

    python -m balanced_align.report outputs/train/multiruns/2024-… [MORE …] --out report/
    python -m balanced_align.report RUN_DIR --stage val --out report/ --wandb
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from balanced_align.run_result import RunResult, RunResultError
from balanced_align.viz.common import method_name
from balanced_align.viz.export import figure_to_array, save_figures
from balanced_align.viz.study import (
    anme_rank1_figure,
    location_bars_figure,
    variant_suffix,
    yaw_curves_figure,
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


# -- finding and reading results -------------------------------------------------------------
def find_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``results.json`` under ``paths`` (directories searched recursively; files as is).

    Raises FileNotFoundError naming a path that does not exist, or all paths when no results
    are found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("report: no paths given")
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"report: {path} does not exist")
        candidates = [path] if path.is_file() else sorted(path.rglob("results.json"))
        for candidate in candidates:
            found.setdefault(candidate.resolve(), None)
    if not found:
        raise FileNotFoundError(f"report: no results.json under {', '.join(str(p) for p in paths)}")
    return list(found)


@dataclass
class SkippedRun:
    """A ``results.json`` the report could not read (e.g. truncated by a killed job)."""

    path: Path
    reason: str


def read_runs(paths) -> tuple[list[tuple[Path, RunResult]], list[SkippedRun]]:
    """(path, :class:`RunResult`) of every readable ``results.json`` under ``paths`` (see
    :func:`find_results`), and the unreadable ones, each with a warning naming it.

    Raises ValueError naming the skipped files when none is readable.
    """
    runs, skipped = [], []
    for path in find_results(paths):
        try:
            runs.append((path, RunResult.from_json(path)))
        except RunResultError as err:
            skipped.append(SkippedRun(path, str(err)))
            warnings.warn(f"report: skipping an unreadable run: {err}", stacklevel=2)
    if not runs:
        raise ValueError(
            "report: no readable results.json: " + "; ".join(s.reason for s in skipped)
        )
    return runs, skipped


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
        from balanced_align.module import DEFAULTS

        alpha_init = config.get("loss.alpha_init", DEFAULTS["loss"]["alpha_init"])
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
    ``data.synth_knobs.landmark_noise=0`` (0 for runs whose config lacks the key)."""
    parsed = []
    for spec in specs:
        key, sep, default = str(spec).partition("=")
        if not key.strip():
            raise ValueError(f"--by {spec!r}: expected KEY or KEY=DEFAULT")
        parsed.append((key.strip(), default if sep else None))
    return parsed


def _setting_names(by: Sequence[tuple[str, str | None]]) -> list[str]:
    """Short names of the ``by`` keys (the last dotted part, unless two keys share it)."""
    short = [key.rsplit(".", 1)[-1] for key, _ in by]
    return [s if short.count(s) == 1 else key for s, (key, _) in zip(short, by)]


def setting(result: RunResult, by: Sequence[tuple[str, str | None]], path="") -> str:
    """``"landmark_noise=4"``-style text of a run's values of the ``by`` config keys."""
    config = result.config
    parts = []
    for name, (key, default) in zip(_setting_names(by), by):
        if key in config:
            value = config[key]
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
    """One runs-table row from a read ``results.json`` (``by``: see :func:`parse_by`)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    test, val = result.test, result.val
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


# -- markdown --------------------------------------------------------------------------------
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


# -- the report ------------------------------------------------------------------------------
@dataclass
class Report:
    """Tables and figures of one report (see the module docstring)."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)
    stage: str = "auto"
    sources: list[Path] = field(default_factory=list)
    #: results.json files that could not be read (left out of every table)
    skipped: list[SkippedRun] = field(default_factory=list)

    def markdown(self, figure_files: Mapping[str, str] | None = None) -> str:
        """report.md's text; ``figure_files`` maps figure names to relative image paths."""
        splits = sorted(set(self.runs["stage"]))
        lines = [
            "# balanced-align report",
            "",
            f"{len(self.runs)} runs in {len(self.summary)} groups, from: "
            + ", ".join(f"`{s}`" for s in self.sources),
            "",
            *self._skipped_note(),
            f"Metrics of the {' and '.join(splits)} split(s) (stage={self.stage}: the test "
            "split where a run has it, else validation). ANME: lower = stronger alignment; "
            "'ANME failed': fraction of evaluation landmarks whose inverse warp did not "
            "converge; 'folded': fraction on a fold of the warp.",
            "",
            "## Mean ± std over seeds",
            "",
            *self._pooling_note(),
            markdown_table(summary_display(self.summary)),
            "",
            *self._template_legend(),
        ]
        captions = {
            "anme_vs_rank1": "ANME vs rank-1 (paper Fig. 3 / 7)",
            "input_vs_fmap": "Alignment at the input vs at the feature map (paper Fig. 4)",
            "rank1_per_yaw": "Rank-1 per |yaw| bin",
            "aligned_by_method": "Test faces aligned by each group's model (paper Fig. 1 / 2)",
        }
        if figure_files:
            lines += ["## Figures", ""]
            for name, file in figure_files.items():
                lines += [f"### {captions.get(name, name)}", "", f"![{name}]({file})", ""]
        hidden = ["method", "tps_grid_size", "template_checkpoint"]
        if not _has_setting(self.runs):
            hidden.append("setting")
        columns = [c for c in self.runs.columns if c not in hidden]
        columns.insert(0, columns.pop(columns.index("method_name")))
        runs = self.runs[columns].assign(run_dir=[Path(p).name for p in self.runs["run_dir"]])
        lines += ["## Runs", "", markdown_table(runs), ""]
        return "\n".join(lines)

    def _skipped_note(self) -> list[str]:
        """The unreadable runs, named, with why (e.g. a results.json truncated by a kill)."""
        if not self.skipped:
            return []
        lines = [f"**{len(self.skipped)} unreadable run(s) skipped:**", ""]
        lines += [f"- {run.reason}" for run in self.skipped]  # each reason names its file
        return [*lines, ""]

    def _template_legend(self) -> list[str]:
        """Which checkpoint each T_fix† template came from."""
        if "template_checkpoint" not in self.runs:
            return []
        dagger = self.runs[self.runs["template"].astype(str).str.startswith(FIXED_LEARNED_TEMPLATE)]
        pairs = sorted(set(zip(dagger["template"], dagger["template_checkpoint"])))
        if not pairs:
            return []
        return [
            "Templates loaded from checkpoints: "
            + "; ".join(f"{label}: `{path}`" for label, path in pairs),
            "",
        ]

    def _pooling_note(self) -> list[str]:
        """A warning line when a group holds the same seed twice (other settings pooled)."""
        repeated = self.summary[
            [
                len(set(s.split(","))) < n
                for s, n in zip(self.summary["seeds"], self.summary["n_runs"])
            ]
        ]
        if repeated.empty:
            return []
        names = ", ".join(group_label(r) for _, r in repeated.iterrows())
        return [
            f"**Note:** {names} repeat a seed: runs that differ in settings other than "
            "method, grid size, location, λ, α, template and the `--by` setting are pooled "
            "there (`--by KEY` separates runs by a config key).",
            "",
        ]


def study_figures(summary: pd.DataFrame) -> dict[str, Figure]:
    """The figures a summary supports: anme_vs_rank1, input_vs_fmap, rank1_per_yaw."""
    figures = {}
    if summary[["anme_mean", "rank1_mean"]].notna().all(axis=1).any():
        figures["anme_vs_rank1"] = anme_rank1_figure(summary)
    bars = location_bars_figure(summary)
    if bars is not None:
        figures["input_vs_fmap"] = bars
    yaw = yaw_curves_figure(summary)
    if yaw is not None:
        figures["rank1_per_yaw"] = yaw
    return figures


def group_label(row) -> str:
    """``STN-TPS-Grid-8@fmap λ=3 α fixed 0.9``-style label of a runs / summary row."""
    where = "" if row["location"] == "none" else f"@{row['location']}"
    lam = f" λ={row['lambda']:g}" if row["method"] in STN_METHODS else ""
    suffix = variant_suffix(row["alpha"], row["template"], row.get("setting", ""))
    return f"{row['method_name']}{where}{lam}{suffix}"


def _best_checkpoint(run_dir: Path) -> Path:
    """A run's ``best_checkpoint``; in ``run_dir/checkpoints`` if the tree has moved."""
    results_path = run_dir / "results.json"
    recorded = RunResult.from_json(results_path).best_checkpoint
    candidates = [Path(recorded), run_dir / "checkpoints" / Path(recorded).name] if recorded else []
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{results_path}: best_checkpoint {recorded!r} does not exist (the faces figure draws "
        "each group's model)"
    )


def _test_faces(checkpoint: Mapping, path: Path, faces: int):
    """(images, landmarks or None, titles) of ``faces`` test faces of a checkpoint's data.

    ``checkpoint`` is the file's contents (``path`` names it in errors). The data module is
    rebuilt from its ``datamodule_hyper_parameters`` (no workers, no image scan); the faces
    come from the first test batch, preferring faces with landmarks, spread over yaw.
    """
    import torch

    from balanced_align.data.datamodule import FaceDataModule
    from balanced_align.viz.model_figures import unpack_batch

    hparams = checkpoint.get("datamodule_hyper_parameters")
    if not hparams:
        raise ValueError(f"{path}: no datamodule_hyper_parameters (needed to draw its test faces)")
    overrides = {"num_workers": 0, "persistent_workers": False, "check_images": False}
    datamodule = FaceDataModule(**{**hparams, **overrides})
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    rows = torch.arange(len(batch["image"]))
    has = batch.get("has_landmarks")
    if has is not None and bool(torch.as_tensor(has).any()):
        rows = rows[torch.as_tensor(has).bool()]
    if "yaw" in batch:
        yaw = torch.as_tensor(batch["yaw"]).float()[rows]
        rows = rows[torch.argsort(torch.nan_to_num(yaw, nan=0.0))]
    pick = rows[torch.linspace(0, len(rows) - 1, min(int(faces), len(rows))).round().long()]
    size = len(batch["image"])
    chosen = {
        k: v[pick] for k, v in batch.items() if torch.is_tensor(v) and v.dim() and len(v) == size
    }
    return unpack_batch(chosen)


def aligned_by_method(runs: pd.DataFrame, faces: int = 6) -> Figure:
    """The same test faces aligned by each group's model (paper Fig. 1 / 2).

    One row per group of ``runs`` (:data:`GROUP_KEYS`), drawn by the
    ``best_checkpoint`` of its lowest seed (loaded safely, one at a time, see
    :func:`balanced_align.checkpoints.load_checkpoint`). The faces are the test split of the
    first group's checkpoint (:func:`_test_faces`); every model must take their size.
    """
    from balanced_align.checkpoints import module_from_checkpoint, read_checkpoint
    from balanced_align.viz.methods import aligned_by_method_figure

    if int(faces) <= 0:
        raise ValueError(f"faces must be positive, got {faces}")
    groups = [
        (group_label(row), _best_checkpoint(Path(row["run_dir"])))
        for row in (
            group.sort_values("seed").iloc[0]
            for _, group in runs.groupby(list(GROUP_KEYS), dropna=False, sort=False)
        )
    ]
    first = read_checkpoint(groups[0][1])
    images, landmarks, titles = _test_faces(first, groups[0][1], faces)

    def models():  # built one at a time, as the figure draws them; the first file read once
        nonlocal first
        for index, (label, path) in enumerate(groups):
            checkpoint = first if index == 0 else read_checkpoint(path)
            first = None
            yield label, module_from_checkpoint(checkpoint, path)

    return aligned_by_method_figure(
        models(), images, landmarks, titles=titles, max_faces=len(images)
    )


def build_report(paths, stage: str = "auto", faces: int = 0, by: Iterable[str] = ()) -> Report:
    """Tables and figures of the runs under ``paths`` (nothing written).

    ``faces > 0`` adds the ``aligned_by_method`` figure (see :func:`aligned_by_method`);
    ``by`` names config keys that also split the groups (see :func:`parse_by`).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    readable, skipped = read_runs(paths)
    runs = table_of_runs(readable, stage, by)
    summary = summary_table(runs)
    figures = study_figures(summary)
    if faces:
        figures["aligned_by_method"] = aligned_by_method(runs, faces)
    return Report(runs, summary, figures, stage, [Path(p) for p in paths], skipped)


def write_report(report: Report, out: str | os.PathLike) -> dict[str, Path]:
    """Write the figures (PNG), runs.csv, summary.csv and report.md into ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"report: --out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written = dict(save_figures(report.figures, out))
    report.runs.to_csv(out / "runs.csv", index=False)
    report.summary.to_csv(out / "summary.csv", index=False)
    markdown = report.markdown({name: path.name for name, path in written.items()})
    (out / "report.md").write_text(markdown, encoding="utf-8")
    written.update(
        {
            "runs.csv": out / "runs.csv",
            "summary.csv": out / "summary.csv",
            "report.md": out / "report.md",
        }
    )
    return written


def make_report(
    paths, out: str | os.PathLike, stage: str = "auto", faces: int = 0, by: Iterable[str] = ()
) -> Report:
    """:func:`build_report` then :func:`write_report`."""
    report = build_report(paths, stage, faces, by)
    write_report(report, out)
    return report


# -- W&B -------------------------------------------------------------------------------------
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


# -- CLI -------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m balanced_align.report",
        description="Tables and figures over training results (results.json files).",
    )
    parser.add_argument("paths", nargs="+", help="multirun dirs, run dirs or results.json files")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument(
        "--stage",
        choices=STAGES,
        default="auto",
        help="metrics of the test or val split (auto: test where present, else val)",
    )
    parser.add_argument(
        "--faces",
        type=int,
        default=0,
        metavar="N",
        help="also draw N test faces aligned by each group's best checkpoint (paper Fig. 1/2)",
    )
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="KEY[=DEFAULT]",
        help="a flat config key whose values also split the groups, e.g. "
        "data.synth_knobs.landmark_noise=0 (DEFAULT: for runs without the key); repeatable",
    )
    parser.add_argument("--wandb", action="store_true", help="also log the report to W&B")
    parser.add_argument("--wandb-project", default="balanced-align", help="W&B project")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    args = parse_args(argv)
    try:
        report = build_report(args.paths, args.stage, args.faces, args.by)
        written = write_report(report, args.out)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"report: error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(summary_display(report.summary)))
    skipped = f", {len(report.skipped)} unreadable run(s) skipped" if report.skipped else ""
    print(f"\n{len(report.runs)} runs{skipped}; wrote {', '.join(sorted(written))} to {args.out}")
    for run in report.skipped:
        print(f"skipped: {run.reason}")
    if args.wandb:
        import wandb

        mode = os.environ.get("WANDB_MODE") or (
            "online" if os.environ.get("WANDB_API_KEY") else "offline"
        )
        run = wandb.init(project=args.wandb_project, job_type="report", mode=mode)
        log_report_to_wandb(report, run)
        run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
