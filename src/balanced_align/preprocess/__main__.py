"""``python -m balanced_align.preprocess TOOL …``."""

import sys

from balanced_align.preprocess.cli import main

sys.exit(main())
