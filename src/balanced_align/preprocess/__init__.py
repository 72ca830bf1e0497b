"""Offline preprocessing of face data (docs/design.md §1 baselines): Affine2D crops.

The tools are modules of their own: import from :mod:`balanced_align.preprocess.affine2d`
(``affine2d_align``, ``affine2d_template``, ``preprocess_affine2d`` …). This package file
imports none of them, so ``python -m balanced_align.preprocess.affine2d`` runs its module
once (runpy warns when the package has imported it already); ``python -m
balanced_align.preprocess affine2d …`` is the same command.
"""
