"""Staleness markers and metric metadata in the store, against the real PostgreSQL:
written with their batch (all or nothing), never as values, pruned past the raw
retention; metadata's latest word wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgpulse import tiers
from pgpulse.store import metadata, samples, series, staleness
from pgpulse.store.batch import PG_EPOCH, Batch, datetime_us
from pgpulse.store.errors import InvalidSample

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
LIMITS = series.SeriesLimits()


def us(when: datetime) -> int:
    return datetime_us(when)


def test_markers_are_stored_apart_from_values(db_url):
    b = Batch()
    up = b.series("up", {"job": "node"}, "gauge")
    b.rows.append((us(T0), up, 1.0))
    b.stale.append((us(T0 + timedelta(seconds=15)), up))
    b.stale.append((us(T0 + timedelta(seconds=15)), up))  # twice in a batch: one marker
    with psycopg.connect(db_url) as conn:
        taken, _ = samples.write_batch(conn, b, LIMITS, tenant="default")
    with psycopg.connect(db_url) as conn:
        assert taken == 1
        assert conn.execute("SELECT value FROM samples").fetchall() == [(1.0,)]
        (sid,) = conn.execute("SELECT id FROM series").fetchone()
        assert staleness.read(conn, [sid], T0, T0 + timedelta(minutes=1)) == [(sid, T0 + timedelta(seconds=15))]
        # Sent again (a retried request): nothing changes.
        with conn.transaction():
            samples.write_batch(conn, b, LIMITS, tenant="default")
        assert conn.execute("SELECT count(*) FROM stale_markers").fetchone() == (1,)


def test_a_sample_at_the_same_time_hides_the_marker(db_url):
    b = Batch()
    k = b.series("m", {})
    b.stale.append((us(T0), k))
    b.rows.append((us(T0), k, 2.5))
    with psycopg.connect(db_url) as conn:
        samples.write_batch(conn, b, LIMITS, tenant="default")
    with psycopg.connect(db_url) as conn:
        (sid,) = conn.execute("SELECT id FROM series").fetchone()
        assert staleness.read(conn, [sid], T0 - timedelta(hours=1), T0 + timedelta(hours=1)) == []


def test_batch_with_bad_metadata_writes_nothing(db_url):
    b = Batch()
    k = b.series("requests_total", {}, "counter")
    b.rows.append((us(T0), k, 3.0))
    b.stale.append((us(T0 + timedelta(seconds=30)), k))
    b.metadata["requests_total"] = ("countr", "Requests.", "")
    with psycopg.connect(db_url) as conn, pytest.raises(InvalidSample, match="countr|counter"):
        with conn.transaction():
            samples.write_batch(conn, b, LIMITS, tenant="default")
    with psycopg.connect(db_url) as conn:
        for table in ("series", "samples", "stale_markers", "metric_metadata"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table  # noqa: S608


def test_metadata_latest_word_wins(db_url):
    with psycopg.connect(db_url) as conn:
        with conn.cursor() as cur:
            metadata.upsert(cur, {"http_requests": ("counter", "Requests.", ""),
                                  "latency_seconds": ("histogram", "Latency.", "seconds")}, tenant="default")
        first = conn.execute("SELECT updated_at FROM metric_metadata WHERE name = 'http_requests'").fetchone()
        with conn.cursor() as cur:
            metadata.upsert(cur, {"http_requests": ("counter", "Requests.", "")}, tenant="default")  # unchanged: no new version
            metadata.upsert(cur, {"latency_seconds": ("summary", "Latency now.", "seconds")}, tenant="default")
        assert conn.execute("SELECT updated_at FROM metric_metadata WHERE name = 'http_requests'").fetchone() == first
        assert metadata.read(conn, tenant="default") == [("http_requests", "counter", "Requests.", ""),
                                       ("latency_seconds", "summary", "Latency now.", "seconds")]
        assert metadata.read(conn, "latency_seconds", tenant="default") == [("latency_seconds", "summary", "Latency now.", "seconds")]
        assert metadata.read(conn, limit=1, tenant="default") == [("http_requests", "counter", "Requests.", "")]


def test_markers_past_the_raw_retention_are_pruned(db_url, core_settings):
    settings = core_settings
    old = datetime.now(UTC) - timedelta(days=settings.raw_retention_days, hours=1)
    b = Batch()
    k = b.series("m", {})
    b.stale.extend([(us(old), k), (us(T0), k)])
    with psycopg.connect(db_url) as conn:
        samples.write_batch(conn, b, LIMITS, tenant="default")
    assert tiers.prune_stale_markers(db_url, settings) == 1
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT time FROM stale_markers").fetchall() == [(T0,)]
    assert old > PG_EPOCH
