PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/torch-balance bench digits --seeds 3 --out bench-out/demo

lint: $(STAMP)
	$(BIN)/ruff check torch_balance tests benchmarks examples
	$(BIN)/ruff format --check torch_balance tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info
