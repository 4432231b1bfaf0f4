"""A sample written again for the same series and time changes no answer: last write
wins (as in Prometheus and VictoriaMetrics), in the raw table and in every tier.

* portable: the real PostgreSQL, through the API and the store; the tiers are
  rolled up by one cycle of the scheduler's jobs.
* timescale: PGlite with TimescaleDB (``tests/pglite_runner.py``). PGlite takes no
  COPY, so the rows are generated in SQL into the store's staging table and moved
  by the store's own statement (:data:`pgpulse.store.samples.UPSERT`); each refresh
  policy job is run as TimescaleDB's scheduler would.
* the ETL writes its samples through the same store: the same rule.
* revision 0005 turns a database holding duplicates into one row per (series, time).
"""

# ruff: noqa: S608 - the SQL here is composed of this file's and the store's constants

from __future__ import annotations

import io
import math
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from alembic import command
from etl_helpers import etl_settings, reading
from pglite_runner import PGliteRunner, exec_, query
from proxy_helpers import assert_error

from etl import load
from etl.transform import Transformer
from pgpulse import scheduler, schema
from pgpulse.settings import load_core
from pgpulse.store import samples, series
from pgpulse.store.batch import PG_EPOCH_US, Batch

HOUR = 3600
N = 360  # one sample every 10 s for a whole hour
VALUES = [float(i % 7) for i in range(N)]
OVERWRITTEN = 30  # the second batch gives the hour's first 30 samples new values
NEW_VALUES = [1000.0 + i if i < OVERWRITTEN else v for i, v in enumerate(VALUES)]


def hour_two_back() -> int:
    return (int(time.time()) // HOUR - 2) * HOUR


def cycle(db_url: str) -> None:
    """One scheduler cycle: every job the portable scheduler runs, once."""
    settings = load_core({}, database_url=db_url, engine="portable")
    jobs = scheduler.build(db_url, settings, "portable").get_jobs()
    assert {j.id for j in jobs} >= {"rollup", "maintain"}
    for job in jobs:
        job.func()


def post(client, base: int, values: list[float], **headers: str) -> None:
    metrics = [{"name": "dup_temp", "labels": {"host": "a"}, "value": v, "timestamp": base + 10 * i}
               for i, v in enumerate(values)]
    r = client.post("/api/ingest", json={"metrics": metrics}, headers=headers)
    assert r.status_code == 200, r.json
    assert r.json == {"accepted": len(values), "series": 1}


def answers(client, base: int) -> dict[tuple[str, str], float]:
    """(step, agg) -> the total over the hour of the answer's points."""
    out = {}
    for step, tier in (("60s", "raw"), ("5m", "5m"), ("1h", "1h")):
        for agg in ("count", "sum"):
            r = client.get("/api/query", query_string={
                "query": 'dup_temp{host="a"}', "start": base, "end": base + HOUR - 1,
                "step": step, "agg": agg})
            assert r.status_code == 200, r.json
            assert r.json["tier"] == tier
            [s] = r.json["series"]
            out[step, agg] = sum(v for _, v in s["points"])
    return out


def expected(values: list[float]) -> dict[tuple[str, str], float]:
    return {(step, agg): float(len(values)) if agg == "count" else sum(values)
            for step in ("60s", "5m", "1h") for agg in ("count", "sum")}


def stored(conn: psycopg.Connection) -> list[tuple[int, float]]:
    return conn.execute(
        "SELECT extract(epoch FROM time)::bigint, value FROM samples ORDER BY series_id, time"
    ).fetchall()


def invalidations(conn: psycopg.Connection) -> list[tuple[datetime, datetime]]:
    return conn.execute(
        "SELECT lo, hi FROM pgpulse_invalidations WHERE relation = 'samples' ORDER BY lo").fetchall()


@pytest.mark.engine("portable")  # the invalidation log; timescale: the PGlite tests below
def test_retried_batch_without_key_changes_no_answer(client, conn, db_url):
    base = hour_two_back()
    post(client, base, VALUES)
    cycle(db_url)
    first = answers(client, base)
    assert first == pytest.approx(expected(VALUES))
    post(client, base, VALUES)  # the retry: no Idempotency-Key, same body
    assert len(stored(conn)) == N
    assert answers(client, base) == pytest.approx(first)  # raw, and tiers before the rollup
    # Nothing changed, so nothing is logged for the tiers to rebuild.
    assert invalidations(conn) == []
    cycle(db_url)
    assert answers(client, base) == pytest.approx(first)


@pytest.mark.engine("portable")  # the invalidation log; timescale: the PGlite tests below
def test_later_batch_with_other_values_wins_everywhere(client, conn, db_url):
    base = hour_two_back()
    post(client, base, VALUES)
    cycle(db_url)
    assert answers(client, base) == pytest.approx(expected(VALUES))
    post(client, base, NEW_VALUES[:OVERWRITTEN])  # late overwrites, below the watermarks
    assert [v for _, v in stored(conn)] == NEW_VALUES
    # The rows the upsert updated reach the invalidation log, as late inserts do.
    [(lo, hi)] = invalidations(conn)
    assert (lo.timestamp(), hi.timestamp()) == (base, base + 10 * (OVERWRITTEN - 1))
    now = answers(client, base)
    assert now["60s", "sum"] == pytest.approx(sum(NEW_VALUES))  # raw: at once
    cycle(db_url)
    assert answers(client, base) == pytest.approx(expected(NEW_VALUES))
    assert invalidations(conn) == []


def test_api_still_refuses_one_series_and_time_twice_in_a_batch(client, conn):
    t = time.time() - 60
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "dup_temp", "value": 1, "timestamp": t},
        {"name": "dup_temp", "value": 2, "timestamp": t}]})
    assert assert_error(r, 400)["reason"] == "duplicate"
    assert stored(conn) == []


# -- the store: every producer (API, ETL) writes samples through it -----------------

T0 = 1_800_000_000  # Unix seconds
T0_US = T0 * 1_000_000 - PG_EPOCH_US


def batch(*rows: tuple[int, float], name: str = "m") -> Batch:
    """Rows of (seconds after T0, value) of one series."""
    b = Batch()
    k = b.series(name, {})
    b.rows = [(T0_US + s * 1_000_000, k, v) for s, v in rows]
    return b


def test_batch_with_one_key_twice_keeps_the_later_row(db_url, conn):
    limits = series.SeriesLimits()
    with psycopg.connect(db_url) as c:
        assert samples.write_batch(c, batch((0, 1.0), (1, 5.0), (0, 2.0), (0, 3.0)), limits, tenant="default")[0] == 4
    assert stored(conn) == [(T0, 3.0), (T0 + 1, 5.0)]
    # Several batches in one transaction: each later batch wins over the earlier ones.
    with psycopg.connect(db_url) as c:
        samples.write_batch(c, batch((0, 7.0), (2, 8.0)), limits, tenant="default")
        samples.write_batch(c, batch((0, 9.0), (0, 4.0), (1, 5.0)), limits, tenant="default")
        samples.write_batch(c, batch((3, 6.0)), limits, tenant="default")  # no conflict: the plain COPY
    assert stored(conn) == [(T0, 4.0), (T0 + 1, 5.0), (T0 + 2, 8.0), (T0 + 3, 6.0)]


def test_write_stays_inside_the_callers_transaction(db_url, conn):
    limits = series.SeriesLimits()
    with psycopg.connect(db_url) as c:
        samples.write_batch(c, batch((0, 1.0)), limits, tenant="default")
    with psycopg.connect(db_url) as c:
        [[sid]] = c.execute("SELECT id FROM series").fetchall()
        c.commit()  # idle: the write's savepoint must open a transaction, not commit one
        b = batch((0, 2.0), (0, 3.0), (1, 4.0))
        samples.write(c, b, [sid])
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        c.rollback()
    assert stored(conn) == [(T0, 1.0)]
    with psycopg.connect(db_url, autocommit=True) as c:  # autocommit: one transaction of its own
        samples.write(c, batch((0, 2.0), (0, 3.0), (1, 4.0)), [sid])
    assert stored(conn) == [(T0, 3.0), (T0 + 1, 4.0)]


def test_etl_readings_of_one_source_and_time_keep_the_last_written(db_url, conn):
    # Two documents (other _id) of the same device and time: the ETL's samples go
    # through the same writer, so one sample, the value written last.
    run_id = "00000000-0000-0000-0000-000000000000"

    def load_docs(docs: list[dict]) -> int:
        batch = Transformer(etl_settings(ETL_SERIES="temperature")).batch(docs)
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("INSERT INTO etl_runs (id, trigger, status) VALUES (%s, 'cli', 'running') "
                      "ON CONFLICT DO NOTHING", (run_id,))
            load.prepare(c)
            with c.transaction():
                return load.write(c, batch, run_id, series.SeriesLimits()).samples

    assert load_docs([{"_id": "a", **reading(0, temperature=1.5)},
                      {"_id": "b", **reading(0, temperature=2.5)}]) == 2
    assert [v for _, v in stored(conn)] == [2.5]
    assert load_docs([{"_id": "c", **reading(0, temperature=3.5)}]) == 1
    assert [v for _, v in stored(conn)] == [3.5]


# -- timescale (PGlite) ---------------------------------------------------------------

SET_BASE = "SELECT set_config('pgpulse_test.base', $1, false)"
BASE_SQL = "current_setting('pgpulse_test.base')::timestamptz"
RETENTION = ("30 days", "90 days", "365 days", "1 hour", "3 days")  # raw, 5m, 1h, late, compress
SERIES = "INSERT INTO series (name, labels) VALUES ('dup_temp', '{\"host\": \"a\"}');"


def stage(values_sql: str, count: int) -> str:
    """Rows i = 0..count-1 at base + 10 s * i with value ``values_sql`` into the staging
    table (the order of insertion is the batch's order)."""
    return (f"INSERT INTO pgpulse_samples_stage (time, series_id, value) "
            f"SELECT {BASE_SQL} + i * INTERVAL '10 seconds', 1, {values_sql} "
            f"FROM generate_series(0, {count - 1}) i ORDER BY i;")


def store_write(*staged: str) -> str:
    """One write of the store: staged rows, then its upsert, in one transaction."""
    return "\n".join([f"{samples.STAGE};", *staged, f"{samples.UPSERT};"])


FIRST = store_write(stage("(i % 7)::float8", N))
# An overwrite batch holding each key twice: the later row (1000 + i) must win.
OVERWRITE = store_write(stage("-1", OVERWRITTEN), stage("1000 + i", OVERWRITTEN))
POLICY_CYCLE = [
    exec_("DO $$ DECLARE j integer; BEGIN SELECT job_id INTO STRICT j FROM timescaledb_information.jobs "
          f"WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = '{cagg}'; "
          "CALL run_job(j); END $$")
    for cagg in ("samples_5m", "samples_1h")
] * 2  # twice: see tests/test_late_data.py (the 1h policy may take the 5m refresh one run late)
HOUR_RANGE = f"{{t}} >= {BASE_SQL} AND {{t}} < {BASE_SQL} + INTERVAL '1 hour'"
TS_READS = [
    query(f"SELECT count(*)::float8 AS count, sum(value) AS sum FROM samples "
          f"WHERE {HOUR_RANGE.format(t='time')}"),
    query(f"SELECT sum(count)::float8 AS count, sum(sum) AS sum FROM samples_5m "
          f"WHERE {HOUR_RANGE.format(t='bucket')}"),
    query(f"SELECT sum(count)::float8 AS count, sum(sum) AS sum FROM samples_1h "
          f"WHERE {HOUR_RANGE.format(t='bucket')}"),
]


def _totals(rows: list[list[dict[str, Any]]]) -> list[tuple[float, float]]:
    return [(float(r[0]["count"]), float(r[0]["sum"])) for r in rows]


@pytest.fixture(scope="module")
def timescale_totals() -> dict[str, list[tuple[float, float]]]:
    base = datetime.fromtimestamp(hour_two_back(), UTC).isoformat()
    n = len(TS_READS)
    steps = [
        exec_(schema.offline_sql("timescale")),
        query("SELECT pgpulse_configure($1::interval, $2::interval, $3::interval, $4::interval, "
              "$5::interval)", *RETENTION),
        query(SET_BASE, base),
        exec_(SERIES),
        exec_(FIRST), *POLICY_CYCLE, *TS_READS,
        exec_(FIRST), *POLICY_CYCLE, *TS_READS,
        exec_(OVERWRITE), *POLICY_CYCLE, *TS_READS,
    ]
    results = PGliteRunner().run(steps)
    per_phase = len(POLICY_CYCLE) + n + 1
    phases = [results[-3 * per_phase:-2 * per_phase], results[-2 * per_phase:-per_phase],
              results[-per_phase:]]
    return {name: _totals(phase[-n:])
            for name, phase in zip(("first", "retried", "overwritten"), phases, strict=True)}


def _close(got: list[tuple[float, float]], values: list[float]) -> bool:
    want = (float(len(values)), sum(values))
    return all(math.isclose(c, want[0]) and math.isclose(s, want[1]) for c, s in got)


def test_retried_batch_changes_no_answer_timescale(timescale_totals):
    assert _close(timescale_totals["first"], VALUES), timescale_totals["first"]
    assert _close(timescale_totals["retried"], VALUES), timescale_totals["retried"]


def test_overwrite_reaches_every_tier_timescale(timescale_totals):
    # raw, 5m, 1h: the later batch's values, and of the batch's two rows of a key the later.
    assert _close(timescale_totals["overwritten"], NEW_VALUES), timescale_totals["overwritten"]


# -- revision 0005 --------------------------------------------------------------------

BEFORE = "0004_etl_typed_ids"
AFTER = "0005_samples_last_write_wins"
# (series, seconds after T0, value) in the order written: keys (1, 0) and (2, 10)
# are written three and two times, the last value not the largest.
OLD_ROWS = [(1, 0, 1.0), (1, 10, 2.0), (2, 10, 5.0), (1, 0, 8.0), (2, 10, 3.0), (1, 0, 6.0)]


def test_migration_keeps_one_row_per_series_and_time_portable(empty_db_url):
    schema.upgrade(empty_db_url, "portable", BEFORE)
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        c.execute("INSERT INTO series (name) VALUES ('a'), ('b')")
        for sid, s, v in OLD_ROWS:
            c.execute("INSERT INTO samples (time, series_id, value) "
                      "VALUES (to_timestamp(%s), %s, %s)", (T0 + s, sid, v))
        # Rolled up past that time: the rewritten rows must be logged for a rebuild.
        c.execute("INSERT INTO pgpulse_watermarks (relation, watermark, previous) "
                  "VALUES ('samples_5m', to_timestamp(%s), to_timestamp(%s))", (T0 + HOUR, T0 + HOUR))
    schema.upgrade(empty_db_url, "portable", AFTER)
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        rows = c.execute("SELECT series_id, extract(epoch FROM time)::bigint - %s, value FROM samples "
                         "ORDER BY 1, 2", (T0,)).fetchall()
        assert rows == [(1, 0, 6.0), (1, 10, 2.0), (2, 10, 3.0)]  # the last written of each
        assert [(lo.timestamp(), hi.timestamp()) for lo, hi in invalidations(c)] == [(T0, T0 + 10)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("INSERT INTO samples VALUES (to_timestamp(%s), 1, 0)", (T0,))
    schema.downgrade(empty_db_url, BEFORE)
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        c.execute("INSERT INTO samples VALUES (to_timestamp(%s), 1, 0)", (T0,))  # allowed again
        assert c.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'samples_series_time_idx'"
                         ).fetchone()[0].startswith("CREATE INDEX")


def _offline(engine: str, revisions: str) -> str:
    buffer = io.StringIO()
    cfg = schema.alembic_config(engine_request=engine)
    cfg.output_buffer = buffer
    command.upgrade(cfg, revisions, sql=True)
    return buffer.getvalue()


def test_migration_keeps_one_row_per_series_and_time_timescale():
    at = f"to_timestamp({T0}) + INTERVAL '1 second' *"
    insert = "INSERT INTO samples (time, series_id, value) VALUES " + ", ".join(
        f"({at} {s}, {sid}, {v})" for sid, s, v in OLD_ROWS) + ";"
    # A second chunk two days on, compressed, with duplicates inside it and written
    # into it after compression: compressed rows have no ctid and no order of writing.
    def later(rows: list[tuple[int, int, float]]) -> str:
        return "INSERT INTO samples (time, series_id, value) VALUES " + ", ".join(
            f"({at} {s + 2 * 86400}, {sid}, {v})" for sid, s, v in rows) + ";"
    day2 = [(1, 0, 1.0), (1, 10, 2.0), (2, 10, 3.0)]
    steps = [
        exec_(schema.offline_sql("timescale", BEFORE)),
        exec_("INSERT INTO series (name) VALUES ('a'), ('b');" + insert + later(day2)),
        query(f"SELECT compress_chunk(c)::text AS c FROM show_chunks('samples', "
              f"newer_than => to_timestamp({T0 + 86400})) c"),
        exec_(later([(1, 0, 9.0), (1, 10, 2.0), (2, 10, 0.5)])),
        exec_(_offline("timescale", f"{BEFORE}:{AFTER}")),
        query(f"SELECT series_id, (extract(epoch FROM time)::bigint - {T0})::int AS s, value "
              "FROM samples ORDER BY 1, 2"),
    ]
    results = PGliteRunner().run(steps)
    assert len(results[2]) == 1  # one chunk was compressed
    d = 2 * 86400
    # With a compressed chunk present, the largest value of a duplicated key is kept.
    assert [(r["series_id"], r["s"], r["value"]) for r in results[-1]] == [
        (1, 0, 8.0), (1, 10, 2.0), (1, d, 9.0), (1, d + 10, 2.0), (2, 10, 5.0), (2, d + 10, 3.0)]


def test_compressed_chunk_takes_overwrites_timescale():
    # Old samples live in compressed chunks: an overwrite there goes through the same
    # upsert, and a plain insert of a stored key fails with the unique violation that
    # sends the store's COPY to its upsert.
    at = f"to_timestamp({T0}) + i * INTERVAL '10 seconds'"
    rows = ("INSERT INTO pgpulse_samples_stage (time, series_id, value) "
            f"SELECT {at}, 1, {{v}} FROM generate_series(0, 99) i ORDER BY i;")
    steps = [
        exec_(schema.offline_sql("timescale")),
        exec_("INSERT INTO series (name) VALUES ('a');"),
        exec_(store_write(rows.format(v="i"))),
        query("SELECT compress_chunk(c)::text AS c FROM show_chunks('samples') c"),
        exec_(store_write(rows.format(v="1000 + i"))),
        query("SELECT count(*) AS n, sum(value) AS s FROM samples"),
        exec_(f"DO $$ BEGIN INSERT INTO samples VALUES (to_timestamp({T0}), 1, 5); "
              "RAISE EXCEPTION 'a stored key was inserted again'; "
              "EXCEPTION WHEN unique_violation THEN NULL; END $$"),
        query("SELECT count(*) AS n, sum(value) AS s FROM samples"),
    ]
    results = PGliteRunner().run(steps)
    assert len(results[3]) == 1  # the chunk was compressed
    assert results[5] == results[7] == [{"n": 100, "s": sum(1000.0 + i for i in range(100))}]
