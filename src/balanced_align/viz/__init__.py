"""Figures: aligned faces, warp grids, α and template maps, and the study's plots.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (rendered by
Agg: headless, no windows), usable in notebooks (``display(fig)``) and in reports
(:func:`save_figures`).
"""

from balanced_align.viz.alpha import alpha_figure
from balanced_align.viz.common import method_name
from balanced_align.viz.export import figure_to_array, log_figures, save_figures
from balanced_align.viz.faces import aligned_faces_figure
from balanced_align.viz.methods import aligned_by_method_figure
from balanced_align.viz.model_figures import figures_for_module, save_module_figures
from balanced_align.viz.study import anme_rank1_figure, location_bars_figure, yaw_curves_figure
from balanced_align.viz.template import template_figure
from balanced_align.viz.warp import aligned_grid_lines, warp_grid_figure, warp_grid_lines

__all__ = [
    "aligned_by_method_figure",
    "aligned_faces_figure",
    "aligned_grid_lines",
    "alpha_figure",
    "anme_rank1_figure",
    "figure_to_array",
    "figures_for_module",
    "location_bars_figure",
    "log_figures",
    "method_name",
    "save_figures",
    "save_module_figures",
    "template_figure",
    "warp_grid_figure",
    "warp_grid_lines",
    "yaw_curves_figure",
]
