"""A throwaway, migrated database for a benchmark run (local server or embedded)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import psycopg
from psycopg import sql

from pgpulse import schema
from pgpulse.db import with_database
from pgpulse.embedded import EmbeddedPostgres
from pgpulse.settings import load_core


@contextlib.contextmanager
def bench_database(name: str = "pgpulse_bench", migrate: bool = True) -> Iterator[str]:
    """Yield the URL of a fresh database ``name`` (dropped afterwards).

    Uses BENCH_PG_URL (a maintenance URL) or 127.0.0.1:5432, else an embedded server.
    """
    admin = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    embedded = None
    try:
        psycopg.connect(admin, connect_timeout=3).close()
    except psycopg.OperationalError:
        embedded = EmbeddedPostgres(tempfile.mkdtemp(prefix="pgpulse-bench-"), database="postgres")
        admin = embedded.start()
    ident = sql.Identifier(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    url = with_database(admin, name)
    try:
        if migrate:
            schema.migrate(url, load_core({}, engine="portable"))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        if embedded is not None:
            embedded.stop()


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *map(line, rows)])
