"""PromQL query latency: pgpulse against Prometheus and VictoriaMetrics, same data, one run.

The data set is the oracle's (tests/promql_oracle.py: 3 hours, 71 series, irregular
scrapes), backfilled into Debian's Prometheus (promtool), imported into Debian's
VictoriaMetrics (/api/v1/import/prometheus) and written into pgpulse through the
store. Each query runs interleaved on the three over HTTP (pgpulse's proxy served
by werkzeug on a loopback port, as the others), and the table gives the median and
p99 of each and pgpulse's ratio to each peer's median. The issue's target is at
most 2x either peer.

Run: .venv/bin/python bench/bench_promql.py [rounds]   (default 30)
"""

from __future__ import annotations

import os
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
from promql_oracle import SPAN_MS, T0, generate, load_into_pgpulse  # noqa: E402

from proxy import close_app, create_app  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
END = (T0 + SPAN_MS) / 1000
QUERIES = [
    ("one series, 3 h at 10 s", 'node_temperature_celsius{host="h1"}', 10),
    ("sum by, 3 h at 5 min", "sum by (job) (http_requests_total)", 300),
    ("rate of every counter, 3 h at 1 min", "rate(http_requests_total[5m])", 60),
    ("histogram_quantile, 3 h at 1 min",
     "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))", 60),
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
        with psycopg.connect(url) as conn:
            load_into_pgpulse(data, conn)
        prom = Prometheus(Path(tmp), data)
        vm = victoria(data)
        app = create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        targets = {"pgpulse": f"http://127.0.0.1:{server.server_port}", "prometheus": prom.url,
                   "victoria": vm.url}
        rows = []
        try:
            session = requests.Session()
            for label, query, step in QUERIES:
                times: dict[str, list[float]] = {name: [] for name in targets}
                params = {"query": query, "start": T0 / 1000, "end": END, "step": step}
                for _ in range(ROUNDS):
                    for name, base in targets.items():
                        began = time.perf_counter()
                        r = session.get(f"{base}/api/v1/query_range", params=params, timeout=300)
                        elapsed = time.perf_counter() - began
                        assert r.status_code == 200, (name, r.text[:300])
                        times[name].append(elapsed * 1000)
                med = {n: statistics.median(v) for n, v in times.items()}
                p99 = {n: sorted(v)[max(0, int(len(v) * 0.99) - 1)] for n, v in times.items()}
                rows.append((label, f"{med['pgpulse']:.1f}", f"{p99['pgpulse']:.1f}",
                             f"{med['prometheus']:.1f}", f"{p99['prometheus']:.1f}",
                             f"{med['victoria']:.1f}", f"{p99['victoria']:.1f}",
                             f"{med['pgpulse'] / med['prometheus']:.1f}x",
                             f"{med['pgpulse'] / med['victoria']:.1f}x"))
        finally:
            server.shutdown()
            close_app(app)
            prom.stop()
            vm.stop()
    print(f"PromQL range queries, {ROUNDS} rounds interleaved, ms")
    print(table(rows, ("query", "pgpulse p50", "p99", "prometheus p50", "p99", "victoria p50",
                       "p99", "vs prom", "vs vm")))


if __name__ == "__main__":
    main()
