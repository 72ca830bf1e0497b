"""α, the learned per-landmark weights of the alignment loss, drawn on the template layout.

Each landmark s is a dot at its template position T_s (aligned frame, in pixels of the
model's input), coloured by α_s = sigmoid(a_s). Low α marks the landmarks the loss lets go:
with everything else fixed α_s* = 1 − ē_s/(2|S|), so α is lowest where the warp cannot
reach the landmark (docs/design.md §1).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from balanced_align.viz.common import draw_layout, new_figure, schema_of, to_pixels

ALPHA_CMAP = "viridis"


def alignment_state(module: nn.Module):
    """(alignment loss, input size (H, W)) of a module; ValueError without alignment."""
    loss = getattr(module, "align_loss", None)
    if loss is None:
        raise ValueError(
            f"{type(module).__name__} has no alignment loss (align.method=none): "
            "no template and no α to draw"
        )
    size = getattr(module, "image_size", None) or loss.image_size
    return loss, (int(size[0]), int(size[1]))


def alpha_figure(module: nn.Module, *, annotate_lowest: int = 3, cmap: str = ALPHA_CMAP) -> Figure:
    """α per landmark as coloured dots on the template layout.

    Args:
        module: a BalancedAlignModule with an alignment loss (``module.align_loss``).
        annotate_lowest: ring, number and list the k landmarks with the lowest α.

    Returns a Figure with two axes: the layout (a scatter whose values are α, with
    ``gid="alpha"``, offsets = T in pixels) and its colour bar.
    """
    loss, size = alignment_state(module)
    alpha = loss.alpha.detach().cpu().numpy().astype(np.float64)
    points = to_pixels(loss.template, size)
    schema = schema_of(module, len(points))

    fig, axes = new_figure(1, 1, panel=(4.6, 4.4))
    ax = axes[0, 0]
    draw_layout(ax, points, schema)
    low, high = float(alpha.min()), float(alpha.max())
    if high - low < 1e-6:
        low, high = low - 0.005, high + 0.005
    dots = ax.scatter(
        points[:, 0],
        points[:, 1],
        c=alpha,
        cmap=cmap,
        vmin=low,
        vmax=high,
        s=38,
        edgecolors="k",
        linewidths=0.3,
        zorder=3,
        gid="alpha",
    )
    fig.colorbar(dots, ax=ax, label="α", shrink=0.85)
    names = schema.point_names if schema is not None else ()
    spread = float(alpha.max() - alpha.min()) > 1e-6  # all equal (e.g. untrained): no ranking
    lowest = np.argsort(alpha, kind="stable")[: max(0, int(annotate_lowest))] if spread else []
    listing = []
    for rank, s in enumerate(lowest, start=1):
        name = names[s] if s < len(names) else f"#{s}"
        ax.scatter(*points[s], s=110, facecolors="none", edgecolors="#d62728", linewidths=1.0)
        ax.annotate(
            str(rank),
            points[s],
            xytext=(5, 3),
            textcoords="offset points",
            fontsize=7,
            color="#d62728",
            fontweight="bold",
        )
        listing.append(f"{rank}. {name} ({alpha[s]:.4f})")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    lines = ["x (px, aligned frame)"]
    if listing:
        lines.append("lowest α: " + ", ".join(listing))
    ax.set_xlabel("\n".join(lines), fontsize=8)
    ax.set_ylabel("y (px)")
    ax.set_title(
        f"α per landmark: mean {alpha.mean():.4f}, min {alpha.min():.4f}, max {alpha.max():.4f}",
        fontsize=9,
    )
    return fig


__all__ = ["alignment_state", "alpha_figure"]
