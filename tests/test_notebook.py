"""The quick-start notebook executes headless, shows its figures, and is committed stripped."""

from __future__ import annotations

import json
import sys

import nbformat
from nbclient import NotebookClient

NOTEBOOK = "notebooks/quickstart.ipynb"


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
    assert len(images) >= 3  # aligned faces, warp grid, α
    metrics = [o for o in outputs if o.output_type == "execute_result"]
    assert any("val/rank1" in o["data"]["text/plain"] for o in metrics)
