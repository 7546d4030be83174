# `make lab` opens the kit in JupyterLab; `make test` runs the whole suite; `make bench` the benchmarks;
# `make student` writes the chapters' student copies to student/.
# Needs only Python 3.11+ and make: everything else goes into .venv, pinned by pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
BENCHMARKS := $(wildcard benchmarks/*.py)
CHAPTERS := $(filter-out notebooks/00-index.ipynb,$(wildcard notebooks/[0-9][0-9]-*.ipynb))
# Containers often run as root, where JupyterLab refuses to start unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test bench student
# A failed step removes its half-made target (a broken venv, a stamp), so the next run retries it.
.DELETE_ON_ERROR:

lab: $(VENV)/.stamp-test
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=. $(ALLOW_ROOT) notebooks/00-index.ipynb

# Doctests, unit tests and every notebook in one run (tests/test_student_copies.py also runs each chapter's
# student copy, in a temporary folder); exit code 5 means nothing was collected, which is a failure too.
test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest --doctest-modules vaekit tests notebooks --nbval-lax --nbval-current-env \
	  || { status=$$?; [ $$status -ne 5 ] || echo "make test: pytest collected no tests" >&2; exit $$status; }

# Solutions replaced by `raise NotImplementedError()`, outputs cleared (vaekit.exercises.student_copy, with
# nbgrader's own preprocessors). A copy that exists may hold a learner's work: delete it for a fresh one.
student: $(CHAPTERS:notebooks/%=student/%)
	$(if $(CHAPTERS),,$(error make student: no chapters in notebooks/))

student/%.ipynb: | notebooks/%.ipynb $(VENV)/.stamp-classroom
	$(BIN)/python -c 'import sys, vaekit.exercises as ex; print(ex.student_copy(*sys.argv[1:]))' notebooks/$*.ipynb student

bench: $(VENV)/.stamp-bench
	$(if $(BENCHMARKS),,$(error make bench: no scripts in benchmarks/))
	for script in $(BENCHMARKS); do echo "== $$script"; $(BIN)/python $$script || exit; done

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamps make a re-run skip pip until pyproject.toml changes.
$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.stamp-classroom: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[classroom]'
	touch $@

# torch stays pinned exactly: a bare `torch` would pull a CUDA build.
$(VENV)/.stamp-bench: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[bench]'
	touch $@
