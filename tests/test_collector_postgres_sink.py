"""The postgres sink against the real database: COPY into a temporary table, then
INSERT ... ON CONFLICT DO NOTHING, so a replayed batch stores nothing twice; its
headline fields feed the 5m tier; bad data and a missing schema are told apart
from an outage."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from collector.sinks import SinkRejected, SinkUnavailable
from collector.sinks.postgres import PostgresSink
from collector.snapshot import Sampler
from collector.spool import Entry
from pgpulse import tiers


def batch(times: list[datetime], host: str = "h1") -> list[Entry]:
    return [Entry(i, host, t.isoformat(), orjson.dumps({"schema": 1, "i": i})) for i, t in enumerate(times)]


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_batch_written_once_even_when_replayed(conn, db_url):
    sink = PostgresSink(db_url)
    first = batch([T0 + timedelta(seconds=10 * i) for i in range(3)])
    assert sink.write(first) == 3
    assert sink.write(first) == 0  # a replay after a crash between commit and spool delete
    overlap = batch([T0 + timedelta(seconds=20), T0 + timedelta(seconds=30)])
    assert sink.write(overlap) == 1
    rows = conn.execute("SELECT time, data->>'i' FROM system_metrics WHERE host = 'h1' ORDER BY time").fetchall()
    assert [r[0] for r in rows] == [T0 + timedelta(seconds=10 * i) for i in range(4)]
    assert rows[2][1] == "2"  # the first write of a (host, time) wins
    sink.close()


def test_snapshot_headlines_feed_the_5m_tier(conn, db_url, core_settings):
    sampler = Sampler(top_n=0)
    sampler.sample()
    time.sleep(0.2)
    _, doc = sampler.sample()
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    PostgresSink(db_url).write([Entry(1, "tiered", at.isoformat(), orjson.dumps(doc))])
    tiers.refresh(db_url, core_settings)
    columns = ", ".join(f"{c}_count" for c in tiers.HOST_FIELDS)
    row = conn.execute(f"SELECT {columns} FROM system_metrics_5m WHERE host = 'tiered'").fetchone()  # noqa: S608 - fixed names
    assert row is not None
    assert dict(zip(tiers.HOST_FIELDS, row, strict=True)) == {c: 1 for c in tiers.HOST_FIELDS}


def test_bad_data_is_rejected_not_retried(conn, db_url):
    sink = PostgresSink(db_url)
    with pytest.raises(SinkRejected):
        sink.write([Entry(1, "h1", T0.isoformat(), b"{not json")])
    with pytest.raises(SinkRejected):
        sink.write([Entry(1, "h1", "not a time", b"{}")])
    # The connection is still good for the next batch.
    assert sink.write(batch([T0])) == 1
    assert conn.execute("SELECT count(*) FROM system_metrics").fetchone()[0] == 1


def test_missing_schema_keeps_snapshots(empty_db_url):
    with pytest.raises(SinkUnavailable) as info:
        PostgresSink(empty_db_url).write(batch([T0]))
    assert info.value.misconfigured  # a migration fixes it, not waiting


def test_unreachable_database_is_an_outage():
    sink = PostgresSink("postgresql://postgres:secretpw@127.0.0.1:1/none")
    with pytest.raises(SinkUnavailable) as info:
        sink.write(batch([T0]))
    assert not info.value.misconfigured
    assert "secretpw" not in str(info.value) and "secretpw" not in sink.describe()


def test_reconnects_after_the_server_dropped_it(conn, db_url):
    sink = PostgresSink(db_url)
    sink.write(batch([T0]))
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'pgpulse-collector' AND datname = current_database()"
    )
    outcomes = []
    for i in (1, 2):
        try:
            outcomes.append(sink.write(batch([T0 + timedelta(seconds=i)])))
        except SinkUnavailable:
            outcomes.append("unavailable")
    # The first write may find the connection dead; the next one reconnects.
    assert outcomes[-1] == 1
    assert conn.execute("SELECT count(*) FROM system_metrics").fetchone()[0] == 1 + outcomes.count(1)
    sink.close()


def test_writes_as_the_unprivileged_writer_role(conn, db_url):
    # The application writes as pgpulse_writer, not a superuser: COPY into a
    # temporary table and the INSERT must both work with its grants.
    name = f"collector_writer_{int(time.time() * 1000)}"
    conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgpulse_writer").format(psycopg.sql.Identifier(name)))
    sink = PostgresSink(db_url.replace("postgres@", f"{name}@", 1))
    try:
        assert sink.write(batch([T0])) == 1
    finally:
        sink.close()
        # The role owns the session's temporary table until its backend is gone.
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (name,)).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        conn.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(name)))
        conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))
