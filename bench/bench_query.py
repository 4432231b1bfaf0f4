"""Query latency: GET /api/query against VictoriaMetrics on the same data, one run.

    .venv/bin/python bench/bench_query.py [--runs 100]

Three queries, each answered by pgpulse's native query API (the proxy served by
werkzeug on a loopback port) and by Debian's VictoriaMetrics (its range query API,
cache off), interleaved, over HTTP:

* 24 h of one series at 10 s (8,640 points; pgpulse's raw tier),
* 100 series, summed by one label (10 groups), 5 min step over 24 h (pgpulse's 5m tier),
* 30 days of one series at 1 h (720 points; pgpulse's 1h tier).

The same samples go into both: every 10 s, 24 h for the first two, 30 days for the
third. pgpulse's tiers are rolled up by the portable engine's own refresh (as its
scheduler would have done), so only the last minutes are aggregated live. The table
gives each side's median and p99 and pgpulse's ratio to VictoriaMetrics' median.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import requests
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from peers import VictoriaMetrics  # noqa: E402

from proxy import close_app, create_app  # noqa: E402

STEP_S = 10
DAY = 86_400
MANY = 100
GROUPS = 10


def series_set(end_s: int) -> dict[tuple, list[tuple[int, float]]]:
    """Label set (with __name__) -> (time in ms, value): the benchmark's data."""
    def points(n: int, seed: int) -> list[tuple[int, float]]:
        first = end_s - n * STEP_S
        return [((first + i * STEP_S) * 1000, float((i * 7 + seed * 13) % 1000) / 8) for i in range(n)]

    data = {(("__name__", "bench_one"), ("host", "a")): points(DAY // STEP_S, 1)}
    for s in range(MANY):
        key = (("__name__", "bench_many"), ("instance", f"i{s:03d}"), ("job", f"job{s % GROUPS}"))
        data[key] = points(DAY // STEP_S, s)
    data[(("__name__", "bench_month"), ("host", "a"))] = points(30 * DAY // STEP_S, 2)
    return data


def load_pgpulse(url: str, data, end: datetime) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        for key, points in data.items():
            labels = dict(key)
            name = labels.pop("__name__")
            sid = conn.execute("INSERT INTO series (name, labels) VALUES (%s, %s::jsonb) RETURNING id",
                               (name, psycopg.types.json.Jsonb(labels))).fetchone()[0]
            with conn.cursor().copy("COPY samples (time, series_id, value) FROM STDIN") as copy:
                for t, v in points:
                    copy.write_row((epoch + timedelta(milliseconds=t), sid, v))
        # Everything rolled up as the scheduler would have (30 days: past the default
        # raw retention's reach of the refresh, so it is given here).
        conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '40 days', '90 days', %s)", (end,))
        conn.execute("VACUUM ANALYZE")


def load_victoria(data) -> VictoriaMetrics:
    vm = VictoriaMetrics("-search.disableCache", "-search.latencyOffset=0s")
    lines = []
    for key, points in data.items():
        labels = dict(key)
        name = labels.pop("__name__")
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.extend(f"{name}{{{text}}} {v!r} {t}" for t, v in points)
    r = requests.post(f"{vm.url}/api/v1/import/prometheus", data="\n".join(lines) + "\n", timeout=300)
    r.raise_for_status()
    vm.flush()
    return vm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    end_s = int(time.time()) // 300 * 300
    end = datetime.fromtimestamp(end_s, UTC)
    data = series_set(end_s)
    cases = [
        ("24 h of one series at 10 s", "raw",
         {"query": "bench_one", "start": end_s - DAY, "end": end_s, "step": "10s", "agg": "avg"},
         {"query": "bench_one", "start": end_s - DAY, "end": end_s, "step": "10s"}),
        ("100 series, sum by one label, 5 min step, 24 h", "5m",
         {"query": "bench_many", "start": end_s - DAY, "end": end_s, "step": "5m", "agg": "sum", "by": "job"},
         {"query": "sum by (job) (sum_over_time(bench_many[5m]))", "start": end_s - DAY, "end": end_s,
          "step": "5m"}),
        ("30 days of one series at 1 h", "1h",
         {"query": "bench_month", "start": end_s - 30 * DAY, "end": end_s, "step": "1h", "agg": "avg"},
         {"query": "avg_over_time(bench_month[1h])", "start": end_s - 30 * DAY, "end": end_s, "step": "1h"}),
    ]
    rows = []
    with bench_database("pgpulse_bench_query") as url:
        load_pgpulse(url, data, end)
        vm = load_victoria(data)
        vm_url = vm.url
        app = create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", "LOG_LEVEL": "warning"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            session = requests.Session()
            for label, tier, ours, theirs in cases:
                first = session.get(f"{base}/api/query", params=ours, timeout=300)
                assert first.status_code == 200 and first.json()["tier"] == tier, first.text[:300]
                points = sum(len(s["points"]) for s in first.json()["series"])
                times: dict[str, list[float]] = {"pgpulse": [], "victoria": []}
                targets = {"pgpulse": (f"{base}/api/query", ours),
                           "victoria": (f"{vm_url}/api/v1/query_range", theirs)}
                for i in range(args.runs + 5):
                    for name, (target, params) in targets.items():
                        began = time.perf_counter()
                        r = session.get(target, params=params, timeout=300)
                        elapsed = (time.perf_counter() - began) * 1000
                        assert r.status_code == 200, (name, r.text[:300])
                        if i >= 5:  # warm-up
                            times[name].append(elapsed)
                med = {n: statistics.median(v) for n, v in times.items()}
                p99 = {n: sorted(v)[max(0, int(len(v) * 0.99) - 1)] for n, v in times.items()}
                rows.append((label, tier, points, f"{med['pgpulse']:.1f}", f"{p99['pgpulse']:.1f}",
                             f"{med['victoria']:.1f}", f"{p99['victoria']:.1f}",
                             f"{med['pgpulse'] / med['victoria']:.1f}x"))
        finally:
            server.shutdown()
            thread.join(timeout=30)
            close_app(app)
            vm.stop()
    print(f"GET /api/query against VictoriaMetrics, {args.runs} rounds interleaved, over HTTP, ms\n")
    print(table(rows, ("query", "tier", "points", "pgpulse p50", "p99", "VM p50", "p99", "ratio")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
