"""Migrations up and down, on empty and populated databases, and the engine mode."""

from __future__ import annotations

import psycopg
import pytest

from pgpulse import engine as engine_mode
from pgpulse import schema
from pgpulse.engine import EngineError

READER_RELATIONS = {
    "system_metrics", "system_metrics_5m", "system_metrics_1h", "series", "samples",
    "samples_5m", "samples_1h", "reading_analytics",
}
SAMPLES_TIER_COLUMNS = ["bucket", "series_id", "count", "sum", "min", "max", "last"]


def relations(conn) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')"
    ).fetchall()
    return {r[0] for r in rows}


def columns(conn, relation: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        (relation,),
    ).fetchall()
    return [r[0] for r in rows]


def test_upgrade_empty_database_records_the_engine_auto_finds(empty_db_url, test_engine):
    # auto: timescale where the server preloads timescaledb, else portable
    schema.upgrade(empty_db_url, "auto")
    with psycopg.connect(empty_db_url) as conn:
        assert engine_mode.recorded(conn) == test_engine
        assert schema.current_revision(conn) == schema.head_revision()
        assert READER_RELATIONS <= relations(conn)
        assert columns(conn, "samples_5m") == SAMPLES_TIER_COLUMNS
        assert columns(conn, "samples_1h") == SAMPLES_TIER_COLUMNS


def test_database_is_at_head(conn):
    assert schema.current_revision(conn) == schema.head_revision()


def test_single_head():
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(schema.alembic_config()).get_heads()) == 1


def test_downgrade_and_upgrade_populated_database(db_url, test_engine):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO series (name, labels) VALUES ('m', '{\"a\": \"1\"}')")
        conn.execute("INSERT INTO samples VALUES (now(), 1, 1.5)")
        conn.execute("INSERT INTO system_metrics VALUES (now(), 'h', '{\"cpu\": {\"percent\": 3}}')")
    schema.downgrade(db_url, "base")
    with psycopg.connect(db_url) as conn:
        assert relations(conn) <= {"alembic_version"}
        assert schema.current_revision(conn) is None
    schema.upgrade(db_url, test_engine)
    with psycopg.connect(db_url) as conn:
        assert engine_mode.recorded(conn) == test_engine
        assert READER_RELATIONS <= relations(conn)
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_upgrade_is_idempotent_at_head(db_url):
    schema.upgrade(db_url, "auto")
    with psycopg.connect(db_url) as conn:
        assert schema.current_revision(conn) == schema.head_revision()


@pytest.mark.engine("portable")  # a server without TimescaleDB
def test_timescale_requested_where_unavailable_is_refused(empty_db_url):
    with pytest.raises(EngineError, match="timescaledb extension is not available"):
        schema.upgrade(empty_db_url, "timescale")
    with psycopg.connect(empty_db_url) as conn:
        assert schema.current_revision(conn) is None


def test_recorded_engine_cannot_be_switched(db_url, test_engine):
    other = "timescale" if test_engine == "portable" else "portable"
    with pytest.raises(EngineError, match=f"migrated with the {test_engine} engine"):
        schema.upgrade(db_url, other)


@pytest.mark.parametrize("engine", ["timescale", "portable"])
def test_offline_sql_for_each_engine(engine):
    script = schema.offline_sql(engine)
    assert "CREATE TABLE samples" in script
    assert "INSERT INTO alembic_version" in script
    if engine == "timescale":
        assert "create_hypertable('samples'" in script
        assert "timescaledb.continuous" in script
    else:
        assert "PARTITION BY RANGE (time)" in script
        assert "create_hypertable" not in script


def test_offline_sql_needs_explicit_engine():
    with pytest.raises(SystemExit, match="explicit mode"):
        schema.offline_sql("auto")


def test_downgrade_leaves_roles_used_by_other_databases(db_url, test_engine):
    # The template database still grants to the roles, so they must survive.
    schema.downgrade(db_url, "base")
    with psycopg.connect(db_url) as c:
        names = {r[0] for r in c.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgpulse_%'").fetchall()}
    assert {"pgpulse_reader", "pgpulse_writer"} <= names
    if test_engine == "timescale":
        assert "pgpulse_tiers" in names
