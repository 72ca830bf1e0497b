"""Landmarks for anyone's photographs: ``python -m balanced_align.annotate ROOT --out T.csv``.

See :mod:`balanced_align.annotate.run` for what is written and
:mod:`balanced_align.annotate.backends` for the detectors (the ``annotate`` extra).
"""

from balanced_align.annotate.backends import BACKENDS, MissingBackendError, make_backend
from balanced_align.annotate.run import Summary, annotate, failures_path, list_images

__all__ = [
    "BACKENDS",
    "MissingBackendError",
    "Summary",
    "annotate",
    "failures_path",
    "list_images",
    "make_backend",
]
