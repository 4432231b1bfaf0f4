"""Roles: the application writes as an ordinary role, Grafana reads through a read-only one."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from pgpulse import engine as engine_mode
from pgpulse import tiers


@pytest.fixture
def login_role(conn, pg_server):
    """Make a throwaway LOGIN role in a group; yields a URL that logs in as it."""
    made = []

    def make(group: str) -> str:
        name = f"pgpulse_test_{uuid.uuid4().hex[:10]}"
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER IN ROLE {}").format(
            sql.Identifier(name), sql.Identifier(group)))
        made.append(name)
        dbname = conn.info.dbname
        return pg_server.url(dbname).replace(f"{pg_server.user}@", f"{name}@", 1)

    yield make
    for name in made:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_reader_can_read_but_not_write(login_role):
    url = login_role("pgpulse_reader")
    with psycopg.connect(url, autocommit=True) as conn:
        for relation in ("system_metrics", "system_metrics_5m", "samples_1h", "series", "reading_analytics", "etl_runs"):
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(relation)))
        for statement in (
            "INSERT INTO samples VALUES (now(), 1, 1)",
            "DELETE FROM series",
            "UPDATE reading_analytics SET source_id = 'x'",
            "CREATE TABLE sneaky (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_reader_cannot_see_key_hashes(login_role):
    url = login_role("pgpulse_reader")
    with psycopg.connect(url, autocommit=True) as conn:
        for relation in ("api_keys", "ingest_idempotency"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(relation)))


def test_writer_is_not_superuser_and_runs_everything(login_role, core_settings):
    url = login_role("pgpulse_writer")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0] is False
        sid = conn.execute(
            "INSERT INTO series (name, labels) VALUES ('up', '{}') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO samples VALUES (now() - interval '10 minutes', %s, 1)", (sid,))
        conn.execute("INSERT INTO system_metrics VALUES (now(), 'h', '{}')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE samples")
    # rollups / refreshes (the back-fill of `pgpulse tiers refresh`) and maintenance
    # (which creates and drops partitions) work as the writer
    settings = core_settings.__class__(**{**core_settings.__dict__, "database_url": url})
    assert {r for r, _ in tiers.refresh(url, settings, backfill=True)} == set(tiers.CAGGS)
    assert tiers.maintain(url, settings) == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT sum(count) FROM samples_5m").fetchone()[0] == 1
        # the session is the writer again after the refresh
        assert conn.execute("SELECT current_user = session_user").fetchone()[0]
        if engine_mode.recorded(conn) == engine_mode.PORTABLE:
            ahead = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass").fetchone()[0]
            assert ahead >= 1 + settings.partitions_ahead_days


@pytest.mark.engine("timescale")
def test_writer_refreshes_as_the_tiers_role_but_cannot_drop_the_aggregates(login_role, core_settings, monkeypatch,
                                                                           capsys):
    from pgpulse.cli import main

    url = login_role("pgpulse_writer")
    with psycopg.connect(url, autocommit=True) as conn:
        sid = conn.execute(
            "INSERT INTO series (name, labels) VALUES ('up', '{}') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO samples SELECT t, %s, 1 FROM generate_series("
                     "now() - interval '2 days', now() - interval '1 hour', interval '1 minute') t", (sid,))
        for cagg in tiers.CAGGS:
            assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                                (cagg,)).fetchone()[0] == tiers.TIERS_ROLE
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(cagg)))
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["tiers", "refresh"]) == 0
    assert "samples_5m" in capsys.readouterr().out
    with psycopg.connect(url, autocommit=True) as conn:
        mat = conn.execute(
            "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name) "
            "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'samples_5m'").fetchone()[0]
        # materialised by the refresh, not only computed in real time
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(mat))).fetchone()[0] >= 47 * 12


def test_a_database_error_in_tiers_refresh_is_one_line(login_role, conn, monkeypatch, capsys):
    """A login that is not in the writer group may not refresh: a clear line, no traceback."""
    from pgpulse.cli import main

    url = login_role("pgpulse_reader")
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["tiers", "refresh"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pgpulse: database error: ") and "permission denied" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
