"""Developer sessions. Every session shares one project environment, ``.venv``.

    nox -s train    # set up .venv (first time only) and run the default training job
    nox -s tests    # set up .venv (first time only) and run the test suite
    nox -s lint     # ruff check + ruff format --check
    nox -s bench    # the side-by-side benchmarks
    nox -s notebook # execute notebooks/quickstart.ipynb, write its rendered copy docs/quickstart.md

The environment is built once and reused: torch is installed first from the constraints file
(the CPU build pinned in ``constraints/cpu.txt``; set ``BALANCED_ALIGN_CONSTRAINTS`` to another
file, or to ``none`` to keep a CUDA torch you installed yourself), then the project with its dev
extras. It is rebuilt only when ``pyproject.toml`` or the constraints file change.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if sys.platform == "win32" else "bin")
PYTHON = str(BIN / "python")
STAMP = VENV / ".balanced-align-stamp"

nox.options.sessions = ["lint", "tests"]


def _constraints() -> Path | None:
    value = os.environ.get("BALANCED_ALIGN_CONSTRAINTS", str(ROOT / "constraints" / "cpu.txt"))
    return None if value.lower() == "none" else Path(value)


def _fingerprint(constraints: Path | None) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    if constraints is not None:
        digest.update(constraints.read_bytes())
    return digest.hexdigest()


def _ensure_env(session: nox.Session) -> None:
    """Create or update the shared ``.venv``: torch first, then the project (editable)."""
    constraints = _constraints()
    fingerprint = _fingerprint(constraints)
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    if not BIN.exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    pip = [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pin = ["-c", str(constraints)] if constraints is not None else []
    # torch before anything that depends on it, so its pinned (CPU) build is the one installed.
    session.run(*pip, *pin, "torch", external=True)
    session.run(*pip, *pin, "-e", f"{ROOT}[dev]", external=True)
    STAMP.write_text(fingerprint)


def _env() -> dict[str, str]:
    return {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "PYTHONUNBUFFERED": "1"}


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the whole test suite (pass extra pytest arguments after ``--``)."""
    _ensure_env(session)
    args = session.posargs or ["-n", "2", "--durations", "15"]
    session.run(PYTHON, "-m", "pytest", *args, external=True, env=_env())


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    _ensure_env(session)
    session.run(PYTHON, "-m", "ruff", "check", ".", external=True)
    session.run(PYTHON, "-m", "ruff", "format", "--check", ".", external=True)


@nox.session(venv_backend="none")
def train(session: nox.Session) -> None:
    """The main job: ``python train.py`` with any Hydra overrides after ``--``."""
    _ensure_env(session)
    session.run(PYTHON, str(ROOT / "train.py"), *session.posargs, external=True, env=_env())


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks (TPS warp, SynthFaces, identification)."""
    _ensure_env(session)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run(PYTHON, str(script), external=True, env=_env())


@nox.session(venv_backend="none")
def notebook(session: nox.Session) -> None:
    """Execute the quick-start notebook and write its rendered copy, ``docs/quickstart.md``."""
    _ensure_env(session)
    env = {**_env(), "MPLBACKEND": "Agg"}
    session.run(PYTHON, str(ROOT / "tools" / "render_notebook.py"), external=True, env=env)
