"""Append-only CSV files that survive being killed: the landmark table and the failures file.

A run appends one complete line per image with a single write and a flush, so a kill leaves
at most one half-written last line. :class:`AppendOnlyCSV` opens an existing file, drops
such a line (that image is simply done again), checks the header, and lists the keys (first
column) already present, so a rerun can skip them. The file is locked while open: a second
writer is refused instead of interleaving lines.
"""

from __future__ import annotations

import csv
import fcntl
import io
from pathlib import Path


class AppendOnlyCSV:
    """One CSV with a fixed header, opened for appending rows keyed by their first field.

    Args:
        path: the file (created with ``header`` when absent or empty).
        header: expected column names; an existing file with another header is refused.

    Attributes:
        keys: first fields of the complete rows already in the file, in file order.
        rows: those rows (lists of strings).
        dropped_partial: whether a half-written last line was removed on opening.
    """

    def __init__(self, path: str | Path, header: list[str]) -> None:
        self.path = Path(path)
        self.header = list(header)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RuntimeError(
                f"{str(self.path)!r} is being written by another process; wait for it to end"
            ) from None
        self.dropped_partial = False
        self.rows: list[list[str]] = []
        self._file.seek(0)
        data = self._file.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            self._file.truncate(cut)
            data = data[:cut]
            self.dropped_partial = True
        if not data:
            self._append_line(self.header)
            return
        lines = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        if lines[0] != self.header:
            self.close()
            shown = ",".join(lines[0][:4]) + ("…" if len(lines[0]) > 4 else "")
            raise ValueError(
                f"{str(self.path)!r} has the header {shown!r} ({len(lines[0])} columns), not "
                f"this run's ({len(self.header)} columns: another --schema?); pass another --out"
            )
        for number, row in enumerate(lines[1:], start=2):
            if len(row) != len(self.header):
                self.close()
                raise ValueError(
                    f"{str(self.path)!r} line {number}: {len(row)} fields, expected "
                    f"{len(self.header)}"
                )
            self.rows.append(row)

    @property
    def keys(self) -> list[str]:
        return [row[0] for row in self.rows]

    def _append_line(self, fields: list[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        self._file.write(buffer.getvalue().encode("utf-8"))
        self._file.flush()

    def append(self, fields: list[str]) -> None:
        """Append one row (one write, flushed)."""
        if len(fields) != len(self.header):
            raise ValueError(
                f"{self.path}: a row of {len(fields)} fields; the header has {len(self.header)}"
            )
        self._append_line([str(f) for f in fields])
        self.rows.append([str(f) for f in fields])

    def keep_only(self, keys: set[str]) -> None:
        """Rewrite the file keeping the rows whose key is in ``keys`` (in place, locked)."""
        self.rows = [row for row in self.rows if row[0] in keys]
        self._file.seek(0)
        self._file.truncate(0)
        self._append_line(self.header)
        for row in self.rows:
            self._append_line(row)

    def close(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()

    def __enter__(self) -> AppendOnlyCSV:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
