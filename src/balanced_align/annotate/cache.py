"""Landmark tables made on demand, kept and reused (``benchmark.<name>.landmarks=annotate``).

:func:`annotate_cached` annotates the images a benchmark needs (and only those) into a table in
``cache_dir`` whose name records what it was made from: the benchmark, the backend, and a
digest of the image source (the resolved image root, or the ``.bin`` file), the schema and the
fallback box. A second run over the same images finds the table and annotates only the images
not in it yet (:func:`~balanced_align.annotate.run.annotate` is resumable); its failures file
``<table stem>.failures.csv`` sits beside it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from balanced_align.annotate.run import Summary, annotate, failures_path


@dataclass
class CachedTable:
    """The outcome of :func:`annotate_cached` for the requested ``keys``.

    table: the CSV (``path,x0,y0,…``, corner-origin pixels); summary: this call's work
    (``skipped``: keys found in the table already); fallback: requested keys whose points
    were placed in the fallback box (no face detected); failed: ``(key, reason)`` of
    requested keys without a row.
    """

    table: Path
    summary: Summary
    fallback: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def report(self) -> dict:
        """Plain counts for ``results.json``."""
        s = self.summary
        return {
            "table": str(self.table),
            "images": s.images,
            "reused": s.skipped,
            "annotated": s.written,
            "fallback": len(self.fallback),
            "failed": len(self.failed),
            "images_per_s": None if not (s.written + s.failed) else round(s.images_per_s, 2),
        }


def cached_table_path(
    cache_dir: str | Path, name: str, source: str, backend: str, schema: str, fallback
) -> Path:
    """``cache_dir/<name>-<backend>-<digest>.csv``: ``name`` with characters other than
    letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``; the digest (12 hex) of
    ``source``, ``schema`` and ``fallback``."""
    spec = json.dumps([str(source), schema, fallback if fallback is None else str(fallback)])
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Path(cache_dir) / f"{stem}-{backend}-{digest}.csv"


def annotate_cached(
    keys: Sequence[str],
    cache_dir: str | Path,
    name: str,
    *,
    root: str | Path | None = None,
    read: Callable[[str], np.ndarray] | None = None,
    source: str | None = None,
    backend: str = "dlib",
    schema: str = "ibug68",
    fallback: Sequence[float] | str | None = "auto",
    workers: int = 1,
    backend_options: dict | None = None,
    progress: bool = True,
) -> CachedTable:
    """Annotate ``keys`` (paths relative to ``root``, or names read by ``read``) into the
    cached table for (``name``, ``source``, backend, schema, fallback), reusing its rows.

    ``source`` identifies the images (default: the resolved ``root``); ``fallback`` as in
    :func:`~balanced_align.annotate.run.annotate` (None: images without a detected face
    get no row and are returned in ``failed``).
    """
    if source is None:
        if root is None:
            raise ValueError("annotate_cached: pass root, or read and source")
        source = str(Path(root).resolve())
    if isinstance(fallback, Sequence) and not isinstance(fallback, str):
        fallback = tuple(float(v) for v in fallback)
    table = cached_table_path(cache_dir, name, source, backend, schema, fallback)
    summary = annotate(
        root,
        table,
        backend=backend,
        schema=schema,
        workers=workers,
        fallback=fallback,
        backend_options=backend_options,
        keys=keys,
        progress=progress,
        read=read,
    )
    wanted = set(keys)
    fallback_keys, failed = [], []
    with open(failures_path(table), newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["path"] not in wanted:
                continue
            if row["outcome"] == "fallback":
                fallback_keys.append(row["path"])
            elif row["outcome"] == "failed":
                failed.append((row["path"], row["reason"]))
    return CachedTable(table, summary, sorted(set(fallback_keys)), failed)
