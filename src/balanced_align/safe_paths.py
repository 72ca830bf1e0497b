"""Paths taken from files (landmark tables, lists, manifests) stay where they belong.

A key in a table is somebody else's text. Every command that reads or writes a file named by
such a key resolves it with :func:`resolve_inside`: the key must be a relative path that,
once joined to its root and resolved (symlinks and ``..`` included), still lies inside the
root. Absolute keys, ``..`` escapes and links out of the tree are refused with the key
named. Readers that only match keys against files they found themselves (the data sources)
use the lexical :func:`check_relative_key` and follow symlinks inside their tree (the tree's
owner put them there); writers resolve. :func:`refuse_overwriting_inputs` keeps an output
path from ever being an input; :func:`check_output_root` and :func:`paths_overlap` keep
output trees and input trees apart.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A path from a file that would leave its root, or an output that is an input."""


def check_relative_key(key: str, *, what: str = "path", root: str | Path | None = None) -> str:
    """``key`` as text, refused unless it is a relative path that stays below its root on
    paper: not empty, not absolute or drive-qualified, and no ``..`` climbing above the
    start once normalised. No file system access (symlinks are :func:`resolve_inside`'s).

    Raises:
        UnsafePathError: naming ``what`` and the key.
    """
    text = str(key)
    where = "" if root is None else f" {str(root)!r}"
    if not text.strip():
        raise UnsafePathError(f"{what}: empty path")
    if (
        PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or PureWindowsPath(text).drive
    ):
        raise UnsafePathError(
            f"{what}: {text!r} is absolute; paths must be relative to their root{where}"
        )
    if posixpath.normpath(text.replace("\\", "/")).split("/")[0] == "..":
        raise UnsafePathError(f"{what}: {text!r} climbs out of its root{where} with '..'")
    return text


def paths_overlap(first: str | Path, second: str | Path) -> bool:
    """True if the two paths, resolved, are equal or one lies inside the other."""
    a, b = Path(first).resolve(), Path(second).resolve()
    return a == b or a in b.parents or b in a.parents


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
    text = check_relative_key(key, what=what, root=root)
    base = Path(root).resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{what}: {text!r} leaves {str(base)!r} (resolves to {target})")
    return target


def refuse_overwriting_inputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path], *, what: str = "output"
) -> None:
    """Raise :class:`UnsafePathError` if any output path is (or links to) an input file."""
    for out in outputs_that_are_inputs(outputs, inputs):
        raise UnsafePathError(f"{what} {str(out)!r} is an input file; refusing to overwrite it")


def outputs_that_are_inputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path]
) -> list[str | Path]:
    """The outputs that are (or link to) one of the inputs, in order (one pass each)."""
    resolved_inputs = {os.path.realpath(p) for p in inputs}
    return [out for out in outputs if os.path.realpath(out) in resolved_inputs]


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
