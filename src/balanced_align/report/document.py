"""A report: its tables and study figures, report.md, and the files it writes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from balanced_align.report.markdown import _has_setting, markdown_table, summary_display
from balanced_align.report.runs import SkippedRun, read_runs
from balanced_align.report.tables import (
    FIXED_LEARNED_TEMPLATE,
    STAGES,
    group_label,
    summary_table,
    table_of_runs,
)
from balanced_align.viz.export import save_figures
from balanced_align.viz.study import (
    anme_rank1_figure,
    location_bars_figure,
    yaw_curves_figure,
)


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
            "anme_vs_verif": "ANME vs verification accuracy",
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
    """The figures a summary supports: anme_vs_rank1, anme_vs_verif (verification is the
    primary metric of pair benchmarks such as LFW), input_vs_fmap, rank1_per_yaw."""
    figures = {}
    for metric, name in (("rank1", "anme_vs_rank1"), ("verif_acc", "anme_vs_verif")):
        column = f"{metric}_mean"
        if column in summary and summary[["anme_mean", column]].notna().all(axis=1).any():
            figures[name] = anme_rank1_figure(summary, metric=metric)
    metrics = [m for m in ("rank1", "verif_acc", "anme") if f"{m}_mean" in summary]
    bars = location_bars_figure(summary, metrics=metrics)
    if bars is not None:
        figures["input_vs_fmap"] = bars
    yaw = yaw_curves_figure(summary)
    if yaw is not None:
        figures["rank1_per_yaw"] = yaw
    return figures


def build_report(paths, stage: str = "auto", faces: int = 0, by: Iterable[str] = ()) -> Report:
    """Tables and figures of the runs under ``paths`` (nothing written).

    ``faces > 0`` adds the ``aligned_by_method`` figure (see
    :func:`balanced_align.report.faces.aligned_by_method`);
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
    if faces:  # the only part that loads models (and Lightning)
        from balanced_align.report.faces import aligned_by_method

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
