"""How long each chapter takes from top to bottom, as after a fresh clone: a fresh kernel and an empty zoo.

Each chapter (``notebooks/NN-*.ipynb`` but the index ``00-index``) runs in a kernel of its own of this
environment, from ``notebooks/`` as in JupyterLab, with ``$VAEKIT_ZOO`` set to a new empty folder, so
every model it uses is trained during the run. The time counts from the kernel's start to the last
cell's end; the slowest cell is read from the execution timestamps nbclient records in each cell.
The notebooks on disk are left as they are. The goal (``CHAPTERS.md``): at most 90 s per chapter on
the 2-core CPU, 180 s for the segmentation chapters.

Run: ``flock /tmp/vaekit-bench.lock python benchmarks/chapter_times.py [NOTEBOOK ...]`` (default: every
chapter). Prints each chapter's seconds and its slowest cell; the last line is one JSON object,
``{"NN-slug": seconds, ...}`` (``null`` for a chapter that failed, and the exit status is then 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def chapters() -> list[pathlib.Path]:
    return sorted(path for path in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb") if path.name != "00-index.ipynb")


def cell_seconds(cell: nbformat.NotebookNode) -> float:
    """From the cell's input reaching the kernel to the kernel's reply, as nbclient records them."""
    execution = cell.metadata.get("execution", {})
    start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()


def run_chapter(path: pathlib.Path) -> tuple[float, int, float, str]:
    """Seconds for the whole chapter, and the slowest cell's number (from 1, all cells), seconds and first line."""
    notebook = nbformat.read(path, as_version=4)
    previous = os.environ.get("VAEKIT_ZOO")
    with tempfile.TemporaryDirectory(prefix="vaekit-empty-zoo-") as zoo:
        os.environ["VAEKIT_ZOO"] = zoo  # the kernel inherits this process's environment
        try:
            client = NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            tic = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - tic
        finally:
            if previous is None:
                del os.environ["VAEKIT_ZOO"]
            else:
                os.environ["VAEKIT_ZOO"] = previous
    timed = [(cell_seconds(cell), number) for number, cell in enumerate(notebook.cells, 1) if cell.cell_type == "code"]
    slowest, number = max(timed, default=(0.0, 0))
    first_line = notebook.cells[number - 1].source.strip().splitlines()[0] if number else ""
    return seconds, number, slowest, first_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path, help="chapters to time (default: every chapter)")
    paths = parser.parse_args().notebooks or chapters()
    if not paths:
        print(f"chapter_times: no chapters in {NOTEBOOKS}", file=sys.stderr)
        return 1
    times: dict[str, float | None] = {}
    for path in paths:
        try:
            seconds, number, slowest, first_line = run_chapter(path)
        except CellExecutionError as error:
            times[path.stem] = None
            print(f"{path.stem}: FAILED\n{str(error).strip().splitlines()[-1]}", flush=True)
            continue
        times[path.stem] = round(seconds, 1)
        print(f"{path.stem}: {seconds:.1f} s; slowest cell {number}: {slowest:.1f} s  `{first_line[:70]}`", flush=True)
    print(json.dumps(times))
    return 0 if all(seconds is not None for seconds in times.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
