"""Offline preprocessing of face data (docs/design.md §1 baselines): Affine2D crops.

Names load on first access, so ``python -m balanced_align.preprocess.affine2d`` runs the
module once (an eager import here would import it before runpy executes it).
"""

_LAZY = {
    "ARCFACE_TEMPLATE_112": "balanced_align.preprocess.affine2d",
    "Affine2DReport": "balanced_align.preprocess.affine2d",
    "affine2d_align": "balanced_align.preprocess.affine2d",
    "affine2d_template": "balanced_align.preprocess.affine2d",
    "corner_to_cv2": "balanced_align.preprocess.affine2d",
    "cv2_to_corner": "balanced_align.preprocess.affine2d",
    "preprocess_affine2d": "balanced_align.preprocess.affine2d",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'balanced_align.preprocess' has no attribute {name!r}")
