"""Execute a notebook and write a rendered copy: markdown with its figures as PNG files.

    python tools/render_notebook.py                      # notebooks/quickstart.ipynb -> docs/
    nox -s notebook                                      # the same, in the project environment

Readers of ``docs/quickstart.md`` see the outputs without running anything. The copy starts
with the SHA-256 of the notebook's cells (:func:`source_digest`), which
``tests/test_notebook.py`` compares with the notebook: edit a cell, render again. The notebook
runs in a temporary folder (its runs and report stay there); stderr output (warnings, Lightning's
info lines) is left out of the copy.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
#: the first line of a rendered copy; {digest} is :func:`source_digest`
HEADER = "<!-- rendered from {name} by tools/render_notebook.py; cells sha256 {digest} -->"


def source_digest(nb) -> str:
    """SHA-256 over the cells' types and sources (outputs and metadata do not count)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        digest.update(f"{cell.cell_type}\0{cell.source}\0".encode())
    return digest.hexdigest()


def _fenced(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```"


def render_markdown(nb, name: str, files_dir: str) -> tuple[str, dict[str, bytes]]:
    """The markdown of an executed notebook and its images ({file name: PNG bytes}).

    Markdown cells are copied, code cells fenced as python, text outputs fenced as text,
    PNG outputs written as ``files_dir/cell<N>_<M>.png`` and linked. An error output raises.
    """
    parts = [HEADER.format(name=name, digest=source_digest(nb))]
    images = {}
    for number, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source.strip())
            continue
        if cell.cell_type != "code":
            continue
        parts.append(_fenced(cell.source, "python"))
        for index, output in enumerate(cell.get("outputs", [])):
            kind = output.output_type
            if kind == "error":
                raise RuntimeError(f"cell {number} failed: {output.ename}: {output.evalue}")
            if kind == "stream":
                if output.name == "stdout" and output.text.strip():
                    parts.append(_fenced(output.text, "text"))
                continue
            data = output.get("data", {})
            if "image/png" in data:
                file = f"cell{number}_{index}.png"
                images[file] = base64.b64decode(data["image/png"])
                parts.append(f"![output of cell {number}]({files_dir}/{file})")
            elif "text/markdown" in data:
                parts.append(data["text/markdown"].strip())
            elif "text/plain" in data:
                parts.append(_fenced(data["text/plain"], "text"))
    return "\n\n".join(parts) + "\n", images


def execute(path: Path, workdir: Path, timeout: int = 600):
    """The notebook at ``path``, executed in ``workdir`` with this interpreter's kernel."""
    import json
    import os

    from nbclient import NotebookClient

    # a kernel spec for this interpreter, so the notebook runs in the project's environment
    spec = workdir / ".jupyter" / "kernels" / "balanced-align"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "balanced-align", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    before = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(spec.parents[1]), before]))
    try:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="balanced-align",
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
    finally:
        if before is None:
            os.environ.pop("JUPYTER_PATH")
        else:
            os.environ["JUPYTER_PATH"] = before
    return nb


def write_rendered(nb, name: str, out: Path) -> list[Path]:
    """Write ``out`` (markdown) and ``<out stem>_files/`` (its PNGs, replaced); their paths."""
    files_dir = out.with_name(f"{out.stem}_files")
    text, images = render_markdown(nb, name, files_dir.name)
    if files_dir.exists():
        shutil.rmtree(files_dir)
    files_dir.mkdir(parents=True)
    written = [out]
    for file, data in images.items():
        (files_dir / file).write_bytes(data)
        written.append(files_dir / file)
    out.write_text(text, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=NOTEBOOK)
    parser.add_argument("--out", type=Path, default=None, help="default: docs/<notebook stem>.md")
    args = parser.parse_args(argv)
    notebook = args.notebook.resolve()
    out = args.out or ROOT / "docs" / f"{notebook.stem}.md"
    with tempfile.TemporaryDirectory() as workdir:
        nb = execute(notebook, Path(workdir))
    written = write_rendered(nb, notebook.relative_to(ROOT).as_posix(), out)
    print(f"wrote {out} and {len(written) - 1} figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
