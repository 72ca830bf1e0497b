"""Draw the W&B workspace's "ANME vs rank-1" panel from offline runs, with matplotlib.

W&B has no server here, so the panel is not a screenshot of the W&B UI: this script reads
the table that each run logs (``anme_vs_rank1``, see ``balanced_align/loggers.py``) from the
offline run folders and plots the same points the panel shows::

    python docs/draw_wandb_panel.py outputs/train/multiruns/<time> docs/wandb_anme_vs_rank1.png

Every ``wandb/offline-run-*`` folder under the given directory is read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_points(root: Path) -> list[dict]:
    """The rows of every offline run's ``anme_vs_rank1`` table under ``root``."""
    points = []
    for table in sorted(root.rglob("offline-run-*/files/media/table/anme_vs_rank1_table_*.json")):
        data = json.loads(table.read_text())
        points += [dict(zip(data["columns"], row)) for row in data["data"]]
    return points


def draw(points: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=110)
    runs = sorted({p["run"] for p in points})
    for colour, run in enumerate(runs):
        for stage, marker in (("val", "o"), ("test", "s")):
            mine = [p for p in points if p["run"] == run and p["stage"] == stage]
            if mine:
                ax.scatter(
                    [p["anme"] for p in mine],
                    [p["rank1"] for p in mine],
                    color=f"C{colour}",
                    marker=marker,
                    label=f"{run} ({stage})",
                )
    ax.set_xlabel("anme (lower: stronger alignment)")
    ax.set_ylabel("rank1")
    ax.set_title("anme_vs_rank1 (drawn from offline W&B runs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)


def main(argv: list[str]) -> int:
    root, out = Path(argv[0]), Path(argv[1])
    points = read_points(root)
    if not points:
        print(f"no anme_vs_rank1 tables under {root}", file=sys.stderr)
        return 1
    draw(points, out)
    print(f"{len(points)} points from {len({p['run'] for p in points})} runs -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
