"""Fixtures: a real PostgreSQL server and a fresh, migrated database per test.

The server is the one on 127.0.0.1:5432 when it answers (or the one named by
PGPULSE_TEST_PG_HOST / _PORT / _USER), else a throwaway embedded PostgreSQL (the
``pgserver`` wheel) started for the session, so the suite passes on a machine with
no server at all. Databases are made and dropped with pytest-postgresql's janitor:
the schema is migrated once into a template database, and every test gets its own
copy of it, so tests never see each other's rows.

The engine the template is migrated with is ``PGPULSE_TEST_ENGINE`` (``portable``,
the default, or ``timescale``, which needs a server with TimescaleDB preloaded). A
test about one engine's mechanism says so with ``@pytest.mark.engine("portable")``
(or ``"timescale"``); on the other engine it is deselected, and the terminal
summary lists what was left out and why (docs/storage.md, "Running the tests on
each engine").

Tests that need a Citus cluster (a coordinator with workers, docs/scaling.md) carry
``@pytest.mark.citus`` and run only when ``PGPULSE_TEST_CITUS_URL`` names a database on
the coordinator where ``CREATE EXTENSION citus`` was run and the workers added (the
tests migrate it, from nothing, themselves); otherwise they are deselected and the
summary says so.
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
from psycopg import sql
from pytest_postgresql.janitor import DatabaseJanitor

from pgpulse import schema
from pgpulse.embedded import EmbeddedPostgres
from pgpulse.settings import CoreSettings, load_core

# Fixtures of the proxy's tests (make_app, client), usable by any test module.
pytest_plugins = ["proxy_helpers"]

_counter = itertools.count()

ENGINES = ("portable", "timescale")
ENGINE = os.environ.get("PGPULSE_TEST_ENGINE", "portable")
CITUS_URL = os.environ.get("PGPULSE_TEST_CITUS_URL") or None
_deselected: list[str] = []
_no_citus: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if ENGINE not in ENGINES:
        raise pytest.UsageError(f"PGPULSE_TEST_ENGINE={ENGINE!r}: expected one of {', '.join(ENGINES)}")
    config.addinivalue_line(
        "markers", "engine(name): the test is about that engine's mechanism and runs only when "
        "PGPULSE_TEST_ENGINE is that engine (deselected, and listed, otherwise)"
    )
    config.addinivalue_line(
        "markers", "citus: the test needs a Citus coordinator with workers and runs only when "
        "PGPULSE_TEST_CITUS_URL names one (deselected, and counted, otherwise)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        if CITUS_URL is None and item.get_closest_marker("citus") is not None:
            drop.append(item)
            _no_citus.append(item.nodeid)
            continue
        marker = item.get_closest_marker("engine")
        if marker is not None:
            unknown = set(marker.args) - set(ENGINES)
            if unknown or not marker.args:
                raise pytest.UsageError(f"{item.nodeid}: engine marker needs one of {', '.join(ENGINES)}")
            if ENGINE not in marker.args:
                drop.append(item)
                continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        _deselected.extend(item.nodeid for item in drop if item.nodeid not in _no_citus)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An xdist worker hands what it deselected to the controller, which prints the summary.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["engine_deselected"] = list(_deselected)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    # Every worker collects the whole suite: the same list from each, kept once.
    for nodeid in getattr(node, "workeroutput", {}).get("engine_deselected", []):
        if nodeid not in _deselected:
            _deselected.append(nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _no_citus:
        terminalreporter.write_sep("-", "citus")
        terminalreporter.write_line(
            f"{len(_no_citus)} tests deselected: they need a Citus cluster (set PGPULSE_TEST_CITUS_URL)")
    terminalreporter.write_sep("-", f"engine: {ENGINE}")
    if not _deselected:
        terminalreporter.write_line("no test deselected for the engine")
        return
    other = [e for e in ENGINES if e != ENGINE]
    terminalreporter.write_line(
        f"{len(_deselected)} tests deselected: they are about the {'/'.join(other)} engine's mechanism "
        f"(run them with PGPULSE_TEST_ENGINE={other[0]})"
    )
    if config.getoption("verbose") > 0:
        for nodeid in _deselected:
            terminalreporter.write_line(f"  {nodeid}")


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
def test_engine() -> str:
    """The engine under test (``PGPULSE_TEST_ENGINE``): what ``auto`` resolves to on the
    server under test, and the mode of every ``db_url``."""
    return ENGINE


@pytest.fixture(scope="session")
def citus_url() -> str:
    """``PGPULSE_TEST_CITUS_URL``: a database on a Citus coordinator (tests marked
    ``citus`` only; the others never see it)."""
    assert CITUS_URL is not None, "a citus test ran without PGPULSE_TEST_CITUS_URL"
    return CITUS_URL


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
    """A database migrated to head with the engine under test, cloned by every ``db_url``.

    Once migrated it takes no more connections: TimescaleDB's background workers
    (the scheduler of each database) would otherwise connect to it, and a database
    someone is connected to cannot be cloned.
    """
    name = f"pgpulse_tpl_{os.getpid()}"
    janitor = pg_server.janitor(name, as_template=True)
    janitor.init()
    try:
        schema.upgrade(pg_server.url(name), ENGINE)
        with psycopg.connect(pg_server.url(name)) as conn:
            schema.configure(conn, load_core({}))
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
            # A worker that connected before is let go.
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        yield name
    finally:
        janitor.drop()


def _fresh_db(pg_server: PgServer, template: str | None) -> Iterator[str]:
    name = f"pgpulse_t{os.getpid()}_{next(_counter)}"
    with pg_server.janitor(name, template_dbname=template):
        yield pg_server.url(name)


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """URL of a fresh database of its own, migrated to head with the engine under test."""
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
