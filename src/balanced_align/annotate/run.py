"""``annotate``: a landmark table for a tree of photographs (see :func:`annotate`).

Every image under ROOT gets one row ``path,x0,y0,…`` in the table (path relative to ROOT,
``/``-separated; corner-origin pixels of the image as stored, DESIGN §2), the format that
``data=folder``, the shards converter and ``eval.py`` read. Images are processed in sorted
order by ``workers`` processes, each holding its own backend.

Per image: detect faces; keep the one whose box centre is nearest the image centre; place
the 68 points in that box. When nothing is detected, the *fallback box* serves as the face
box, and the image is listed in the failures file with outcome ``fallback``. By default
(``auto``) that box is the median detected box, as fractions of the image size, over up to
64 images spread over the tree: photographs of one collection are usually cropped alike,
and the shape predictor needs a box framed like the detector's (on HELEN the whole image
as the box gives NME 0.33, the median box 0.040; docs/annotate.md). Images that cannot be
read, or whose path leaves ROOT, get no row and are listed with outcome ``failed``.

The failures file ``<out stem>.failures.csv`` has columns ``path,outcome,reason``. A rerun
skips every path already in the table and tries the ``failed`` ones again.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from balanced_align.annotate.backends import make_backend
from balanced_align.annotate.table import AppendOnlyCSV
from balanced_align.core.schema import IBUG68
from balanced_align.data.sources import is_image_file
from balanced_align.safe_paths import UnsafePathError, refuse_overwriting_inputs, resolve_inside

SCHEMAS = ("ibug68", "five")
FAILURE_HEADER = ["path", "outcome", "reason"]
#: outer eye corners of iBUG-68 (the NME normaliser, 300-W's "inter-ocular" distance)
OUTER_EYE_CORNERS = (36, 45)


def table_header(schema: str) -> list[str]:
    count = {"ibug68": 68, "five": 5}[schema]
    return ["path", *[f"{axis}{i}" for i in range(count) for axis in ("x", "y")]]


def failures_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".failures.csv")


def list_images(root: str | Path) -> list[str]:
    """Image files under ``root`` (no hidden files, links to folders not followed), as
    sorted ``/``-separated paths relative to ``root``."""
    root = Path(root)
    keys = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        keys += [(base / f).as_posix() for f in files if is_image_file(Path(f))]
    return sorted(keys)


def central_face(boxes: np.ndarray, size: tuple[int, int]) -> int:
    """Index of the box (F, 4) ``[x0, y0, x1, y1]`` whose centre is nearest the centre of an
    image of ``size`` (H, W); ties go to the larger box."""
    height, width = size
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distance = np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.lexsort((-area, distance))[0])


def median_box(
    backend, root: Path | None, keys: Sequence[str], sample: int = 64, read=None
) -> tuple | None:
    """The median detected box as fractions (x0, y0, x1, y1) of the image size, over up to
    ``sample`` images evenly spread over ``keys`` (read by ``read(key)`` when given, else from
    ``root``); None when fewer than 5 have a face."""
    from balanced_align.data.validation import read_image

    if read is None:

        def read(key: str) -> np.ndarray:
            return read_image(resolve_inside(root, key))

    picks = sorted({round(i) for i in np.linspace(0, len(keys) - 1, min(sample, len(keys)))})
    fractions = []
    for index in picks:
        try:
            image = read(keys[index])
        except Exception:  # unreadable or escaping: the main pass reports it
            continue
        boxes = backend.detect(image)
        if len(boxes):
            height, width = image.shape[:2]
            box = boxes[central_face(boxes, (height, width))]
            fractions.append(box / np.array([width, height, width, height]))
    if len(fractions) < 5:
        return None
    return tuple(round(float(v), 4) for v in np.median(np.stack(fractions), axis=0))


def fallback_box(size: tuple[int, int], fractions: Sequence[float]) -> np.ndarray:
    """The fallback face box ``[x0, y0, x1, y1]`` (pixels) given as fractions of (W, H)."""
    height, width = size
    x0, y0, x1, y1 = fractions
    return np.array([x0 * width, y0 * height, x1 * width, y1 * height], np.float64)


@dataclass
class Outcome:
    """What happened to one image: ``points`` (S, 2) corner pixels or None; ``kind`` is
    ``detected``, ``fallback`` or ``failed``; ``reason`` says why for the latter two."""

    key: str
    kind: str
    points: np.ndarray | None = None
    reason: str = ""
    faces: int = 0


# -- per-process work ---------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(backend, options: dict, root: str, schema: str, fallback, read=None) -> None:
    """Set this process's state; ``backend`` is a name (built here) or a built backend;
    ``read(key)`` replaces reading ``root / key`` (in-process runs only)."""
    if isinstance(backend, str):
        backend = make_backend(backend, **options)
    _WORKER.update(backend=backend, root=root, schema=schema, fallback=fallback, read=read)


def _annotate_one(key: str) -> Outcome:
    from balanced_align.data.validation import read_image

    state = _WORKER
    try:
        read = state.get("read")
        image = read(key) if read is not None else read_image(Path(state["root"]) / key)
    except Exception as error:  # unreadable or not an image: listed, not fatal
        return Outcome(key, "failed", reason=f"unreadable: {error}")
    backend = state["backend"]
    boxes = backend.detect(image)
    if len(boxes):
        kind, reason = "detected", ""
        box = boxes[central_face(boxes, image.shape[:2])]
    elif state["fallback"] is None:
        return Outcome(key, "failed", reason="no face detected")
    else:
        text = ",".join(f"{v:g}" for v in state["fallback"])
        kind, reason = "fallback", f"no face detected; landmarks placed in the box {text}"
        box = fallback_box(image.shape[:2], state["fallback"])
    points = backend.landmarks(image, box)
    if state["schema"] == "five":
        points = IBUG68.five_points(points)
    return Outcome(key, kind, np.asarray(points, np.float32), reason, len(boxes))


def _outcomes(
    keys: list[str], workers: int, init_args: tuple, built, read=None
) -> Iterator[Outcome]:
    if workers <= 1 or read is not None:
        _init_worker(built, *init_args[1:], read)
        try:
            yield from map(_annotate_one, keys)
        finally:
            _WORKER.clear()
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap(_annotate_one, keys, chunksize=4)


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Summary:
    """Counts of one run; ``spread`` describes the landmarks written by this run."""

    images: int = 0
    skipped: int = 0
    written: int = 0
    detected: int = 0
    fallback: int = 0
    failed: int = 0
    seconds: float = 0.0
    spread: dict = field(default_factory=dict)
    fallback_box: tuple | None = None

    @property
    def images_per_s(self) -> float:
        done = self.written + self.failed
        return done / self.seconds if self.seconds > 0 else float("nan")

    def lines(self) -> list[str]:
        out = [
            f"images under ROOT: {self.images}; already in the table: {self.skipped}",
            f"written: {self.written} ({self.detected} detected, {self.fallback} from the "
            f"fallback box); failed: {self.failed}",
            f"time: {self.seconds:.1f} s, {self.images_per_s:.1f} images/s",
        ]
        if self.fallback_box is not None:
            box = ",".join(f"{v:g}" for v in self.fallback_box)
            out.append(f"fallback box (fractions x0,y0,x1,y1 of the image): {box}")
        if self.spread:
            s = self.spread
            out.append(
                f"landmark spread: eye-corner distance {s['eye_distance_median']:.1f} px "
                f"(5–95 %: {s['eye_distance_p5']:.1f}–{s['eye_distance_p95']:.1f}); "
                f"per-point std {s['point_std_px']:.2f} px "
                f"({s['point_std_rel']:.3f} of the eye-corner distance)"
            )
        return out


def landmark_spread(points: np.ndarray, schema: str) -> dict:
    """Spread of (N, S, 2) landmarks: outer-eye-corner distance percentiles (ibug68; eye
    centres for five) and the per-point standard deviation across images (mean over points,
    pixels and relative to the median eye distance)."""
    if schema == "ibug68":
        left, right = points[:, OUTER_EYE_CORNERS[0]], points[:, OUTER_EYE_CORNERS[1]]
    else:
        left, right = points[:, 0], points[:, 1]
    eye = np.linalg.norm(right - left, axis=1)
    std = float(np.linalg.norm(points.std(axis=0), axis=1).mean())
    median = float(np.median(eye))
    return {
        "eye_distance_median": median,
        "eye_distance_p5": float(np.percentile(eye, 5)),
        "eye_distance_p95": float(np.percentile(eye, 95)),
        "point_std_px": std,
        "point_std_rel": std / median if median > 0 else float("nan"),
    }


def annotate(
    root: str | Path | None,
    out: str | Path,
    *,
    backend: str = "dlib",
    schema: str = "ibug68",
    workers: int = 1,
    fallback: Sequence[float] | str | None = "auto",
    backend_options: dict | None = None,
    keys: Sequence[str] | None = None,
    progress: bool = True,
    read: Callable[[str], np.ndarray] | None = None,
) -> Summary:
    """Annotate the images under ``root`` into the table ``out`` (appending; resumable).

    Args:
        root: image tree; table keys are paths relative to it.
        out: the CSV table to write or extend; failures go to :func:`failures_path` (out).
        backend: detector name (:data:`~balanced_align.annotate.backends.BACKENDS`).
        schema: ``ibug68`` (68 points) or ``five`` (eye centres, nose tip, mouth corners,
            from the 68 points).
        workers: processes (each loads its own backend); 1 runs in this process.
        fallback: face box used when nothing is detected, as fractions ``(x0, y0, x1, y1)``
            of (W, H); ``"auto"``: :func:`median_box` (the whole image when fewer than 5
            sampled images have a face); None: such images fail instead.
        backend_options: keyword arguments of the backend (e.g. ``upsample`` for dlib).
        keys: paths relative to ``root`` to annotate (default: every image under it).
        progress: show a progress bar on stderr.
        read: ``read(key) -> (H, W, 3) uint8 RGB`` for images that are not files (e.g. the
            images of an insightface ``.bin``): ``root`` is then unused (None), ``keys`` are
            plain names and are required, and the work runs in this process (``workers``
            is ignored).
    """
    if read is not None:
        if keys is None:
            raise ValueError("annotate(read=…) needs the keys of the images")
    else:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"ROOT {str(root)!r} is not a folder")
    if schema not in SCHEMAS:
        raise ValueError(f"--schema must be one of {SCHEMAS}, got {schema!r}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if fallback is not None and fallback != "auto":
        fallback = tuple(float(v) for v in fallback)
        if len(fallback) != 4 or not (fallback[0] < fallback[2] and fallback[1] < fallback[3]):
            raise ValueError(
                f"--fallback-box must be x0,y0,x1,y1 with x0 < x1 and y0 < y1, got {fallback}"
            )
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out {str(out)!r}: the table is written as CSV; name it *.csv")
    keys = list_images(root) if keys is None else [str(k) for k in keys]
    if read is None:
        inputs = [root / key for key in keys]
        refuse_overwriting_inputs([out, failures_path(out)], inputs, what="--out")
    # build the backend first, so that a missing package fails before any file is touched
    built = make_backend(backend, **(backend_options or {}))

    summary = Summary(images=len(keys))
    with (
        AppendOnlyCSV(out, table_header(schema)) as table,
        AppendOnlyCSV(failures_path(out), FAILURE_HEADER) as failures,
    ):
        done = set(table.keys)
        failures.keep_only(done)  # notes of written rows stay; failed paths are retried
        todo, summary.skipped = [], 0
        queued = set()
        for key in keys:
            if key in done:
                summary.skipped += 1
                continue
            if key in queued:  # a key given twice is done once
                continue
            queued.add(key)
            try:
                if read is None:
                    resolve_inside(root, key, what=f"image {key!r}")
            except UnsafePathError as error:
                failures.append([key, "failed", str(error)])
                summary.failed += 1
                continue
            todo.append(key)
        if fallback == "auto" and todo:
            fallback = median_box(built, root, keys, read=read) or (0.0, 0.0, 1.0, 1.0)
        summary.fallback_box = fallback if fallback != "auto" else None
        init_args = (backend, backend_options or {}, str(root), schema, fallback)
        written = []
        start = time.perf_counter()
        outcomes = _outcomes(todo, workers, init_args, built, read)
        for outcome in _progress(outcomes, len(todo), progress):
            if outcome.kind != "detected":
                failures.append([outcome.key, outcome.kind, outcome.reason])
            if outcome.points is None:
                summary.failed += 1
                continue
            values = [f"{v:.3f}" for v in outcome.points.reshape(-1)]
            table.append([outcome.key, *values])
            written.append(outcome.points)
            summary.written += 1
            summary.detected += outcome.kind == "detected"
            summary.fallback += outcome.kind == "fallback"
        summary.seconds = time.perf_counter() - start
    if written:
        summary.spread = landmark_spread(np.stack(written), schema)
    return summary


def _progress(items: Iterator[Outcome], total: int, show: bool) -> Iterator[Outcome]:
    if not show:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=sys.stderr)) as bar:
        task = bar.add_task("annotate", total=total)
        for item in items:
            yield item
            bar.advance(task)
