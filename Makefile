# Two commands do everything (see README):
#   make course   set up .venv, run every notebook headlessly (quick profile), print RESULTS.md
#   make test     set up .venv, run the whole test suite
# Both reuse .venv on later runs; it is rebuilt only when pyproject.toml changes.

VENV    ?= .venv
PYTHON  ?= python3
PROFILE ?= quick
BIN      = $(abspath $(VENV))/bin
STAMP    = $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export MPLBACKEND := Agg

.PHONY: setup course test smoke bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dl-course)" >/dev/null
	touch $(STAMP)

course: setup
	$(BIN)/course run --profile $(PROFILE) --results RESULTS.md

test: setup
	$(BIN)/python -m pytest

smoke: setup
	$(BIN)/course run --profile smoke

bench: setup
	$(BIN)/course bench
