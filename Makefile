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

# The first install takes a couple of minutes: every step says what it does, and pip
# names each package as it goes (no silent minutes).
$(STAMP): pyproject.toml
	@echo "==> [1/3] creating the virtualenv $(VENV) (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "==> [2/3] installing pgpulse and its dependencies into $(VENV) (about two minutes)"
	@bash -o pipefail -c "$(BIN)/pip install --progress-bar off -e '.[test]' \
		| { grep -E --line-buffered '^(Collecting|Successfully installed)' || true; } | sed -u 's/^Collecting /    /'"
	touch $(STAMP)

venv: $(STAMP) ## create .venv with pgpulse and its test tools

# The console's chart library comes from npm (proxy/console/package-lock.json) into the
# git-ignored proxy/console/node_modules; without npm pgpulse still runs and its
# console page says what is missing (`make test` needs it).
console: $(STAMP) ## install the web console's front-end libraries (npm)
	@echo "==> [3/3] installing the web console's chart library (npm)"
	@$(BIN)/python -m proxy.assets $(if $(filter test,$(MAKECMDGOALS)),,--optional)

# `pgpulse up` exits 3 when another one already runs in this directory: it says where.
run: $(STAMP) console ## run pgpulse in the foreground (embedded PostgreSQL unless DATABASE_URL is set)
	@$(BIN)/pgpulse up; status=$$?; [ $$status -eq 3 ] || exit $$status

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

test: $(STAMP) pglite console ## run the test suite against a real PostgreSQL
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP) ## run the benchmarks in bench/ (they start VictoriaMetrics and Prometheus themselves: bench/peers.py)
	@# bench_citus.py needs a Citus coordinator (docs/scaling.md): it runs when BENCH_CITUS_URL is set.
	@for b in bench/bench_*.py; do \
		if [ "$$b" = bench/bench_citus.py ] && [ -z "$$BENCH_CITUS_URL" ]; then \
			echo "== $$b: not run (BENCH_CITUS_URL is not set)"; continue; fi; \
		echo "== $$b"; $(BIN)/python $$b || exit 1; done

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

# Python classes of the remote-write/remote-read protobuf messages, generated from
# pgpulse/protocols/prompb/remote.proto and committed (tests/test_prompb.py checks they
# match). The generator runs in its own virtualenv: grpcio-tools pins its protobuf, the
# version whose runtime the generated code asks for (pyproject.toml: protobuf>=6.31.1).
PROMPB        := pgpulse/protocols/prompb
GRPCIO_TOOLS  ?= grpcio-tools==1.76.0
PROTOC_VENV   ?= $(VENV)-protoc

prompb: ## regenerate pgpulse/protocols/prompb/remote_pb2.py from remote.proto
	test -x $(PROTOC_VENV)/bin/python || $(PYTHON) -m venv $(PROTOC_VENV)
	$(PROTOC_VENV)/bin/pip install --quiet '$(GRPCIO_TOOLS)'
	$(PROTOC_VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. $(PROMPB)/remote.proto

clean: ## remove the virtualenv and caches (keeps var/ data)
	rm -rf $(VENV) $(PROTOC_VENV) .pytest_cache .ruff_cache tests/pglite/node_modules proxy/console/node_modules tests/artifacts

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

# backup/restore: the full stack's (database, Grafana, Loki) when .env exists and
# Docker is here; otherwise pgpulse's own database, embedded under var/ (or at
# DATABASE_URL), with `pgpulse backup` / `pgpulse restore` (backup-local, restore-local).
STACK_OR_LOCAL = [ -f .env ] && command -v docker >/dev/null 2>&1

backup: ## back up into backups/<timestamp>/: the stack's database, Grafana and Loki, or the embedded database (no .env)
	@if $(STACK_OR_LOCAL); then COMPOSE="$(COMPOSE)" deploy/stack-backup.sh $(BACKUP); \
	else echo "==> no .env or no Docker: backing up pgpulse's own database (pgpulse backup)"; \
		$(MAKE) --no-print-directory backup-local; fi

restore: ## restore a backup (BACKUP=dir, default newest; FORCE=1 replaces data): the stack's, or the embedded database
	@if $(STACK_OR_LOCAL); then COMPOSE="$(COMPOSE)" deploy/stack-restore.sh $(BACKUP) $(if $(FORCE),--force); \
	else echo "==> no .env or no Docker: restoring pgpulse's own database (pgpulse restore)"; \
		$(MAKE) --no-print-directory restore-local; fi

backup-local: $(STAMP) ## back up the embedded database (or DATABASE_URL) with pgpulse backup (BACKUP=dir)
	$(BIN)/pgpulse backup $(if $(BACKUP),--output $(BACKUP))

restore-local: $(STAMP) ## restore the embedded database (or DATABASE_URL) with pgpulse restore (BACKUP=dir, FORCE=1)
	$(BIN)/pgpulse restore $(BACKUP) $(if $(FORCE),--force)

.PHONY: help venv console run demo migrate-local status pglite test bench schema clean env-check up down ps logs migrate backup restore backup-local restore-local prompb
