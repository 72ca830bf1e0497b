"""Without the ``annotate`` extra, the error says what to install (no dlib needed here)."""

import sys

import pytest

from balanced_align.annotate import MissingBackendError, make_backend
from balanced_align.annotate.table import AppendOnlyCSV


def test_missing_dlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib raises ImportError
    with pytest.raises(MissingBackendError, match=r"balanced-align\[annotate\]"):
        make_backend("dlib")


def test_unknown_backend():
    with pytest.raises(ValueError, match="--backend"):
        make_backend("nope")


def test_a_second_writer_is_refused(tmp_path):
    with AppendOnlyCSV(tmp_path / "t.csv", ["path", "x0"]) as table:
        table.append(["a.jpg", "1.0"])
        with pytest.raises(RuntimeError, match="another process"):
            AppendOnlyCSV(tmp_path / "t.csv", ["path", "x0"])
    with AppendOnlyCSV(tmp_path / "t.csv", ["path", "x0"]) as table:
        assert table.keys == ["a.jpg"]
