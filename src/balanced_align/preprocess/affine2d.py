"""Affine2D: the usual face-recognition preprocessing (docs/design.md §1 baseline).

Five points (eye centres, nose tip, mouth corners, from any landmark schema) are mapped
onto a fixed template by the least-squares similarity transform (rotation, uniform scale,
translation: :func:`~balanced_align.geometry.estimate_similarity`) and the image is warped
to a ``size × size`` crop with ``cv2.warpAffine``; every landmark goes through the same
transform.

Template. The widely published ArcFace / insightface 5-point template for 112×112 crops
is given (``ARCFACE_TEMPLATE_112``) in insightface's convention: 0-based pixel *centres*
(OpenCV's frame, pixel j's centre at j). In our corner-origin frame (docs/design.md §2, pixel j
spans [j, j + 1)) the same locations are those values + 0.5. For another ``size`` the
corner-origin template is scaled by size / 112, which is exactly what resizing the 112
crop to ``size`` does (``cv2.resize`` is corner-aligned). (insightface scales its 0-based
values instead; the two differ by 0.5·(size/112 − 1) px, nothing at 112.)

OpenCV's frame. Corner-origin point p is OpenCV point p − h, h = (0.5, 0.5). A matrix M
mapping corner-origin source points to corner-origin crop points (q = M p) therefore maps
OpenCV points by q − h = M (p_cv + h) − h, i.e. in homogeneous form

    M_cv = T(−h) · M · T(+h):   same linear part A, translation t + A h − h.

``cv2.warpAffine(image, M_cv, (size, size))`` then puts source content at p on the crop
at M p (:func:`corner_to_cv2`; tested by warping a dot).

Batch tool (:func:`preprocess_affine2d`, CLI below): an image tree with landmarks (a
table keyed by relative path, or 300-W ``.pts`` files beside the images) → ``OUT/images/``
(the same relative paths; the suffix changes only where ``image_format`` asks, or for a
format OpenCV cannot write in colour), ``OUT/landmarks.csv`` (transformed landmarks,
corner-origin pixels of the crop, keyed by the output path: ready for
``ImageFolderSource(OUT/images, landmarks=OUT/landmarks.csv)``),
``OUT/transforms.csv`` (each M, source → crop, corner-origin), ``OUT/failures.csv``
(``path, reason``: missing or unreadable images, bad landmark rows, degenerate five
points, keys refused because they leave ``ROOT``) and ``OUT/affine2d.json`` (settings
and counts). Nothing is written outside ``OUT``, and never over an input::

    python -m balanced_align.preprocess.affine2d --images ROOT --pts --out DIR --size 112
    python -m balanced_align.preprocess.affine2d --images ROOT --landmarks T.csv --out DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch

from balanced_align.core.schema import LandmarkSchema, get_schema, schema_for_count
from balanced_align.geometry import estimate_similarity

#: ArcFace / insightface 5-point template of a 112×112 crop, (5, 2) as (x, y): left eye,
#: right eye, nose tip, mouth left, mouth right, in 0-based pixel-centre coordinates
#: (insightface's convention; add 0.5 for our corner-origin frame).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
TEMPLATE_SIZE = 112
_WRITABLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def affine2d_template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """(5, 2) float64 template of a ``size × size`` crop in corner-origin pixels.

    ``(ARCFACE_TEMPLATE_112 + 0.5) · size / 112`` (see the module docstring).
    """
    size = _check_size(size)
    return (ARCFACE_TEMPLATE_112 + 0.5) * (size / TEMPLATE_SIZE)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    return int(size)


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"affine matrix must be (2, 3), got {matrix.shape}")
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def _shift(offset: float) -> np.ndarray:
    return np.array([[1.0, 0.0, offset], [0.0, 1.0, offset], [0.0, 0.0, 1.0]])


def corner_to_cv2(matrix: np.ndarray) -> np.ndarray:
    """(2, 3) corner-origin affine M -> OpenCV's pixel-centre form T(−½)·M·T(+½)."""
    return (_shift(-0.5) @ _homogeneous(matrix) @ _shift(0.5))[:2]


def cv2_to_corner(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`corner_to_cv2`: T(+½)·M_cv·T(−½)."""
    return (_shift(0.5) @ _homogeneous(matrix) @ _shift(-0.5))[:2]


def affine2d_align(
    image: np.ndarray,
    landmarks: np.ndarray,
    schema: str | LandmarkSchema | None = None,
    size: int = TEMPLATE_SIZE,
    template: np.ndarray | None = None,
    interpolation: int = cv2.INTER_LINEAR,
    border_value: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align a face to the 5-point template: ``(crop, landmarks, M)``.

    Args:
        image: (H, W, C) or (H, W), any dtype ``cv2.warpAffine`` takes (uint8 RGB usually).
        landmarks: (S, 2) corner-origin pixels of ``image`` in ``schema``.
        schema: landmark schema (name or object); None: by the point count (84, 68, 5).
        size: side of the square crop.
        template: (5, 2) corner-origin points in the crop; default
            :func:`affine2d_template` (``size``).
        interpolation, border_value: passed to ``cv2.warpAffine`` (constant border).

    Returns:
        crop: (size, size[, C]) of ``image``'s dtype.
        landmarks: (S, 2) float32, ``M`` applied to every landmark (corner-origin, crop).
        M: (2, 3) float64, corner-origin source → crop, the least-squares similarity
            taking the schema's five points to the template.

    Raises ValueError for a bad image or landmark array, or five points too close together
    to define a transform.
    """
    size = _check_size(size)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(
            f"image must be an (H, W[, C]) array, got {getattr(image, 'shape', type(image))}"
        )
    points = np.asarray(landmarks, np.float64)
    schema = schema_for_count(len(points)) if schema is None else get_schema(schema)
    schema.check(points, where="affine2d_align landmarks")
    if template is None:
        template = affine2d_template(size)
    template = np.asarray(template, np.float64)
    if template.shape != (5, 2) or not np.isfinite(template).all():
        raise ValueError(f"template must be (5, 2) finite points, got {template.shape}")
    five = schema.five_points(points)
    spread = np.sqrt(((five - five.mean(0)) ** 2).sum(1).mean())
    if not spread > 1e-6 * max(image.shape[:2]):
        raise ValueError(
            f"affine2d_align: the five points are degenerate (spread {spread:.3g} px): "
            "they do not define a similarity transform"
        )
    matrix = estimate_similarity(torch.from_numpy(five), torch.from_numpy(template))[0].numpy()
    if not np.isfinite(matrix).all():
        raise ValueError("affine2d_align: the similarity estimate is not finite")
    crop = cv2.warpAffine(
        image,
        corner_to_cv2(matrix),
        (size, size),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )
    aligned = points @ matrix[:, :2].T + matrix[:, 2]
    return crop, aligned.astype(np.float32), matrix


# ------------------------------------------------------------------------------ batch tool


@dataclass
class Affine2DReport:
    """What :func:`preprocess_affine2d` did: counts, output paths, ``(path, reason)`` failures."""

    out_dir: Path
    written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    landmark_table: Path | None = None
    transforms_table: Path | None = None
    failures_table: Path | None = None

    def __str__(self) -> str:
        lines = [f"Affine2D: {self.written} crop(s) written to {self.out_dir / 'images'}"]
        if self.landmark_table is not None:
            lines.append(f"  landmarks: {self.landmark_table}")
        lines.append(f"  failures: {len(self.failures)} (listed in {self.failures_table})")
        lines += [f"    {path}: {reason}" for path, reason in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"    ... and {len(self.failures) - 20} more")
        return "\n".join(lines)


def _items_from_pts(root: Path, convention: str, schema):
    from balanced_align.data.sources import PtsFolderSource

    source = PtsFolderSource(
        root, convention=convention, schema=schema, on_bad_sample="skip", check_images=False
    )
    items = [(source.paths[i], source.landmarks_of(i)) for i in range(len(source))]
    failures = [(str(Path(p).relative_to(root)), why) for p, why in source.skipped]
    return items, failures, source.schema


def _items_from_table(root: Path, table: Path, convention: str, schema):
    from balanced_align.data.sources import read_landmark_table, to_corner
    from balanced_align.data.validation import landmark_problem

    rows = read_landmark_table(table)
    count = len(next(iter(rows.values())))
    schema = schema_for_count(count) if schema is None else get_schema(schema)
    if schema.num_points != count:
        raise ValueError(
            f"landmark table {str(table)!r} has {count} points per row, schema "
            f"'{schema.name}' needs {schema.num_points}"
        )
    items, failures = [], []
    for rel, points in rows.items():
        problem = landmark_problem(points, schema.num_points)
        if problem is None:
            items.append((rel, to_corner(points, convention)))
        else:
            failures.append((rel, f"landmark table row: {problem}"))
    return items, failures, schema


def _output_rel(rel: str, image_format: str | None) -> str:
    path = PurePosixPath(rel)
    if image_format is not None:
        return str(path.with_suffix("." + image_format))
    if path.suffix.lower() in _WRITABLE_SUFFIXES:
        return rel
    return str(path.with_suffix(".png"))


@dataclass(frozen=True)
class _Job:
    """One image to align: its key, the resolved source file, the output key and file."""

    rel: str
    source: Path
    out_rel: str
    target: Path
    points: np.ndarray


def _plan_jobs(
    root: Path,
    out_images: Path,
    items: Sequence[tuple[str, np.ndarray]],
    image_format: str | None,
    inputs: Sequence[Path],
) -> tuple[list[_Job], list[tuple[str, str]]]:
    """Where each item is read and written, or why it is refused (``(key, reason)``).

    The key must resolve (symlinks and ``..`` included) inside ``root``, the output
    inside ``out_images``; no two keys may share an output and no output may be an input
    (the table, or any image to be read). Nothing is read or written here.
    """
    from balanced_align.safe_paths import (
        UnsafePathError,
        outputs_that_are_inputs,
        resolve_inside,
    )

    planned, failures, claimed = [], [], {}
    for rel, points in items:
        try:
            source = resolve_inside(root, rel, what="image key")
            out_rel = _output_rel(rel, image_format)
            target = resolve_inside(out_images, out_rel, what="output path")
        except UnsafePathError as error:
            failures.append((rel, f"refused: {error}"))
            continue
        if target in claimed:
            failures.append((rel, f"refused: its output {out_rel!r} is also {claimed[target]!r}'s"))
            continue
        claimed[target] = rel
        planned.append(_Job(rel, source, out_rel, target, points))
    sources = [job.source for job in planned]
    clashing = set(outputs_that_are_inputs([job.target for job in planned], [*inputs, *sources]))
    jobs = []
    for job in planned:
        if job.target in clashing:
            failures.append((job.rel, f"refused: output {str(job.target)!r} is an input file"))
        else:
            jobs.append(job)
    return jobs, failures


def _check_output_folder(root: Path, out_dir: Path, table: Path | None) -> None:
    """Refuse an ``out_dir`` whose outputs could replace or delete inputs.

    ``out_dir`` must not be (inside) the image tree; the image tree and the table must not
    lie inside ``out_dir/images`` (``overwrite`` deletes it); the table must not be one of
    the tables written to ``out_dir``.
    """
    from balanced_align.safe_paths import (
        UnsafePathError,
        check_output_root,
        paths_overlap,
        refuse_overwriting_inputs,
    )

    check_output_root(out_dir, root, what="--out")
    out_images = out_dir / "images"
    if paths_overlap(root, out_images):
        raise UnsafePathError(
            f"--images {str(root)!r} lies inside the output folder {str(out_images)!r}, "
            "which the tool writes (and --overwrite deletes); choose another --out"
        )
    if table is not None:
        if Path(out_images).resolve() in Path(table).resolve().parents:
            raise UnsafePathError(
                f"landmark table {str(table)!r} lies inside the output folder "
                f"{str(out_images)!r}; choose another --out"
            )
        outputs = [
            out_dir / f"{name}.{ext}"
            for name in ("landmarks", "transforms")
            for ext in ("csv", "parquet")
        ]
        outputs += [out_dir / "failures.csv", out_dir / "affine2d.json"]
        refuse_overwriting_inputs(outputs, [table], what="output table")


def _align_one(job: _Job, schema: LandmarkSchema, size: int, quality: int):
    """Align one file: ``(out_rel, landmarks, M)`` or ``(rel, reason)`` on failure."""
    from balanced_align.data.validation import image_problem, landmark_problem

    rel, path, points = job.rel, job.source, job.points
    if not path.is_file():
        return rel, "image file missing"
    image, problem = image_problem(path)
    if problem is not None:
        return rel, problem
    problem = landmark_problem(points, schema.num_points, image.shape[:2])
    if problem is not None:
        return rel, problem
    try:
        crop, aligned, matrix = affine2d_align(image, points, schema, size)
    except ValueError as error:
        return rel, str(error)
    out_rel, target = job.out_rel, job.target
    target.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if not cv2.imwrite(str(target), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params):
        return rel, f"OpenCV could not write {str(target)!r}"
    return out_rel, aligned, matrix


def preprocess_affine2d(
    images: str | Path,
    out_dir: str | Path,
    landmarks: str | Path | None = None,
    pts: bool = False,
    convention: str | None = None,
    schema: str | LandmarkSchema | None = None,
    size: int = TEMPLATE_SIZE,
    image_format: str | None = None,
    quality: int = 95,
    table_format: str = "csv",
    workers: int = 4,
    overwrite: bool = False,
) -> Affine2DReport:
    """Align every image of a tree to the Affine2D template (see the module docstring).

    Args:
        images: the tree's root.
        out_dir: output folder (``images/``, tables, ``affine2d.json``).
        landmarks: CSV/Parquet table keyed by path relative to ``images`` (columns
            ``path, x0, y0, …``); exactly one of ``landmarks`` and ``pts``. Only the
            table's rows are processed.
        pts: take landmarks from same-stem 300-W ``.pts`` files (searched recursively).
        convention: the landmarks' pixel convention (``corner``, ``one_based``,
            ``zero_based_centre``); default ``one_based`` for ``.pts``, ``corner`` for a table.
        schema: landmark schema; default by the point count.
        size: crop side; image_format: None (keep each file's format where OpenCV writes
            it in colour, else PNG), ``"png"`` or ``"jpg"``; quality: JPEG quality.
        table_format: ``"csv"`` or ``"parquet"`` for ``landmarks`` and ``transforms``.
        workers: threads (decoding, warping and encoding release the GIL).
        overwrite: replace a previous Affine2D output in ``out_dir``.

    Bad inputs (missing/unreadable images, bad rows, degenerate points) do not stop the
    run: they are listed in ``failures.csv`` and the report. Bad arguments raise at once.

    Paths: a key (table row or found file) must resolve inside ``images`` (an absolute
    key, a ``..`` escape or a symlink leaving the tree is a failure row, ``refused: …``,
    and that file is neither read nor written); each output lies inside
    ``out_dir/images`` and is never an input. ``out_dir`` inside the image tree, the image
    tree or the table inside ``out_dir/images``, or the table named like an output table
    raise :class:`~balanced_align.safe_paths.UnsafePathError` (a ``ValueError``) before
    anything is written or deleted.
    """
    from balanced_align.data.sources import LANDMARK_CONVENTIONS, write_landmark_table

    root = Path(images)
    out_dir = Path(out_dir)
    size = _check_size(size)
    if not root.is_dir():
        raise FileNotFoundError(f"images root {str(root)!r} is not a directory")
    if (landmarks is None) == (not pts):
        raise ValueError("give exactly one of landmarks (a table) and pts=True")
    convention = convention or ("one_based" if pts else "corner")
    if convention not in LANDMARK_CONVENTIONS:
        raise ValueError(
            f"convention must be one of {sorted(LANDMARK_CONVENTIONS)}, got {convention!r}"
        )
    if image_format is not None:
        image_format = {"jpeg": "jpg"}.get(image_format.lower(), image_format.lower())
        if image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be None, 'png' or 'jpg', got {image_format!r}")
    if table_format not in ("csv", "parquet"):
        raise ValueError(f"table_format must be 'csv' or 'parquet', got {table_format!r}")
    _check_output_folder(root, out_dir, None if landmarks is None else Path(landmarks))
    out_images = out_dir / "images"
    marker = out_dir / "affine2d.json"
    if out_images.exists() or marker.exists():
        if not overwrite:
            raise FileExistsError(
                f"out_dir {str(out_dir)!r} already holds an Affine2D output; pass "
                "overwrite=True (--overwrite) to replace it"
            )
        if not marker.exists():
            raise FileExistsError(
                f"{str(out_images)!r} exists but {str(marker)!r} does not: not an Affine2D "
                "output, remove it yourself"
            )
        shutil.rmtree(out_images, ignore_errors=True)
        marker.unlink()
    if pts:
        items, failures, schema = _items_from_pts(root, convention, schema)
    else:
        items, failures, schema = _items_from_table(root, Path(landmarks), convention, schema)
    inputs = [] if landmarks is None else [Path(landmarks)]
    jobs, refused = _plan_jobs(root, out_images, items, image_format, inputs)
    failures += refused
    out_images.mkdir(parents=True, exist_ok=True)

    def one(job):
        return _align_one(job, schema, size, quality)

    threads = max(1, int(workers))
    if threads == 1:
        results = [one(job) for job in jobs]
    else:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, jobs))
    table, transforms = {}, {}
    for result in results:
        if len(result) == 2:
            failures.append(result)
        else:
            out_rel, aligned, matrix = result
            table[out_rel] = aligned
            transforms[out_rel] = matrix
    report = Affine2DReport(out_dir=out_dir, written=len(table), failures=failures)
    if table:
        report.landmark_table = out_dir / f"landmarks.{table_format}"
        report.transforms_table = out_dir / f"transforms.{table_format}"
        write_landmark_table(report.landmark_table, table)
        _write_transforms(report.transforms_table, transforms)
    report.failures_table = out_dir / "failures.csv"
    _write_failures(report.failures_table, failures)
    summary = {
        "images": str(root),
        "landmarks": "pts" if pts else str(landmarks),
        "input_convention": convention,
        "output_convention": "corner",
        "schema": schema.name,
        "size": size,
        "template_corner_origin": affine2d_template(size).tolist(),
        "written": report.written,
        "failures": len(failures),
    }
    marker.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return report


def _write_transforms(path: Path, transforms: dict[str, np.ndarray]) -> None:
    import pandas as pd

    columns = ["m00", "m01", "m02", "m10", "m11", "m12"]
    frame = pd.DataFrame(
        [[key, *np.asarray(m, np.float64).reshape(-1).tolist()] for key, m in transforms.items()],
        columns=["path", *columns],
    )
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def _write_failures(path: Path, failures: Sequence[tuple[str, str]]) -> None:
    import pandas as pd

    pd.DataFrame(list(failures), columns=["path", "reason"]).to_csv(path, index=False)


if __name__ == "__main__":
    from balanced_align.preprocess.cli import affine2d_main

    sys.exit(affine2d_main())
