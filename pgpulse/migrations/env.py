"""Alembic environment: the only way pgpulse's schema changes.

The engine mode is decided here, once, and handed to every revision through
``context.config.attributes["engine"]``:

* a database that has been migrated before keeps the mode recorded in its
  ``pgpulse_meta`` table (asking for the other one is an error, not a silent switch);
* otherwise the requested mode (``PGPULSE_ENGINE`` or ``-x engine=...``) is used, and
  ``auto`` means ``timescale`` when the extension can be created, else ``portable``.

Offline mode (``alembic upgrade head --sql``) needs an explicit mode, since there is
no database to ask; the TimescaleDB tests use it to feed the timescale DDL to PGlite.
"""

from __future__ import annotations

import re

from alembic import context
from sqlalchemy import create_engine, pool

from pgpulse import engine as engine_mode
from pgpulse.db import sqlalchemy_url

config = context.config

# TimescaleDB keeps its catalogue and chunks in these schemas; autogenerate must
# never see them, or every revision would try to drop TimescaleDB's internals.
TIMESCALE_SCHEMAS = {
    "_timescaledb_cache",
    "_timescaledb_catalog",
    "_timescaledb_config",
    "_timescaledb_debug",
    "_timescaledb_functions",
    "_timescaledb_internal",
    "timescaledb_experimental",
    "timescaledb_information",
}
# Daily partitions and the default partition of the portable engine are made by
# pgpulse_ensure_partitions() at run time, not by revisions.
PARTITION_NAME = re.compile(r"_(p\d{8}|default)$")


def include_name(name, type_, parent_names):
    if type_ == "schema":
        return name not in TIMESCALE_SCHEMAS
    return True


def include_object(obj, name, type_, reflected, compare_to):
    if getattr(obj, "schema", None) in TIMESCALE_SCHEMAS:
        return False
    if type_ == "table" and name and PARTITION_NAME.search(name):
        return False
    return True


def requested_engine() -> str:
    requested = context.get_x_argument(as_dictionary=True).get("engine")
    return requested or config.attributes.get("engine_request") or "auto"


def run_migrations_offline() -> None:
    mode = requested_engine()
    if mode not in ("timescale", "portable"):
        raise SystemExit("offline migrations need an explicit mode: -x engine=timescale|portable")
    config.attributes["engine"] = mode
    context.configure(
        url="postgresql+psycopg://",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        include_object=include_object,
        include_name=include_name,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    url = config.attributes.get("database_url")
    if url is None:
        from pgpulse.settings import load_core

        url = load_core().database_url
    if not url:
        raise SystemExit("DATABASE_URL is not set (or use `pgpulse migrate`, which can embed one)")
    return sqlalchemy_url(url)


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = create_engine(database_url(), poolclass=pool.NullPool)
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:
    mode = engine_mode.resolve(connection.connection.driver_connection, requested_engine())
    config.attributes["engine"] = mode
    context.configure(
        connection=connection,
        include_object=include_object,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
