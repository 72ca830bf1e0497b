"""Find the runs' ``results.json`` files and read them as :class:`RunResult`; unreadable
files are skipped with a warning naming them."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from balanced_align.run_result import RunResult, RunResultError


def find_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``results.json`` under ``paths`` (directories searched recursively; files as is).

    Raises FileNotFoundError naming a path that does not exist, or all paths when no results
    are found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("report: no paths given")
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"report: {path} does not exist")
        candidates = [path] if path.is_file() else sorted(path.rglob("results.json"))
        for candidate in candidates:
            found.setdefault(candidate.resolve(), None)
    if not found:
        raise FileNotFoundError(f"report: no results.json under {', '.join(str(p) for p in paths)}")
    return list(found)


@dataclass
class SkippedRun:
    """A ``results.json`` the report could not read (e.g. truncated by a killed job)."""

    path: Path
    reason: str


def read_runs(paths) -> tuple[list[tuple[Path, RunResult]], list[SkippedRun]]:
    """(path, :class:`RunResult`) of every readable ``results.json`` under ``paths`` (see
    :func:`find_results`), and the unreadable ones, each with a warning naming it.

    Raises ValueError naming the skipped files when none is readable.
    """
    runs, skipped = [], []
    for path in find_results(paths):
        try:
            runs.append((path, RunResult.from_json(path)))
        except RunResultError as err:
            skipped.append(SkippedRun(path, str(err)))
            warnings.warn(f"report: skipping an unreadable run: {err}", stacklevel=2)
    if not runs:
        raise ValueError(
            "report: no readable results.json: " + "; ".join(s.reason for s in skipped)
        )
    return runs, skipped
