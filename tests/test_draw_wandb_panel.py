"""docs/draw_wandb_panel.py reads the ANME vs rank-1 tables of offline W&B runs."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("draw", ROOT / "docs" / "draw_wandb_panel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_points_of_every_offline_run_are_read_and_drawn(tmp_path):
    columns = ["run", "stage", "anme", "rank1", "anme_failed_frac"]
    for job, (anme, rank1) in enumerate([(0.3, 0.5), (0.1, 0.4)]):
        folder = tmp_path / f"{job}_loss.lambda={job}" / "wandb" / f"offline-run-{job}"
        table = folder / "files" / "media" / "table" / f"anme_vs_rank1_table_2_{job}.table.json"
        table.parent.mkdir(parents=True)
        table.write_text(
            json.dumps({"columns": columns, "data": [[f"r{job}", "val", anme, rank1, 0]]})
        )
    draw = _script()
    points = draw.read_points(tmp_path)
    assert sorted((p["run"], p["anme"], p["rank1"]) for p in points) == [
        ("r0", 0.3, 0.5),
        ("r1", 0.1, 0.4),
    ]
    assert draw.main([str(tmp_path), str(tmp_path / "panel.png")]) == 0
    assert (tmp_path / "panel.png").read_bytes()[:4] == b"\x89PNG"
    assert draw.main([str(tmp_path / "empty"), str(tmp_path / "x.png")]) == 1
