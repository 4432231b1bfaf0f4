"""Prometheus remote write ingest: samples/s through ``POST /api/v1/write`` with several
concurrent senders, next to the same samples as JSON (``POST /api/ingest``), raw
binary COPY into ``samples``, and VictoriaMetrics receiving the very same
remote-write payloads on its own ``/api/v1/write``, all in the same run.

    .venv/bin/python bench/bench_remote_write.py [--clients 3] [--workers 3] [--batches 20] [--repeat 3]

Each request holds 5,000 samples (100 series x 50 timestamps), snappy-compressed
protobuf as Prometheus sends it. VictoriaMetrics (Debian's ``victoria-metrics``,
started here on a loopback port with a temporary data directory) answers 204 once
it has buffered a request, before its data is searchable; pgpulse answers once the
samples are committed. Uses a scratch database on the local server (BENCH_PG_URL,
default 127.0.0.1:5432; else embedded), dropped at the end. Prints a table of the
medians and the ratios (docs/performance.md).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import cramjam
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from bench_ingest import raw_copy  # noqa: E402
from peers import Proxy, VictoriaMetrics  # noqa: E402

from pgpulse.protocols.prompb import WriteRequest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5000
SERIES = 100
RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}


def samples_of(client: int, batch: int, round_: int, batches: int
               ) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """100 series x 50 timestamps, distinct per (round, client, batch), inside the window."""
    per_series = BATCH // SERIES
    t0 = (int((time.time() - 3 * 86400 - round_ * 6 * 3600) * 1000)
          + (client * batches + batch) * per_series * 1000)
    return [({"__name__": "bench_metric", "host": f"h{s % 20}", "dev": f"d{s}", "job": "bench"},
             [(t0 + i * 1000, float(s + i)) for i in range(per_series)]) for s in range(SERIES)]


def remote_write_body(series) -> bytes:
    req = WriteRequest()
    for labels, points in series:
        ts = req.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for t, v in points:
            ts.samples.add(value=v, timestamp=t)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def json_body(series) -> bytes:
    return orjson.dumps({"metrics": [
        {"name": labels["__name__"], "labels": {k: v for k, v in labels.items() if k != "__name__"},
         "value": v, "timestamp": t / 1000} for labels, points in series for t, v in points]})


def bodies(kind: str, client: int, batches: int, round_: int) -> list[bytes]:
    make = remote_write_body if kind == "rw" else json_body
    return [make(samples_of(client, b, round_, batches)) for b in range(batches)]


def client_run(args) -> tuple[int, float, float]:
    port, path, kind, client, batches, round_, barrier = args
    payloads = bodies(kind, client, batches, round_)
    headers = RW_HEADERS if kind == "rw" else {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    barrier.wait()
    start = time.perf_counter()
    for body in payloads:
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status not in (200, 204):
            raise SystemExit(f"{path} failed: {resp.status} {data[:300]!r}")
    return len(payloads) * BATCH, start, time.perf_counter()


def senders(port: int, path: str, kind: str, clients: int, batches: int, round_: int) -> float:
    """Samples/s of ``clients`` concurrent senders, from the first request to the last answer."""
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(clients)
        with multiprocessing.Pool(clients) as pool:
            results = pool.map(client_run, [(port, path, kind, i, batches, round_, barrier)
                                             for i in range(clients)])
    total = sum(r[0] for r in results)
    return total / (max(r[2] for r in results) - min(r[1] for r in results))


def warm_up(port: int, path: str, kind: str, round_: int, clients: int, batches: int) -> None:
    """Create the series and fill each worker's series cache (the times of one more
    sender, after the others')."""
    make = remote_write_body if kind == "rw" else json_body
    for body in [make(samples_of(clients, b, round_, batches)) for b in range(min(4, batches))]:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", path, body, RW_HEADERS if kind == "rw" else {"Content-Type": "application/json"})
        resp = c.getresponse()
        resp.read()
        assert resp.status in (200, 204), resp.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20, help="requests per sender and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"rw": [], "json": [], "vm": [], "copy": []}
    with VictoriaMetrics() as vm, bench_database("pgpulse_bench_rw") as url, \
            Proxy(url, args.workers, args.threads) as proxy:
        port, vm_port = proxy.port, vm.port
        for r in range(args.repeat):
            # Each protocol writes its own times (rounds 1, 2, 3 ... apart), so no
            # round measures overwrites of another's samples.
            warm_up(port, "/api/v1/write", "rw", 3 * r, args.clients, args.batches)
            results["rw"].append(senders(port, "/api/v1/write", "rw", args.clients,
                                         args.batches, 3 * r))
            warm_up(port, "/api/ingest", "json", 3 * r + 1, args.clients, args.batches)
            results["json"].append(senders(port, "/api/ingest", "json", args.clients,
                                           args.batches, 3 * r + 1))
            warm_up(vm_port, "/api/v1/write", "rw", 3 * r, args.clients, args.batches)
            results["vm"].append(senders(vm_port, "/api/v1/write", "rw", args.clients,
                                         args.batches, 3 * r))
            rows, secs = raw_copy(url, args.clients * args.batches * BATCH, 100 + r)
            results["copy"].append(rows / secs)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in results.items()),
                  flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    spread = {k: f"{min(v):,.0f} - {max(v):,.0f}" for k, v in results.items()}
    names = {"rw": "pgpulse remote write", "json": "pgpulse JSON ingest (same samples)",
             "vm": "VictoriaMetrics remote write (same payloads)", "copy": "raw binary COPY into samples"}
    rows = [(names[k], f"{med[k]:,.0f}", spread[k], f"{med['rw'] / med[k]:.2f}") for k in results]
    print(f"\n{args.clients} senders, {args.workers} workers x {args.threads} threads, "
          f"{args.batches} requests of {BATCH} samples per sender, {args.repeat} rounds (medians)")
    print(table(rows, ("path", "samples/s", "rounds", "remote write / this")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
