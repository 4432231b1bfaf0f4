"""Roles: the application writes as an ordinary role, Grafana reads through a read-only one."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

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
    # rollups and maintenance (which create and drop partitions) work as the writer
    settings = core_settings.__class__(**{**core_settings.__dict__, "database_url": url})
    assert {r for r, _ in tiers.refresh(url, settings)} == set(tiers.CAGGS)
    assert tiers.maintain(url, settings) == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT sum(count) FROM samples_5m").fetchone()[0] == 1
        ahead = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass").fetchone()[0]
        assert ahead >= 1 + settings.partitions_ahead_days
