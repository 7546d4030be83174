"""Student copies (``make student``): solutions blanked by nbgrader's rules, and every copy runs to the end.

Each chapter (``notebooks/NN-*.ipynb`` but the index, picked up as chapters are added) and the small
example chapter ``tests/data/example-chapter.ipynb`` is copied as ``make student`` copies it, into a
temporary folder, and run there in a fresh kernel of this environment (the suite's temporary zoo,
so models the chapters trained are reused): it must run without an error, and every checker must say
"not yet implemented".
"""

import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

from vaekit import exercises

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "data" / "example-chapter.ipynb"
CHAPTERS = sorted(path for path in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb") if path.name != "00-index.ipynb")
CHECKER_CALL = re.compile(r"\bcheck_\w+\(")
SOLUTION = re.compile(r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION$", re.MULTILINE | re.DOTALL)


def run(notebook: nbformat.NotebookNode, folder: pathlib.Path) -> nbformat.NotebookNode:
    """Executes every cell in a fresh kernel whose working folder is ``folder``; an error in any cell raises."""
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()
    return notebook


def checker_feedback(notebook: nbformat.NotebookNode) -> list[str]:
    """The text each checker cell shows."""
    shown = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and CHECKER_CALL.search(cell.source):
            shown.append("".join(output.get("data", {}).get("text/html", "") + output.get("text", "")
                                 for output in cell.outputs))
    return shown


def test_the_student_copy_replaces_each_solution_by_nbgraders_stub_and_clears_every_output(tmp_path):
    chapter = nbformat.read(EXAMPLE, as_version=4)
    copy = nbformat.read(exercises.student_copy(EXAMPLE, tmp_path), as_version=4)

    assert [c.cell_type for c in copy.cells] == [c.cell_type for c in chapter.cells]
    for original, student in zip(chapter.cells, copy.cells):
        # nbgrader's rule: the lines from BEGIN to END SOLUTION become its stub, indented like BEGIN.
        expected = SOLUTION.sub(r"\1# YOUR CODE HERE\n\1raise NotImplementedError()", original.source)
        assert student.source == expected
        if student.cell_type == "code":
            assert student.outputs == [] and student.execution_count is None
    kl_cell = next(c for c in copy.cells if c.source.startswith("def gaussian_kl"))
    assert kl_cell.source == "def gaussian_kl(mean, log_var):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert sum("raise NotImplementedError()" in c.source for c in copy.cells) == 2


def test_a_student_copy_never_overwrites_a_copy_a_learner_may_have_worked_in(tmp_path):
    copy = exercises.student_copy(EXAMPLE, tmp_path)
    copy.write_text("a learner's work")
    with pytest.raises(FileExistsError, match="delete it"):
        exercises.student_copy(EXAMPLE, tmp_path)
    assert copy.read_text() == "a learner's work"


def test_the_example_chapter_passes_its_own_checkers(tmp_path):
    feedback = checker_feedback(run(nbformat.read(EXAMPLE, as_version=4), tmp_path))
    assert len(feedback) == 2 and all("Correct" in shown for shown in feedback), feedback


@pytest.mark.parametrize("chapter", [EXAMPLE, *CHAPTERS], ids=lambda path: path.stem)
def test_the_student_copy_runs_to_the_end_and_each_checker_says_not_yet_implemented(chapter, tmp_path):
    copy = exercises.student_copy(chapter, tmp_path / "student")
    feedback = checker_feedback(run(nbformat.read(copy, as_version=4), copy.parent))
    assert len(feedback) >= 2, "a chapter has at least two exercises, each followed by its checker"
    assert all("not yet implemented" in shown for shown in feedback), feedback
