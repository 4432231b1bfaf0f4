"""PromQL query latency: pgpulse against Prometheus and VictoriaMetrics, same data, one run.

The data set (:func:`generate`, ending at the last whole hour before now, so that it
lies inside pgpulse's retention and its tiers can be refreshed): one gauge sampled
every 10 s for 30 days, 100 gauges every 10 s for 24 h, 1,000 counters every 30 s
for 3 h. It is backfilled into Debian's Prometheus (promtool), imported into Debian's
VictoriaMetrics (/api/v1/import/prometheus) and written into pgpulse through the
store, whose 5m and 1h tiers are then refreshed (what the scheduler does in
production). Each query runs interleaved on the three over HTTP (pgpulse's proxy
served by werkzeug on a loopback port, as the others), and the table gives the
median and p99 of each, pgpulse's ratio to each peer's median, the tiers that served
pgpulse's answer (its X-Pgpulse-Tiers header) and whether its answer equals
Prometheus's (same series and timestamps, values within 1e-9 relative). The target is
at most 2x either peer, and at or below them where the tiers answer.

Run: .venv/bin/python bench/bench_promql.py [rounds] [days]   (default 20 rounds, 30 days)
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests
from werkzeug.serving import make_server

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _db import bench_database, table  # noqa: E402
from peers import Prometheus, VictoriaMetrics  # noqa: E402
from promql_oracle import DataSet, differences, load_into_pgpulse  # noqa: E402

from pgpulse import schema, tiers  # noqa: E402
from pgpulse.settings import load_core  # noqa: E402
from proxy import close_app, create_app  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
# Days of the long series (30 by default): Prometheus's backfill of 30 days writes 361
# blocks, which takes the better part of an hour on a busy 2-core machine.
DAYS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
S, M, H, D = 1000, 60_000, 3_600_000, 86_400_000
END = (int(time.time() * 1000) // H - 1) * H  # the data's end: a whole hour in the past
RETENTION = {"PGPULSE_RAW_RETENTION_DAYS": "40", "PGPULSE_5M_RETENTION_DAYS": "40",
             "PGPULSE_1H_RETENTION_DAYS": "400"}


def _key(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": name, **labels}.items()))


def generate() -> DataSet:
    rng = random.Random(7)
    data: DataSet = {}
    value = 20.0
    points = []
    for t in range(END - DAYS * D, END, 10 * S):
        value += rng.gauss(0, 0.3)
        points.append((t, round(value, 4)))
    data[_key("bench_temperature", sensor="s0")] = points
    for i in range(100):
        data[_key("bench_queue_depth", job=f"j{i % 10}", instance=f"i{i}")] = [
            (t, float(rng.randrange(0, 500))) for t in range(END - D, END, 10 * S)]
    for i in range(1000):
        total, points = 0.0, []
        for t in range(END - 3 * H + (i * 37) % 30 * S, END, 30 * S):
            total = 0.0 if rng.random() < 0.002 else total + rng.expovariate(0.1)
            points.append((t, round(total, 3)))
        data[_key("bench_requests_total", handler=f"h{i % 50}", instance=f"i{i}")] = points
    return data


# (label, query, start, end, step in s)
QUERIES = [
    ("one series, 24 h raw at 10 s", 'bench_temperature{sensor="s0"}', END - D, END, 10),
    ("100 series sum by, 24 h at 5 min", "sum by (job) (bench_queue_depth)", END - D, END, 300),
    (f"one series, {DAYS} days at 1 h", 'bench_temperature{sensor="s0"}', END - DAYS * D + H, END,
     3600),
    (f"max_over_time [1h], {DAYS} days at 1 h", 'max_over_time(bench_temperature{sensor="s0"}[1h])',
     END - DAYS * D + H, END, 3600),
    ("avg_over_time [5m] of 100, 24 h at 5 min", "avg_over_time(bench_queue_depth[5m])",
     END - D + 5 * M, END, 300),
    ("rate [5m] of 1,000 counters, 1 h at 1 min", "rate(bench_requests_total[5m])",
     END - H, END, 60),
]


def victoria(data) -> VictoriaMetrics:
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


def main() -> None:
    data = generate()
    with tempfile.TemporaryDirectory() as tmp, bench_database("pgpulse_bench_promql") as url:
        settings = load_core(RETENTION, database_url=url, data_dir=Path(tmp) / "state")
        with psycopg.connect(url) as conn:
            schema.configure(conn, settings)
            load_into_pgpulse(data, conn)
        tiers.refresh(url, settings, backfill=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        prom = Prometheus(Path(tmp), data, backfill_timeout_s=3600)  # 30 days: 360 blocks
        vm = victoria(data)
        app = create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", **RETENTION})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        targets = {"pgpulse": f"http://127.0.0.1:{server.server_port}", "prometheus": prom.url,
                   "victoria": vm.url}
        rows = []
        try:
            session = requests.Session()
            for label, query, start, end, step in QUERIES:
                times: dict[str, list[float]] = {name: [] for name in targets}
                params = {"query": query, "start": start / 1000, "end": end / 1000, "step": step}
                answers = {}
                served = ""
                for _ in range(ROUNDS):
                    for name, base in targets.items():
                        began = time.perf_counter()
                        r = session.get(f"{base}/api/v1/query_range", params=params, timeout=300)
                        elapsed = time.perf_counter() - began
                        assert r.status_code == 200, (name, r.text[:300])
                        times[name].append(elapsed * 1000)
                        answers[name] = r.json()["data"]
                        if name == "pgpulse":
                            served = r.headers.get("X-Pgpulse-Tiers", "")
                same = not differences(answers["prometheus"], answers["pgpulse"])
                med = {n: statistics.median(v) for n, v in times.items()}
                p99 = {n: sorted(v)[max(0, int(len(v) * 0.99) - 1)] for n, v in times.items()}
                rows.append((label, served, f"{med['pgpulse']:.1f}", f"{p99['pgpulse']:.1f}",
                             f"{med['prometheus']:.1f}", f"{p99['prometheus']:.1f}",
                             f"{med['victoria']:.1f}", f"{p99['victoria']:.1f}",
                             f"{med['pgpulse'] / med['prometheus']:.1f}x",
                             f"{med['pgpulse'] / med['victoria']:.1f}x", "yes" if same else "NO"))
                print(*rows[-1], sep="  ", flush=True)
        finally:
            server.shutdown()
            close_app(app)
            prom.stop()
            vm.stop()
    print(f"PromQL range queries, {ROUNDS} rounds interleaved, ms")
    print(table(rows, ("query", "tiers", "pgpulse p50", "p99", "prometheus p50", "p99",
                       "victoria p50", "p99", "vs prom", "vs vm", "= prom")))


if __name__ == "__main__":
    main()
