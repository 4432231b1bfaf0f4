"""Fixtures: a real PostgreSQL server and a fresh, migrated database per test.

The server is the one on 127.0.0.1:5432 when it answers (or the one named by
PGPULSE_TEST_PG_HOST / _PORT / _USER), else a throwaway embedded PostgreSQL (the
``pgserver`` wheel) started for the session, so the suite passes on a machine with
no server at all. Databases are made and dropped with pytest-postgresql's janitor:
the schema is migrated once into a template database, and every test gets its own
copy of it, so tests never see each other's rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from pgpulse import schema
from pgpulse.embedded import EmbeddedPostgres
from pgpulse.settings import CoreSettings, load_core

# Fixtures of the proxy's tests (make_app, client), usable by any test module.
pytest_plugins = ["proxy_helpers"]

_counter = itertools.count()


@dataclasses.dataclass(frozen=True)
class PgServer:
    host: str  # a hostname, or the directory of a Unix socket
    port: int
    user: str

    def url(self, dbname: str) -> str:
        if self.host.startswith("/"):
            return f"postgresql://{self.user}@/{dbname}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def janitor(self, dbname: str, **kwargs) -> DatabaseJanitor:
        return DatabaseJanitor(user=self.user, host=self.host, port=self.port, dbname=dbname, **kwargs)


def _answers(server: PgServer) -> bool:
    try:
        with psycopg.connect(server.url("postgres"), connect_timeout=10):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[PgServer]:
    server = PgServer(
        os.environ.get("PGPULSE_TEST_PG_HOST", "127.0.0.1"),
        int(os.environ.get("PGPULSE_TEST_PG_PORT", "5432")),
        os.environ.get("PGPULSE_TEST_PG_USER", "postgres"),
    )
    if _answers(server):
        yield server
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"))
    embedded.start()
    try:
        yield PgServer(embedded.socket_dir, 5432, "postgres")
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    """A database migrated to head in portable mode, cloned by every ``db_url``."""
    name = f"pgpulse_tpl_{os.getpid()}"
    janitor = pg_server.janitor(name, as_template=True)
    janitor.init()
    try:
        schema.upgrade(pg_server.url(name), "portable")
        with psycopg.connect(pg_server.url(name)) as conn:
            schema.configure(conn, load_core({}))
        yield name
    finally:
        janitor.drop()


def _fresh_db(pg_server: PgServer, template: str | None) -> Iterator[str]:
    name = f"pgpulse_t{os.getpid()}_{next(_counter)}"
    with pg_server.janitor(name, template_dbname=template):
        yield pg_server.url(name)


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """URL of a fresh database of its own, migrated to head (portable engine)."""
    yield from _fresh_db(pg_server, template_db)


@pytest.fixture(scope="module")
def module_db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """Like ``db_url``, shared by the tests of one module (for a costly populated
    database, e.g. the browser tests')."""
    yield from _fresh_db(pg_server, template_db)


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database (no migrations)."""
    yield from _fresh_db(pg_server, None)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to ``db_url``."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def core_settings(db_url: str, tmp_path: Path) -> CoreSettings:
    """Default core settings pointing at ``db_url``, with state under ``tmp_path``."""
    return load_core({}, database_url=db_url, data_dir=tmp_path)
