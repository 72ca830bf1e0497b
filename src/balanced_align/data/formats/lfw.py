"""LFW ``pairs.txt`` (the official verification protocol file) and the LFW image tree.

File layout (whitespace separated; the official file uses tabs)::

    10	300                     <- number of sets, pairs per class per set
    Abel_Pacheco	1	4        <- set 1: 300 matched lines  "name n1 n2"
    ...
    Abdel_Madi_Shabneh	1	Dean_Barker	1   <- set 1: 300 mismatched lines "name1 n1 name2 n2"
    ...                         <- then set 2 … set 10, same pattern

View 1 files (``pairsDevTrain.txt``, ``pairsDevTest.txt``) have a single number N on the
first line: one set of N matched then N mismatched lines. Blank lines are ignored.

Image ``n`` of ``name`` is ``root/name/name_{n:04d}.jpg`` (index 1-based, 4 digits).

Folds: pair k of set s (0-based) gets fold ``s``, the LFW protocol's 10-fold split; pass
``folds`` to :func:`balanced_align.evaluation.verification_accuracy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.data.record import FaceRecord
from balanced_align.data.validation import read_image

MatchedPair = tuple[str, int, int]
MismatchedPair = tuple[str, int, str, int]


def lfw_image_path(root: str | Path, name: str, number: int, ext: str = "jpg") -> Path:
    """``root/name/name_{number:04d}.{ext}`` (``number`` 1-based as in ``pairs.txt``)."""
    return Path(root) / name / f"{name}_{int(number):04d}.{ext.lstrip('.')}"


@dataclass
class LFWPairs:
    """A parsed ``pairs.txt`` over an image tree.

    paths: unique image files, in order of first appearance in the file.
    names: (len(paths),) identity name of each image; labels: int64 index of that name in
        ``sorted(set(names))``.
    pairs_a, pairs_b: (P,) int64 indices into ``paths``; issame: (P,) bool;
    folds: (P,) int64 set index (0-based) of each pair, in file order.
    """

    source: Path
    root: Path
    paths: list[Path]
    names: list[str]
    labels: np.ndarray
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    issame: np.ndarray
    folds: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)

    @property
    def num_images(self) -> int:
        return len(self.paths)

    def record(self, index: int) -> FaceRecord:
        """Image ``index`` (into ``paths``) as a FaceRecord: RGB, no landmarks."""
        path = self.paths[index]
        return FaceRecord(
            image=read_image(path),
            landmarks=None,
            label=int(self.labels[index]),
            source=str(path),
            meta={"name": self.names[index], "pairs_file": str(self.source)},
        )

    def protocol(self) -> EvaluationProtocol:
        """An :class:`~balanced_align.core.EvaluationProtocol` whose rows index ``paths``."""
        return EvaluationProtocol(
            pairs_a=self.pairs_a, pairs_b=self.pairs_b, issame=self.issame, pair_folds=self.folds
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _read_header(fields: list[str], where: str) -> tuple[int, int]:
    try:
        numbers = [_positive_int(f) for f in fields]
    except ValueError:
        numbers = []
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    if len(numbers) == 1:
        return 1, numbers[0]
    raise ValueError(
        f"{where}: the first line must be 'sets pairs_per_class' (e.g. '10 300') or a single "
        f"count (View 1), got {' '.join(fields)!r}"
    )


def read_lfw_pairs(
    pairs_path: str | Path, root: str | Path, ext: str = "jpg", check_images: bool = True
) -> LFWPairs:
    """Parse an LFW ``pairs.txt`` (see module docstring) over the image tree ``root``.

    Raises ValueError naming the file and line number for any malformed line, a count that
    disagrees with the header, or a matched/mismatched line in the other block, and
    FileNotFoundError naming the missing images when ``check_images`` (every listed image
    must exist).
    """
    pairs_path, root = Path(pairs_path), Path(root)
    if not pairs_path.is_file():
        raise FileNotFoundError(f"LFW pairs file {str(pairs_path)!r} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"LFW image root {str(root)!r} is not a folder")
    where = f"LFW pairs file {str(pairs_path)!r}"
    try:
        text = pairs_path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as error:
        raise ValueError(f"{where}: not a readable text file ({error})") from None
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise ValueError(f"{where}: empty file")
    header_line, header = lines[0]
    num_sets, per_class = _read_header(header, f"{where}, line {header_line}")
    body = lines[1:]
    expected = num_sets * 2 * per_class
    if len(body) < expected:
        raise ValueError(
            f"{where}: {len(body)} pair lines, but the header {' '.join(header)!r} promises "
            f"{expected} ({num_sets} sets × {per_class} matched + {per_class} mismatched)"
        )
    if len(body) > expected:
        line_number = body[expected][0]
        raise ValueError(
            f"{where}, line {line_number}: more pair lines than the header "
            f"{' '.join(header)!r} promises ({expected})"
        )

    index: dict[tuple[str, int], int] = {}
    keys: list[tuple[str, int]] = []

    def image_of(name: str, number: int) -> int:
        key = (name, number)
        if key not in index:
            index[key] = len(keys)
            keys.append(key)
        return index[key]

    pairs_a, pairs_b, issame, folds = [], [], [], []
    for position, (line_number, fields) in enumerate(body):
        fold, within = divmod(position, 2 * per_class)
        matched = within < per_class
        try:
            if matched:
                if len(fields) != 3:
                    raise ValueError
                name_a, name_b = fields[0], fields[0]
                number_a, number_b = _positive_int(fields[1]), _positive_int(fields[2])
            else:
                if len(fields) != 4:
                    raise ValueError
                name_a, name_b = fields[0], fields[2]
                number_a, number_b = _positive_int(fields[1]), _positive_int(fields[3])
        except ValueError:
            kind = "matched 'name n1 n2'" if matched else "mismatched 'name1 n1 name2 n2'"
            raise ValueError(
                f"{where}, line {line_number}: expected a {kind} line (set {fold + 1}), got "
                f"{' '.join(fields)!r}"
            ) from None
        pairs_a.append(image_of(name_a, number_a))
        pairs_b.append(image_of(name_b, number_b))
        issame.append(matched)
        folds.append(fold)

    paths = [lfw_image_path(root, name, number, ext) for name, number in keys]
    if check_images:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{where}: {len(missing)} listed image(s) missing under {str(root)!r}, e.g. "
                f"{missing[:5]}"
            )
    names = [name for name, _ in keys]
    classes = sorted(set(names))
    class_index = {name: i for i, name in enumerate(classes)}
    return LFWPairs(
        source=pairs_path,
        root=root,
        paths=paths,
        names=names,
        labels=np.array([class_index[n] for n in names], np.int64),
        pairs_a=np.array(pairs_a, np.int64),
        pairs_b=np.array(pairs_b, np.int64),
        issame=np.array(issame, bool),
        folds=np.array(folds, np.int64),
    )


def write_lfw_pairs(
    path: str | Path,
    sets: Sequence[tuple[Sequence[MatchedPair], Sequence[MismatchedPair]]],
    single_number: bool = False,
) -> None:
    """Write ``pairs.txt`` in the official layout (tab separated).

    sets: one ``(matched, mismatched)`` per set; matched lines ``(name, n1, n2)``,
    mismatched ``(name1, n1, name2, n2)``; every set needs the same count N of both.
    ``single_number``: write the View 1 header (just N; requires exactly one set).
    """
    if not sets:
        raise ValueError(f"write_lfw_pairs({str(path)!r}): no sets")
    per_class = len(sets[0][0])
    for s, (matched, mismatched) in enumerate(sets):
        if len(matched) != per_class or len(mismatched) != per_class:
            raise ValueError(
                f"write_lfw_pairs({str(path)!r}): set {s} has {len(matched)} matched and "
                f"{len(mismatched)} mismatched pairs; every set needs {per_class} of each"
            )
    if single_number and len(sets) != 1:
        raise ValueError(f"write_lfw_pairs({str(path)!r}): single_number needs exactly one set")
    lines = [str(per_class) if single_number else f"{len(sets)}\t{per_class}"]
    for matched, mismatched in sets:
        lines += [f"{name}\t{int(a)}\t{int(b)}" for name, a, b in matched]
        lines += [f"{na}\t{int(a)}\t{nb}\t{int(b)}" for na, a, nb, b in mismatched]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
