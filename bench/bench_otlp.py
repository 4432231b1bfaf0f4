"""OTLP/HTTP metrics ingest throughput (POST /v1/metrics, protobuf and JSON) next to
the JSON ingest API and raw binary COPY into the same ``samples`` table, in one run.

    .venv/bin/python bench/bench_otlp.py [--clients 3] [--workers 3] [--batches 20] [--repeat 3]

Each round starts ``pgpulse proxy`` (gunicorn), then for each path the client
processes post batches of 5,000 samples (100 series x 50 timestamps; for OTLP one
gauge metric of 5,000 data points, attributes ``host`` and ``dev``, as the
OpenTelemetry SDK lays them out) over keep-alive HTTP; then raw binary COPY of as many
prepared rows. Prints a table, the medians and the ratios: each path / raw COPY, and
OTLP protobuf / the JSON API (the binary protocol should be no slower per sample).

VictoriaMetrics is the peer the other protocols are compared with; the script starts
the installed ``victoria-metrics`` on a loopback port and offers it the same OTLP
body: Debian's 1.79 has no OTLP endpoint (it came in 1.92) and answers so, which is
printed; a build that accepts it is measured like the proxy.

    .venv/bin/python bench/bench_otlp.py --parse [--repeat 10]

measures, in this process and without a database, decode + mapping of one OTLP
batch (protobuf and JSON) against JSON parse + validation of the same samples.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import orjson
import psycopg
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from bench_ingest import BATCH, SERIES, raw_copy  # noqa: E402
from peers import Proxy, VictoriaMetrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PATHS = {
    "JSON /api/ingest": ("/api/ingest", "application/json"),
    "OTLP protobuf /v1/metrics": ("/v1/metrics", "application/x-protobuf"),
    "OTLP JSON /v1/metrics": ("/v1/metrics", "application/json"),
}


def first_time(path_index: int, client: int, batch: int, batches: int, round_: int) -> float:
    # Rounds 6 hours apart, paths 1 hour apart: every (series, time) is new, so the
    # figures are ingest, not overwrites.
    per_series = BATCH // SERIES
    return (time.time() - 3 * 86400 - round_ * 6 * 3600 - path_index * 3600
            + (client * batches + batch) * per_series)


def otlp_request(t0: float) -> ExportMetricsServiceRequest:
    per_series = BATCH // SERIES
    points = [pb.NumberDataPoint(
        time_unix_nano=int((t0 + i) * 1e9), as_double=float(s + i),
        attributes=[KeyValue(key="host", value=AnyValue(string_value=f"h{s % 20}")),
                    KeyValue(key="dev", value=AnyValue(string_value=f"d{s}"))])
        for s in range(SERIES) for i in range(per_series)]
    return ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="bench"))]},
        scope_metrics=[pb.ScopeMetrics(metrics=[pb.Metric(name="bench_metric",
                                                           gauge=pb.Gauge(data_points=points))])])])


def json_body(t0: float) -> bytes:
    per_series = BATCH // SERIES
    return orjson.dumps({"metrics": [
        {"name": "bench_metric", "labels": {"job": "bench", "host": f"h{s % 20}", "dev": f"d{s}"},
         "value": float(s + i), "timestamp": t0 + i}
        for s in range(SERIES) for i in range(per_series)]})


def make_body(path: str, t0: float) -> bytes:
    if path == "JSON /api/ingest":
        return json_body(t0)
    message = otlp_request(t0)
    if path == "OTLP protobuf /v1/metrics":
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def client_run(args: tuple) -> tuple[int, float, float]:
    port, url_path, content_type, bodies, barrier = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    barrier.wait()
    start = time.perf_counter()
    for body in bodies:
        conn.request("POST", url_path, body, {"Content-Type": content_type})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200 or (url_path == "/v1/metrics" and b"rejected" in data.lower()):
            raise SystemExit(f"{url_path} failed: {resp.status} {data[:300]!r}")
    return len(bodies) * BATCH, start, time.perf_counter()


def post_all(port: int, path: str, path_index: int, clients: int, batches: int, round_: int,
             url_path: str | None = None) -> tuple[int, float]:
    default_path, content_type = PATHS[path]
    bodies = [[make_body(path, first_time(path_index, c, b, batches, round_)) for b in range(batches)]
              for c in range(clients)]
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(clients)
        with multiprocessing.Pool(clients) as pool:
            results = pool.map(client_run, [(port, url_path or default_path, content_type,
                                             bodies[c], barrier) for c in range(clients)])
    return sum(r[0] for r in results), max(r[2] for r in results) - min(r[1] for r in results)


def victoria_metrics(clients: int, batches: int) -> str:
    """What the installed VictoriaMetrics does with the same OTLP body (and its rate
    when it takes it)."""
    with VictoriaMetrics() as vm:
        body = make_body("OTLP protobuf /v1/metrics", first_time(0, 0, 0, 1, 0))
        c = http.client.HTTPConnection("127.0.0.1", vm.port, timeout=60)
        c.request("POST", "/opentelemetry/v1/metrics", body, {"Content-Type": "application/x-protobuf"})
        resp = c.getresponse()
        answer = resp.read()[:120]
        build = vm.get("/api/v1/status/buildinfo")[:200]
        if resp.status // 100 != 2:
            return (f"victoria-metrics ({build.decode(errors='replace') or 'no build info'}) answers "
                    f"POST /opentelemetry/v1/metrics with {resp.status} {answer!r}: no OTLP "
                    f"endpoint in this version, no peer ratio")
        n, t = post_all(vm.port, "OTLP protobuf /v1/metrics", 0, clients, batches, 0,
                        url_path="/opentelemetry/v1/metrics")
        return f"victoria-metrics OTLP protobuf: {n / t:,.0f} samples/s"


def parse_costs(repeat: int) -> None:
    """us per sample of what a request does before it writes, per path (GC paused, as
    the views do)."""
    from pgpulse.protocols import otlp
    from pgpulse.store.batch import PG_EPOCH_US
    from pgpulse.store.series import SeriesLimits
    from proxy.validation import Limits, validate

    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    limits = SeriesLimits()
    window = otlp.Window(now_us - 7 * 86400 * 10**6, now_us + 600 * 10**6, 7 * 86400, 600)
    t0 = time.time() - 3600
    bodies = {path: make_body(path, t0) for path in PATHS}

    def once(path: str) -> float:
        body = bodies[path]
        gc.disable()
        start = time.perf_counter()
        try:
            if path == "JSON /api/ingest":
                batch = validate(orjson.loads(body)["metrics"], Limits(limits, 7 * 86400, 600), now_us)
            else:
                encoding = otlp.PROTOBUF if "protobuf" in path else otlp.JSON
                batch = otlp.translate(otlp.decode(body, encoding), limits, window).batch
        finally:
            gc.enable()
        assert len(batch.rows) == BATCH
        return (time.perf_counter() - start) / BATCH * 1e6

    runs: dict[str, list[float]] = {path: [] for path in PATHS}
    for _ in range(repeat):
        for path in PATHS:
            runs[path].append(once(path))
    base = statistics.median(runs["JSON /api/ingest"])
    print(table([(p, f"{statistics.median(r):.2f}", f"{min(r):.2f}", f"{statistics.median(r) / base:.2f}")
                 for p, r in runs.items()],
                ("decode + map / validate (5,000 samples)", "us/sample median", "best", "/ JSON API")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20, help="batches per client and path")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the medians are compared")
    parser.add_argument("--parse", action="store_true",
                        help="only decode and map in this process, against the JSON API's parse")
    args = parser.parse_args()
    if args.parse:
        parse_costs(max(args.repeat, 5))
        return 0
    rows = []
    rates: dict[str, list[float]] = {path: [] for path in (*PATHS, "raw binary COPY")}
    with bench_database("pgpulse_bench_otlp") as url:
        for round_ in range(1, args.repeat + 1):
            with Proxy(url, args.workers, args.threads) as proxy:
                port = proxy.port
                # Warm-up: create the series and fill each worker's cache, per path.
                for i, path in enumerate(PATHS):
                    post_all(port, path, i + len(PATHS), 1, 2, round_)
                total = 0
                for i, path in enumerate(PATHS):
                    n, t = post_all(port, path, i, args.clients, args.batches, round_)
                    total = max(total, n)
                    rates[path].append(n / t)
                    rows.append((round_, f"{path} ({args.clients} clients, "
                                 f"{args.workers}x{args.threads} workers)", n, f"{t:.2f}", f"{n / t:,.0f}"))
            n, t = raw_copy(url, total, round_)
            rates["raw binary COPY"].append(n / t)
            rows.append((round_, "raw binary COPY (1 connection)", n, f"{t:.2f}", f"{n / t:,.0f}"))
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    print(table(rows, ("round", "path", "samples", "seconds", "samples/s")))
    med = {path: statistics.median(r) for path, r in rates.items()}
    copy = med["raw binary COPY"]
    print(table([(path, f"{m:,.0f}", f"{m / copy:.2f}", f"{m / med['JSON /api/ingest']:.2f}")
                 for path, m in med.items()],
                ("path (medians)", "samples/s", "/ raw COPY", "/ JSON API")))
    print(f"rows stored: {stored}")
    print(victoria_metrics(args.clients, args.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
