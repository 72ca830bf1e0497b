"""The quick-start notebook executes headless, shows its figures, is committed stripped, and
its rendered copy in docs/ is up to date."""

from __future__ import annotations

import base64
import json
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tools.render_notebook import render_markdown, source_digest

NOTEBOOK = "notebooks/quickstart.ipynb"
RENDERED = "docs/quickstart.md"


def test_notebook_is_committed_without_outputs(repo_root):
    nb = nbformat.read(repo_root / NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_executes(repo_root, tmp_path, monkeypatch):
    # a kernel spec for this interpreter, so the notebook runs in the project's environment
    spec = tmp_path / "jupyter" / "kernels" / "balanced-align"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "balanced-align", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the test machine's cores are shared
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(repo_root / NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=240,
        kernel_name="balanced-align",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # aligned faces, warp grid, α; the train.py checkpoint's faces; the report's ANME vs rank-1
    assert len(images) >= 5
    metrics = [o["data"]["text/plain"] for o in outputs if o.output_type == "execute_result"]
    assert any("val/rank1" in text for text in metrics)
    # the report's runs table: one row per λ of the train.py sweep
    (table,) = [text for text in metrics if "anme" in text and "lambda" in text]
    assert re.search(r"fmap\s+0\.0\s+val", table) and re.search(r"fmap\s+3\.0\s+val", table)


def test_rendered_copy_is_up_to_date_with_the_notebook(repo_root):
    """docs/quickstart.md was rendered from the notebook's current cells (re-render with
    ``nox -s notebook``), in order, and every figure it links is there."""
    nb = nbformat.read(repo_root / NOTEBOOK, as_version=4)
    rendered = (repo_root / RENDERED).read_text()
    header = rendered.splitlines()[0]
    assert f"cells sha256 {source_digest(nb)}" in header, "re-render it: nox -s notebook"
    position = 0
    for cell in nb.cells:
        text = cell.source.strip()
        found = rendered.find(text, position)
        assert found >= 0, f"not in {RENDERED} (in order): {text[:80]!r}"
        position = found + len(text)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", rendered)
    assert len(figures) >= 5
    for figure in figures:
        assert (repo_root / "docs" / figure).stat().st_size > 1000, figure


def _executed_cell(source, outputs):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def test_render_markdown_keeps_sources_text_and_figures():
    png = b"\x89PNG\r\n\x1a\nfake"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title\n\nprose"),
        _executed_cell(
            "print(1)\nfigure",
            [
                {"output_type": "stream", "name": "stdout", "text": "1\n"},
                {"output_type": "stream", "name": "stderr", "text": "a warning\n"},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": base64.b64encode(png).decode(), "text/plain": "<Fig>"},
                },
                {
                    "output_type": "execute_result",
                    "execution_count": 1,
                    "metadata": {},
                    "data": {"text/plain": "{'val/rank1': 0.5}"},
                },
            ],
        ),
    ]
    text, images = render_markdown(nb, "nb.ipynb", "nb_files")
    assert images == {"cell1_2.png": png}
    assert text.endswith("```\n")
    assert text.rstrip("\n").split("\n\n") == [
        f"<!-- rendered from nb.ipynb by tools/render_notebook.py; cells sha256 "
        f"{source_digest(nb)} -->",
        "# Title",
        "prose",
        "```python\nprint(1)\nfigure\n```",
        "```text\n1\n```",
        "![output of cell 1](nb_files/cell1_2.png)",
        "```text\n{'val/rank1': 0.5}\n```",
    ]
    # the digest follows the sources, not the outputs
    digest = source_digest(nb)
    nb.cells[1].outputs = []
    assert source_digest(nb) == digest
    nb.cells[1].source += "  # edited"
    assert source_digest(nb) != digest
    nb.cells[1].outputs = [
        nbformat.from_dict(
            {"output_type": "error", "ename": "E", "evalue": "boom", "traceback": []}
        )
    ]
    with pytest.raises(RuntimeError, match="cell 1 failed: E: boom"):
        render_markdown(nb, "nb.ipynb", "nb_files")
