"""Paths taken from files (landmark tables, lists, manifests) stay where they belong.

A key in a table is somebody else's text. Every command that reads or writes a file named by
such a key resolves it with :func:`resolve_inside`: the key must be a relative path that,
once joined to its root and resolved (symlinks and ``..`` included), still lies inside the
root. Absolute keys, ``..`` escapes and links out of the tree are refused with the key
named. :func:`refuse_overwriting_inputs` keeps an output path from ever being an input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A path from a file that would leave its root, or an output that is an input."""


def resolve_inside(root: str | Path, key: str, *, what: str = "path") -> Path:
    """``root / key`` resolved, refused unless it lies inside ``root`` (also resolved).

    Args:
        root: the folder the key is relative to.
        key: a relative path, ``/``-separated (as in the project's tables).
        what: how errors name the key's origin, e.g. ``"landmark table 'T.csv' row 7"``.

    Raises:
        UnsafePathError: an empty, absolute or drive-qualified key, or one that resolves
        outside ``root`` (through ``..`` or a symlink).
    """
    text = str(key)
    if not text.strip():
        raise UnsafePathError(f"{what}: empty path")
    if (
        PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or PureWindowsPath(text).drive
    ):
        raise UnsafePathError(f"{what}: {text!r} is absolute; paths must be relative to {root}")
    base = Path(root).resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{what}: {text!r} leaves {str(base)!r} (resolves to {target})")
    return target


def refuse_overwriting_inputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path], *, what: str = "output"
) -> None:
    """Raise :class:`UnsafePathError` if any output path is (or links to) an input file."""
    resolved_inputs = {os.path.realpath(p) for p in inputs}
    for out in outputs:
        if os.path.realpath(out) in resolved_inputs:
            raise UnsafePathError(f"{what} {str(out)!r} is an input file; refusing to overwrite it")


def check_output_root(out: str | Path, inputs_root: str | Path, *, what: str = "--out") -> Path:
    """``out`` resolved; refused if it is ``inputs_root`` or lies inside it (outputs would mix
    with, and could replace, the inputs)."""
    out_path, in_path = Path(out).resolve(), Path(inputs_root).resolve()
    if out_path == in_path or in_path in out_path.parents:
        raise UnsafePathError(
            f"{what} {str(out)!r} lies inside the input tree {str(inputs_root)!r}; "
            "choose a folder outside it"
        )
    return out_path
