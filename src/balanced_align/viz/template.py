"""The template T: where training started (T_fix, the mean frontal landmarks) and the
learned T, with each landmark's displacement.

Both are in the aligned frame, drawn in pixels of the model's input. A learnable T drifts
as the warp and the recognizer co-adapt; ``magnify`` exaggerates the displacements
when they are too small to see (the title gives the true mean drift).
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import nn

from balanced_align.viz.alpha import alignment_state
from balanced_align.viz.common import TEMPLATE_COLOUR, draw_layout, new_figure, schema_of, to_pixels

INITIAL_COLOUR = "0.55"
LEARNED_COLOUR = "#1f6fd1"


def template_figure(module: nn.Module, *, magnify: float = 1.0) -> Figure:
    """Initial vs learned template.

    Args:
        module: a BalancedAlignModule with an alignment loss; the initial template is
            ``module.template_start``, the learned one ``module.align_loss.template``.
        magnify: the learned points are drawn at start + magnify·(learned − start).

    Returns a Figure with one axes: scatters with ``gid`` "initial" and "learned" (pixel
    coordinates) and a LineCollection ``gid="displacement"`` joining them.
    """
    loss, size = alignment_state(module)
    if float(magnify) <= 0:
        raise ValueError(f"magnify must be > 0, got {magnify}")
    learned = to_pixels(loss.template, size)
    start_tensor = getattr(module, "template_start", None)
    start = learned if start_tensor is None else to_pixels(start_tensor, size)
    shown = start + float(magnify) * (learned - start)
    drift = np.linalg.norm(learned - start, axis=-1)
    schema = schema_of(module, len(learned))

    fig, axes = new_figure(1, 1, panel=(4.6, 4.6))
    ax = axes[0, 0]
    draw_layout(ax, start, schema, colors=INITIAL_COLOUR, linestyles="--", linewidths=0.7)
    draw_layout(ax, shown, schema, colors=LEARNED_COLOUR, linewidths=0.8)
    ax.add_collection(
        LineCollection(
            np.stack([start, shown], axis=1),
            colors=TEMPLATE_COLOUR,
            linewidths=0.9,
            zorder=2,
            gid="displacement",
        )
    )
    ax.scatter(
        start[:, 0],
        start[:, 1],
        s=22,
        facecolors="none",
        edgecolors=INITIAL_COLOUR,
        linewidths=0.8,
        label="initial T",
        gid="initial",
        zorder=3,
    )
    suffix = "" if float(magnify) == 1.0 else f" (displacement ×{magnify:g})"
    ax.scatter(
        shown[:, 0],
        shown[:, 1],
        s=10,
        c=LEARNED_COLOUR,
        label=f"learned T{suffix}",
        gid="learned",
        zorder=4,
    )
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xlabel("x (px, aligned frame)")
    ax.set_ylabel("y (px)")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ax.set_title(
        f"template drift: mean {drift.mean():.2f} px, max {drift.max():.2f} px "
        f"(input {size[1]}×{size[0]})",
        fontsize=9,
    )
    return fig


__all__ = ["template_figure"]
