"""Which engine mode a database runs: ``timescale`` or ``portable``.

The mode is chosen once, when migrations first run, and recorded in
``pgpulse_meta``; everything afterwards asks the database, never the environment.
"""

from __future__ import annotations

import psycopg

TIMESCALE = "timescale"
PORTABLE = "portable"


class EngineError(RuntimeError):
    """The requested engine mode cannot be used on this database."""


def recorded(conn: psycopg.Connection) -> str | None:
    """The mode recorded by migrations, or None for a database never migrated."""
    row = conn.execute("SELECT to_regclass('public.pgpulse_meta') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    row = conn.execute("SELECT value FROM pgpulse_meta WHERE key = 'engine'").fetchone()
    return row[0] if row else None


def distributed(conn: psycopg.Connection) -> bool:
    """True when this database has Citus (the portable engine's tables sharded across
    workers, revision 0009): a few reads take another form there (docs/scaling.md)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").fetchone()
    return bool(row[0])


def timescale_available(conn: psycopg.Connection) -> bool:
    """True when CREATE EXTENSION timescaledb can succeed here."""
    row = conn.execute(
        """
        SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
            OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
                AND current_setting('shared_preload_libraries') LIKE '%timescaledb%')
        """
    ).fetchone()
    return bool(row[0])


def resolve(conn: psycopg.Connection, requested: str) -> str:
    """The mode migrations must use for ``requested`` (auto|timescale|portable)."""
    current = recorded(conn)
    if current is not None:
        if requested not in ("auto", current):
            raise EngineError(
                f"PGPULSE_ENGINE={requested}, but this database was migrated with the "
                f"{current} engine; the mode cannot change in place (back up, restore "
                "into a new database instead)"
            )
        return current
    if requested == "auto":
        return TIMESCALE if timescale_available(conn) else PORTABLE
    if requested == TIMESCALE and not timescale_available(conn):
        raise EngineError(
            "PGPULSE_ENGINE=timescale, but the timescaledb extension is not available "
            "on this server (installed and in shared_preload_libraries)"
        )
    return requested
