"""Influx line protocol ingest: pgpulse's /api/v2/write next to raw binary COPY into
the same ``samples`` table and next to VictoriaMetrics receiving the same payloads
on the same endpoint, all in the same run.

    .venv/bin/python bench/bench_influx.py [--clients 3] [--workers 3] [--batches 20] [--repeat 3]

Each client process posts line-protocol bodies of 1,000 lines x 5 fields (5,000
samples, 500 series: 100 tag sets x 5 fields, like bench_ingest.py's JSON batches)
over keep-alive HTTP. In each round the same bodies go to ``pgpulse proxy``
(gunicorn, a fresh scratch database), to /api/ingest as JSON of the same samples
(pgpulse's own protocol, for the per-sample cost of the text protocol against
JSON), to raw binary COPY of as many rows (one connection, a COPY and commit per
5,000 rows), and to VictoriaMetrics (Debian's ``victoria-metrics``, started here on
a loopback port with a temporary data directory). Prints a table and the medians'
ratios.

VictoriaMetrics answers 204 once it has parsed a body and buffered its rows (it
writes them to disk in the background); pgpulse answers after its transaction
committed. The counts each stored are checked after the run
(``vm_rows_inserted_total`` for VictoriaMetrics, ``count(*)`` for pgpulse).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from bench_ingest import raw_copy  # noqa: E402
from peers import Proxy, VictoriaMetrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINES = 1000
FIELDS = ("user", "system", "idle", "iowait", "steal")
TAGSETS = 100
SAMPLES = LINES * len(FIELDS)


def make_lines(client: int, batches: int, round_: int, shift_s: int = 0
               ) -> list[list[tuple[int, int, list[float]]]]:
    """Per batch: (tag set, Unix ns, field values) of each line. Times are distinct per
    (client, batch, round) and inside pgpulse's window (the last 7 days); ``shift_s``
    moves them (the JSON bodies' samples are an hour apart from the line protocol's)."""
    now_s = int(time.time()) - 3 * 86400 - round_ * 6 * 3600 + shift_s
    per_tagset = LINES // TAGSETS
    out = []
    for b in range(batches):
        t0 = now_s + (client * batches + b) * per_tagset
        out.append([(s, (t0 + i) * 10**9, [float(s + i + f) for f in range(len(FIELDS))])
                    for s in range(TAGSETS) for i in range(per_tagset)])
    return out


def line_protocol(batch: list[tuple[int, int, list[float]]]) -> bytes:
    return "".join(
        f"bench_cpu,host=h{s % 20},cpu=cpu{s} "
        + ",".join(f"{name}={v!r}" for name, v in zip(FIELDS, values, strict=True))
        + f" {t}\n" for s, t, values in batch).encode()


def json_body(batch: list[tuple[int, int, list[float]]]) -> bytes:
    return orjson.dumps({"metrics": [
        {"name": f"bench_cpu_{name}", "labels": {"host": f"h{s % 20}", "cpu": f"cpu{s}"},
         "value": v, "timestamp": t / 1e9}
        for s, t, values in batch for name, v in zip(FIELDS, values, strict=True)]})


def client_run(args: tuple) -> tuple[int, float, float]:
    port, path, kind, client, batches, round_, barrier = args
    if kind == "json":
        bodies = [json_body(b) for b in make_lines(client, batches, round_, 3600)]
    else:
        bodies = [line_protocol(b) for b in make_lines(client, batches, round_)]
    ctype = "application/json" if kind == "json" else "text/plain; charset=utf-8"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    barrier.wait()
    start = time.perf_counter()
    for body in bodies:
        conn.request("POST", path, body, {"Content-Type": ctype})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status not in (200, 204):
            raise SystemExit(f"{path} failed: {resp.status} {data[:300]!r}")
    return len(bodies) * SAMPLES, start, time.perf_counter()


def send(port: int, path: str, kind: str, clients: int, batches: int, round_: int
         ) -> tuple[int, float]:
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(clients)
        with multiprocessing.Pool(clients) as pool:
            results = pool.map(client_run, [(port, path, kind, i, batches, round_, barrier)
                                            for i in range(clients)])
    return sum(r[0] for r in results), max(r[2] for r in results) - min(r[1] for r in results)


def warm_up(port: int, path: str, round_: int) -> None:
    """Create the series (pgpulse) and warm the caches before the timed part."""
    for batch in make_lines(999, 2, round_):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", path, line_protocol(batch), {"Content-Type": "text/plain"})
        resp = c.getresponse()
        resp.read()
        if resp.status != 204:
            raise SystemExit(f"warm-up of {path} failed: {resp.status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20, help="bodies per client and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are compared")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"influx": [], "json": [], "copy": [], "victoria": []}
    rows = []
    sent_vm = 0
    with VictoriaMetrics() as vm:
        with bench_database("pgpulse_bench_influx") as url:
            with Proxy(url, args.workers, args.threads) as proxy:
                port = proxy.port
                for round_ in range(1, args.repeat + 1):
                    warm_up(port, "/api/v2/write", round_)
                    n, t = send(port, "/api/v2/write", "influx", args.clients, args.batches,
                                round_)
                    rates["influx"].append(n / t)
                    rows.append((round_, "pgpulse /api/v2/write", n, f"{t:.2f}", f"{n / t:,.0f}"))
                    # The same samples as JSON, an hour later (make_lines' shift).
                    n, t = send(port, "/api/ingest", "json", args.clients, args.batches,
                                round_)
                    rates["json"].append(n / t)
                    rows.append((round_, "pgpulse /api/ingest (JSON)", n, f"{t:.2f}",
                                 f"{n / t:,.0f}"))
                    n_copy, t_copy = raw_copy(url, n, round_)
                    rates["copy"].append(n_copy / t_copy)
                    rows.append((round_, "raw binary COPY (1 connection)", n_copy,
                                 f"{t_copy:.2f}", f"{n_copy / t_copy:,.0f}"))
                    warm_up(vm.port, "/api/v2/write", round_)
                    n, t = send(vm.port, "/api/v2/write", "influx", args.clients, args.batches,
                                round_)
                    sent_vm += n + 2 * SAMPLES
                    rates["victoria"].append(n / t)
                    rows.append((round_, "VictoriaMetrics /api/v2/write", n, f"{t:.2f}",
                                 f"{n / t:,.0f}"))
            with psycopg.connect(url) as conn:
                stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        vm_stored = vm.rows_inserted("influx")
    print(table(rows, ("round", "path", "samples", "seconds", "samples/s")))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"medians: /api/v2/write {med['influx']:,.0f}/s, /api/ingest JSON {med['json']:,.0f}/s, "
          f"raw COPY {med['copy']:,.0f}/s, VictoriaMetrics {med['victoria']:,.0f}/s")
    print(f"ratios: line protocol / raw COPY {med['influx'] / med['copy']:.2f}, "
          f"line protocol / JSON {med['influx'] / med['json']:.2f}, "
          f"pgpulse / VictoriaMetrics {med['influx'] / med['victoria']:.2f}")
    print(f"rows stored: pgpulse {stored:,}, VictoriaMetrics {vm_stored:,} of {sent_vm:,} sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
