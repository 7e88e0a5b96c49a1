# Each target installs what it needs into .venv on first use; a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= examples/guess-10k.yaml

.PHONY: run test bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/myriad run $(SPEC)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)  # bench/stack.py needs the PostgreSQL server at 127.0.0.1:5432 (as in CI)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/stack.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
