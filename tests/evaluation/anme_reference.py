"""ANME written out from its definition (docs/design.md §1.3) with plain loops, as a reference.

    ANME = 1/(N·|S|) Σ_s Σ_i ‖y_i^s − ȳ^s‖₂ / d,   d = mean over faces of ‖pupil_L − pupil_R‖

y: (N, S, 2) aligned landmarks of N faces; a pupil is the mean of its eye's contour points.
"""

import numpy as np


def numpy_anme_per_landmark(y, left_eye, right_eye) -> np.ndarray:
    """(S,) terms 1/N Σ_i ‖y_i^s − ȳ^s‖ / d; their mean is the ANME."""
    y = np.asarray(y, dtype=np.float64)
    n, s, _ = y.shape
    pupils = [(y[i, list(left_eye)].mean(0), y[i, list(right_eye)].mean(0)) for i in range(n)]
    d = sum(float(np.hypot(*(a - b))) for a, b in pupils) / n
    terms = np.zeros(s)
    for k in range(s):
        centre = sum(y[i, k] for i in range(n)) / n
        terms[k] = sum(float(np.hypot(*(y[i, k] - centre))) for i in range(n)) / (n * d)
    return terms


def numpy_anme(y, left_eye, right_eye) -> float:
    return float(numpy_anme_per_landmark(y, left_eye, right_eye).mean())
