"""The package's import layers point one way (docs/design.md §6).

Every ``.py`` file under ``src/balanced_align`` is parsed with :mod:`ast`; every ``import`` and
``from … import`` in it counts, function-local and ``TYPE_CHECKING`` ones included. Each
module belongs to a unit (its first package below ``balanced_align``, or its own name for a
top-level module), and a unit may import only the units :data:`ALLOWED` lists for it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import balanced_align

PACKAGE = Path(balanced_align.__file__).parent
ROOT = "balanced_align"

#: leaf utilities: they import nothing of the project but each other, and any unit may import
#: them (the config schema is plain Python; config_store is its Hydra wiring)
UTILITIES = {
    "safe_paths",
    "run_result",
    "sweeps",
    "devices",
    "config_schema",
    "config_store",
    "config_tree",
}
_BELOW_MODULE = {"geometry", "core", "models", "losses", "data", "evaluation", "viz"}
#: the jobs and command-line tools: they may import anything, and nothing but jobs imports them
JOBS = {
    "training",
    "evaluating",
    "report",
    "annotate",
    "preprocess",
    "embed",
    "export",
    "compare",
    "inference",
    "checkpoints",
    "loggers",
    "dry_run",
    "input_errors",
}

#: unit -> the units it may import (besides itself and :data:`UTILITIES`)
ALLOWED: dict[str, set[str]] = {
    "geometry": set(),
    **{name: set() for name in UTILITIES},
    "core": {"geometry"},
    "models": {"geometry", "core"},
    "losses": {"geometry", "core", "models"},
    "data": {"geometry", "core"},
    "evaluation": {"geometry", "core", "data"},
    "viz": {"geometry", "core", "models", "losses", "data", "evaluation"},
    # the LightningModule, the callback that hands it what the data module provides, and the
    # training callbacks (last.ckpt at every epoch end, per-epoch seeding)
    "module": _BELOW_MODULE | {"data_hook"},
    "data_hook": _BELOW_MODULE,
    "callbacks": _BELOW_MODULE,
    # verification on .bin sets during training (Lightning wiring of evaluation)
    "bin_verification": _BELOW_MODULE,
    # what a run prints: validation / training lines, known noise silenced
    "watch": _BELOW_MODULE,
    "quiet": _BELOW_MODULE,
    **{
        job: _BELOW_MODULE | {"module", "data_hook", "callbacks", "watch", "quiet", ROOT} | JOBS
        for job in JOBS
    },
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(name: str) -> str:
    """``balanced_align.data.formats.lfw`` -> ``data``; the package itself -> ``balanced_align``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _is_submodule(dotted: str, package: Path) -> bool:
    path = package.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every import of the project in ``path``, at any depth."""
    name = module_name(path, package)
    parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parent.split(".")[: len(parent.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                full = f"{target}.{alias.name}"
                found.append((node.lineno, full if _is_submodule(full, package) else target))
    return sorted({(line, t) for line, t in found if t.split(".")[0] == ROOT})


def layer_violations(package: Path = PACKAGE) -> list[str]:
    errors = []
    for path in sorted(package.rglob("*.py")):
        source = unit_of(module_name(path, package))
        if source == ROOT:
            continue  # the package's own lazy exports: test_root_exports_are_lazy
        if source not in ALLOWED:
            errors.append(f"{path}: unit {source!r} has no layer; add it to ALLOWED")
            continue
        for line, target in imported_modules(path, package):
            unit = unit_of(target)
            if unit != source and unit not in ALLOWED[source] | UTILITIES:
                errors.append(f"{path}:{line}: {source} must not import {target}")
    return errors


def test_every_import_points_down():
    violations = layer_violations()
    assert not violations, "\n".join(violations)


def test_root_exports_are_lazy():
    """``import balanced_align.geometry`` runs ``balanced_align/__init__.py`` first, so that
    file may import the project only inside functions (its lazy exports), never at the top."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(str(n).startswith(ROOT) for n in names), ast.dump(node)


def test_no_lazy_import_workarounds_in_subpackages():
    """A module-level ``__getattr__`` (a lazy import) hides names from IDEs and type checkers;
    only the package root keeps one (for import weight, see its docstring)."""
    offenders = [
        str(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "__init__.py"
        and any(
            isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    ]
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("source", "line", "allowed"),
    [
        ("models/x.py", "from balanced_align.data.schema import IBUG68", False),
        ("models/x.py", "from ..core import schema", True),
        ("data/x.py", "def f():\n    from balanced_align.evaluation import anme", False),
        ("evaluation/x.py", "from balanced_align.data import formats", True),
        ("geometry/x.py", "import balanced_align.module", False),
        ("data/x.py", "from balanced_align import training", False),
        ("training.py", "from balanced_align.module import BalancedAlignModule", True),
    ],
)
def test_the_check_catches_what_it_should(tmp_path, source, line, allowed):
    """The checker itself, on a throw-away package tree (function-local imports too)."""
    root = tmp_path / ROOT
    for folder in ("models", "core", "data", "evaluation", "geometry"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    for name in ("__init__.py", "training.py", "module.py"):
        (root / name).write_text("")
    (root / "core" / "schema.py").write_text("")
    (root / source).write_text(line + "\n")
    assert (layer_violations(root) == []) is allowed


def test_only_the_faces_figure_of_the_report_loads_models():
    """``import balanced_align.report`` (tables, markdown, CLI) loads no model, checkpoint
    reader, data module or Lightning; ``balanced_align.report.faces`` does."""
    heavy = ("balanced_align.module", "balanced_align.models", "balanced_align.checkpoints")
    heavy += ("balanced_align.data.datamodule", "lightning")
    probe = (
        "import sys, {module}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning' or m in {heavy}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), *sys.path])}
    loaded = {}
    for module in ("balanced_align.report", "balanced_align.report.faces"):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(module=module)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        loaded[module] = done.stdout.strip()
    assert loaded["balanced_align.report"] == "[]"
    assert "balanced_align.module" in loaded["balanced_align.report.faces"]
