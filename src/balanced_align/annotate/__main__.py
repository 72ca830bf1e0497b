"""``python -m balanced_align.annotate ROOT --out landmarks68.csv`` (see ``--help``)."""

import sys

from balanced_align.annotate.cli import main

sys.exit(main())
