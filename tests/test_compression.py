"""Compressed raw samples change no answer: portable packing before and after, late writes included.

Two databases get the same writes through the HTTP API: ``packed`` has its old hours
packed into ``samples_packed`` by the scheduler's compression job, ``plain`` never
does. Every reader is asked the same questions of both and must answer the same:
native ``/api/query`` at raw, 5m and 1h steps with every aggregate (rate included),
PromQL ``/api/v1/query_range`` (instant vectors, ``sum by``, ``rate``, range
functions), ``/api/export`` and Prometheus remote read. Then late writes land in a
packed hour (an overwrite of a stored sample, a new sample between two, a new series)
and, after the next rollup and compression runs, the answers are compared again, and
the late values must be in them (last write wins).

Values are halves of small integers, so sums are exact whatever the order rows are
read in. The timescale engine's compression is TimescaleDB's own and is run by
``tests/test_timescale_schema.py`` and the engine tests on PGlite; this file is about
pgpulse's packed form, so it runs on the portable engine only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import psycopg
import pytest
from test_api_remote_read import answer as read_answer
from test_api_remote_read import compress, post, read_request

from pgpulse import scheduler, tiers
from pgpulse.settings import load_core
from proxy import close_app, create_app

HOUR = 3600
BASE = (int(time.time()) // HOUR - 30) * HOUR  # a whole hour, 30 hours back
POINTS = 30 * 60  # one a minute for 30 hours
LATE_HOUR = BASE + 10 * HOUR  # packed: 20 hours old


@pytest.fixture
def apps(db_url: str, module_db_url: str) -> Iterator[dict[str, object]]:
    made = {name: create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", "TESTING": True})
            for name, url in (("packed", db_url), ("plain", module_db_url))}
    yield {"urls": {"packed": db_url, "plain": module_db_url},
           "clients": {name: app.test_client() for name, app in made.items()}}
    for app in made.values():
        close_app(app)


def ingest(client, metrics: list[dict]) -> None:
    r = client.post("/api/ingest", json={"metrics": metrics})
    assert r.status_code == 200, r.get_json()


def history() -> list[dict]:
    out = []
    for k, host in enumerate(("a", "b", "c")):
        for i in range(POINTS):
            # A fraction of a second on some samples: packed times keep microseconds.
            at = BASE + i * 60 + (0.123456 if (i + k) % 7 == 0 else 0)
            out.append({"name": "m", "labels": {"host": host}, "value": ((i * 7 + k) % 101) / 2,
                        "timestamp": at})
    for i in range(POINTS):
        out.append({"name": "c_total", "labels": {"host": "a"}, "value": float(i * 3 - (i // 500) * 1500),
                    "timestamp": BASE + i * 60 + 30, "type": "counter"})
    return out


def settings_for(url: str):
    return dataclasses.replace(load_core({}, database_url=url, engine="portable"),
                               compress_after_hours=6, portable_compression=True)


def cycle(url: str, packing: bool) -> None:
    """One scheduler cycle (rollup, then packing where asked)."""
    settings = settings_for(url)
    if not packing:
        settings = dataclasses.replace(settings, portable_compression=False)
    jobs = scheduler.build(url, settings, "portable").get_jobs()
    assert ("compress" in {j.id for j in jobs}) == packing
    for job in jobs:
        job.func()


QUERIES = [
    {"query": "m", "step": step, "agg": agg}
    for step in ("60s", "300s", "3600s") for agg in ("avg", "min", "max", "sum", "count", "last")
] + [{"query": "c_total", "step": step, "agg": "rate"} for step in ("60s", "300s", "3600s")] + [
    {"query": 'm{host="b"}', "step": "60s", "agg": "avg", "by": "host"},
]
PROMQL = [
    (expr, step)
    for expr in ("m", "sum by (host) (m)", "rate(c_total[5m])", "avg_over_time(m[1h])",
                 "max_over_time(m[10m])", "increase(c_total[1h])")
    for step in (60, 300, 3600)
]


def answers(client) -> dict[str, object]:
    out: dict[str, object] = {}
    start, end = BASE - 60, BASE + POINTS * 60 + 60
    for params in QUERIES:
        r = client.get("/api/query", query_string={**params, "start": start, "end": end})
        assert r.status_code == 200, r.get_json()
        out[f"query {params}"] = r.get_json()
    for expr, step in PROMQL:
        r = client.get("/api/v1/query_range", query_string={"query": expr, "start": start, "end": end,
                                                             "step": step})
        assert r.status_code == 200, r.get_json()
        out[f"promql {expr} {step}"] = r.get_json()
    for fmt in ("json", "csv"):
        r = client.get("/api/export", query_string={"query": "{__name__=~\"m|c_total\"}", "start": start,
                                                    "end": end, "format": fmt})
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
        out[f"export {fmt}"] = r.get_data(as_text=True)
    req = read_request((start * 1000, end * 1000, [("__name__", "=~", "m|c_total")]))
    out["remote read"] = read_answer(post(client, compress(req.SerializeToString())))
    return out


def assert_same(packed: dict, plain: dict) -> None:
    assert packed.keys() == plain.keys()
    for name in plain:
        assert packed[name] == plain[name], name


def counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        raw = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        packed = conn.execute("SELECT coalesce(sum(cardinality(vals)), 0) FROM samples_packed").fetchone()[0]
    return raw, packed


@pytest.mark.engine("portable")
def test_every_answer_is_the_same_after_packing_and_after_late_writes(apps):
    urls, clients = apps["urls"], apps["clients"]
    for name in ("packed", "plain"):
        ingest(clients[name], history())
        cycle(urls[name], packing=False)
    before = answers(clients["packed"])
    assert_same(before, answers(clients["plain"]))

    cycle(urls["packed"], packing=True)
    raw, packed = counts(urls["packed"])
    # Everything older than six hours (and below the 5m watermark) is packed.
    assert packed >= 4 * POINTS * 23 // 30 and raw + packed == 4 * POINTS
    assert counts(urls["plain"]) == (4 * POINTS, 0)
    assert_same(answers(clients["packed"]), before)

    late = [
        # An overwrite of a packed sample, a sample between two packed ones, a new series.
        {"name": "m", "labels": {"host": "a"}, "value": 1000.5, "timestamp": LATE_HOUR + 600},
        {"name": "m", "labels": {"host": "b"}, "value": 2000.5, "timestamp": LATE_HOUR + 630.5},
        {"name": "m", "labels": {"host": "d"}, "value": 3000.5, "timestamp": LATE_HOUR + 900},
    ]
    for name in ("packed", "plain"):
        ingest(clients[name], late)
    # Right after the late write, before any job runs: raw wins over packed.
    with psycopg.connect(urls["packed"]) as conn:
        assert conn.execute("SELECT count(*) FROM pgpulse_repack").fetchone()[0] == 1
    plain_after = answers(clients["plain"])
    assert_same(answers(clients["packed"]), plain_after)

    for name in ("packed", "plain"):
        cycle(urls[name], packing=name == "packed")
    after = answers(clients["packed"])
    plain_after = answers(clients["plain"])
    assert_same(after, plain_after)
    assert after != before
    export = after["export json"]
    assert "1000.5" in export and "2000.5" in export and "3000.5" in export
    raw, packed = counts(urls["packed"])
    assert raw + packed == 4 * POINTS + 2 and raw < 4 * POINTS * 8 // 30
    with psycopg.connect(urls["packed"]) as conn:
        assert conn.execute("SELECT count(*) FROM pgpulse_repack").fetchone()[0] == 0
        # The overwritten sample is stored once, with the later value.
        rows = conn.execute(
            "SELECT value FROM samples_all a JOIN series s ON s.id = a.series_id "
            "WHERE s.labels = '{\"host\": \"a\"}' AND a.time = to_timestamp(%s)", (LATE_HOUR + 600,)
        ).fetchall()
        assert rows == [(1000.5,)]


@pytest.mark.engine("portable")
def test_packing_twice_changes_nothing_and_retention_drops_packed_days(db_url):
    client = create_app({"DATABASE_URL": db_url, "PGPULSE_AUTH": "off", "TESTING": True})
    try:
        ingest(client.test_client(), history())
    finally:
        close_app(client)
    settings = settings_for(db_url)
    tiers.refresh(db_url, settings)
    moved = tiers.compress(db_url, settings)
    assert moved > 0 and tiers.compress(db_url, settings) == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        hours = conn.execute("SELECT count(DISTINCT hour) FROM samples_packed").fetchone()[0]
        assert hours >= 23
        # A raw retention reaching only into today drops the packed hours of earlier
        # days, as the day partitions of samples go.
        keep = f"{(int(time.time()) - BASE) // 3600 - 20} hours"
        horizon = conn.execute("SELECT date_bin('1 day', now() - %s::interval, '1970-01-01')",
                               (keep,)).fetchone()[0]
        kept = conn.execute("SELECT count(*) FROM samples_packed WHERE hour >= %s", (horizon,)).fetchone()[0]
        conn.execute("SELECT pgpulse_compress_samples('6 hours', %s)", (keep,))
        assert conn.execute("SELECT count(*) FROM samples_packed").fetchone()[0] == kept
        assert conn.execute("SELECT count(*) FROM samples_packed WHERE hour < %s", (horizon,)).fetchone()[0] == 0


# -- timescale: TimescaleDB's compression, on PGlite ------------------------------------

TS_SERIES = "INSERT INTO series (name, labels) SELECT 'm', jsonb_build_object('host', h) FROM unnest(ARRAY['a', 'b', 'c']) h"
TS_HISTORY = """
INSERT INTO samples (time, series_id, value)
SELECT timestamptz '2026-11-28 00:00:00+00' + j * INTERVAL '1 minute' + (j % 7) * INTERVAL '123456 microseconds',
       s, ((j * 7 + s) % 101) / 2.0
FROM generate_series(0, 3 * 1440 - 1) j, generate_series(1, 3) s
"""
# The store's upsert (pgpulse.store.samples): an overwrite, a new sample between two,
# both inside the first (compressed) day.
TS_LATE = """
INSERT INTO samples (time, series_id, value) VALUES
    (timestamptz '2026-11-28 10:10:00.123456+00', 1, 1000.5),
    (timestamptz '2026-11-28 10:10:30.5+00', 2, 2000.5)
ON CONFLICT (series_id, time) DO UPDATE SET value = EXCLUDED.value
"""
TS_READS = [
    "SELECT series_id, time::text AS t, value FROM pgpulse_samples(ARRAY[1, 2, 3]::bigint[], "
    "'2026-11-27', '2026-12-02') ORDER BY 1, 2",
    "SELECT series_id, time::text AS t, value FROM pgpulse_samples_between('2026-11-28 09:00', "
    "'2026-11-28 11:00') ORDER BY 1, 2",
    "SELECT series_id, time::text AS t, value FROM samples_all "
    "WHERE time >= '2026-11-28 10:00' AND time < '2026-11-28 10:20' ORDER BY 1, 2",
    "SELECT series_id, date_bin('5 minutes', time, '1970-01-01')::text AS b, count(*) AS n, sum(value) AS s, "
    "min(value) AS lo, max(value) AS hi FROM pgpulse_samples(ARRAY[1, 2]::bigint[], '2026-11-28', '2026-11-29') "
    "GROUP BY 1, 2 ORDER BY 1, 2",
]


def _timescale_reads(compressed: bool) -> list:
    from pglite_runner import PGliteRunner, exec_, query

    from pgpulse import schema

    reads = [query(r) for r in TS_READS]
    compress = [query("SELECT count(compress_chunk(c)) AS n FROM show_chunks('samples', "
                      "older_than => timestamptz '2026-11-30') c")] if compressed else [query("SELECT 0 AS n")]
    state = [query("SELECT count(*) AS n FROM timescaledb_information.chunks "
                   "WHERE hypertable_name = 'samples' AND is_compressed")]
    steps = [exec_(schema.offline_sql("timescale")), exec_(TS_SERIES), exec_(TS_HISTORY),
             *reads, *compress, *state, *reads, exec_(TS_LATE), *state, *reads]
    return PGliteRunner(timeout=900).run(steps)


def test_timescale_compression_changes_no_read_and_keeps_last_write_wins():
    """On PGlite-TimescaleDB (TimescaleDB 2.23 in WebAssembly, the stand-in for a real
    server in CI): the reads pgpulse's readers make (``pgpulse_samples``,
    ``pgpulse_samples_between``, ``samples_all``) answer the same with two of three
    days compressed as with none, before and after an upsert into a compressed chunk.
    The HTTP API over these functions is compared on the portable engine above."""
    n = len(TS_READS)
    plain, packed = _timescale_reads(False), _timescale_reads(True)
    before, after, late = slice(3, 3 + n), slice(5 + n, 5 + 2 * n), slice(7 + 2 * n, 7 + 3 * n)
    assert packed[3 + n][0]["n"] == 2 and packed[4 + n][0]["n"] >= 1  # chunks compressed
    assert plain[3 + n][0]["n"] == 0
    assert packed[before] == plain[before] == packed[after] == plain[after]
    assert packed[late] == plain[late]
    assert packed[late] != packed[before]
    values = {r["value"] for r in packed[late][0]}
    assert {1000.5, 2000.5} <= values
    assert len(packed[late][0]) == len(packed[before][0]) + 1
