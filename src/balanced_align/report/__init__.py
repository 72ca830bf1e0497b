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

Modules: :mod:`.runs` (find and read ``results.json``), :mod:`.tables` (runs and summary
tables), :mod:`.markdown` (markdown and display formats), :mod:`.document` (:class:`Report`,
figures, the files written), :mod:`.faces` (the aligned-faces figure: the only module that
loads checkpoints, models and a data module; imported only when ``faces > 0``),
:mod:`.wandb_logging`, :mod:`.cli`.

Metrics are the test split's when a run has them, else validation's (``stage="auto"``);
``stage="test"`` or ``"val"`` insists on one split.

CLI::

    python -m balanced_align.report outputs/train/multiruns/2024-… [MORE …] --out report/
    python -m balanced_align.report RUN_DIR --stage val --out report/ --wandb
"""

from balanced_align.report.cli import main, parse_args
from balanced_align.report.document import (
    Report,
    build_report,
    make_report,
    study_figures,
    write_report,
)
from balanced_align.report.markdown import markdown_table, summary_display
from balanced_align.report.runs import SkippedRun, find_results, read_runs
from balanced_align.report.tables import (
    COLUMN_TITLES,
    FIXED_LEARNED_TEMPLATE,
    GROUP_KEYS,
    HEAD_METRICS,
    METHOD_ORDER,
    NOT_APPLICABLE,
    STAGES,
    STN_METHODS,
    TAIL_METRICS,
    alignment_variant,
    group_label,
    metric_columns,
    parse_by,
    run_row,
    runs_table,
    setting,
    summary_table,
    table_of_runs,
)
from balanced_align.report.wandb_logging import log_report_to_wandb

__all__ = [
    "COLUMN_TITLES",
    "FIXED_LEARNED_TEMPLATE",
    "GROUP_KEYS",
    "HEAD_METRICS",
    "METHOD_ORDER",
    "NOT_APPLICABLE",
    "STAGES",
    "STN_METHODS",
    "TAIL_METRICS",
    "Report",
    "SkippedRun",
    "alignment_variant",
    "build_report",
    "find_results",
    "group_label",
    "log_report_to_wandb",
    "main",
    "make_report",
    "markdown_table",
    "metric_columns",
    "parse_args",
    "parse_by",
    "read_runs",
    "run_row",
    "runs_table",
    "setting",
    "study_figures",
    "summary_display",
    "summary_table",
    "table_of_runs",
    "write_report",
]
