"""Student copies of the chapters, made by nbgrader's own preprocessors."""

from __future__ import annotations

import pathlib



def student_copy(notebook: str | pathlib.Path, output_dir: str | pathlib.Path) -> pathlib.Path:
    """Writes the student copy of a chapter: every solution replaced by a stub, every output cleared.

    The work is done by nbgrader's own preprocessors, ``ClearSolutions`` (each region between
    ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` and
    ``raise NotImplementedError()``, indented like the markers) and ``ClearOutput``, so a teacher who
    uses nbgrader gets what ``nbgrader generate_assignment`` makes of those cells. The chapters do not
    carry nbgrader's cell metadata, so ``ClearSolutions`` runs with ``enforce_metadata=False``
    (nbgrader's setting for using it to make student copies only). nbgrader is the optional
    ``classroom`` extra (``make student`` installs it).

    Args:
      notebook: a chapter, e.g. ``notebooks/02-elbo-and-reparameterization.ipynb``.
      output_dir: the folder of the copy (created if missing).

    Returns:
      The path of the copy, ``output_dir/<the chapter's file name>``.

    Raises:
      FileExistsError: if the copy exists: a learner may have worked in it. Delete it for a fresh one.
      ValueError: if a cell has a BEGIN SOLUTION line without its END SOLUTION (a line of Markdown that
        mentions the markers counts as one).
      ModuleNotFoundError: without nbgrader (``pip install -e '.[classroom]'``).
    """
    import nbformat

    try:
        from nbgrader.preprocessors import ClearOutput, ClearSolutions
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"student copies need nbgrader ({error}): `make student` installs it, or "
                                  "`pip install -e '.[classroom]'`") from None
    source = pathlib.Path(notebook)
    target = pathlib.Path(output_dir) / source.name
    if target.exists():
        raise FileExistsError(f"{target} exists and may hold a learner's work; delete it to make a fresh copy")
    chapter = nbformat.read(source, as_version=4)
    resources: dict = {}
    try:
        for preprocessor in (ClearSolutions(enforce_metadata=False), ClearOutput()):
            chapter, resources = preprocessor.preprocess(chapter, resources)
    except RuntimeError as error:  # nbgrader's word for unpaired markers
        raise ValueError(f"{source}: {error}. Each '### BEGIN SOLUTION' needs an '### END SOLUTION' after it, "
                         "each on a line of its own, and no other line may contain those words") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(chapter, target)
    return target
