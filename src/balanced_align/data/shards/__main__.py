"""``python -m balanced_align.data.shards``: run the shard conversion CLI."""

import sys

from balanced_align.data.shards.cli import main

if __name__ == "__main__":
    sys.exit(main())
