"""Every accepted sample reaches every tier, however late it comes.

On-time data for the last three hours goes in and one scheduler cycle rolls it up;
then samples and snapshots 2 hours, 2 days and 6 days old, and ETL-derived samples
of readings three weeks old (inside a 30-day raw retention), are written. After one
more scheduler cycle the 5m and 1h tiers equal the aggregates computed from raw,
bucket by bucket, on both engines:

* portable: the real PostgreSQL server, the jobs of ``pgpulse.scheduler`` run once
  (the invalidation log of revision 0003 names the late buckets);
* timescale: PGlite with TimescaleDB (``tests/pglite_runner.py``), each refresh
  policy job run once, 5m before 1h, as TimescaleDB's scheduler would (PGlite has no
  background workers); and the same steps on the real TimescaleDB server under test
  when the suite runs with ``PGPULSE_TEST_ENGINE=timescale`` (its scheduler paused,
  so the test runs the jobs when it means to).
"""

# ruff: noqa: S608 - the SQL here is composed of this file's constants, never of values

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from pglite_runner import PAUSE_JOBS, PGliteRunner, Step, exec_, query, run_on_server
from psycopg import sql
from psycopg.rows import dict_row

from pgpulse import scheduler, schema, tiers

BASE = datetime.now(UTC).replace(microsecond=0)
SET_BASE = "SELECT set_config('pgpulse_test.base', {}, false)"
RETENTION = ("30 days", "90 days", "365 days", "1 hour", "3 days")  # raw, 5m, 1h, late, compress

SERIES = """
INSERT INTO series (name, labels) VALUES ('disk_temp', '{"host": "alpha"}'),
                                         ('tank_level', '{"source": "etl"}');
"""
ON_TIME = """
INSERT INTO samples (time, series_id, value)
SELECT t, 1, extract(epoch FROM t)::bigint % 97
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     generate_series(b.b - INTERVAL '3 hours', b.b, INTERVAL '10 seconds') t;
INSERT INTO system_metrics (time, host, data)
SELECT t, 'alpha', jsonb_build_object('cpu', jsonb_build_object('percent', extract(epoch FROM t)::bigint % 89))
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     generate_series(b.b - INTERVAL '3 hours', b.b, INTERVAL '30 seconds') t;
"""
# Late: into the on-time series' rolled-up past (one of them overwrites an on-time sample,
# last write wins as the store writes), and whole new buckets far back.
LATE = """
INSERT INTO samples (time, series_id, value)
SELECT b.b - age + k * INTERVAL '7 seconds' + INTERVAL '3 seconds', 1, 1000 + k
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     unnest(ARRAY[INTERVAL '2 hours', INTERVAL '2 days', INTERVAL '6 days']) AS age,
     generate_series(0, 4) AS k
ON CONFLICT (series_id, time) DO UPDATE SET value = EXCLUDED.value;
INSERT INTO system_metrics (time, host, data)
SELECT b.b - age + k * INTERVAL '30 seconds' + INTERVAL '1 second', 'beta',
       jsonb_build_object('cpu', jsonb_build_object('percent', 10 + k))
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     unnest(ARRAY[INTERVAL '2 hours', INTERVAL '2 days', INTERVAL '6 days']) AS age,
     generate_series(0, 3) AS k;
"""
# What the ETL derives from readings three weeks old: a reading every 20 minutes
# for a day (written here as the store writes them, one statement).
ETL_READINGS = """
INSERT INTO samples (time, series_id, value)
SELECT t, 2, extract(minute FROM t) + 0.5
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     generate_series(b.b - INTERVAL '21 days', b.b - INTERVAL '20 days', INTERVAL '20 minutes') t;
"""
CUTOFF = "date_bin(INTERVAL '5 minutes', current_setting('pgpulse_test.base')::timestamptz, '1970-01-01')"

LAST = "(array_agg({v} ORDER BY time DESC))[1]"
HOST_VALUE = "(data #>> '{cpu,percent}')::double precision"
# The tiers' rows for complete buckets, and the same computed from raw.
READS = {
    "samples_5m": f"SELECT bucket, series_id, count, sum, min, max, last FROM samples_5m "
                  f"WHERE bucket < {CUTOFF} ORDER BY 2, 1",
    "samples_1h": f"SELECT bucket, series_id, count, sum, min, max, last FROM samples_1h "
                  f"WHERE bucket < date_bin(INTERVAL '1 hour', {CUTOFF}, '1970-01-01') ORDER BY 2, 1",
    "system_metrics_5m": "SELECT bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, "
                         "cpu_percent_min, cpu_percent_max, cpu_percent_last FROM system_metrics_5m "
                         f"WHERE bucket < {CUTOFF} ORDER BY 2, 1",
    "system_metrics_1h": "SELECT bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, "
                         "cpu_percent_min, cpu_percent_max, cpu_percent_last FROM system_metrics_1h "
                         f"WHERE bucket < date_bin(INTERVAL '1 hour', {CUTOFF}, '1970-01-01') ORDER BY 2, 1",
}


def _raw_samples(width: str, end: str) -> str:
    return (f"SELECT date_bin(INTERVAL '{width}', time, '1970-01-01') AS bucket, series_id, "
            f"count(value) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max, "
            f"{LAST.format(v='value')} AS last FROM samples WHERE time < {end} GROUP BY 1, 2 ORDER BY 2, 1")


def _raw_hosts(width: str, end: str) -> str:
    return (f"SELECT date_bin(INTERVAL '{width}', time, '1970-01-01') AS bucket, host, count(*) AS snapshots, "
            f"count({HOST_VALUE}) AS cpu_percent_count, sum({HOST_VALUE}) AS cpu_percent_sum, "
            f"min({HOST_VALUE}) AS cpu_percent_min, max({HOST_VALUE}) AS cpu_percent_max, "
            f"{LAST.format(v=HOST_VALUE)} AS cpu_percent_last "
            f"FROM system_metrics WHERE time < {end} GROUP BY 1, 2 ORDER BY 2, 1")


HOUR_CUTOFF = f"date_bin(INTERVAL '1 hour', {CUTOFF}, '1970-01-01')"
FROM_RAW = {
    "samples_5m": _raw_samples("5 minutes", CUTOFF),
    "samples_1h": _raw_samples("1 hour", HOUR_CUTOFF),
    "system_metrics_5m": _raw_hosts("5 minutes", CUTOFF),
    "system_metrics_1h": _raw_hosts("1 hour", HOUR_CUTOFF),
}
LATE_BUCKETS = """
SELECT count(*) AS n FROM samples_5m
WHERE bucket < current_setting('pgpulse_test.base')::timestamptz - INTERVAL '3 hours 5 minutes'
"""


def _normalize(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 25 and value[10] == "T":
        return datetime.fromisoformat(value)
    return value


def _same(name: str, tier: list[dict], raw: list[dict]) -> None:
    tier = [{k: _normalize(v) for k, v in r.items()} for r in tier]
    raw = [{k: _normalize(v) for k, v in r.items()} for r in raw]
    assert [tuple(r.values())[:2] for r in tier] == [tuple(r.values())[:2] for r in raw], name
    for t, r in zip(tier, raw, strict=True):
        for k in r:
            a, b = t[k], r[k]
            ok = (a is None and b is None) or (
                a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
                if isinstance(b, (int, float)) and not isinstance(b, bool) else a == b)
            assert ok, f"{name} {t['bucket']} {k}: tier {a!r}, raw {b!r}"


def _check(results: dict[str, tuple[list[dict], list[dict]]]) -> None:
    for name, (tier, raw) in results.items():
        _same(name, tier, raw)
    # Not a vacuous comparison: the late buckets are there, far below the watermark.
    s5 = results["samples_5m"][0]
    assert {r["series_id"] for r in s5} == {1, 2}
    assert sum(r["count"] for r in s5 if r["series_id"] == 2) == 73
    assert sum(r["count"] for r in results["samples_1h"][0] if r["series_id"] == 1) == sum(
        r["count"] for r in results["samples_1h"][1] if r["series_id"] == 1)
    assert {r["host"] for r in results["system_metrics_1h"][0]} == {"alpha", "beta"}
    assert sum(r["snapshots"] for r in results["system_metrics_5m"][0] if r["host"] == "beta") == 12


@pytest.mark.engine("portable")
def test_late_data_reaches_every_tier_portable(db_url):
    settings = dataclasses.replace(
        schema_settings(db_url), raw_retention_days=30, retention_5m_days=90, retention_1h_days=365
    )
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        schema.configure(conn, settings)
        conn.execute(SET_BASE.format("%s"), (BASE.isoformat(),))
        conn.execute(SERIES)
        conn.execute(ON_TIME)
        cycle(db_url, settings)
        conn.execute(LATE)
        conn.execute(ETL_READINGS)
        # Before the next cycle the late rows are raw-only: the tiers differ, and
        # `pgpulse status` says late writes are waiting.
        assert conn.execute(LATE_BUCKETS).fetchone()["n"] == 0
        waiting = late_writes_waiting(db_url)  # one log row per hour a statement touched
        assert waiting["samples"] >= 3 + 24 and waiting["system_metrics"] >= 3
        cycle(db_url, settings)
        _check({name: (conn.execute(READS[name]).fetchall(), conn.execute(FROM_RAW[name]).fetchall())
                for name in READS})
        assert late_writes_waiting(db_url) == {"samples": 0, "system_metrics": 0}


def late_writes_waiting(db_url: str) -> dict[str, int | None]:
    with psycopg.connect(db_url) as plain:
        return {t.relation: t.late_writes for t in tiers.status(plain) if t.tier == "raw"}


def schema_settings(db_url: str):
    from pgpulse.settings import load_core

    return load_core({}, database_url=db_url, engine="portable")


def cycle(db_url: str, settings) -> None:
    """One scheduler cycle: every job the portable scheduler runs, once."""
    jobs = scheduler.build(db_url, settings, "portable").get_jobs()
    assert {j.id for j in jobs} >= {"rollup", "maintain"}
    for job in jobs:
        job.func()


POLICY_CYCLE = [
    exec_("DO $$ DECLARE j integer; BEGIN SELECT job_id INTO STRICT j FROM timescaledb_information.jobs "
          f"WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = '{cagg}'; "
          "CALL run_job(j); END $$")
    for cagg in ("samples_5m", "system_metrics_5m", "samples_1h", "system_metrics_1h")
]


def _late_steps() -> list[Step]:
    """The timescale scenario after the DDL: on-time data, a policy cycle, late data,
    policy cycles, then each tier and the same from raw."""
    return [
        query("SELECT pgpulse_configure($1::interval, $2::interval, $3::interval, $4::interval, $5::interval)",
              *RETENTION),
        PAUSE_JOBS,
        query(SET_BASE.format("$1"), BASE.isoformat()),
        exec_(SERIES),
        exec_(ON_TIME),
        *POLICY_CYCLE,
        exec_(LATE),
        exec_(ETL_READINGS),
        query(LATE_BUCKETS),
        # Two runs of each policy: on TimescaleDB 2.23 (PGlite) a late write whose only
        # re-materialised 5m bucket is the first of its hour reaches the 1h aggregate at
        # the 1h policy's next run, not the one right after the 5m refresh (seen at
        # BASE = hh:03:52, late rows all in the hour's first 5m bucket; a real
        # TimescaleDB 2.29.2 takes them in at the first run). With TimescaleDB's
        # scheduler that is within the 1h policy's 5-minute schedule.
        *POLICY_CYCLE,
        *POLICY_CYCLE,
        *(query(READS[name]) for name in READS),
        *(query(FROM_RAW[name]) for name in READS),
    ]


def _late_results(results: list) -> dict[str, Any]:
    n = len(READS)
    tiers, raw = results[-2 * n:-n], results[-n:]
    return {"before": results[-2 * n - 2 * len(POLICY_CYCLE) - 1],
            "tiers": dict(zip(READS, zip(tiers, raw, strict=True), strict=True))}


@pytest.fixture(scope="module")
def timescale_results() -> dict[str, Any]:
    return _late_results(PGliteRunner().run([exec_(schema.offline_sql("timescale")), *_late_steps()]))


def test_late_data_reaches_every_tier_timescale(timescale_results):
    # Real-time aggregation covers only what is above the watermark: the late rows
    # are not in the tiers until a refresh takes them in.
    assert timescale_results["before"] == [{"n": 0}]
    _check(timescale_results["tiers"])


@pytest.mark.engine("timescale")
def test_late_data_reaches_every_tier_timescale_server(db_url):
    results = _late_results(run_on_server(db_url, _late_steps()))
    assert results["before"] == [{"n": 0}]
    _check(results["tiers"])


# -- `pgpulse tiers refresh`: a back-fill that ends at the last complete bucket ----------

# Two days of data loaded before any refresh (a back-fill), up to the current bucket.
BACKFILL = """
INSERT INTO samples (time, series_id, value)
SELECT t, 1, extract(epoch FROM t)::bigint % 101
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     generate_series(b.b - INTERVAL '2 days', b.b, INTERVAL '1 minute') t;
INSERT INTO system_metrics (time, host, data)
SELECT t, 'alpha', jsonb_build_object('cpu', jsonb_build_object('percent', extract(epoch FROM t)::bigint % 89))
FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS b) b,
     generate_series(b.b - INTERVAL '2 days', b.b, INTERVAL '1 minute') t;
"""
# Samples that arrive after the refresh, in the bucket open now (which the refresh,
# ending at the last complete bucket before it, did not materialise).
INTO_OPEN_BUCKET = """
INSERT INTO samples (time, series_id, value)
SELECT date_bin(INTERVAL '5 minutes', now(), '1970-01-01')
       + k * INTERVAL '5 seconds' + INTERVAL '500 milliseconds', 1, 500 + k
FROM generate_series(1, 40) AS k;
"""
ALL_READS = {name: sql.replace(CUTOFF, "'infinity'").replace(HOUR_CUTOFF, "'infinity'")
             for name, sql in READS.items()}
ALL_FROM_RAW = {name: sql.replace(HOUR_CUTOFF, "'infinity'").replace(CUTOFF, "'infinity'")
                for name, sql in FROM_RAW.items()}


def _check_all(results: dict[str, tuple[list[dict], list[dict]]]) -> None:
    for name, (tier, raw) in results.items():
        _same(name, tier, raw)
    s5 = results["samples_5m"][0]
    assert len(s5) >= 2 * 24 * 12 and sum(r["count"] for r in s5) == 2 * 24 * 60 + 1 + 40


@pytest.mark.engine("portable")
def test_tiers_refresh_backfills_and_leaves_the_open_bucket_live_portable(db_url, monkeypatch):
    from pgpulse.cli import main

    monkeypatch.setenv("DATABASE_URL", db_url)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(SET_BASE.format("%s"), (BASE.isoformat(),))
        conn.execute(SERIES)
        assert main(["tiers", "refresh"]) == 0  # watermarks now, nothing below them
        # Rows that bypass the log (as a restore or a replica-mode load does): only a
        # back-fill finds them.
        conn.execute("SET session_replication_role = replica")
        conn.execute(BACKFILL)
        conn.execute("RESET session_replication_role")
        assert main(["tiers", "refresh"]) == 0
        conn.execute(INTO_OPEN_BUCKET)
        _check_all({name: (conn.execute(ALL_READS[name]).fetchall(), conn.execute(ALL_FROM_RAW[name]).fetchall())
                    for name in READS})


def test_tiers_refresh_backfills_and_leaves_the_open_bucket_live_timescale():
    from pgpulse.settings import load_core
    from pgpulse.tiers import Retention, refresh_windows

    now = datetime.now(UTC)
    windows = refresh_windows(now, Retention.from_settings(load_core({})))
    steps = [
        exec_(schema.offline_sql("timescale")),
        query("SELECT pgpulse_configure($1::interval, $2::interval, $3::interval, $4::interval, $5::interval)",
              *RETENTION),
        query(SET_BASE.format("$1"), BASE.isoformat()),
        exec_(SERIES),
        exec_(BACKFILL),
        # What `pgpulse tiers refresh` runs, window by window.
        *(query("CALL refresh_continuous_aggregate($1, $2::timestamptz, $3::timestamptz)",
                cagg, start.isoformat(), end.isoformat()) for cagg, start, end in windows),
        exec_(INTO_OPEN_BUCKET),
        *(query(ALL_READS[name]) for name in READS),
        *(query(ALL_FROM_RAW[name]) for name in READS),
    ]
    results = PGliteRunner().run(steps)
    n = len(READS)
    _check_all(dict(zip(READS, zip(results[-2 * n:-n], results[-n:], strict=True), strict=True)))


@pytest.mark.engine("timescale")
def test_tiers_refresh_backfills_and_leaves_the_open_bucket_live_timescale_server(db_url, monkeypatch):
    """`pgpulse tiers refresh` itself on the real server: two days loaded before any
    refresh are in every tier after it, and a query right after it equals raw."""
    from pgpulse.cli import main

    monkeypatch.setenv("DATABASE_URL", db_url)
    run_on_server(db_url, [PAUSE_JOBS])
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(SET_BASE.format("%s"), (BASE.isoformat(),))
        conn.execute(SERIES)
        conn.execute(BACKFILL)
        assert main(["tiers", "refresh"]) == 0
        # Materialised, not only computed in real time: the refresh back-filled two
        # days of 5m buckets, and none of the bucket open now.
        mat = conn.execute(
            "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name) AS m "
            "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'samples_5m'"
        ).fetchone()["m"]
        stored = conn.execute(sql.SQL("SELECT count(*) AS n, max(bucket) AS newest FROM {}").format(
            sql.SQL(mat))).fetchone()
        assert stored["n"] >= 2 * 24 * 12 - 1
        assert stored["newest"] < tiers._last_complete(datetime.now(UTC), tiers.tier("5m"))
        conn.execute(INTO_OPEN_BUCKET)
        _check_all({name: (conn.execute(ALL_READS[name]).fetchall(), conn.execute(ALL_FROM_RAW[name]).fetchall())
                    for name in READS})
