"""Errors in what the user gave (a config value, a file): one line, not a traceback.

A single ``python train.py …`` run (Hydra's RUN mode) that fails on one of
:data:`INPUT_ERRORS` logs ``the job failed: <message>`` (the message names the config key or
the file) and exits with status 1; Hydra's traceback would only repeat the message below the
frames that checked it. ``HYDRA_FULL_ERROR=1`` keeps the traceback. In a multirun the error
propagates as before: Hydra finishes the other jobs of the sweep and then reports it.
"""

from __future__ import annotations

import logging
import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from balanced_align.core.errors import InputError, naming
from balanced_align.data.formats.insightface_bin import UnsafePickleError
from balanced_align.data.shards.format import ShardError
from balanced_align.data.validation import BadSampleError, DataConfigurationError
from balanced_align.dry_run import DoesNotFitError
from balanced_align.models.safe_load import UnsafeCheckpointError

#: errors whose message says all the user needs: the config key or the file and its line
INPUT_ERRORS = (
    InputError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    UnsafeCheckpointError,
    UnsafePickleError,
    BadSampleError,
    DataConfigurationError,
    ShardError,
    DoesNotFitError,
)


def single_run() -> bool:
    """Whether this is a plain ``python train.py …`` (not ``-m``) under Hydra."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def report(error: BaseException, log: logging.Logger) -> None:
    """Log a failed job: one line for an input error, else the traceback; then, for an
    input error in a single run, exit with status 1 (no traceback; see the module doc)."""
    if not isinstance(error, INPUT_ERRORS) or os.environ.get("HYDRA_FULL_ERROR") == "1":
        log.exception("the job failed")
        return
    log.error("the job failed: %s", error)
    if single_run():
        raise SystemExit(1) from None


__all__ = ["INPUT_ERRORS", "InputError", "naming", "report", "single_run"]
