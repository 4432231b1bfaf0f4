"""Query latency: server time of GET /api/query for 24 h of one series at 10 s (raw
tier) and 365 days of one series (1h tier), next to the same SQL run directly.

    .venv/bin/python bench/bench_query.py [--runs 300]

Server time is measured in-process (Flask test client: routing, auth check, selector,
SQL, JSON), without the network. The 1h tier is filled directly (365 days of raw data
would take long to generate); the raw tier holds 8,640 samples.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402

from proxy import close_app, create_app  # noqa: E402

RAW_SQL = (
    "SELECT series_id, date_bin(%(step)s, time, %(origin)s) AS t, avg(value) FROM samples "
    "WHERE series_id = ANY(%(ids)s) AND time >= %(start)s AND time < %(end)s "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)
H1_SQL = (
    "SELECT series_id, date_bin(%(step)s, bucket, %(origin)s) AS t, sum(sum) / nullif(sum(count), 0) "
    "FROM samples_1h WHERE series_id = ANY(%(ids)s) AND bucket >= %(start)s AND bucket < %(end)s "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seed(url: str, now: datetime) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        raw_id = conn.execute("INSERT INTO series (name, labels) VALUES ('bench_raw', '{\"host\": \"a\"}') RETURNING id").fetchone()[0]
        h1_id = conn.execute("INSERT INTO series (name, labels) VALUES ('bench_hourly', '{\"host\": \"a\"}') RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO samples (time, series_id, value) SELECT %s - g * interval '10 seconds', %s, "
            "random() * 100 FROM generate_series(1, 8640) g", (now, raw_id))
        conn.execute("SELECT * FROM pgpulse_refresh_tiers(interval '1 hour', interval '14 days', interval '90 days')")
        conn.execute(
            "INSERT INTO pgpulse_samples_1h_store (bucket, series_id, count, sum, min, max, last) "
            "SELECT b, %s, 360, 360 * 50.0, 0, 100, 50 FROM generate_series("
            "date_bin('1 hour', %s - interval '365 days', 'epoch'), pgpulse_watermark('samples_1h') - interval '1 hour', "
            "interval '1 hour') b", (h1_id, now))
        conn.execute("ANALYZE")
    return raw_id, h1_id


def timed(fn, runs: int) -> list[float]:
    for _ in range(10):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> tuple[str, str]:
    ms = sorted(ms)
    return f"{statistics.median(ms):.2f}", f"{ms[int(len(ms) * 0.99) - 1]:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    with bench_database("pgpulse_bench_query") as url:
        now = datetime.now(UTC).replace(microsecond=0)
        raw_id, h1_id = seed(url, now)
        app = create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", "LOG_LEVEL": "warning"})
        client = app.test_client()
        cases = {
            "24 h at 10 s (raw)": ("bench_raw", now - timedelta(hours=24), timedelta(seconds=10), RAW_SQL, raw_id, "raw"),
            "365 d at 1 h (1h tier)": ("bench_hourly", now - timedelta(days=365), timedelta(hours=1), H1_SQL, h1_id, "1h"),
        }
        rows = []
        try:
            with psycopg.connect(url) as conn:
                for label, (name, start, step, sql_text, sid, tier) in cases.items():
                    params = {"query": name, "start": start.timestamp(), "end": now.timestamp(),
                              "step": f"{int(step.total_seconds())}s", "agg": "avg"}
                    r = client.get("/api/query", query_string=params)
                    assert r.status_code == 200 and r.json["tier"] == tier, r.json
                    points = len(r.json["series"][0]["points"])
                    http = timed(lambda p=params: client.get("/api/query", query_string=p), args.runs)
                    bind = {"step": step, "origin": EPOCH, "ids": [sid], "start": start, "end": now}
                    direct = timed(lambda s=sql_text, b=bind: conn.execute(s, b).fetchall(), args.runs)
                    rows.append((label, points, "API (in-process)", *summary(http)))
                    rows.append((label, points, "same SQL, direct", *summary(direct)))
        finally:
            close_app(app)
    print(table(rows, ("query", "points", "path", "median ms", "p99 ms")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
