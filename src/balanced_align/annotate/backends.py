"""Landmark detectors behind ``annotate``: find faces, then place 68 iBUG points on one.

A backend is built once per worker process and offers

- ``detect(image) -> (F, 4) float boxes`` ``[x0, y0, x1, y1]`` in corner-origin pixels
  (DESIGN §2), possibly empty;
- ``landmarks(image, box) -> (68, 2) float32`` corner-origin pixels, iBUG order, for the
  face inside ``box`` (a detection, or the fallback box when nothing was found).

Images are (H, W, 3) uint8 RGB. Backends use models shipped by registry packages (the
``annotate`` extra); nothing is downloaded at run time.

``dlib``: dlib's HOG frontal face detector and its 68-point shape predictor
(``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models`` package).
dlib reports pixel *indices* (pixel centres at whole numbers), so 0.5 is added to reach
the corner origin.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

INSTALL_HINT = "pip install 'balanced-align[annotate]'  (dlib-bin and face-recognition-models)"


class MissingBackendError(ImportError):
    """A backend's packages are not installed (the message says what to install)."""


class Backend(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> np.ndarray: ...

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray: ...


def _dlib_model_file(name: str) -> Path:
    """A model file of ``face_recognition_models`` found without importing the package
    (its ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingBackendError(
            "annotate --backend dlib needs the face-recognition-models package (it ships "
            f"{name}); install it with: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise MissingBackendError(
            f"face-recognition-models has no {path}; reinstall it: {INSTALL_HINT}"
        )
    return path


class DlibBackend:
    """dlib HOG detector + 68-point shape predictor.

    Args:
        upsample: times the HOG detector upsamples the image before searching; ``None``
            (default) searches at 0 and, when that finds nothing, again at 1 (the HOG window
            is 80 px, so faces in small crops are found only after upsampling).
    """

    name = "dlib"

    def __init__(self, upsample: int | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise MissingBackendError(
                f"annotate --backend dlib needs dlib; install it with: {INSTALL_HINT}"
            ) from None
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            str(_dlib_model_file("shape_predictor_68_face_landmarks.dat"))
        )
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> np.ndarray:
        tries = (0, 1) if self.upsample is None else (int(self.upsample),)
        rects = []
        for times in tries:
            rects = self._detector(image, times)
            if len(rects):
                break
        # dlib rectangles are inclusive pixel indices: corners at left, right + 1
        boxes = [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects]
        return np.asarray(boxes, np.float64).reshape(-1, 4)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        rect = self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
        shape = self._predictor(image, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
        return points + np.float32(0.5)


BACKENDS = {"dlib": DlibBackend}


def make_backend(name: str, **options) -> Backend:
    """Build backend ``name`` (raises MissingBackendError naming what to install)."""
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of {sorted(BACKENDS)}, got {name!r}")
    return BACKENDS[name](**options)
