"""Errors in what the user gave (a config value, a file), named by their config key.

Plain Python, importable from every layer; :mod:`balanced_align.input_errors` turns them into
one-line failures of a job.
"""

from __future__ import annotations


class InputError(ValueError):
    """A config value or input file that cannot be used; the message names the key
    (``loss.sample_rate``) or the file (and its line)."""


def naming(error: Exception, key: str) -> Exception:
    """``error`` of reading the file(s) given by config ``key``, its message prefixed by the
    key; a plain ValueError (a reader's "file, line: what is wrong") becomes an
    :class:`InputError`, other types are kept."""
    message = f"{key}: {error}"
    if type(error) is ValueError:
        return InputError(message)
    if type(error) in (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return type(error)(message)
    return error
