"""Execute the lesson's notebooks and save them with their outputs, as people read them on the web.

    .venv/bin/python notebooks/run_all.py                          # all of them (or: make notebooks)
    .venv/bin/python notebooks/run_all.py 2-cnn-tutorial.ipynb     # one

Each notebook runs from top to bottom in a new kernel of this Python (ipykernel's own kernel for sys.executable, so a
'python3' kernel of another Python that Jupyter knows of elsewhere is never picked), in a temporary working folder
beside notebooks/ (removed afterwards): its runs/ starts empty, so every execution trains for real, and the shared
data is where the notebooks look for it by default, ../../shared/data (unless $CONVSCOPE_SHARED_DATA says where).
A failing cell stops it, and nothing is saved.

The saved copy keeps text and pictures. Widget views are dropped from it, and with them the "0%" text a saved
widget otherwise shows where no Jupyter runs it (GitHub, nbconvert): each progress bar keeps its text, which
convscope.api.progress sets to the bar's last state, numbers included. tests/test_notebooks.py runs the same
`execute`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def notebooks() -> list[Path]:
    """The lesson's notebooks, in their order (1-…, 2-…)."""
    return sorted(HERE.glob("[0-9]-*.ipynb"))


def kernel() -> KernelManager:
    """A kernel of this Python: no kernelspec folder is read, only ipykernel's built-in spec (sys.executable)."""
    return KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))


def execute(path: Path, workdir: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """`path` executed in `workdir` (its cells' working folder), outputs in place; CellExecutionError on a failure."""
    nb = nbformat.read(path, as_version=4)
    km = kernel()
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,  # seconds, per cell
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,  # no timestamps in the saved file: a new execution changes only what it shows
        store_widget_state=False,
    )
    try:
        client.execute()
    finally:
        if km.has_kernel:  # a kernel manager given to nbclient is the giver's to shut down
            km.shutdown_kernel(now=True)
    return nb


def static(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as a page shows it: widget views out (their text stays), empty outputs out."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            output.get("data", {}).pop(WIDGET_VIEW, None)
        cell.outputs = [o for o in cell.outputs if "data" not in o or any(str(v).strip() for v in o.data.values())]
    nb.metadata.pop("widgets", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: every numbered notebook here)")
    args = parser.parse_args(argv)
    paths = [HERE / name for name in args.names] if args.names else notebooks()
    for path in paths:
        start = time.perf_counter()
        # Beside notebooks/, so that the notebooks' default ../../shared/data is found and shown as people see it
        with tempfile.TemporaryDirectory(prefix=".notebook-", dir=HERE.parent) as workdir:
            nb = static(execute(path, Path(workdir)))
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s, saved", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
