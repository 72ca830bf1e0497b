"""Catch tests that read the shared folder beside the repository without asking for it.

A fresh clone has no ``../shared``; the default suite must not depend on it. An audit hook
(``sys.addaudithook``) sees every file open and directory listing made from Python and records
those under the shared folder; the conftest fails the test that made them unless it requested
the ``shared_data`` fixture. Files the library opens from C (OpenCV's ``imread``) are not seen,
but every reader here lists a folder or opens a ``.pts`` / table first, which is.

Only the shared folder is policed: libraries, caches and temporary files live elsewhere and
differ between machines, so a wider rule would fail for reasons unrelated to this project.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: audit events that read a file or list a folder (their first argument is the path)
READ_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "glob.glob", "os.chdir"})


class OutsideReadGuard:
    """Record reads of any path under ``forbidden`` roots while ``active``."""

    def __init__(self, forbidden: list[Path]):
        roots = set()
        for root in forbidden:
            roots.add(os.path.abspath(root))
            roots.add(os.path.realpath(root))
        self.roots = tuple(sorted(roots))
        self.active = True
        self.seen: list[str] = []

    def __call__(self, event: str, args: tuple) -> None:
        if event not in READ_EVENTS or not self.active or not args:
            return
        path = args[0]
        if isinstance(path, int) or path is None:  # a file descriptor, or "list the cwd"
            return
        try:
            text = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return
        if any(text == root or text.startswith(root + os.sep) for root in self.roots):
            self.seen.append(f"{event} {text}")

    def take(self) -> list[str]:
        """The reads recorded since the last call, then forget them."""
        seen, self.seen = self.seen, []
        return seen

    def install(self) -> OutsideReadGuard:
        sys.addaudithook(self)
        return self
