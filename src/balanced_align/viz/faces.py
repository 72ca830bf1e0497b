"""Faces and their aligned versions, with landmarks.

Row 1 shows each input face with its landmarks x (source frame). For a model with an STN,
row 2 shows the STN's warp of the face (at ``fmap`` the same grid the model applies to the
stage-0 feature map, applied to the image), the landmarks after the deformation
y = f⁻¹(x) (aligned frame) and the template T the alignment loss pulls them towards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor, nn

from balanced_align.viz.common import (
    FAILED_COLOUR,
    LANDMARK_COLOUR,
    TEMPLATE_COLOUR,
    alignment_name,
    check_images,
    check_landmarks,
    device_of,
    evaluating,
    new_figure,
    recognizer_of,
    show_image,
    to_display,
    to_pixels,
)


def predict_params(
    module: nn.Module,
    images: Tensor,
    params: Tensor | None = None,
    landmarks: Tensor | None = None,
) -> Tensor | None:
    """The alignment's warp parameters (B, *param_shape) for ``images`` (None without one).

    Asks the recognizer (LocNet for an STN; ``landmarks`` for the Affine2D / FullAlign
    baselines). ``params``, when given, is checked against the family's shape and returned on
    the module's device. Call inside :func:`~balanced_align.viz.common.evaluating`.
    """
    recognizer = recognizer_of(module)
    if recognizer.warper is None:
        if params is not None:
            raise ValueError(
                "params were given, but the model has no alignment (align.method=none)"
            )
        return None
    if params is None:
        return recognizer.predict_params(images, landmarks)
    params = torch.as_tensor(params, dtype=torch.float32).to(images.device)
    expected = (images.shape[0], *recognizer.family.param_shape)
    if tuple(params.shape) != expected:
        raise ValueError(f"params must have shape {expected}, got {tuple(params.shape)}")
    return params


def aligned_points(module: nn.Module, params: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """Landmarks after the deformation y = f⁻¹(x) (B, S, 2) and their converged mask (B, S).

    Uses ``module.aligned_landmarks`` (BalancedAlignModule: Newton from the template for TPS)
    when available, else the family's inverse.
    """
    if hasattr(module, "aligned_landmarks") and hasattr(module, "recognizer"):
        points, converged, _ = module.aligned_landmarks(params, landmarks)
        return points, converged
    inverse = recognizer_of(module).family.inverse_points(params.float(), landmarks.float())
    return inverse.points, inverse.converged


def aligned_faces_figure(
    module: nn.Module,
    images: Tensor,
    landmarks: Tensor | None = None,
    *,
    params: Tensor | None = None,
    titles: Sequence[str] | None = None,
    max_faces: int = 8,
    show_template: bool = True,
) -> Figure:
    """Each face and its aligned version, landmarks drawn.

    Args:
        module: a BalancedAlignModule (or an AlignedRecognizer).
        images: (B, 3, H, W) in [−1, 1]; the first ``max_faces`` are drawn.
        landmarks: optional (B, S, 2) normalised source-frame landmarks.
        params: optional (B, *param_shape) warp parameters instead of LocNet's.
        titles: optional per-face titles (e.g. the yaw).
        show_template: draw the template T (aligned frame) on the aligned faces.

    Returns a Figure with one row of ``n = min(B, max_faces)`` axes (model without STN) or
    two rows (input, aligned): 2n axes. Scatters carry a ``gid``: "landmarks" (input row,
    pixels), "aligned_landmarks" (the converged points of y = f⁻¹(x)) and "template".
    """
    images = check_images(images)
    landmarks = check_landmarks(landmarks, images.shape[0])
    count = min(int(images.shape[0]), int(max_faces))
    images = images[:count]
    landmarks = None if landmarks is None else landmarks[:count]
    if params is not None:
        params = params[:count]
    recognizer = recognizer_of(module)
    size = (int(images.shape[-2]), int(images.shape[-1]))

    with evaluating(module):
        device = device_of(module)
        x = images.to(device, torch.float32)
        lmk = None if landmarks is None else landmarks.to(device).float()
        warp = predict_params(module, x, params, lmk)
        aligned = points = converged = None
        if warp is not None:
            aligned = recognizer.aligned_image(x, warp)
            if landmarks is not None:
                points, converged = aligned_points(module, warp, landmarks.to(device).float())
    template = getattr(module, "template", None) if show_template else None

    rows = 1 if aligned is None else 2
    fig, axes = new_figure(rows, count, panel=(1.9, 2.0))
    inputs = to_display(images)
    outputs = None if aligned is None else to_display(aligned)
    for i in range(count):
        ax = axes[0, i]
        show_image(ax, inputs[i])
        if landmarks is not None:
            xy = to_pixels(landmarks[i], size)
            ax.scatter(
                xy[:, 0], xy[:, 1], s=5, c=LANDMARK_COLOUR, linewidths=0, zorder=3, gid="landmarks"
            )
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=9)
        _clip(ax, size)
        if outputs is None:
            continue
        ax = axes[1, i]
        show_image(ax, outputs[i])
        if template is not None:
            xy = to_pixels(template, size)
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=14,
                c=TEMPLATE_COLOUR,
                marker="+",
                linewidths=0.7,
                gid="template",
            )
        if points is not None:
            ok = converged[i].cpu().numpy()
            xy = to_pixels(points[i], size)
            ax.scatter(
                xy[ok, 0],
                xy[ok, 1],
                s=5,
                c=LANDMARK_COLOUR,
                linewidths=0,
                zorder=3,
                gid="aligned_landmarks",
            )
            if not ok.all():
                ax.set_xlabel(f"{int((~ok).sum())} not inverted", fontsize=7, color=FAILED_COLOUR)
        _clip(ax, size)
    axes[0, 0].set_ylabel("input")
    if outputs is not None:
        axes[1, 0].set_ylabel(f"aligned\n{alignment_name(module)}", fontsize=9)
    _legend(fig, landmarks is not None, outputs is not None and template is not None)
    return fig


def _clip(ax, size: tuple[int, int]) -> None:
    height, width = size
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)


def _legend(fig: Figure, landmarks: bool, template: bool) -> None:
    handles = []
    if landmarks:
        handles.append(
            Line2D([], [], ls="", marker="o", ms=4, color=LANDMARK_COLOUR, label="landmarks")
        )
    if template:
        handles.append(Line2D([], [], ls="", marker="+", ms=6, color=TEMPLATE_COLOUR, label="T"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)


__all__ = ["aligned_faces_figure", "aligned_points", "predict_params"]
