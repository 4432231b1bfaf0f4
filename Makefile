# pgpulse: `make run` runs it on an embedded PostgreSQL, `make test` runs the tests.
# `make help` lists every target.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv with pgpulse and its test tools

run: $(STAMP) ## run pgpulse in the foreground (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/pgpulse up

migrate-local: $(STAMP) ## apply migrations to DATABASE_URL (or the embedded database)
	$(BIN)/pgpulse migrate

status: $(STAMP) ## engine mode, schema version and tier freshness
	$(BIN)/pgpulse status

pglite: ## install the TimescaleDB-in-WASM test runner (npm)
	cd tests/pglite && npm ci --no-audit --no-fund --loglevel=error

test: $(STAMP) pglite ## run the test suite against a real PostgreSQL
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP) ## run the benchmarks in bench/
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: ## remove the virtualenv and caches (keeps var/ data)
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/pglite/node_modules

.PHONY: help venv run migrate-local status pglite test bench clean
