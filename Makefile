# `make lab` opens the kit in JupyterLab; `make test` runs the whole suite; `make bench` the benchmarks.
# Needs only Python 3.11+ and make: everything else goes into .venv, pinned by pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
BENCHMARKS := $(wildcard benchmarks/*.py)
# Containers often run as root, where JupyterLab refuses to start unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test bench
# A failed step removes its half-made target (a broken venv, a stamp), so the next run retries it.
.DELETE_ON_ERROR:

lab: $(VENV)/.stamp-test
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=. $(ALLOW_ROOT) notebooks/00-index.ipynb

# Doctests, unit tests and every notebook in one run; exit code 5 means nothing was collected, which is a failure too.
test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest --doctest-modules vaekit tests notebooks --nbval-lax --nbval-current-env \
	  || { status=$$?; [ $$status -ne 5 ] || echo "make test: pytest collected no tests" >&2; exit $$status; }

bench: $(VENV)/.stamp-bench
	$(if $(BENCHMARKS),,$(error make bench: no scripts in benchmarks/))
	for script in $(BENCHMARKS); do echo "== $$script"; $(BIN)/python $$script || exit; done

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamps make a re-run skip pip until pyproject.toml changes.
$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@

# torch stays pinned exactly: a bare `torch` would pull a CUDA build.
$(VENV)/.stamp-bench: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[bench]'
	touch $@
