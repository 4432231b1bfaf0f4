# pgpulse: `make run` runs it on an embedded PostgreSQL, `make test` runs the tests.
# `make help` lists every target.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The full stack (docker-compose.yml): `make up LOGS=alloy` ships logs with Alloy
# instead of Promtail; `make backup BACKUP=dir`, `make restore BACKUP=dir FORCE=1`.
COMPOSE ?= docker compose
LOGS    ?= promtail

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

demo: $(STAMP) ## pgpulse, the instrumented demo app and the load generator together (Ctrl-C stops all)
	BIN=$(BIN) demo/run.sh

migrate-local: $(STAMP) ## apply migrations to DATABASE_URL (or the embedded database)
	$(BIN)/pgpulse migrate

status: $(STAMP) ## engine mode, schema version and tier freshness
	$(BIN)/pgpulse status

pglite: $(STAMP) ## install the TimescaleDB-in-WASM test runner (npm)
	@# Under a lock and only when out of date: `npm ci` empties node_modules, which would
	@# break the PGlite tests of another `make test` running beside this one.
	cd tests && $(abspath $(BIN))/python -c 'import pglite_runner; pglite_runner.ensure_installed()'

test: $(STAMP) pglite ## run the test suite against a real PostgreSQL
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP) ## run the benchmarks in bench/
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The rendered schema of each engine (the SQL of every migration, as `pgpulse migrate
# --sql` prints it), committed so a review sees what a migration does to the schema;
# tests/test_schema_rendered.py fails until it is regenerated after a migration change.
SCHEMA_DIR := pgpulse/migrations/schema

schema: $(STAMP) ## regenerate the rendered schema files in pgpulse/migrations/schema/
	@for engine in portable timescale; do \
		$(BIN)/pgpulse migrate --sql --engine $$engine > $(SCHEMA_DIR)/$$engine.sql.tmp \
		&& mv $(SCHEMA_DIR)/$$engine.sql.tmp $(SCHEMA_DIR)/$$engine.sql \
		&& echo "wrote $(SCHEMA_DIR)/$$engine.sql" || { rm -f $(SCHEMA_DIR)/$$engine.sql.tmp; exit 1; }; \
	done

clean: ## remove the virtualenv and caches (keeps var/ data)
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/pglite/node_modules

# -- the full stack ---------------------------------------------------------------

env-check:
	@test -f .env || { echo "No .env file: copy .env.example to .env and set the secrets" \
		"(POSTGRES_PASSWORD, DB_PASSWORD, GRAFANA_DB_PASSWORD, GF_SECURITY_ADMIN_PASSWORD," \
		"MONGO_ROOT_PASSWORD), e.g. with: openssl rand -hex 24" >&2; exit 1; }

up: env-check ## build and start the full stack in Docker Compose (needs .env)
	$(COMPOSE) $(if $(filter alloy,$(LOGS)),--profile alloy) up -d --build $(if $(filter alloy,$(LOGS)),--scale promtail=0)
	@echo "Grafana: http://localhost:$$(grep -E '^GRAFANA_PORT=' .env | cut -d= -f2 | grep . || echo 3000)" \
		" proxy: http://localhost:$$(grep -E '^PROXY_PORT=' .env | cut -d= -f2 | grep . || echo 8085)"

down: ## stop the stack (data stays in its named volumes)
	$(COMPOSE) --profile alloy down

ps: ## the stack's containers and their health
	$(COMPOSE) ps

logs: ## follow the stack's logs (S=proxy for one service)
	$(COMPOSE) logs -f --tail=100 $(S)

migrate: env-check ## run the migration job in the stack
	$(COMPOSE) run --rm migrate

backup: env-check ## back up the stack's database, Grafana and Loki into backups/<timestamp>/
	COMPOSE="$(COMPOSE)" deploy/stack-backup.sh $(BACKUP)

restore: env-check ## restore a backup into the stack (BACKUP=dir, default newest; FORCE=1 replaces data)
	COMPOSE="$(COMPOSE)" deploy/stack-restore.sh $(BACKUP) $(if $(FORCE),--force)

.PHONY: help venv run demo migrate-local status pglite test bench schema clean env-check up down ps logs migrate backup restore
