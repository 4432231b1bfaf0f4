"""pgpulse.store.snapshots and idempotency against the real PostgreSQL: one rule set
for every sender of snapshots (the collector's sink and the API refuse the same
snapshot the same way), nothing written when one is bad; idempotency records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from proxy_helpers import assert_error

from collector.sinks import SinkRejected
from collector.sinks.postgres import PostgresSink
from collector.spool import Entry
from pgpulse.store import idempotency, snapshots
from pgpulse.store.errors import IdempotencyConflict, InvalidSample

NOW = datetime.now(UTC).replace(microsecond=0)
GOOD = {"host": "h", "time": NOW.isoformat(), "data": {"cpu": 1}}
BAD = [
    ({"host": "", "time": NOW.isoformat(), "data": {}}, "host"),
    ({"host": "h" * 256, "time": NOW.isoformat(), "data": {}}, "host"),
    ({"host": "h", "time": "yesterday", "data": {}}, "time"),
    ({"host": "h", "time": NOW.isoformat(), "data": "[1]"}, "data"),
    ({"host": "h", "time": NOW.isoformat(), "data": {"s": "a\x00"}}, "data"),
]


@pytest.mark.parametrize(("bad", "field"), BAD)
def test_one_rule_set_for_the_sink_and_the_api(bad, field, conn, db_url, client):
    with psycopg.connect(db_url) as c, pytest.raises(InvalidSample) as info:
        snapshots.write(c, [GOOD, bad], tenant="default")
    assert info.value.details == {"index": 1, "field": field, "invalid_count": 1, "total": 2}
    # The collector's sink refuses it for good (not an outage) ...
    data = bad["data"] if isinstance(bad["data"], str) else orjson.dumps(bad["data"]).decode()
    with pytest.raises(SinkRejected, match=field):
        PostgresSink(db_url).write([Entry(1, bad["host"], bad["time"], data.encode())])
    # ... and the API answers 400 naming the same field.
    body = {**bad, "data": orjson.loads(data)}
    r = client.post("/api/ingest/snapshots", json={"snapshots": [body]})
    assert assert_error(r, 400)["field"] == field
    assert conn.execute("SELECT count(*) FROM system_metrics").fetchone()[0] == 0


def test_window_is_the_callers(conn, db_url):
    old = {**GOOD, "time": (NOW - timedelta(days=30)).isoformat()}
    with psycopg.connect(db_url) as c, pytest.raises(InvalidSample, match="now - 86400s"):
        snapshots.write(c, [old], snapshots.Window(86400, 60), tenant="default")
    with psycopg.connect(db_url) as c:  # the collector's sink writes any age
        assert snapshots.write(c, [old, GOOD], tenant="default") == 2
        assert snapshots.write(c, [old, GOOD], tenant="default") == 0


def test_idempotency_replay_and_conflict(conn, db_url):
    with psycopg.connect(db_url) as c:
        assert idempotency.replay(c, "k1", "d1", 3600) is None
        idempotency.remember(c, "k1", "d1", 200, {"accepted": 3}, 3600)
    with psycopg.connect(db_url) as c:
        assert idempotency.replay(c, "k1", "d1", 3600) == (200, {"accepted": 3})
        with pytest.raises(IdempotencyConflict):
            idempotency.replay(c, "k1", "other", 3600)
    conn.execute("UPDATE ingest_idempotency SET created_at = now() - interval '2 hours'")
    with psycopg.connect(db_url) as c:
        assert idempotency.replay(c, "k1", "d1", 3600) is None  # expired
        assert idempotency.sweep(c, 3600) == 1
