"""The one part of the report that loads models: the same test faces aligned by each
group's best checkpoint (paper Fig. 1 / 2, ``--faces N``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from balanced_align.checkpoints import module_from_checkpoint, read_checkpoint
from balanced_align.data.datamodule import FaceDataModule
from balanced_align.report.tables import GROUP_KEYS, group_label
from balanced_align.run_result import RunResult
from balanced_align.viz.methods import aligned_by_method_figure
from balanced_align.viz.model_figures import unpack_batch


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
    rebuilt from its ``datamodule_hyper_parameters`` (today's or the former flat ones; no
    workers, no image scan); the faces
    come from the first test batch, preferring faces with landmarks, spread over yaw.
    """
    hparams = checkpoint.get("datamodule_hyper_parameters")
    if not hparams:
        raise ValueError(f"{path}: no datamodule_hyper_parameters (needed to draw its test faces)")
    overrides = {"num_workers": 0, "persistent_workers": False, "check_images": False}
    datamodule = FaceDataModule.from_hyperparameters(hparams, **overrides)
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
