"""Both engine modes turn the same raw data into the same 5m and 1h tiers.

One data set, generated in SQL, goes through:

* the ``timescale`` engine: the DDL of ``schema.offline_sql('timescale')`` on PGlite
  with TimescaleDB 2.23 (``tests/pglite_runner.py``), a stand-in for a real
  TimescaleDB server, which cannot be installed on these machines (the full Docker
  stack runs the real one); its continuous aggregates are refreshed explicitly, as
  PGlite runs no background workers;
* the ``portable`` engine: a freshly migrated database on the real PostgreSQL
  server of ``conftest.py``, rolled up by ``pgpulse_refresh_tiers``.

The four reader relations must hold the same rows; floats are compared with a
relative tolerance of 1e-9 (summation order and libm differ between the engines).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pglite_runner import PGliteRunner, exec_, query
from psycopg.rows import dict_row

from pgpulse import schema

# The data set: six whole hours ending an hour before the current hour, so every
# bucket is complete and lies within the last day (inside every retention).
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=7)
HOURS = 6
# The snapshot whose cpu.percent is a string: the last one of its 5m bucket.
ODD_SNAPSHOT = BASE + timedelta(hours=1, minutes=4, seconds=30)

# Reads current_setting('pgpulse_test.base'), set beforehand by set_config, so the
# text is identical for both engines and no value is formatted into SQL.
DATA_SQL = """
INSERT INTO series (name, labels, type) VALUES
    ('cpu_temp', '{"host": "alpha"}', 'gauge'),
    ('cpu_temp', '{"host": "beta"}', 'gauge'),
    ('requests_total', '{"host": "alpha", "route": "/api"}', 'counter'),
    ('queue_depth', '{}', 'gauge');

-- 10 s steps; queue_depth only every 30 s and not at all in the fourth hour.
INSERT INTO samples (time, series_id, value)
SELECT g.t, s.id,
       CASE s.name
           WHEN 'cpu_temp' THEN 40 + s.id + 10 * sin(g.n / 90.0 + s.id)
           WHEN 'requests_total' THEN g.n * 7 + g.n % 5
           ELSE ((g.n * 37) % 101) / 4.0
       END
FROM (SELECT t, (extract(epoch FROM t - b.base) / 10)::bigint AS n
      FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS base) b,
           generate_series(b.base, b.base + INTERVAL '6 hours' - INTERVAL '10 seconds',
                           INTERVAL '10 seconds') AS t) g
CROSS JOIN series s
WHERE s.name <> 'queue_depth'
   OR (g.n % 3 = 0 AND NOT (g.n >= 3 * 360 AND g.n < 4 * 360));

-- One snapshot per host every 30 s. beta's cpu.percent is the string 'n/a' once
-- (must count as missing), alpha lacks swap.percent in its first hour.
INSERT INTO system_metrics (time, host, data)
SELECT g.t, h.host,
       jsonb_build_object(
           'version', 1,
           'cpu', jsonb_build_object(
               'percent', CASE WHEN h.host = 'beta' AND g.t = g.base + INTERVAL '64 minutes 30 seconds'
                               THEN to_jsonb('n/a'::text)
                               ELSE to_jsonb(50 + 40 * sin(g.n / 20.0 + h.k)) END,
               'iowait', (g.n % 17) / 8.0),
           'load', jsonb_build_object(
               'load1', round((1 + h.k + cos(g.n / 30.0))::numeric, 2),
               'load5', (g.n % 50) / 25.0 + h.k,
               'load15', 0.5 * h.k + (g.n % 7) / 100.0),
           'memory', jsonb_build_object('percent', 30 + h.k * 10 + (g.n % 60) / 3.0),
           'swap', CASE WHEN h.host = 'alpha' AND g.n < 120 THEN '{}'::jsonb
                        ELSE jsonb_build_object('percent', (g.n % 11) * 1.5) END,
           'filesystems', jsonb_build_object('/', jsonb_build_object('percent', 60 + h.k + g.n / 1000.0)),
           'disk', jsonb_build_object('read_bytes_per_s', (g.n * 4096) % 1000000,
                                      'write_bytes_per_s', (g.n * 8192 + h.k) % 2000000),
           'network', jsonb_build_object('rx_bytes_per_s', 1000 * h.k + exp((g.n % 10) / 3.0),
                                         'tx_bytes_per_s', (g.n % 256) * 512),
           'processes', jsonb_build_object('count', 200 + h.k * 20 + g.n % 13))
FROM (SELECT b.base, t, (extract(epoch FROM t - b.base) / 30)::bigint AS n
      FROM (SELECT current_setting('pgpulse_test.base')::timestamptz AS base) b,
           generate_series(b.base, b.base + INTERVAL '6 hours' - INTERVAL '30 seconds',
                           INTERVAL '30 seconds') AS t) g
CROSS JOIN (VALUES ('alpha', 1), ('beta', 2)) AS h (host, k);
"""

SET_BASE = "SELECT set_config('pgpulse_test.base', {}, false)"

READS = {
    "samples_5m": "SELECT * FROM samples_5m ORDER BY series_id, bucket",
    "samples_1h": "SELECT * FROM samples_1h ORDER BY series_id, bucket",
    "system_metrics_5m": "SELECT * FROM system_metrics_5m ORDER BY host, bucket",
    "system_metrics_1h": "SELECT * FROM system_metrics_1h ORDER BY host, bucket",
}

REFRESH = [
    "CALL refresh_continuous_aggregate('samples_5m', NULL, NULL)",
    "CALL refresh_continuous_aggregate('samples_1h', NULL, NULL)",
    "CALL refresh_continuous_aggregate('system_metrics_5m', NULL, NULL)",
    "CALL refresh_continuous_aggregate('system_metrics_1h', NULL, NULL)",
]


def _normalize(value: Any) -> Any:
    """PGlite gives ISO strings for timestamps; psycopg gives datetimes."""
    if isinstance(value, str) and len(value) >= 25 and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _normalize(v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def timescale_tiers() -> dict[str, list[dict[str, Any]]]:
    """The four tiers as TimescaleDB (on PGlite) computes them from the data set."""
    steps = [
        exec_(schema.offline_sql("timescale")),
        query(SET_BASE.format("$1"), BASE.isoformat()),
        exec_(DATA_SQL),
        # One CALL per step: refresh_continuous_aggregate cannot run inside the
        # implicit transaction of a multi-statement script.
        *(exec_(sql) for sql in REFRESH),
        *(query(sql) for sql in READS.values()),
    ]
    results = PGliteRunner().run(steps)
    return {name: _rows(rows) for name, rows in zip(READS, results[-len(READS):], strict=True)}


def portable_tiers(db_url: str) -> dict[str, list[dict[str, Any]]]:
    """The four tiers as the portable engine computes them from the same data set."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(SET_BASE.format("%s"), (BASE.isoformat(),))
        conn.execute(DATA_SQL)
        conn.execute(
            "SELECT * FROM pgpulse_refresh_tiers(INTERVAL '1 hour', INTERVAL '14 days', INTERVAL '90 days')"
        )
        return {name: conn.execute(sql).fetchall() for name, sql in READS.items()}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def assert_same_rows(name: str, got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want), f"{name}: {len(got)} rows on timescale, {len(want)} on portable"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert list(g) == list(w), f"{name}: columns differ: {list(g)} != {list(w)}"
        diff = {k: (g[k], w[k]) for k in g if not _close(g[k], w[k])}
        assert not diff, f"{name} row {i} (timescale, portable) differs: {diff}"


@pytest.fixture
def portable_db_url(empty_db_url: str) -> str:
    """A database of the portable engine, whichever engine the suite is testing (the
    portable engine runs on any server)."""
    schema.upgrade(empty_db_url, "portable")
    return empty_db_url


def test_tiers_are_equal_in_both_engines(timescale_tiers, portable_db_url):
    portable = portable_tiers(portable_db_url)
    for name in READS:
        assert_same_rows(name, timescale_tiers[name], portable[name])
    # Non-trivial comparison: every bucket of the six hours is there.
    assert len(portable["samples_5m"]) == 3 * HOURS * 12 + (HOURS - 1) * 12
    assert len(portable["samples_1h"]) == 3 * HOURS + HOURS - 1
    assert len(portable["system_metrics_5m"]) == 2 * HOURS * 12
    assert len(portable["system_metrics_1h"]) == 2 * HOURS


def _bucket(rows: list[dict], host: str, at: datetime) -> dict:
    (row,) = [r for r in rows if r["host"] == host and r["bucket"] == at]
    return row


def test_tiers_cover_the_data_set(timescale_tiers):
    s5 = timescale_tiers["samples_5m"]
    assert s5[0]["bucket"] == BASE
    assert {r["count"] for r in s5 if r["series_id"] != 4} == {30}
    assert {r["count"] for r in s5 if r["series_id"] == 4} == {10}
    s1 = timescale_tiers["samples_1h"]
    assert [r["count"] for r in s1 if r["series_id"] == 1] == [360] * HOURS
    # The counter's last value of an hour is its last raw sample of that hour.
    n_last = 359  # 10 s steps: the hour's last sample
    assert [r for r in s1 if r["series_id"] == 3][0]["last"] == n_last * 7 + n_last % 5


def test_non_numeric_snapshot_field_counts_as_missing(timescale_tiers):
    odd_bucket = ODD_SNAPSHOT - timedelta(minutes=4, seconds=30)
    row = _bucket(timescale_tiers["system_metrics_5m"], "beta", odd_bucket)
    assert row["snapshots"] == 10
    assert row["cpu_percent_count"] == 9
    assert row["cpu_percent_last"] is None  # the string was the bucket's last value
    assert row["load1_count"] == 10
    hour = _bucket(timescale_tiers["system_metrics_1h"], "beta", BASE + timedelta(hours=1))
    assert hour["snapshots"] == 120 and hour["cpu_percent_count"] == 119
    # alpha's first hour has no swap.percent at all
    first = _bucket(timescale_tiers["system_metrics_1h"], "alpha", BASE)
    assert first["swap_percent_count"] == 0 and first["swap_percent_sum"] is None
    assert first["procs_count"] == 120
