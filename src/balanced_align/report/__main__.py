"""``python -m balanced_align.report …``."""

from balanced_align.report.cli import main

raise SystemExit(main())
