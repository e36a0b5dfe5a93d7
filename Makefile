# Every target sets itself up: `.venv` is built from pyproject.toml on first use,
# so `make run` and `make test` work on a machine that only has python3.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run screenshot test test-unit lint fmt bench bench-all bench-cluster bench-failover clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip reads [dependency-groups] (--group) from 25.1 on.
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

## run: the demo page (Starlette + FileStore in ./sessions) on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/python -m uvicorn examples.app:app --host 127.0.0.1 --port $${PORT:-8000}

## screenshot: click through the demo in headless Chromium and update docs/demo.png
screenshot: $(STAMP)
	SESSIONGUARD_SCREENSHOT=1 $(BIN)/python -m pytest tests/demo

## test: the whole suite, integration tests included
test: $(STAMP)
	$(BIN)/python -m pytest

## test-unit: everything that starts no process or server
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

## lint: check formatting, lint and types without changing files (safe for CI)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## fmt: rewrite files with ruff's fixes and formatting
fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: sessionguard against its peers on real servers on 127.0.0.1; no server to install
bench: $(STAMP)
	$(BIN)/python -m benchmarks

## bench-all: the same plus the Redis and PostgreSQL subjects (starts those servers itself)
bench-all: $(STAMP)
	$(BIN)/python -m benchmarks --all

## bench-cluster: 3 app hosts in network namespaces on Redis Cluster and PostgreSQL (needs root)
bench-cluster: $(STAMP)
	$(BIN)/python -m benchmarks.cluster

## bench-failover: acknowledged writes lost when a Redis master dies, with replicas=0 and 1
bench-failover: $(STAMP)
	$(BIN)/python -m benchmarks.failover

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis sessions
