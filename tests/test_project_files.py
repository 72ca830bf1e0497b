"""The files a new user meets first: the set-up lines, CI, licence, citation, version."""

from __future__ import annotations

import re

import yaml

import balanced_align


def _pyproject(repo_root) -> dict:
    """``project.version`` and ``project.license`` (tomllib needs Python 3.11)."""
    text = (repo_root / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(version|license) = "([^"]+)"$', project, flags=re.MULTILINE))


def _setup_lines(readme: str) -> dict[str, str]:
    """The README's quick-start commands: the first line of the bash block after each lead-in."""
    lines = {}
    for name, lead in (
        ("train", "Set up and run the main job"),
        ("tests", "Set up and run the tests"),
    ):
        block = re.search(re.escape(lead) + r".*?```bash\n(.*?)\n```", readme, flags=re.DOTALL)
        assert block, f"README: no bash block after {lead!r}"
        lines[name] = block.group(1).strip()
    return lines


def test_ci_runs_exactly_the_readme_test_line(repo_root):
    line = _setup_lines((repo_root / "README.md").read_text())["tests"]
    script = (repo_root / ".ci" / "run").read_text().splitlines()
    commands = [s for s in script if s.strip() and not s.startswith(("#", "set ", "cd "))]
    assert commands == [line]


def test_setup_lines_install_nothing_into_the_system_python(repo_root):
    """PEP 668: a distribution's Python refuses ``pip install`` outside a virtual environment;
    every install of the set-up lines goes into the ``.nox-venv`` they create first."""
    for name, line in _setup_lines((repo_root / "README.md").read_text()).items():
        steps = [step.strip() for step in line.split("&&")]
        assert steps[0] == "python3 -m venv .nox-venv", name
        assert all("pip" not in step or step.startswith(".nox-venv/bin/") for step in steps)
        assert steps[-1].startswith(".nox-venv/bin/nox -s ")
    assert ".nox-venv/" in (repo_root / ".gitignore").read_text().splitlines()


def test_license_is_the_mit_licence_pyproject_declares(repo_root):
    assert _pyproject(repo_root)["license"] == "MIT"
    text = (repo_root / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c)" in text and "The balanced-align authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_citation_names_the_paper_and_this_version(repo_root):
    cff = yaml.safe_load((repo_root / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == _pyproject(repo_root)["version"]
    assert cff["license"] == _pyproject(repo_root)["license"]
    paper = cff["preferred-citation"]
    assert paper["title"] == "Balanced Alignment for Face Recognition: A Joint Learning Approach"
    assert [a["family-names"] for a in paper["authors"]] == ["Wei", "Lu", "Wei"]


def test_version_comes_from_the_package_metadata_and_is_in_the_changelog(repo_root):
    version = _pyproject(repo_root)["version"]
    assert balanced_align.__version__ == version
    changelog = (repo_root / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert headings[0] == "Unreleased" and version in headings
    assert "vX.Y.Z" in changelog  # the tag scheme
