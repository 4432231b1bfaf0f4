"""Alembic environment: the only way pgpulse's schema changes.

The engine mode is decided here, once, and handed to every revision through
``context.config.attributes["engine"]``:

* a database that has been migrated before keeps the mode recorded in its
  ``pgpulse_meta`` table (asking for the other one is an error, not a silent switch);
* otherwise the requested mode (``PGPULSE_ENGINE`` or ``-x engine=...``) is used, and
  ``auto`` means ``timescale`` when the extension can be created, else ``portable``.

Offline mode (``alembic upgrade head --sql``) needs an explicit mode, since there is
no database to ask; the TimescaleDB tests use it to feed the timescale DDL to PGlite,
and `make schema` renders it into pgpulse/migrations/schema/<engine>.sql.

There is no ``target_metadata``, so no autogenerate and no object filters: revisions
are hand-written DDL (hypertables, continuous aggregates, partitions, plpgsql) that
SQLAlchemy metadata cannot describe, and a metadata copy of the 65-column tiers would
be a second definition of the schema to keep in step. The reviewable definition is
the rendered schema, which a test keeps equal to what the revisions produce.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from pgpulse import engine as engine_mode
from pgpulse.db import sqlalchemy_url

config = context.config


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
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
