"""All figures of a model on one batch: aligned faces, warp grid, α, template."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from balanced_align.viz.alpha import alpha_figure
from balanced_align.viz.common import recognizer_of
from balanced_align.viz.export import log_figures, save_figures
from balanced_align.viz.faces import aligned_faces_figure
from balanced_align.viz.template import template_figure
from balanced_align.viz.warp import warp_grid_figure


def unpack_batch(batch: Mapping | Tensor) -> tuple[Tensor, Tensor | None, list[str] | None]:
    """(images, landmarks or None, yaw titles or None) of a data-module batch or a tensor."""
    if torch.is_tensor(batch):
        return batch, None, None
    if not isinstance(batch, Mapping) or "image" not in batch:
        raise ValueError(
            "batch must be an image tensor (B, 3, H, W) or a dict with 'image' "
            f"(and optionally 'landmarks', 'has_landmarks', 'yaw'), got {type(batch).__name__}"
        )
    images = batch["image"]
    landmarks = batch.get("landmarks")
    has = batch.get("has_landmarks")
    if landmarks is not None and has is not None and not bool(torch.as_tensor(has).all()):
        landmarks = None  # some faces have no landmarks (placeholders): draw none
    yaw = batch.get("yaw")
    titles = None
    if yaw is not None:
        titles = ["" if v != v else f"yaw {v:+.0f}°" for v in torch.as_tensor(yaw).float().tolist()]
    return images, landmarks, titles


def figures_for_module(
    module: nn.Module, batch: Mapping | Tensor, *, max_faces: int = 8
) -> dict[str, Figure]:
    """The model's figures on ``batch`` (a data-module batch dict or an image tensor).

    Keys: ``aligned_faces`` always; ``warp_grid`` with an STN or a landmark aligner;
    ``alpha`` and ``template``
    when the module has an alignment loss.
    """
    images, landmarks, titles = unpack_batch(batch)
    figures = {
        "aligned_faces": aligned_faces_figure(
            module, images, landmarks, titles=titles, max_faces=max_faces
        )
    }
    if recognizer_of(module).warper is not None:
        figures["warp_grid"] = warp_grid_figure(
            module, images, landmarks, titles=titles, max_faces=max_faces
        )
    if getattr(module, "align_loss", None) is not None:
        figures["alpha"] = alpha_figure(module)
        figures["template"] = template_figure(module)
    return figures


def save_module_figures(
    module: nn.Module,
    batch: Mapping | Tensor,
    out_dir: str | os.PathLike,
    loggers: Iterable = (),
    step: int | None = None,
    max_faces: int = 8,
) -> dict[str, Path]:
    """:func:`figures_for_module` → ``out_dir/<name>.png`` and the image-capable loggers."""
    figures = figures_for_module(module, batch, max_faces=max_faces)
    paths = save_figures(figures, out_dir)
    log_figures(figures, loggers, step=step)
    return paths


__all__ = ["figures_for_module", "save_module_figures"]
