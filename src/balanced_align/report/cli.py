"""``python -m balanced_align.report PATHS… --out DIR`` (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from balanced_align.report.document import build_report, write_report
from balanced_align.report.markdown import markdown_table, summary_display
from balanced_align.report.tables import STAGES
from balanced_align.report.wandb_logging import log_report_to_wandb


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
        help="metrics of the test or val split (auto: test where present, else val; val: "
        "the best checkpoint's validation where recorded, else the last one)",
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
        "data.source.synth_knobs.landmark_noise=0 (DEFAULT: for runs without the key; runs "
        "written before data.source match under data.synth_knobs…); repeatable",
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
