# od-bridge: `make run` starts the daemon on config.example.yaml; `make test` runs every test.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CONFIG  ?= config.example.yaml
STAMP   := $(VENV)/.installed

.PHONY: run test lint bench emulate tail clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,fast,deploy]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/od-bridge serve -c $(CONFIG)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy bridge bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/mypy bridge bench

emulate: $(STAMP)
	$(BIN)/od-bridge emulate

tail: $(STAMP)
	$(BIN)/od-bridge tail -c $(CONFIG) --pretty

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
