# `make run` and `make test` work on a fresh machine with Python 3.11: each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/transport: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/transport
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/transport
	$(BIN)/transport run --config transport.yaml

test: $(VENV)/.test-extras
	$(BIN)/python -m pytest -q

bench: $(VENV)/.test-extras
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var
