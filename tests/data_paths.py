"""Where the tests' real photographs live.

- ``tests/assets/``: a few small real files committed with the repository (see its README for
  credits and licences). The default suite reads real data only from here.
- ``../shared/data`` (beside the repository): the large shared sets (all of HELEN's 330 test
  faces, all of AT&T, LFW). Tests that need them request the ``shared_data`` fixture and are
  skipped where the folder is absent (a fresh clone) or when ``BALANCED_ALIGN_NO_SHARED=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "tests" / "assets"
#: the 8 alphabetically first HELEN test faces with their 68-point (one_based) ``.pts``
ASSET_HELEN = ASSETS / "helen"
#: AT&T / ORL identities s1 … s12, 10 grey 92×112 ``.pgm`` images each
ASSET_ATT = ASSETS / "att_faces"

#: the folder beside the repository that only some machines have (CI does)
SHARED_ROOT = REPO_ROOT.parent / "shared"
SHARED_DATA = SHARED_ROOT / "data"

#: set to 1 to behave as a fresh clone: tests needing ``../shared/data`` skip
NO_SHARED_ENV = "BALANCED_ALIGN_NO_SHARED"
#: set to 1 (e.g. in CI) to make a missing ``../shared/data`` an error instead of a skip
REQUIRE_SHARED_ENV = "BALANCED_ALIGN_REQUIRE_SHARED"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def shared_data_missing() -> str | None:
    """Why the large shared sets cannot be used here, or None when they can."""
    if _flag(NO_SHARED_ENV):
        return f"{NO_SHARED_ENV} is set: behaving as a fresh clone without ../shared/data"
    if not SHARED_DATA.is_dir():
        return (
            f"needs the large shared face sets at {SHARED_DATA} (the project's ../shared/data: "
            "HELEN with 300-W landmarks, AT&T/ORL faces, LFW; see tests/assets/README.md); "
            "absent in a fresh clone, present in CI"
        )
    return None


def shared_data_required() -> bool:
    return _flag(REQUIRE_SHARED_ENV)
