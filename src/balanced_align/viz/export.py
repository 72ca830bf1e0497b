"""Figures out of the process: PNG files, pixel arrays, and experiment loggers.

Nothing here needs a display: figures render with the Agg canvas.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure_to_array(fig: Figure, dpi: float = 100) -> np.ndarray:
    """Render ``fig`` with Agg: (H, W, 4) uint8 RGBA."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def save_figures(
    figures: Mapping[str, Figure], out_dir: str | os.PathLike, dpi: float = 130
) -> dict[str, Path]:
    """Write each figure to ``out_dir/<name>.png``; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in figures.items():
        if not name or any(c in name for c in "/\\"):
            raise ValueError(f"figure name {name!r} is not a plain file name")
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi, facecolor="white")
        paths[name] = path
    return paths


def log_figures(
    figures: Mapping[str, Figure], loggers: Iterable, step: int | None = None, prefix="figures"
) -> list[str]:
    """Log figures to the Lightning loggers that take images (W&B, TensorBoard).

    Other loggers (CSV) are skipped. Returns the class names of the loggers used.
    """
    used = []
    for logger in loggers or ():
        kind = type(logger).__name__
        if kind == "WandbLogger":
            for name, fig in figures.items():
                logger.log_image(key=f"{prefix}/{name}", images=[figure_to_array(fig)], step=step)
        elif kind == "TensorBoardLogger":
            for name, fig in figures.items():
                FigureCanvasAgg(fig)  # TensorBoard draws through the figure's own canvas
                logger.experiment.add_figure(f"{prefix}/{name}", fig, global_step=step, close=False)
        else:
            continue
        used.append(kind)
    return used


__all__ = ["figure_to_array", "log_figures", "save_figures"]
