"""Shared test settings: offline W&B, few threads, the repo's paths, the shared-data gate.

Real photographs come from ``tests/assets`` (committed, small). Tests that need the large sets
in ``../shared/data`` request the ``shared_data`` fixture: they skip where it is absent (a fresh
clone, or ``BALANCED_ALIGN_NO_SHARED=1``) and run in CI, which has it. Any other test that
reads under ``../shared`` fails (see ``tests/outside_reads.py``).
"""

import os
from pathlib import Path

import pytest
import torch

from tests.data_paths import (
    REPO_ROOT,
    SHARED_DATA,
    SHARED_ROOT,
    shared_data_missing,
    shared_data_required,
)
from tests.outside_reads import OutsideReadGuard

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)

#: watches reads under ../shared for the whole session (one per process, xdist workers too)
GUARD = OutsideReadGuard([SHARED_ROOT]).install()
SHARED_FIXTURE = "shared_data"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "shared_data: needs ../shared/data (added to tests using that fixture)"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SHARED_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


def pytest_collection_finish(session):
    seen = GUARD.take()
    if seen:
        raise pytest.UsageError(
            "collecting the tests read the shared folder beside the repository, which a fresh "
            "clone does not have; use tests/assets or the shared_data fixture:\n  "
            + "\n  ".join(seen[:20])
        )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture of ``item`` runs: forget earlier reads, allow them if asked for."""
    GUARD.take()
    GUARD.active = SHARED_FIXTURE not in getattr(item, "fixturenames", ())


@pytest.fixture(autouse=True)
def _no_reads_outside_the_repository(request):
    yield
    seen = GUARD.take()
    GUARD.active = True
    if seen:
        pytest.fail(
            f"{request.node.nodeid} read the shared folder beside the repository without the "
            "shared_data fixture (a fresh clone has no ../shared; copy a few small files to "
            "tests/assets instead):\n  " + "\n  ".join(seen[:20]),
            pytrace=False,
        )


@pytest.fixture
def outside_read_guard() -> OutsideReadGuard:
    """The session's guard (for tests of the guard itself)."""
    return GUARD


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; skips (with where the data comes from) when it is absent."""
    reason = shared_data_missing()
    if reason is not None:
        if shared_data_required():
            pytest.fail(f"BALANCED_ALIGN_REQUIRE_SHARED is set but: {reason}", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA
