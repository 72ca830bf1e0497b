"""ANME vs closed forms, a direct numpy formula and its invariances."""

import math

import numpy as np
import pytest
import torch

from balanced_align.data.schema import IBUG68, LMK84
from balanced_align.evaluation import anme, anme_per_landmark
from tests.evaluation.anme_reference import numpy_anme_per_landmark


def _faces(n=40, s=68, seed=0):
    rng = np.random.default_rng(seed)
    template = rng.uniform(20, 90, size=(s, 2))
    template[36:42] = np.array([30, 45]) + rng.normal(size=(6, 2))  # left eye contour
    template[42:48] = np.array([80, 45]) + rng.normal(size=(6, 2))  # right eye contour
    return template, template + 3.0 * rng.normal(size=(n, s, 2))


def _numpy_anme(x):
    """Direct formula of docs/design.md §1, written with loops."""
    n, s, _ = x.shape
    pupils = [(x[i, 36:42].mean(0), x[i, 42:48].mean(0)) for i in range(n)]
    d = np.mean([np.linalg.norm(left - right) for left, right in pupils])
    mean = x.mean(0)
    total = sum(np.linalg.norm(x[i, k] - mean[k]) for i in range(n) for k in range(s))
    return total / (n * s * d)


def test_identity_warp_equals_numpy_formula():
    _, x = _faces()
    assert anme(torch.from_numpy(x).float(), IBUG68) == pytest.approx(_numpy_anme(x), rel=1e-6)
    assert anme(x, "ibug68") == pytest.approx(_numpy_anme(x), rel=1e-12)
    per = anme_per_landmark(x, IBUG68)
    expected = numpy_anme_per_landmark(x, IBUG68.left_eye, IBUG68.right_eye)
    assert per.shape == (68,)
    np.testing.assert_allclose(per.numpy(), expected, rtol=1e-12)


def test_zero_when_every_face_is_the_template_and_invalid_rows_are_dropped():
    template, x = _faces(n=10, s=84)
    y = np.repeat(template[None], 10, axis=0)
    assert anme(y, LMK84) == pytest.approx(0.0, abs=1e-12)
    y[[2, 7]] = np.nan  # failed inverse warps
    valid = np.ones(10, dtype=bool)
    valid[[2, 7]] = False
    assert anme(y, LMK84, valid=valid) == pytest.approx(0.0, abs=1e-12)
    assert anme(x, LMK84, valid=valid) == pytest.approx(_numpy_anme(x[valid]), rel=1e-12)


def test_closed_form_for_two_symmetric_faces():
    template, _ = _faces(n=1)
    delta = np.array([3.0, 4.0])  # |delta| = 5, the same shift for every point
    y = np.stack([template + delta, template - delta])
    d = np.linalg.norm(template[36:42].mean(0) - template[42:48].mean(0))
    assert anme(y, IBUG68) == pytest.approx(5.0 / d, rel=1e-12)


def test_invariant_to_a_common_similarity_transform():
    _, x = _faces(seed=1)
    angle = 0.7
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    y = 0.013 * x @ rot.T + np.array([-1.0, 0.5])  # e.g. pixels -> normalised coordinates
    assert anme(y, IBUG68) == pytest.approx(anme(x, IBUG68), rel=1e-10)
    assert anme(1.5 * x, IBUG68) != pytest.approx(anme(x + x[:1] * 0.5, IBUG68), rel=1e-3)


def test_bad_inputs_raise_clear_errors():
    _, x = _faces()
    with pytest.raises(ValueError, match="84 landmarks"):
        anme(x, LMK84)
    with pytest.raises(ValueError, match=r"\(N, S, 2\)"):
        anme(x[0], IBUG68)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        anme(bad, IBUG68)
    with pytest.raises(ValueError, match="no \\(valid\\) faces"):
        anme(x, IBUG68, valid=np.zeros(len(x), dtype=bool))
    with pytest.raises(ValueError, match="inter-pupil"):
        anme(np.zeros((3, 68, 2)), IBUG68)
    with pytest.raises(ValueError, match="unknown landmark schema"):
        anme(x, "nope")


def test_point_mask_matches_direct_numpy_formula():
    """With an (N, S) mask each landmark averages over the faces where it is valid."""
    rng = np.random.default_rng(5)
    template, _ = _faces(n=1)
    y = rng.normal(size=(12, 68, 2)) + template
    mask = rng.random((12, 68)) > 0.2
    mask[:, list(IBUG68.left_eye) + list(IBUG68.right_eye)] = True
    mask[3, 40] = False  # this face's eyes are incomplete: it leaves d's average
    eyes_ok = mask[:, list(IBUG68.left_eye) + list(IBUG68.right_eye)].all(1)
    left = y[:, list(IBUG68.left_eye)].mean(1)
    right = y[:, list(IBUG68.right_eye)].mean(1)
    d = np.linalg.norm(left - right, axis=1)[eyes_ok].mean()
    terms = []
    for s in range(68):
        rows = y[mask[:, s], s]
        terms.append(np.linalg.norm(rows - rows.mean(0), axis=1).mean() / d)
    expected = np.mean(terms)
    assert anme(torch.from_numpy(y), "ibug68", valid=torch.from_numpy(mask)) == pytest.approx(
        expected, rel=1e-12
    )
    # a full mask equals no mask
    full = torch.ones(12, 68, dtype=torch.bool)
    assert anme(torch.from_numpy(y), "ibug68", valid=full) == pytest.approx(
        anme(torch.from_numpy(y), "ibug68"), rel=1e-12
    )
