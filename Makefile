PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: demo test lint typecheck pytest bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

# the docs extra (Sphinx, MyST, sphinx-gallery) beside whatever .venv already holds
$(DOCS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# the site, offline, warnings as errors (the gallery's scripts run): docs/_build/html/index.html
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

demo: $(STAMP)
	$(BIN)/torch-balance bench digits --seeds 3 --out bench-out/demo

lint: $(STAMP)
	$(BIN)/ruff check torch_balance tests benchmarks examples docs
	$(BIN)/ruff format --check torch_balance tests benchmarks examples docs

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/auto_examples docs/sg_execution_times.rst
