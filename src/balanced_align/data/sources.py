"""File-backed face data sources (docs/design.md §4): image-folder trees, 300-W ``.pts`` folders.

Each source is an indexable data set of :class:`FaceRecord` with landmarks in the
corner-origin pixel frame of docs/design.md §2; file conventions are converted once, here:

- ``"corner"``: the file already uses our frame (pixel j spans [j, j + 1)).
- ``"one_based"``: pixel centres at 1, 2, … (Matlab, 300-W): x_ours = x_file − 0.5.
- ``"zero_based_centre"``: pixel centres at 0, 1, … (OpenCV): x_ours = x_file + 0.5.

Landmark table (CSV or Parquet) keyed by the image path relative to the source's root
(forward slashes): columns ``path, x0, y0, x1, y1, …, x{S-1}, y{S-1}``; other columns
are ignored. Sources check their inputs when built (see :mod:`.validation`).

Common attributes of a source: ``has_landmarks``, ``schema`` (or None), ``labels``
(int64 per item, known without decoding images), ``num_classes``, ``yaws`` (degrees,
NaN where unknown), ``paths`` (relative), ``skipped`` (a :class:`SkipReport`).
"""

from __future__ import annotations

import errno
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from balanced_align.core.schema import LandmarkSchema, get_schema, schema_for_count
from balanced_align.data.record import FaceRecord
from balanced_align.data.validation import (
    DEFAULT_OUTSIDE_MARGIN,
    BadSampleError,
    BadSampleHandler,
    SkipReport,
    image_problem,
    landmark_problem,
    read_image,
)
from balanced_align.safe_paths import UnsafePathError, check_relative_key

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
    ".tif",
    ".tiff",
    ".webp",
)
LANDMARK_CONVENTIONS = {"corner": 0.0, "one_based": -0.5, "zero_based_centre": 0.5}


def _convention_offset(convention: str) -> float:
    try:
        return LANDMARK_CONVENTIONS[convention]
    except KeyError:
        raise ValueError(
            f"landmark convention must be one of {sorted(LANDMARK_CONVENTIONS)}, got {convention!r}"
        ) from None


def to_corner(points: np.ndarray, convention: str) -> np.ndarray:
    """File coordinates (..., 2) in ``convention`` -> corner-origin pixels (float32)."""
    return (np.asarray(points, np.float32) + _convention_offset(convention)).astype(np.float32)


def from_corner(points: np.ndarray, convention: str) -> np.ndarray:
    """Corner-origin pixels (..., 2) -> file coordinates in ``convention`` (float32)."""
    return (np.asarray(points, np.float32) - _convention_offset(convention)).astype(np.float32)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def broken_link_problem(path: Path) -> tuple[str, bool] | None:
    """``(reason, dangling)`` if ``path`` is a symlink that does not resolve, else None.

    dangling: the link names nothing (True), or it is a loop (False).
    """
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as error:
        target = os.readlink(path)
        if error.errno == errno.ELOOP:
            return f"symlink loop (links to {target!r}, which leads back to itself)", False
        return f"dangling symlink (links to {target!r}, which does not exist)", True
    return None


def _listing(folder: Path, handler: BadSampleHandler) -> list[Path]:
    """The sorted entries of ``folder`` that resolve; broken, non-hidden links are reported."""
    entries = []
    for entry in sorted(folder.iterdir()):
        broken = broken_link_problem(entry)
        if broken is None:
            entries.append(entry)
        elif not entry.name.startswith("."):
            handler.bad(entry, broken[0], missing=broken[1])
    return entries


def _tree_files(root: Path, handler: BadSampleHandler) -> list[Path]:
    """Every regular file below ``root``, symlinked folders followed, sorted.

    Broken links are reported (:func:`_listing`), and so is a folder link that leads
    back to one of its own ancestors (a loop, which is not followed).
    """
    files: list[Path] = []
    stack = [(root, frozenset({root.resolve()}))]
    while stack:
        folder, ancestors = stack.pop()
        for entry in _listing(folder, handler):
            if entry.is_dir():
                real = entry.resolve()
                if real in ancestors:
                    handler.bad(entry, f"symlink loop (leads back to its ancestor {str(real)!r})")
                else:
                    stack.append((entry, ancestors | {real}))
            elif entry.is_file():
                files.append(entry)
    return sorted(files)


# --------------------------------------------------------------------------- 300-W .pts


def read_pts(path: str | Path) -> np.ndarray:
    """Read a 300-W ``.pts`` file as written (no convention change): (n_points, 2) float32.

    Format: ``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``.
    Raises FileNotFoundError / ValueError naming the file on any deviation.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".pts file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except (UnicodeDecodeError, OSError) as error:
        raise ValueError(f".pts file {str(path)!r}: not a readable text file ({error})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    header: dict[str, str] = {}
    position = 0
    while position < len(lines) and lines[position] != "{":
        key, sep, value = lines[position].partition(":")
        if not sep:
            raise ValueError(f".pts file {str(path)!r}: unexpected header line {lines[position]!r}")
        header[key.strip()] = value.strip()
        position += 1
    if "n_points" not in header:
        raise ValueError(f".pts file {str(path)!r}: no 'n_points:' header")
    try:
        count = int(header["n_points"])
    except ValueError:
        raise ValueError(f".pts file {str(path)!r}: bad n_points {header['n_points']!r}") from None
    if position >= len(lines):
        raise ValueError(f".pts file {str(path)!r}: no '{{' opening the point list")
    try:
        end = lines.index("}", position + 1)
    except ValueError:
        raise ValueError(f".pts file {str(path)!r}: no '}}' closing the point list") from None
    body = lines[position + 1 : end]
    if len(body) != count:
        raise ValueError(
            f".pts file {str(path)!r}: wrong landmark count: header says n_points: {count}, "
            f"found {len(body)} point lines"
        )
    points = np.empty((count, 2), np.float32)
    for i, line in enumerate(body):
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            points[i] = [float(fields[0]), float(fields[1])]
        except ValueError:
            raise ValueError(f".pts file {str(path)!r}: point {i} is not 'x y': {line!r}") from None
    return points


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (N, 2) points to a 300-W ``.pts`` file as given (no convention change)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"write_pts({str(path)!r}): points must be (N, 2), got {points.shape}")
    lines = ["version: 1", f"n_points:  {len(points)}", "{"]
    lines += [f"{x:.3f} {y:.3f}" for x, y in points]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")


# ------------------------------------------------------------------------ landmark table


def _coordinate_columns(num_points: int) -> list[str]:
    return [f"{axis}{i}" for i in range(num_points) for axis in ("x", "y")]


def read_landmark_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CSV/Parquet landmark table as ``{relative path: (S, 2) float32 file coords}``.

    Columns ``path, x0, y0, …, x{S-1}, y{S-1}``; S is the number of ``x<i>`` columns.
    Empty cells become NaN (and are reported as bad samples by the sources).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark table {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
            raise BadSampleError(f"landmark table {str(path)!r}: {_parse_problem(error)}") from None
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"landmark table {str(path)!r}: expected a .csv or .parquet file")
    if "path" not in frame.columns:
        raise ValueError(f"landmark table {str(path)!r}: no 'path' column")
    num_points = sum(1 for c in frame.columns if c[:1] == "x" and c[1:].isdigit())
    columns = _coordinate_columns(num_points)
    missing = [c for c in columns if c not in frame.columns]
    if num_points == 0 or missing:
        raise ValueError(
            f"landmark table {str(path)!r}: expected columns x0, y0, …, x{{S-1}}, y{{S-1}}; "
            f"missing {missing[:4] or ['x0', 'y0']}"
        )
    if len(frame) == 0:
        raise ValueError(f"landmark table {str(path)!r} has no rows")
    keys = [str(PurePosixPath(str(p).replace("\\", "/"))) for p in frame["path"]]
    duplicated = sorted(k for k, n in Counter(keys).items() if n > 1)
    if duplicated:
        raise ValueError(f"landmark table {str(path)!r}: duplicate rows for {duplicated[:5]}")
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    values = values.reshape(len(frame), num_points, 2)
    return dict(zip(keys, values))


def _parse_problem(error: Exception) -> str:
    """pandas' CSV error as "line N: ..." where it names a line (1-based, header = line 1)."""
    text = str(error).strip()
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if found:
        expected, line, saw = found.groups()
        return f"line {line}: {saw} fields, the header has {expected}"
    found = re.search(r"line (\d+)", text)
    prefix = f"line {found.group(1)}: " if found else ""
    return f"{prefix}not a readable CSV table ({text})"


def write_landmark_table(path: str | Path, table: dict[str, np.ndarray]) -> None:
    """Write ``{relative path: (S, 2) points}`` as CSV or Parquet (by suffix), as given."""
    import pandas as pd

    if not table:
        raise ValueError(f"write_landmark_table({str(path)!r}): empty table")
    num_points = len(next(iter(table.values())))
    rows = [
        [key, *np.asarray(points, np.float64).reshape(-1).tolist()] for key, points in table.items()
    ]
    frame = pd.DataFrame(rows, columns=["path", *_coordinate_columns(num_points)])
    if Path(path).suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


# ------------------------------------------------------------------------------ sources


def _decode_all(paths: Sequence[Path]) -> list[tuple[tuple[int, int] | None, str | None]]:
    """Decode every image (threads; OpenCV releases the GIL): [(H, W) or None, problem]."""

    def one(path: Path):
        image, problem = image_problem(path)
        return (None, problem) if image is None else (image.shape[:2], None)

    workers = max(1, min(8, os.cpu_count() or 1))
    if len(paths) < 16 or workers == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths))


class _FileSource:
    """Shared item storage and record construction of the file-backed sources."""

    root: Path
    schema: LandmarkSchema | None
    paths: list[str]
    labels: np.ndarray
    skipped: SkipReport
    _landmarks: list[np.ndarray] | None
    _identity: list[str]
    _sizes: list[tuple[int, int]] | None = None

    @property
    def has_landmarks(self) -> bool:
        return self._landmarks is not None

    @property
    def yaws(self) -> np.ndarray:
        return np.full(len(self.paths), np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> FaceRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self!r}: index {index} out of range for {len(self)} items")
        index = index % len(self)
        path = self.root / self.paths[index]
        landmarks = None if self._landmarks is None else self._landmarks[index].copy()
        return FaceRecord(
            image=read_image(path),
            landmarks=landmarks,
            label=int(self.labels[index]),
            source=str(path),
            meta={"path": self.paths[index], "identity": self._identity[index]},
        )

    def landmarks_of(self, index: int) -> np.ndarray | None:
        """(S, 2) corner-origin pixel landmarks of item ``index`` without decoding it."""
        return None if self._landmarks is None else self._landmarks[index].copy()

    def image_size_of(self, index: int) -> tuple[int, int] | None:
        """(H, W) of item ``index`` if the images were checked at build time, else None."""
        return None if self._sizes is None else self._sizes[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def _finish(
        self,
        candidates: list[tuple[str, str, np.ndarray | None]],
        handler: BadSampleHandler,
        check_images: bool,
        margin: float,
    ) -> list[tuple[str, str, np.ndarray | None]]:
        """Landmark and image checks on (relative path, identity, landmarks) candidates."""
        kept = []
        for rel, identity, points in candidates:
            problem = None
            if points is not None:
                expected = None if self.schema is None else self.schema.num_points
                problem = landmark_problem(points, expected)
            if problem is None:
                kept.append((rel, identity, points))
            else:
                handler.bad(self.root / rel, problem)
        self._sizes = None
        if not check_images:
            return kept
        results = _decode_all([self.root / rel for rel, _, _ in kept])
        checked, sizes = [], []
        for (rel, identity, points), (size, problem) in zip(kept, results):
            if problem is None and points is not None:
                problem = landmark_problem(points, image_size=size, margin=margin)
            if problem is None:
                checked.append((rel, identity, points))
                sizes.append(size)
            else:
                handler.bad(self.root / rel, problem)
        self._sizes = sizes
        return checked


class ImageFolderSource(_FileSource):
    """Faces in ``root/<identity>/<image>``: one folder per identity.

    Labels are 0…C−1 in the sorted order of the identity folders that keep at least one
    usable image; ``classes`` lists those folder names. Any format OpenCV reads (PGM
    included); grey images become RGB. Files whose extension is not an image extension
    (``IMAGE_EXTENSIONS``) and files directly under ``root`` are not samples. A symlink
    that does not resolve (dangling, or a loop) is a bad sample; table keys must be
    relative paths that stay inside ``root`` (an absolute or ``..`` key is refused).

    Args:
        root: the tree's root folder.
        landmarks: optional CSV/Parquet table keyed by path relative to ``root`` (see
            module docstring); every image then needs a row, and every row an image.
        landmark_convention: the table's pixel convention (``corner``, ``one_based``,
            ``zero_based_centre``).
        schema: landmark schema (name or object); default: by the table's point count.
        on_bad_sample: ``"raise"`` or ``"skip"`` (see :mod:`.validation`).
        check_images: decode every image at build time (unreadable/truncated files,
            landmarks far outside the image).
        outside_margin: tolerance for landmarks outside the image, as a fraction of size.
    """

    def __init__(
        self,
        root: str | Path,
        landmarks: str | Path | None = None,
        landmark_convention: str = "corner",
        schema: str | LandmarkSchema | None = None,
        on_bad_sample: str = "raise",
        check_images: bool = True,
        outside_margin: float = DEFAULT_OUTSIDE_MARGIN,
    ) -> None:
        self.root = Path(root)
        _convention_offset(landmark_convention)
        handler = BadSampleHandler(on_bad_sample, repr(self))
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self!r}: root folder {str(self.root)!r} does not exist")
        folders = [
            p for p in _listing(self.root, handler) if p.is_dir() and not p.name.startswith(".")
        ]
        if not folders:
            raise ValueError(f"{self!r}: no identity folders under {str(self.root)!r}")
        found: list[tuple[str, str]] = []
        for folder in folders:
            images = [p for p in _listing(folder, handler) if p.is_file() and is_image_file(p)]
            if not images:
                handler.bad(folder, "identity folder has no images")
            found += [(f"{folder.name}/{p.name}", folder.name) for p in images]

        table = None
        self.schema = None if schema is None else get_schema(schema)
        if landmarks is not None:
            table = read_landmark_table(landmarks)
            if self.schema is None:
                self.schema = schema_for_count(next(iter(table.values())).shape[0])
            elif next(iter(table.values())).shape[0] != self.schema.num_points:
                raise ValueError(
                    f"landmark table {str(landmarks)!r} has "
                    f"{next(iter(table.values())).shape[0]} points per row, schema "
                    f"'{self.schema.name}' needs {self.schema.num_points}"
                )
            present = {rel for rel, _ in found}
            reported = set(handler.report.paths())  # broken links already named
            for key in sorted(table):
                if key not in present and str(self.root / key) not in reported:
                    try:
                        check_relative_key(key, what=f"landmark table {str(landmarks)!r} key")
                    except UnsafePathError as error:
                        handler.bad(key, f"refused: {error}")
                        continue
                    target = self.root / key
                    if not target.exists():
                        handler.bad(
                            target,
                            f"listed in landmark table {str(landmarks)!r} but missing",
                            missing=True,
                        )
                    else:
                        handler.bad(
                            target,
                            f"listed in landmark table {str(landmarks)!r} but not an image "
                            "inside an identity folder",
                        )

        candidates = []
        for rel, identity in found:
            points = None
            if table is not None:
                if rel not in table:
                    handler.bad(self.root / rel, f"no row in landmark table {str(landmarks)!r}")
                    continue
                points = to_corner(table[rel], landmark_convention)
            candidates.append((rel, identity, points))

        kept = self._finish(candidates, handler, check_images, outside_margin)
        self.skipped = handler.finish()
        if not kept:
            raise ValueError(f"{self!r}: no usable images (skipped: {self.skipped.count})")
        self.classes = sorted({identity for _, identity, _ in kept})
        index = {name: i for i, name in enumerate(self.classes)}
        self.paths = [rel for rel, _, _ in kept]
        self._identity = [identity for _, identity, _ in kept]
        self.labels = np.array([index[i] for i in self._identity], np.int64)
        self._landmarks = None if table is None else [p for _, _, p in kept]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class PtsFolderSource(_FileSource):
    """300-W style folders: each image with a same-stem ``.pts`` file (searched recursively).

    No identities: every label is −1 (``num_classes`` = 0). Landmarks are converted from
    ``convention`` (300-W: ``one_based``) to corner-origin pixels. The schema defaults to
    the one matching the first file's point count (68 → iBUG-68). Symlinked folders are
    followed; a folder link back to one of its ancestors (a loop) and a link that does not
    resolve are bad samples. Other arguments as in :class:`ImageFolderSource`.
    """

    def __init__(
        self,
        root: str | Path,
        convention: str = "one_based",
        schema: str | LandmarkSchema | None = None,
        on_bad_sample: str = "raise",
        check_images: bool = True,
        outside_margin: float = DEFAULT_OUTSIDE_MARGIN,
    ) -> None:
        self.root = Path(root)
        _convention_offset(convention)
        handler = BadSampleHandler(on_bad_sample, repr(self))
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self!r}: root folder {str(self.root)!r} does not exist")
        files = _tree_files(self.root, handler)
        images = {p.with_suffix(""): p for p in files if is_image_file(p)}
        pts = {p.with_suffix(""): p for p in files if p.suffix.lower() == ".pts"}
        self.schema = None if schema is None else get_schema(schema)
        for stem in sorted(set(pts) - set(images)):
            handler.bad(pts[stem], "no image beside this .pts file", missing=True)
        candidates = []
        for stem in sorted(images):
            image = images[stem]
            if stem not in pts:
                handler.bad(image, "no .pts file beside this image", missing=True)
                continue
            try:
                points = read_pts(pts[stem])
            except ValueError as error:
                handler.bad(pts[stem], str(error))
                continue
            if self.schema is None:
                self.schema = schema_for_count(len(points))
            candidates.append(
                (image.relative_to(self.root).as_posix(), "", to_corner(points, convention))
            )
        kept = self._finish(candidates, handler, check_images, outside_margin)
        self.skipped = handler.finish()
        if not kept:
            raise ValueError(
                f"{self!r}: no usable image/.pts pairs (skipped: {self.skipped.count})"
            )
        self.paths = [rel for rel, _, _ in kept]
        self._identity = ["" for _ in kept]
        self.labels = np.full(len(kept), -1, np.int64)
        self._landmarks = [p for _, _, p in kept]

    num_classes = 0


class RecordSubset:
    """Items ``indices`` of a source, optionally with labels remapped to 0…k−1.

    With ``relabel=True`` the kept labels are renumbered in increasing order of the
    original label (so a subset of identities becomes a classification set of its own).
    Forwards ``has_landmarks``, ``schema``, ``yaws``, ``landmarks_of``.
    """

    def __init__(self, source, indices: Sequence[int], relabel: bool = True) -> None:
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        original = np.asarray(source.labels)[self.indices]
        if relabel:
            kept = np.unique(original)
            self.labels = np.searchsorted(kept, original).astype(np.int64)
        else:
            self.labels = original.astype(np.int64)
        self.original_labels = original

    @property
    def has_landmarks(self) -> bool:
        return self.source.has_landmarks

    @property
    def schema(self):
        return self.source.schema

    @property
    def num_classes(self) -> int:
        return int(np.unique(self.labels[self.labels >= 0]).size)

    @property
    def yaws(self) -> np.ndarray:
        return np.asarray(self.source.yaws)[self.indices]

    @property
    def skipped(self) -> SkipReport:
        return getattr(self.source, "skipped", SkipReport())

    def landmarks_of(self, index: int) -> np.ndarray | None:
        return self.source.landmarks_of(int(self.indices[index]))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> FaceRecord:
        record = self.source[int(self.indices[index])]
        record.label = int(self.labels[index])
        return record

    def __repr__(self) -> str:
        return f"RecordSubset({self.source!r}, {len(self)} items)"
